# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Kea hot-standby pair (pxe01 primary, pxe02 standby) loses its primary, first the
DHCP daemon, then the whole host, and machines keep booting from the standby.

The tests run in file order and build on each other: one story, few boots (each
costs 25-40 s under TCG).
"""

from __future__ import annotations

import json

from conftest import KEA_HA_PORT, ha_state, kea, lease_of
from labkit.client import boot, booted_profile, lab
from labkit.facts import lab_facts
from labkit.ha import (LATE_NODE, PRIMARY, STANDBY, UNKNOWN_MAC, addresses, fetched_script, kill_and_wait_for_restart,
                       port_open_from_peer_and_closed_to_others, ssh, wait_for)

LAB = lab_facts()
NODES = LAB.nodes
# Installs through the primary, then boots its disk through the standby (issue 12).
INSTALLED_NODE = "node02"
assert INSTALLED_NODE != LATE_NODE


def node_state(host: str, mac: str) -> dict:
    """The lifecycle service's record of a node, as one server of the pair answers it."""
    run = lab("exec", "--", "curl", "-sS", "--max-time", "10",
              "http://%s/api/v1/nodes/%s" % (addresses()[host], mac), check=False)
    try:
        return json.loads(run.stdout)
    except ValueError:
        return {}


def _in_pool(address: str) -> bool:
    return LAB.subnets[0].in_pool(address)


def test_the_pair_is_in_hot_standby_and_only_the_primary_serves():
    for host in (PRIMARY, STANDBY):
        wait_for("%s in state hot-standby" % host, lambda host=host: ha_state(host) == "hot-standby")
    assert kea(PRIMARY, "ha-heartbeat")["arguments"]["scopes"] == [PRIMARY]
    assert kea(STANDBY, "ha-heartbeat")["arguments"]["scopes"] == []


def test_each_server_answers_with_its_own_address():
    """The standby must work alone: its boot answers name itself, not the primary."""
    for host, address in addresses().items():
        dhcp4 = kea(host, "config-get")["arguments"]["Dhcp4"]
        ha = next(h for h in dhcp4["hooks-libraries"] if h["library"].endswith("libdhcp_ha.so"))
        settings = ha["parameters"]["high-availability"][0]
        assert settings["this-server-name"] == host
        assert {p["name"]: p["role"] for p in settings["peers"]} == {PRIMARY: "primary", STANDBY: "standby"}
        next_servers = {c["next-server"] for c in dhcp4["client-classes"] if c.get("next-server", "0.0.0.0") != "0.0.0.0"}
        assert next_servers == {address}
        urls = [c["boot-file-name"] for c in dhcp4["client-classes"] if "://" in c.get("boot-file-name", "")]
        assert urls and all(u.startswith("http://%s/" % address) for u in urls)


def test_only_the_peers_reach_the_ha_port():
    """The HA listener takes any Kea command unauthenticated: the firewall lets the peer in, no one else."""
    port_open_from_peer_and_closed_to_others(KEA_HA_PORT)


def test_a_machine_boots_from_the_primary_and_the_standby_learns_its_dynamic_lease():
    result = boot(UNKNOWN_MAC, "bios")
    assert booted_profile(result["line"]) == LAB.menu_default
    assert fetched_script(PRIMARY, UNKNOWN_MAC) and not fetched_script(STANDBY, UNKNOWN_MAC)
    primary_lease = lease_of(PRIMARY, UNKNOWN_MAC)
    assert _in_pool(primary_lease["ip-address"]), primary_lease
    standby_lease = wait_for("the standby's copy of the lease", lambda: lease_of(STANDBY, UNKNOWN_MAC), timeout=30)
    assert standby_lease["ip-address"] == primary_lease["ip-address"]


def test_a_killed_dhcp_daemon_is_restarted_and_rejoins_the_pair():
    assert kill_and_wait_for_restart(PRIMARY, "kea-dhcp4-server") >= 1
    # Back from the dead it syncs the leases from the standby, then resumes its role.
    wait_for("the primary back in hot-standby", lambda: ha_state(PRIMARY) == "hot-standby", timeout=120)
    assert lease_of(PRIMARY, UNKNOWN_MAC), "the restarted primary lost the lease"


