# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""DHCP options a site sets (domain, NTP, MTU, routes, ...): the option tables (one for
DHCPv4, one for DHCPv6: their codes and types differ), the check of inventory values
against them, and their rendering for Kea (DHCPv4 and DHCPv6) and ISC dhcpd (DHCPv4).

Inventory values are checked here and normalised into plan entries
{"code", "name" (the table's name, or None for an option given by code), "type", "value"};
both renderers take those entries, so Kea and dhcpd send the same option with the same
value. Options the boot policy, the plan or the DHCP protocol own are refused, with the
field to use instead where there is one.

A table (OptionTable) holds a family's options, the codes the collection or the protocol
owns, and the codes Kea defines itself; V4 and V6 are the two. Functions take the table
(V4 unless told): the rules are written once, the tables say what differs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, List, Optional, Tuple

# The value types. "domain" is one domain name sent as text (option 15, RFC 2132);
# "domain-list" is RFC 1035 wire form (option 119, RFC 3397); "routes" is RFC 3442.
# "ip6"/"ip6-list" are IPv6 addresses; "ntp6" is DHCPv6's NTP server option (RFC 5908):
# a list of IPv6 addresses, each sent as a server-address suboption.
TYPES = ("ip", "ip-list", "text", "domain", "domain-list", "uint8", "uint16", "uint32", "int32",
         "bool", "routes", "hex", "ip6", "ip6-list", "ntp6")
V4_TYPES = TYPES[:12]
V6_TYPES = ("ip6", "ip6-list", "text", "domain", "domain-list", "uint8", "uint16", "uint32", "int32", "bool", "hex",
            "ntp6")
INT_RANGES = {"uint8": (0, 2 ** 8 - 1), "uint16": (0, 2 ** 16 - 1), "uint32": (0, 2 ** 32 - 1),
              "int32": (-2 ** 31, 2 ** 31 - 1)}
# How each type is declared for an option the server has no definition of.
KEA_DEF_TYPES = {"ip": ("ipv4-address", False), "ip-list": ("ipv4-address", True), "text": ("string", False),
                 "domain": ("string", False), "domain-list": ("fqdn", True), "uint8": ("uint8", False),
                 "uint16": ("uint16", False), "uint32": ("uint32", False), "int32": ("int32", False),
                 "bool": ("boolean", False), "routes": ("binary", False), "hex": ("binary", False),
                 "ip6": ("ipv6-address", False), "ip6-list": ("ipv6-address", True), "ntp6": ("binary", False)}
ISC_DEF_TYPES = {"ip": "ip-address", "ip-list": "array of ip-address", "text": "text", "domain": "text",
                 "domain-list": "domain-list", "uint8": "unsigned integer 8", "uint16": "unsigned integer 16",
                 "uint32": "unsigned integer 32", "int32": "signed integer 32", "bool": "boolean",
                 "routes": "string", "hex": "string"}
CUSTOM_PREFIX = "centra-"  # the name both backends declare an option by code under: centra-224


@dataclass(frozen=True)
class DhcpOption:
    name: str
    code: int
    type: str
    kea: Optional[str]  # Kea 2.2's standard name; None: Kea has no definition (an option-def is rendered)
    isc: Optional[str]  # dhcpd 4.4's name; None: declared as centra-<code>
    low: Optional[int] = None   # tighter bounds than the type's, for integers
    high: Optional[int] = None


def _std(name: str, code: int, kind: str, low: Optional[int] = None, high: Optional[int] = None) -> DhcpOption:
    """An option both servers define under the same name."""
    return DhcpOption(name, code, kind, name, name, low, high)


V4_OPTIONS: Tuple[DhcpOption, ...] = (
    _std("time-offset", 2, "int32"),
    _std("time-servers", 4, "ip-list"),
    _std("log-servers", 7, "ip-list"),
    _std("lpr-servers", 9, "ip-list"),
    _std("domain-name", 15, "domain"),
    _std("ip-forwarding", 19, "bool"),
    _std("default-ip-ttl", 23, "uint8", 1),
    _std("interface-mtu", 26, "uint16", 68),  # RFC 2132: at least 68
    _std("broadcast-address", 28, "ip"),
    _std("arp-cache-timeout", 35, "uint32"),
    _std("default-tcp-ttl", 37, "uint8", 1),
    _std("tcp-keepalive-interval", 38, "uint32"),
    _std("nis-domain", 40, "text"),
    _std("nis-servers", 41, "ip-list"),
    _std("ntp-servers", 42, "ip-list"),
    _std("netbios-name-servers", 44, "ip-list"),
    _std("netbios-node-type", 46, "uint8", 1, 8),
    _std("netbios-scope", 47, "text"),
    _std("smtp-server", 69, "ip-list"),
    _std("pop-server", 70, "ip-list"),
    _std("domain-search", 119, "domain-list"),
    # Kea 2.2 and dhcpd 4.4 have no definition of 121: both get one declared.
    DhcpOption("classless-static-routes", 121, "routes", None, None),
    # Web proxy auto-discovery (a draft, widely used): no definition in either server.
    DhcpOption("wpad-url", 252, "text", None, None),
)

# Options the collection sets itself, with what to use instead.
V4_OWNED: Dict[int, str] = {
    1: "subnet-mask comes from the subnet's cidr",
    3: "routers: set the subnet's gateway field",
    6: "domain-name-servers: set the subnet's dns field",
    12: "host-name is the node's inventory name",
    43: "vendor-encapsulated-options belongs to the boot policy (PXE vendor options)",
    51: "the lease time is pxe_dhcp_valid_lifetime",
    60: "vendor-class-identifier belongs to the boot policy (HTTPClient for UEFI HTTP boot)",
    66: "tftp-server-name belongs to the boot policy (next-server)",
    67: "boot-file-name belongs to the boot policy (pxe_server_loaders)",
    175: "option 175 is iPXE's, which the boot policy reads",
}
# Codes of the DHCP exchange itself, or sent by clients and relays, never by a server's configuration.
V4_PROTOCOL = frozenset((50, 52, 53, 54, 55, 56, 57, 58, 59, 61, 77, 81, 82, 91, 92, 93, 94, 97, 118, 124, 125))
# Codes Kea 2.2 has a standard definition of ("kea-dhcp4 -t" refuses an option-def for
# any of them). One not in OPTIONS cannot be given by code: Kea would read the value
# with its own definition, dhcpd with ours, and they could disagree.
V4_KEA_DEFINED = frozenset((
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
    58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 81, 82, 85, 86, 87,
    88, 89, 90, 91, 92, 93, 94, 97, 98, 99, 100, 101, 108, 112, 113, 114, 116, 117, 118, 119, 124, 125, 136,
    137, 138, 141, 146, 159, 212, 213))
# DHCPv6 (RFC 8415 and the RFCs named). Kea 2.2 defines all but ntp-servers (RFC 5908).
V6_OPTIONS: Tuple[DhcpOption, ...] = (
    DhcpOption("sip-server-dns", 21, "domain-list", "sip-server-dns", None),
    DhcpOption("sip-server-addr", 22, "ip6-list", "sip-server-addr", None),
    DhcpOption("domain-search", 24, "domain-list", "domain-search", None),
    DhcpOption("nis-servers", 27, "ip6-list", "nis-servers", None),
    DhcpOption("nisp-servers", 28, "ip6-list", "nisp-servers", None),
    DhcpOption("sntp-servers", 31, "ip6-list", "sntp-servers", None),
    DhcpOption("information-refresh-time", 32, "uint32", "information-refresh-time", None, 600),  # RFC 8415: >= 600
    DhcpOption("new-posix-timezone", 41, "text", "new-posix-timezone", None),
    DhcpOption("new-tzdb-timezone", 42, "text", "new-tzdb-timezone", None),
    DhcpOption("ntp-servers", 56, "ntp6", None, None),
    DhcpOption("aftr-name", 64, "domain", "aftr-name", None),
)
V6_OWNED: Dict[int, str] = {
    16: "vendor-class belongs to the boot policy (HTTPClient for UEFI HTTPv6 boot)",
    23: "dns-servers: set the IPv6 subnet's dns field",
    59: "bootfile-url belongs to the boot policy (pxe_server_loaders)",
    60: "bootfile-param belongs to the boot policy",
}
V6_PROTOCOL = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18, 19, 20, 25, 26, 37, 38, 39, 61, 62,
                         79))
