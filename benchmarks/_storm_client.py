# SPDX-License-Identifier: GPL-3.0-or-later
"""The client side of the boot storm (benchmarks/boot_storm.py), run inside the lab
namespace with the standard library only:

    python3 _storm_client.py storm SPEC.json     # N machines booting at once; JSON on stdout
    python3 _storm_client.py link ADDRESS PORT STREAMS   # receive a raw bulk transfer; JSON on stdout

A machine of the storm does what PXE firmware and iPXE do, each from its own address:
DHCP DISCOVER/REQUEST with option 93 through a relay (giaddr: one UDP socket on the relay
address, port 67, as perfdhcp does, one relay address per client process; the answers
are sorted by xid), the TFTP loader with
blksize negotiation from its leased address, DHCP again as iPXE (user class "iPXE"),
HTTP boot.ipxe, its node script, the kernel and initrd the script names, then the
installer's `started` callback with the token from the kernel line. Every wait is
bounded; retries follow the firmware's backoff and are counted.

The addresses: the lab namespace routes all of 198.18.0.0/15 to itself (`ip route add
local ... dev lo`, set up by boot_storm.py), so a machine can bind the address it leased;
the PXE host routes 198.18.0.0/15 back through the lab bridge.
"""

from __future__ import annotations

import ctypes
import http.client
import ipaddress
import json
import multiprocessing
import os
import queue
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _storm_wire as wire  # noqa: E402  pylint: disable=wrong-import-position

# PXE 2.1: DISCOVER retransmitted after 4, 8, 16, 32 s; iPXE's DHCP starts at 1 s.
FIRMWARE_DHCP_WAITS = (4.0, 8.0, 16.0, 32.0)
IPXE_DHCP_WAITS = (1.0, 2.0, 4.0, 8.0, 10.0)
TFTP_WAITS = (1.0, 2.0, 4.0, 4.0, 4.0, 4.0)      # per packet: the first wait, then retransmits
HTTP_WAITS = (1.0, 2.0, 4.0, 8.0, 8.0)           # between attempts of one request
HTTP_TIMEOUT = 30.0
TFTP_BLKSIZE = 1468


class Failed(Exception):
    """A machine gave up: the message names the phase."""


class Relay:
    """One UDP socket on giaddr:67 for every machine's DHCP; answers sorted by xid."""

    def __init__(self, address: str, server: str) -> None:
        self.address = address
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((address, 67))
        self.waiting: Dict[int, "queue.Queue[wire.DhcpReply]"] = {}
        self.lock = threading.Lock()
        self.stray = 0
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data, _source = self.sock.recvfrom(4096)
            except OSError:
                return
            reply = wire.parse_dhcp_reply(data)
            with self.lock:
                box = self.waiting.get(reply.xid) if reply else None
            if box is None:
                self.stray += 1
            else:
                box.put(reply)

    def exchange(self, packet_for, xid: int, want: int, waits: Tuple[float, ...], deadline: float,
                 retries: Dict[str, int], phase: str) -> wire.DhcpReply:
        """Send packet_for(secs) until an answer of type `want` (or a NAK) for xid arrives."""
        box: "queue.Queue[wire.DhcpReply]" = queue.Queue()
        with self.lock:
            self.waiting[xid] = box
        started = time.monotonic()
        try:
            for attempt, wait in enumerate(waits):
                if attempt:
                    retries[phase] = retries.get(phase, 0) + 1
                self.sock.sendto(packet_for(int(time.monotonic() - started)), (self.server, 67))
                until = min(time.monotonic() + wait, deadline)
                while True:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        reply = box.get(timeout=left)
                    except queue.Empty:
                        break
                    if reply.message_type == want:
                        return reply
                    if reply.message_type == wire.NAK:
                        raise Failed("%s: NAK" % phase)
                if time.monotonic() >= deadline:
                    break
            raise Failed("%s: no answer" % phase)
        finally:
            with self.lock:
                self.waiting.pop(xid, None)


