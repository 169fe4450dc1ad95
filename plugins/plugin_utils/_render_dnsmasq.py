# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""The proxyDHCP configuration (pxe_dhcp_backend: proxy) from the boot plan: dnsmasq in
proxy mode beside a DHCP server the site runs, answering PXE clients with boot
information only. The answers come from BOOT_RULES through decide_proxy(), like the
Kea and dhcpd configurations, so the three backends give the same boot files.

How dnsmasq (2.90, Debian 12) answers in proxy mode, and why the file looks as it does:
- DNS off (port=0), no leases (leasefile-ro), no TFTP (tftpd-hpa serves it): dnsmasq
  runs as proxyDHCP and nothing else.
- It answers only clients whose option 60 starts with a PXE vendor class
  (dhcp-pxe-vendor: PXEClient, and HTTPClient for UEFI HTTP boot) and that send option
  93, on port 67 (the proxy offer, yiaddr 0.0.0.0) and on 4011 (the request UEFI
  firmware sends to the proxy after the offer, PXE 2.1 "boot server").
- The boot file comes from dhcp-boot, one line per answer of the table, selected by
  tags (option 93, iPXE). No pxe-service lines: with none, dnsmasq sends PXE discovery
  control 8 ("no boot server discovery: use the boot file") instead of a menu that
  BIOS PXE ROMs would show and that iPXE would follow back into PXE (a loop). A
  pxe-prompt with timeout 0 is what switches dnsmasq's PXE processing on without a
  pxe-service.
- Every dhcp-boot names next-server: iPXE only takes a proxy offer's file together
  with a next-server (siaddr), also when the file is an HTTP URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, List

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    BOOT_RULES,
    IPXE_ENCAP_OPTION,
    IPXE_USER_CLASS,
    PROXY_VENDOR_CLASSES,
    boot_server,
    decide_proxy,
    loader_dependent_rules,
    node_loader,
)
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings

DNSMASQ_SETTINGS = ("interfaces", "log_dhcp")
TAG_PREFIX = "centra_"
IPXE_TAG = TAG_PREFIX + "ipxe"
# dnsmasq splits its values at commas and reads '#' as the start of a comment.
_UNSAFE = re.compile(r"[\s,#\"'\\]")


def _value(value: str, what: str) -> str:
    if not value or _UNSAFE.search(value):
        raise ValueError("refusing to put %s %r in the dnsmasq configuration (no blanks, commas, quotes or #)"
                         % (what, value))
    return value


def arch_tag(rule_name: str) -> str:
    return TAG_PREFIX + "arch_" + rule_name


def loader_tag(loader: str) -> str:
    return TAG_PREFIX + "loader_" + loader


