# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""centra.pxe boot trace: the journal feeder (docs/status.md).

Follows the journal entries of the daemons that log what they serve, and sends each
as one JSON datagram (the trace ingest contract) to the lifecycle service's trace
socket:

- tftpd-hpa with --verbose (identifier in.tftpd): "RRQ from <ip> filename <file>";
- ISC dhcpd (identifier dhcpd): the "centra.pxe trace ..." lines that centra.pxe's
  dhcpd.conf logs for every answer and release;
- Kea 2.2 (identifier kea-dhcp4, its stdout): its own log lines, as centra.pxe's
  kea-dhcp4.conf sets their loggers (plugins/plugin_utils/_render_dhcp.py):
  DHCP4_LEASE_ADVERT (an offer), DHCP4_LEASE_ALLOC and DHCP4_LEASE_REUSE (an ack),
  DHCP4_RELEASE, DHCP4_DECLINE_LEASE, and the DHCPNAKs DHCP4_PACKET_NAK_0001 (to a
  REQUEST), _0002 and _0004. Each is joined by MAC and transaction id to the
  DHCP4_CLASS_ASSIGNED line of the same packet, whose built-in class
  VENDOR_CLASS_<option 60> carries a PXE or HTTP boot client's architecture
  ("PXEClient:Arch:00007:..."). Kea logs no relay address (giaddr) at these levels:
  its events have none.

journalctl does the reading (`--follow --output=json`); this program only parses and
sends. A missing socket or a stopped service drops the event at once; a full queue (a
burst) is retried for up to a second, once until a send gets through again (counted,
reported at exit). Waiting here delays the trace, never a daemon. The journal cursor is
saved at most once a second and at exit, so a restart resumes where it stopped. Standard library only: it
runs with the PXE host's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
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
# A full trace socket queue (net.unix.max_dgram_qlen datagrams: a burst faster than the
# service reads) is retried every SEND_RETRY seconds for at most SEND_WAIT.
SEND_WAIT = 1.0
SEND_RETRY = 0.005
# Kea class lines waiting for the address line of their packet (transaction ids).
PENDING_MAX = 4096

TFTP_RRQ = re.compile(r"^RRQ from (?:::ffff:)?(?P<ip>[0-9A-Fa-f:.]+) filename (?P<file>.+?)\s*$", re.S)
DHCPD_ANSWER = re.compile(r"^centra\.pxe trace (?P<type>\d+) (?P<mac>[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}) "
                          r"ip=(?P<ip>[0-9.]*) arch=(?P<arch>\d*) relay=(?P<relay>[0-9.]*) vendor=(?P<vendor>.*)$", re.S)
DHCPD_RELEASE = re.compile(r"^centra\.pxe trace release (?P<mac>[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}) "
                           r"ip=(?P<ip>[0-9.]*)\s*$")
