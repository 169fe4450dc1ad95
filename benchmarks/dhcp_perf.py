# SPDX-License-Identifier: GPL-3.0-or-later
"""DHCP leases per second: the generated Kea config (10,000 reservations, the PXE
classes) vs the same Kea with a minimal config, vs ISC dhcpd with its generated config.

The configs come from the collection itself: build_plan() over an inventory of N nodes
(benchmarks/inventory_gen.py's nodes: 198.18.0.0/15, three profiles), then
kea_dhcp4_config() / dhcpd_config(); only the interface, the lease file, the control
socket and the log output are changed to fit the bench namespaces. The minimal Kea
config keeps the same interface, lease database, lifetime, subnet, pool and loggers,
and drops the reservations and the client classes.

perfdhcp (package kea-admin) runs in a client namespace and poses as a relay
(giaddr = 198.18.0.2), so the server selects the 198.18.0.0/15 subnet. It plays the
inventory's own MACs (-M), so with the generated config every client hits its
reservation, and it sends option 93 = 0 (BIOS) and the PXE vendor class, so the
classes are evaluated on every packet. The daemons run in the server namespace; all
are stopped by PID. Each configuration runs `--rounds` times, interleaved.

--host-database adds the generated config with pxe_dhcp_kea_host_database (docs/scale.md):
the same reservations as rows of Kea's PostgreSQL schema, written by the collection's own
sync script, in a PostgreSQL of the benchmark's own (initdb in a temporary directory; stopped
by PID). Its CPU time (the server and Kea's connection to it) counts with Kea's. It runs in
the client namespace and serves two configurations: kea-hostdb reads it over its Unix socket,
as a server reads its own database; kea-hostdb-tcp over TCP across the veth, from the
client namespace's address, as a server reads another server's
(pxe_dhcp_kea_host_database_server).
"""

from __future__ import annotations

import argparse
import glob
import ipaddress
import shutil
import subprocess
import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position
from inventory_gen import PROFILES, node_mac  # noqa: E402  pylint: disable=wrong-import-position

bl.import_collection()
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import (  # noqa: E402  pylint: disable=wrong-import-position
    ISC_SETTINGS, KEA_SETTINGS, dhcpd_config, kea_dhcp4_config, kea_host_rows)
from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (  # noqa: E402  pylint: disable=wrong-import-position
    plan_changes, sync_script, wanted_rows)

SUBNET = {"cidr": "198.18.0.0/15", "pool": "198.19.200.1-198.19.255.254"}
LOADERS = {"bios": "undionly.kpxe", "efi32": "", "efi64": "ipxe.efi", "arm32": "", "arm64": ""}
# option 93 = 0 (x86 BIOS) and option 60 as PXE firmware sends them: the classes match on them.
PXE_OPTIONS = ["93,0000", "60," + b"PXEClient:Arch:00000:UNDI:002001".hex()]


def plan_for(nodes: int, asset: str) -> Dict[str, Any]:
    network = ipaddress.IPv4Network(SUBNET["cidr"])
    inventory = {}
    for index in range(nodes):
        inventory["n%05d" % index] = {"groups": ["all", "pxe_nodes", PROFILES[index % len(PROFILES)]],
                                      "pxe_mac": node_mac(index), "pxe_ip": str(network.network_address + 10 + index),
                                      "host_vars": ["pxe_mac", "pxe_ip"]}
    profiles = {p: {"kernel": {"src": asset}, "initrd": {"src": asset}, "cmdline": "panic=-1"} for p in PROFILES}
    return build_plan([SUBNET], profiles, inventory)


