# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot storm, the full path (issue 15; tracing cost, issue 13): N simulated machines
power on within one second against a real converged lab PXE host and each does what
firmware and iPXE do, from its own address: DHCP DISCOVER/REQUEST with option 93, the
TFTP loader (blksize negotiated), DHCP again as iPXE, HTTP boot.ipxe, its node script,
the profile's kernel (10 MB) and initrd (60 MB), and the installer's `started` callback.

    CENTRA_LAB_NAME=st .venv/bin/python benchmarks/boot_storm.py \
        --sizes 50,200,1000 --trace-size 200 --json benchmarks/results/storm.json

1. `lab.py up`, then site.yml with an inventory of every machine the run will boot
   (distinct MACs, BIOS and UEFI, two in five with a fixed `pxe_ip`, the others from
   the pool of 198.18.0.0/15; three profiles whose assets are generated files of
   10,000,000 and 60,000,000 bytes), the lab's subnet first so the server finds its
   interface. Tracing on (the roles' defaults).
2. The storm's addresses: the lab namespace takes all of 198.18.0.0/15 as local
   (`ip route add local ... dev lo`), the PXE host routes 198.18.0.0/15 back through
   the lab bridge (192.0.2.1). DHCP goes through a relay address (giaddr 198.18.0.1,
   as perfdhcp does); every machine then binds the address it leased. Pings to those
   addresses are dropped (as a machine in PXE firmware answers none: dhcpd pings an
   address before it offers it). Nothing leaves the lab namespace and the container.
3. Per storm: the link bound (a raw bulk TCP transfer, sendfile() of the initrd on the
   PXE host to a receiver in the lab namespace over the same veth, several streams,
   before and after the storm; the faster counts), each unit's cgroup CPU
   (`cpu.stat` usage_usec inside the container) before and after, the storm itself
   (benchmarks/_storm_client.py in the lab namespace), the trace counters of /metrics,
   and with tracing on whether each machine's trace holds every step. The client
   captures the DHCP messages (and with --capture-tftp the TFTP packets) on the lab
   bridge with the kernel's timestamps: the server's own part of each exchange.
   --link-rate shapes the PXE host's side of the veth to a NIC's rate (`tc`, HTB), so
   the link, not the copy rate of the 2 cores the client shares, is the bound.
4. Sizes (`--sizes`), each with machines of their own; then the tracing cost
   (`--trace-size`): the same storm with tracing on, then, after a converge with
   pxe_dhcp_trace, pxe_tftp_trace, pxe_http_trace and pxe_lifecycle_trace false, off.
5. `lab.py down` in a finally (unless --keep-lab).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position
import _storm_wire as wire  # noqa: E402  pylint: disable=wrong-import-position
import scale  # noqa: E402  pylint: disable=wrong-import-position
from labkit.common import BRIDGE, BRIDGE_ADDRESS, NETNS  # noqa: E402  pylint: disable=wrong-import-position
from labkit.rootfs import DEFAULT_APT_PACKAGES  # noqa: E402  pylint: disable=wrong-import-position

PROFILES = ("control_plane", "worker", "all_in_one")
KERNEL_BYTES, INITRD_BYTES = 10_000_000, 60_000_000
ASSETS = "/var/tmp/cpxe-storm-assets"
CLIENT = os.path.join(bl.ROOT, "benchmarks", "_storm_client.py")
LINK_PORT = 9999
LINK_RATE = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?[kmg]?bit$")
TRACE_VARS = ("pxe_dhcp_trace", "pxe_tftp_trace", "pxe_http_trace", "pxe_lifecycle_trace")
# Every step of a boot as the trace names it (docs/status.md), and the installer's event.
TRACE_KINDS = ("dhcp_ack", "loader", "entry_script", "install_script", "kernel", "initrd", "lifecycle_started")
UNITS = ("tftpd-hpa", "nginx", "centra-pxe-lifecycle", "centra-pxe-trace-journal", "centra-pxe-health",
         "systemd-journald", "ssh")  # ssh: this benchmark's own readings (not counted in the total)


def log(message: str) -> None:
    print("boot_storm: %s (load %s)" % (message, bl.load()), file=sys.stderr, flush=True)


def make_assets() -> Dict[str, str]:
    """The kernel and initrd every profile boots: random bytes (nothing compresses them), made once."""
    os.makedirs(ASSETS, exist_ok=True)
    paths = {}
    for name, size in (("vmlinuz", KERNEL_BYTES), ("initrd", INITRD_BYTES)):
        path = os.path.join(ASSETS, name)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            rng = random.Random(name)
            with open(path + ".tmp", "wb") as handle:
                left = size
                while left:
                    chunk = min(left, 1 << 20)
                    handle.write(rng.randbytes(chunk))
                    left -= chunk
            os.replace(path + ".tmp", path)
        paths[name] = path
    return paths


def write_inventory(path: str, machines: Sequence[wire.Machine], assets: Dict[str, str], trace: bool,
                    backend: str, server_vars: Sequence[str] = ()) -> str:
    lines = ["all:", "  vars:", "    pxe_subnets:",
             "      - " + scale.LAB_SUBNET,
             "      - cidr: %s" % wire.NODE_NETWORK,
             "        pool: %s" % wire.POOL,
             "    pxe_profiles:"]
    for profile in PROFILES:
        lines.append("      %s: {kernel: {src: %s}, initrd: {src: %s}, cmdline: \"panic=-1\"}"
                     % (profile, assets["vmlinuz"], assets["initrd"]))
    lines += ["    %s" % line for line in scale.LAB_VARS]
    # The server's variables in its group: the plan refuses pxe_lifecycle_* under `all`.
    lines += ["  children:", "    pxe_servers:", "      vars:", "        pxe_dhcp_backend: %s" % backend]
    lines += ["        %s: %s" % (name, "true" if trace else "false") for name in TRACE_VARS]
    lines += ["        %s: %s" % tuple(item.split("=", 1)) for item in server_vars]
    lines += ["    pxe_nodes:", "      children:"]
    for profile in PROFILES:
        hosts = [m for m in machines if m.profile == profile]
        lines.append("        %s:" % profile)
        lines.append("          hosts:" + ("" if hosts else " {}"))
        for m in hosts:
            fixed = ", pxe_ip: %s" % m.fixed_ip if m.fixed_ip else ""
            lines.append("            %s: {pxe_mac: \"%s\"%s}" % (m.name, m.mac, fixed))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def in_lab(argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", NETNS, *argv], capture_output=True, text=True, check=False,
                          **kwargs)


# A machine in PXE firmware answers no ping; the lab namespace, which holds every storm
# address, would answer for all of them, and a server that pings an address before it
# offers it (dhcpd's ping-check, dnsmasq) would find the whole pool in use.
NO_PING = """table inet centra_storm
delete table inet centra_storm
table inet centra_storm {
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr %s icmp type echo-request drop
    }
}
""" % wire.NODE_NETWORK


def shaping(rate: Optional[str]) -> str:
    """The PXE host's egress queue on the lab link: none (the veth moves bytes as fast as
    the 2 cores copy them), or a NIC's line rate. HTB at `rate` (this kernel has HTB, TBF
    and FIFO only); UDP (DHCP, TFTP) in a class of its own ahead of TCP, as the fq_codel
    of Debian's default would serve a sparse flow before a bulk one, so a TFTP ACK's answer
    does not wait behind a queue of initrd segments."""
    if not rate:
        return "tc qdisc del dev host0 root 2>/dev/null || true"
    return "; ".join([
        "tc qdisc del dev host0 root 2>/dev/null || true",
        "set -e",
        "tc qdisc add dev host0 root handle 1: htb default 20",
        "tc class add dev host0 parent 1: classid 1:1 htb rate {r} ceil {r} burst 4mb cburst 4mb quantum 200000",
        "tc class add dev host0 parent 1:1 classid 1:10 htb rate 1gbit ceil {r} burst 1mb cburst 1mb "
        "quantum 200000 prio 0",
        "tc class add dev host0 parent 1:1 classid 1:20 htb rate 1gbit ceil {r} burst 4mb cburst 4mb "
        "quantum 200000 prio 1",
        "tc filter add dev host0 parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:10",
    ]).format(r=rate)


def link_rate(value: str) -> str:
    """--link-rate: a tc rate such as 10gbit, checked before the lab comes up."""
    if not LINK_RATE.match(value):
        raise argparse.ArgumentTypeError("%r is not a tc rate such as 10gbit" % value)
    return value


def storm_network(rate: Optional[str] = None) -> None:
    """The storm's addresses (module docstring, step 2) and the link's rate; idempotent."""
    done = in_lab(["ip", "route", "replace", "local", str(wire.NODE_NETWORK), "dev", "lo"])
    if done.returncode:
        raise SystemExit("lab namespace route: %s" % done.stderr)
    done = in_lab(["nft", "-f", "-"], input=NO_PING)
    if done.returncode:
        raise SystemExit("lab namespace nft: %s" % done.stderr)
    scale.on_host("ip route replace %s via %s dev host0" % (wire.NODE_NETWORK, BRIDGE_ADDRESS))
    scale.on_host(shaping(rate))


SENDER = r"""
import socket, sys, threading, time
address, port, streams, seconds, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
def send():
    with socket.create_connection((address, port)) as sock, open(path, "rb") as f:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sock.sendfile(f, 0)
threads = [threading.Thread(target=send) for _ in range(streams)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def measure_link(streams: int, seconds: float) -> Dict[str, Any]:
    """Bytes/s of a raw bulk TCP transfer from the PXE host to the lab namespace (the
    initrd, sendfile(), `streams` connections, `seconds` long), over the storm's route."""
    receiver = subprocess.Popen(["ip", "netns", "exec", NETNS, sys.executable, CLIENT, "link", wire.RELAY_ADDRESS,
                                 str(LINK_PORT), str(streams)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = receiver.stderr.readline()
        if "ready" not in line:
            raise SystemExit("link receiver: %s" % line)
        code = base64.b64encode(SENDER.encode()).decode()
        scale.on_host("python3 -c 'import base64; exec(base64.b64decode(\"%s\"))' %s %d %d %s %s"
                      % (code, wire.RELAY_ADDRESS, LINK_PORT, streams, seconds,
                         "/srv/centra-pxe/http/profiles/worker/initrd"), timeout=seconds + 120)
        out, err = receiver.communicate(timeout=120)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    if receiver.returncode:
        raise SystemExit("link receiver failed: %s" % err)
    return json.loads(out)


def read_cpu(units: Sequence[str]) -> Dict[str, float]:
    """CPU-seconds each unit's cgroup has used (inside the container; the lab's hosts
    mount cgroup v2 at /sys/fs/cgroup/unified beside the v1 controllers), and all of
    system.slice (every service of the host)."""
    script = "; ".join(
        ["c=/sys/fs/cgroup/unified; [ -d $c/system.slice ] || c=/sys/fs/cgroup"]
        + ["f=$c/system.slice/%s.service/cpu.stat; [ -f $f ] && echo %s $(sed -n 's/^usage_usec //p' $f)"
           % (unit, unit) for unit in units]
        + ["echo system.slice $(sed -n 's/^usage_usec //p' $c/system.slice/cpu.stat)", "true"])
    return wire.parse_cpu_stat(scale.on_host(script))


def read_schedstat(unit: str) -> Dict[str, float]:
    """The DHCP server's time on a CPU and waiting for one (run queue), in seconds, summed
    over its threads (/proc/<pid>/task/*/schedstat), and the host's CPU time in softirq
    (/proc/stat): what a packet's wait is made of when the server's CPU share is small."""
    out = scale.on_host(
        "pid=$(systemctl show -p MainPID --value %s); for t in /proc/$pid/task/*/schedstat; do cat $t; done "
        "2>/dev/null | awk '{r+=$1; w+=$2} END {print \"run\", r/1e9; print \"wait\", w/1e9}'; "
        "awk '/^cpu / {print \"softirq\", $8/100}' /proc/stat" % unit)
    found: Dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                found[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return found


def read_trace_counters() -> Dict[str, float]:
    """The trace counters of /metrics (summed over their labels); {} when none answer."""
    out = scale.on_host("python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], "
                        "timeout=10).read().decode())' http://%s/metrics || true" % scale.server_address())
    sums: Dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("centra_pxe_trace_") or line.startswith("centra_pxe_installs_started_total"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            try:
                sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return sums


TRACE_CHECK = r"""
import json, sys, urllib.request
base, since = sys.argv[1], float(sys.argv[2])
out = {}
for mac in sys.stdin.read().split():
    try:
        with urllib.request.urlopen("%s/api/v1/nodes/%s/events" % (base, mac), timeout=30) as r:
            events = json.load(r)["events"]
    except Exception as e:
        out[mac] = ["error:%s" % type(e).__name__]
        continue
    kinds = []
    for e in events:
        if float(e.get("ts") or 0) < since:
            continue
        kinds.append("lifecycle_%s" % e.get("event") if e.get("src") == "lifecycle" else e.get("kind"))
    out[mac] = kinds
print(json.dumps(out))
"""


def check_traces(macs: Sequence[str], since: float) -> Dict[str, Any]:
    """Each machine's trace since the storm began, read from the API on the PXE host."""
    code = base64.b64encode(TRACE_CHECK.encode()).decode()
    command = ("printf '%s' | python3 -c 'import base64; exec(base64.b64decode(\"%s\"))' http://%s %f"
               % (" ".join(macs), code, scale.server_address(), since - 1.0))
    kinds_of = json.loads(scale.on_host(command, timeout=600))
    incomplete: Dict[str, int] = {}
    complete = 0
    gaps: Dict[str, List[str]] = {}
    for mac, kinds in kinds_of.items():
        ok, missing = wire.trace_complete(kinds, TRACE_KINDS)
        complete += ok
        if missing:
            gaps[mac] = missing
        for kind in missing:
            incomplete[kind] = incomplete.get(kind, 0) + 1
    sample = next(iter(kinds_of.values()), [])
    return {"machines": len(kinds_of), "complete": complete, "missing": incomplete, "sample": sample, "gaps": gaps}


def settle(trace: bool) -> None:
    """Let the server finish what the storm left queued (trace events) before CPU is read."""
    if not trace:
        time.sleep(3)
        return
    last = None
    for _poll in range(30):
        now = read_trace_counters().get("centra_pxe_trace_events_stored_total")
        if now is not None and now == last:
            return
        last = now
        time.sleep(1)


def run_storm(work: str, label: str, machines: Sequence[wire.Machine], units: Sequence[str], trace: bool,
              args: argparse.Namespace) -> Dict[str, Any]:
    storm_network(args.link_rate)

    def link_now() -> Dict[str, Any]:  # --dhcp-only moves no bytes: no bound
        return {"bytes_per_s": 0.0} if args.dhcp_only else measure_link(args.link_streams, args.link_seconds)

    link_before = link_now()
    spec = {"server": scale.server_address(), "relay": wire.RELAY_ADDRESS, "timeout": args.timeout,
            "seed": len(machines), "spread": 1.0, "capture": BRIDGE, "capture_tftp": args.capture_tftp,
            "dhcp_only": args.dhcp_only, "processes": args.client_processes,
            "machines": [{"mac": m.mac, "arch": m.arch, "fixed_ip": m.fixed_ip} for m in machines]}
    spec_path = os.path.join(work, "spec-%s.json" % label)
    with open(spec_path, "w", encoding="utf-8") as handle:
        json.dump(spec, handle)
    counters_before = read_trace_counters()
    cpu_before = read_cpu(units)
    sched_before = read_schedstat(units[0])
    load_before = bl.load()
    log("%s: %d machines released" % (label, len(machines)))
    done = subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, CLIENT, "storm", spec_path],
                          capture_output=True, text=True, check=False, timeout=args.timeout + 120)
    load_after = bl.load()
    if done.returncode:
        raise SystemExit("storm client failed (exit %d): %s" % (done.returncode, done.stderr[-3000:]))
    outcome = json.loads(done.stdout)
    sched_after = read_schedstat(units[0])
    settle(trace)
    cpu_after = read_cpu(units)
    counters_after = read_trace_counters()
    link_after = link_now()
    rate = max(link_before["bytes_per_s"], link_after["bytes_per_s"])
    cpu = wire.cpu_delta(cpu_before, cpu_after)
    # Every service of the host but the benchmark's own ssh sessions (its readings).
    cpu["all services"] = cpu.pop("system.slice", 0.0) - cpu.get("ssh", 0.0)
    summary = wire.summarize(outcome["results"], rate, cpu)
    counters = {name: counters_after.get(name, 0.0) - counters_before.get(name, 0.0) for name in counters_after}
    makespan = summary["makespan_s"] or 0.0
    summary.update(label=label, trace=trace, link_rate=args.link_rate or "veth (unshaped)",
                   load_before=load_before, load_after=load_after,
                   link_mb_s_before_after=[round(link_before["bytes_per_s"] / 1e6), round(link_after["bytes_per_s"] / 1e6)],
                   trace_counters=counters, stray_dhcp=outcome.get("stray_dhcp"),
                   dhcp_server_sched_s={key: round(sched_after[key] - sched_before[key], 4)
                                        for key in sched_after if key in sched_before},
                   client_processes=outcome.get("processes"), captured=outcome.get("captured"),
                   capture_dropped=outcome.get("capture_dropped"),
                   trace_events_per_s=(counters.get("centra_pxe_trace_events_received_total", 0.0) / makespan
                                       if makespan else None),
                   loaders=sorted({(r.get("arch"), r.get("loader")) for r in outcome["results"] if r.get("loader")}),
                   sample_errors=[r.get("error") for r in outcome["results"] if not r.get("ok")][:5],
                   wrong_sizes=sum(1 for r in outcome["results"] if r.get("ok") and (
                       r.get("kernel_bytes") != KERNEL_BYTES or r.get("initrd_bytes") != INITRD_BYTES)))
    if trace:
        traces = check_traces([m.mac for m in machines], outcome["t0_epoch"])
        booted = {r["mac"] for r in outcome["results"] if r.get("ok")}
        fixed = {m.mac for m in machines if m.fixed_ip}
        # Booted machines whose trace lacks a step, by how they got their address.
        traces["gaps_of_booted"] = {
            "fixed": sum(1 for mac in traces["gaps"] if mac in booted and mac in fixed),
            "pool": sum(1 for mac in traces["gaps"] if mac in booted and mac not in fixed)}
        summary["traces"] = traces
    with open(os.path.join(work, "results-%s.json" % label), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle)
    log("%s: %d/%d completed, %d failed, makespan %.1f s, bound %s s" % (
        label, summary["completed"], summary["machines"], summary["failed"], makespan,
        "%.1f" % summary["link_bound_s"] if summary["link_bound_s"] else "-"))
    return summary


DNSMASQ_UNIT = "centra-storm-dnsmasq"
DNSMASQ_CONF = "/etc/centra-storm-dnsmasq.conf"


def dnsmasq_conf(machines: Sequence[wire.Machine], server: str, tftp_root: str) -> str:
    """dnsmasq written by hand for the boot policy the roles generate (docs: DESIGN's
    table): iPXE (user class iPXE or option 175) gets the entry script's URL; option 93
    7 or 9 gets ipxe.efi, 0 or none undionly.kpxe, by TFTP from this server; fixed
    addresses as dhcp-host lines, the others from the same pool. No DNS, no logging of
    each packet (as the roles' Kea logs at INFO: one line per lease)."""
    # no-ping: as Kea, no ping before an offer (the storm's addresses answer none, see
    # NO_PING; dhcpd keeps its default ping-check and pays its 1 s wait).
    lines = ["port=0", "interface=host0", "bind-interfaces", "dhcp-authoritative", "no-resolv", "no-hosts", "no-ping",
             "dhcp-leasefile=/var/lib/misc/centra-storm-dnsmasq.leases",
             "dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,1h",
             "dhcp-range=%s,%s,1h" % (wire.POOL.replace("-", ","), wire.NODE_NETWORK.netmask),
             "dhcp-userclass=set:ipxe,iPXE", "dhcp-match=set:ipxe,175",
             "dhcp-match=set:efi64,option:client-arch,7", "dhcp-match=set:efi64,option:client-arch,9",
             "dhcp-boot=tag:ipxe,http://%s/boot.ipxe" % server,
             "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,%s" % server,
             "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,%s" % server,
             "enable-tftp", "tftp-root=%s" % tftp_root]
    lines += ["dhcp-host=%s,%s" % (m.mac, m.fixed_ip) for m in machines if m.fixed_ip]
    return "\n".join(lines) + "\n"


def dnsmasq_start(machines: Sequence[wire.Machine], dhcp_unit: str) -> None:
    """Stop the roles' DHCP server and tftpd-hpa, start dnsmasq as a transient unit (its
    own cgroup: its CPU is read like the others')."""
    conf = base64.b64encode(dnsmasq_conf(machines, scale.server_address(), "/srv/centra-pxe/tftp").encode()).decode()
    scale.on_host("set -e; dpkg -s dnsmasq-base >/dev/null 2>&1 || apt-get install -y -q dnsmasq-base >/dev/null; "
                  "echo %s | base64 -d > %s; dnsmasq --test -C %s; systemctl stop %s tftpd-hpa; "
                  "systemctl stop %s 2>/dev/null || true; systemctl reset-failed %s 2>/dev/null || true; "
                  "systemd-run --unit=%s -p Type=simple /usr/sbin/dnsmasq -k -u root -C %s; sleep 1; "
                  "systemctl is-active %s" % (conf, DNSMASQ_CONF, DNSMASQ_CONF, dhcp_unit, DNSMASQ_UNIT, DNSMASQ_UNIT,
                                              DNSMASQ_UNIT, DNSMASQ_CONF, DNSMASQ_UNIT), timeout=300)


def dnsmasq_stop(dhcp_unit: str) -> None:
    """Put the lab back as it was: dnsmasq gone, the roles' DHCP server and tftpd-hpa running."""
    scale.on_host("systemctl stop %s || true; systemctl start %s tftpd-hpa; systemctl is-active %s tftpd-hpa"
                  % (DNSMASQ_UNIT, dhcp_unit, dhcp_unit))


def converge(work: str, inventory: str, label: str) -> Dict[str, Any]:
    log("site.yml (%s)" % label)
    result = scale.playbook(os.path.join(bl.ROOT, "site.yml"), inventory, os.path.join(work, "profile-%s.json" % label))
    log("site.yml (%s): %.1f s, changed=%d" % (label, result["seconds"], result["changed"]))
    return result


def fmt(value: Optional[float], pattern: str = "%.2f") -> str:
    return "-" if value is None else pattern % value


def report(rows: List[Dict[str, Any]]) -> None:
    print("%-12s %5s %5s %6s %8s %9s %9s %9s %8s %9s %6s  %s" % (
        "storm", "N", "ok", "failed", "retried", "initrd50", "initrd99", "makespan", "link MB/s", "bound", "ratio",
        "load before/after"))
    for row in rows:
        print("%-12s %5d %5d %6d %8d %9s %9s %9s %8.0f %9s %6s  %s / %s" % (
            row["label"], row["machines"], row["completed"], row["failed"], row["retried_machines"],
            fmt(row["initrd_p50_s"]), fmt(row["initrd_p99_s"]), fmt(row["makespan_s"]), row["link_mb_s"],
            fmt(row["link_bound_s"]), fmt(row["makespan_over_bound"]), row["load_before"], row["load_after"]))
    for row in rows:
        print("%s: retries %s; errors %s %s; wrong sizes %d; loaders %s; phase p50 %s; phase p99 %s" % (
            row["label"], row["retries"], row["errors"], row["sample_errors"][:2], row["wrong_sizes"], row["loaders"],
            {k: fmt(v, "%.3f") for k, v in row["phase_p50_s"].items()},
            {k: fmt(v, "%.3f") for k, v in row["phase_p99_s"].items()}))
        print("%s: the server's share of each exchange (capture), p50 %s, p99 %s; %s packets captured, %s dropped" % (
            row["label"], {k: fmt(v, "%.4f") for k, v in row.get("server_p50_s", {}).items()},
            {k: fmt(v, "%.4f") for k, v in row.get("server_p99_s", {}).items()}, row.get("captured"),
            row.get("capture_dropped")))
        print("%s: the DHCP server on a CPU / waiting for one, and the host in softirq, during the storm (s): %s"
              % (row["label"], row.get("dhcp_server_sched_s")))
        print("%s: server CPU ms per boot: %s" % (
            row["label"], {unit: round(seconds * 1000, 2) for unit, seconds in row["cpu_s_per_boot"].items()}))
        if row.get("traces"):
            print("%s: traces complete %d/%d, missing %s (booted with a gap: %s); events/s %s; counters %s" % (
                row["label"], row["traces"]["complete"], row["traces"]["machines"], row["traces"]["missing"],
                row["traces"].get("gaps_of_booted"),
                fmt(row["trace_events_per_s"], "%.0f"), row["trace_counters"]))
    by_label = {row["label"]: row for row in rows}
    on, off = by_label.get("trace-on"), by_label.get("trace-off")
    if on and off:
        units = sorted(set(on["cpu_s_per_boot"]) | set(off["cpu_s_per_boot"]))
        ratios = {}
        for unit in units:
            a, b = on["cpu_s_per_boot"].get(unit, 0.0), off["cpu_s_per_boot"].get(unit, 0.0)
            ratios[unit] = "%.2f / %.2f ms = %s" % (a * 1000, b * 1000, ("%.2f" % (a / b)) if b else "-")
        print("tracing on / off, CPU per boot: %s" % ratios)
    theirs = by_label.get("dnsmasq")
    if off and theirs:
        for phase in ("dhcp", "dhcp_ipxe", "tftp"):
            for key in ("phase_p50_s", "phase_p99_s"):
                a, b = off[key].get(phase), theirs[key].get(phase)
                ratio = fmt(b / a if a and b else None)
                print("dnsmasq / ours, %s %s: %s / %s s = %s" % (phase, key[6:9], fmt(b, "%.4f"), fmt(a, "%.4f"), ratio))
        for phase in wire.SERVER_PHASES:
            for key in ("server_p50_s", "server_p99_s"):
                a, b = off.get(key, {}).get(phase), theirs.get(key, {}).get(phase)
                print("dnsmasq / ours, the server's share of %s %s: %s / %s s = %s"
                      % (phase, key[7:10], fmt(b, "%.4f"), fmt(a, "%.4f"), fmt(b / a if a and b else None)))
        ours_cpu = off["cpu_s_per_boot"]
        dhcp_unit = next(unit for unit in ours_cpu if unit in ("kea-dhcp4-server", "isc-dhcp-server"))
        ours_both = ours_cpu.get(dhcp_unit, 0.0) + ours_cpu.get("tftpd-hpa", 0.0)
        their_both = theirs["cpu_s_per_boot"].get(DNSMASQ_UNIT, 0.0)
        print("DHCP+TFTP CPU per boot: dnsmasq %.2f ms, ours %.2f ms (%s %.2f + tftpd-hpa %.2f): dnsmasq / ours = %s"
              % (their_both * 1000, ours_both * 1000, dhcp_unit, ours_cpu.get(dhcp_unit, 0.0) * 1000,
                 ours_cpu.get("tftpd-hpa", 0.0) * 1000, fmt(their_both / ours_both if ours_both else None)))
        spans = (theirs["makespan_s"], off["makespan_s"])
        print("makespan dnsmasq / ours: %s" % fmt(spans[0] / spans[1] if all(spans) else None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,1000", help="storms with tracing on, comma list ('' for none)")
    parser.add_argument("--trace-size", type=int, default=200, help="the tracing on/off pair (0: none)")
    parser.add_argument("--backend", choices=("kea", "isc"), default="kea")
    parser.add_argument("--timeout", type=float, default=600.0, help="global timeout of one storm (s)")
    parser.add_argument("--link-streams", type=int, default=4)
    parser.add_argument("--link-seconds", type=float, default=5.0)
    parser.add_argument("--link-rate", metavar="RATE", type=link_rate,
                        help="shape the PXE host's side of the lab link to a NIC's rate (tc syntax: 10gbit); the "
                        "link bound is measured through it. Default: the bare veth")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up (default: lab.py down at the end)")
    parser.add_argument("--reuse", action="store_true",
                        help="a lab this script left up (--keep-lab) with the same --nodes: no up, no first converge")
    parser.add_argument("--nodes", type=int, help="machines in the inventory (default: every storm's own)")
    parser.add_argument("--against-dnsmasq", action="store_true",
                        help="after the trace-off storm, the same storm with DHCP and TFTP served by dnsmasq")
    parser.add_argument("--no-trace", action="store_true",
                        help="the --sizes storms with tracing off (the four trace variables false)")
    parser.add_argument("--compare-var", metavar="NAME=VALUE",
                        help="after the size storms: converge with this server variable too and repeat the last "
                        "size storm (e.g. pxe_dhcp_kea_log_severity=WARN)")
    parser.add_argument("--dhcp-only", action="store_true",
                        help="each machine does its two DHCP exchanges only (a wait of 0-1 s between them in place "
                        "of the loader's transfer): DHCP's latency with nothing else on the machine; no link bound")
    parser.add_argument("--client-processes", type=int, default=8,
                        help="the simulated machines are threads in this many processes, each with its own relay "
                        "address (198.18.0.1 and up): the threads of one process share its interpreter lock")
    parser.add_argument("--capture-tftp", action="store_true",
                        help="time the server's part of each TFTP transfer too (the capture takes every UDP packet "
                        "on the lab bridge, about 750 per UEFI machine; the DHCP messages are always captured)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --against-dnsmasq: the tracing-off and dnsmasq storms, this many times in turn")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not scale.lab_name():
        raise SystemExit("set CENTRA_LAB_NAME (this run's own lab)")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    plan = [("n%d" % n, n) for n in sizes]
    if args.compare_var:
        if not sizes or "=" not in args.compare_var:
            raise SystemExit("--compare-var NAME=VALUE repeats the last of --sizes")
        plan.append(("compare", sizes[-1]))
    if args.trace_size:
        plan += [("trace-on", args.trace_size), ("trace-off", args.trace_size)]
    if args.against_dnsmasq:
        if not args.trace_size:
            raise SystemExit("--against-dnsmasq runs after the trace-off storm: give --trace-size")
        plan.append(("dnsmasq", args.trace_size))
        for again in range(2, max(1, args.rounds) + 1):  # in turn, so drift of the machine hits both
            plan += [("trace-off-%d" % again, args.trace_size), ("dnsmasq-%d" % again, args.trace_size)]
    total = args.nodes or sum(n for _label, n in plan)
    if not 0 < total <= 5000 or any(n > 2000 for _label, n in plan):
        raise SystemExit("boot_storm: at most 2,000 machines a storm and 5,000 in all")
    machines = [wire.machine(i, PROFILES) for i in range(total)]
    units = ("kea-dhcp4-server" if args.backend == "kea" else "isc-dhcp-server",) + UNITS
    work = "/var/tmp/cpxe-storm-%s" % scale.lab_name()
    os.makedirs(work, exist_ok=True)
    assets = make_assets()
    rows: List[Dict[str, Any]] = []
    info: Dict[str, Any] = {"date": bl.stamp(), "backend": args.backend, "load_start": bl.load(),
                            "link_rate": args.link_rate or "veth (unshaped)"}
    try:
        inventory_on = write_inventory(os.path.join(work, "on", "hosts.yml"), machines, assets, True, args.backend)
        inventory_off = write_inventory(os.path.join(work, "off", "hosts.yml"), machines, assets, False, args.backend)
        if not args.reuse:
            log("lab up")
            if args.against_dnsmasq:  # its package in the host's apt cache (installed only for that storm)
                os.environ["CENTRA_LAB_APT_PACKAGES"] = ",".join(DEFAULT_APT_PACKAGES + ("dnsmasq-base",))
            scale.lab("up")
            # As scale.py: packages do not start their daemons; the roles start every service.
            scale.on_host("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d")
            info["converge"] = converge(work, inventory_off if args.no_trace else inventory_on, "converge")
        start = 0
        for label, count in plan:
            if start + count > total:
                start = 0  # --nodes smaller than the storms: machines boot again
            chosen = machines[start:start + count]
            start += count
            if label == "trace-on" and args.no_trace:
                info["converge_on"] = converge(work, inventory_on, "trace-on")
            if label == "trace-off":
                info["converge_off"] = converge(work, inventory_off, "trace-off")
            if label == "compare":
                inventory = write_inventory(os.path.join(work, "compare", "hosts.yml"), machines, assets,
                                            not args.no_trace, args.backend, [args.compare_var])
                info["converge_compare"] = converge(work, inventory, "compare")
                rows.append(run_storm(work, "n%d-%s" % (count, args.compare_var.split("=", 1)[1]), chosen, units,
                                      not args.no_trace, args))
                continue
            if label.startswith("dnsmasq"):
                dnsmasq_start(machines, units[0])
                try:
                    rows.append(run_storm(work, label, chosen, (DNSMASQ_UNIT,) + UNITS, False, args))
                finally:
                    dnsmasq_stop(units[0])
            else:
                traced = label == "trace-on" or (label.startswith("n") and not args.no_trace)
                rows.append(run_storm(work, label + ("-off" if label.startswith("n") and args.no_trace else ""),
                                      chosen, units, traced, args))
            bl.write_json(args.json, {"rows": rows, "info": info, "partial": True})
    finally:
        if not args.keep_lab:
            log("lab down")
            subprocess.run([sys.executable, scale.LAB, "down"], capture_output=True, text=True, check=False,
                           timeout=300)
    info["load_end"] = bl.load()
    report(rows)
    print("date %s, backend %s, load %s at the start, %s at the end"
          % (info["date"], args.backend, info["load_start"], info["load_end"]))
    bl.write_json(args.json, {"rows": rows, "info": info})
    return 0


if __name__ == "__main__":
    sys.exit(main())
