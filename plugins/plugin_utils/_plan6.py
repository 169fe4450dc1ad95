# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""The IPv6 part of the inventory model: IPv6 prefixes in pxe_subnets, a node's pxe_ip6
and pxe_duid, checked the way _plan_build.py checks the IPv4 part (every problem
collected, each naming where and the field). docs/ipv6.md describes the inventory.

In the plan, IPv6 lives apart from IPv4 so that every IPv4 consumer (the Kea DHCPv4
and dhcpd renderers, the proxy, the endpoint finder) stays as it is, and the plan of an
inventory without IPv6 (and so its digest) does not change:
    plan["subnets6"] = [{"id", "cidr", "network", "prefix", "pool": {"start", "end"} | None,
                         "dns": [...], "options": [...] (only when set)}]
                                                (only when an IPv6 prefix is given)
    node["ip6"], node["subnet6_id"]             (only when pxe_ip6 is set)
    node["duids"] = [canonical DUID, ...]       (only when pxe_duid is set)
    node["options6"] = [option entries]         (only when its groups or it set pxe_dhcp6_options)
DHCPv6 options are checked against the DHCPv6 table of _dhcp_options.py (V6).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import V6, check_options

Report = Callable[[str, str, str], None]  # (where, field, message)

SUBNET6_FIELDS = ("cidr", "pool", "dns", "id", "options")
# UEFI's PXEv6 and HTTPv6 clients, like SLAAC, expect an on-link /64.
SUBNET6_PREFIX = 64
# DHCPv6 backends: Kea only (dhcpd's DHCPv6 mode and dnsmasq's proxy are not used here).
V6_BACKENDS = ("kea",)
# RFC 8415, 11.1: a DUID is a 2-byte type and at most 128 bytes of identifier.
DUID_MAX_BYTES = 130
DUID_TYPES = {1: "DUID-LLT", 2: "DUID-EN", 3: "DUID-LL", 4: "DUID-UUID"}
_HEX_RE = re.compile(r"^[0-9a-f]+$")


class DuidError(ValueError):
    pass


def parse_duid(value: Any) -> str:
    """A DUID in Kea's form (lower-case hex bytes joined by colons), from "00:03:00:01:52:54:00:..",
    "00-03-00-01-..", or plain hex; DuidError says why not (and spots a MAC given instead)."""
    if not isinstance(value, str):
        raise DuidError("%r is not a DUID (a string of hex bytes such as 00:04:<uuid>)" % (value,))
    text = value.strip().lower()
    if re.match(r"^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$", text):  # Cisco's MAC notation
        text = text.replace(".", "")
    if re.match(r"^([0-9a-f]{1,2}[:-])+[0-9a-f]{1,2}$", text):
        data = bytes(int(part, 16) for part in re.split("[:-]", text))
    else:
        plain = text[2:] if text.startswith("0x") else text
        if not plain or len(plain) % 2 or not _HEX_RE.match(plain):
            raise DuidError("%r is not a DUID (hex bytes such as 00:04:<uuid>)" % (value,))
        data = bytes.fromhex(plain)
    if len(data) == 6:
        mac = ":".join("%02x" % b for b in data)
        raise DuidError("%r is a MAC address, not a DUID: DHCPv6 clients identify themselves by DUID; the DUID-LL "
                        "of that MAC is 00:03:00:01:%s (put MACs in pxe_mac)" % (value, mac))
    if len(data) < 3 or len(data) > DUID_MAX_BYTES:
        raise DuidError("%r has %d bytes: a DUID has 3 to %d" % (value, len(data), DUID_MAX_BYTES))
    duid_type = int.from_bytes(data[:2], "big")
    if duid_type not in DUID_TYPES:
        raise DuidError("%r starts with type %d: a DUID's type is 1 to 4 (%s)"
                        % (value, duid_type, ", ".join(DUID_TYPES.values())))
    return ":".join("%02x" % b for b in data)


def subnet6_id(network: ipaddress.IPv6Network) -> int:
    """The default Kea subnet id of a prefix: stable (the leases stay with it), from 1 to 2**32-2."""
    return zlib.crc32(str(network).encode()) % (2 ** 32 - 2) + 1