def dnsmasq_proxy_config(plan: Mapping[str, Any], server: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The dnsmasq configuration text of a proxyDHCP server (checked by `dnsmasq --test`)."""
    opts = resolved_settings(settings, DNSMASQ_SETTINGS, "dnsmasq", "pxe_dhcp")
    boot = boot_server(server)
    address = str(ipaddress.IPv4Address(boot.address))
    lines = [
        "# Managed by centra.pxe: changes here are overwritten. Plan %s." % plan["digest"],
        "# proxyDHCP only: the site's DHCP server hands out the addresses; this adds the boot",
        "# information for PXE clients. No DNS, no leases, no TFTP (tftpd-hpa serves TFTP).",
        "port=0",
        "leasefile-ro",
        "pid-file=",
        "log-facility=-",
    ]
    if opts["log_dhcp"]:
        lines.append("log-dhcp")
    for interface in opts["interfaces"]:
        lines.append("interface=%s" % _value(str(interface), "interface"))
    lines.append("")
    for subnet in plan["subnets"]:
        lines.append("dhcp-range=%s,proxy,%s" % (subnet["network"], subnet["netmask"]))
    lines.append("dhcp-pxe-vendor=%s" % ",".join(PROXY_VENDOR_CLASSES))
    lines.append('pxe-prompt="centra.pxe",0')
    lines.append("")
    lines.append("# Boot policy (option 93), one tag per row of the table; iPXE is tagged apart.")
    lines.append("dhcp-userclass=set:%s,%s" % (IPXE_TAG, IPXE_USER_CLASS.decode()))
    lines.append("dhcp-match=set:%s,%d" % (IPXE_TAG, IPXE_ENCAP_OPTION))
    for rule in BOOT_RULES:
        for code in rule.arch_codes:
            if code is not None:  # no option 93: not a PXE client, dnsmasq's proxy does not answer
                lines.append("dhcp-match=set:%s,option:client-arch,%d" % (arch_tag(rule.name), code))
    dependent = {rule.name for rule in loader_dependent_rules(boot)}
    loaders = sorted({node_loader(node, boot) for node in plan["nodes"]} - {boot.default_loader}) if dependent else []
    if loaders:
        lines.append("# Nodes whose loader is not this server's default (%s), tagged by MAC." % boot.default_loader)
    for loader in loaders:
        for node in plan["nodes"]:
            if node_loader(node, boot) == loader:
                lines.extend("dhcp-host=%s,set:%s" % (mac, loader_tag(loader)) for mac in node["macs"])
    for rule in BOOT_RULES:
        answer = decide_proxy(boot, arch=rule.arch_codes[-1])
        # Where the loader changes the answer, the tags of the other loaders keep the lines
        # apart: exactly one dhcp-boot matches, whatever order dnsmasq tries them in.
        others = "".join(",tag:!%s" % loader_tag(loader) for loader in loaders if rule.name in dependent)
        if answer.kind == "none":
            lines.append("# %s: %s" % (rule.name, answer.reason))
        else:
            filename = _value(str(answer.filename), "boot file")
            lines.append("dhcp-boot=tag:%s,tag:!%s%s,%s,,%s" % (arch_tag(rule.name), IPXE_TAG, others, filename, address))
        if rule.name not in dependent:
            continue
        for loader in loaders:
            answer = decide_proxy(boot, arch=rule.arch_codes[-1], loader=loader)
            if answer.kind == "none":
                lines.append("# %s, loader %s: %s" % (rule.name, loader, answer.reason))
                continue
            filename = _value(str(answer.filename), "boot file")
            lines.append("dhcp-boot=tag:%s,tag:%s,tag:!%s,%s,,%s"
                         % (arch_tag(rule.name), loader_tag(loader), IPXE_TAG, filename, address))
    ipxe = decide_proxy(boot, arch=0, user_class=IPXE_USER_CLASS)
    lines.append("# iPXE, whatever its architecture: the boot script (stops the chainload loop).")
    lines.append("dhcp-boot=tag:%s,%s,,%s" % (IPXE_TAG, _value(str(ipxe.filename), "boot script URL"), address))
    return "\n".join(lines) + "\n"


def proxy_problems(plan_subnets: List[Mapping[str, Any]], nodes: List[Mapping[str, Any]],
                   servers: Mapping[str, Mapping[str, Any]]) -> List[tuple]:
    """What cannot work when a PXE server runs the proxy backend: (where, field, message) each.

    A proxyDHCP hands out no address and no option but the boot information: fixed
    addresses, pools, the router and DNS servers belong to the site's DHCP server; and
    two proxies need no HA pair (each answers alone, with its own address).
    """
    proxies = [name for name, s in servers.items() if s.get("pxe_dhcp_backend") == "proxy"]
    if not proxies:
        return []
    why = "pxe_dhcp_backend is proxy on %s: the site's DHCP server hands out addresses and options" % ", ".join(proxies)
    out = []
    for subnet in plan_subnets:
        for field in ("pool", "gateway", "dns"):
            if subnet.get(field):
                out.append(("subnet %s" % subnet["cidr"], field, "cannot be served (%s); remove it" % why))
    for node in nodes:
        if node.get("ip"):
            out.append(("host %s" % node["name"], "pxe_ip",
                        "%s cannot be given out (%s): reserve it there, or remove it" % (node["ip"], why)))
    for name in proxies:
        if servers[name].get("pxe_dhcp_ha") not in (None, {}):
            out.append(("host %s" % name, "pxe_dhcp_ha", "a proxyDHCP server has no HA pair: every proxy "
                        "answers alone with its own address; remove it"))
    return out
