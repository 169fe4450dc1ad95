# SPDX-License-Identifier: GPL-3.0-or-later
"""Synthetic inventories of N nodes for the benchmarks (198.18.0.0/15: RFC 2544)."""

from __future__ import annotations

import ipaddress
import os

PROFILES = ("control_plane", "worker", "all_in_one")


def write_inventory(directory: str, nodes: int, asset: str) -> str:
    """Write hosts.yml with `nodes` nodes spread over the three profiles; return its path."""
    network = ipaddress.IPv4Network("198.18.0.0/15")
    os.makedirs(directory, exist_ok=True)
    lines = [
        "all:",
        "  vars:",
        "    pxe_subnets:",
        "      - cidr: 198.18.0.0/15",
        "        pool: 198.19.200.1-198.19.255.254",
        "    pxe_profiles:",
    ]
    for profile in PROFILES:
        lines.append("      %s: {kernel: {src: %s}, initrd: {src: %s}, cmdline: \"panic=-1\"}" % (profile, asset, asset))
    lines += ["  children:", "    pxe_nodes:", "      children:"]
    per_profile: dict[str, list[str]] = {p: [] for p in PROFILES}
    for index in range(nodes):
        mac = "52:54:%02x:%02x:%02x:%02x" % ((index >> 24) & 0xFF, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
        address = network.network_address + 10 + index
        per_profile[PROFILES[index % len(PROFILES)]].append(
            "            n%05d: {pxe_mac: \"%s\", pxe_ip: %s}" % (index, mac, address))
    for profile, hosts in per_profile.items():
        lines.append("        %s:" % profile)
        lines.append("          hosts:" + ("" if hosts else " {}"))
        lines.extend(hosts)
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