# Codes Kea 2.2's kea-dhcp6 has a definition of (it refuses an option-def for each; found
# by asking kea-dhcp6 -t for every code 1-255).
V6_KEA_DEFINED = frozenset((
    1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31, 32, 33, 34, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 51, 52, 53, 57, 58, 59, 60, 61, 62, 64,
    65, 66, 67, 74, 79, 80, 82, 83, 87, 88, 94, 95, 96, 103, 135, 143))


@dataclass(frozen=True)
class OptionTable:
    """One family's options and rules: what check_options and the Kea renderers read."""

    family: str                       # "DHCPv4", "DHCPv6": for messages
    options: Tuple[DhcpOption, ...]
    owned: Dict[int, str]
    protocol: frozenset
    kea_defined: frozenset
    types: Tuple[str, ...]
    kea_space: str                    # Kea's option space for option-def entries
    max_code: int
    max_bytes: int                    # one option's payload: DHCPv4's length is a byte (no RFC 3396 splitting)

    @cached_property
    def by_name(self) -> Dict[str, DhcpOption]:
        return {o.name: o for o in self.options}

    @cached_property
    def by_code(self) -> Dict[int, DhcpOption]:
        return {o.code: o for o in self.options}


V4 = OptionTable("DHCPv4", V4_OPTIONS, V4_OWNED, V4_PROTOCOL, V4_KEA_DEFINED, V4_TYPES, "dhcp4", 254, 255)
V6 = OptionTable("DHCPv6", V6_OPTIONS, V6_OWNED, V6_PROTOCOL, V6_KEA_DEFINED, V6_TYPES, "dhcp6", 65535, 1024)
CODE_KEY_RE = re.compile(r"^(?:option-)?([0-9]{1,5})$")
DOMAIN_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
HEX_RE = re.compile(r"^[0-9A-Fa-f]{2}([:\s]?[0-9A-Fa-f]{2})*$")

