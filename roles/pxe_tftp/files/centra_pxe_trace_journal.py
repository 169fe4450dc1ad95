# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""centra.pxe boot trace: the journal feeder (docs/status.md).

Follows the journal entries of the daemons that log what they serve, and sends each
as one JSON datagram (the trace ingest contract) to the lifecycle service's trace
socket:

- tftpd-hpa with --verbose (identifier in.tftpd): "RRQ from <ip> filename <file>";
- ISC dhcpd (identifier dhcpd): the "centra.pxe trace ..." lines that centra.pxe's
  dhcpd.conf logs for every answer and release;
- Kea (identifier kea-dhcp4, its stdout): DHCP4_CLASS_ASSIGNED (the built-in class
  VENDOR_CLASS_<option 60>, which for a PXE or HTTP boot client carries its
  architecture, "PXEClient:Arch:00007:...") joined by transaction id to the
  DHCP4_LEASE_ADVERT line of the same packet: an offer with address, architecture and
  option 60. Kea's acks come from its run_script hook (roles/pxe_dhcp), not from here.

journalctl does the reading (`--follow --output=json`); this program only parses and
sends. A send never waits: a missing socket, a stopped service or a full buffer drops
the event (counted, reported at exit). The journal cursor is saved at most once a
second and at exit, so a restart resumes where it stopped. Standard library only: it
runs with the PXE host's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

# The collection's one MAC parser (plugins/module_utils/_mac.py), which the role installs
# beside this program as centra_pxe_mac.py; run from the source tree (unit tests) it is
# read from there.
try:
    import centra_pxe_mac as macs  # pylint: disable=import-error
except ImportError:  # pragma: no cover - depends on where the program runs from
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "plugins", "module_utils"))
    import _mac as macs  # pylint: disable=import-error

# The identifiers the daemons log under, and which parser reads them.
IDENTIFIERS = {"in.tftpd": "tftp", "dhcpd": "dhcpd", "kea-dhcp4": "kea"}
MAX_DATAGRAM = 8192
# Kea class lines waiting for the address line of their packet (transaction ids).
PENDING_MAX = 4096

TFTP_RRQ = re.compile(r"^RRQ from (?:::ffff:)?(?P<ip>[0-9A-Fa-f:.]+) filename (?P<file>.+?)\s*$", re.S)
DHCPD_ANSWER = re.compile(r"^centra\.pxe trace (?P<type>\d+) (?P<mac>[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}) "
                          r"ip=(?P<ip>[0-9.]*) arch=(?P<arch>\d*) relay=(?P<relay>[0-9.]*) vendor=(?P<vendor>.*)$", re.S)
DHCPD_RELEASE = re.compile(r"^centra\.pxe trace release (?P<mac>[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}) "
                           r"ip=(?P<ip>[0-9.]*)\s*$")
# dhcpd logs the message type of the packet it answers: a DISCOVER gets an offer, a REQUEST an ack.
DHCPD_ANSWERS = {"1": "offer", "3": "ack"}
KEA_PACKET = re.compile(r"\b(?P<id>DHCP4_CLASS_ASSIGNED|DHCP4_LEASE_ADVERT) \[hwtype=\d+ (?P<mac>[0-9A-Fa-f:]+)\], "
                        r"cid=\[[^\]]*\], tid=(?P<tid>0x[0-9A-Fa-f]+): (?P<rest>.*)$", re.S)
KEA_ADVERT = re.compile(r"^lease (?P<ip>[0-9.]+) will be advertised")
# Classes Kea or centra.pxe name after option 60 in the class list: where option 60 ends.
KEA_NAMED_CLASS = re.compile(r"^(?:centra_\w+|KNOWN|UNKNOWN|DROP|BOOTP|HA_[\w-]+)$")
KEA_VENDOR_PREFIX = "VENDOR_CLASS_"
# PXE and UEFI HTTP boot clients put their option 93 in option 60 too (PXE spec, UEFI 2.x).
VENDOR_ARCH = re.compile(r"^(?:PXEClient|HTTPClient):Arch:(?P<arch>\d{5})(?::|$)")


