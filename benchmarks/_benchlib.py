# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks share: load average, the collection on sys.path, a pair of
network namespaces joined by a veth, processes started and stopped by PID, results.

Everything here uses lab addresses only (198.18.0.0/15, RFC 2544) on namespaces the
benchmark creates and removes itself; nothing routes out of them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE_PREFIX = "cpxe-bench-"
SERVER_ADDRESS = "198.18.0.1"
CLIENT_ADDRESS = "198.18.0.2"
PREFIX_LENGTH = 15


def collections_path() -> str:
    """The directory holding ansible_collections/centra/pxe: scripts/setup.sh's link, or the
    tree this checkout already sits in."""
    parent = os.path.dirname(os.path.dirname(ROOT))
    if os.path.basename(parent) == "ansible_collections":
        return os.path.dirname(parent)
    base = os.path.join(ROOT, ".ansible", "collections")
    if not os.path.isdir(os.path.join(base, "ansible_collections", "centra", "pxe")):
        sys.exit("benchmarks: %s has no centra.pxe: run bash scripts/setup.sh first" % base)
    return base


def bench_collections(checkout: str) -> str:
    """A directory holding ansible_collections/centra/pxe -> checkout (this one: collections_path()),
    for the benchmarks that compare another checkout (--against DIR) with this one."""
    if os.path.realpath(checkout) == os.path.realpath(ROOT):
        return collections_path()
    base = tempfile.mkdtemp(prefix="centra-pxe-against-")
    os.makedirs(os.path.join(base, "ansible_collections", "centra"))
    os.symlink(os.path.abspath(checkout), os.path.join(base, "ansible_collections", "centra", "pxe"))
    return base


