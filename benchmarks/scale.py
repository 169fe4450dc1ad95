# SPDX-License-Identifier: GPL-3.0-or-later
"""Scale: a full site.yml converge and an idempotent rerun against a lab PXE host with
inventories of 100, 1,000 and 10,000 nodes, then onboarding one node into the largest
one while a DHCP client keeps asking, with proof that Kea kept running and kept its
leases.

Needs the lab up (CENTRA_LAB_NAME selects which; `python3 tests/lab/lab.py up`). For
every size the lab is brought up afresh (a clean PXE host: the converge includes the
package install from the lab's apt cache), then:
  1. site.yml with the generated inventory (benchmarks/inventory_gen.py: N nodes in
     198.18.0.0/15, three profiles with the lab's test image, the lab's own subnet
     192.0.2.0/24 first so the server finds its interface) plus the lab's inventory
     (pxe_servers and how to reach them);
  2. site.yml again: must report changed=0;
  3. what grew on the host: the Kea config, the node scripts.
Every run writes a per-task profile (benchmarks/callback_plugins/bench_profile.py).

Onboarding (largest size, after the rerun): a lease is taken for a probe MAC
(perfdhcp, in the lab namespace, relayed through 192.0.2.1); Kea's MainPID is read;
a prober does one DHCP exchange after another (perfdhcp -n 1 each) while
playbooks/onboard.yml runs with one more node; afterwards MainPID must be the same,
every probe answered, the probe MAC's lease still in Kea's lease file with the same
address, and a new exchange of that MAC ACKed with that address.

The DHCP blackout (issue 15), during the same onboarding: labkit.blackout sends a
DISCOVER every 10 ms for a known node (BLACKOUT_NODE, a reservation in the lab's
subnet, added to every generated inventory) and reports the longest time without an
OFFER. --backend isc measures ISC dhcpd (restarted by the onboarding) instead of Kea
(reloaded); the lease checks are Kea's and are left out there. --kea-host-database
keeps Kea's reservations in its PostgreSQL host database (pxe_dhcp_kea_host_database):
the onboarding then writes a row and Kea is not reloaded; "in the Kea config" becomes
"a row of the host database".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position
from inventory_gen import node_mac, write_inventory  # noqa: E402  pylint: disable=wrong-import-position

# The lab's test helpers (tests/lab/labkit): the lab's facts and the PLAY RECAP reader.
bl.import_collection()
sys.path.insert(0, os.path.join(bl.ROOT, "tests", "lab"))
from labkit.common import BRIDGE, BRIDGE_ADDRESS, DEFAULT_INVENTORY  # noqa: E402  pylint: disable=wrong-import-position
from labkit.facts import inventory_facts, node_script_path  # noqa: E402  pylint: disable=wrong-import-position
from labkit.playbook import recap  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.join(bl.ROOT, "tests", "lab", "lab.py")
LAB_IMAGE = "/var/cache/centra-pxe-lab/image"
LAB_SUBNET = "{cidr: 192.0.2.0/24, pool: 192.0.2.100-192.0.2.199}"
LAB_VARS = ("pxe_server_apt_update_cache: false", "pxe_ipxe_menu_default: worker", "pxe_ipxe_menu_timeout: 5")
PROBE_MAC = "02:ce:00:00:be:01"
LEASE_FILE = "/var/lib/kea/kea-leases4.csv"
RELAY = BRIDGE_ADDRESS  # perfdhcp poses as a relay from the lab bridge
# The node the blackout prober asks for: in the lab's subnet, so that its answers reach the
# lab bridge (the generated nodes live in 198.18.0.0/15, which the lab host cannot answer).
BLACKOUT_NODE = ("blackout01", "02:ce:00:00:ee:01", "192.0.2.60")  # outside inventory_gen.node_mac's 52:54:...
# The prober's relay address: a second address on the lab bridge for the run, since the
# perfdhcp prober holds port 67 of the bridge's own address.
BLACKOUT_RELAY = "192.0.2.250"
DHCP_UNITS = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server"}


def lab_name() -> str:
    return os.environ.get("CENTRA_LAB_NAME", "")


def lab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, LAB, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit("lab.py %s failed:\n%s\n%s" % (" ".join(args), done.stdout[-2000:], done.stderr[-3000:]))
    return done


def on_host(command: str, timeout: float = 120) -> str:
    return lab("ssh", "pxe01", "--", command, timeout=timeout).stdout


def lab_inventory() -> str:
    return str(DEFAULT_INVENTORY)


def server_address() -> str:
    """pxe01's address, from the inventory `lab.py up` wrote."""
    return inventory_facts([lab_inventory()]).server_address


