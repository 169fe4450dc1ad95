# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the collection's action plugins share: their arguments checked against a spec."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


def checked_args(name: str, spec: t.Mapping[str, t.Any], args: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The task's arguments with their defaults, or AnsibleActionFail("<name>: <problems>")."""
    validation = ArgumentSpecValidator(dict(spec)).validate(dict(args))
    if validation.error_messages:
        raise AnsibleActionFail("%s: %s" % (name, "; ".join(validation.error_messages)))
    return validation.validated_parameters