@dataclass
class Subnet6:
    network: ipaddress.IPv6Network
    pool: Optional[Tuple[ipaddress.IPv6Address, ipaddress.IPv6Address]]
    entry: Dict[str, Any]


def is_ipv6_cidr(cidr: Any) -> bool:
    """Whether a pxe_subnets cidr is meant as IPv6 (it has a colon); the parser says if it is one."""
    return isinstance(cidr, str) and ":" in cidr


def subnet6(index: int, item: Mapping[str, Any], reserved: Mapping[str, str], report: Report) -> Optional[Subnet6]:
    """One IPv6 entry of pxe_subnets, or None when it cannot be used."""
    cidr = item.get("cidr")
    try:
        network = ipaddress.IPv6Network(str(cidr), strict=True)
    except ValueError as exc:
        report("pxe_subnets[%d]" % index, "cidr", "%r is not an IPv6 prefix (%s)" % (cidr, exc))
        return None
    where = "subnet %s" % network
    for key in item:
        if key == "gateway":
            report(where, "gateway", "DHCPv6 has no router option: IPv6 routers announce themselves "
                   "(router advertisements)")
        elif key not in SUBNET6_FIELDS:
            report(where, str(key), "unknown field of an IPv6 subnet (known: %s)" % ", ".join(SUBNET6_FIELDS))
    if network.prefixlen != SUBNET6_PREFIX:
        report(where, "cidr", "is a /%d: an IPv6 provisioning prefix must be a /%d (UEFI PXEv6 and HTTPv6 "
               "clients, like SLAAC, expect an on-link /%d)" % (network.prefixlen, SUBNET6_PREFIX, SUBNET6_PREFIX))
    if network.is_link_local or network.is_multicast:
        report(where, "cidr", "is link-local or multicast: give the routable prefix of the provisioning network")
    pool = _pool6(where, network, item.get("pool"), report)
    for address, holder in sorted(reserved.items()):
        try:
            taken = ipaddress.IPv6Address(address)
        except ValueError:
            continue
        if pool and pool[0] <= taken <= pool[1]:
            report(where, "pool", "%s-%s contains %s, the address of %s" % (pool[0], pool[1], address, holder))
    dns_raw = item.get("dns", [])
    if isinstance(dns_raw, str):
        dns_raw = [dns_raw]
    dns: List[str] = []
    if not isinstance(dns_raw, list):
        report(where, "dns", "must be a list of IPv6 addresses, got %r" % (dns_raw,))
    else:
        for value in dns_raw:
            try:
                dns.append(str(ipaddress.IPv6Address(str(value))))
            except ValueError:
                report(where, "dns", "%r is not an IPv6 address (an IPv6 subnet's clients get IPv6 name servers)"
                       % (value,))
    sid = item.get("id", subnet6_id(network))
    if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid < 2 ** 32 - 1:
        report(where, "id", "must be a whole number from 1 to 4294967294, got %r" % (sid,))
        sid = 0
    entry = {
        "id": sid,
        "cidr": str(network),
        "network": str(network.network_address),
        "prefix": network.prefixlen,
        "pool": {"start": str(pool[0]), "end": str(pool[1])} if pool else None,
        "dns": dns,
    }
    options = check_options(item.get("options"), "options", lambda field, message: report(where, field, message), V6)
    if options:  # only when set: the plans (and digests) of inventories without any stay as they were
        entry["options"] = options
    return Subnet6(network, pool, entry)


def _pool6(where: str, network: ipaddress.IPv6Network, raw: Any, report: Report):
    if raw is None:
        return None
    parts = str(raw).replace(" ", "").split("-")
    if len(parts) != 2:
        report(where, "pool", "%r is not a range 'first-last'" % (raw,))
        return None
    try:
        start, end = (ipaddress.IPv6Address(p) for p in parts)
    except ValueError:
        report(where, "pool", "%r is not a range of IPv6 addresses" % (raw,))
        return None
    bad = False
    for address in (start, end):
        if address not in network:
            report(where, "pool", "%s is outside %s" % (address, network))
            bad = True
        elif address == network.network_address:
            report(where, "pool", "%s is the subnet-router anycast address of %s" % (address, network))
            bad = True
    if start > end:
        report(where, "pool", "%s comes after %s" % (start, end))
        bad = True
    return None if bad else (start, end)