Report = Callable[[str, str], None]  # (field, message): one problem, where the caller knows where


class _Bad(ValueError):
    """A value that does not fit its type: the message says why."""


def _ip(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise _Bad("%r is not an IPv4 address" % (value,)) from None


def _ip6(value: Any) -> str:
    try:
        return str(ipaddress.IPv6Address(str(value).strip()))
    except ValueError:
        raise _Bad("%r is not an IPv6 address" % (value,)) from None


def _listed(value: Any) -> List[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _Bad("is an empty list")
    return values


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("must be a non-empty string, got %r" % (value,))
    if any(not (" " <= c <= "~") or c in '"\\' for c in value):
        raise _Bad("%r must be printable ASCII without quotes or backslashes" % (value,))
    return value


def _domain(value: Any) -> str:
    if not isinstance(value, str) or len(value.rstrip(".")) > 253 or not DOMAIN_RE.match(value):
        raise _Bad("%r is not a domain name" % (value,))
    return value.rstrip(".").lower()


def _int(kind: str, option: Optional[DhcpOption], value: Any) -> int:
    if isinstance(value, str) and re.match(r"^-?[0-9]+$", value.strip()):
        value = int(value)  # a templated value arrives as a string
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("must be a whole number, got %r" % (value,))
    low, high = INT_RANGES[kind]
    if option is not None:
        low = option.low if option.low is not None else low
        high = option.high if option.high is not None else high
    if not low <= value <= high:
        raise _Bad("%d is outside %d-%d" % (value, low, high))
    return value


def _routes(value: Any) -> List[Dict[str, str]]:
    routes = []
    for item in _listed(value):
        if not isinstance(item, Mapping) or set(item) != {"network", "router"}:
            raise _Bad("each route must be {network: CIDR, router: ADDRESS}, got %r" % (item,))
        try:
            network = ipaddress.IPv4Network(str(item["network"]), strict=True)
        except ValueError as exc:
            raise _Bad("route network %r is not an IPv4 network (%s)" % (item["network"], exc)) from None
        routes.append({"network": str(network), "router": _ip(item["router"])})
    return routes


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not HEX_RE.match(value.strip()):
        raise _Bad("%r is not hex bytes such as 0a1b2c or 0a:1b:2c" % (value,))
    return re.sub(r"[:\s]", "", value.strip()).lower()


def check_value(kind: str, value: Any, option: Optional[DhcpOption] = None) -> Any:
    """The value in its plan form, or _Bad saying why it does not fit the type."""
    if kind == "ip":
        return _ip(value)
    if kind == "ip-list":
        return [_ip(v) for v in _listed(value)]
    if kind == "ip6":
        return _ip6(value)
    if kind in ("ip6-list", "ntp6"):
        return [_ip6(v) for v in _listed(value)]
    if kind == "text":
        return _text(value)
    if kind == "domain":
        return _domain(value)
    if kind == "domain-list":
        return [_domain(v) for v in _listed(value)]
    if kind in INT_RANGES:
        return _int(kind, option, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _Bad("must be true or false, got %r" % (value,))
        return value
    if kind == "routes":
        return _routes(value)
    if kind == "hex":
        return _hex(value)
    raise _Bad("unknown type %r (known: %s)" % (kind, ", ".join(TYPES)))


def wire(kind: str, value: Any) -> bytes:
    """The option's payload as it goes on the wire (its length is checked; routes and hex are sent so)."""
    if kind == "ip":
        return ipaddress.IPv4Address(value).packed
    if kind == "ip-list":
        return b"".join(ipaddress.IPv4Address(v).packed for v in value)
    if kind == "ip6":
        return ipaddress.IPv6Address(value).packed
    if kind == "ip6-list":
        return b"".join(ipaddress.IPv6Address(v).packed for v in value)
    if kind == "ntp6":
        # RFC 5908: one NTP_SUBOPTION_SRV_ADDR (1, 16 bytes) per server.
        return b"".join(b"\0\1\0\x10" + ipaddress.IPv6Address(v).packed for v in value)
    if kind in ("text", "domain"):
        return value.encode("ascii")
    if kind == "domain-list":
        return b"".join(b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"
                        for name in value)
    if kind in INT_RANGES:
        size = {"uint8": 1, "uint16": 2, "uint32": 4, "int32": 4}[kind]
        return value.to_bytes(size, "big", signed=kind == "int32")
    if kind == "bool":
        return b"\1" if value else b"\0"
    if kind == "routes":
        out = b""
        for route in value:
            network = ipaddress.IPv4Network(route["network"])
            significant = (network.prefixlen + 7) // 8  # RFC 3442: only the octets the prefix covers
            out += bytes([network.prefixlen]) + network.network_address.packed[:significant]
            out += ipaddress.IPv4Address(route["router"]).packed
        return out
    if kind == "hex":
        return bytes.fromhex(value)
    raise ValueError("unknown option type %r" % kind)


def _refusal(code: int, table: OptionTable) -> Optional[str]:
    if code in table.owned:
        return "option %d is set by centra.pxe: %s" % (code, table.owned[code])
    if code in table.protocol:
        return "option %d belongs to the DHCP exchange (the server or the client sets it)" % code
    return None


def _by_code(code: int, raw: Any, table: OptionTable) -> Tuple[Optional[DhcpOption], str, Any]:
    """(table entry or None, type, raw value) for an option given by its code."""
    if not 1 <= code <= table.max_code:
        raise _Bad("code %d is outside 1-%d" % (code, table.max_code))
    refusal = _refusal(code, table)
    if refusal:
        raise _Bad(refusal)
    option = table.by_code.get(code)
    if option is None and code in table.kea_defined:
        raise _Bad("code %d has a standard definition in Kea (%s) that the option table of centra.pxe lacks: "
                   "it cannot be given by code (ask for it to be added to the table)" % (code, table.family))
    if isinstance(raw, Mapping) and "type" in raw:
        if set(raw) != {"type", "value"}:
            raise _Bad("give {type: TYPE, value: VALUE}, got keys %s" % ", ".join(sorted(map(str, raw))))
        kind = raw["type"]
        if kind not in table.types:
            raise _Bad("type %r is not one of %s (%s)" % (kind, ", ".join(table.types), table.family))
        if option is not None and kind != option.type:
            raise _Bad("code %d is %s, of type %s, not %s" % (code, option.name, option.type, kind))
        return option, kind, raw["value"]
    if option is not None:
        return option, option.type, raw
    raise _Bad("an option by code needs its type: {type: TYPE, value: VALUE} with TYPE one of %s"
               % ", ".join(table.types))


def check_options(raw: Any, field: str, report: Report, table: OptionTable = V4) -> List[Dict[str, Any]]:
    """Plan entries (sorted by code) for an inventory mapping name-or-code -> value, against
    the table of its family.

    Every problem goes to report(field, message), field naming the option
    ("options.interface-mtu", "pxe_dhcp_options.224"); bad options are left out.
    """
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        report(field, "must be a mapping of option name (or code) to value, got %r" % (raw,))
        return []
    entries: Dict[int, Dict[str, Any]] = {}
    for key in raw:
        where = "%s.%s" % (field, key)
        value = raw[key]
        try:
            match = CODE_KEY_RE.match(str(key)) if not isinstance(key, bool) else None
            if match:
                option, kind, value = _by_code(int(match.group(1)), value, table)
            elif str(key) in table.by_name:
                option = table.by_name[str(key)]
                kind = option.type
            elif table is V6 and str(key) in V4.by_name:
                raise _Bad("is a DHCPv4 option: DHCPv6 has no such option (IPv6 routers announce the MTU and "
                           "routes in their advertisements); set it on the IPv4 subnet or in pxe_dhcp_options")
            else:
                known = ", ".join(sorted(table.by_name))
                raise _Bad("unknown option name (known %s options: %s; or give a code 1-%d with {type, value})"
                           % (table.family, known, table.max_code))
            checked = check_value(kind, value, option)
            size = len(wire(kind, checked))
            if size > table.max_bytes:
                raise _Bad("is %d bytes long: one option holds at most %d" % (size, table.max_bytes))
        except _Bad as exc:
            report(where, str(exc))
            continue
        code = option.code if option else int(match.group(1))  # type: ignore[union-attr]
        if code in entries:
            report(where, "option %d is given twice (by name and by code)" % code)
            continue
        entries[code] = {"code": code, "name": option.name if option else None, "type": kind, "value": checked}
    return [entries[code] for code in sorted(entries)]


def merge_options(*layers: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Plan entries of several layers, a later layer's option replacing an earlier one's of the same code."""
    merged: Dict[int, Dict[str, Any]] = {}
    for layer in layers:
        for entry in layer:
            merged[entry["code"]] = entry
    return [merged[code] for code in sorted(merged)]


def _declared(entry: Mapping[str, Any], backend: str, table: OptionTable = V4) -> bool:
    """Whether the backend needs a declaration for this option (it has no definition of its own)."""
    option = table.by_code.get(entry["code"])
    return option is None or (option.kea if backend == "kea" else option.isc) is None


def _custom_name(code: int) -> str:
    return "%s%d" % (CUSTOM_PREFIX, code)


def used_declarations(plan: Mapping[str, Any], table: OptionTable = V4) -> List[Tuple[int, str]]:
    """(code, type) of every option of the family in the plan that some backend must declare, by code:
    DHCPv4's in subnets[] and nodes' "options", DHCPv6's in subnets6[] and nodes' "options6"."""
    found: Dict[int, str] = {}
    subnets, node_key = (plan["subnets"], "options") if table is V4 else (plan.get("subnets6") or [], "options6")
    entries = [e for s in subnets for e in s.get("options", ())] + [e for n in plan["nodes"] for e in n.get(node_key, ())]
    for entry in entries:
        found[entry["code"]] = entry["type"]
    return sorted(found.items())


# -- Kea ----------------------------------------------------------------------------
def kea_option_defs(plan: Mapping[str, Any], table: OptionTable = V4) -> List[Dict[str, Any]]:
    """option-def entries for the options of the plan that Kea has no definition of."""
    defs = []
    for code, kind in used_declarations(plan, table):
        if _declared({"code": code}, "kea", table):
            kea_type, array = KEA_DEF_TYPES[kind]
            defs.append({"name": _custom_name(code), "code": code, "space": table.kea_space, "type": kea_type,
                         "array": array})
    return defs


def kea_option_data(entries: List[Mapping[str, Any]], table: OptionTable = V4) -> List[Dict[str, Any]]:
    """option-data entries for plan option entries."""
    out = []
    for entry in entries:
        code, kind, value = entry["code"], entry["type"], entry["value"]
        option = table.by_code.get(code)
        name = option.kea if option is not None and option.kea else _custom_name(code)
        item: Dict[str, Any] = {"name": name}
        if kind in ("routes", "hex", "ntp6"):
            item["data"] = wire(kind, value).hex()
            item["csv-format"] = False
        elif kind in ("ip-list", "ip6-list", "domain-list"):
            item["data"] = ", ".join(value)
        elif kind == "bool":
            item["data"] = "true" if value else "false"
        elif kind in ("text", "domain"):
            item["data"] = value.replace(",", "\\,")  # Kea splits option data at unescaped commas
        else:
            item["data"] = str(value)
        out.append(item)
    return out


# -- ISC dhcpd ----------------------------------------------------------------------
def isc_declarations(plan: Mapping[str, Any]) -> List[str]:
    """'option centra-NNN code NNN = TYPE;' for the options of the plan dhcpd has no definition of."""
    return ["option %s code %d = %s;" % (_custom_name(code), code, ISC_DEF_TYPES[kind])
            for code, kind in used_declarations(plan) if _declared({"code": code}, "isc")]


def isc_option_statements(entries: List[Mapping[str, Any]]) -> List[str]:
    """'option NAME VALUE;' statements for plan option entries."""
    out = []
    for entry in entries:
        code, kind, value = entry["code"], entry["type"], entry["value"]
        option = V4.by_code.get(code)
        name = option.isc if option is not None and option.isc else _custom_name(code)
        if kind in ("routes", "hex"):
            text = ":".join("%02x" % b for b in wire(kind, value))
        elif kind == "ip-list":
            text = ", ".join(value)
        elif kind == "domain-list":
            text = ", ".join('"%s"' % v for v in value)
        elif kind in ("text", "domain"):
            text = '"%s"' % value  # check_value refused quotes and backslashes
        elif kind == "bool":
            text = "true" if value else "false"
        else:
            text = str(value)
        out.append("option %s %s;" % (name, text))
    return out
