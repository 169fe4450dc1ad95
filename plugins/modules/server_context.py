#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# The work happens in the action plugin of the same name, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: server_context
short_description: Describe one PXE server for the roles that configure it
version_added: 0.2.0
description:
  - Finds the provisioning interface and address of the server (the one named, or else the
    one holding an address inside a C(pxe_subnets) cidr), and returns, as the fact
    O(fact_name), everything the component roles render from besides the boot plan.
  - "The fact holds: C(name) (inventory name), C(interface), C(address), C(cidr),
    C(address6), C(cidr6), C(http_base6) (the IPv6 endpoint on the same interface when the plan
    has IPv6 prefixes, else null),
    C(interfaces) (the provisioning interface and O(extra_interfaces)), C(http_port),
    C(https_port) (0 when HTTPS is off), C(http_base), C(root), C(loaders) (a file name or
    an empty string for every option-93 slot of the boot policy table), C(loader_sources)
    (slot -> C({path, remote_src}) for the configured slots), C(default_loader), C(shim_loaders)
    (a shim file name or an empty string per architecture of the C(grub) chain), C(grub)
    (C(in_use), whether any node or the default uses the C(grub) chain or the server serves arm64,
    C(loaders), slot -> C({shim, second_stage, prefix}) for the architectures served, C(profiles),
    C(arm64_nodes) (the nodes with C(pxe_arch=arm64)) and C(cache_dir)), C(dhcp_backend),
    C(dhcp_service), C(dhcp_services) (every backend's unit), C(ha) (this server's HA
    relationship with its C(role), or null), C(lifecycle) (the node lifecycle service's
    C(socket), C(state_dir), C(boot_dir), C(scripts_dir), C(callback_base), and its HA C(peers)
    and C(peer_addresses)), C(health) (the health service's C(socket) and C(plan_file), the plan
    document the converge writes last) and C(plan) (C(digest), C(subnets), C(profiles):
    the plan without its nodes)."
  - Built once per server in Python, so no role recomputes or reads another role's
    internal facts.
author:
  - centra.pxe engineers (@centra)
options:
  plan:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  interface:
    description: The provisioning interface (C(pxe_interface)); empty to find it.
    type: str
    default: ""
  address:
    description: The provisioning address (C(pxe_server_address)); empty for the interface's.
    type: str
    default: ""
  address6:
    description:
      - The provisioning IPv6 address (C(pxe_server_address6)), when the plan has IPv6 prefixes and the
        interface holds several addresses in them; empty for the first.
    type: str
    default: ""
  extra_interfaces:
    description: Interfaces the services answer on besides the provisioning one (relayed requests).
    type: list
    elements: str
    default: []
  http_port:
    description: The port nginx serves the boot tree on.
    type: int
    default: 80
  https_port:
    description: The HTTPS port, or 0 when HTTPS is off.
    type: int
    default: 0
  root:
    description: The directory of the boot trees (C(http/), C(tftp/)).
    type: path
    required: true
  loaders:
    description: Loader file name per option-93 slot (C(pxe_server_loaders)).
    type: dict
    default: {}
  loader_files:
    description: Loaders the operator brings, slot -> path on the controller.
    type: dict
    default: {}
  loader_dir:
    description: Where the other loaders are found on the server.
    type: path
    default: /usr/lib/ipxe
  dhcp_backend:
    description: The DHCP server, C(kea), C(isc) or C(proxy) (proxyDHCP, dnsmasq).
    type: str
    choices: [kea, isc, proxy]
    default: kea
  default_loader:
    description:
      - The loader chain of machines that are not nodes and of nodes that set no C(pxe_loader)
        (the server's own C(pxe_loader)).
    type: str
    choices: [ipxe, grub]
    default: ipxe
  shim_loaders:
    description: Shim file name per architecture slot of the C(grub) chain (C(pxe_server_shim_loaders)).
    type: dict
    default: {}
  secure_boot_http_image:
    description:
      - Answer UEFI HTTP boot (option 93 = 16) of the C(grub) chain with the Secure Boot disk
        image (shim, GRUB, its configurations, kernels and initrds), which centra.pxe.pxe_ipxe
        builds, instead of the shim's URL (C(pxe_server_secure_boot_http_image)).
    type: bool
    default: false
  facts:
    description:
      - The server's network facts (C(ansible_facts) with the network subset). Left out, the
        action gathers them from the server itself.
    type: dict
  fact_name:
    description: The name of the fact the context is returned in.
    type: str
    default: centra_pxe_server
attributes:
  check_mode:
    description: Runs as usual; it never changes anything.
    support: full
  diff_mode:
    description: Nothing to show; it never changes anything.
    support: none
  action:
    description: Runs on the controller as an action plugin (it gathers network facts from the server).
    support: full
"""

EXAMPLES = r"""
- name: Describe this PXE server
  centra.pxe.server_context:
    plan: "{{ centra_pxe_plan }}"
    interface: "{{ pxe_interface }}"
    root: /srv/centra-pxe
"""

RETURN = r"""
ansible_facts:
  description: The server context under O(fact_name) (see the description for its keys).
  returned: success
  type: dict
"""
