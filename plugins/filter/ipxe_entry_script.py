# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: ipxe_entry_script
short_description: boot.ipxe, the script every iPXE client is sent to
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Chains the per-MAC script of the interface that booted (C(${mac}), not C(${net0/mac})); the web server answers unknown MACs with the menu.
  - A failed download shows a clear message and retries.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  http_base:
    description: The URL the boot tree is served at, such as C(http://192.0.2.2).
    type: str
    required: true
  settings:
    description:
      - The iPXE settings, every one of them (the role M(centra.pxe.pxe_ipxe) passes its variables; the filter knows no defaults).
      - C(menu_timeout) (seconds), C(menu_default) (a profile, C(local) or C(shell)), C(console) (list), C(retry_seconds), C(title).
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.ipxe_entry_script('http://192.0.2.2', ipxe_settings) }}"
"""

RETURN = r"""
  _value:
    description: The script.
    type: str
"""

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import entry_script
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter

ipxe_entry_script = DocumentedFilter("ipxe_entry_script", DOCUMENTATION, entry_script, plan=True)


class FilterModule:
    def filters(self):
        return {"ipxe_entry_script": ipxe_entry_script}
