# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Send DHCPDISCOVERs the way PXE firmware does and print what the server answered.

Run inside the lab network (``lab.py exec -- python -m labkit.dhcp_probe ...``, with
labkit and the collection on PYTHONPATH): one DISCOVER per case, each from its own
random locally administered MAC (no reservation matches), broadcast flag set; the
OFFER's BOOTP file and siaddr fields, option 60 and every option's raw payload are
printed as JSON, one line per case. The test compares them with centra.pxe's boot
policy (decide()) and the inventory's DHCP options.

--mac sends every case from that MAC instead; --request completes the exchange
(REQUEST, ACK) so that the server commits a lease; --ask CODE adds an option to the
parameter request list.

--proxy ADDRESS checks a proxyDHCP server beside another DHCP server: only the answers
from ADDRESS count (the other server's offers carry the address, not the boot
information), and each case is then also asked on ADDRESS's port 4011 the way UEFI
firmware does after a proxy offer (a REQUEST from the lab's own address, ciaddr set):
"file_4011", "siaddr_4011" and "vendor_class_4011" are that answer's. dhcp_frame() is the one DHCP
frame builder of the lab tests (labkit.wire_fuzz builds its malformed frames with it).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac, parse_mac
from labkit.common import BRIDGE_ADDRESS
from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, Raw, conf, get_if_hwaddr, sendp  # pylint: disable=no-name-in-module

MAGIC_COOKIE = b"\x63\x82\x53\x63"
MESSAGE_TYPES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform"}

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


def dhcp_frame(src_mac: str, chaddr: bytes, xid: int, options: list | None = None, *,
               raw_options: bytes | None = None, src: str = "0.0.0.0", dst: str = "255.255.255.255",
               dst_mac: str = "ff:ff:ff:ff:ff:ff", **bootp_fields):
    """A client's DHCP frame: BOOTP request + DHCP options (scapy's list form), or
    raw_options (the bytes after the magic cookie, as they are, for malformed ones)."""
    fields = {"chaddr": chaddr + b"\x00" * (16 - len(chaddr)), "xid": xid, "flags": 0x8000}
    fields.update(bootp_fields)
    frame = Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / UDP(sport=68, dport=67)
    if raw_options is not None:
        return frame / BOOTP(options=b"", **fields) / Raw(load=MAGIC_COOKIE + raw_options)
    return frame / BOOTP(**fields) / DHCP(options=options or ["end"])


def random_client_mac() -> bytes:
    """Locally administered, so no reservation of the lab inventory matches it."""
    return bytes([0x02, 0xCE, random.randrange(256), random.randrange(256), random.randrange(256), random.randrange(256)])


def exchange(iface: str, frame, xid: int, timeout: float, want: set[str] | None = None, server: str | None = None):
    """Send frame (again every 2 s) until the server answers transaction xid; the answer or None.

    server: only an answer from this address counts (a proxyDHCP beside another server)."""
    answers = []

    def is_answer(packet) -> bool:
        if not (BOOTP in packet and packet[BOOTP].xid == xid and packet[BOOTP].op == 2):
            return False
        if server is not None and not (IP in packet and packet[IP].src == server):
            return False
        return want is None or message_type(packet) in want

    started = time.monotonic()
    # No BPF filter: it needs libpcap; lfilter does the same in Python.
    sniffer = AsyncSniffer(iface=iface, lfilter=is_answer, prn=answers.append, store=False)
    sniffer.start()
    time.sleep(0.2)
    deadline = started + timeout
    while not answers and time.monotonic() < deadline:
        sendp(frame, iface=iface, verbose=False)
        waited = time.monotonic()
        while not answers and time.monotonic() - waited < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    sniffer.stop()
    return answers[0] if answers else None


def dhcp_options(reply) -> dict:
    return dict((o[0], o[1]) for o in reply[DHCP].options if isinstance(o, tuple) and len(o) >= 2)


def raw_options(reply) -> dict[int, str]:
    """Every option of a reply as code -> payload in hex, as it came on the wire (scapy
    decodes the ones it knows into its own forms; the tests compare bytes). Options
    split in parts (RFC 3396) are joined."""
    data = bytes(reply[DHCP]) if DHCP in reply else b""
    found: dict[int, bytes] = {}
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            index += 1
            continue
        if code == 255 or index + 1 >= len(data):
            break
        length = data[index + 1]
        found[code] = found.get(code, b"") + data[index + 2:index + 2 + length]
        index += 2 + length
    return {code: payload.hex() for code, payload in found.items()}


def message_type(reply) -> str:
    value = dhcp_options(reply).get("message-type") if DHCP in reply else None
    return MESSAGE_TYPES.get(value, str(value))


def ask_port_4011(proxy: str, own_address: str, chaddr: bytes, arch: bytes | None, user_class: bytes | None,
                  option_175: bool, vendor: str, timeout: float) -> dict:
    """A REQUEST to the proxy's port 4011, as UEFI firmware sends it after a proxy offer
    (PXE 2.1: the client has its address by then, so it is unicast, ciaddr set)."""
    xid = random.getrandbits(32)
    options: list = [("message-type", "request"), ("vendor_class_id", vendor.encode())]
    if arch is not None:
        options.append((93, arch))
    if user_class is not None:
        options.append(("user_class", user_class))
    if option_175:
        options.append((175, b"\x15\x01\x01"))
    options.append("end")
    payload = bytes(BOOTP(chaddr=chaddr + b"\x00" * (16 - len(chaddr)), xid=xid, ciaddr=own_address)
                    / DHCP(options=options))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((own_address, 0))
        sock.settimeout(2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(payload, (proxy, 4011))
            try:
                data, (source, _port) = sock.recvfrom(4096)
            except socket.timeout:
                continue
            reply = BOOTP(data)
            if reply.xid != xid or source != proxy:
                continue
            vendor_class = dhcp_options(reply).get("vendor_class_id") if DHCP in reply else None
            return {"answer_4011": True, "file_4011": reply.file.rstrip(b"\x00").decode("ascii", "replace"),
                    "siaddr_4011": reply.siaddr,
                    "vendor_class_4011": vendor_class.decode() if isinstance(vendor_class, bytes) else vendor_class}
    return {"answer_4011": False}


def discover(iface: str, arch: bytes | None, user_class: bytes | None, option_175: bool, vendor: str,
             timeout: float, chaddr: bytes | None = None, request: bool = False,
             ask: tuple[int, ...] = (), proxy: str | None = None, own_address: str | None = None) -> dict:
    mac = chaddr or random_client_mac()
    xid = random.getrandbits(32)
    options: list = [("message-type", "discover"), ("vendor_class_id", vendor.encode())]
    if arch is not None:
        options.append((93, arch))
    if user_class is not None:
        options.append(("user_class", user_class))
    if option_175:
        options.append((175, b"\x15\x01\x01"))  # iPXE's encapsulated "PXE extension support"
    wanted = [1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 93, 128, 175]
    options += [("param_req_list", wanted + [code for code in ask if code not in wanted]), "end"]
    reply = exchange(iface, dhcp_frame(get_if_hwaddr(iface), mac, xid, options), xid, timeout, {"offer"}, proxy)
    if reply is None:
        return {"offer": False, "mac": mac.hex(":")}
    opts = dhcp_options(reply)
    vendor_class = opts.get("vendor_class_id")
    result = {
        "offer": True,
        "mac": mac.hex(":"),
        "yiaddr": reply[BOOTP].yiaddr,
        "siaddr": reply[BOOTP].siaddr,
        "file": reply[BOOTP].file.rstrip(b"\x00").decode("ascii", "replace"),
        "vendor_class": vendor_class.decode() if isinstance(vendor_class, bytes) else vendor_class,
        "options": raw_options(reply),
    }
    if proxy is not None and own_address is not None:
        result.update(ask_port_4011(proxy, own_address, mac, arch, user_class, option_175, vendor, timeout))
    if request:
        # Complete the exchange (REQUEST in the SELECTING state): the server commits a lease.
        server_id = opts.get("server_id")
        options = [("message-type", "request"), ("server_id", server_id), ("requested_addr", reply[BOOTP].yiaddr),
                   ("vendor_class_id", vendor.encode())]
        if arch is not None:
            options.append((93, arch))
        options.append("end")
        ack = exchange(iface, dhcp_frame(get_if_hwaddr(iface), mac, xid, options), xid, timeout, {"ack", "nak"})
        result["ack"] = ack is not None and message_type(ack) == "ack"
        result["ack_yiaddr"] = ack[BOOTP].yiaddr if ack is not None else None
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    parser.add_argument("--mac", help="client MAC, any notation the collection reads (default: a random locally "
                        "administered one per case)")
    parser.add_argument("--request", action="store_true", help="complete the exchange: REQUEST the offer, report the ACK")
    parser.add_argument("--ask", type=int, action="append", default=[], metavar="CODE",
                        help="also ask for this option in the parameter request list (55); servers send most "
                        "options only when asked")
    parser.add_argument("--proxy", metavar="ADDRESS", help="a proxyDHCP server: count only its answers, and ask its "
                        "port 4011 too")
    parser.add_argument("--own-address", metavar="ADDRESS", help="with --proxy: this side's address on the lab network "
                        "(the source of the port-4011 requests; default the lab bridge's)")
    args = parser.parse_args()
    own_address = args.own_address or BRIDGE_ADDRESS
    chaddr = bytes.fromhex(format_mac(parse_mac(args.mac), "bare")) if args.mac else None
    conf.verb = 0
    for name, arch, user_class, option_175, vendor in CASES:
        if args.case and name not in args.case:
            continue
        result = discover(args.iface, arch, user_class, option_175, vendor, args.timeout, chaddr, args.request,
                          tuple(args.ask), args.proxy, own_address if args.proxy else None)
        result.update(case=name, arch=None if arch is None else int.from_bytes(arch, "big"),
                      user_class=user_class.decode() if user_class else None, option_175=option_175)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