def control_path_dir() -> str:
    """SSH multiplexing sockets of this lab only. Ansible's default, ~/.ansible/cp/%C, hashes
    host, port and user: every lab's pxe01 is root@192.0.2.2:22, so a run would reuse
    another lab's open master connection and configure that lab's host."""
    path = os.path.join(tempfile.gettempdir(), "cpxe-bench-ssh-cp-%s" % (lab_name() or "default"))
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def playbook(playbook_path: str, inventory: str, profile: str) -> Dict[str, Any]:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=bl.collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_CONTROL_PATH_DIR=control_path_dir(),
               ANSIBLE_PIPELINING="true", ANSIBLE_FORKS="4", ANSIBLE_HOST_KEY_CHECKING="false",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(bl.ROOT, "benchmarks", "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="bench_profile", BENCH_PROFILE_OUT=profile)
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, "-i", lab_inventory(),
            playbook_path]
    load_before = bl.load()
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=bl.ROOT, check=False, timeout=3600)
    seconds = time.monotonic() - started
    stats = recap(done.stdout).get("pxe01")
    if done.returncode != 0 or not stats:
        raise SystemExit("%s failed (exit %d):\n%s\n%s"
                         % (playbook_path, done.returncode, done.stdout[-5000:], done.stderr[-2000:]))
    with open(profile, encoding="utf-8") as handle:
        tasks = json.load(handle)["tasks"]
    slowest = sorted(tasks, key=lambda t: -t.get("seconds", 0))[:6]
    # The largest resident set of any process of the runs so far (ansible-playbook and its
    # forks are waited for, so Linux counts them as this process's children): the
    # controller's peak memory, monotonic over the runs of one invocation.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "ok": stats["ok"], "changed": stats["changed"], "load_before": load_before,
            "load_after": bl.load(), "controller_peak_rss_mib": round(peak_mib, 1),
            "slowest": [(t["name"], round(t.get("seconds", 0), 2)) for t in slowest]}


DHCP_CONFIGS = {"kea": "/etc/kea/kea-dhcp4.conf", "isc": "/etc/dhcp/dhcpd.conf"}


def host_sizes(backend: str) -> Dict[str, int]:
    out = on_host("wc -c < %s; ls /srv/centra-pxe/http/nodes | wc -l; "
                  "du -sk /srv/centra-pxe/http/nodes | cut -f1" % DHCP_CONFIGS[backend])
    kea_bytes, scripts, scripts_kib = (int(x) for x in out.split())
    return {"kea_conf_bytes": kea_bytes, "node_scripts": scripts, "node_scripts_kib": scripts_kib}


def dora(mac: str, timeout: float = 15) -> bool:
    """One DHCP exchange (DISCOVER-OFFER-REQUEST-ACK) for `mac`, relayed from the lab bridge."""
    # -p with -r 1: one exchange, then -W (2 s) to collect the ACK (with -n 1 perfdhcp
    # stops as soon as the REQUEST is sent and may miss the ACK).
    done = subprocess.run([sys.executable, LAB, "exec", "--", "perfdhcp", "-4", "-l", RELAY, "-r", "1", "-p", "1",
                           "-R", "1", "-b", "mac=" + mac, "-d", "5", "-W", "2000000", server_address()],
                          capture_output=True, text=True, timeout=timeout, check=False)
    received = [int(x) for x in re.findall(r"^received packets: (\d+)", done.stdout, re.M)]
    return len(received) >= 2 and received[0] >= 1 and received[1] >= 1


