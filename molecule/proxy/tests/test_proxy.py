# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""proxyDHCP beside a foreign DHCP server: the PXE host's dnsmasq answers PXE clients
with boot information only, the lab's foreign Kea (no PXE options) hands out every
address. Real machines boot through the pair; the packet test checks every row of the
boot policy table against the proxy's answers, on port 67 and on port 4011."""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LAB, PROXY_INVENTORY
from labkit.client import boot, booted_profile, lab, lab_exec, pxe_shell, unit_state
from labkit.common import BRIDGE
from labkit.dhcp_probe import CASES
from labkit.facts import scenario_inventory
from labkit.playbook import ansible_playbook, recap

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BootServer, decide_proxy

NODES = LAB.nodes
SERVER = BootServer(LAB.server_address, LAB.http_base, {"bios": "undionly.kpxe", "efi64": "ipxe.efi"})
UNKNOWN_MAC = "52:54:00:00:99:11"
BOOTS = {"node11": ("bios",), "node12": ("uefi",), "node13": ("uefi", "--http-boot")}
SERIAL_MARK = {"node12": "Start PXE over IPv4", "node13": "Start HTTP Boot over IPv4"}


def test_the_proxy_runs_and_no_dhcp_server_of_ours_does():
    units = pxe_shell("systemctl is-active centra-pxe-proxydhcp kea-dhcp4-server isc-dhcp-server",
                      check=False).stdout.split()
    assert units[0] == "active" and "active" not in units[1:], units
    listening = pxe_shell("ss -H -ulpn").stdout
    ports = {int(m.group(1)) for m in re.finditer(r":(\d+)\s+\S+\s+users:\(\(\"dnsmasq\"", listening)}
    assert ports == {67, 4011}, listening  # no DNS (53): port=0
    assert "4011" in pxe_shell("nft list table inet centra_pxe").stdout


@pytest.fixture(scope="module")
def answers():
    run = lab_exec(sys.executable, "-m", "labkit.dhcp_probe", "--iface", BRIDGE, "--proxy", LAB.server_address,
                   "--timeout", "6", timeout=600)
    return {a["case"]: a for a in (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))}


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_proxy_answers_match_the_policy(answers, case):
    got = answers[case]
    name, arch, user_class, option_175, vendor = next(c for c in CASES if c[0] == case)
    expected = decide_proxy(SERVER, arch=None if arch is None else int.from_bytes(arch, "big"),
                            user_class=user_class, option_175=option_175, vendor_class=vendor)
    if arch is None:
        # No option 93: no PXE client; the proxy stays silent, the foreign server's offer is all it gets.
        assert not got["offer"], got
        return
    assert got["offer"], "no proxy OFFER for %s" % name
    assert got["yiaddr"] == "0.0.0.0", got  # boot information only, never an address
    assert got["file"] == (expected.filename or ""), (got, expected)
    if expected.kind != "none":
        assert got["siaddr"] == LAB.server_address, got
    assert got["vendor_class"] == ("HTTPClient" if vendor.startswith("HTTPClient") else "PXEClient"), got
    # UEFI firmware asks port 4011 after a proxy offer: the same answer there.
    assert got["answer_4011"], got
    assert got["file_4011"] == (expected.filename or ""), (got, expected)


@pytest.fixture(scope="module")
def booted():
    """Every machine boots once, two at a time (each QEMU guest is one TCG thread)."""
    wanted = {name: (NODES[name].macs[0], *firmware) for name, firmware in BOOTS.items()}
    wanted["unknown"] = (UNKNOWN_MAC, "bios")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(boot, *args) for name, args in wanted.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(BOOTS))
def test_each_node_boots_its_profile_through_the_proxy(booted, name):
    line = booted[name]["line"]
    assert booted_profile(line) == NODES[name].profile
    assert "centra.node=%s" % name in line, line
    if name in SERIAL_MARK:
        with open(booted[name]["log"], encoding="utf-8", errors="replace") as handle:
            serial = handle.read()
        assert SERIAL_MARK[name] in serial
        if name == "node13":
            assert "Start PXE over IPv4" not in serial  # HTTP boot alone, no PXE fallback


def test_an_unknown_machine_gets_the_menu(booted):
    line = booted["unknown"]["line"]
    assert booted_profile(line) == LAB.menu_default and "centra.node=" not in line, line


def test_the_foreign_servers_leases_are_the_only_leases(booted):
    state = json.loads(lab("status").stdout)["foreign_dhcp"]
    pool = [ipaddress.IPv4Address(a) for a in state["pool"]]
    leased = {row["hwaddr"]: row["address"] for row in state["leases"]}
    for mac in [NODES[n].macs[0] for n in BOOTS] + [UNKNOWN_MAC]:
        assert mac in leased, (mac, leased)
        assert pool[0] <= ipaddress.IPv4Address(leased[mac]) <= pool[1]
    # The PXE host hands out nothing: no lease database of ours holds any of them.
    databases = pxe_shell("cat /var/lib/kea/kea-leases4.csv /var/lib/dhcp/dhcpd.leases /var/lib/misc/dnsmasq.leases "
                          "2>/dev/null; true").stdout.lower()
    assert not any(mac in databases for mac in leased), databases[-2000:]
    journal = pxe_shell("journalctl -u centra-pxe-proxydhcp --no-pager -o cat").stdout
    for name in BOOTS:
        assert re.search(r"PXE\(\S+\) (\S+ )?%s" % re.escape(NODES[name].macs[0]), journal), name


def _converge_dhcp(backend: str) -> None:
    """site.yml's install, DHCP and firewall parts with another backend (last: it changes the host)."""
    run = ansible_playbook("site.yml", "--tags", "pxe_install,pxe_dhcp,pxe_firewall",
                           inventories=(scenario_inventory(), PROXY_INVENTORY),
                           extra_vars={"pxe_dhcp_backend": backend})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert recap(run.stdout)["pxe01"]["failed"] == 0


def _unit(name: str) -> tuple[str, str]:
    state = unit_state(name)
    return state.get("ActiveState", ""), state.get("UnitFileState", "")


def test_switching_to_kea_and_back_stops_the_other_daemon(booted):
    """kea -> proxy -> kea: every switch stops and disables the other daemon (all want port 67)."""
    _converge_dhcp("kea")
    assert _unit("kea-dhcp4-server") == ("active", "enabled")
    assert _unit("centra-pxe-proxydhcp") == ("inactive", "disabled")
    assert "4011" not in pxe_shell("nft list table inet centra_pxe").stdout
    _converge_dhcp("proxy")
    assert _unit("centra-pxe-proxydhcp") == ("active", "enabled")
    assert _unit("kea-dhcp4-server") == ("inactive", "disabled")
    assert "4011" in pxe_shell("nft list table inet centra_pxe").stdout
