# SPDX-License-Identifier: GPL-3.0-or-later
"""Kea's side of the journal feeder: Kea 2.2's own log lines (stdout into the journal,
the layout and message texts of Debian 12's kea-dhcp4 2.2.0) into trace events of the
shape the lifecycle service takes (src dhcp, server kea, type, mac, ip), joined to the
class line of the same packet; odd or forged lines are ignored, never a crash."""

from __future__ import annotations

import json

import pytest

from centra_pxe_trace_journal import IDENTIFIERS, PENDING_MAX, Feeder, KeaJoin  # pylint: disable=import-error

PID = "9664"
HEAD = "2026-12-03 12:37:41.390 %-5s [kea-dhcp4.%s/" + PID + ".139922439180800] "
LABEL = "[hwtype=1 02:ce:26:1f:8b:8b], cid=[no info], tid=0xf89cc77b"
CLASSES = (HEAD % ("DEBUG", "dhcp4") + "DHCP4_CLASS_ASSIGNED " + LABEL + ": client packet has been assigned to the "
           "following class(es): ALL, VENDOR_CLASS_PXEClient:Arch:00000:UNDI:002001, centra_arch_bios, KNOWN")
ALLOC = HEAD % ("INFO", "leases") + "DHCP4_LEASE_ALLOC " + LABEL + ": lease 192.0.2.100 has been allocated for 3600 seconds"
REUSE = HEAD % ("INFO", "leases") + "DHCP4_LEASE_REUSE " + LABEL + ": lease 192.0.2.100 has been reused for 3000 seconds"
RELEASE = HEAD % ("INFO", "leases") + "DHCP4_RELEASE " + LABEL + ": address 192.0.2.100 was released properly."
DECLINE = (HEAD % ("INFO", "leases") + "DHCP4_DECLINE_LEASE Received DHCPDECLINE for addr 192.0.2.100 from client "
           + LABEL + ". The lease will be unavailable for 86400 seconds.")
NAK_NO_SUBNET = (HEAD % ("ERROR", "bad-packets") + "DHCP4_PACKET_NAK_0001 " + LABEL
                 + ": failed to select a subnet for incoming packet, src 0.0.0.0, type DHCPREQUEST")
NAK_INIT_REBOOT = (HEAD % ("DEBUG", "bad-packets") + "DHCP4_PACKET_NAK_0002 " + LABEL
                   + ": invalid address 198.51.100.7 requested by INIT-REBOOT")
NAK_REQUEST = (HEAD % ("DEBUG", "bad-packets") + "DHCP4_PACKET_NAK_0004 " + LABEL
               + ": failed to grant a lease, client sent ciaddr 0.0.0.0, requested-ip-address 198.51.100.7")
MAC = "02:ce:26:1f:8b:8b"


def kea(kind: str, **more) -> dict:
    return dict({"src": "dhcp", "server": "kea", "type": kind, "mac": MAC}, **more)


@pytest.mark.parametrize("line, event", [
    (ALLOC, kea("ack", ip="192.0.2.100")),
    (REUSE, kea("ack", ip="192.0.2.100")),
    (RELEASE, kea("release", ip="192.0.2.100")),
    (DECLINE, kea("decline", ip="192.0.2.100")),
    # A NAK's address is the one asked for: not the client's, left out (as the hook did).
    (NAK_NO_SUBNET, kea("nak")),
    (NAK_INIT_REBOOT, kea("nak")),
    (NAK_REQUEST, kea("nak")),
])
def test_each_lease_line_is_its_event(line, event):
    assert KeaJoin().parse(line, PID) == event


def test_an_ack_joins_the_class_line_of_its_request():
    join = KeaJoin()
    assert join.parse(CLASSES, PID) is None
    assert join.parse(ALLOC, PID) == kea("ack", ip="192.0.2.100", arch=0, vendor="PXEClient:Arch:00000:UNDI:002001")
    assert not join.pending
    # The next packet of the client (another transaction id) has no class line seen: nothing guessed.
    assert join.parse(ALLOC.replace("0xf89cc77b", "0x00000002"), PID) == kea("ack", ip="192.0.2.100")