def leases_of(mac: str) -> List[List[str]]:
    """The lines of Kea's lease file(s) for `mac` (address, hwaddr, ..., expire, ...)."""
    out = on_host("cat %s.2 %s 2>/dev/null || true" % (LEASE_FILE, LEASE_FILE))
    return [line.split(",") for line in out.splitlines() if line.split(",")[1:2] == [mac]]


def dhcp_main_pid(backend: str) -> int:
    return int(on_host("systemctl show -p MainPID --value %s" % DHCP_UNITS[backend]).strip())


# Set by --kea-host-database.
HOST_DATABASE = False


def new_node_served(backend: str, mac: str) -> bool:
    """The new node's reservation is where the DHCP server reads it: its config, or Kea's host database."""
    if HOST_DATABASE:
        count = on_host("runuser -u _kea -- psql -X -A -t -h /run/postgresql -d kea -c "
                        "\"SELECT count(*) FROM hosts WHERE dhcp_identifier = decode('%s', 'hex')\""
                        % mac.replace(":", "")).strip()
    else:
        count = on_host("grep -c -i '%s' %s || true" % (mac, DHCP_CONFIGS[backend])).strip()
    return int(count or 0) >= 1


def inventory_for(work: str, nodes: int, lab_kernel: str, lab_initrd: str, backend: str) -> str:
    name, mac, ip = BLACKOUT_NODE
    extra_vars = LAB_VARS + ("pxe_dhcp_backend: %s" % backend,)
    if HOST_DATABASE:
        extra_vars += ("pxe_dhcp_kea_host_database: true",)
    return write_inventory(os.path.join(work, "inv%d" % nodes), nodes, lab_initrd, kernel=lab_kernel,
                           extra_subnets=[LAB_SUBNET], extra_vars=extra_vars,
                           extra_hosts=['%s: {pxe_mac: "%s", pxe_ip: %s}' % (name, mac, ip)])


class Blackout:
    """labkit.blackout in the lab namespace: a DISCOVER every 10 ms for BLACKOUT_NODE until stopped."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.path.join(bl.ROOT, "tests", "lab"))
        lab("exec", "--", "ip", "address", "replace", BLACKOUT_RELAY + "/24", "dev", BRIDGE)
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped in stop()
            [sys.executable, LAB, "exec", "--", sys.executable, "-m", "labkit.blackout", "--server", server_address(),
             "--mac", BLACKOUT_NODE[1], "--relay", BLACKOUT_RELAY, "--seconds", "1800"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def stop(self) -> Dict[str, Any]:
        # lab.py exec becomes the prober (exec, no fork): the signal reaches it.
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        lab("exec", "--", "ip", "address", "del", BLACKOUT_RELAY + "/24", "dev", BRIDGE)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit("the blackout prober printed nothing:\n%s" % err[-2000:])
        return json.loads(lines[-1])


class Prober(threading.Thread):
    """One DHCP exchange after another, each from its own MAC, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.results: List[tuple] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop_event.is_set():
            number += 1
            started = time.monotonic()
            answered = dora("02:ce:00:01:%02x:%02x" % ((number >> 8) & 0xFF, number & 0xFF))
            self.results.append((started, time.monotonic() - started, answered))