def _udp_filter(to_port_67_only: bool) -> bytes:
    """Classic BPF over the network header (SOCK_DGRAM: no link header): IPv4, UDP, not a
    fragment (and to port 67); so the kernel queues no segment of the downloads for us."""
    ops: List[Tuple[int, int, int, int]] = [
        (0x28, 0, 0, 0xFFFFF000),  # ldh [protocol] (SKF_AD_PROTOCOL): the frame's ethertype
        (0x15, 0, -1, 0x0800),     # jeq IPv4, else drop
        (0x30, 0, 0, 9),           # ldb [9]: protocol
        (0x15, 0, -1, 17),         # jeq UDP, else drop
        (0x28, 0, 0, 6),           # ldh [6]: flags and fragment offset
        (0x45, -1, 0, 0x1FFF),     # jset: a fragment, drop
    ]
    if to_port_67_only:
        ops += [(0xB1, 0, 0, 0),       # ldxb 4*([0]&0xf): the header's length
                (0x48, 0, 0, 2),       # ldh [x+2]: destination port
                (0x15, 0, -1, 67)]     # jeq 67, else drop
    ops += [(0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]  # keep; drop
    drop = len(ops) - 1
    return b"".join(struct.pack("HBBI", code, drop - i - 1 if jt < 0 else jt, drop - i - 1 if jf < 0 else jf, k)
                    for i, (code, jt, jf, k) in enumerate(ops))


class Capture:
    """What crosses `interface` (the lab bridge: the relay's requests and the machines'
    TFTP ACKs leave by it, the server's answers arrive by it), with the kernel's time for
    each packet (SO_TIMESTAMPNS), so the server's part of an exchange is timed without
    the client's own delays. DHCP: xid -> [(time, message type)]; with `tftp`, also each
    transfer by the machine's (address, port): [(time, opcode, block)]."""

    SO_TIMESTAMPNS = 35  # Linux; also the control message's type
    SO_ATTACH_FILTER, SO_RCVBUFFORCE = 26, 33
    SOL_PACKET, PACKET_STATISTICS = 263, 6
    ETH_P_ALL = 0x0003  # a socket of one protocol (ETH_P_IP) is not shown what the host sends

    def __init__(self, interface: str, tftp: bool = False) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(self.ETH_P_ALL))
        program = _udp_filter(not tftp)
        code = ctypes.create_string_buffer(program)  # the kernel copies it
        filter_program = struct.pack("HL", len(program) // 8, ctypes.addressof(code))  # struct sock_fprog
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_ATTACH_FILTER, filter_program)
        # Room for a whole storm's packets: this thread shares the GIL with its process's
        # machines and falls behind; it catches up after the storm (stop). Only what is queued uses memory.
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_RCVBUFFORCE, 768 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
        self.sock.bind((interface, self.ETH_P_ALL))
        self.sock.settimeout(0.5)
        self.tftp = tftp
        self.seen: Dict[int, List[Tuple[float, int]]] = {}
        self.transfers: Dict[Tuple[bytes, int], List[Tuple[float, int, int]]] = {}
        self.packets = 0
        self.dropped = 0
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data, ancillary, _flags, _address = self.sock.recvmsg(2048, socket.CMSG_SPACE(16))
            except socket.timeout:
                if self.running:
                    continue
                return  # stopped, and nothing more queued
            except OSError:
                return
            stamp = next((struct.unpack("qq", cdata[:16]) for level, kind, cdata in ancillary
                          if level == socket.SOL_SOCKET and kind == self.SO_TIMESTAMPNS), None)
            if stamp is None or len(data) < 32 or data[9] != 17:
                continue
            when = stamp[0] + stamp[1] / 1e9
            header = (data[0] & 0x0F) * 4
            source_port, destination_port = struct.unpack_from("!HH", data, header)
            if destination_port == 67:  # the relay's requests and the server's answers
                message = wire.dhcp_message(data[header + 8:])
                if message is not None:
                    self.packets += 1
                    self.seen.setdefault(message[0], []).append((when, message[1]))
            elif self.tftp:
                opcode, block = struct.unpack_from("!HH", data, header + 8)
                if opcode in (wire.DATA, wire.OACK):        # the server's, to the machine
                    key = (data[16:20], destination_port)
                elif opcode in (wire.RRQ, wire.TFTP_ACK):   # the machine's
                    key = (data[12:16], source_port)
                else:
                    continue
                self.packets += 1
                self.transfers.setdefault(key, []).append(
                    (when, opcode, block if opcode in (wire.DATA, wire.TFTP_ACK) else 0))

    def transfer(self, address: str, port: int) -> List[Tuple[float, int, int]]:
        return self.transfers.get((socket.inet_aton(address), port), [])

    def stop(self) -> None:
        """Read what is still queued, then stop; the kernel's count of packets it had no room for."""
        self.running = False
        self.thread.join(120)
        statistics = self.sock.getsockopt(self.SOL_PACKET, self.PACKET_STATISTICS, 8)
        self.dropped = struct.unpack("II", statistics)[1]
        self.sock.close()


