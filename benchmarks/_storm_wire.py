# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the boot storm (benchmarks/boot_storm.py): DHCP and TFTP packets as
a PXE client sends and reads them, the iPXE scripts a client follows, and the summary
of a storm. No sockets, no clock: unit tested in tests/unit/test_boot_storm.py.

Standard library only: the storm client (benchmarks/_storm_client.py) imports this
inside the lab namespace.
"""

from __future__ import annotations

import ipaddress
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

# --- DHCP (RFC 2131/2132, PXE options of RFC 4578) -----------------------------------

MAGIC_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK = 1, 2, 3, 4, 5, 6
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


@dataclass(frozen=True)
class DhcpReply:
    """What a PXE client reads from an OFFER or ACK."""

    xid: int
    message_type: int
    yiaddr: str
    siaddr: str
    file: str
    server_id: Optional[str]
    options: Dict[int, bytes]

    @property
    def boot_file(self) -> str:
        """The boot file: the BOOTP file field, else option 67 (Kea may use either)."""
        if self.file:
            return self.file
        return self.options.get(67, b"").rstrip(b"\x00").decode("ascii", "replace")

    @property
    def next_server(self) -> str:
        """Where the TFTP loader comes from: siaddr, else option 66 (an address)."""
        if self.siaddr != "0.0.0.0":
            return self.siaddr
        return self.options.get(66, b"").rstrip(b"\x00").decode("ascii", "replace")


def mac_bytes(mac: str) -> bytes:
    data = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(data) != 6:
        raise ValueError("not a MAC: %r" % mac)
    return data


def _option(code: int, payload: bytes) -> bytes:
    if len(payload) > 255:
        raise ValueError("option %d too long" % code)
    return bytes([code, len(payload)]) + payload


def dhcp_request_packet(message_type: int, mac: str, xid: int, giaddr: str, arch: Optional[int],
                        ipxe: bool = False, requested: Optional[str] = None, server_id: Optional[str] = None,
                        secs: int = 0) -> bytes:
    """A DISCOVER or REQUEST as a relay forwards it (giaddr set, hops 1).

    PXE firmware (ipxe=False) sends option 93, 94 and 60 `PXEClient:Arch:...`; iPXE
    (ipxe=True) adds user class "iPXE" (77) and its option 175, so the server answers
    with the boot script's URL instead of the loader again.
    """
    chaddr = mac_bytes(mac)
    header = _BOOTP.pack(1, 1, 6, 1, xid, secs, 0, b"\x00" * 4, b"\x00" * 4, b"\x00" * 4,
                         ipaddress.IPv4Address(giaddr).packed, chaddr + b"\x00" * 10, b"\x00" * 64, b"\x00" * 128)
    options = [_option(53, bytes([message_type])), _option(57, struct.pack("!H", 1472))]
    if arch is not None:
        options.append(_option(93, struct.pack("!H", arch)))
        options.append(_option(94, b"\x01\x03\x10"))  # UNDI 3.16
        vendor = "PXEClient:Arch:%05d:UNDI:003016" % arch
    else:
        vendor = "PXEClient"
    options.append(_option(60, vendor.encode("ascii")))
    if ipxe:
        options.append(_option(77, b"iPXE"))
        options.append(_option(175, b"\x15\x01\x01"))  # iPXE's "PXE extension support"
    if requested is not None:
        options.append(_option(50, ipaddress.IPv4Address(requested).packed))
    if server_id is not None:
        options.append(_option(54, ipaddress.IPv4Address(server_id).packed))
    options.append(_option(55, bytes([1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 93, 128, 175])))
    return header + MAGIC_COOKIE + b"".join(options) + b"\xff"


def parse_options(data: bytes) -> Dict[int, bytes]:
    """DHCP options after the magic cookie: code -> payload (split options joined)."""
    found: Dict[int, bytes] = {}
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
    return found


def parse_dhcp_reply(data: bytes) -> Optional[DhcpReply]:
    """A server's BOOTREPLY, or None for anything else (too short, a request, no cookie)."""
    if len(data) < _BOOTP.size + 4 or data[0] != 2 or data[_BOOTP.size:_BOOTP.size + 4] != MAGIC_COOKIE:
        return None
    fields = _BOOTP.unpack_from(data)
    options = parse_options(data[_BOOTP.size + 4:])
    kind = options.get(53, b"\x00")[:1]
    server = options.get(54)
    return DhcpReply(
        xid=fields[4], message_type=kind[0] if kind else 0,
        yiaddr=str(ipaddress.IPv4Address(fields[8])), siaddr=str(ipaddress.IPv4Address(fields[9])),
        file=fields[13].split(b"\x00", 1)[0].decode("ascii", "replace"),
        server_id=str(ipaddress.IPv4Address(server)) if server and len(server) == 4 else None,
        options=options)