def checkout_arguments(description: str, dir_help: str) -> Tuple[argparse.Namespace, List[Tuple[str, str]]]:
    """The command line of the benchmarks that run this checkout against another one
    (--nodes, --rounds, --against, --dir, --json), and the checkouts: [("this", ROOT)],
    then ("against", DIR) if given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--nodes", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="DIR", help="another checkout of the collection to compare with")
    parser.add_argument("--dir", default="/var/tmp", help=dir_help)
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.nodes <= 200000 or not 1 <= args.rounds <= 10:
        parser.error("--nodes 1 to 200,000 and --rounds 1 to 10")
    checkouts = [("this", ROOT)] + ([("against", os.path.abspath(args.against))] if args.against else [])
    return args, checkouts


def first_and_rerun_medians(runs: Dict[str, List[dict]], json_path: Optional[str], header: dict) -> dict:
    """Print the medians of the "first" and "rerun" runs of each checkout ("this", and
    "against" when another checkout ran), their this/against ratios, and write everything to
    json_path (if set) under `header`. Each run: {"first": {"seconds", "cpu_s"}, "rerun": ...}."""
    medians = {name: {phase: {key: statistics.median(r[phase][key] for r in results) for key in ("seconds", "cpu_s")}
                      for phase in ("first", "rerun")} for name, results in runs.items()}
    for name, med in medians.items():
        print("median %-8s first %6.1f s (CPU %5.1f s)  rerun %6.1f s (CPU %5.1f s)" % (
            name, med["first"]["seconds"], med["first"]["cpu_s"], med["rerun"]["seconds"], med["rerun"]["cpu_s"]))
    if "against" in medians:
        for phase in ("first", "rerun"):
            print("this/against, %s: time %.2f, CPU %.2f" % (
                phase, medians["this"][phase]["seconds"] / medians["against"][phase]["seconds"],
                medians["this"][phase]["cpu_s"] / medians["against"][phase]["cpu_s"]))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(dict(header, runs=runs, medians=medians), handle, indent=2)
    return medians


def import_collection() -> None:
    """Make `ansible_collections.centra.pxe` importable (the renderers, the plan)."""
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)


def load() -> str:
    """The 1/5/15-minute load averages, as /proc/loadavg has them."""
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def run(argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kwargs)


class NamespacePair:
    """Two network namespaces, server and client, joined by one veth (MTU 1500).

    server holds SERVER_ADDRESS/15 on `<tag>s0`, client CLIENT_ADDRESS/15 on `<tag>c0`.
    No default route, no forwarding: the pair reaches nothing but itself.
    """

    def __init__(self, tag: str) -> None:
        self.server = NAMESPACE_PREFIX + tag + "-s"
        self.client = NAMESPACE_PREFIX + tag + "-c"
        self.server_if = "cpxb" + tag[:6] + "s0"
        self.client_if = "cpxb" + tag[:6] + "c0"

    def __enter__(self) -> "NamespacePair":
        self.remove()
        run(["ip", "netns", "add", self.server])
        run(["ip", "netns", "add", self.client])
        run(["ip", "link", "add", self.server_if, "netns", self.server, "type", "veth",
             "peer", "name", self.client_if, "netns", self.client])
        for namespace, interface, address in ((self.server, self.server_if, SERVER_ADDRESS),
                                              (self.client, self.client_if, CLIENT_ADDRESS)):
            run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            run(["ip", "-n", namespace, "addr", "add", "%s/%d" % (address, PREFIX_LENGTH), "dev", interface])
            run(["ip", "-n", namespace, "link", "set", interface, "up"])
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for namespace in (self.server, self.client):
            run(["ip", "netns", "delete", namespace], check=False)

    def in_server(self, argv: Sequence[str]) -> List[str]:
        return ["ip", "netns", "exec", self.server, *argv]

    def in_client(self, argv: Sequence[str]) -> List[str]:
        return ["ip", "netns", "exec", self.client, *argv]


def _cpu_seconds(pid: int) -> float:
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:  # a child that ended in between
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A process this benchmark started; stopped by its own PID, never by name."""

    def __init__(self, argv: Sequence[str], log_path: str, env: Optional[Dict[str, str]] = None) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(list(argv), stdout=self.log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                        env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (all its threads)."""
        return _cpu_seconds(self.pid)

    def tree_cpu_seconds(self) -> float:
        """cpu_seconds() of the process and of its children that are alive (nginx's workers)."""
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid), encoding="ascii") as handle:
                children = [int(pid) for pid in handle.read().split()]
        except OSError:
            children = []
        return sum(_cpu_seconds(pid) for pid in [self.pid, *children])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        with open(self.log_path, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SystemExit("timed out waiting for %s" % what)


def start_checked(pair: NamespacePair, name: str, check_argv: Sequence[str], run_argv: Sequence[str], port: int,
                  log_path: str, env: Optional[Dict[str, str]] = None, timeout: float = 60.0) -> Daemon:
    """A DHCP daemon in the server namespace: its configuration checked first by its own
    checker (`check_argv`), then started (`run_argv`); returns once it listens on UDP
    `port` (ss names its PID: the daemons log their start at INFO, the benches run at
    WARN). Exits with the checker's or the daemon's words otherwise, the daemon stopped."""
    check = run(pair.in_server(check_argv), check=False)
    if check.returncode != 0:
        raise SystemExit("%s refused the %s configuration:\n%s%s"
                         % (check_argv[0], name, check.stdout[-2000:], check.stderr[-2000:]))
    daemon = Daemon(pair.in_server(run_argv), log_path, env=env)

    def listening() -> bool:
        sockets = run(pair.in_server(["ss", "-Hulnp", "sport", "=", ":%d" % port]), check=False).stdout
        return "pid=%d," % daemon.pid in sockets
    try:
        wait_for(lambda: not daemon.alive() or listening(), timeout, "%s to start" % name, interval=0.3)
        if not daemon.alive():
            raise SystemExit("%s did not start:\n%s" % (name, daemon.tail()))
    except BaseException:
        daemon.stop()
        raise
    return daemon


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def write_json(path: Optional[str], data) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
