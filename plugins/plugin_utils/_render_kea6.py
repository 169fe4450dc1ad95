# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""The Kea DHCPv6 configuration (kea-dhcp6.conf) from the boot plan: IPv6 PXE and HTTP boot.

The same boot policy table as DHCPv4 (module_utils/_boot_policy.py), read through
DHCPv6's options (RFC 5970): the client's architecture comes in option 61 (the codes of
DHCPv4's option 93), the answer goes out as option 59, the boot-file URL:
- UEFI PXEv6 (7, 9, ...): tftp://[server]/<the EFI loader>;
- UEFI HTTPv6 (16, 19): http://[server]/loaders/<loader>, with vendor class (option 16)
  "HTTPClient", without which EDK2's HTTP boot driver takes the offer for a plain one;
- iPXE (user class "iPXE", option 15): the URL of its boot script.
A client without option 61 is no network-boot client: it gets an address, no boot file.

docs/ipv6.md describes what this covers; the renderer knows no defaults (see _render_dhcp.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import (
    BOOT_RULES,
    HTTP_CLIENT_VENDOR_CLASS,
    IPXE_USER_CLASS,
    BootAnswer,
    BootRule,
    BootServer,
    decide,
)
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings
from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import V6, kea_option_data, kea_option_defs

KEA6_CLASS_PREFIX = "centra6_"
KEA6_SETTINGS = ("interfaces", "lease_file", "control_socket", "valid_lifetime", "socket_retries",
                 "socket_retry_wait_ms", "log_severity")
# The enterprise number of the vendor class the server sends to UEFI HTTPv6 clients (PXE's,
# Intel's; EDK2 reads only the "HTTPClient" after it).
HTTP_CLIENT_ENTERPRISE = 343
# DHCPv6 options by code (RFC 8415, RFC 5970).
OPT_USER_CLASS = 15
OPT_CLIENT_ARCH = 61


class Kea6Error(ValueError):
    pass


def _bracketed(address: str) -> str:
    return "[%s]" % address


def v6_boot_server(server: Mapping[str, Any]) -> BootServer:
    """The BootServer a DHCPv6 client sees: the server's IPv6 address, its URLs in brackets."""
    address6 = server.get("address6")
    if not address6:
        raise Kea6Error("PXE server %s has no IPv6 address in an IPv6 prefix of pxe_subnets: give its provisioning "
                        "interface one (or set pxe_server_address6)" % server.get("name", "?"))
    port = int(server.get("http_port", 80))
    base = "http://%s%s" % (_bracketed(str(address6)), "" if port == 80 else ":%d" % port)
    return BootServer(address=str(address6), http_base=base,
                      loaders={k: (v or None) for k, v in dict(server.get("loaders") or {}).items()})


def boot_file_url(boot: BootServer, answer: BootAnswer) -> Optional[str]:
    """Option 59 for an answer of the policy table: a TFTP answer becomes a tftp:// URL."""
    if answer.kind == "tftp":
        return "tftp://%s/%s" % (_bracketed(boot.address), str(answer.filename).lstrip("/"))
    if answer.kind in ("http", "script"):
        return answer.filename
    return None


def decide6(boot: BootServer, arch: Optional[int] = None, user_class: Optional[bytes] = None) -> BootAnswer:
    """The policy table's answer to a DHCPv6 client (None: option 61 absent)."""
    if arch is None and not (user_class is not None and user_class == IPXE_USER_CLASS):
        return BootAnswer("none", "unknown", reason="option 61 absent: not a network-boot client")
    return decide(boot, arch=arch, user_class=user_class)


def http_client_vendor_class() -> Dict[str, Any]:
    """Option 16 carrying "HTTPClient": Kea 2.2 takes its data as enterprise number, then the
    vendor-class-data as hex with its 2-byte length (RFC 8415, 21.16)."""
    data = HTTP_CLIENT_VENDOR_CLASS.encode()
    return {"name": "vendor-class", "data": "%d, %04x%s" % (HTTP_CLIENT_ENTERPRISE, len(data), data.hex()),
            "always-send": True}


def _arch_test(rule: BootRule) -> Optional[str]:
    codes = [c for c in rule.arch_codes if c is not None]
    if not codes:
        return None
    return " or ".join("substring(option[%d].hex,0,2) == 0x%04x" % (OPT_CLIENT_ARCH, c) for c in codes)


def kea6_client_classes(boot: BootServer) -> List[Dict[str, Any]]:
    """The option-61 classes, from BOOT_RULES; only those that carry an answer."""
    ipxe = KEA6_CLASS_PREFIX + "ipxe"
    script = boot_file_url(boot, decide6(boot, user_class=IPXE_USER_CLASS))
    classes: List[Dict[str, Any]] = [{
        "name": ipxe,
        # DHCPv6 user class data is a list of length-prefixed strings (RFC 8415, 21.15):
        # iPXE sends one, "iPXE", after its 2-byte length.
        "test": "substring(option[%d].hex,2,%d) == '%s'"
                % (OPT_USER_CLASS, len(IPXE_USER_CLASS), IPXE_USER_CLASS.decode()),
        "option-data": [{"name": "bootfile-url", "data": script, "always-send": True}],
    }]
    for rule in BOOT_RULES:
        test = _arch_test(rule)
        answer = decide6(boot, arch=rule.arch_codes[-1])
        url = boot_file_url(boot, answer)
        if test is None or url is None:
            continue  # no loader for it: the class would only cost (see kea_client_classes)
        options = [{"name": "bootfile-url", "data": url, "always-send": True}]
        if answer.kind == "http":
            options.append(http_client_vendor_class())
        classes.append({"name": KEA6_CLASS_PREFIX + "arch_" + rule.name,
                        "test": "not member('%s') and (%s)" % (ipxe, test),
                        "option-data": options})
    return classes


def _reservations(nodes: List[Mapping[str, Any]], subnet_id: int) -> List[Dict[str, Any]]:
    out = []
    for node in nodes:
        if node.get("subnet6_id") != subnet_id or not node.get("ip6"):
            continue
        # By DUID when the inventory gives one (what a DHCPv6 client identifies itself by);
        # else by MAC, which Kea learns from a DUID-LL(T), the client's EUI-64 link-local
        # address, or a relay's option 79 (docs/ipv6.md).
        identifiers = [("duid", d) for d in node.get("duids", [])] or [("hw-address", m) for m in node["macs"]]
        for key, value in identifiers:
            reservation = {key: value, "ip-addresses": [node["ip6"]], "hostname": node["name"]}
            if node.get("options6"):
                reservation["option-data"] = kea_option_data(node["options6"], V6)
            out.append(reservation)
    return out


def kea_dhcp6_config(plan: Mapping[str, Any], server: Mapping[str, Any], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The whole kea-dhcp6 configuration ({"Dhcp6": ...}) for one PXE server.

    server: the server context (its "address6", "cidr6", "interface", "http_port", "loaders").
    """
    opts = resolved_settings(settings, KEA6_SETTINGS, "Kea DHCPv6", "pxe_dhcp")
    subnets6 = plan.get("subnets6") or []
    if not subnets6:
        raise Kea6Error("the boot plan has no IPv6 prefix: there is nothing for kea-dhcp6 to serve")
    boot = v6_boot_server(server)
    interface = str(server.get("interface") or "")
    nodes = plan["nodes"]
    subnets = []
    shared_ip = False
    for subnet in subnets6:
        entry: Dict[str, Any] = {"id": subnet["id"], "subnet": subnet["cidr"]}
        if subnet["cidr"] == server.get("cidr6") and interface:
            # Kea picks the subnet of a directly connected client by the interface it came in on.
            entry["interface"] = interface
        if subnet.get("pool"):
            entry["pools"] = [{"pool": "%s - %s" % (subnet["pool"]["start"], subnet["pool"]["end"])}]
        option_data = [{"name": "dns-servers", "data": ", ".join(subnet["dns"])}] if subnet.get("dns") else []
        option_data += kea_option_data(subnet.get("options", []), V6)
        if option_data:
            entry["option-data"] = option_data
        reservations = _reservations(nodes, subnet["id"])
        if reservations:
            entry["reservations"] = reservations
            shared_ip = shared_ip or len({r["ip-addresses"][0] for r in reservations}) < len(reservations)
        subnets.append(entry)
    lifetime = int(opts["valid_lifetime"])
    dhcp6: Dict[str, Any] = {
        "interfaces-config": {
            "interfaces": list(opts["interfaces"]),
            "service-sockets-max-retries": int(opts["socket_retries"]),
            "service-sockets-retry-wait-time": int(opts["socket_retry_wait_ms"]),
        },
        "control-socket": {"socket-type": "unix", "socket-name": opts["control_socket"]},
        "lease-database": {"type": "memfile", "persist": True, "name": opts["lease_file"], "lfc-interval": 3600},
        "valid-lifetime": lifetime,
        "preferred-lifetime": lifetime,
        "host-reservation-identifiers": ["duid", "hw-address"],
        "client-classes": kea6_client_classes(boot),
        "subnet6": subnets,
        "loggers": [{"name": "kea-dhcp6", "severity": opts["log_severity"], "output_options": [{"output": "stdout"}]}],
        "user-context": {"centra.pxe": {"plan": plan["digest"]}},
    }
    option_defs = kea_option_defs(plan, V6)
    if option_defs:
        dhcp6["option-def"] = option_defs
    if shared_ip:
        # One fixed address for every NIC (or DUID) of a node: only one of them boots at a time.
        dhcp6["ip-reservations-unique"] = False
    return {"Dhcp6": dhcp6}
