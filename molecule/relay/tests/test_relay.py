# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Machines on the far network 198.51.100.0/24 boot through the lab's router: their
DHCP goes through dhcrelay (giaddr 198.51.100.1), their loader, boot script and kernel
are routed between the two lab networks, and the router forwards nothing else."""

from __future__ import annotations

import ipaddress
import json
import re
import sys

import pytest
from conftest import FAR_NODES, FAR_SUBNET, LAB, counter_packets, in_router, on_pxe_host, router_rules
from labkit.client import booted_profile, lab_exec
from labkit.common import (BRIDGE, BRIDGE_NETWORK, FAR_BRIDGE, FAR_NETWORK, ROUTER_FAR_ADDRESS as ROUTER_FAR,
                           ROUTER_NEAR_ADDRESS as ROUTER_NEAR)
from labkit.facts import node_script_path

NAMES = sorted(FAR_NODES)
ACCESS_LOG = "/var/log/nginx/centra-pxe.access.log"


def leased_address(backend: str, mac: str) -> str:
    """The address the DHCP server gave ``mac``: Kea's lease file; for ISC dhcpd, which
    keeps no lease for a fixed address, its DHCPACK log line, which also names the relay
    ("via 198.51.100.1")."""
    if backend == "kea":
        rows = [line.split(",") for line in on_pxe_host("cat", "/var/lib/kea/kea-leases4.csv").splitlines()]
        header, rows = rows[0], rows[1:]
        leases = [dict(zip(header, row)) for row in rows if len(row) == len(header)]
        mine = [lease["address"] for lease in leases if lease["hwaddr"] == mac and lease["valid_lifetime"] != "0"]
    else:
        journal = on_pxe_host("journalctl", "--no-pager", "-o", "cat", "-u", "isc-dhcp-server")
        mine = re.findall(r"DHCPACK on (\S+) to %s(?: \([^)]*\))? via %s" % (re.escape(mac), re.escape(ROUTER_FAR)),
                          journal)
    assert mine, "no lease for %s from the %s server" % (mac, backend)
    return mine[-1]


@pytest.mark.parametrize("name", NAMES)
def test_a_far_machine_boots_its_profile(far_boots, name):
    node = FAR_NODES[name]
    result = far_boots[name]
    assert result["network"] == "far"
    assert booted_profile(result["line"]) == node.profile


@pytest.mark.parametrize("name", NAMES)
def test_a_far_machine_gets_an_address_in_its_own_subnet(far_boots, backend, name):
    """The server chose the far subnet by giaddr: a fixed address, or one from its pool."""
    node = FAR_NODES[name]
    address = ipaddress.IPv4Address(leased_address(backend, node.macs[0]))
    assert address in ipaddress.IPv4Network(FAR_NETWORK)
    if node.ip:
        assert str(address) == node.ip
    else:
        assert FAR_SUBNET.in_pool(str(address))


def test_the_uefi_firmware_itself_got_a_far_address_and_loaded_ipxe_through_the_router(far_boots):
    """OVMF's own PXE client (option 93 = 7) prints its station address; ipxe.efi came
    over TFTP from the PXE host, which it reaches only through the router."""
    with open(far_boots["node06"]["log"], encoding="utf-8", errors="replace") as handle:
        serial = handle.read()
    assert "Start PXE over IPv4" in serial
    station = re.search(r"Station IP address is (\S+)", serial)
    assert station, "OVMF printed no station address"
    assert ipaddress.IPv4Address(station.group(1)) in ipaddress.IPv4Network(FAR_NETWORK)


@pytest.mark.parametrize("name", NAMES)
def test_the_boot_script_and_the_kernel_were_fetched_from_the_far_address(far_boots, backend, name):
    """nginx saw the per-MAC script and the profile's kernel and initrd requested from
    the machine's 198.51.100.x address (no NAT anywhere: the router only routes)."""
    node = FAR_NODES[name]
    address = leased_address(backend, node.macs[0])
    fetched = {}
    for line in on_pxe_host("cat", ACCESS_LOG).splitlines():
        # $msec $remote_addr $status $request_completion $request_method $request_uri
        # $body_bytes_sent $request_time (docs/roles.md, pxe_http)
        fields = line.split()
        if len(fields) == 8 and fields[1] == address:
            fetched[fields[5]] = fields[2]
    script = node_script_path(node.macs[0])
    for path in (script, "/profiles/%s/vmlinuz" % node.profile, "/profiles/%s/initrd" % node.profile):
        assert fetched.get(path) == "200", "%s did not fetch %s from %s: %s" % (name, path, address, fetched)


