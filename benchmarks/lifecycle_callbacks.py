# SPDX-License-Identifier: GPL-3.0-or-later
"""1,000 nodes report `installed` at once to one lifecycle service (issue 12's speed goal).

The real program (roles/pxe_lifecycle/files/centra_pxe_lifecycle.py) runs `serve` on a
Unix socket in a temporary state directory, with a plan of N install nodes built by
the collection's own plan builder and the install/local scripts its renderer writes.
Each simulated installer reads its token from the boot file the service materialized
(as a node reads it from its kernel command line) and POSTs `installed`, all of them
released together from a thread pool. Reported: callbacks per second, latency
p50/p99, failures, and whether every node is `installed` afterwards (nothing lost).

This measures the service itself. Behind nginx the per-address limit_req applies, which
a rack of machines (one address each) does not meet; one address sending 1,000 would.

    python benchmarks/lifecycle_callbacks.py [--nodes 1000] [--clients 64] [--retries 0]
        [--program PATH] [--workers N] [--queue N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from _benchlib import import_collection, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "roles", "pxe_lifecycle", "files", "centra_pxe_lifecycle.py")
SETTINGS = {"menu_timeout": 30, "menu_default": "local", "console": ["ttyS0,115200"], "retry_seconds": 10,
            "title": "centra.pxe"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (a figure the machine's load does not skew)."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot_file_name(mac: str) -> str:
    """The service's boot file of a MAC: <hyphen form>.ipxe (the collection's MAC module)."""
    import_collection()
    from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac  # pylint: disable=import-outside-toplevel
    return format_mac(mac, "hyphen") + ".ipxe"


def prepare(base: str, count: int, service: dict[str, int]) -> list[tuple[str, str]]:
    """Plan, scripts and config in base; returns (node, mac) pairs."""
    import_collection()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
    from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import lifecycle_scripts
    from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

    asset = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
    nodes = {"n%05d" % i: {"groups": ["worker"], "pxe_mac": "52:54:%02x:%02x:%02x:01" % (i >> 16, (i >> 8) & 255, i & 255)}
             for i in range(count)}
    plan = build_plan([{"cidr": "198.18.0.0/15"}], {"worker": {"kernel": asset, "initrd": asset}}, nodes)
    with open(os.path.join(base, "plan.json"), "w", encoding="utf-8") as handle:
        handle.write(dump_plan(plan))
    for kind, files in lifecycle_scripts(plan, "http://198.18.0.1", SETTINGS).items():
        os.makedirs(os.path.join(base, "scripts", kind))
        for name, text in files.items():
            with open(os.path.join(base, "scripts", kind, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    with open(os.path.join(base, "lifecycle.json"), "w", encoding="utf-8") as handle:
        json.dump({"callback_base": "http://198.18.0.1", **service}, handle)
    return [(n["name"], n["macs"][0]) for n in plan["nodes"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64, help="installers sending at the same moment")
    parser.add_argument("--program", default=PROGRAM,
                        help="the lifecycle program to measure (default: this checkout's); e.g. an older version's")
    parser.add_argument("--workers", type=int, help="the service's worker threads (default: its own default)")
    parser.add_argument("--queue", type=int, help="the service's connection queue (default: its own default)")
    parser.add_argument("--retries", type=int, default=0,
                        help="retry a 503/429 or a timeout this many times, after Retry-After (as the installer "
                             "snippets' curl does); default 0: every non-200 counts as a failure")
    args = parser.parse_args()
    program = os.path.abspath(args.program)
    with tempfile.TemporaryDirectory(prefix="centra-bench-lifecycle-") as base:
        service = {key: value for key, value in (("workers", args.workers), ("queue", args.queue)) if value is not None}
        pairs = prepare(base, args.nodes, service)
        common = ["--state-dir", os.path.join(base, "state"), "--plan", os.path.join(base, "plan.json"),
                  "--scripts-dir", os.path.join(base, "scripts"), "--config", os.path.join(base, "lifecycle.json")]
        sock = os.path.join(base, "api.sock")
        # Debian's python, as on the PXE host; the service syncs the plan at start.
        # Its log goes to a file, as to the journal on the host: a pipe nobody reads
        # fills up (64 KiB) and blocks the service's logging, and every worker with it.
        log = open(os.path.join(base, "service.log"), "w+b")  # pylint: disable=consider-using-with
        server = subprocess.Popen(["/usr/bin/python3", program, *common, "serve", "--socket", sock],
                                  stdout=subprocess.DEVNULL, stderr=log)
        try:
            boot_dir = os.path.join(base, "state", "boot", "nodes")
            last = os.path.join(boot_dir, boot_file_name(pairs[-1][1]))
            deadline = time.monotonic() + 300
            while not (os.path.exists(sock) and os.path.exists(last)) and time.monotonic() < deadline:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("the service stopped: %s" % log.read().decode()[-2000:])
                time.sleep(0.2)
            tokens = {}
            for name, mac in pairs:
                with open(os.path.join(boot_dir, boot_file_name(mac)), encoding="utf-8") as handle:
                    tokens[name] = re.search(r"centra\.token=(\S+)", handle.read()).group(1)
            latencies: list[float] = []
            failures: list[str] = []
            retried: list[object] = []
            lock = threading.Lock()
            start_gate = threading.Event()
            work = list(pairs)

            def installer() -> None:
                start_gate.wait()
                while True:
                    with lock:
                        if not work:
                            return
                        name, _mac = work.pop()
                    body = json.dumps({"event": "installed", "message": "benchmark"})
                    began = time.perf_counter()
                    status: object = None
                    for attempt in range(args.retries + 1):
                        wait = 1.0
                        try:
                            conn = UnixConnection(sock)
                            conn.request("POST", "/api/v1/callback/%s" % name, body=body,
                                         headers={"Authorization": "Bearer " + tokens[name],
                                                  "Content-Type": "application/json"})
                            answer = conn.getresponse()
                            status = answer.status
                            wait = float(answer.getheader("Retry-After") or 1)
                            conn.close()
                        except OSError as exc:
                            status = str(exc)
                        if status == 200 or (status not in (503, 429) and isinstance(status, int)):
                            break
                        if attempt < args.retries:
                            with lock:
                                retried.append(status)
                            time.sleep(min(wait, 2 ** attempt))
                    took = time.perf_counter() - began
                    with lock:
                        latencies.append(took)
                        if status != 200:
                            failures.append("%s: %s" % (name, status))

            cpu_before = cpu_seconds(server.pid)
            threads = [threading.Thread(target=installer) for _client in range(args.clients)]
            for thread in threads:
                thread.start()
            began = time.perf_counter()
            start_gate.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            server_cpu = cpu_seconds(server.pid) - cpu_before
            shown = json.loads(subprocess.run(["/usr/bin/python3", program, *common, "show"], capture_output=True,
                                              text=True, check=True).stdout)
            records = shown["nodes"] if isinstance(shown, dict) else shown
            installed = sum(1 for r in records if r["state"] == "installed")
            log_bytes = os.fstat(log.fileno()).st_size
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(json.dumps({"program": program, "nodes": args.nodes, "clients": args.clients, "load": load(), "seconds": round(elapsed, 2),
                      "callbacks_per_second": round(len(latencies) / elapsed, 1), "p50_ms": round(pct(0.50), 1),
                      "p99_ms": round(pct(0.99), 1), "failed": len(failures), "failures": failures[:5],
                      "retried": {k: list(map(str, retried)).count(k) for k in sorted(set(map(str, retried)))},
                      "installed_afterwards": installed, "service_log_bytes": log_bytes,
                      "service_cpu_ms_per_callback": round(server_cpu * 1000 / max(1, len(latencies)), 2)}, indent=1))
    return 0 if not failures and installed == args.nodes else 1


if __name__ == "__main__":
    sys.exit(main())
