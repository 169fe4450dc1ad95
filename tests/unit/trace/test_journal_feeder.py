# SPDX-License-Identifier: GPL-3.0-or-later
"""The journal feeder: journal entries of in.tftpd, dhcpd and Kea (lines as those daemons
write them, taken from real runs) into trace events of the ingest contract."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from centra_pxe_trace_journal import (  # pylint: disable=import-error
    Feeder, KeaJoin, journalctl_command, kea_vendor, main, padded_mac, parse_dhcpd, parse_tftp)

# Kea 2.2, stdout into the journal (one DISCOVER: early and full classification, then the offer).
KEA_EARLY = ("2026-12-03 12:38:11.168 DEBUG [kea-dhcp4.dhcp4/11829.139661857280512] DHCP4_CLASS_ASSIGNED "
             "[hwtype=1 02:ce:05:7a:b7:2d], cid=[no info], tid=0xe805c416: client packet has been assigned to the "
             "following class(es): UNKNOWN")
KEA_CLASSES = ("2026-12-03 12:38:11.168 DEBUG [kea-dhcp4.dhcp4/11829.139661857280512] DHCP4_CLASS_ASSIGNED "
               "[hwtype=1 02:ce:05:7a:b7:2d], cid=[no info], tid=0xe805c416: client packet has been assigned to the "
               "following class(es): ALL, VENDOR_CLASS_PXEClient:Arch:00007:UNDI:003016, centra_arch_efi64, UNKNOWN")
KEA_ADVERT = ("2026-12-03 12:38:11.168 INFO  [kea-dhcp4.leases/11829.139661857280512] DHCP4_LEASE_ADVERT "
              "[hwtype=1 02:ce:05:7a:b7:2d], cid=[no info], tid=0xe805c416: lease 192.0.2.100 will be advertised")
KEA_ALLOC = ("2026-12-03 12:37:41.390 INFO  [kea-dhcp4.leases/9664.139922439180800] DHCP4_LEASE_ALLOC "
             "[hwtype=1 02:ce:26:1f:8b:8b], cid=[no info], tid=0xf89cc77b: lease 192.0.2.100 has been allocated for "
             "3600 seconds")


def entry(identifier: str, message, usec: int = 1796301461123456, cursor: str = "s=1") -> dict:
    return {"SYSLOG_IDENTIFIER": identifier, "MESSAGE": message, "__REALTIME_TIMESTAMP": str(usec), "__CURSOR": cursor}


def test_tftp_read_requests():
    assert parse_tftp("RRQ from 192.0.2.100 filename ipxe.efi") == {
        "src": "tftp", "type": "rrq", "ip": "192.0.2.100", "file": "ipxe.efi"}
    assert parse_tftp("RRQ from ::ffff:192.0.2.101 filename /undionly.kpxe\n")["ip"] == "192.0.2.101"
    assert parse_tftp("RRQ from 192.0.2.100 filename my file.efi")["file"] == "my file.efi"
    assert parse_tftp("WRQ from 192.0.2.100 filename x") is None
    assert parse_tftp("tftp: client does not accept options") is None


def test_dhcpd_answers_and_releases():
    offer = parse_dhcpd("centra.pxe trace 1 2:ce:5:54:50:78 ip=192.0.2.101 arch=7 relay=0.0.0.0 "
                        "vendor=PXEClient:Arch:00007:UNDI:003016")
    assert offer == {"src": "dhcp", "server": "dhcpd", "type": "offer", "mac": "02:ce:05:54:50:78",
                     "ip": "192.0.2.101", "arch": 7, "vendor": "PXEClient:Arch:00007:UNDI:003016"}
    ack = parse_dhcpd("centra.pxe trace 3 52:54:0:0:1:1 ip=192.0.2.11 arch= relay=198.51.100.1 vendor=")
    assert ack == {"src": "dhcp", "server": "dhcpd", "type": "ack", "mac": "52:54:00:00:01:01",
                   "ip": "192.0.2.11", "relay": "198.51.100.1"}
    # No option 93 but option 60 names the architecture: taken from there.
    assert parse_dhcpd("centra.pxe trace 1 2:0:0:0:0:1 ip= arch= relay= vendor=HTTPClient:Arch:00016")["arch"] == 16
    # The vendor text is the client's: kept whole, spaces and all.
    assert parse_dhcpd("centra.pxe trace 1 2:0:0:0:0:1 ip= arch= relay= vendor=a b=c")["vendor"] == "a b=c"
    assert parse_dhcpd("centra.pxe trace 8 2:0:0:0:0:1 ip= arch= relay= vendor=") is None  # INFORM: no answer to trace
    assert parse_dhcpd("centra.pxe trace release 52:54:0:0:1:1 ip=192.0.2.11") == {
        "src": "dhcp", "server": "dhcpd", "type": "release", "mac": "52:54:00:00:01:01", "ip": "192.0.2.11"}
    assert parse_dhcpd("DHCPDISCOVER from 52:54:00:00:01:01 via eth0") is None
    assert parse_dhcpd("centra.pxe trace 1 not-a-mac ip= arch= relay= vendor=") is None


def test_padded_mac():
    assert padded_mac("2:CE:5:54:50:78") == "02:ce:05:54:50:78"


def test_kea_offer_joins_the_class_line_of_its_packet():
    join = KeaJoin()
    assert join.parse(KEA_EARLY) is None
    assert join.parse(KEA_CLASSES) is None
    # Another client's ack (its REQUEST's class line not seen): an ack without architecture (test_kea_feeder.py).
    assert join.parse(KEA_ALLOC) == {"src": "dhcp", "server": "kea", "type": "ack", "mac": "02:ce:26:1f:8b:8b",
                                     "ip": "192.0.2.100"}
    assert join.parse(KEA_ADVERT) == {"src": "dhcp", "server": "kea", "type": "offer", "mac": "02:ce:05:7a:b7:2d",
                                      "ip": "192.0.2.100", "arch": 7, "vendor": "PXEClient:Arch:00007:UNDI:003016"}
    assert not join.pending
    # Another transaction of the same client, without a class line: no architecture guessed.
    other = KEA_ADVERT.replace("0xe805c416", "0x00000001")
    assert join.parse(other) == {"src": "dhcp", "server": "kea", "type": "offer", "mac": "02:ce:05:7a:b7:2d",
                                 "ip": "192.0.2.100"}


def test_kea_pending_class_lines_are_bounded():
    join = KeaJoin(limit=3)
    for tid in range(10):
        join.parse(KEA_CLASSES.replace("0xe805c416", hex(tid)))
    assert [key[1] for key in join.pending] == ["0x7", "0x8", "0x9"]


@pytest.mark.parametrize("listing, vendor", [
    ("ALL, VENDOR_CLASS_PXEClient:Arch:00000:UNDI:002001, centra_ipxe, KNOWN", "PXEClient:Arch:00000:UNDI:002001"),
    ("ALL, VENDOR_CLASS_odd, vendor, text, UNKNOWN", "odd, vendor, text"),
    ("ALL, centra_arch_bios, UNKNOWN", None),
    ("ALL, VENDOR_CLASS_HTTPClient:Arch:00016:UNDI:003000, centra_arch_http_efi64, HA_server1, UNKNOWN",
     "HTTPClient:Arch:00016:UNDI:003000"),
])
def test_kea_vendor_class(listing, vendor):
    assert kea_vendor(listing) == (True, vendor)


def test_kea_early_classification_is_not_the_full_one():
    assert kea_vendor("UNKNOWN") == (False, None)


def test_feeder_routes_by_identifier_and_stamps_the_journal_time(receiver):
    feeder = Feeder(receiver.path)
    lines = [json.dumps(entry("in.tftpd", "RRQ from 192.0.2.100 filename ipxe.efi")).encode(),
             json.dumps(entry("sshd", "RRQ from 192.0.2.100 filename ipxe.efi")).encode(),  # not a daemon we follow
             b"not json", b"[1, 2]",
             json.dumps(entry("kea-dhcp4", KEA_CLASSES)).encode(),
             json.dumps(entry("kea-dhcp4", KEA_ADVERT, usec=1796301462000000)).encode(),
             # journald gives a message that is not UTF-8 as an array of bytes
             json.dumps(entry("in.tftpd", list(b"RRQ from 192.0.2.102 filename \xffx.efi")))
             .encode()]
    feeder.feed(lines)
    first = json.loads(receiver.take())
    assert first == {"src": "tftp", "type": "rrq", "ip": "192.0.2.100", "file": "ipxe.efi", "ts": 1796301461.123456}
    second = json.loads(receiver.take())
    assert second["type"] == "offer" and second["arch"] == 7 and second["ts"] == 1796301462.0
    third = json.loads(receiver.take())
    assert third["ip"] == "192.0.2.102" and third["file"] == "\ufffdx.efi"
    assert receiver.nothing()
    assert (feeder.sent, feeder.dropped) == (3, 0)


def test_a_missing_socket_drops_at_once_and_a_full_one_waits_once(receiver, tmp_path):
    feeder = Feeder(str(tmp_path / "absent.sock"))
    started = time.monotonic()
    assert feeder.send({"src": "tftp"}) is False and feeder.dropped == 1
    assert time.monotonic() - started < 0.5 and feeder.waited == 0
    # Nobody reads the receiver: its queue fills, one send waits (send_wait), then the
    # rest drop at once instead of each waiting.
    feeder = Feeder(receiver.path)
    feeder.send_wait = 0.3
    started = time.monotonic()
    results = [feeder.send({"src": "tftp", "type": "rrq", "ip": "192.0.2.1", "file": "x" * 1000}) for _event in range(5000)]
    elapsed = time.monotonic() - started
    assert results[0] is True and results[-1] is False
    assert feeder.sent + feeder.dropped == 5000 and feeder.dropped > 0
    assert feeder.waited == 1 and feeder.stalled and 0.3 <= elapsed < 3, (feeder.waited, elapsed)


def test_a_burst_beyond_the_queue_waits_for_the_reader_instead_of_dropping(receiver):
    """The service reads a little late (a burst longer than its socket's queue): nothing is lost."""
    feeder = Feeder(receiver.path)
    taken: list = []

    def read_later() -> None:
        time.sleep(0.2)
        while len(taken) < 3000:
            taken.append(receiver.take(timeout=5))

    reader = threading.Thread(target=read_later)
    reader.start()
    results = [feeder.send({"src": "tftp", "type": "rrq", "ip": "192.0.2.1", "file": "f%d" % n}) for n in range(3000)]
    reader.join(timeout=30)
    assert all(results) and (feeder.sent, feeder.dropped) == (3000, 0)
    assert feeder.waited >= 1 and not feeder.stalled  # it did find the queue full
    assert [json.loads(d)["file"] for d in taken] == ["f%d" % n for n in range(3000)]


def test_an_oversized_event_is_dropped(receiver):
    feeder = Feeder(receiver.path)
    assert feeder.send({"src": "tftp", "file": "x" * 9000}) is False
    assert receiver.nothing()


def test_journalctl_follows_by_identifier_from_now_or_after_the_cursor():
    fresh = journalctl_command(["dhcpd", "in.tftpd"], None)
    assert fresh[:3] == ["journalctl", "--follow", "--output=json"] and "--lines=0" in fresh
    # _PID: Kea's lines are checked against the process that wrote them (test_kea_feeder.py).
    assert "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_PID" in fresh
    assert fresh[-2:] == ["SYSLOG_IDENTIFIER=dhcpd", "SYSLOG_IDENTIFIER=in.tftpd"]
    resumed = journalctl_command(["in.tftpd"], "s=abc")
    assert "--after-cursor=s=abc" in resumed and "--no-tail" in resumed and "--lines=0" not in resumed


def test_main_feeds_what_journalctl_prints_and_resumes_after_its_cursor(receiver, tmp_path, monkeypatch):
    """main() with a stand-in journalctl on PATH that records its arguments and prints two entries."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    entries = tmp_path / "entries.json"
    entries.write_text("\n".join(json.dumps(e) for e in [
        entry("in.tftpd", "RRQ from 192.0.2.100 filename ipxe.efi", cursor="s=first"),
        entry("dhcpd", "centra.pxe trace 3 52:54:0:0:1:1 ip=192.0.2.11 arch=7 relay= vendor=", cursor="s=second"),
    ]) + "\n")
    fake = bin_dir / "journalctl"
    fake.write_text("#!/bin/sh\necho \"$@\" >> %s\ncat %s\n" % (tmp_path / "args", entries))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", "%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"]))
    assert main(["--socket", receiver.path, "--state-dir", str(state)]) == 0
    assert json.loads(receiver.take())["src"] == "tftp"
    assert json.loads(receiver.take())["mac"] == "52:54:00:00:01:01"
    assert (state / "cursor").read_text() == "s=second\n"
    assert main(["--socket", receiver.path, "--state-dir", str(state), "--identifier", "in.tftpd"]) == 0
    first_args, second_args = (tmp_path / "args").read_text().splitlines()
    assert "--lines=0" in first_args and "SYSLOG_IDENTIFIER=kea-dhcp4" in first_args
    assert "--after-cursor=s=second" in second_args and "SYSLOG_IDENTIFIER=dhcpd" not in second_args