DISCOVER_TO_OFFER_REQUEST_TO_ACK = ((DISCOVER, (OFFER,)), (REQUEST, (ACK, NAK)))


def dhcp_message(data: bytes) -> Optional[Tuple[int, int]]:
    """(xid, message type) of any DHCPv4 message (a UDP payload); None for anything else."""
    if len(data) < _BOOTP.size + 4 or data[0] not in (1, 2) or data[_BOOTP.size:_BOOTP.size + 4] != MAGIC_COOKIE:
        return None
    kind = parse_options(data[_BOOTP.size + 4:]).get(53, b"")[:1]
    return _BOOTP.unpack_from(data)[4], (kind[0] if kind else 0)


def server_share(seen: Sequence[Tuple[float, int]]) -> Optional[float]:
    """The server's part of one DORA, from what a capture on the client's side of the link
    saw of its transaction id: (time, message type) in any order. For DISCOVER -> OFFER and
    REQUEST -> ACK (or NAK), the first answer's time less that of the last request of its
    kind sent before it: a retransmission the server answered is timed from itself, and a
    client that is slow to read an answer adds nothing. None when an answer is missing."""
    total = 0.0
    ordered = sorted(seen)
    for ask, answers in DISCOVER_TO_OFFER_REQUEST_TO_ACK:
        answered = next((t for t, kind in ordered if kind in answers), None)
        if answered is None:
            return None
        asked = [t for t, kind in ordered if kind == ask and t <= answered]
        if not asked:
            return None
        total += answered - asked[-1]
    return total


# --- TFTP (RFC 1350, options RFC 2347/2348/2349) --------------------------------------

RRQ, DATA, TFTP_ACK, ERROR, OACK = 1, 3, 4, 5, 6


def tftp_rrq(filename: str, blksize: Optional[int] = None, tsize: bool = True) -> bytes:
    """A read request in octet mode, asking for blksize (and the size: tsize 0)."""
    packet = struct.pack("!H", RRQ) + filename.encode("ascii") + b"\x00octet\x00"
    if blksize is not None:
        packet += b"blksize\x00%d\x00" % blksize
    if tsize:
        packet += b"tsize\x000\x00"
    return packet


def tftp_ack(block: int) -> bytes:
    return struct.pack("!HH", TFTP_ACK, block & 0xFFFF)


def tftp_server_share(seen: Sequence[Tuple[float, int, int]], blocks: int) -> Optional[float]:
    """The server's part of one TFTP transfer, from a capture on the client's side of the
    link: (time, opcode, block) of its RRQ, OACK, DATA and ACK packets, in any order. Each
    answer (the OACK; DATA n, the first time it is seen) less the time of the last request
    it answers (the RRQ; the ACK of block n - 1, or the RRQ for DATA 1 without an OACK)
    sent before it. None unless all `blocks` DATA blocks and what they answer are there
    (a capture that missed a packet would time part of the transfer)."""
    share, expected = 0.0, 1
    asked_rrq: Optional[float] = None
    oack = False
    last_ack: Dict[int, float] = {}
    for when, opcode, block in sorted(seen):
        if opcode == RRQ:
            asked_rrq = when
        elif opcode == OACK and not oack:
            if asked_rrq is None:
                return None
            share += when - asked_rrq
            oack = True
        elif opcode == TFTP_ACK:
            last_ack[block] = when
        elif opcode == DATA and block == expected & 0xFFFF:
            previous = (expected - 1) & 0xFFFF
            asked = last_ack.get(previous) if (oack or expected > 1) else asked_rrq
            if asked is None:
                return None
            share += when - asked
            expected += 1
    return share if blocks and expected - 1 == blocks else None


@dataclass(frozen=True)
class TftpPacket:
    opcode: int
    block: int = 0                      # DATA, ACK
    data: bytes = b""                   # DATA
    options: Dict[str, str] = field(default_factory=dict)  # OACK
    error: str = ""                     # ERROR: "code: message"


