# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A hot-standby pair (pxe01 primary, pxe02 standby: Kea HA in scenario ha, ISC dhcpd
failover in ha-isc) loses its primary, first the DHCP daemon, then the whole host, and
machines keep booting from the standby.

The tests run in file order and build on each other: one story, few boots (each
costs 25-40 s under TCG). Where the backends differ (states, where the leases are
read, what fails over), the test says so.

The same story runs in the other modes CENTRA_HA_MODE picks (docs/ha.md, "Verified in
the lab"): in load-balancing (both backends) each server answers its half of the
clients, so "the server that served" replaces "the primary", and the survivor takes
both halves; with CENTRA_HA_BACKUP=1 (Kea) pxe03, a backup server, holds every
lease and answers no one.
"""

from __future__ import annotations

import ipaddress
import json
import shlex

import pytest
from conftest import (BACKUPS, HA_PORT, HA_TLS_DIR, ISC, KEA, LOAD_BALANCING, MODE, SERVING, SUBNET_ID, UNIT,
                      ha_channel_answer, ha_state, kea, leased_address, offers_to)
from labkit.client import boot, booted_profile, lab
from labkit.facts import lab_facts
from labkit.ha import (LATE_NODE, PRIMARY, STANDBY, UNKNOWN_MAC, addresses, fetched_script, kill_and_wait_for_restart,
                       port_open_from_peer_and_closed_to_others, ssh, wait_for)

LAB = lab_facts()
NODES = LAB.nodes
# Installs through the primary, then boots its disk through the standby (issue 12).
INSTALLED_NODE = "node02"
assert INSTALLED_NODE != LATE_NODE
# ISC failover covers the dynamic pools only (a node's fixed address is answered by both
# servers, and recorded by neither): the machine that boots once the primary is gone is
# an unknown one, whose address must come from the secondary's share of the pool.
LATE_UNKNOWN_MAC = "52:54:00:00:99:12"
# The lifecycle service of the pair (install callbacks forwarded to the peer) does not
# depend on the DHCP backend: scenario ha proves it, ha-isc keeps to DHCP failover.
kea_only_lifecycle = pytest.mark.skipif(ISC, reason="lifecycle sync of the pair: backend-independent, run by scenario ha")


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


# Scenario ha keeps Kea's reservations in a PostgreSQL host database
# (pxe_dhcp_kea_host_database): the one of pxe_dhcp_kea_host_database_server, which the
# other servers read over the network, or, unset, each server's own; ha-isc has no such thing.
HOST_DATABASE = KEA and bool(LAB.server_vars.get("pxe_dhcp_kea_host_database"))
host_database_only = pytest.mark.skipif(not HOST_DATABASE, reason="Kea's host database: scenario ha")
DATABASE_SERVER = str(LAB.server_vars.get("pxe_dhcp_kea_host_database_server") or "") if HOST_DATABASE else ""
shared_database_only = pytest.mark.skipif(not DATABASE_SERVER, reason="one host database for the pair: scenario ha")
POSTGRESQL_PORT = 5432


def database_servers() -> list:
    """The servers whose PostgreSQL holds reservations."""
    return [DATABASE_SERVER] if DATABASE_SERVER else [PRIMARY, STANDBY] + list(BACKUPS)


def psql(host: str, sql: str) -> str:
    """One query on the host's Kea host database, as Kea's own user."""
    return ssh(host, "runuser -u _kea -- psql -X -q -A -t -h /run/postgresql -d kea -c %s" % shlex.quote(sql)).stdout.strip()


def test_the_pair_is_in_its_mode_and_serves_its_scopes():
    """hot-standby: only the primary serves; load-balancing: each server its own scope.
    A backup server serves no scope."""
    for host in (PRIMARY, STANDBY):
        wait_for("%s in state %s" % (host, SERVING), lambda host=host: ha_state(host) == SERVING)
    if KEA:
        assert kea(PRIMARY, "ha-heartbeat")["arguments"]["scopes"] == [PRIMARY]
        assert kea(STANDBY, "ha-heartbeat")["arguments"]["scopes"] == ([STANDBY] if LOAD_BALANCING else [])
        for backup in BACKUPS:
            wait_for("%s in state backup" % backup, lambda backup=backup: ha_state(backup) == "backup")
            assert kea(backup, "ha-heartbeat")["arguments"]["scopes"] == []
    else:
        # hot-standby is split 256: every hash bucket is the primary's; load-balancing the
        # default split 128 (dhcpd states it on the primary only).
        assert "  split %d;" % (128 if LOAD_BALANCING else 256) in ssh(PRIMARY, "cat /etc/dhcp/dhcpd.conf").stdout


def test_an_ha_pairs_dhcp_keeps_the_normal_scheduling_policy():
    """A Kea of an HA pair is multi-threaded (a thread per core): pxe_dhcp_kea_realtime_priority
    does not apply, so a flood cannot hold every core at real-time priority."""
    if not KEA:
        pytest.skip("the priority is Kea's")
    for host in (PRIMARY, STANDBY):
        pid = ssh(host, "systemctl show -p MainPID --value %s" % UNIT).stdout.strip()
        threads = ssh(host, "ls /proc/%s/task" % pid).stdout.split()
        policies = {ssh(host, "chrt -p %s" % tid).stdout.split("\n")[0].rsplit(" ", 1)[-1] for tid in threads}
        assert policies == {"SCHED_OTHER"}, (host, policies)
        assert len(threads) > 1, "Kea of an HA pair runs its packet threads (multi-threading)"


def test_new_clients_are_answered_by_the_servers_of_their_scope():
    """DISCOVERs from 16 unknown MACs, as a PXE ROM sends them (secs 0): each is offered
    an address by exactly one server; in hot-standby always the primary, in load-balancing
    both servers answer, each its half, from addresses of its own (Kea: its half of the
    pool; ISC: its share of the free addresses), never one the other offers; a backup
    server answers no one. (Each DISCOVER goes out twice: Kea, which holds no address
    for an offer, may offer another one the second time.)"""
    macs = ["02:ce:00:00:01:%02x" % index for index in range(16)]
    offers = offers_to(macs)
    primary, standby = addresses()[PRIMARY], addresses()[STANDBY]
    assert all(len({server for server, _address in answers}) == 1 for answers in offers.values()), offers
    by_server: dict = {}
    for answers in offers.values():
        for server, address in answers:
            assert _in_pool(address), (server, address)
            by_server.setdefault(server, set()).add(address)
    assert set(by_server) == ({primary, standby} if LOAD_BALANCING else {primary}), (MODE, offers)
    if LOAD_BALANCING:
        assert not by_server[primary] & by_server[standby], offers


@host_database_only
def test_each_server_reads_the_reservations_from_the_host_database():
    """Every MAC of the inventory is a row of the database (each server's own, or the one the
    pair shares), and Kea's configuration names that database and holds no reservation: a
    server that reads another's connects to its address, with a password that its
    configuration file only includes."""
    macs = sorted(mac.replace(":", "").lower() for node in NODES.values() for mac in node.macs)
    for host in database_servers():
        rows = psql(host, "SELECT encode(dhcp_identifier, 'hex') FROM hosts WHERE dhcp_identifier_type = 0 ORDER BY 1")
        assert rows.split() == macs, host
    for host in [PRIMARY, STANDBY] + list(BACKUPS):
        dhcp4 = kea(host, "config-get")["arguments"]["Dhcp4"]
        databases = dhcp4.get("hosts-databases") or [dhcp4.get("hosts-database")]
        assert [(d["type"], d["name"]) for d in databases] == [("postgresql", "kea")], (host, databases)
        reads_another = DATABASE_SERVER not in ("", host)
        assert databases[0]["host"] == (addresses()[DATABASE_SERVER] if reads_another else "/run/postgresql"), host
        assert not dhcp4.get("reservations") and not any(s.get("reservations") for s in dhcp4["subnet4"]), host
        if reads_another:
            conf = ssh(host, "cat /etc/kea/kea-dhcp4.conf").stdout
            assert '"password": <?include "/etc/kea/centra-pxe-host-database.password"?>' in conf, host
            assert ssh(host, "stat -c %a:%U:%G /etc/kea/centra-pxe-host-database.password").stdout.strip() == \
                "640:root:_kea", host
            # No PostgreSQL of its own: the reservations it serves come from the other server's.
            assert ssh(host, "systemctl is-active postgresql", check=False).stdout.strip() != "active", host


@shared_database_only
def test_only_the_readers_reach_the_database_and_only_with_the_password():
    """PostgreSQL's port on the database's server: open to the server that reads it, closed
    to the lab network (the firewall); and a login from the reader without the password, or
    as another role, is refused (pg_hba.conf: scram-sha-256, Kea's role and database only)."""
    reader = next(h for h in (PRIMARY, STANDBY) if h != DATABASE_SERVER)
    port_open_from_peer_and_closed_to_others(POSTGRESQL_PORT, server=DATABASE_SERVER, peer=reader)
    address = addresses()[DATABASE_SERVER]
    probe = ("python3 -c %s" % shlex.quote(
        "import socket,struct,sys\n"
        "def startup(user, db):\n"
        "    body = struct.pack('!I', 196608) + b''.join(k + b'\\0' + v + b'\\0' for k, v in ((b'user', user), (b'database', db))) + b'\\0'\n"
        "    s = socket.create_connection((sys.argv[1], 5432), timeout=5)\n"
        "    s.sendall(struct.pack('!I', len(body) + 4) + body)\n"
        "    kind, = struct.unpack('!c', s.recv(1)); length, = struct.unpack('!I', s.recv(4))\n"
        "    payload = s.recv(length - 4); s.close()\n"
        "    return kind, payload\n"
        "kind, payload = startup(b'_kea', b'kea')\n"
        "print('kea', kind.decode(), struct.unpack('!I', payload[:4])[0] if kind == b'R' else payload[:200])\n"
        "kind, payload = startup(b'postgres', b'postgres')\n"
        "print('postgres', kind.decode(), payload[:400])\n") + " " + address)
    out = ssh(reader, probe).stdout.splitlines()
    # Kea's role is asked for a SASL (scram-sha-256) exchange, never let in on trust (R 0)
    # or asked for a clear-text password (R 3); the superuser is refused outright (E).
    assert out[0] == "kea R 10", out
    assert out[1].startswith("postgres E") and "no pg_hba.conf entry" in out[1], out


@host_database_only
def test_a_reservation_written_to_the_database_is_offered_at_once_without_a_reload():
    """What an onboarding does with the host database: a row, and the next DISCOVER of that
    MAC is offered its address, with no configuration reload (status-get's seconds since the
    last reload keep growing). With one database for the pair, the row is written once, on
    the database's server, and the server that answers (in hot-standby the primary, which
    reads it over the network) offers it."""
    mac, address = "02:ce:00:00:02:01", "192.0.2.241"
    assert not _in_pool(address) and ipaddress.ip_address(address) in ipaddress.ip_network(LAB.subnets[0].cidr)
    since_reload = {host: kea(host, "status-get")["arguments"]["reload"] for host in (PRIMARY, STANDBY)}
    insert = ("INSERT INTO hosts (dhcp_identifier, dhcp_identifier_type, dhcp4_subnet_id, ipv4_address, hostname)"
              " VALUES (decode('%s', 'hex'), 0, %d, %d, 'late-row')"
              % (mac.replace(":", ""), SUBNET_ID, int(ipaddress.ip_address(address))))
    try:
        for host in database_servers():
            psql(host, insert)
        offers = offers_to([mac])[mac]
        assert offers and {offered for _server, offered in offers} == {address}, offers
        for host in (PRIMARY, STANDBY):
            assert kea(host, "status-get")["arguments"]["reload"] >= since_reload[host], host
    finally:
        for host in database_servers():
            psql(host, "DELETE FROM hosts WHERE hostname = 'late-row'")


def kea_main_pid(host: str) -> str:
    return ssh(host, "systemctl show -p MainPID --value kea-dhcp4-server").stdout.strip()


@host_database_only
def test_kea_rides_out_a_restart_of_postgresql():
    """PostgreSQL restarted under Kea (a package upgrade, a new listen address): the first
    packet after it finds the connection closed. Kea 2.2's default then drops it and exits,
    and an HA server comes back WAITING; the role's reconnect settings keep each server's
    Kea running, and a reserved node is offered its address again within seconds. (The
    standby, which answers no one here, meets its closed connection later, when it serves
    alone with the primary powered off.)"""
    pids = {host: kea_main_pid(host) for host in (PRIMARY, STANDBY)}
    for host in database_servers():
        ssh(host, "systemctl restart postgresql")
    node = next((n for n in NODES.values() if n.ip and n.name not in (LATE_NODE, INSTALLED_NODE)),
                next(n for n in NODES.values() if n.ip))
    mac = node.macs[0]
    offers = wait_for("an offer to %s after PostgreSQL restarted" % mac, lambda: offers_to([mac])[mac], timeout=30)
    assert {offered for _server, offered in offers} == {node.ip}, offers
    assert {host: kea_main_pid(host) for host in (PRIMARY, STANDBY)} == pids


def test_each_server_answers_with_its_own_address():
    """The standby must work alone: its boot answers name itself, not the primary."""
    if ISC:
        pool = "%s %s" % LAB.subnets[0].pool
        for host, role in ((PRIMARY, "primary"), (STANDBY, "secondary")):
            conf = ssh(host, "cat /etc/dhcp/dhcpd.conf").stdout
            assert "  %s;\n  address %s;" % (role, addresses()[host]) in conf
            assert {line.split()[1].rstrip(";") for line in conf.splitlines()
                    if line.strip().startswith("next-server")} == {addresses()[host]}
            assert 'filename "http://%s/boot.ipxe";' % addresses()[host] in conf
            assert 'pool { failover peer "centra-pxe"; range %s; }' % pool in conf
        return
    for host, address in addresses().items():
        dhcp4 = kea(host, "config-get")["arguments"]["Dhcp4"]
        ha = next(h for h in dhcp4["hooks-libraries"] if h["library"].endswith("libdhcp_ha.so"))
        settings = ha["parameters"]["high-availability"][0]
        assert settings["this-server-name"] == host
        roles = {PRIMARY: "primary", STANDBY: "secondary" if LOAD_BALANCING else "standby"}
        roles.update((backup, "backup") for backup in BACKUPS)
        assert {p["name"]: p["role"] for p in settings["peers"]} == roles
        assert settings["mode"] == MODE
        next_servers = {c["next-server"] for c in dhcp4["client-classes"] if c.get("next-server", "0.0.0.0") != "0.0.0.0"}
        assert next_servers == {address}
        urls = [c["boot-file-name"] for c in dhcp4["client-classes"] if "://" in c.get("boot-file-name", "")]
        assert urls and all(u.startswith("http://%s/" % address) for u in urls)


def test_only_the_peers_reach_the_ha_port():
    """The peer link: the firewall lets the peer in, no one else (dhcpd's failover
    protocol has no authentication at all)."""
    port_open_from_peer_and_closed_to_others(HA_PORT)


@pytest.mark.skipif(ISC, reason="dhcpd's failover protocol has no authentication: the firewall test above is its guard")
def test_the_ha_channel_takes_only_the_pairs_certificate():
    """Kea 2.2's HA listener authenticates by client certificate only (require-client-certs):
    the peer itself, reaching the port through the firewall, is refused in plain HTTP, over
    TLS without a certificate, and with a certificate of another CA; with its own certificate
    of the pair the command is answered."""
    primary = addresses()[PRIMARY]
    for mode in ("plain", "anonymous", "foreign"):
        answer = ha_channel_answer(STANDBY, primary, mode)
        assert '"result"' not in answer, (mode, answer)
    answer = ha_channel_answer(STANDBY, primary, "pair")
    assert answer.startswith("HTTP/1.1 200") and '"result": 0' in answer, answer
    # The keys: each server's its own, readable by kea-dhcp4 alone; the CA key on the primary only.
    for host in addresses():
        modes = ssh(host, "stat -c '%%n %%a %%U' %s/server.key %s/ca.key 2>/dev/null; true" % (HA_TLS_DIR, HA_TLS_DIR))
        lines = modes.stdout.split("\n")
        assert "%s/server.key 600 _kea" % HA_TLS_DIR in lines, modes.stdout
        assert ("%s/ca.key 600 root" % HA_TLS_DIR in lines) == (host == PRIMARY), modes.stdout


def test_a_machine_boots_from_the_pair_and_the_other_server_learns_its_dynamic_lease():
    """Kea: the primary serves it in hot-standby, the server of its scope in load-balancing
    (either: Kea hashes the client identifier iPXE sends, and the offer probe of the test
    above sends none, so it cannot tell which). ISC: split 256 gives every client to the primary, but
    dhcpd lets either server answer a client whose secs field exceeds
    load_balance_max_seconds (3): the lab's iPXE ROM gets offers from both and may take
    the secondary's. Whoever served, the other holds the same lease, and so does a
    backup server, which served nothing."""
    result = boot(UNKNOWN_MAC, "bios")
    assert booted_profile(result["line"]) == LAB.menu_default
    served = [host for host in addresses() if fetched_script(host, UNKNOWN_MAC)]
    if KEA:
        assert served == [PRIMARY] or (LOAD_BALANCING and served == [STANDBY]), (MODE, served)
    else:
        assert len(served) == 1 and served[0] in (PRIMARY, STANDBY), served
    other = STANDBY if served == [PRIMARY] else PRIMARY
    address = leased_address(served[0], UNKNOWN_MAC)
    assert address and _in_pool(address), address
    for host in [other] + BACKUPS:
        assert wait_for("%s's copy of the lease" % host, lambda host=host: leased_address(host, UNKNOWN_MAC),
                        timeout=30) == address


def test_a_killed_dhcp_daemon_is_restarted_and_rejoins_the_pair():
    address = leased_address(STANDBY, UNKNOWN_MAC)
    assert address, "the standby holds no lease of the first machine before the kill"
    assert kill_and_wait_for_restart(PRIMARY, UNIT) >= 1
    # Kea: back from the dead it syncs the leases from the standby, then resumes its role.
    # ISC: back within auto_partner_down, the secondary was only out of touch: both normal.
    for host in (PRIMARY, STANDBY):
        wait_for("%s back in %s" % (host, SERVING), lambda host=host: ha_state(host) == SERVING, timeout=120)
    assert leased_address(PRIMARY, UNKNOWN_MAC) == address, "the restarted primary lost the lease"
    assert leased_address(STANDBY, UNKNOWN_MAC) == address, "the standby lost the lease"
    for backup in BACKUPS:
        assert ha_state(backup) == "backup"
        assert leased_address(backup, UNKNOWN_MAC) == address, "the backup server lost the lease"


@kea_only_lifecycle
def test_a_node_installs_through_the_serving_server_and_its_peer_learns_it():
    """Through the primary in hot-standby; in load-balancing through the server of the
    node's scope, whichever that is."""
    node = NODES[INSTALLED_NODE]
    mac = node.macs[0]
    result = boot(mac, "bios", "--disk", INSTALLED_NODE, "--fresh-disk", "--until",
                  "LOCAL-BOOT-OK %s" % INSTALLED_NODE, timeout=900)
    seen = [m["line"].split()[0] for m in result["markers"]]
    assert "INSTALL-OK" in seen and seen[-1] == "LOCAL-BOOT-OK", seen
    served = [host for host in addresses() if fetched_script(host, mac)]
    assert served == [PRIMARY] or (LOAD_BALANCING and served == [STANDBY]), (MODE, served)
    peer = STANDBY if served == [PRIMARY] else PRIMARY
    assert "centra.callback=http://%s/" % addresses()[served[0]] in result["cmdline"]
    assert node_state(served[0], mac)["state"] == "installed"
    # The server that took the callback forwards it to its peer.
    wait_for("%s's record of the install" % peer, lambda: node_state(peer, mac).get("state") == "installed",
             timeout=60)


def test_the_standby_takes_over_when_the_primary_dhcp_stops():
    ssh(PRIMARY, "systemctl stop %s" % UNIT)
    # Kea: heartbeat 1 s, max-response-delay 3 s, max-unacked-clients 0 (molecule.yml): seconds.
    # ISC: communications-interrupted at once (the connection closes), partner-down after
    # auto_partner_down (15 s, molecule/ha-isc).
    wait_for("the standby in partner-down", lambda: ha_state(STANDBY) == "partner-down", timeout=90)
    if KEA:
        # The survivor serves the primary's scope, and in load-balancing its own as well.
        scopes = kea(STANDBY, "ha-heartbeat")["arguments"]["scopes"]
        assert sorted(scopes) == ([PRIMARY, STANDBY] if LOAD_BALANCING else [PRIMARY]), scopes


def test_with_the_primary_powered_off_a_new_machine_boots_from_the_standby():
    lab("stop", PRIMARY, timeout=120)
    if ISC:
        result = boot(LATE_UNKNOWN_MAC, "bios")
        assert booted_profile(result["line"]) == LAB.menu_default
        assert fetched_script(STANDBY, LATE_UNKNOWN_MAC)
        late = leased_address(STANDBY, LATE_UNKNOWN_MAC)
        assert late and _in_pool(late), late
        first = leased_address(STANDBY, UNKNOWN_MAC)
        assert first and _in_pool(first), first  # it still holds the first machine's
        return
    node = NODES[LATE_NODE]
    mac = node.macs[0]
    # Its installer runs (no disk: it reports failed to the standby, which the primary,
    # off now, learns when it is back).
    result = boot(mac, "bios", "--until", "INSTALL-FAILED")
    assert booted_profile(result["cmdline"]) == node.profile
    assert fetched_script(STANDBY, mac)
    assert leased_address(STANDBY, mac) == node.ip
    # ... and the standby still knows the first machine's lease.
    assert _in_pool(leased_address(STANDBY, UNKNOWN_MAC) or "0.0.0.0")


@kea_only_lifecycle
def test_with_the_primary_powered_off_an_installed_node_boots_its_disk_through_the_standby():
    mac = NODES[INSTALLED_NODE].macs[0]
    result = boot(mac, "bios", "--disk", INSTALLED_NODE, "--until", "LOCAL-BOOT-OK %s" % INSTALLED_NODE, timeout=600)
    assert [m["line"].split()[0] for m in result["markers"]] == ["LOCAL-BOOT-OK"] or all(
        m["boot"] == 1 and m["line"].startswith("LOCAL-BOOT") for m in result["markers"]), result["markers"]
    assert fetched_script(STANDBY, mac)


def test_the_primary_comes_back_and_learns_what_the_standby_leased():
    lab("start", PRIMARY, timeout=300)
    if ISC:
        # After partner-down the returning primary recovers: the secondary sends it every
        # lease ("peer update completed"), then it waits mclt in recover-wait before both
        # are normal again (too long for the test to wait for).
        wait_for("the primary recovering",
                 lambda: ha_state(PRIMARY) in ("recover-wait", "recover-done", "normal"), timeout=120)
        late = leased_address(STANDBY, LATE_UNKNOWN_MAC)
        assert late and leased_address(PRIMARY, LATE_UNKNOWN_MAC) == late
        return
    wait_for("the primary back in %s" % SERVING, lambda: ha_state(PRIMARY) == SERVING, timeout=120)
    node = NODES[LATE_NODE]
    assert leased_address(PRIMARY, node.macs[0]) == node.ip
    wait_for("the standby back in %s" % SERVING, lambda: ha_state(STANDBY) == SERVING, timeout=60)
    # What was recorded before the primary went down survived its power-off.
    assert node_state(PRIMARY, NODES[INSTALLED_NODE].macs[0])["state"] == "installed"
    # The late node reported to the standby alone (its installer found no disk: failed);
    # the primary was off then and catches up from its peer once it is back.
    late_mac = node.macs[0]
    on_standby = node_state(STANDBY, late_mac)
    assert on_standby["state"] == "failed", on_standby
    wait_for("the primary's record of the late node", lambda: node_state(PRIMARY, late_mac).get("state") == "failed",
             timeout=180)


@pytest.mark.skipif(not BACKUPS, reason="no backup server: CENTRA_HA_BACKUP=1 (scenario ha) adds one")
def test_the_backup_server_holds_every_lease_and_served_no_one():
    """After the whole story: the backup got every lease (the first machine's from the
    primary, the late node's from the standby in partner-down) and served no boot."""
    late = NODES[LATE_NODE]
    for backup in BACKUPS:
        assert ha_state(backup) == "backup"
        assert leased_address(backup, late.macs[0]) == late.ip
        assert leased_address(backup, UNKNOWN_MAC) == leased_address(STANDBY, UNKNOWN_MAC)
        for mac in (UNKNOWN_MAC, late.macs[0], NODES[INSTALLED_NODE].macs[0]):
            assert not fetched_script(backup, mac), (backup, mac)
