# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IPv6 (docs/ipv6.md): a dual-stack PXE host answers DHCPv4 and DHCPv6 from one converge;
UEFI machines with OVMF's IPv4 stack off boot their profiles through "UEFI PXEv6" and
"UEFI HTTPv6"; the DHCPv6 packet test checks every row of the boot policy table against
kea-dhcp6's answers (option 61 in, option 59 and vendor class out)."""

from __future__ import annotations

import ipaddress
import json
import re
import sys

import pytest
from conftest import LAB
from labkit import net6
from labkit.client import boot, booted_profile, lab, lab_exec, pxe_shell, unit_state
from labkit.common import BRIDGE
from labkit.dhcp6_probe import CASES

from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import boot_file_url, decide6, v6_boot_server

NODES = LAB.nodes
SERVER6 = net6.host_address6(1)
BOOT6 = v6_boot_server({"name": "pxe01", "address6": SERVER6, "http_port": 80,
                        "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi"}})
# node61: UEFI PXEv6 with its fixed address (reserved by MAC); node62: UEFI HTTPv6 from the pool.
BOOTS = {"node61": ("uefi", "--ipv6"), "node62": ("uefi", "--ipv6", "--http-boot")}
SERIAL_MARK = {"node61": "Start PXE over IPv6", "node62": "Start HTTP Boot over IPv6"}
POOL6 = ("2001:db8:0:1::1000", "2001:db8:0:1::1fff")


def test_both_families_are_served_by_one_converge():
    for unit in ("kea-dhcp4-server", "kea-dhcp6-server", "tftpd-hpa", "nginx"):
        state = unit_state(unit)
        assert (state.get("ActiveState"), state.get("UnitFileState")) == ("active", "enabled"), (unit, state)
    udp = pxe_shell("ss -H -ulpn").stdout
    assert re.search(r":547\s.*kea-dhcp6", udp), udp
    assert re.search(r"(\*|\[::\]):69\s.*in\.tftpd", udp), udp  # one socket, both families
    tcp = pxe_shell("ss -H -tlpn").stdout
    assert re.search(r"(\*|\[::\]):80\s.*nginx", tcp), tcp
    assert "547" in pxe_shell("nft list table inet centra_pxe").stdout
    config = json.loads(pxe_shell("cat /etc/kea/kea-dhcp6.conf").stdout)["Dhcp6"]
    assert [s["subnet"] for s in config["subnet6"]] == ["2001:db8:0:1::/64"]


@pytest.fixture(scope="module")
def answers():
    run = lab_exec(sys.executable, "-m", "labkit.dhcp6_probe", "--iface", BRIDGE, "--timeout", "6", timeout=600)
    return {a["case"]: a for a in (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))}


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_dhcpv6_answers_match_the_policy(answers, case):
    got = answers[case]
    _name, arch, user_class, _vendor = next(c for c in CASES if c[0] == case)
    expected = decide6(BOOT6, arch=arch, user_class=user_class)
    assert got["advertise"], "no ADVERTISE for %s" % case
    # Every client gets an address from the pool (no reservation matches the probe's DUIDs).
    assert ipaddress.IPv6Address(POOL6[0]) <= ipaddress.IPv6Address(got["address"]) <= ipaddress.IPv6Address(POOL6[1])
    assert got["bootfile_url"] == boot_file_url(BOOT6, expected), (got, expected)
    if expected.kind == "http":
        assert got["vendor_class"] == {"enterprise": 343, "data": ["HTTPClient"]}, got
    else:
        assert got["vendor_class"] is None, got


def _options(*args: str) -> dict:
    run = lab_exec(sys.executable, "-m", "labkit.dhcp6_probe", "--iface", BRIDGE, "--timeout", "6", "--case", "arch7",
                   "--want", "24,41,56", *args, timeout=120)
    answer = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("{")))
    assert answer["advertise"], answer
    return answer


def test_dhcpv6_options_of_the_subnet_its_group_and_the_node():
    """The inventory's DHCPv6 options on the wire: a pool client gets the subnet's; node61
    (asked with the DUID-LL of its MAC, which its reservation matches) its group's and its own
    over the subnet's. Payloads as sent: RFC 1035 labels (24), RFC 5908 suboptions (56)."""
    labels = "036c6162076578616d706c65036e657400"                       # lab.example.net
    ntp = "00010010" + ipaddress.IPv6Address("2001:db8:0:1::3").packed.hex()
    pool = _options()
    assert pool["options"] == {"24": labels, "56": ntp}, pool
    node = _options("--duid", "00:03:00:01:52:54:00:00:61:01")
    assert node["address"] == "2001:db8:0:1::61", node
    assert node["options"] == {"24": labels, "41": b"CET-1CEST".hex(),
                               "56": "00010010" + ipaddress.IPv6Address("2001:db8:0:1::4").packed.hex()}, node


# OVMF's HTTPv6 (Debian 12) gets its DHCPv6 answer, then reports "Could not retrieve NBP
# file size from HTTP server" without sending a single packet to the server (no neighbour
# solicitation, no SYN: seen on the bridge and on the PXE host), also when the RA makes
# the PXE host the default router; EDK2's HTTP boot driver drops the routes it learned
# when it switches the IPv6 stack to a manual address (docs/ipv6.md). Strict: the mark
# goes when it boots.
KNOWN_BUGS = {"node62": "OVMF HTTPv6 never contacts the server after DHCPv6 (docs/ipv6.md)"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n])]
                                               if n in KNOWN_BUGS else []) for n in sorted(BOOTS)])
def test_each_node_boots_its_profile_over_ipv6_only(name):
    # The known failure shows within a minute; 120 s still leaves an HTTPv6 boot that
    # starts working (about 45 s here) room under load.
    booted = boot(NODES[name].macs[0], *BOOTS[name], timeout=120 if name in KNOWN_BUGS else 180)
    line = booted["line"]
    assert booted_profile(line) == NODES[name].profile, line
    with open(booted["log"], encoding="utf-8", errors="replace") as handle:
        serial = handle.read()
    assert SERIAL_MARK[name] in serial
    assert "over IPv4" not in serial  # the IPv4 stack is off: no PXEv4 or HTTPv4 attempt


def test_the_leases_are_ipv6_and_the_reservation_holds():
    """After the boots (pytest runs the tests of a file in order)."""
    leases = pxe_shell("cat /var/lib/kea/kea-leases6.csv").stdout
    assert "2001:db8:0:1::61," in leases, leases  # node61's pxe_ip6, reserved by its MAC (OVMF: DUID-LLT)
    ipv4 = pxe_shell("cat /var/lib/kea/kea-leases4.csv 2>/dev/null; true").stdout.lower()
    for name in BOOTS:
        assert NODES[name].macs[0] not in ipv4, ipv4  # no IPv4 address for the IPv6-only machines


def test_the_lab_network_is_documentation_space_only():
    state = json.loads(lab("status").stdout)
    assert state["ipv6"]["network"] == net6.NETWORK6
    assert ipaddress.IPv6Network(net6.NETWORK6).subnet_of(ipaddress.IPv6Network("2001:db8::/32"))
