# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""DHCP blackout prober: one DISCOVER every 10 ms for one client, as a relay from the lab
bridge, and the longest time without an answer (issue 15).

Run inside the lab network (``lab.py exec -- python3 -m labkit.blackout --server 192.0.2.2
--mac 52:54:...``, with labkit on PYTHONPATH) while something reloads or restarts the DHCP
server. The prober binds the relay port (67) on the bridge address and sends BOOTREQUESTs
with giaddr set to it, so the server answers there, unicast, as to a real relay. It stops
after --seconds or on SIGTERM/SIGINT and prints one JSON line: DISCOVERs sent, OFFERs
received, and the longest gap between two answers (and between the first send and the
first answer, and the last answer and the end), with the moments of the gaps over 100 ms.

Bounded: at most --seconds (default 600) at --interval (default 10 ms, at least 1 ms), to
one lab address.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any, Dict, List, Optional

from labkit.common import BRIDGE_ADDRESS

BOOTREQUEST, DHCPDISCOVER, DHCPOFFER = 1, 1, 2
MAGIC = b"\x63\x82\x53\x63"
LAB_NETWORKS = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def discover(xid: int, mac: bytes, giaddr: str) -> bytes:
    """A relayed DHCPDISCOVER (hops 1, giaddr set) for the client `mac`."""
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", BOOTREQUEST, 1, 6, 1, xid, 0, 0, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, socket.inet_aton(giaddr), mac + b"\0" * 10, b"\0" * 64, b"\0" * 128)
    options = bytes([53, 1, DHCPDISCOVER, 55, 3, 1, 3, 6, 255])
    return header + MAGIC + options


def offer_xid(packet: bytes) -> Optional[int]:
    """The xid of a DHCPOFFER (None for anything else)."""
    if len(packet) < 240 or packet[0] != 2 or packet[236:240] != MAGIC:
        return None
    offset = 240
    while offset + 2 <= len(packet) and packet[offset] != 255:
        code = packet[offset]
        if code == 0:
            offset += 1
            continue
        length = packet[offset + 1]
        if code == 53 and length == 1 and offset + 2 < len(packet):
            return struct.unpack("!I", packet[4:8])[0] if packet[offset + 2] == DHCPOFFER else None
        offset += 2 + length
    return None


def gaps(start: float, end: float, answers: List[float]) -> Dict[str, Any]:
    """The longest stretch without an answer, from `start` to `end` (the edges count)."""
    moments = [start] + sorted(answers) + [end]
    stretches = [(b - a, a) for a, b in zip(moments, moments[1:])]
    longest, at = max(stretches) if stretches else (0.0, start)
    return {"longest_gap_s": round(longest, 3), "longest_gap_at_s": round(at - start, 3),
            "gaps_over_100ms": [[round(a - start, 3), round(g, 3)] for g, a in stretches if g > 0.1]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labkit.blackout", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--server", required=True, help="the DHCP server's address (a lab address)")
    parser.add_argument("--mac", required=True, help="the client's MAC (a node's, to be answered from its reservation)")
    parser.add_argument("--relay", default=BRIDGE_ADDRESS, help="the relay address (the lab bridge's; default %(default)s)")
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    if not any(ipaddress.IPv4Address(args.server) in net for net in LAB_NETWORKS):
        parser.error("--server %s is not a lab address" % args.server)
    interval = max(args.interval, 0.001)
    seconds = min(max(args.seconds, 1.0), 3600.0)
    mac = bytes(int(part, 16) for part in args.mac.split(":"))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.relay, 67))
    sent: Dict[int, float] = {}
    answers: List[float] = []
    base = random.randrange(1 << 31)
    start = time.monotonic()
    deadline = start + seconds
    next_send = start
    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            xid = (base + len(sent)) & 0xFFFFFFFF
            sent[xid] = now
            sock.sendto(discover(xid, mac, args.relay), (args.server, 67))
            next_send += interval
        try:
            ready = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))[0]
        except InterruptedError:
            continue
        if ready:
            xid = offer_xid(sock.recv(4096))
            if xid is not None and xid in sent:
                answers.append(time.monotonic())
    end = time.monotonic()
    result = {"sent": len(sent), "answered": len(answers), "seconds": round(end - start, 3),
              "interval_ms": interval * 1000, "pid": os.getpid()}
    result.update(gaps(start, end, answers))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