def onboard(work: str, nodes: int, lab_kernel: str, lab_initrd: str, backend: str = "kea") -> Dict[str, Any]:
    kea = backend == "kea"
    leased_before = dora(PROBE_MAC)
    before = leases_of(PROBE_MAC) if kea else []
    pid_before = dhcp_main_pid(backend)
    inventory = inventory_for(work, nodes + 1, lab_kernel, lab_initrd, backend)
    prober = Prober()
    prober.start()
    blackout = Blackout()
    time.sleep(3)  # a few answers before the change
    playbook_started = time.monotonic()
    try:
        result = playbook(os.path.join(bl.ROOT, "playbooks", "onboard.yml"), inventory,
                          os.path.join(work, "profile-onboard.json"))
    finally:
        time.sleep(3)  # and a few after
        prober.stop_event.set()
        prober.join(timeout=60)
        gaps = blackout.stop()
    pid_after = dhcp_main_pid(backend)
    after = leases_of(PROBE_MAC) if kea else []
    renewed = dora(PROBE_MAC)
    renewed_leases = leases_of(PROBE_MAC) if kea else []
    new_script = on_host("test -f /srv/centra-pxe/http%s && echo yes || echo no"
                         % node_script_path(node_mac(nodes))).strip()
    probes = prober.results
    unanswered = [round(p[0] - playbook_started, 1) for p in probes if not p[2]]
    result.update(
        backend=backend, blackout=gaps,
        probe_mac_leased_before=leased_before,
        main_pid_before=pid_before, main_pid_after=pid_after, kea_kept_running=pid_before == pid_after,
        probes=len(probes), probes_answered=sum(1 for p in probes if p[2]),
        longest_probe_s=round(max((p[1] for p in probes), default=0.0), 2),
        unanswered_at_s=unanswered,
        lease_before=before[-1][:1] if before else None, lease_after=after[-1][:1] if after else None,
        lease_kept=bool(before) and bool(after) and before[-1][0] == after[-1][0] and before[-1] in after,
        renewed_same_address=renewed and bool(renewed_leases) and renewed_leases[-1][0] == before[-1][0],
        new_node_script=new_script == "yes", new_node_in_kea_config=new_node_served(backend, node_mac(nodes)),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--no-onboard", action="store_true")
    parser.add_argument("--onboard-only", type=int, metavar="N",
                        help="only the onboarding, into a lab host already converged with N nodes by this script")
    parser.add_argument("--profiles", help="keep the per-task profiles (JSON) in this directory")
    parser.add_argument("--backend", choices=sorted(DHCP_UNITS), default="kea", help="the DHCP backend (default kea)")
    parser.add_argument("--kea-host-database", action="store_true",
                        help="Kea's reservations in its PostgreSQL host database (pxe_dhcp_kea_host_database)")
    parser.add_argument("--json")
    args = parser.parse_args()
    global HOST_DATABASE  # pylint: disable=global-statement
    HOST_DATABASE = args.kea_host_database
    kernel, initrd = os.path.join(LAB_IMAGE, "vmlinuz"), os.path.join(LAB_IMAGE, "initrd.img")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: List[Dict[str, Any]] = []
    onboarding: Optional[Dict[str, Any]] = None
    with tempfile.TemporaryDirectory(prefix="cpxe-bench-scale-") as work:
        if args.profiles:
            os.makedirs(args.profiles, exist_ok=True)
            work = args.profiles
        if args.onboard_only:
            sizes = [args.onboard_only]
            onboarding = onboard(work, args.onboard_only, kernel, initrd, args.backend)
            print("onboarding: %s" % json.dumps(onboarding), file=sys.stderr, flush=True)
        for size in ([] if args.onboard_only else sizes):
            print("lab up for %d nodes (load %s)" % (size, bl.load()), file=sys.stderr, flush=True)
            lab("up")
            # Work around a role bug seen on this machine today (reported): tftpd-hpa's
            # package starts its SysV daemon at install; when the role's native unit takes
            # over, systemd cannot kill the old daemon's cgroup ("Input/output error"),
            # which keeps port 69 and the new unit fails. Packages do not start their
            # daemons on this host; the roles start every service themselves.
            on_host("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d")
            inventory = inventory_for(work, size, kernel, initrd, args.backend)
            site = os.path.join(bl.ROOT, "site.yml")
            converge = playbook(site, inventory, os.path.join(work, "profile-converge-%d.json" % size))
            print("%d nodes: converge %.1f s changed=%d, controller peak %.0f MiB (load %s)"
                  % (size, converge["seconds"], converge["changed"], converge["controller_peak_rss_mib"],
                     converge["load_after"]), file=sys.stderr, flush=True)
            rerun = playbook(site, inventory, os.path.join(work, "profile-rerun-%d.json" % size))
            print("%d nodes: rerun %.1f s changed=%d, controller peak %.0f MiB (load %s)"
                  % (size, rerun["seconds"], rerun["changed"], rerun["controller_peak_rss_mib"], rerun["load_after"]),
                  file=sys.stderr, flush=True)
            row = {"nodes": size, "converge": converge, "rerun": rerun, **host_sizes(args.backend)}
            rows.append(row)
            bl.write_json(args.json, {"rows": rows, "partial": True, "date": bl.stamp()})
            if size == sizes[-1] and not args.no_onboard:
                onboarding = onboard(work, size, kernel, initrd, args.backend)
                print("onboarding: %s" % json.dumps(onboarding), file=sys.stderr, flush=True)
    header = ("nodes", "converge (s)", "changed", "rerun (s)", "changed", "kea conf (KiB)", "node scripts",
              "load (before/after)")
    print("%8s %12s %9s %10s %9s %14s %13s %s" % header)
    for row in rows:
        print("%8d %12.1f %9d %10.1f %9d %14.0f %13d %s / %s" % (
            row["nodes"], row["converge"]["seconds"], row["converge"]["changed"], row["rerun"]["seconds"],
            row["rerun"]["changed"], row["kea_conf_bytes"] / 1024, row["node_scripts"], row["converge"]["load_before"],
            row["rerun"]["load_after"]))
    for row in rows:
        print("%d nodes, slowest converge tasks: %s" % (row["nodes"], row["converge"]["slowest"]))
        print("%d nodes, slowest rerun tasks: %s" % (row["nodes"], row["rerun"]["slowest"]))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        for phase in ("converge", "rerun"):
            per_node = (last[phase]["seconds"] - first[phase]["seconds"]) / (last["nodes"] - first["nodes"])
            print("%s: %.2f ms per extra node between %d and %d nodes"
                  % (phase, per_node * 1000, first["nodes"], last["nodes"]))
    if onboarding:
        kea = args.backend == "kea"
        unchecked = "not checked (Kea's lease file only)"
        print("onboarding node %d: %.1f s changed=%d; %s MainPID %d -> %d; probes answered %d/%d (longest %.1f s); "
              "lease kept: %s, renewed with the same address: %s; new node script: %s, in %s: %s" % (
                  sizes[-1] + 1, onboarding["seconds"], onboarding["changed"], DHCP_UNITS[args.backend],
                  onboarding["main_pid_before"], onboarding["main_pid_after"], onboarding["probes_answered"],
                  onboarding["probes"], onboarding["longest_probe_s"],
                  onboarding["lease_kept"] if kea else unchecked,
                  onboarding["renewed_same_address"] if kea else unchecked,
                  onboarding["new_node_script"], "the host database" if HOST_DATABASE else DHCP_CONFIGS[args.backend],
                  onboarding["new_node_in_kea_config"]))
        print("DHCP blackout (%s, a DISCOVER every 10 ms for a known node): longest gap %.3f s at %.1f s; "
              "%d of %d answered; gaps over 100 ms: %s" % (
                  args.backend, onboarding["blackout"]["longest_gap_s"], onboarding["blackout"]["longest_gap_at_s"],
                  onboarding["blackout"]["answered"], onboarding["blackout"]["sent"],
                  onboarding["blackout"]["gaps_over_100ms"]))
    print("date %s, load %s" % (bl.stamp(), bl.load()))
    bl.write_json(args.json, {"rows": rows, "onboarding": onboarding, "date": bl.stamp()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