def check_subnets6(subnets: Sequence[Subnet6], report: Report) -> None:
    """Across the IPv6 prefixes: no overlap, no shared id (Kea's dhcp6 ids are their own space)."""
    for i, a in enumerate(subnets):
        for b in subnets[i + 1:]:
            if a.network.overlaps(b.network):
                report("subnet %s" % b.network, "cidr", "overlaps subnet %s" % a.network)
    ids: Dict[int, str] = {}
    for s in subnets:
        sid = s.entry["id"]
        if sid in ids:
            report("subnet %s" % s.network, "id", "%d is also the id of subnet %s" % (sid, ids[sid]))
        ids[sid] = str(s.network)


def node6(where: str, name: str, node: Mapping[str, Any], subnets: Sequence[Subnet6],
          ip_owner: Dict[str, str], duid_owner: Dict[str, str], report: Report) -> Dict[str, Any]:
    """The IPv6 keys of a node's plan entry (none when it sets neither pxe_ip6 nor pxe_duid)."""
    out: Dict[str, Any] = {}
    errors = node.get("errors", {})
    raw_duid = node.get("pxe_duid")
    if raw_duid is not None and "pxe_duid" not in errors:
        duids = _duids(where, name, raw_duid, duid_owner, report)
        if duids:
            out["duids"] = duids
    raw_ip = node.get("pxe_ip6")
    if raw_ip is None or "pxe_ip6" in errors:
        return out
    try:
        address = ipaddress.IPv6Address(str(raw_ip))
    except ValueError:
        report(where, "pxe_ip6", "%r is not an IPv6 address" % (raw_ip,))
        return out
    text = str(address)
    subnet = next((s for s in subnets if address in s.network), None)
    if subnet is None:
        report(where, "pxe_ip6", "%s is in none of the IPv6 prefixes of pxe_subnets (%s)"
               % (text, ", ".join(str(s.network) for s in subnets) or "none given"))
        return out
    if address == subnet.network.network_address:
        report(where, "pxe_ip6", "%s is the subnet-router anycast address of %s" % (text, subnet.network))
    elif subnet.pool and subnet.pool[0] <= address <= subnet.pool[1]:
        report(where, "pxe_ip6", "%s lies inside the dynamic pool %s-%s of %s"
               % (text, subnet.pool[0], subnet.pool[1], subnet.network))
    elif text in ip_owner:
        report(where, "pxe_ip6", "%s is also the address of %s" % (text, ip_owner[text]))
    ip_owner.setdefault(text, "host %s" % name)
    out["ip6"] = text
    out["subnet6_id"] = subnet.entry["id"]
    return out


def _duids(where: str, name: str, raw: Any, owner: Dict[str, str], report: Report) -> List[str]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        report(where, "pxe_duid", "is an empty list")
    out = []
    for value in values:
        try:
            duid = parse_duid(value)
        except DuidError as exc:
            report(where, "pxe_duid", str(exc))
            continue
        if duid in owner:
            other = owner[duid]
            report(where, "pxe_duid", "%s is listed twice" % duid if other == name
                   else "%s is also the DUID of host %s" % (duid, other))
            continue
        owner[duid] = name
        out.append(duid)
    return out


def server_problems(subnets: Sequence[Subnet6], servers: Mapping[str, Mapping[str, Any]], report: Report) -> None:
    """What a PXE server cannot do with IPv6 prefixes: answer DHCPv6 with dhcpd or the proxy,
    or share them in an HA pair (the Kea HA hook is set up for kea-dhcp4 only)."""
    if not subnets:
        return
    prefixes = ", ".join(str(s.network) for s in subnets)
    for name, server in servers.items():
        backend = str(server.get("pxe_dhcp_backend") or "kea")
        if backend not in V6_BACKENDS:
            report("host %s" % name, "pxe_dhcp_backend", "%s answers DHCPv4 only: the IPv6 prefixes in pxe_subnets "
                   "(%s) need pxe_dhcp_backend: kea" % (backend, prefixes))
        if server.get("pxe_dhcp_ha"):
            report("host %s" % name, "pxe_dhcp_ha", "high availability covers DHCPv4 only: not with the IPv6 "
                   "prefixes in pxe_subnets (%s)" % prefixes)