# dhcpd logs the message type of the packet it answers: a DISCOVER gets an offer, a REQUEST an ack.
DHCPD_ANSWERS = {"1": "offer", "3": "ack"}
# Kea's stdout layout ("<date> <time> <SEVERITY> [kea-dhcp4.<logger>/<pid>.<thread>] <ID> <text>"),
# then the client label of a packet ("[hwtype=1 <MAC>], cid=[...], tid=0x...").
KEA_LINE = re.compile(r"^[^\[]*\[kea-dhcp4\.[a-z0-9-]+/(?P<pid>\d+)\.\d+\] (?P<id>DHCP4_[A-Z0-9_]+) (?P<rest>.*)$")
KEA_LABEL = r"\[hwtype=\d+ (?P<mac>[0-9A-Fa-f:]+)\], cid=\[[^\]]*\], tid=(?P<tid>0x[0-9A-Fa-f]+)"
KEA_LABELLED = re.compile("^" + KEA_LABEL + r": (?P<text>.*)$")
KEA_DECLINE = re.compile(r"^Received DHCPDECLINE for addr (?P<ip>[0-9.]+) from client " + KEA_LABEL + r"\. ")
# Kea 2.2's messages (its dhcp4_messages.mes) and the trace event each one is: the
# lease lines are INFO (kea-dhcp4.leases), NAK_0001 is ERROR, _0002 and _0004 DEBUG 50
# (kea-dhcp4.bad-packets). NAK_0003 answers a DISCOVER: Kea sends no NAK for that.
KEA_EVENTS = {
    "DHCP4_LEASE_ADVERT": ("offer", re.compile(r"^lease (?P<ip>[0-9.]+) will be advertised")),
    "DHCP4_LEASE_ALLOC": ("ack", re.compile(r"^lease (?P<ip>[0-9.]+) has been allocated for ")),
    "DHCP4_LEASE_REUSE": ("ack", re.compile(r"^lease (?P<ip>[0-9.]+) has been reused for ")),
    "DHCP4_RELEASE": ("release", re.compile(r"^address (?P<ip>[0-9.]+) was released properly")),
    "DHCP4_PACKET_NAK_0001": ("nak", re.compile(r"^failed to select a subnet for incoming packet, src \S+, type DHCPREQUEST$")),
    "DHCP4_PACKET_NAK_0002": ("nak", re.compile(r"^invalid address \S+ requested by INIT-REBOOT$")),
    "DHCP4_PACKET_NAK_0004": ("nak", re.compile(r"^failed to grant a lease, ")),
}
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
    """Kea's lease lines into trace events, each joined to the class line of its packet (MAC and transaction id)."""

    def __init__(self, limit: int = PENDING_MAX) -> None:
        self.limit = limit
        self.pending: "collections.OrderedDict[Tuple[str, str], Optional[str]]" = collections.OrderedDict()

    def parse(self, message: str, pid: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The event of one kea-dhcp4 journal line (None: not one), pid: the entry's _PID.

        Kea logs option 60 as it came (in the class line): a newline there starts a new
        journal entry with the client's text. A line whose <pid> is not the process that
        wrote it is not Kea's own.
        """
        line = KEA_LINE.match(message)
        if not line or (pid is not None and line.group("pid") != pid):
            return None
        message_id, rest = line.group("id"), line.group("rest")
        if message_id == "DHCP4_CLASS_ASSIGNED":
            self._classes(rest)
            return None
        if message_id == "DHCP4_DECLINE_LEASE":
            match = KEA_DECLINE.match(rest)
            kind, address = "decline", match.group("ip") if match else None
        elif message_id in KEA_EVENTS:
            match = KEA_LABELLED.match(rest)
            kind, text = KEA_EVENTS[message_id]
            found = text.match(match.group("text")) if match else None
            if not found:
                return None
            address = found.groupdict().get("ip")
        else:
            return None
        if not match:
            return None
        mac = macs.mac_or_none(match.group("mac"))
        if not mac:
            return None
        event: Dict[str, Any] = {"src": "dhcp", "server": "kea", "type": kind, "mac": mac}
        # A NAK's address is the one the client asked for, not one it holds: left out.
        if address and kind != "nak" and _ipv4(address):
            event["ip"] = address
        vendor = self.pending.pop((mac, match.group("tid").lower()), None)
        if vendor:
            event["vendor"] = vendor
            arch = vendor_arch(vendor)
            if arch is not None:
                event["arch"] = arch
        return event

    def _classes(self, rest: str) -> None:
        match = KEA_LABELLED.match(rest)
        mac = macs.mac_or_none(match.group("mac")) if match else None
        if not match or not mac:
            return
        _head, _sep, class_list = match.group("text").partition("class(es): ")
        full, vendor = kea_vendor(class_list.rstrip("\n"))
        if full:
            key = (mac, match.group("tid").lower())
            self.pending[key] = vendor
            self.pending.move_to_end(key)
            while len(self.pending) > self.limit:
                self.pending.popitem(last=False)


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


class Feeder:
    """Journal entries in, trace datagrams out."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.kea = KeaJoin()
        self.send_wait = SEND_WAIT
        self.sent = 0
        self.dropped = 0
        self.waited = 0  # sends that found the queue full (and then waited)
        self.stalled = False  # the last wait ran out: no more waiting until a send succeeds

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
            pid = entry.get("_PID")
            event = self.kea.parse(message, pid if isinstance(pid, str) else None)
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
        except BlockingIOError:  # the service's queue is full: a burst it has not read yet
            if not self._wait_for_room(data):
                self.dropped += 1
                return False
        except OSError:  # no socket, or nobody reading it: dropped at once
            self.dropped += 1
            return False
        self.stalled = False
        self.sent += 1
        return True

    def _wait_for_room(self, data: bytes) -> bool:
        """Retry for up to SEND_WAIT seconds. Waiting here delays only the trace (journalctl
        and the journal hold what follows), never a daemon. A service that reads nothing
        costs one wait, then its events drop at once until one gets through again."""
        if self.stalled:
            return False
        self.waited += 1
        deadline = time.monotonic() + self.send_wait
        while time.monotonic() < deadline:
            time.sleep(SEND_RETRY)
            try:
                self.sock.sendto(data, self.socket_path)
                return True
            except BlockingIOError:
                continue
            except OSError:
                return False
        self.stalled = True
        return False

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
    command = ["journalctl", "--follow", "--output=json", "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_PID",
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
        print("centra-pxe-trace-journal: %d events sent, %d dropped, %d found the queue full; journalctl exited %d"
              % (feeder.sent, feeder.dropped, feeder.waited, status), file=sys.stderr)
    # journalctl ends only when stopped or broken: a failure, unless we stopped it.
    return 0 if status in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":
    sys.exit(main())
