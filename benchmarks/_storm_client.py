# SPDX-License-Identifier: GPL-3.0-or-later
"""The client side of the boot storm (benchmarks/boot_storm.py), run inside the lab
namespace with the standard library only:

    python3 _storm_client.py storm SPEC.json     # N machines booting at once; JSON on stdout
    python3 _storm_client.py link ADDRESS PORT STREAMS   # receive a raw bulk transfer; JSON on stdout

A machine of the storm does what PXE firmware and iPXE do, each from its own address:
DHCP DISCOVER/REQUEST with option 93 through a relay (giaddr: one UDP socket on the relay
address, port 67, as perfdhcp does; the answers are sorted by xid), the TFTP loader with
blksize negotiation from its leased address, DHCP again as iPXE (user class "iPXE"),
HTTP boot.ipxe, its node script, the kernel and initrd the script names, then the
installer's `started` callback with the token from the kernel line. Every wait is
bounded; retries follow the firmware's backoff and are counted.

The addresses: the lab namespace routes all of 198.18.0.0/15 to itself (`ip route add
local ... dev lo`, set up by boot_storm.py), so a machine can bind the address it leased;
the PXE host routes 198.18.0.0/15 back through the lab bridge.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import socket
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


def dora(relay: Relay, giaddr: str, mac: str, arch: int, ipxe: bool, waits: Tuple[float, ...], deadline: float,
         retries: Dict[str, int], phase: str) -> wire.DhcpReply:
    xid = random.getrandbits(32)

    def discover(secs: int) -> bytes:
        return wire.dhcp_request_packet(wire.DISCOVER, mac, xid, giaddr, arch, ipxe, secs=secs)

    offer = relay.exchange(discover, xid, wire.OFFER, waits, deadline, retries, phase)
    server_id = offer.server_id or relay.server

    def request(secs: int) -> bytes:
        return wire.dhcp_request_packet(wire.REQUEST, mac, xid, giaddr, arch, ipxe, requested=offer.yiaddr,
                                        server_id=server_id, secs=secs)

    return relay.exchange(request, xid, wire.ACK, waits, deadline, retries, phase)


def tftp_get(own: str, server: str, filename: str, deadline: float, retries: Dict[str, int]) -> int:
    """Fetch a file as firmware does (RRQ with blksize and tsize, OACK, ACK 0, then one
    ACK per block); the bytes received, checked against tsize."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((own, 0))
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
    ack = dora(relay, spec["relay"], mac, arch, False, FIRMWARE_DHCP_WAITS, deadline, retries, "dhcp")
    own = ack.yiaddr
    result.update(ip=own, loader=ack.boot_file)
    if item.get("fixed_ip") and own != item["fixed_ip"]:
        raise Failed("dhcp: got %s, the inventory fixes %s" % (own, item["fixed_ip"]))
    if not ack.boot_file or ack.boot_file.startswith("http"):
        raise Failed("dhcp: boot file %r for arch %d" % (ack.boot_file, arch))
    lap("dhcp")
    result["bytes"] += tftp_get(own, ack.next_server or spec["server"], ack.boot_file, deadline, retries)
    lap("tftp")
    ack2 = dora(relay, spec["relay"], mac, arch, True, IPXE_DHCP_WAITS, deadline, retries, "dhcp_ipxe")
    result["script"] = ack2.boot_file
    if not ack2.boot_file.startswith("http://") or ack2.yiaddr != own:
        raise Failed("dhcp_ipxe: %r, %s" % (ack2.boot_file, ack2.yiaddr))
    lap("dhcp_ipxe")
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


def storm(spec: Dict[str, Any]) -> Dict[str, Any]:
    machines: List[Dict[str, Any]] = spec["machines"]
    if not 0 < len(machines) <= spec.get("max_machines", 2000):
        raise SystemExit("storm: %d machines (1 to %d)" % (len(machines), spec.get("max_machines", 2000)))
    rng = random.Random(spec.get("seed", 1))
    offsets = [spec.get("spread", 1.0) * i / len(machines) for i in range(len(machines))]
    rng.shuffle(offsets)
    relay = Relay(spec["relay"], spec["server"])
    results: List[Dict[str, Any]] = [{} for _machine in machines]
    go = threading.Event()
    clock: Dict[str, float] = {}

    def run(index: int) -> None:
        go.wait()
        try:
            boot_one(spec, dict(machines[index], offset=offsets[index]), relay, clock["t0"], clock["deadline"],
                     results[index])
        except Failed as error:
            results[index]["error"] = str(error)
        except Exception as error:  # pylint: disable=broad-except  # reported, not raised: one machine fails
            results[index]["error"] = "crash: %s %s" % (type(error).__name__, error)
        results[index]["t_end"] = round(time.monotonic() - clock["t0"], 4)

    threading.stack_size(512 << 10)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(machines))]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    clock["t0"] = time.monotonic() + 0.2
    clock["deadline"] = clock["t0"] + spec["timeout"]
    epoch0 = time.time() + 0.2
    go.set()
    for thread in threads:
        thread.join(max(0.0, clock["deadline"] + 5 - time.monotonic()))
    for index, result in enumerate(results):
        if "ok" not in result or ("error" not in result and not result.get("ok")):
            result.setdefault("mac", machines[index]["mac"])
            result.setdefault("error", "timeout: still running at the global deadline")
            result["ok"] = False
    return {"t0_epoch": epoch0, "results": results, "stray_dhcp": relay.stray}


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
