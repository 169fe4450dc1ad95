# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An ISC dhcpd failover pair (pxe01 primary, pxe02 secondary, split 256) loses its
primary, first the DHCP daemon, then the whole host, and machines keep booting from
the secondary, from the failover pool.

The tests run in file order and build on each other (few boots: 25-40 s each).
"""

from __future__ import annotations

import ipaddress

from conftest import (ADDRESSES, ISC_FAILOVER_PORT, MENU_DEFAULT, POOL, PRIMARY, STANDBY, UNIT, UNKNOWN_MAC,
                      active_lease, boot, booted_profile, failover_state, fetched_script, kill_and_wait_for_restart,
                      lab, port_open_from_peer_and_closed_to_others, ssh, wait_for)

# A second unknown machine, booting once only the secondary is left: its address must
# come from the secondary's share of the failover pool.
LATE_MAC = "52:54:00:00:99:12"


def _in_pool(address) -> bool:
    return bool(address) and (ipaddress.IPv4Address(POOL[0]) <= ipaddress.IPv4Address(address)
                              <= ipaddress.IPv4Address(POOL[1]))


def test_both_servers_reach_the_normal_state():
    for host in (PRIMARY, STANDBY):
        wait_for("%s in failover state normal" % host, lambda host=host: failover_state(host) == "normal")


def test_each_server_answers_with_its_own_address_and_role():
    for host, role in ((PRIMARY, "primary"), (STANDBY, "secondary")):
        conf = ssh(host, "cat /etc/dhcp/dhcpd.conf").stdout
        assert "  %s;\n  address %s;" % (role, ADDRESSES[host]) in conf
        assert {line.split()[1].rstrip(";") for line in conf.splitlines()
                if line.strip().startswith("next-server")} == {ADDRESSES[host]}
        assert 'filename "http://%s/boot.ipxe";' % ADDRESSES[host] in conf
        assert 'pool { failover peer "centra-pxe"; range %s %s; }' % POOL in conf


def test_only_the_peers_reach_the_failover_port():
    port_open_from_peer_and_closed_to_others(ISC_FAILOVER_PORT)


def test_a_machine_boots_from_the_pair_and_the_other_server_records_its_lease():
    """Split 256 gives every client to the primary, but dhcpd lets either server answer a
    client whose secs field exceeds load_balance_max_seconds (3): the lab's iPXE ROM gets
    offers from both and may take the secondary's. Whoever served, the other has the lease."""
    result = boot(UNKNOWN_MAC, "bios")
    assert booted_profile(result["line"]) == MENU_DEFAULT
    served = [host for host in (PRIMARY, STANDBY) if fetched_script(host, UNKNOWN_MAC)]
    assert len(served) == 1, served
    other = STANDBY if served == [PRIMARY] else PRIMARY
    address = active_lease(served[0], UNKNOWN_MAC)
    assert _in_pool(address), address
    assert wait_for("%s's copy of the lease" % other, lambda: active_lease(other, UNKNOWN_MAC), timeout=30) == address


def test_a_killed_dhcpd_is_restarted_and_returns_to_normal():
    assert kill_and_wait_for_restart(PRIMARY, UNIT) >= 1
    # Back within auto_partner_down (15 s): the secondary was only out of touch.
    for host in (PRIMARY, STANDBY):
        wait_for("%s back in normal" % host, lambda host=host: failover_state(host) == "normal", timeout=120)
    assert active_lease(PRIMARY, UNKNOWN_MAC), "the restarted primary lost the lease"


def test_the_secondary_declares_its_partner_down_when_the_primary_dhcpd_stops():
    ssh(PRIMARY, "systemctl stop %s" % UNIT)
    # max_response_delay 5 s -> communications-interrupted; auto_partner_down 15 s -> partner-down.
    wait_for("the secondary in communications-interrupted",
             lambda: failover_state(STANDBY) in ("communications-interrupted", "partner-down"), timeout=60)
    wait_for("the secondary in partner-down", lambda: failover_state(STANDBY) == "partner-down", timeout=90)


def test_with_the_primary_powered_off_a_new_machine_boots_from_the_secondary():
    lab("stop", PRIMARY, timeout=120)
    result = boot(LATE_MAC, "bios")
    assert booted_profile(result["line"]) == MENU_DEFAULT
    assert fetched_script(STANDBY, LATE_MAC)
    assert _in_pool(active_lease(STANDBY, LATE_MAC))
    assert _in_pool(active_lease(STANDBY, UNKNOWN_MAC))  # and it still knows the first machine's


def test_the_primary_comes_back_and_learns_what_the_secondary_leased():
    """After partner-down the returning primary recovers: the secondary sends it every lease
    ("peer update completed"), then it waits mclt in recover-wait before both are normal."""
    lab("start", PRIMARY, timeout=300)
    wait_for("the primary recovering", lambda: failover_state(PRIMARY) in ("recover-wait", "recover-done", "normal"),
             timeout=120)
    assert active_lease(PRIMARY, LATE_MAC) == active_lease(STANDBY, LATE_MAC)
