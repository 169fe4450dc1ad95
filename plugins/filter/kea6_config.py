# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: kea6_config
short_description: The kea-dhcp6 configuration of a PXE server, from the boot plan
version_added: 0.3.0
author: centra.pxe engineers (@centra)
description:
  - Renders the whole C(Dhcp6) configuration for the IPv6 prefixes of the plan (C(pxe_subnets) entries
    with an IPv6 C(cidr)), with the option-61 client classes of the boot policy answering option 59
    (boot-file URL), the pools, and a reservation per node with C(pxe_ip6) (by DUID, else by MAC).
  - Returns a mapping; write it with C(to_nice_json) and check it with C(kea-dhcp6 -t). See docs/ipv6.md.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  server:
    description:
      - The server context (M(centra.pxe.server_context)), with C(address6), C(cidr6), C(interface),
        C(http_port) and C(loaders).
    type: dict
    required: true
  settings:
    description:
      - The Kea DHCPv6 settings, every one of them (the role M(centra.pxe.pxe_dhcp) passes its variables).
      - C(interfaces), C(lease_file), C(control_socket), C(valid_lifetime), C(socket_retries),
        C(socket_retry_wait_ms), C(log_severity).
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.kea6_config(centra_pxe_server, kea6_settings) | to_nice_json }}"
"""

RETURN = r"""
  _value:
    description: The whole configuration, a mapping with the one key C(Dhcp6).
    type: dict
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import kea_dhcp6_config

kea6_config = DocumentedFilter("kea6_config", DOCUMENTATION, kea_dhcp6_config, plan=True)


class FilterModule:
    def filters(self):
        return {"kea6_config": kea6_config}
