# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: healthz
short_description: The /healthz document of a PXE server
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - JSON with the status, the configuration version (the plan digest), the profiles, the node count and the sha256 of every asset.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.healthz }}"
"""

RETURN = r"""
  _value:
    description: The JSON text.
    type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import healthz as render


def healthz(plan):
    try:
        return render(load_plan(plan))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("centra.pxe.healthz: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"healthz": healthz}
