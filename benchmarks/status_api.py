# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot trace and the status API of the lifecycle service (issue 13's speed goals).

The real program (roles/pxe_lifecycle/files/centra_pxe_lifecycle.py) runs `serve` with
its trace socket in a temporary directory, with a plan of N install nodes (no network:
Unix sockets only). Three measurements, side by side in one run:

1. Ingest: C simulated clients boot at once, each sending the events of one PXE boot
   (4 DHCP from the firmware, a TFTP loader, 2 DHCP from iPXE, the entry and node
   scripts, kernel, initrd: 11 datagrams), paced at a stated total rate for a few
   seconds per step. Reported per rate: datagrams sent, received (the service's
   counter), stored, dropped (queue full) and lost in the kernel (sent - received).
2. GET /api/v1/nodes with the N nodes in the store, each with its trace filled:
   latency p50/p99 over R sequential requests (and /status, /metrics once each).
3. The store after a flood of F DHCP discovers from random MACs: its file size,
   the discovered rows (capped), the known nodes' traces intact.

    python benchmarks/status_api.py [--nodes 10000] [--clients 200] [--rates 2000,5000,10000,20000]
        [--seconds 3] [--requests 50] [--flood 10000] [--qlen 512] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from _benchlib import import_collection, load, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "roles", "pxe_lifecycle", "files", "centra_pxe_lifecycle.py")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def get(path: str, url: str) -> bytes:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError("GET %s: HTTP %d" % (url, response.status))
        return body
    finally:
        conn.close()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def mac(index: int) -> str:
    return "52:54:%02x:%02x:%02x:01" % (index >> 16 & 255, index >> 8 & 255, index & 255)