def padded_mac(mac: str) -> Optional[str]:
    """dhcpd's binary-to-ascii drops leading zeros (2:ce:5:...): 02:ce:05:... (None: no card's MAC)."""
    return macs.mac_or_none(mac)


def vendor_arch(vendor: Optional[str]) -> Optional[int]:
    match = VENDOR_ARCH.match(vendor or "")
    return int(match.group("arch")) if match else None


def parse_tftp(message: str) -> Optional[Dict[str, Any]]:
    match = TFTP_RRQ.match(message)
    if not match:
        return None
    return {"src": "tftp", "type": "rrq", "ip": match.group("ip"), "file": match.group("file")}


def parse_dhcpd(message: str) -> Optional[Dict[str, Any]]:
    match = DHCPD_ANSWER.match(message)
    if match:
        kind = DHCPD_ANSWERS.get(match.group("type"))
        if not kind:
            return None
        mac = padded_mac(match.group("mac"))
        if not mac:
            return None
        event: Dict[str, Any] = {"src": "dhcp", "server": "dhcpd", "type": kind, "mac": mac}
        if match.group("ip"):
            event["ip"] = match.group("ip")
        if match.group("arch"):
            event["arch"] = int(match.group("arch"))
        if match.group("relay") and match.group("relay") != "0.0.0.0":
            event["relay"] = match.group("relay")
        if match.group("vendor"):
            event["vendor"] = match.group("vendor")
            if "arch" not in event and vendor_arch(event["vendor"]) is not None:
                event["arch"] = vendor_arch(event["vendor"])
        return event
    match = DHCPD_RELEASE.match(message)
    if match:
        mac = padded_mac(match.group("mac"))
        if not mac:
            return None
        event = {"src": "dhcp", "server": "dhcpd", "type": "release", "mac": mac}
        if match.group("ip"):
            event["ip"] = match.group("ip")
        return event
    return None


def kea_vendor(class_list: str) -> Tuple[bool, Optional[str]]:
    """(the full classification?, option 60) from DHCP4_CLASS_ASSIGNED's list.

    Kea logs the classes of a packet twice: early (only KNOWN/UNKNOWN) and in full
    ("ALL, VENDOR_CLASS_<option 60>, <configured classes>, ..."). Option 60 is the
    client's text and may hold ", ": it runs up to the first class a server names.
    """
    parts = class_list.split(", ")
    if not parts or parts[0] != "ALL":
        return False, None
    for index, part in enumerate(parts):
        if part.startswith(KEA_VENDOR_PREFIX):
            end = next((i for i in range(index + 1, len(parts)) if KEA_NAMED_CLASS.match(parts[i])), len(parts))
            return True, ", ".join(parts[index:end])[len(KEA_VENDOR_PREFIX):]
    return True, None


class KeaJoin:
    """Joins Kea's class line to the address line of the same packet (MAC and transaction id)."""

    def __init__(self, limit: int = PENDING_MAX) -> None:
        self.limit = limit
        self.pending: "collections.OrderedDict[Tuple[str, str], Optional[str]]" = collections.OrderedDict()

    def parse(self, message: str) -> Optional[Dict[str, Any]]:
        match = KEA_PACKET.search(message)
        if not match:
            return None
        key = (match.group("mac").lower(), match.group("tid").lower())
        if match.group("id") == "DHCP4_CLASS_ASSIGNED":
            _head, _sep, class_list = match.group("rest").partition("class(es): ")
            full, vendor = kea_vendor(class_list.rstrip("\n"))
            if full:
                self.pending[key] = vendor
                self.pending.move_to_end(key)
                while len(self.pending) > self.limit:
                    self.pending.popitem(last=False)
            return None
        advert = KEA_ADVERT.match(match.group("rest"))
        if not advert:
            return None
        event: Dict[str, Any] = {"src": "dhcp", "server": "kea", "type": "offer", "mac": key[0],
                                 "ip": advert.group("ip")}
        vendor = self.pending.pop(key, None)
        if vendor:
            event["vendor"] = vendor
            arch = vendor_arch(vendor)
            if arch is not None:
                event["arch"] = arch
        return event


