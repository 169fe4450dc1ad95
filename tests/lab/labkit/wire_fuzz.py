# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile input on the lab wire: malformed and random DHCP packets and TFTP requests.

Run inside the lab network (lab.py exec), against the lab's PXE host only, bounded in
count and rate. Prints one JSON object: what was sent, by kind, and what came back.

  python -m labkit.wire_fuzz dhcp --iface cpxebr0 --server A --server-mac M --count 10000 --rate 500
      Raw frames on the lab bridge (scapy, built with labkit.dhcp_probe.dhcp_frame): truncated
      option 93, oversized options, bogus user classes, random BOOTP header fields,
      wrong lengths (options, BOOTP, UDP, IP), bad message types, random bytes. The
      client identities come from a small set (16 MACs 02:cf:..., a few absurd
      htype/hlen pairs), so at most a few dozen pool addresses are ever offered; every
      address in a packet is 0.0.0.0, broadcast or in the lab network.

The server's address (--server) is the test's to give: it reads it from the lab's
inventory (labkit.facts).

  python -m labkit.wire_fuzz tftp --iface cpxebr0 --server A --server-mac M --count 10000 --rate 500 --reference FILE...
      Read and write requests from UDP sockets on the lab bridge's address: path traversal, absolute
      paths, WRQs, absurd/zero/negative blksize, tsize and timeout, unknown opcodes,
      missing terminators, garbage, and (raw frames) wrong UDP/IP lengths. Requests
      for a loader by its name go out of "loader" sockets, everything else out of
      "other" sockets. A DATA or OACK on an "other" socket, an ACK anywhere (a write
      accepted), or a DATA whose payload is not a piece of a reference file (the TFTP
      root's loaders) is a violation, reported with its request. Every transfer the
      server starts is cut short with an ERROR, so no tftpd child lingers.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import posixpath
import random
import selectors
import socket
import struct
import sys
import time
from collections import Counter

from scapy.all import IP, UDP, Ether, Raw, conf, get_if_hwaddr  # pylint: disable=no-name-in-module
from scapy.layers.tftp import TFTP, TFTP_WRQ, TFTP_Option, TFTP_Options, TFTP_RRQ

from labkit.common import BRIDGE_ADDRESS, BRIDGE_NETWORK
from labkit.dhcp_probe import dhcp_frame

CLIENT = BRIDGE_ADDRESS  # the lab bridge's address: replies to the sockets below come back here
FUZZ_MACS = [bytes([0x02, 0xCF, 0, 0, 0, i]) for i in range(16)]
_LAB_NETWORK = ipaddress.ip_network(BRIDGE_NETWORK)
# Lab addresses above the lab inventory's pool (.100-.199), its servers (.2-.9) and nodes (.10-).
SPARE_ADDRESSES = [str(_LAB_NETWORK[i]) for i in range(230, 255)]
RELAY_ADDRESS = str(_LAB_NETWORK[250])  # a giaddr on the lab network that nothing holds


class Pacer:
    """Sends at most `rate` packets a second, measured from the first one."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.sent = 0

    def wait(self) -> None:
        due = self.started + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.sent += 1


# --- DHCP ------------------------------------------------------------------------------


def _option(code: int, data: bytes) -> bytes:
    return bytes([code, len(data)]) + data


DISCOVER = _option(53, b"\x01")


def _random_bytes(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def dhcp_truncated_option_93(rng: random.Random, _server: str) -> tuple[bytes, bool]:
    """Option 93 with no, one or three bytes, or cut off by the end of the packet."""
    variant = rng.randrange(6)
    if variant == 0:
        return DISCOVER + b"\x5d\x00" + b"\xff", True
    if variant == 1:
        return DISCOVER + b"\x5d\x01\x00" + b"\xff", True
    if variant == 2:
        return DISCOVER + b"\x5d\x03\x00\x07\x00" + b"\xff", True
    if variant == 3:
        return DISCOVER + b"\x5d\x02\x00", False  # claims 2 bytes, the packet ends after 1
    if variant == 4:
        return DISCOVER + b"\x5d\xff\x00\x07", False  # claims 255 bytes
    return DISCOVER + b"\x5d", False  # the code and nothing else


def dhcp_oversized_option(rng: random.Random, _server: str) -> tuple[bytes, bool]:
    """Options at their maximum length (255), up to four of them. Not option 61: a random
    client identifier is a new client, and ISC dhcpd holds an offered address for each
    (DHCP starvation, which no DHCP server configuration prevents)."""
    options = DISCOVER
    for _extra in range(rng.randint(1, 4)):
        code = rng.choice([93, 60, 77, 55, 12, 175, 43, 97, 124, 125, rng.choice([c for c in range(1, 255) if c != 61])])
        options += bytes([code, 255]) + rng.randbytes(255)
    return options + b"\xff", True


def dhcp_bogus_user_class(rng: random.Random, _server: str) -> tuple[bytes, bool]:
    """Option 77 empty, iPXE with garbage, RFC 3004 lengths that lie, random, repeated."""
    values = [b"", b"iPXE" + _random_bytes(rng, 1, 40), b"\x04iPXE", b"\xffiPXE", b"\x10iPXE",
              _random_bytes(rng, 1, 255), b"iPXE\x00\x00", b"IPXE", b"\x00" * rng.randint(1, 255)]
    options = DISCOVER + _option(93, b"\x00" + bytes([rng.choice([0, 7, 9, 16, 200])]))
    for _extra in range(rng.randint(1, 3)):
        options += _option(77, rng.choice(values))
    if rng.random() < 0.3:
        options += _option(175, _random_bytes(rng, 0, 60))
    return options + b"\xff", True


def dhcp_random_options(rng: random.Random, _server: str) -> tuple[bytes, bool]:
    """Random bytes where the options should be."""
    return _random_bytes(rng, 0, 900), rng.random() < 0.5


def dhcp_bad_message_type(rng: random.Random, server: str) -> tuple[bytes, bool]:
    """Unknown, missing, empty or doubled message types; REQUEST, INFORM, RELEASE and
    DECLINE naming addresses nobody holds."""
    variant = rng.randrange(6)
    if variant == 0:
        options = _option(53, bytes([rng.choice([0] + list(range(9, 256)))]))
    elif variant == 1:
        options = _option(60, b"PXEClient:Arch:00000:UNDI:002001")  # no message type
    elif variant == 2:
        options = rng.choice([b"\x35\x00", b"\x35\x02\x01\x03", _option(53, b"\x01") + _option(53, b"\x03")])
    elif variant == 3:
        options = _option(53, b"\x03") + _option(54, socket.inet_aton(rng.choice(SPARE_ADDRESSES))) \
            + _option(50, socket.inet_aton(rng.choice(SPARE_ADDRESSES)))
    elif variant == 4:
        options = _option(53, bytes([rng.choice([4, 7, 8])])) + _option(50, socket.inet_aton(rng.choice(SPARE_ADDRESSES)))
    else:
        options = _option(53, b"\x03") + _option(54, socket.inet_aton(server)) + _option(50, b"\x00\x00\x00")
    return options + b"\xff", True


DHCP_OPTION_KINDS = {
    "truncated_option_93": dhcp_truncated_option_93,
    "oversized_option": dhcp_oversized_option,
    "bogus_user_class": dhcp_bogus_user_class,
    "random_options": dhcp_random_options,
    "bad_message_type": dhcp_bad_message_type,
}


def _lab_address(rng: random.Random) -> str:
    return rng.choice(["0.0.0.0", CLIENT] + SPARE_ADDRESSES)


def _dhcp_fields(rng: random.Random) -> dict:
    return {"xid": rng.getrandbits(32), "chaddr": rng.choice(FUZZ_MACS) + bytes(10)}


def _addressing(rng: random.Random, server: str, server_mac: str) -> dict:
    """Mostly broadcast from 0.0.0.0, as clients do; sometimes unicast to the server."""
    if rng.random() < 0.8:
        return {}
    return {"src": CLIENT, "dst": server, "dst_mac": server_mac}


def dhcp_packet(kind: str, rng: random.Random, src_mac: str, server: str, server_mac: str) -> bytes:
    fields = _dhcp_fields(rng)
    chaddr = fields.pop("chaddr")
    xid = fields.pop("xid")
    addressing = _addressing(rng, server, server_mac)
    if kind in DHCP_OPTION_KINDS:
        raw, _complete = DHCP_OPTION_KINDS[kind](rng, server)
        return bytes(dhcp_frame(src_mac, chaddr, xid, raw_options=raw, **addressing))
    if kind == "random_bootp":
        # Random header fields; addresses only 0.0.0.0 or lab addresses (a relay
        # address makes the server answer there).
        # The client's identity (htype, hlen, chaddr) stays within a small set: ISC dhcpd
        # holds an offered address for each new client, and random identities would
        # empty the pool (DHCP starvation, which no DHCP server configuration prevents).
        htype, hlen = rng.choice([(1, 6)] * 4 + [(0, 6), (255, 6), (1, 0), (1, 16), (1, 17), (1, 255)])
        if (htype, hlen) != (1, 6):
            chaddr = FUZZ_MACS[0]
        header = {"op": rng.choice([1, 2, rng.randint(0, 255)]), "htype": htype, "hlen": hlen, "hops": rng.randint(0, 255),
                  "secs": rng.randint(0, 65535), "flags": rng.randint(0, 65535),
                  "ciaddr": _lab_address(rng), "yiaddr": _lab_address(rng), "siaddr": _lab_address(rng),
                  "giaddr": rng.choice(["0.0.0.0", CLIENT, RELAY_ADDRESS]),
                  "sname": rng.randbytes(64), "file": rng.randbytes(128)}
        return bytes(dhcp_frame(src_mac, chaddr, xid, raw_options=DISCOVER + _option(93, b"\x00\x07") + b"\xff",
                                **addressing, **header))
    if kind == "wrong_length":
        frame = dhcp_frame(src_mac, chaddr, xid, raw_options=DISCOVER + _option(93, b"\x00\x00") + b"\xff", **addressing)
        variant = rng.randrange(5)
        if variant == 0:  # BOOTP cut short: fewer than its 236 fixed bytes
            return bytes(frame)[:14 + 20 + 8 + rng.randint(0, 235)]
        if variant == 1:  # UDP length larger or smaller than the datagram
            frame[UDP].len = rng.choice([0, 8, 9, 100, 2000, 65535])
        elif variant == 2:  # IP total length wrong
            frame[IP].len = rng.choice([0, 20, 28, 100, 65535])
        elif variant == 3:  # no magic cookie: random bytes after the BOOTP header
            frame[Raw].load = _random_bytes(rng, 0, 300)
        else:  # a wrong magic cookie
            frame[Raw].load = rng.randbytes(4) + frame[Raw].load[4:]
        return bytes(frame)
    if kind == "random_bytes":
        base = Ether(src=src_mac, dst=addressing.get("dst_mac", "ff:ff:ff:ff:ff:ff")) \
            / IP(src=addressing.get("src", "0.0.0.0"), dst=addressing.get("dst", "255.255.255.255")) \
            / UDP(sport=68, dport=67) / Raw(load=_random_bytes(rng, 0, 1200))
        return bytes(base)
    raise ValueError(kind)


DHCP_KINDS = list(DHCP_OPTION_KINDS) + ["random_bootp", "wrong_length", "random_bytes"]


def fuzz_dhcp(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    src_mac = get_if_hwaddr(args.iface)
    kinds = [DHCP_KINDS[i % len(DHCP_KINDS)] for i in range(args.count)]
    rng.shuffle(kinds)
    sent: Counter = Counter()
    sock = conf.L2socket(iface=args.iface)
    pacer = Pacer(args.rate)
    try:
        for kind in kinds:
            frame = dhcp_packet(kind, rng, src_mac, args.server, args.server_mac)  # built while the pacer would wait anyway
            pacer.wait()
            sock.send(frame)
            sent[kind] += 1
    finally:
        sock.close()
    return {"protocol": "dhcp", "sent": sum(sent.values()), "by_kind": dict(sorted(sent.items())),
            "seconds": round(time.monotonic() - pacer.started, 1), "rate": args.rate}


# --- TFTP ------------------------------------------------------------------------------

TRAVERSALS = ["../../etc/passwd", "../../../../../../../../etc/passwd", "..//..//..//etc/passwd",
              "/../../etc/shadow", "....//....//etc/passwd", "..\\..\\..\\etc\\passwd",
              "%2e%2e/%2e%2e/etc/passwd", "undionly.kpxe/../../../etc/passwd", "./../etc/hostname",
              "../http/healthz", "../http/boot.ipxe", "../../../proc/self/environ", "..", ".", "",
              "../tftp/../../../etc/passwd", "ipxe.efi/..", "..%00/etc/passwd", ".../.../etc/passwd"]
ABSOLUTES = ["/etc/passwd", "/etc/shadow", "/proc/self/status", "/etc/kea/kea-dhcp4.conf",
             "/root/.ssh/authorized_keys", "/srv/centra-pxe/tftp/undionly.kpxe", "/srv/centra-pxe/http/healthz",
             "/etc/default/tftpd-hpa", "//etc//passwd", "/"]
WRITE_NAMES = ["centra-fuzz-%d", "undionly.kpxe", "ipxe.efi", "../../tmp/centra-fuzz-%d", "/etc/cron.d/centra-fuzz",
               "/tmp/centra-fuzz-%d", "../http/boot.ipxe", "nodes/centra-fuzz.ipxe"]
MODES = [b"octet", b"netascii", b"mail", b"OCTET", b"binary", b"", b"\xff\xfe"]
ABSURD = {"blksize": ["0", "-1", "1", "7", "8", "65464", "65465", "99999999999999999999", "abc", "", "-99999"],
          "tsize": ["-1", "0", "99999999999999999999", "x", "", "-0"],
          "timeout": ["0", "-1", "256", "1", "abc", "999999999"],
          "windowsize": ["0", "-5", "65536", "1"],
          "utimeout": ["0", "-1", "1"]}


def is_loader_request(name: bytes, loaders: list[str]) -> bool:
    """A read of a loader by its own name, as the secure (chrooted) server resolves it."""
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return False
    return posixpath.normpath("/" + text) in {"/" + loader for loader in loaders}


def tftp_request(kind: str, rng: random.Random, loaders: list[str], index: int) -> tuple[bytes, bool]:
    """The UDP payload of one request, and whether it reads a loader by name."""
    if kind == "traversal_rrq":
        name = rng.choice(TRAVERSALS).encode()
        return bytes(TFTP() / TFTP_RRQ(filename=name, mode=rng.choice(MODES[:3]))), is_loader_request(name, loaders)
    if kind == "absolute_rrq":
        name = rng.choice(ABSOLUTES).encode()
        return bytes(TFTP() / TFTP_RRQ(filename=name, mode=b"octet")), is_loader_request(name, loaders)
    if kind == "wrq":
        name = rng.choice(WRITE_NAMES)
        name = (name % index if "%d" in name else name).encode()
        return bytes(TFTP() / TFTP_WRQ(filename=name, mode=rng.choice(MODES[:2]))), False
    if kind == "absurd_options":
        name = rng.choice(loaders).encode()
        options = []
        for _extra in range(rng.randint(1, 4)):
            option = rng.choice(list(ABSURD))
            options.append(TFTP_Option(oname=option.encode(), value=rng.choice(ABSURD[option]).encode()))
        if rng.random() < 0.2:
            options.append(TFTP_Option(oname=b"centra-unknown", value=b"1"))
        payload = bytes(TFTP() / TFTP_RRQ(filename=name, mode=b"octet") / TFTP_Options(options=options))
        if rng.random() < 0.15:  # an option name with no value, or 200 options
            payload += rng.choice([b"blksize\x00", b"tsize\x00" * 200])
        return payload, True
    if kind == "bad_opcode":
        opcode = rng.choice([0, 3, 4, 5, 6, rng.randint(7, 65535)])
        return struct.pack("!H", opcode) + _random_bytes(rng, 0, 64), False
    if kind == "malformed":
        variant = rng.randrange(6)
        if variant == 0:
            return b"\x00\x01etc/passwd", False  # no terminator, no mode
        if variant == 1:
            return b"\x00\x01" + rng.choice(loaders).encode() + b"\x00", True  # no mode
        if variant == 2:
            return b"\x00\x01" + b"A" * rng.randint(300, 1400) + b"\x00octet\x00", False  # a long name
        if variant == 3:
            return rng.choice([b"", b"\x00", b"\x00\x01", b"\x00\x02", b"\x00\x01\x00\x00"]), False
        if variant == 4:
            return b"\x00\x01etc/passwd\x00" + _random_bytes(rng, 1, 40), False  # garbage mode
        return _random_bytes(rng, 1, 1400), False
    raise ValueError(kind)


TFTP_KINDS = ["traversal_rrq", "absolute_rrq", "wrq", "absurd_options", "bad_opcode", "malformed", "wrong_length"]


def _open_sockets(count: int) -> list[socket.socket]:
    sockets = []
    for _socket_index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((CLIENT, 0))
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def fuzz_tftp(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    references = []
    for path in args.reference:
        with open(path, "rb") as handle:
            references.append(handle.read())
    loaders = [os.path.basename(path) for path in args.reference]
    src_mac = get_if_hwaddr(args.iface)
    kinds = [TFTP_KINDS[i % len(TFTP_KINDS)] for i in range(args.count)]
    rng.shuffle(kinds)
    groups = {"loader": _open_sockets(64), "other": _open_sockets(256)}
    group_of = {sock.fileno(): name for name, socks in groups.items() for sock in socks}
    last_request: dict[int, tuple[str, bytes]] = {}
    selector = selectors.DefaultSelector()
    for socks in groups.values():
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
    raw_socket = conf.L2socket(iface=args.iface)
    sent: Counter = Counter()
    replies: Counter = Counter()
    violations: list[dict] = []
    data_checked = 0

    def receive(timeout: float) -> None:
        nonlocal data_checked
        for key, _events in selector.select(timeout):
            sock = key.fileobj
            while True:
                try:
                    payload, peer = sock.recvfrom(70000)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue
                group = group_of[sock.fileno()]
                opcode = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else -1
                name = {3: "data", 4: "ack", 5: "error", 6: "oack"}.get(opcode, "opcode_%d" % opcode)
                replies["%s:%s" % (group, name)] += 1
                request = last_request.get(sock.fileno(), ("?", b""))
                if opcode == 4:
                    violations.append({"what": "write accepted (ACK)", "kind": request[0], "request": request[1][:80].hex()})
                if opcode == 3 and group != "loader" and len(payload) == 4:
                    # An empty DATA: the chrooted server read a directory ("." or "..",
                    # both the TFTP root itself). No byte left the boot tree; counted apart.
                    replies["other:empty_data"] += 1
                elif opcode in (3, 6) and group != "loader":
                    violations.append({"what": "served a request that is not a loader", "kind": request[0],
                                       "request": request[1][:80].hex(), "answer": payload[:64].hex()})
                if opcode == 3:
                    block = payload[4:]
                    data_checked += 1
                    if block and not any(block in reference for reference in references):
                        violations.append({"what": "DATA that is no part of a loader", "kind": request[0],
                                           "request": request[1][:80].hex(), "answer": payload[:64].hex()})
                if opcode in (3, 6) and peer[0] == args.server:
                    # End the transfer the server started: its child exits at once.
                    sock.sendto(b"\x00\x05\x00\x00centra fuzz: abort\x00", peer)

    pacer = Pacer(args.rate)
    try:
        for index, kind in enumerate(kinds):
            if kind == "wrong_length":
                sock = rng.choice(groups["other"])
                payload = bytes(TFTP() / TFTP_RRQ(filename=rng.choice(TRAVERSALS[:4]).encode(), mode=b"octet"))
                frame = Ether(src=src_mac, dst=args.server_mac) / IP(src=CLIENT, dst=args.server) \
                    / UDP(sport=sock.getsockname()[1], dport=69) / Raw(load=payload)
                if rng.random() < 0.5:
                    frame[UDP].len = rng.choice([0, 8, 9, 10, len(payload) + 8 + rng.randint(1, 500), 65535])
                else:
                    frame[IP].len = rng.choice([0, 20, 28, 29, 65535])
                last_request[sock.fileno()] = (kind, payload)
                pacer.wait()
                raw_socket.send(bytes(frame))
            else:
                payload, reads_loader = tftp_request(kind, rng, loaders, index)
                sock = rng.choice(groups["loader" if reads_loader else "other"])
                last_request[sock.fileno()] = (kind, payload)
                pacer.wait()
                sock.sendto(payload, (args.server, 69))
            sent[kind] += 1
            receive(0)
        drain_until = time.monotonic() + args.drain
        while time.monotonic() < drain_until:
            receive(0.2)
    finally:
        raw_socket.close()
        for socks in groups.values():
            for sock in socks:
                sock.close()
    return {"protocol": "tftp", "sent": sum(sent.values()), "by_kind": dict(sorted(sent.items())),
            "replies": dict(sorted(replies.items())), "data_packets_checked": data_checked,
            "violations": violations[:20], "violation_count": len(violations),
            "seconds": round(time.monotonic() - pacer.started, 1), "rate": args.rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocol", choices=["dhcp", "tftp"])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--server", required=True, help="the PXE host's address (from the lab inventory)")
    parser.add_argument("--server-mac", required=True, help="the PXE host's MAC on the lab bridge")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=500.0, help="packets per second (at most)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--reference", action="append", default=[], help="tftp: a loader of the TFTP root")
    parser.add_argument("--drain", type=float, default=3.0, help="tftp: seconds to wait for late replies")
    args = parser.parse_args()
    if not 0 < args.count <= 50000 or not 0 < args.rate <= 2000:
        parser.error("--count must be 1..50000 and --rate 1..2000: the lab is shared")
    if args.protocol == "tftp" and not args.reference:
        parser.error("tftp needs --reference for each loader of the TFTP root")
    conf.verb = 0
    result = fuzz_dhcp(args) if args.protocol == "dhcp" else fuzz_tftp(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