def parse_tftp(packet: bytes) -> Optional[TftpPacket]:
    """A server's packet, or None when it is too short or of an unknown opcode."""
    if len(packet) < 2:
        return None
    opcode = struct.unpack_from("!H", packet)[0]
    if opcode == DATA and len(packet) >= 4:
        return TftpPacket(DATA, block=struct.unpack_from("!H", packet, 2)[0], data=packet[4:])
    if opcode == TFTP_ACK and len(packet) >= 4:
        return TftpPacket(TFTP_ACK, block=struct.unpack_from("!H", packet, 2)[0])
    if opcode == OACK:
        parts = packet[2:].split(b"\x00")
        if parts and parts[-1] == b"":
            parts = parts[:-1]
        if len(parts) % 2:
            return None
        options = {parts[i].decode("ascii", "replace").lower(): parts[i + 1].decode("ascii", "replace")
                   for i in range(0, len(parts), 2)}
        return TftpPacket(OACK, options=options)
    if opcode == ERROR and len(packet) >= 4:
        code = struct.unpack_from("!H", packet, 2)[0]
        return TftpPacket(ERROR, error="%d: %s" % (code, packet[4:].split(b"\x00", 1)[0].decode("ascii", "replace")))
    return None


def next_block(block: int) -> int:
    """The block after `block` (16-bit, wrapping to 0 as tftpd-hpa does by default)."""
    return (block + 1) & 0xFFFF


# --- the iPXE scripts ------------------------------------------------------------------

@dataclass(frozen=True)
class NodeBoot:
    """What a node script makes iPXE fetch, and the installer's callback."""

    kernel: str
    initrd: str
    callback: Optional[str]
    token: Optional[str]


def _base(script: str) -> str:
    match = re.search(r"^set centra-base (\S+)\s*$", script, re.M)
    return match.group(1) if match else ""


def _expand(value: str, base: str, mac: str) -> str:
    return value.replace("${centra-base}", base).replace("${mac:hexhyp}", mac.lower().replace(":", "-"))


def entry_chain_url(script: str, mac: str) -> Optional[str]:
    """The URL boot.ipxe chains to for this MAC (its `chain` line, variables expanded)."""
    base = _base(script)
    for line in script.splitlines():
        words = line.split()
        if words[:1] == ["chain"]:
            targets = [w for w in words[1:] if not w.startswith("--")]
            if targets:
                return _expand(targets[0], base, mac)
    return None


def node_boot(script: str, mac: str) -> Optional[NodeBoot]:
    """The first `kernel` and `initrd` of a node script, with centra.callback/centra.token
    from the kernel line; None when the script boots no kernel (local disk, menu)."""
    base = _base(script)
    kernel_line = initrd_line = None
    for line in script.splitlines():
        words = line.split()
        if words[:1] == ["kernel"] and kernel_line is None:
            kernel_line = words
        elif words[:1] == ["initrd"] and initrd_line is None:
            initrd_line = words
    if not kernel_line or not initrd_line:
        return None
    kernel_args = [w for w in kernel_line[1:] if not w.startswith("--")]
    initrd_args = [w for w in initrd_line[1:] if not w.startswith("--")]
    if not kernel_args or not initrd_args:
        return None
    found = {}
    for word in kernel_args[1:]:
        if word in ("||", "&&"):
            break
        key, _sep, value = word.partition("=")
        if key in ("centra.callback", "centra.token"):
            found[key] = value
    return NodeBoot(kernel=_expand(kernel_args[0], base, mac), initrd=_expand(initrd_args[0], base, mac),
                    callback=found.get("centra.callback"), token=found.get("centra.token"))


# --- the machines of a storm -----------------------------------------------------------

NODE_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
RELAY_ADDRESS = "198.18.0.1"                 # giaddr: the storm's relay, in the lab namespace
FIXED_BASE = ipaddress.IPv4Address("198.18.16.0")
POOL = "198.19.0.10-198.19.15.250"
ARCH_BIOS, ARCH_UEFI = 0, 7


@dataclass(frozen=True)
class Machine:
    index: int
    name: str
    mac: str
    arch: int                     # option 93: 0 BIOS, 7 x86-64 UEFI
    profile: str
    fixed_ip: Optional[str]       # pxe_ip, or None: an address from the pool