def dora(relay: Relay, giaddr: str, mac: str, arch: int, ipxe: bool, waits: Tuple[float, ...], deadline: float,
         retries: Dict[str, int], phase: str, xid: int) -> wire.DhcpReply:

    def discover(secs: int) -> bytes:
        return wire.dhcp_request_packet(wire.DISCOVER, mac, xid, giaddr, arch, ipxe, secs=secs)

    offer = relay.exchange(discover, xid, wire.OFFER, waits, deadline, retries, phase)
    server_id = offer.server_id or relay.server

    def request(secs: int) -> bytes:
        return wire.dhcp_request_packet(wire.REQUEST, mac, xid, giaddr, arch, ipxe, requested=offer.yiaddr,
                                        server_id=server_id, secs=secs)

    return relay.exchange(request, xid, wire.ACK, waits, deadline, retries, phase)


def tftp_get(own: str, server: str, filename: str, deadline: float, retries: Dict[str, int],
             result: Dict[str, Any]) -> int:
    """Fetch a file as firmware does (RRQ with blksize and tsize, OACK, ACK 0, then one
    ACK per block); the bytes received, checked against tsize. The port it came from in
    result["tftp_port"] (the capture's key to the transfer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((own, 0))
        result["tftp_port"] = sock.getsockname()[1]
        last_sent = wire.tftp_rrq(filename, TFTP_BLKSIZE)
        destination: Tuple[str, int] = (server, 69)
        peer: Optional[Tuple[str, int]] = None
        blksize, tsize, expected, received = 512, None, 1, 0
        sock.sendto(last_sent, destination)
        attempt = 0
        while True:
            wait = TFTP_WAITS[min(attempt, len(TFTP_WAITS) - 1)]
            sock.settimeout(max(0.01, min(wait, deadline - time.monotonic())))
            try:
                data, source = sock.recvfrom(65536)
            except socket.timeout:
                attempt += 1
                if attempt >= len(TFTP_WAITS) or time.monotonic() >= deadline:
                    raise Failed("tftp: timed out at block %d" % expected) from None
                retries["tftp"] = retries.get("tftp", 0) + 1
                sock.sendto(last_sent, destination)
                continue
            if peer is None:
                peer = destination = source
            elif source != peer:
                sock.sendto(b"\x00\x05\x00\x05unknown transfer ID\x00", source)
                continue
            packet = wire.parse_tftp(data)
            if packet is None:
                continue
            if packet.opcode == wire.ERROR:
                raise Failed("tftp: error %s" % packet.error)
            if packet.opcode == wire.OACK and expected == 1 and received == 0:
                blksize = int(packet.options.get("blksize", "512"))
                tsize = int(packet.options["tsize"]) if "tsize" in packet.options else None
                last_sent = wire.tftp_ack(0)
                sock.sendto(last_sent, destination)
                attempt = 0
                continue
            if packet.opcode != wire.DATA:
                continue
            if packet.block == expected & 0xFFFF:
                received += len(packet.data)
                last_sent = wire.tftp_ack(packet.block)
                sock.sendto(last_sent, destination)
                attempt = 0
                expected += 1
                if len(packet.data) < blksize:
                    result["tftp_blocks"] = expected - 1
                    if tsize is not None and tsize != received:
                        raise Failed("tftp: %d bytes, tsize said %d" % (received, tsize))
                    return received
            else:
                sock.sendto(wire.tftp_ack(packet.block), destination)  # a duplicate: ACK it again
    finally:
        sock.close()


def http_request(own: str, url: str, deadline: float, retries: Dict[str, int], phase: str, buffer: bytearray,
                 method: str = "GET", body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
                 keep: bool = False) -> Tuple[int, bytes]:
    """One request on a fresh connection from `own`, retried (connection errors, 429, 5xx)
    with a bounded backoff; (bytes of the body, the body if keep). A 2xx is required."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    last_error = ""
    for attempt in range(len(HTTP_WAITS) + 1):
        if attempt:
            retries[phase] = retries.get(phase, 0) + 1
            pause = HTTP_WAITS[attempt - 1]
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                timeout=min(HTTP_TIMEOUT, max(1.0, deadline - time.monotonic())),
                                                source_address=(own, 0))
        try:
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            if response.status == 429 or response.status >= 500:
                response.read()
                last_error = "HTTP %d" % response.status
                continue
            if not 200 <= response.status < 300:
                raise Failed("%s: HTTP %d for %s" % (phase, response.status, target))
            if keep:
                content = response.read()
                return len(content), content
            view = memoryview(buffer)
            total = 0
            while True:
                count = response.readinto(view)
                if not count:
                    break
                total += count
            length = response.getheader("Content-Length")
            if length is not None and int(length) != total:
                last_error = "short body (%d of %s)" % (total, length)
                continue
            return total, b""
        except (OSError, http.client.HTTPException) as error:
            last_error = "%s %s" % (type(error).__name__, error)
        finally:
            connection.close()
    raise Failed("%s: %s" % (phase, last_error or "gave up"))


