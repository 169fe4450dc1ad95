# SPDX-License-Identifier: GPL-3.0-or-later
"""Synthetic inventories of N nodes for the benchmarks (198.18.0.0/15: RFC 2544)."""

from __future__ import annotations

import ipaddress
import os
from typing import Optional, Sequence

PROFILES = ("control_plane", "worker", "all_in_one")
NODE_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")


def node_mac(index: int) -> str:
    """The MAC of node number `index` (52:54 then the index in four bytes)."""
    return "52:54:%02x:%02x:%02x:%02x" % ((index >> 24) & 0xFF, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)


def node_ip(index: int) -> str:
    return str(NODE_NETWORK.network_address + 10 + index)


def node_line(index: int) -> str:
    return "            n%05d: {pxe_mac: \"%s\", pxe_ip: %s}" % (index, node_mac(index), node_ip(index))


def write_inventory(directory: str, nodes: int, asset: str, kernel: Optional[str] = None,
                    extra_subnets: Sequence[str] = (), extra_vars: Sequence[str] = (),
                    extra_hosts: Sequence[str] = ()) -> str:
    """Write hosts.yml with `nodes` nodes spread over the three profiles; return its path.

    asset is the initrd (and the kernel unless `kernel` is given) of every profile.
    extra_subnets: YAML list items (one line each, e.g. the lab's own subnet) put before
    the nodes' 198.18.0.0/15; extra_vars: more lines under all.vars (4-space indent);
    extra_hosts: more nodes of the first profile, as "name: {pxe_mac: ..., pxe_ip: ...}".
    """
    os.makedirs(directory, exist_ok=True)
    lines = ["all:", "  vars:", "    pxe_subnets:"]
    lines += ["      - %s" % subnet for subnet in extra_subnets]
    lines += [
        "      - cidr: 198.18.0.0/15",
        "        pool: 198.19.200.1-198.19.255.254",
        "    pxe_profiles:",
    ]
    for profile in PROFILES:
        lines.append("      %s: {kernel: {src: %s}, initrd: {src: %s}, cmdline: \"panic=-1\"}"
                     % (profile, kernel or asset, asset))
    lines += ["    %s" % line for line in extra_vars]
    lines += ["  children:", "    pxe_nodes:", "      children:"]
    per_profile: dict[str, list[str]] = {p: [] for p in PROFILES}
    for index in range(nodes):
        per_profile[PROFILES[index % len(PROFILES)]].append(node_line(index))
    per_profile[PROFILES[0]] += ["            %s" % host for host in extra_hosts]
    for profile, hosts in per_profile.items():
        lines.append("        %s:" % profile)
        lines.append("          hosts:" + ("" if hosts else " {}"))
        lines.extend(hosts)
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
