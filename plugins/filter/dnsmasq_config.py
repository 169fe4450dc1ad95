# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: dnsmasq_config
short_description: The proxyDHCP (dnsmasq) configuration of a PXE server, from the boot plan
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Renders dnsmasq's configuration for C(pxe_dhcp_backend=proxy) - proxyDHCP beside the site's own DHCP server. No
    DNS (C(port=0)), no leases, no TFTP; one C(dhcp-range=<network>,proxy) per subnet; the option-93 boot policy as
    C(dhcp-match) tags and C(dhcp-boot) lines (iPXE gets the boot script).
  - Returns text; check it with C(dnsmasq --test --conf-file=FILE).
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  server:
    description: The server, a mapping with C(address), C(http_base) and C(loaders).
    type: dict
    required: true
  settings:
    description:
      - The proxyDHCP settings, every one of them (the role M(centra.pxe.pxe_dhcp) passes its variables).
      - C(interfaces) (list), C(log_dhcp) (bool).
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.dnsmasq_config(server, {'interfaces': ['eth1'], 'log_dhcp': true}) }}"
"""

RETURN = r"""
  _value:
    description: The configuration file's text.
    type: str
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dnsmasq import dnsmasq_proxy_config

dnsmasq_config = DocumentedFilter("dnsmasq_config", DOCUMENTATION, dnsmasq_proxy_config, plan=True)


class FilterModule:
    def filters(self):
        return {"dnsmasq_config": dnsmasq_config}