def ip_of(index: int) -> str:
    return "198.18.%d.%d" % (index // 250, index % 250 + 1)


def boot_events(index: int, t: float) -> list:
    m, ip = mac(index), ip_of(index)
    import_collection()
    from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac  # pylint: disable=import-outside-toplevel
    hy = format_mac(m, "hyphen")
    out = [dict(src="dhcp", type=kind, mac=m, arch=7, vendor="PXEClient:Arch:00007:UNDI:003016", server="kea", ts=t)
           for kind in ("discover", "offer", "request")]
    out.append(dict(src="dhcp", type="ack", mac=m, ip=ip, arch=7, boot_file="ipxe.efi", server="kea", ts=t))
    out.append(dict(src="tftp", type="rrq", ip=ip, file="ipxe.efi", ts=t))
    out += [dict(src="dhcp", type=kind, mac=m, ip=ip, arch=7, boot_file="http://198.18.0.1/boot.ipxe", ts=t)
            for kind in ("request", "ack")]
    for uri, size in (("/boot.ipxe", 300), ("/nodes/%s.ipxe" % hy, 600), ("/profiles/worker/vmlinuz", 8000000),
                      ("/profiles/worker/initrd", 40000000)):
        out.append(dict(src="http", type="get", ip=ip, uri=uri, status=200, bytes=size, seconds=0.2, ts=t))
    return [json.dumps(e).encode() for e in out]


def start(base: str, nodes: int, qlen: int) -> tuple:
    state, sock, trace = os.path.join(base, "state"), os.path.join(base, "api.sock"), os.path.join(base, "trace.sock")
    plan, config = os.path.join(base, "plan.json"), os.path.join(base, "lifecycle.json")
    with open(plan, "w") as handle:
        json.dump({"schema": 1, "digest": "bench", "nodes": [
            {"name": "node%05d" % i, "profile": "worker", "boot": "install", "macs": [mac(i)], "ip": ip_of(i)}
            for i in range(nodes)]}, handle)
    with open(config, "w") as handle:
        json.dump({"trace_socket": trace, "callback_base": "http://198.18.0.1"}, handle)
    os.makedirs(state)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # the PXE host's
    argv = [python, PROGRAM, "--state-dir", state, "--plan", plan, "--scripts-dir", os.path.join(base, "scripts"),
            "--config", config, "--log-level", "ERROR", "serve", "--socket", sock]
    if qlen:
        # The kernel queue of a Unix datagram socket is net.unix.max_dgram_qlen, a sysctl of
        # the socket's network namespace: 512 on a PXE host (systemd's 50-default.conf), 10
        # where no systemd set it. The service runs in a namespace of its own (no network
        # in it; its sockets are files) with the PXE host's value, leaving this machine's alone.
        argv = ["unshare", "--net", "--", "sh", "-c", 'sysctl -qw net.unix.max_dgram_qlen=%d && exec "$@"' % qlen,
                "sh"] + argv
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (os.path.exists(sock) and os.path.exists(trace)):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("the service did not start")
        time.sleep(0.1)
    return proc, sock, trace, state


def wait_quiet(sock: str, settle: float = 1.0) -> str:
    """/metrics once stored + unattributed + discovered stop growing."""
    last, text = -1.0, ""
    while True:
        time.sleep(settle)
        text = get(sock, "/metrics").decode()
        counters = ("centra_pxe_trace_events_stored_total", "centra_pxe_trace_events_unattributed_total",
                    "centra_pxe_discovery_events_total", "centra_pxe_trace_events_dropped_total")
        done = sum(metric(text, n) for n in counters)
        if done == last:
            return text
        last = done


def ingest_step(sock: str, trace: str, clients: int, rate: int, seconds: float, offset: int) -> dict:
    before = get(sock, "/metrics").decode()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    datagrams = []
    boot = 0
    while len(datagrams) < rate * seconds:
        datagrams += boot_events(offset + boot % clients, time.time())
        boot += 1
    datagrams = datagrams[:int(rate * seconds)]
    sent = refused = 0
    start_at = time.perf_counter()
    for index, data in enumerate(datagrams):
        due = start_at + index / rate
        while time.perf_counter() < due:
            pass
        try:
            sender.sendto(data, trace)
            sent += 1
        except (BlockingIOError, ConnectionRefusedError, OSError):
            refused += 1  # the kernel buffer is full: a feeder loses the event, never waits
    elapsed = time.perf_counter() - start_at
    sender.close()
    after = wait_quiet(sock)

    def delta(name: str) -> int:
        return int(metric(after, name) - metric(before, name))
    received = delta("centra_pxe_trace_datagrams_received_total")
    return {"rate": rate, "achieved_rate": round(len(datagrams) / elapsed), "sent": sent,
            "refused_by_kernel": refused, "received": received, "stored": delta("centra_pxe_trace_events_stored_total"),
            "dropped": delta("centra_pxe_trace_events_dropped_total"),
            "kept_up": refused == 0 and received == sent and delta("centra_pxe_trace_events_dropped_total") == 0}


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rates", default="2000,5000,10000,20000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--flood", type=int, default=10000)
    parser.add_argument("--qlen", type=int, default=512,
                        help="net.unix.max_dgram_qlen for the service (its own network namespace; 0: this one's)")
    parser.add_argument("--json")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="cpxe-status-", dir="/tmp")
    proc = None
    result: dict = {"load_before": load(), "nodes": args.nodes, "clients": args.clients}
    try:
        proc, sock, trace, state = start(base, args.nodes, args.qlen)
        result["qlen"] = args.qlen
        result["ingest"] = []
        for rate in [int(r) for r in args.rates.split(",")]:
            step = ingest_step(sock, trace, args.clients, rate, args.seconds, random.randrange(args.nodes - args.clients))
            result["ingest"].append(step)
            print("ingest %(rate)6d/s (achieved %(achieved_rate)6d/s): sent %(sent)6d, kernel refused %(refused_by_kernel)5d, "
                  "received %(received)6d, stored %(stored)6d, dropped %(dropped)5d, kept up: %(kept_up)s" % step,
                  flush=True)
        # Every node gets a trace: one boot each, paced well under the ingest rate found above.
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for index in range(args.nodes):
            for data in boot_events(index, time.time()):
                while True:
                    try:
                        sender.sendto(data, trace)
                        break
                    except OSError:
                        time.sleep(0.01)
        sender.close()
        wait_quiet(sock)
        latencies = []
        size = 0
        for _request in range(args.requests):
            begin = time.perf_counter()
            size = len(get(sock, "/api/v1/nodes"))
            latencies.append(time.perf_counter() - begin)
        timed = {}
        for url in ("/status", "/metrics", "/api/v1/nodes/node00001/events"):
            begin = time.perf_counter()
            get(sock, url)
            timed[url] = round(time.perf_counter() - begin, 4)
        result["nodes_api"] = {"requests": args.requests, "bytes": size, "p50": round(percentile(latencies, 0.5), 4),
                               "p99": round(percentile(latencies, 0.99), 4), "others": timed}
        print("GET /api/v1/nodes with %d nodes (%d bytes): p50 %.3f s, p99 %.3f s; %s"
              % (args.nodes, size, result["nodes_api"]["p50"], result["nodes_api"]["p99"], timed), flush=True)
        known = json.loads(get(sock, "/api/v1/nodes/node00001/events"))["events"]
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for index in range(args.flood):
            random_mac = "02:" + ":".join("%02x" % random.getrandbits(8) for _byte in range(5))
            data = json.dumps({"src": "dhcp", "type": "discover", "mac": random_mac, "arch": 0,
                               "vendor": "PXEClient:Arch:00000:UNDI:002001"}).encode()
            while True:
                try:
                    sender.sendto(data, trace)
                    break
                except OSError:
                    time.sleep(0.01)
        sender.close()
        after = wait_quiet(sock)
        sizes = {name: os.path.getsize(os.path.join(state, name)) for name in os.listdir(state)
                 if name.startswith("lifecycle.db")}
        discovered = len(json.loads(get(sock, "/api/v1/discovered"))["discovered"])
        intact = json.loads(get(sock, "/api/v1/nodes/node00001/events"))["events"] == known
        result["flood"] = {"discovers": args.flood, "discovered_rows": discovered, "store_bytes": sizes,
                           "trace_rows": metric(after, "centra_pxe_trace_events_kept"), "known_trace_intact": intact,
                           "service_up": proc.poll() is None}
        print("flood of %d discovers: %d discovered rows, %d trace rows, store %s bytes, known trace intact: %s, up: %s"
              % (args.flood, discovered, result["flood"]["trace_rows"], sizes, intact, proc.poll() is None), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)
    result["load_after"] = load()
    print("load before %s, after %s" % (result["load_before"], result["load_after"]))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
