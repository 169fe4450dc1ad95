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

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import healthz as render
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter

healthz = DocumentedFilter("healthz", DOCUMENTATION, render, plan=True)


class FilterModule:
    def filters(self):
        return {"healthz": healthz}
