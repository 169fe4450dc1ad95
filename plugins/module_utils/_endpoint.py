# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which interface and address of a PXE server face the provisioning network."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Dict, Iterator, Optional, Tuple


class EndpointError(ValueError):
    pass


def _ipv4_of(facts: Mapping[str, Any], name: str) -> Iterator[str]:
    data = facts.get(name.replace("-", "_").replace(".", "_")) or facts.get(name) or {}
    entries = []
    if isinstance(data.get("ipv4"), Mapping):
        entries.append(data["ipv4"])
    entries.extend(e for e in data.get("ipv4_secondaries", []) if isinstance(e, Mapping))
    for entry in entries:
        if entry.get("address"):
            yield str(entry["address"])


def server_endpoint(plan: Mapping[str, Any], facts: Mapping[str, Any], interface: Optional[str] = None,
                    address: Optional[str] = None) -> Dict[str, Any]:
    """The provisioning interface: the one named, else the one holding an address in a
    pxe_subnets cidr. facts are the host's ansible_facts (network subset)."""
    networks = [(ipaddress.IPv4Network(s["cidr"]), s["cidr"]) for s in plan["subnets"]]

    def subnet_of(text: str) -> Optional[str]:
        ip = ipaddress.IPv4Address(text)
        return next((cidr for net, cidr in networks if ip in net), None)

    candidates: list[Tuple[str, str, str]] = []
    names = [interface] if interface else [str(n) for n in facts.get("interfaces", [])]
    for name in names:
        for ip in _ipv4_of(facts, name):
            cidr = subnet_of(ip)
            if cidr and (address is None or ip == address):
                candidates.append((name, ip, cidr))
    if not candidates:
        subject = "interface %s holds no" % interface if interface else "no interface holds an"
        raise EndpointError(
            "%s IPv4 address inside pxe_subnets (%s)%s: set pxe_interface, or give the server an "
            "address in one of those subnets"
            % (subject, ", ".join(cidr for _net, cidr in networks),
               " equal to pxe_server_address %s" % address if address else ""))
    if len(candidates) > 1 and not interface:
        raise EndpointError("several interfaces hold addresses in pxe_subnets (%s): set pxe_interface"
                            % ", ".join("%s %s" % (n, ip) for n, ip, _cidr in candidates))
    name, ip, cidr = candidates[0]
    return {"interface": name, "address": ip, "cidr": cidr}


def _ipv6_of(facts: Mapping[str, Any], name: str) -> Iterator[str]:
    data = facts.get(name.replace("-", "_").replace(".", "_")) or facts.get(name) or {}
    for entry in data.get("ipv6", []) or []:
        if isinstance(entry, Mapping) and entry.get("address") and entry.get("scope", "global") == "global":
            yield str(entry["address"]).split("%", maxsplit=1)[0]


def server_endpoint6(plan: Mapping[str, Any], facts: Mapping[str, Any], interface: str,
                     address: Optional[str] = None) -> Optional[Dict[str, str]]:
    """The server's IPv6 address on the provisioning interface inside an IPv6 prefix of the
    plan ({"address6", "cidr6"}), or None when the plan has no IPv6 prefix. address: the one
    to pick when the interface holds several."""
    prefixes = [(ipaddress.IPv6Network(s["cidr"]), s["cidr"]) for s in plan.get("subnets6") or []]
    if not prefixes:
        return None
    for text in _ipv6_of(facts, interface):
        ip = ipaddress.IPv6Address(text)
        cidr = next((c for net, c in prefixes if ip in net), None)
        if cidr and (address is None or ip == ipaddress.IPv6Address(address)):
            return {"address6": str(ip), "cidr6": cidr}
    raise EndpointError(
        "interface %s holds no IPv6 address inside the IPv6 prefixes of pxe_subnets (%s)%s: give it one "
        "(DHCPv6 clients reach the server there)"
        % (interface, ", ".join(c for _n, c in prefixes), " equal to pxe_server_address6 %s" % address if address else ""))