def boot_one(spec: Dict[str, Any], item: Dict[str, Any], relay: Relay, t0: float, deadline: float,
             result: Dict[str, Any]) -> None:
    """One machine from power-on to its `started` callback; fills `result` as it goes."""
    mac, arch = item["mac"], item["arch"]
    retries: Dict[str, int] = {}
    phases: Dict[str, float] = {}
    result.update(mac=mac, arch=arch, ok=False, retries=retries, phases=phases, bytes=0)
    buffer = bytearray(256 << 10)
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 4)
        mark = now

    time.sleep(max(0.0, t0 + item["offset"] - time.monotonic()))
    mark = time.monotonic()
    result["t_start"] = round(mark - t0, 4)
    xids = result.setdefault("xids", {})
    xids["dhcp"] = random.getrandbits(32)
    ack = dora(relay, relay.address, mac, arch, False, FIRMWARE_DHCP_WAITS, deadline, retries, "dhcp", xids["dhcp"])
    own = ack.yiaddr
    result.update(ip=own, loader=ack.boot_file)
    if item.get("fixed_ip") and own != item["fixed_ip"]:
        raise Failed("dhcp: got %s, the inventory fixes %s" % (own, item["fixed_ip"]))
    if not ack.boot_file or ack.boot_file.startswith("http"):
        raise Failed("dhcp: boot file %r for arch %d" % (ack.boot_file, arch))
    lap("dhcp")
    if spec.get("dhcp_only"):
        time.sleep(random.Random(mac).uniform(0.0, 1.0))  # in place of a loader's transfer
    else:
        result["bytes"] += tftp_get(own, ack.next_server or spec["server"], ack.boot_file, deadline, retries, result)
    lap("tftp")
    xids["dhcp_ipxe"] = random.getrandbits(32)
    ack2 = dora(relay, relay.address, mac, arch, True, IPXE_DHCP_WAITS, deadline, retries, "dhcp_ipxe",
                xids["dhcp_ipxe"])
    result["script"] = ack2.boot_file
    if not ack2.boot_file.startswith("http://") or ack2.yiaddr != own:
        raise Failed("dhcp_ipxe: %r, %s" % (ack2.boot_file, ack2.yiaddr))
    lap("dhcp_ipxe")
    if spec.get("dhcp_only"):
        result["t_initrd"] = result["t_done"] = round(time.monotonic() - t0, 4)
        result["ok"] = True
        return
    size, entry = http_request(own, ack2.boot_file, deadline, retries, "scripts", buffer, keep=True)
    result["bytes"] += size
    node_url = wire.entry_chain_url(entry.decode("utf-8", "replace"), mac)
    if not node_url:
        raise Failed("scripts: no chain line in %s" % ack2.boot_file)
    size, node_script = http_request(own, node_url, deadline, retries, "scripts", buffer, keep=True)
    result["bytes"] += size
    boot = wire.node_boot(node_script.decode("utf-8", "replace"), mac)
    if boot is None:
        raise Failed("scripts: %s boots no kernel" % node_url)
    lap("scripts")
    size, _body = http_request(own, boot.kernel, deadline, retries, "kernel", buffer)
    result["bytes"] += size
    result["kernel_bytes"] = size
    lap("kernel")
    size, _body = http_request(own, boot.initrd, deadline, retries, "initrd", buffer)
    result["bytes"] += size
    result["initrd_bytes"] = size
    lap("initrd")
    result["t_initrd"] = round(time.monotonic() - t0, 4)
    if not boot.callback or not boot.token:
        raise Failed("callback: no centra.callback/centra.token on the kernel line")
    body = json.dumps({"event": "started", "message": "boot storm"}).encode()
    http_request(own, boot.callback, deadline, retries, "callback", buffer, method="POST", body=body,
                 headers={"Authorization": "Bearer " + boot.token, "Content-Type": "application/json"}, keep=True)
    lap("callback")
    result["t_done"] = round(time.monotonic() - t0, 4)
    result["ok"] = True