def role_settings(keys: Sequence[str]) -> Dict[str, Any]:
    """The DHCP settings as the pxe_dhcp role passes them with its defaults (pxe_dhcp_kea_<key> or pxe_dhcp_<key>)."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(bl.ROOT, "roles", "pxe_dhcp", "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    return {key: defaults.get("pxe_dhcp_kea_" + key, defaults.get("pxe_dhcp_" + key)) for key in keys}


SERVER = {"address": bl.SERVER_ADDRESS, "http_base": "http://%s" % bl.SERVER_ADDRESS, "loaders": LOADERS}


def kea_configs(plan: Dict[str, Any], pair: bl.NamespacePair, work: str) -> Dict[str, Dict[str, Any]]:
    generated = kea_dhcp4_config(plan, SERVER, dict(
        role_settings(KEA_SETTINGS),
        interfaces=[pair.server_if],
        lease_file=os.path.join(work, "kea-leases4.csv"),
        control_socket=os.path.join(work, "kea4-ctrl-socket"),
    ))
    dhcp4 = generated["Dhcp4"]
    minimal = {"Dhcp4": {
        "interfaces-config": {"interfaces": [pair.server_if]},
        "lease-database": dict(dhcp4["lease-database"]),
        "valid-lifetime": dhcp4["valid-lifetime"],
        "subnet4": [{"id": s["id"], "subnet": s["subnet"], "pools": s.get("pools", [])} for s in dhcp4["subnet4"]],
        "loggers": dhcp4["loggers"],
    }}
    assert sum(len(s.get("reservations", [])) for s in dhcp4["subnet4"]) == len(plan["nodes"])
    assert dhcp4["client-classes"], "the generated config has no PXE classes"
    return {"kea-generated": generated, "kea-minimal": minimal}


KEA_SCHEMA = "/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql"


class PrivatePostgres:
    """A PostgreSQL of this benchmark's own, holding Kea's schema and the plan's host rows:
    initdb into a temporary directory (trust), started as the postgres user by setpriv (which
    execs: the PID is the server's) in the client namespace, listening on its Unix socket and
    on the client namespace's address (CLIENT_ADDRESS, trust for SERVER_ADDRESS only), stopped
    by that PID."""

    def __init__(self, plan: Dict[str, Any], server: Dict[str, Any], pair: bl.NamespacePair) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs:
            raise SystemExit("--host-database needs PostgreSQL (Debian's postgresql; scripts/setup.sh installs it)")
        self.bindir = bindirs[-1]
        self.root = tempfile.mkdtemp(prefix="cpxe-bench-pg-")
        shutil.chown(self.root, "postgres", "postgres")
        self.socket_dir = self.root
        data = os.path.join(self.root, "data")
        self._as_postgres([os.path.join(self.bindir, "initdb"), "-D", data, "--auth=trust", "-U", "postgres"])
        with open(os.path.join(data, "pg_hba.conf"), "a", encoding="utf-8") as hba:
            hba.write("host kea postgres %s/32 trust\n" % bl.SERVER_ADDRESS)
        # ip netns exec execs too: the PID stays the server's.
        self.daemon = bl.Daemon(pair.in_client(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                                                os.path.join(self.bindir, "postgres"), "-D", data, "-k",
                                                self.socket_dir, "-c", "listen_addresses=%s" % bl.CLIENT_ADDRESS]),
                                os.path.join(self.root, "postgres.log"))
        try:
            bl.wait_for(lambda: self.psql("postgres", sql="SELECT 1", check=False).returncode == 0, 30, "PostgreSQL")
            self.psql("postgres", sql="CREATE DATABASE kea")
            self.psql("kea", script=KEA_SCHEMA)
            _delete, insert, _removed, _added = plan_changes({}, wanted_rows(kea_host_rows(plan, server)))
            self.rows = len(insert)
            self.psql("kea", stdin=sync_script([], insert))
        except BaseException:
            self.stop()
            raise

    def _as_postgres(self, argv: List[str]) -> None:
        bl.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv], timeout=120)

    def psql(self, database: str, sql: str = "", script: str = "", stdin: str = "", check: bool = True):
        argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir, "-U", "postgres",
                "-d", database] + (["-c", sql] if sql else ["-f", script or "-"])
        done = subprocess.run(argv, input=stdin or None, capture_output=True, text=True, timeout=300, check=False)
        if check and done.returncode != 0:
            raise SystemExit("psql: %s" % (done.stderr or done.stdout)[-2000:])
        return done

    def connection(self, tcp: bool = False) -> Dict[str, Any]:
        if tcp:
            return {"type": "postgresql", "name": "kea", "user": "postgres", "host": bl.CLIENT_ADDRESS, "port": 5432}
        return {"type": "postgresql", "name": "kea", "user": "postgres", "host": self.socket_dir}

    def stop(self) -> None:
        self.daemon.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def host_database_config(plan: Dict[str, Any], pair: bl.NamespacePair, work: str,
                         database: PrivatePostgres, tcp: bool = False) -> Dict[str, Any]:
    """The generated config with pxe_dhcp_kea_host_database, pointed at the benchmark's PostgreSQL
    (over TCP: its reconnect settings kept, as the role writes them)."""
    config = kea_dhcp4_config(plan, SERVER, dict(
        role_settings(KEA_SETTINGS), host_database=True, interfaces=[pair.server_if],
        lease_file=os.path.join(work, "kea-leases4.csv"), control_socket=os.path.join(work, "kea4-ctrl-socket")))
    assert not any(s.get("reservations") for s in config["Dhcp4"]["subnet4"])
    rendered = config["Dhcp4"]["hosts-database"]
    config["Dhcp4"]["hosts-database"] = dict(database.connection(tcp), **{
        k: v for k, v in rendered.items() if k in ("max-reconnect-tries", "reconnect-wait-time", "on-fail")})
    return config


def kea_variants(generated: Dict[str, Any], minimal: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The generated config minus one thing at a time: where the difference to minimal goes."""
    variants = {}
    no_classes = json.loads(json.dumps(generated))
    del no_classes["Dhcp4"]["client-classes"]
    variants["kea-no-classes"] = no_classes
    no_reservations = json.loads(json.dumps(generated))
    for subnet in no_reservations["Dhcp4"]["subnet4"]:
        subnet.pop("reservations", None)
    variants["kea-no-reserv"] = no_reservations
    # Kea 2.2 logs EVAL_RESULT (a class test that matched) at INFO, one line per packet:
    # the same pair with the loggers at WARN shows what that logging costs.
    for name, source in (("kea-gen-warn", generated), ("kea-min-warn", minimal)):
        quiet = json.loads(json.dumps(source))
        for logger in quiet["Dhcp4"]["loggers"]:
            logger["severity"] = "WARN"
        variants[name] = quiet
    return variants


def perfdhcp(pair: bl.NamespacePair, macs_file: str, rate: int, seconds: int, clients: int) -> Dict[str, Any]:
    argv = ["perfdhcp", "-4", "-l", bl.CLIENT_ADDRESS, "-r", str(rate), "-p", str(seconds), "-R", str(clients),
            "-M", macs_file]
    for option in PXE_OPTIONS:
        argv += ["-o", option]
    argv.append(bl.SERVER_ADDRESS)
    done = bl.run(pair.in_client(argv), check=False, timeout=seconds + 60)
    # perfdhcp exits 3 when packets were dropped: that is a result, not an error.
    rate_match = re.search(r"^Rate: ([0-9.]+) 4-way exchanges/second", done.stdout, re.M)
    sent = [int(x) for x in re.findall(r"^sent packets: (\d+)", done.stdout, re.M)]
    received = [int(x) for x in re.findall(r"^received packets: (\d+)", done.stdout, re.M)]
    drops = [int(x) for x in re.findall(r"^drops: (\d+)", done.stdout, re.M)]
    if not rate_match or len(sent) < 2:
        raise SystemExit("perfdhcp gave no rate (exit %d):\n%s\n%s"
                         % (done.returncode, done.stdout[-3000:], done.stderr[-2000:]))
    return {"rate": float(rate_match.group(1)), "discover_sent": sent[0], "offers": received[0],
            "request_sent": sent[1], "acks": received[1], "drops": sum(drops)}


def reserved_addresses_leased(config: Dict[str, Any], plan: Dict[str, Any]) -> Dict[str, int]:
    """How many distinct addresses Kea leased, and how many of them are node reservations
    (proof that the generated run really went through the reservations)."""
    reserved = {n["ip"] for n in plan["nodes"]}
    leased = set()
    lease_file = config["Dhcp4"]["lease-database"]["name"]
    for path in (lease_file + ".2", lease_file):
        if os.path.exists(path):
            with open(path, encoding="ascii") as handle:
                leased.update(line.split(",", 1)[0] for line in handle if line[:1].isdigit())
    return {"addresses_leased": len(leased), "reserved_leased": len(leased & reserved)}


def start_kea(pair: bl.NamespacePair, name: str, config: Dict[str, Any], work: str,
              wrapper: Sequence[str] = (), start_timeout: float = 60) -> bl.Daemon:
    path = os.path.join(work, name + ".json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=1)
    lease_file = config["Dhcp4"]["lease-database"]["name"]
    for leftover in (lease_file, lease_file + ".2"):
        if os.path.exists(leftover):
            os.unlink(leftover)
    env = dict(os.environ, KEA_PIDFILE_DIR=work, KEA_LOCKFILE_DIR=work)
    return bl.start_checked(pair, name, ["kea-dhcp4", "-t", path], [*wrapper, "kea-dhcp4", "-c", path], 67,
                            os.path.join(work, name + ".log"), env=env, timeout=start_timeout)


def instructions_per_lease(pair: bl.NamespacePair, name: str, config: Dict[str, Any], work: str,
                           macs_file: str, rate: int, seconds: int, clients: int) -> Dict[str, Any]:
    """Instructions Kea executes per lease (callgrind), a count that does not depend on
    what else the machine is doing: Kea runs under valgrind with instrumentation off
    until it listens; a warm-up run (5 s) fills the lease file and the caches, then
    callgrind's counters are dumped and zeroed, and only the measured run counts."""
    prefix = os.path.join(work, "callgrind." + name)
    daemon = start_kea(pair, name, config, work, wrapper=["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                                          "--callgrind-out-file=" + prefix], start_timeout=600)
    try:
        bl.run(["callgrind_control", "--instr=on", str(daemon.pid)])
        perfdhcp(pair, macs_file, rate, 5, clients)
        bl.run(["callgrind_control", "--dump", str(daemon.pid)])
        result = perfdhcp(pair, macs_file, rate, seconds, clients)
        bl.run(["callgrind_control", "--dump", str(daemon.pid)])
    finally:
        daemon.stop()
    with open(prefix + ".2", encoding="ascii") as handle:
        totals = [int(line.split()[1]) for line in handle if line.startswith("summary:")]
    if not totals or not result["acks"]:
        raise SystemExit("callgrind counted nothing for %s (%s)" % (name, result))
    result.update(instructions=totals[0], instructions_per_lease=totals[0] / result["acks"])
    return result


def start_dhcpd(pair: bl.NamespacePair, plan: Dict[str, Any], work: str) -> bl.Daemon:
    conf = os.path.join(work, "dhcpd.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(dhcpd_config(plan, SERVER, role_settings(ISC_SETTINGS)))
    leases = os.path.join(work, "dhcpd.leases")
    with open(leases, "w", encoding="utf-8"):
        pass
    check = bl.run(pair.in_server(["dhcpd", "-t", "-q", "-4", "-cf", conf]), check=False)
    if check.returncode != 0:
        raise SystemExit("dhcpd -t refused the generated config:\n%s" % check.stderr[-2000:])
    daemon = bl.Daemon(pair.in_server(["dhcpd", "-f", "-4", "-cf", conf, "-lf", leases, "-pf",
                                       os.path.join(work, "dhcpd.pid"), pair.server_if]),
                       os.path.join(work, "dhcpd.log"))
    try:
        bl.wait_for(lambda: b"Sending on" in open(daemon.log_path, "rb").read() or not daemon.alive(), 60,
                    "dhcpd to start")
        if not daemon.alive():
            raise SystemExit("dhcpd did not start:\n%s" % daemon.tail())
    except BaseException:
        daemon.stop()
        raise
    return daemon


def prepare(args: argparse.Namespace, pair: bl.NamespacePair, work: str):
    """The plan of --nodes nodes, perfdhcp's MAC file (the nodes' MACs) and the Kea configs to run."""
    asset = os.path.join(work, "asset")
    with open(asset, "wb") as handle:
        handle.write(b"x" * 4096)
    started = time.monotonic()
    plan = plan_for(args.nodes, asset)
    print("plan of %d nodes built in %.2f s; load %s" % (args.nodes, time.monotonic() - started, bl.load()),
          file=sys.stderr)
    macs_file = os.path.join(work, "macs.txt")
    with open(macs_file, "w", encoding="ascii") as handle:
        handle.write("\n".join(m for n in plan["nodes"] for m in n["macs"]) + "\n")
    configs = kea_configs(plan, pair, work)
    if args.variants:
        configs.update(kea_variants(configs["kea-generated"], configs["kea-minimal"]))
    return plan, macs_file, configs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10000, help="reservations in the generated config")
    parser.add_argument("--rate", type=int, help="DORA exchanges perfdhcp starts per second (default 10,000; "
                        "20 with --callgrind)")
    parser.add_argument("--seconds", type=int, default=10, help="length of one perfdhcp run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each configuration")
    parser.add_argument("--isc-rate", type=int, default=0, help="perfdhcp rate for dhcpd (default: --rate)")
    parser.add_argument("--no-isc", action="store_true", help="leave ISC dhcpd out")
    parser.add_argument("--variants", action="store_true",
                        help="also run the generated Kea config without its classes, without its reservations, "
                        "and both configs with the loggers at WARN")
    parser.add_argument("--host-database", action="store_true",
                        help="also the generated config with its reservations in Kea's PostgreSQL host database "
                        "(a PostgreSQL of the benchmark's own), read over its Unix socket and over TCP")
    parser.add_argument("--callgrind", action="store_true",
                        help="count Kea's instructions per lease under callgrind instead (perfdhcp at --rate 20, no "
                        "drops): the same count on a busy or an idle machine")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.rate = args.rate or (20 if args.callgrind else 10000)
    if args.callgrind:
        return callgrind_main(args)
    results: Dict[str, List[Dict[str, Any]]] = {}
    database = None
    with tempfile.TemporaryDirectory(prefix="cpxe-bench-dhcp-") as work, bl.NamespacePair("dhcp") as pair:
        plan, macs_file, configs = prepare(args, pair, work)
        if args.host_database:
            database = PrivatePostgres(plan, SERVER, pair)
            configs["kea-hostdb"] = host_database_config(plan, pair, work, database)
            configs["kea-hostdb-tcp"] = host_database_config(plan, pair, work, database, tcp=True)
            print("host database: %d rows" % database.rows, file=sys.stderr, flush=True)
        try:
            run_rounds(args, pair, plan, macs_file, configs, work, database, results)
        finally:
            if database:
                database.stop()
    report(args, results)
    return 0


def run_rounds(args: argparse.Namespace, pair: bl.NamespacePair, plan: Dict[str, Any], macs_file: str,
               configs: Dict[str, Dict[str, Any]], work: str, database: Any,
               results: Dict[str, List[Dict[str, Any]]]) -> None:
    """Every configuration --rounds times, interleaved (one order, then the reverse)."""
    order = list(configs) + ([] if args.no_isc else ["isc-generated"])
    for round_no in range(args.rounds):
        for name in (order if round_no % 2 == 0 else list(reversed(order))):
            daemon = start_dhcpd(pair, plan, work) if name == "isc-generated" else \
                start_kea(pair, name, configs[name], work)
            # With the host database, PostgreSQL's CPU time (server and Kea's backend) counts too.
            with_database = database is not None and name.startswith("kea-hostdb")
            try:
                rate = (args.isc_rate or args.rate) if name == "isc-generated" else args.rate
                cpu_before = daemon.cpu_seconds() + (database.daemon.tree_cpu_seconds() if with_database else 0.0)
                result = perfdhcp(pair, macs_file, rate, args.seconds, args.nodes)
                cpu = daemon.cpu_seconds() + (database.daemon.tree_cpu_seconds() if with_database else 0.0) - cpu_before
                result.update(load=bl.load(), offered_rate=rate, alive_after=daemon.alive(), cpu_seconds=cpu,
                              leases_per_cpu_s=result["acks"] / cpu if cpu else 0.0)
            finally:
                daemon.stop()
            if name != "isc-generated":
                result.update(reserved_addresses_leased(configs[name], plan))
            results.setdefault(name, []).append(result)
            line = ("%-14s round %d: %8.1f leases/s, %8.1f per CPU-s (%d ACKs, %d drops, "
                    "reserved/leased addresses %s/%s), load %s") % (
                name, round_no + 1, result["rate"], result["leases_per_cpu_s"], result["acks"], result["drops"],
                result.get("reserved_leased", "-"), result.get("addresses_leased", "-"), result["load"])
            print(line, file=sys.stderr, flush=True)


def report(args: argparse.Namespace, results: Dict[str, List[Dict[str, Any]]]) -> None:
    summary = {name: bl.median([r["rate"] for r in runs]) for name, runs in results.items()}
    per_cpu = {name: bl.median([r["leases_per_cpu_s"] for r in runs]) for name, runs in results.items()}
    print("%-14s %12s %16s %s" % ("config", "leases/s", "leases/CPU-s", "(medians of %d runs)" % args.rounds))
    for name, value in summary.items():
        print("%-14s %12.1f %16.1f" % (name, value, per_cpu[name]))
    ratio = summary["kea-generated"] / summary["kea-minimal"] if summary["kea-minimal"] else 0.0
    cpu_ratio = per_cpu["kea-generated"] / per_cpu["kea-minimal"] if per_cpu["kea-minimal"] else 0.0
    print("kea generated / minimal: %.3f in leases/s, %.3f in leases per CPU-second (goal >= 0.9)" % (ratio, cpu_ratio))
    if "kea-hostdb" in summary and summary["kea-generated"]:
        print("kea host database / generated (reservations in the file): %.3f in leases/s, %.3f per CPU-second" % (
            summary["kea-hostdb"] / summary["kea-generated"], per_cpu["kea-hostdb"] / per_cpu["kea-generated"]))
    if "kea-hostdb-tcp" in summary and summary["kea-hostdb"]:
        print("kea host database over TCP / over the Unix socket: %.3f in leases/s, %.3f per CPU-second" % (
            summary["kea-hostdb-tcp"] / summary["kea-hostdb"], per_cpu["kea-hostdb-tcp"] / per_cpu["kea-hostdb"]))
    if "isc-generated" in summary and summary["isc-generated"]:
        print("kea generated / isc generated: %.2f in leases/s, %.2f per CPU-second" % (
            summary["kea-generated"] / summary["isc-generated"], per_cpu["kea-generated"] / per_cpu["isc-generated"]))
    print("date %s, load %s" % (bl.stamp(), bl.load()))
    bl.write_json(args.json, {"runs": results, "median": summary, "ratio_generated_minimal": ratio,
                              "per_cpu_second": per_cpu, "cpu_ratio_generated_minimal": cpu_ratio,
                              "nodes": args.nodes, "date": bl.stamp()})


def callgrind_main(args: argparse.Namespace) -> int:
    rate = args.rate
    results: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cpxe-bench-dhcp-") as work, bl.NamespacePair("dhcp") as pair:
        _plan, macs_file, configs = prepare(args, pair, work)
        for name, config in configs.items():
            result = instructions_per_lease(pair, name, config, work, macs_file, rate, args.seconds, args.nodes)
            results[name] = result
            print("%-14s %10.0f instructions per lease (%d ACKs, %d drops), load %s"
                  % (name, result["instructions_per_lease"], result["acks"], result["drops"], bl.load()),
                  file=sys.stderr, flush=True)
    minimal = results["kea-minimal"]["instructions_per_lease"]
    print("%-14s %22s %s" % ("config", "instructions/lease", "minimal / config (= leases/s ratio on a free CPU)"))
    for name, result in results.items():
        print("%-14s %22.0f %.3f" % (name, result["instructions_per_lease"], minimal / result["instructions_per_lease"]))
    ratio = minimal / results["kea-generated"]["instructions_per_lease"]
    print("kea generated / minimal: %.3f by instructions per lease (goal >= 0.9)" % ratio)
    print("date %s, load %s" % (bl.stamp(), bl.load()))
    bl.write_json(args.json, {"callgrind": results, "ratio_generated_minimal": ratio, "nodes": args.nodes,
                              "rate": rate, "seconds": args.seconds, "date": bl.stamp()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