def test_dhcrelay_relayed_both_machines_to_the_pxe_host(far_boots, lab_state):
    with open(lab_state["far_network"]["dhcrelay_log"], encoding="utf-8", errors="replace") as handle:
        relay_log = handle.read()
    for node in FAR_NODES.values():
        assert "BOOTREQUEST for %s to %s" % (node.macs[0], LAB.server_address) in relay_log
        assert "BOOTREPLY for %s" % node.macs[0] in relay_log


def test_the_router_forwards_only_between_the_two_lab_networks(far_boots, lab_state):
    """Policy drop; one accept each way, bound to both links and both networks; the
    boots went through those two rules."""
    far = lab_state["far_network"]
    assert far["router_near_address"] == ROUTER_NEAR and far["router_far_address"] == ROUTER_FAR
    found = router_rules()
    assert found["chain"]["hook"] == "forward" and found["chain"]["policy"] == "drop"
    assert sorted(found["rules"]) == ["everything-else", "far-to-near", "near-to-far"]
    text = in_router("nft", "list", "chain", "inet", "centra_lab_router", "forward")
    assert 'iifname "cpxe-near" oifname "cpxe-far" ip saddr %s ip daddr %s' % (BRIDGE_NETWORK, FAR_NETWORK) in text
    assert 'iifname "cpxe-far" oifname "cpxe-near" ip saddr %s ip daddr %s' % (FAR_NETWORK, BRIDGE_NETWORK) in text
    assert counter_packets(found["rules"]["near-to-far"]) > 0
    assert counter_packets(found["rules"]["far-to-near"]) > 0
    # Forwarding is on in the router only; the router has no link and no route but the two.
    assert in_router("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    assert lab_exec("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    links = sorted(link["ifname"] for link in json.loads(in_router("ip", "-j", "link", "show")))
    assert links == ["cpxe-far", "cpxe-near", "lo"]
    routes = sorted(route["dst"] for route in json.loads(in_router("ip", "-j", "-4", "route", "show")))
    assert routes == sorted([BRIDGE_NETWORK, FAR_NETWORK])


def test_the_pxe_host_reaches_the_far_network_through_the_router_and_nowhere_else(far_boots):
    routes = {route["dst"]: route.get("gateway") for route in json.loads(on_pxe_host("ip", "-j", "-4", "route", "show"))}
    assert routes == {BRIDGE_NETWORK: None, FAR_NETWORK: ROUTER_NEAR}


def test_a_packet_between_other_networks_is_dropped_by_the_router(far_boots):
    """Packets the router could route but must not forward (within one lab network, and
    from an address of neither) hit the drop rule, and nothing is accepted for them."""
    router_macs = {link["ifname"]: link["address"] for link in json.loads(in_router("ip", "-j", "link", "show"))}
    before = {name: counter_packets(rule) for name, rule in router_rules()["rules"].items()}
    count = 5
    script = (
        "from scapy.all import Ether, IP, UDP, sendp\n"
        "frames = [Ether(dst=%r) / IP(src='198.51.100.50', dst='198.51.100.60') / UDP(dport=9),\n"
        "          Ether(dst=%r) / IP(src='192.0.2.50', dst='192.0.2.60') / UDP(dport=9),\n"
        "          Ether(dst=%r) / IP(src='203.0.113.7', dst=%r) / UDP(dport=9)]\n"
        "sendp(frames[0], iface=%r, count=%d, verbose=False)\n"
        "sendp(frames[1], iface=%r, count=%d, verbose=False)\n"
        "sendp(frames[2], iface=%r, count=%d, verbose=False)\n"
    ) % (router_macs["cpxe-far"], router_macs["cpxe-near"], router_macs["cpxe-far"], LAB.server_address,
         FAR_BRIDGE, count, BRIDGE, count, FAR_BRIDGE, count)
    # The accept rules also count the lab's own traffic between the networks (a late TCP
    # segment of a far node's boot, a relayed DHCP packet): a window in which they moved
    # proves nothing either way, so up to three windows are tried, and in a quiet one the
    # test packets must all have hit the drop rule and none the accept rules.
    windows = []
    for _attempt in range(3):
        lab_exec(sys.executable, "-c", script)
        after = {name: counter_packets(rule) for name, rule in router_rules()["rules"].items()}
        windows.append({name: after[name] - before[name] for name in after})
        before = after
        if windows[-1]["far-to-near"] == windows[-1]["near-to-far"] == 0:
            break
    quiet = windows[-1]
    assert quiet["far-to-near"] == quiet["near-to-far"] == 0, "no window without forwarded packets: %s" % windows
    # The spoofed source may already fall to the kernel's reverse-path filter, before
    # the forward hook; either way it is not forwarded.
    assert quiet["everything-else"] >= 2 * count, windows
