# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Renderer settings arrive resolved: the roles' defaults are the one place a default
is written, so a renderer checks it was given every setting it reads and falls back
on nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence


def resolved_settings(settings: Any, keys: Sequence[str], what: str, role: str) -> Mapping[str, Any]:
    """settings itself, once it is a mapping holding a value (not None) for every key."""
    if not isinstance(settings, Mapping):
        raise ValueError("the %s settings must be a mapping of %s, got %r" % (what, ", ".join(keys), settings))
    missing = [k for k in keys if settings.get(k) is None]
    if missing:
        raise ValueError("the %s settings lack %s: pass every one of %s (the %s role does)"
                         % (what, ", ".join(missing), ", ".join(keys), role))
    return settings
