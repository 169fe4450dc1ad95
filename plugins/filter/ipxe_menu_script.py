# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: ipxe_menu_script
short_description: menu.ipxe, the profile menu for machines not in the inventory
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - One entry per profile, boot from local disk and an iPXE shell, with a timeout and a default.
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
content: "{{ centra_pxe_plan | centra.pxe.ipxe_menu_script('http://192.0.2.2', ipxe_settings | combine({'menu_default': 'worker'})) }}"
"""

RETURN = r"""
  _value:
    description: The script.
    type: str
"""

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import menu_script
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter

ipxe_menu_script = DocumentedFilter("ipxe_menu_script", DOCUMENTATION, menu_script, plan=True)


class FilterModule:
    def filters(self):
        return {"ipxe_menu_script": ipxe_menu_script}
