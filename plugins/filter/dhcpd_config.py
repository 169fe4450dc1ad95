# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: dhcpd_config
short_description: The ISC dhcpd configuration of a PXE server, from the boot plan
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Renders dhcpd.conf with the subnets and pools, a host per MAC, and the option-93 boot policy as one if/elsif chain.
  - For sites that still run ISC DHCP (end-of-life since 2022); Kea is the default backend.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  server:
    description:
      - The server, a mapping with C(address), C(http_base) and C(loaders).
      - With C(name) (its inventory name), the server's side of the plan's HA relationship is rendered
        (a C(failover peer) declaration; the dynamic pools join it).
    type: dict
    required: true
  settings:
    description: The settings C(valid_lifetime) and C(authoritative), both (the role M(centra.pxe.pxe_dhcp) passes its variables; the filter knows no defaults).
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.dhcpd_config(server, {'valid_lifetime': 3600, 'authoritative': true}) }}"
"""

RETURN = r"""
  _value:
    description: The text of dhcpd.conf.
    type: str
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import dhcpd_config as render

dhcpd_config = DocumentedFilter("dhcpd_config", DOCUMENTATION, render, plan=True)


class FilterModule:
    def filters(self):
        return {"dhcpd_config": dhcpd_config}
