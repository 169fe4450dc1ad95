# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Send DHCPv6 SOLICITs the way UEFI firmware and iPXE do and print what the server advertised.

Run inside the lab network after ``up --ipv6`` (``lab.py exec -- python -m labkit.dhcp6_probe``,
with labkit and the collection on PYTHONPATH): one SOLICIT per case from the bridge's
link-local address (port 546, to ff02::1:2 port 547), each with its own random DUID-LL of
a locally administered MAC (no reservation matches) unless --duid is given. The
ADVERTISE's option 59 (boot-file URL), option 16 (vendor class: its enterprise number and
strings) and the offered address are printed as JSON, one line per case. The test
compares them with the policy table through the DHCPv6 renderer (decide6()).
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import struct
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from labkit.common import BRIDGE

ALL_DHCP_SERVERS = "ff02::1:2"
SOLICIT, ADVERTISE = 1, 2
OPT_CLIENTID, OPT_IA_NA, OPT_IAADDR, OPT_ORO, OPT_ELAPSED = 1, 3, 5, 6, 8
OPT_USER_CLASS, OPT_VENDOR_CLASS, OPT_BOOTFILE_URL, OPT_CLIENT_ARCH = 15, 16, 59, 61
PXE_ENTERPRISE = 343

# (name, option 61 architecture or None, user class or None, vendor class string or None)
CASES: List[Tuple[str, Optional[int], Optional[bytes], Optional[str]]] = [
    ("absent", None, None, None),
    ("arch0", 0, None, "PXEClient:Arch:00000:UNDI:003016"),
    ("arch6", 6, None, "PXEClient:Arch:00006:UNDI:003016"),
    ("arch7", 7, None, "PXEClient:Arch:00007:UNDI:003016"),
    ("arch9", 9, None, "PXEClient:Arch:00009:UNDI:003016"),
    ("arch10", 10, None, "PXEClient:Arch:00010:UNDI:003016"),
    ("arch11", 11, None, "PXEClient:Arch:00011:UNDI:003016"),
    ("arch16", 16, None, "HTTPClient:Arch:00016:UNDI:003016"),
    ("arch19", 19, None, "HTTPClient:Arch:00019:UNDI:003016"),
    ("arch_unknown", 42, None, "PXEClient:Arch:00042:UNDI:003016"),
    ("ipxe_user_class", 7, b"iPXE", None),
]


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def duid_ll(mac: bytes) -> bytes:
    return struct.pack("!HH", 3, 1) + mac


def solicit(xid: int, duid: bytes, arch: Optional[int], user_class: Optional[bytes],
            vendor_class: Optional[str], want: Sequence[int] = ()) -> bytes:
    """A SOLICIT as UEFI (option 61, vendor class) or iPXE (user class) sends it; ``want``:
    more option codes to ask for (option 6, ORO) beyond the boot-file URL and DNS."""
    body = option(OPT_CLIENTID, duid)
    body += option(OPT_IA_NA, struct.pack("!III", 1, 0, 0))
    body += option(OPT_ORO, struct.pack("!%dH" % (2 + len(want)), OPT_BOOTFILE_URL, 23, *want))
    body += option(OPT_ELAPSED, b"\x00\x00")
    if arch is not None:
        body += option(OPT_CLIENT_ARCH, struct.pack("!H", arch))
    if user_class is not None:
        body += option(OPT_USER_CLASS, struct.pack("!H", len(user_class)) + user_class)
    if vendor_class is not None:
        data = vendor_class.encode()
        body += option(OPT_VENDOR_CLASS, struct.pack("!IH", PXE_ENTERPRISE, len(data)) + data)
    return struct.pack("!I", (SOLICIT << 24) | xid) + body


def parse_options(data: bytes) -> Dict[int, List[bytes]]:
    out: Dict[int, List[bytes]] = {}
    offset = 0
    while offset + 4 <= len(data):
        code, length = struct.unpack("!HH", data[offset:offset + 4])
        out.setdefault(code, []).append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return out


def vendor_class_strings(data: bytes) -> Tuple[int, List[str]]:
    """Option 16: enterprise number, then length-prefixed strings."""
    enterprise = struct.unpack("!I", data[:4])[0]
    strings, offset = [], 4
    while offset + 2 <= len(data):
        length = struct.unpack("!H", data[offset:offset + 2])[0]
        strings.append(data[offset + 2:offset + 2 + length].decode(errors="replace"))
        offset += 2 + length
    return enterprise, strings


def parse_advertise(packet: bytes) -> Dict[str, Any]:
    """What the test needs of an ADVERTISE ("options": every option's payload as hex, by code)."""
    header = struct.unpack("!I", packet[:4])[0]
    options = parse_options(packet[4:])
    answer: Dict[str, Any] = {"type": header >> 24, "xid": header & 0xFFFFFF,
                              "bootfile_url": None, "vendor_class": None, "address": None,
                              "options": {str(code): values[0].hex() for code, values in sorted(options.items())}}
    if OPT_BOOTFILE_URL in options:
        answer["bootfile_url"] = options[OPT_BOOTFILE_URL][0].decode(errors="replace")
    if OPT_VENDOR_CLASS in options:
        enterprise, strings = vendor_class_strings(options[OPT_VENDOR_CLASS][0])
        answer["vendor_class"] = {"enterprise": enterprise, "data": strings}
    for ia in options.get(OPT_IA_NA, []):
        for address in parse_options(ia[12:]).get(OPT_IAADDR, []):
            answer["address"] = socket.inet_ntop(socket.AF_INET6, address[:16])
    return answer


def exchange(sock: socket.socket, ifindex: int, packet: bytes, xid: int, timeout: float) -> Optional[Dict[str, Any]]:
    """Send the SOLICIT (again every 2 s) until the ADVERTISE of this transaction comes."""
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            sock.sendto(packet, (ALL_DHCP_SERVERS, 547, 0, ifindex))
            next_send = time.monotonic() + 2.0
        ready = select.select([sock], [], [], 0.2)[0]
        if ready:
            data = sock.recvfrom(4096)[0]
            answer = parse_advertise(data)
            if answer["xid"] == xid and answer["type"] == ADVERTISE:
                return answer
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labkit.dhcp6_probe", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--iface", default=BRIDGE)
    parser.add_argument("--timeout", type=float, default=6.0)
    parser.add_argument("--duid", help="send every case with this DUID (hex bytes, colons allowed)")
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    parser.add_argument("--want", default="", help="more option codes to request, comma-separated (their payloads "
                        "are printed as hex under \"options\")")
    args = parser.parse_args(argv)
    ifindex = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    sock.bind(("::", 546, 0, ifindex))
    for name, arch, user_class, vendor_class in CASES:
        if args.case and name not in args.case:
            continue
        if args.duid:
            duid = bytes.fromhex(args.duid.replace(":", ""))
        else:
            duid = duid_ll(b"\x02\xce" + random.randbytes(4))
        xid = random.randrange(1 << 24)
        want = [int(code) for code in args.want.split(",") if code.strip()]
        answer = exchange(sock, ifindex, solicit(xid, duid, arch, user_class, vendor_class, want), xid, args.timeout)
        result = {"case": name, "advertise": answer is not None}
        if answer:
            result.update({k: answer[k] for k in ("bootfile_url", "vendor_class", "address")})
            if want:
                result["options"] = {code: data for code, data in answer["options"].items() if int(code) in want}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