class Feeder:
    """Journal entries in, trace datagrams out."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.kea = KeaJoin()
        self.sent = 0
        self.dropped = 0

    def event_of(self, entry: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        parser = IDENTIFIERS.get(str(entry.get("SYSLOG_IDENTIFIER") or ""))
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald's JSON gives non-UTF-8 messages as byte arrays
            message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode("utf-8", "replace")
        if not parser or not isinstance(message, str):
            return None
        if parser == "tftp":
            event = parse_tftp(message)
        elif parser == "dhcpd":
            event = parse_dhcpd(message)
        else:
            event = self.kea.parse(message)
        if event is not None:
            try:
                event["ts"] = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
            except (KeyError, TypeError, ValueError):
                pass
        return event

    def send(self, event: Dict[str, Any]) -> bool:
        data = json.dumps(event, separators=(",", ":")).encode()
        if len(data) > MAX_DATAGRAM:
            self.dropped += 1
            return False
        try:
            self.sock.sendto(data, self.socket_path)
        except OSError:  # no socket, nobody reading it, or its buffer full: never wait
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def feed(self, lines: Iterable[bytes], cursor: Optional["Cursor"] = None) -> None:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            event = self.event_of(entry)
            if event is not None:
                self.send(event)
            if cursor is not None and isinstance(entry.get("__CURSOR"), str):
                cursor.advance(entry["__CURSOR"])


class Cursor:
    """The journal position, saved at most once a second (and at exit) in the state directory."""

    def __init__(self, path: Optional[str], interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.value: Optional[str] = None
        self.saved_at = 0.0
        self.saved: Optional[str] = None
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self.value = self.saved = handle.read().strip() or None

    def advance(self, value: str) -> None:
        self.value = value
        if time.monotonic() - self.saved_at >= self.interval:
            self.save()

    def save(self) -> None:
        if not self.path or not self.value or self.value == self.saved:
            return
        temporary = self.path + ".new"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(self.value + "\n")
        os.replace(temporary, self.path)
        self.saved, self.saved_at = self.value, time.monotonic()


def journalctl_command(identifiers: Iterable[str], cursor: Optional[str]) -> List[str]:
    command = ["journalctl", "--follow", "--output=json", "--output-fields=MESSAGE,SYSLOG_IDENTIFIER",
               "--no-tail" if cursor else "--lines=0"]
    if cursor:
        command.append("--after-cursor=" + cursor)
    # Matches on one field are ORed. By identifier, not by unit: journald may not learn
    # the unit of a short-lived process (a tftpd-hpa transfer child) before it exits.
    command.extend("SYSLOG_IDENTIFIER=" + name for name in identifiers)
    return command


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--socket", required=True, help="the lifecycle service's trace socket")
    parser.add_argument("--state-dir", help="where the journal cursor is kept (default: none kept)")
    parser.add_argument("--identifier", action="append", choices=sorted(IDENTIFIERS),
                        help="a daemon to follow (repeatable; default: all)")
    args = parser.parse_args(argv)
    cursor = Cursor(os.path.join(args.state_dir, "cursor") if args.state_dir else None)
    feeder = Feeder(args.socket)
    process = subprocess.Popen(journalctl_command(args.identifier or sorted(IDENTIFIERS), cursor.value),
                               stdout=subprocess.PIPE)

    def stop(_signum: int, _frame: Any) -> None:
        process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    assert process.stdout is not None
    try:
        feeder.feed(process.stdout, cursor)
    finally:
        cursor.save()
        status = process.wait()
        print("centra-pxe-trace-journal: %d events sent, %d dropped; journalctl exited %d"
              % (feeder.sent, feeder.dropped, status), file=sys.stderr)
    # journalctl ends only when stopped or broken: a failure, unless we stopped it.
    return 0 if status in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main())