def test_a_node_installs_through_the_primary_and_the_standby_learns_it():
    node = NODES[INSTALLED_NODE]
    mac = node.macs[0]
    result = boot(mac, "bios", "--disk", INSTALLED_NODE, "--fresh-disk", "--until",
                  "LOCAL-BOOT-OK %s" % INSTALLED_NODE, timeout=900)
    seen = [m["line"].split()[0] for m in result["markers"]]
    assert "INSTALL-OK" in seen and seen[-1] == "LOCAL-BOOT-OK", seen
    assert "centra.callback=http://%s/" % addresses()[PRIMARY] in result["cmdline"]
    assert node_state(PRIMARY, mac)["state"] == "installed"
    # The primary forwards the callback to its peer.
    wait_for("the standby's record of the install", lambda: node_state(STANDBY, mac).get("state") == "installed",
             timeout=60)


def test_the_standby_takes_over_when_the_primary_dhcp_stops():
    ssh(PRIMARY, "systemctl stop kea-dhcp4-server")
    # heartbeat 1 s, max-response-delay 3 s, max-unacked-clients 0 (molecule.yml): seconds.
    wait_for("the standby in partner-down", lambda: ha_state(STANDBY) == "partner-down", timeout=60)
    assert kea(STANDBY, "ha-heartbeat")["arguments"]["scopes"] == [PRIMARY]


def test_with_the_primary_powered_off_a_new_machine_boots_from_the_standby():
    lab("stop", PRIMARY, timeout=120)
    node = NODES[LATE_NODE]
    mac = node.macs[0]
    # Its installer runs (no disk: it reports failed to the standby, which the primary,
    # off now, learns when it is back).
    result = boot(mac, "bios", "--until", "INSTALL-FAILED")
    assert booted_profile(result["cmdline"]) == node.profile
    assert fetched_script(STANDBY, mac)
    assert lease_of(STANDBY, mac)["ip-address"] == node.ip
    # ... and the standby still knows the first machine's lease.
    assert _in_pool(lease_of(STANDBY, UNKNOWN_MAC)["ip-address"])


def test_with_the_primary_powered_off_an_installed_node_boots_its_disk_through_the_standby():
    mac = NODES[INSTALLED_NODE].macs[0]
    result = boot(mac, "bios", "--disk", INSTALLED_NODE, "--until", "LOCAL-BOOT-OK %s" % INSTALLED_NODE, timeout=600)
    assert [m["line"].split()[0] for m in result["markers"]] == ["LOCAL-BOOT-OK"] or all(
        m["boot"] == 1 and m["line"].startswith("LOCAL-BOOT") for m in result["markers"]), result["markers"]
    assert fetched_script(STANDBY, mac)


def test_the_primary_comes_back_and_learns_what_the_standby_leased():
    lab("start", PRIMARY, timeout=300)
    wait_for("the primary back in hot-standby", lambda: ha_state(PRIMARY) == "hot-standby", timeout=120)
    node = NODES[LATE_NODE]
    assert lease_of(PRIMARY, node.macs[0])["ip-address"] == node.ip
    wait_for("the standby back in hot-standby", lambda: ha_state(STANDBY) == "hot-standby", timeout=60)
    # What was recorded before the primary went down survived its power-off.
    assert node_state(PRIMARY, NODES[INSTALLED_NODE].macs[0])["state"] == "installed"
    # The late node reported to the standby alone (its installer found no disk: failed);
    # the primary was off then and catches up from its peer once it is back.
    late_mac = node.macs[0]
    on_standby = node_state(STANDBY, late_mac)
    assert on_standby["state"] == "failed", on_standby
    wait_for("the primary's record of the late node", lambda: node_state(PRIMARY, late_mac).get("state") == "failed",
             timeout=180)