def machine(index: int, profiles: Sequence[str]) -> Machine:
    """Machine number `index`: even ones BIOS, odd ones UEFI; two in five with a fixed
    address; the profiles in turn."""
    mac = "02:5b:" + ":".join("%02x" % ((index >> shift) & 0xFF) for shift in (24, 16, 8, 0))
    fixed = str(FIXED_BASE + index) if index % 5 in (0, 2) else None
    return Machine(index=index, name="s%05d" % index, mac=mac, arch=ARCH_BIOS if index % 2 == 0 else ARCH_UEFI,
                   profile=profiles[index % len(profiles)], fixed_ip=fixed)


# --- summaries -------------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> Dict[str, float]:
    """CPU-seconds per unit between two readings; a unit missing from either counts 0
    (a stopped unit has no cgroup), a restarted one (counter went down) counts `after`."""
    out = {}
    for unit in sorted(set(before) | set(after)):
        start, end = before.get(unit, 0.0), after.get(unit, 0.0)
        out[unit] = end - start if end >= start else end
    return out


def parse_cpu_stat(text: str) -> Dict[str, float]:
    """`unit usage_usec` lines (what boot_storm reads from the host) -> CPU-seconds."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1]) / 1e6
    return out


PHASES = ("dhcp", "tftp", "dhcp_ipxe", "scripts", "kernel", "initrd", "callback")
SERVER_PHASES = ("dhcp", "tftp", "dhcp_ipxe")  # the phases a capture times the server's part of


def summarize(results: Sequence[Mapping], link_bytes_per_s: float, cpu: Mapping[str, float]) -> Dict:
    """One storm: completed, failed, retried, time to initrd p50/p99, makespan, the link
    bound (N x bytes per boot / rate, the bytes of the completed boots' transfers) and
    server CPU-seconds per boot per unit."""
    done = [r for r in results if r.get("ok")]
    failed = [r for r in results if not r.get("ok")]
    retries: Dict[str, int] = {}
    for result in results:
        for phase, count in result.get("retries", {}).items():
            retries[phase] = retries.get(phase, 0) + count
    to_initrd = [r["t_initrd"] for r in done]
    makespan = max((r["t_done"] for r in done), default=None) if not failed else \
        max((r.get("t_done") or r.get("t_end") or 0.0 for r in results), default=None)
    bytes_per_boot = (sum(r["bytes"] for r in done) / len(done)) if done else 0.0
    bound = len(results) * bytes_per_boot / link_bytes_per_s if link_bytes_per_s > 0 and done else None
    phase_p50 = {phase: percentile([r["phases"][phase] for r in done if phase in r.get("phases", {})], 0.5)
                 for phase in PHASES}
    phase_p99 = {phase: percentile([r["phases"][phase] for r in done if phase in r.get("phases", {})], 0.99)
                 for phase in PHASES}
    server = {phase: [r["server"][phase] for r in done if r.get("server", {}).get(phase) is not None]
              for phase in SERVER_PHASES}
    errors: Dict[str, int] = {}
    for result in failed:
        key = str(result.get("error", "?")).split(":", 1)[0]
        errors[key] = errors.get(key, 0) + 1
    return {
        "machines": len(results), "completed": len(done), "failed": len(failed), "errors": errors,
        "retried_machines": sum(1 for r in results if any(r.get("retries", {}).values())),
        "retries": retries,
        "initrd_p50_s": percentile(to_initrd, 0.5), "initrd_p99_s": percentile(to_initrd, 0.99),
        "makespan_s": makespan, "bytes_per_boot": bytes_per_boot,
        "link_mb_s": link_bytes_per_s / 1e6, "link_bound_s": bound,
        "makespan_over_bound": (makespan / bound) if bound and makespan else None,
        "phase_p50_s": phase_p50, "phase_p99_s": phase_p99,
        # The server's own part of each DHCP exchange and TFTP transfer, from the capture (empty without one).
        "server_p50_s": {phase: percentile(values, 0.5) for phase, values in server.items() if values},
        "server_p99_s": {phase: percentile(values, 0.99) for phase, values in server.items() if values},
        "cpu_s": dict(cpu),
        "cpu_s_per_boot": {unit: seconds / len(results) for unit, seconds in cpu.items()} if results else {},
    }


def trace_complete(kinds: Sequence[str], expected: Sequence[str]) -> Tuple[bool, List[str]]:
    """Whether a node's trace since the storm began holds every expected kind; the missing ones."""
    present = set(kinds)
    missing = [kind for kind in expected if kind not in present]
    return not missing, missing
