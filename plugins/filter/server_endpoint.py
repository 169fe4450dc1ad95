# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: server_endpoint
short_description: The provisioning interface and address of a PXE server
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - The interface named by O(interface), or else the one holding an IPv4 address inside a C(pxe_subnets) cidr.
  - Fails with a clear message when there is none, or several and none was named.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  facts:
    description: The server's C(ansible_facts), with the network subset gathered.
    type: dict
    required: true
  interface:
    description: The provisioning interface (C(pxe_interface)), when set.
    type: str
  address:
    description: The provisioning address (C(pxe_server_address)), when set.
    type: str
"""

EXAMPLES = r"""
endpoint: "{{ centra_pxe_plan | centra.pxe.server_endpoint(ansible_facts, pxe_interface | default(None)) }}"
"""

RETURN = r"""
  _value:
    description: C(interface), C(address) and C(cidr) of the provisioning network.
    type: dict
"""

from ansible_collections.centra.pxe.plugins.module_utils._endpoint import server_endpoint as find
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter


def _find(plan, facts, interface, address):
    # Empty means unset: the roles pass pxe_interface and pxe_server_address, which default to "".
    return find(plan, facts, interface or None, address or None)


server_endpoint = DocumentedFilter("server_endpoint", DOCUMENTATION, _find, plan=True)


class FilterModule:
    def filters(self):
        return {"server_endpoint": server_endpoint}