def boot_group(spec: Dict[str, Any], indexes: List[int], offsets: List[float], relay_address: str, t0: float,
               out: Any) -> None:
    """In a process of its own: machines `indexes`, a thread each, their DHCP through their
    own relay address; sends ({index: result}, stray answers) to `out`."""
    relay = Relay(relay_address, spec["server"])
    deadline = t0 + spec["timeout"]
    results: Dict[int, Dict[str, Any]] = {index: {} for index in indexes}

    def run(index: int) -> None:
        try:
            boot_one(spec, dict(spec["machines"][index], offset=offsets[index]), relay, t0, deadline, results[index])
        except Failed as error:
            results[index]["error"] = str(error)
        except Exception as error:  # pylint: disable=broad-except  # reported, not raised: one machine fails
            results[index]["error"] = "crash: %s %s" % (type(error).__name__, error)
        results[index]["t_end"] = round(time.monotonic() - t0, 4)

    threading.stack_size(512 << 10)
    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + 5 - time.monotonic()))
    out.send(({index: dict(result) for index, result in results.items()}, relay.stray))
    out.close()


def storm(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Every machine of the spec, released within `spread` seconds, in `processes`
    processes: a machine is a thread, and the threads of one process share its
    interpreter lock. One process of 200 threads made each machine's TFTP wait for the
    others' HTTP reads (a block every 14 ms): a property of the client, not of any firmware."""
    machines: List[Dict[str, Any]] = spec["machines"]
    if not 0 < len(machines) <= spec.get("max_machines", 2000):
        raise SystemExit("storm: %d machines (1 to %d)" % (len(machines), spec.get("max_machines", 2000)))
    rng = random.Random(spec.get("seed", 1))
    offsets = [spec.get("spread", 1.0) * i / len(machines) for i in range(len(machines))]
    rng.shuffle(offsets)
    processes = max(1, min(int(spec.get("processes", 1)), len(machines), 64))
    first_relay = ipaddress.IPv4Address(spec["relay"])
    # Time for every process to start its threads before the first machine's turn.
    t0 = time.monotonic() + 1.0 + len(machines) / 1000
    epoch0 = time.time() + (t0 - time.monotonic())
    context = multiprocessing.get_context("fork")
    children = []
    for group in range(processes):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=boot_group, daemon=True,
                                args=(spec, list(range(group, len(machines), processes)), offsets,
                                      str(first_relay + group), t0, send))
        child.start()
        send.close()
        children.append((child, receive))
    # After the forks: a forked child would inherit the capture's socket, not its thread.
    capture = Capture(spec["capture"], spec.get("capture_tftp", False)) if spec.get("capture") else None
    results: List[Dict[str, Any]] = [{} for _machine in machines]
    stray = 0
    for child, receive in children:
        if receive.poll(max(0.0, t0 + spec["timeout"] + 30 - time.monotonic())):
            group_results, group_stray = receive.recv()
            for index, result in group_results.items():
                results[index] = result
            stray += group_stray
        child.join(10)
        if child.is_alive():
            child.kill()
    if capture is not None:
        capture.stop()
        for result in results:
            result["server"] = {phase: wire.server_share(capture.seen.get(xid, []))
                                for phase, xid in result.get("xids", {}).items()}
            if capture.tftp and result.get("tftp_port"):
                result["server"]["tftp"] = wire.tftp_server_share(capture.transfer(result["ip"], result["tftp_port"]),
                                                                  result.get("tftp_blocks", 0))
    for index, result in enumerate(results):
        if "ok" not in result or ("error" not in result and not result.get("ok")):
            result.setdefault("mac", machines[index]["mac"])
            result.setdefault("error", "timeout: still running at the global deadline")
            result["ok"] = False
    return {"t0_epoch": epoch0, "results": results, "stray_dhcp": stray, "processes": processes,
            "captured": capture.packets if capture is not None else None,
            "capture_dropped": capture.dropped if capture is not None else None}


def link(address: str, port: int, streams: int) -> Dict[str, Any]:
    """Accept `streams` connections and count what arrives until every one is closed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(streams)
    listener.settimeout(60)
    print("ready", file=sys.stderr, flush=True)
    totals = [0] * streams
    times: List[float] = []
    lock = threading.Lock()

    def receive(index: int, conn: socket.socket) -> None:
        view = memoryview(bytearray(1 << 20))
        first = None
        with conn:
            conn.settimeout(60)
            while True:
                count = conn.recv_into(view)
                if not count:
                    break
                if first is None:
                    first = time.monotonic()
                totals[index] += count
        with lock:
            times.extend([first or time.monotonic(), time.monotonic()])

    threads = []
    for index in range(streams):
        conn, _peer = listener.accept()
        thread = threading.Thread(target=receive, args=(index, conn))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(120)
    listener.close()
    seconds = max(times) - min(times) if times else 0.0
    return {"streams": streams, "bytes": sum(totals), "seconds": seconds,
            "bytes_per_s": sum(totals) / seconds if seconds > 0 else 0.0}


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "storm":
        with open(sys.argv[2], encoding="utf-8") as handle:
            spec = json.load(handle)
        print(json.dumps(storm(spec)))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "link":
        print(json.dumps(link(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
