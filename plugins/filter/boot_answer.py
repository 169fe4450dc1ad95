# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: boot_answer
short_description: The DHCP answer the option-93 boot policy gives a client
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - The one boot policy of the collection (docs/architecture.md, Boot policy) as a filter. What a client sends goes in, the answer comes out.
  - Both DHCP backends are generated from the same table, so this is what Kea and dhcpd answer.
  - With O(proxy=true), what the proxyDHCP backend (dnsmasq) answers - no answer for a client that is not a PXE
    client (no option 93, or an option 60 other than C(PXEClient)/C(HTTPClient)), and C(next_server) on every answer.
options:
  _input:
    description:
      - The server, a mapping with C(address), C(http_base) and C(loaders) (slot to file name), and
        optionally C(shim_loaders) (shim file name per architecture, for the C(grub) chain) and
        C(default_loader) (C(ipxe) when left out). The fact C(centra_pxe_server) has them all.
    type: dict
    required: true
  arch:
    description: The first code of DHCP option 93; omit when the client sent none.
    type: int
  user_class:
    description: The user class (option 77) as text; iPXE sends C(iPXE).
    type: str
  option_175:
    description: Whether the client sent iPXE's option 175.
    type: bool
    default: false
  vendor_class:
    description: Option 60 as sent (C(PXEClient:Arch:00007...)); informational, except with O(proxy).
    type: str
  proxy:
    description: The answer of the proxyDHCP backend (C(pxe_dhcp_backend=proxy)) instead of Kea's and dhcpd's.
    type: bool
    default: false
  loader:
    description:
      - The node's C(pxe_loader). Omit it for a machine that is not a node, or a node that sets none -
        the server's C(default_loader) applies.
      - With C(grub), UEFI clients (option 93 = 7, 9, 11, 16, 19) get the shim of their architecture,
        when the server serves one; the others get the iPXE answer.
      - ARM64 clients (11, 19) get the arm64 shim whatever the loader, when the server serves it
        (C(shim_loaders.arm64)) - Debian has no arm64 iPXE.
    type: str
    choices: [ipxe, grub]
"""

EXAMPLES = r"""
# {"kind": "tftp", "filename": "ipxe.efi", "next_server": "192.0.2.2", ...}
answer: "{{ server | centra.pxe.boot_answer(arch=7) }}"
# The proxyDHCP's answer to UEFI HTTP boot: {"kind": "http", "filename": "http://192.0.2.2/loaders/ipxe.efi", ...}
proxy_answer: "{{ server | centra.pxe.boot_answer(arch=16, vendor_class='HTTPClient:Arch:00016', proxy=true) }}"
# A pxe_loader grub node booting over UEFI: {"kind": "tftp", "filename": "shimx64.efi", "loader": "grub", ...}
grub_answer: "{{ centra_pxe_server | centra.pxe.boot_answer(arch=7, loader='grub') }}"
"""

RETURN = r"""
  _value:
    description: The answer, with C(kind) (script, tftp, http or none), C(rule), C(filename), C(next_server), C(vendor_class),
      C(reason) and C(loader) (the chain the boot file starts, C(ipxe) or C(grub)).
    type: dict
"""

from dataclasses import asdict

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import boot_server, decide, decide_proxy
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter


def _answer(server, arch, user_class, option_175, vendor_class, proxy, loader):
    policy = decide_proxy if proxy else decide
    return asdict(policy(boot_server(server), arch=arch, option_175=option_175, vendor_class=vendor_class,
                         user_class=user_class.encode() if user_class is not None else None, loader=loader))


boot_answer = DocumentedFilter("boot_answer", DOCUMENTATION, _answer)


class FilterModule:
    def filters(self):
        return {"boot_answer": boot_answer}