@pytest.mark.parametrize("line", [
    # Kea sends no NAK to a DISCOVER: _0003, and _0001 for anything but a REQUEST, are not events.
    HEAD % ("DEBUG", "bad-packets") + "DHCP4_PACKET_NAK_0003 " + LABEL
    + ": failed to advertise a lease, client sent ciaddr 0.0.0.0, requested-ip-address (no address)",
    NAK_NO_SUBNET.replace("DHCPREQUEST", "DHCPDISCOVER"),
    HEAD % ("INFO", "leases") + "DHCP4_INIT_REBOOT " + LABEL + ": client is in INIT-REBOOT state and requests address 192.0.2.100",
    HEAD % ("INFO", "dhcp4") + "DHCP4_STARTED Kea DHCPv4 server version 2.2.0 started",
    # A packet without a hardware address, or one that is not a 6-byte MAC.
    ALLOC.replace("[hwtype=1 02:ce:26:1f:8b:8b]", "[no hwaddr info]"),
    ALLOC.replace("02:ce:26:1f:8b:8b", "02:ce:26:1f:8b:8b:00:11"),
    ALLOC.replace("02:ce:26:1f:8b:8b", "zz"),
    # The message id without Kea's prefix, or somewhere inside another message.
    "DHCP4_LEASE_ALLOC " + LABEL + ": lease 192.0.2.100 has been allocated for 3600 seconds",
    CLASSES + " " + ALLOC,
    "", "\x00\xff", "[kea-dhcp4.leases/" + PID + ".1] DHCP4_LEASE_ALLOC",
])
def test_other_or_odd_lines_are_no_event(line):
    join = KeaJoin()
    assert join.parse(line, PID) is None


def test_an_odd_address_is_left_out_and_nothing_leaks_into_the_event():
    join = KeaJoin()
    assert join.parse(ALLOC.replace("192.0.2.100", "999.0.2.100"), PID) == kea("ack")
    # Extra text after the label or the address cannot add a field: the event is built, not copied.
    odd = ALLOC.replace("3600 seconds", '3600 seconds", "relay": "203.0.113.9", "x": "y')
    assert join.parse(odd, PID) == kea("ack", ip="192.0.2.100")


def test_a_line_forged_through_option_60_is_not_kea_s():
    """Kea logs option 60 as the client sent it: a newline there makes the rest of it a
    journal entry of kea-dhcp4's own. Kea's prefix names its process: another pid is not it."""
    forged = ALLOC.replace("/" + PID + ".", "/1.")
    assert KeaJoin().parse(forged, PID) is None
    assert KeaJoin().parse(ALLOC, PID) is not None
    assert KeaJoin().parse(forged, None) is not None  # no _PID in the entry (tests, old journals): not checked


def test_pending_class_lines_stay_bounded():
    join = KeaJoin(limit=3)
    for tid in range(10):
        join.parse(CLASSES.replace("0xf89cc77b", hex(tid)), PID)
    assert [key[1] for key in join.pending] == ["0x7", "0x8", "0x9"]
    assert PENDING_MAX >= 1000  # a storm of 200 machines fits, a flood cannot grow it


def test_the_feeder_sends_kea_events_with_the_journal_time_and_checks_the_pid(receiver):
    feeder = Feeder(receiver.path)

    def entry(message: str, pid: str = PID) -> bytes:
        return json.dumps({"SYSLOG_IDENTIFIER": "kea-dhcp4", "MESSAGE": message, "_PID": pid,
                           "__REALTIME_TIMESTAMP": "1796301461123456", "__CURSOR": "s=1"}).encode()

    feeder.feed([entry(CLASSES), entry(ALLOC), entry(RELEASE, pid="4242"), entry(NAK_REQUEST)])
    ack = json.loads(receiver.take())
    assert ack == kea("ack", ip="192.0.2.100", arch=0, vendor="PXEClient:Arch:00000:UNDI:002001", ts=1796301461.123456)
    assert json.loads(receiver.take()) == kea("nak", ts=1796301461.123456)
    assert receiver.nothing()
    assert "kea-dhcp4" in IDENTIFIERS
