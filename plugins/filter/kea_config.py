# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: kea_config
short_description: The kea-dhcp4 configuration of a PXE server, from the boot plan
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Renders the whole C(Dhcp4) configuration with a reservation per MAC, the pools, the option-93 client classes of the boot policy, lease file, control socket.
  - Returns a mapping; write it with M(centra.pxe.kea_json) and check it with C(kea-dhcp4 -t).
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  server:
    description:
      - The server, a mapping with C(address), C(http_base) and C(loaders).
      - With C(name) (its inventory name), the server's side of the plan's HA relationship is rendered
        (hooks C(libdhcp_lease_cmds.so) and C(libdhcp_ha.so), C(this-server-name), peers).
    type: dict
    required: true
  settings:
    description:
      - The Kea settings, every one of them (the role M(centra.pxe.pxe_dhcp) passes its variables; the filter knows no defaults).
      - C(interfaces), C(lease_file), C(control_socket), C(valid_lifetime), C(authoritative), C(socket_retries),
        C(socket_retry_wait_ms), C(log_severity), C(hooks_dir), C(ha_tls_dir), C(host_database).
      - With C(host_database) true the reservations are left out (M(centra.pxe.kea_host_database) writes
        them into Kea's PostgreSQL host database) and C(hosts-database) names that database, with reconnect
        settings. When the plan has this server read another server's database (C(host_databases),
        C(pxe_dhcp_kea_host_database_server)), it names that server's address and port, and its password is a
        marked include of C(/etc/kea/centra-pxe-host-database.password), so write the mapping with
        M(centra.pxe.kea_json), which turns the mark into Kea's C(<?include ?>).
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.kea_config(server, kea_settings) | centra.pxe.kea_json }}"
"""

RETURN = r"""
  _value:
    description: The whole configuration, a mapping with the one key C(Dhcp4).
    type: dict
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import kea_dhcp4_config

kea_config = DocumentedFilter("kea_config", DOCUMENTATION, kea_dhcp4_config, plan=True)


class FilterModule:
    def filters(self):
        return {"kea_config": kea_config}
