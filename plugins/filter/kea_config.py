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
  - Returns a mapping; write it with C(to_nice_json) and check it with C(kea-dhcp4 -t).
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
      - Kea settings overriding the defaults.
      - C(interfaces), C(lease_file), C(control_socket), C(valid_lifetime), C(authoritative), C(socket_retries), C(log_severity), C(hooks_dir).
    type: dict
    default: {}
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.kea_config(server, {'interfaces': ['eth1']}) | to_nice_json }}"
"""

RETURN = r"""
  _value:
    description: The whole configuration, a mapping with the one key C(Dhcp4).
    type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.module_utils._render_dhcp import kea_dhcp4_config


def kea_config(plan, server, settings=None):
    try:
        return kea_dhcp4_config(load_plan(plan), server, settings or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("centra.pxe.kea_config: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"kea_config": kea_config}
