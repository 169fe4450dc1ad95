# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Send DHCPDISCOVERs the way PXE firmware does and print what the server answered.

Run inside the lab network (lab.py exec): one DISCOVER per case, each from its own
random locally administered MAC (no reservation matches), broadcast flag set; the
OFFER's BOOTP file and siaddr fields and option 60 are printed as JSON, one line per
case. The test compares them with centra.pxe's boot policy (decide()).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, conf, get_if_hwaddr, sendp  # pylint: disable=no-name-in-module

# (name, option 93 payload or None, user class or None, send option 175, vendor class)
CASES = [
    ("absent", None, None, False, "PXEClient:Arch:00000:UNDI:002001"),
    ("arch0", b"\x00\x00", None, False, "PXEClient:Arch:00000:UNDI:002001"),
    ("arch6", b"\x00\x06", None, False, "PXEClient:Arch:00006:UNDI:003000"),
    ("arch7", b"\x00\x07", None, False, "PXEClient:Arch:00007:UNDI:003016"),
    ("arch9", b"\x00\x09", None, False, "PXEClient:Arch:00009:UNDI:003016"),
    ("arch10", b"\x00\x0a", None, False, "PXEClient:Arch:00010:UNDI:003000"),
    ("arch11", b"\x00\x0b", None, False, "PXEClient:Arch:00011:UNDI:003000"),
    ("arch16", b"\x00\x10", None, False, "HTTPClient:Arch:00016:UNDI:003000"),
    ("arch19", b"\x00\x13", None, False, "HTTPClient:Arch:00019:UNDI:003000"),
    ("arch_unknown", b"\x00\x2a", None, False, "PXEClient:Arch:00042:UNDI:003000"),
    ("ipxe_user_class", b"\x00\x00", b"iPXE", False, "PXEClient:Arch:00000:UNDI:002001"),
    ("ipxe_option_175_efi", b"\x00\x07", None, True, "PXEClient:Arch:00007:UNDI:003016"),
]


def discover(iface: str, arch: bytes | None, user_class: bytes | None, option_175: bool, vendor: str,
             timeout: float) -> dict:
    mac = bytes([0x02, 0xCE, random.randrange(256), random.randrange(256), random.randrange(256), random.randrange(256)])
    xid = random.getrandbits(32)
    options: list = [("message-type", "discover"), ("vendor_class_id", vendor.encode())]
    if arch is not None:
        options.append((93, arch))
    if user_class is not None:
        options.append(("user_class", user_class))
    if option_175:
        options.append((175, b"\x15\x01\x01"))  # iPXE's encapsulated "PXE extension support"
    options += [("param_req_list", [1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 93, 128, 175]), "end"]
    frame = (Ether(src=get_if_hwaddr(iface), dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
             / UDP(sport=68, dport=67) / BOOTP(chaddr=mac + b"\x00" * 10, xid=xid, flags=0x8000) / DHCP(options=options))
    answers = []

    def is_offer(packet) -> bool:
        return BOOTP in packet and packet[BOOTP].xid == xid and packet[BOOTP].op == 2

    started = time.monotonic()
    # No BPF filter: it needs libpcap; lfilter does the same in Python.
    sniffer = AsyncSniffer(iface=iface, lfilter=is_offer,
                           prn=answers.append, store=False)
    sniffer.start()
    time.sleep(0.2)
    deadline = started + timeout
    while not answers and time.monotonic() < deadline:
        sendp(frame, iface=iface, verbose=False)
        waited = time.monotonic()
        while not answers and time.monotonic() - waited < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    sniffer.stop()
    if not answers:
        return {"offer": False}
    reply = answers[0]
    opts = dict((o[0], o[1]) for o in reply[DHCP].options if isinstance(o, tuple) and len(o) >= 2)
    vendor_class = opts.get("vendor_class_id")
    return {
        "offer": True,
        "yiaddr": reply[BOOTP].yiaddr,
        "siaddr": reply[BOOTP].siaddr,
        "file": reply[BOOTP].file.rstrip(b"\x00").decode("ascii", "replace"),
        "vendor_class": vendor_class.decode() if isinstance(vendor_class, bytes) else vendor_class,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    args = parser.parse_args()
    conf.verb = 0
    for name, arch, user_class, option_175, vendor in CASES:
        if args.case and name not in args.case:
            continue
        result = discover(args.iface, arch, user_class, option_175, vendor, args.timeout)
        result.update(case=name, arch=None if arch is None else int.from_bytes(arch, "big"),
                      user_class=user_class.decode() if user_class else None, option_175=option_175)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
