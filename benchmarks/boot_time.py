# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot time in the lab: power-on to PXE-BOOT-OK for BIOS and UEFI machines (median of
--repeat), with the server's share read from the PXE host's own logs, then four
machines booting at once.

Setup (unless --no-setup): `lab.py up` (CENTRA_LAB_NAME selects the lab) and site.yml
with inventories/lab, so the host serves the lab's four nodes.

Per boot, `lab.py boot --json` gives the seconds from QEMU's start to the PXE-BOOT-OK
line. The server's side comes from:
  - Kea's journal: the DHCP4_LEASE_ALLOC lines of the machine's MAC (when its
    addresses were ACKed, relative to QEMU's start);
  - nginx's access log (format centra_pxe: $msec ... $request_time): every request of
    the machine's address during the boot, with its duration; the server's share is
    the sum of those durations (script, kernel and initrd transfers);
  - UEFI machines also fetch ipxe.efi by TFTP first: tftpd-hpa does not log
    transfers, so that part is in the client's time only.
Container and build machine share one clock. QEMU runs under TCG (no KVM): the
firmware and the kernel are emulated, which is most of a boot here.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position

# The lab's nodes come from inventories/lab, read by the lab's test helpers (tests/lab/labkit).
bl.import_collection()
sys.path.insert(0, os.path.join(bl.ROOT, "tests", "lab"))
from labkit.facts import LAB_INVENTORY, inventory_facts  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.join(bl.ROOT, "tests", "lab", "lab.py")
ACCESS_LOG = "/var/log/nginx/centra-pxe.access.log"
NODES = inventory_facts([LAB_INVENTORY]).nodes
# firmware -> (node, its first MAC, its fixed address)
MACHINES = {firmware: (name, NODES[name].macs[0], NODES[name].ip) for firmware, name in (("bios", "node01"),
                                                                                         ("uefi", "node02"))}
STORM = [(name, NODES[name].macs[0], firmware)
         for name, firmware in (("node01", "bios"), ("node02", "uefi"), ("node03", "uefi"), ("node04", "bios"))]


def lab(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, LAB, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise SystemExit("lab.py %s failed:\n%s\n%s" % (" ".join(args), done.stdout[-2000:], done.stderr[-3000:]))
    return done


def on_host(command: str) -> str:
    return lab("ssh", "pxe01", "--", command, timeout=120).stdout


def setup() -> None:
    lab("up")
    suffix = "-" + os.environ["CENTRA_LAB_NAME"] if os.environ.get("CENTRA_LAB_NAME") else ""
    inventory = os.path.join(bl.ROOT, "tests", "lab", ".state", "inventory%s.yml" % suffix)
    cp_dir = os.path.join("/tmp", "cpxe-bench-ssh-cp-%s" % (os.environ.get("CENTRA_LAB_NAME") or "default"))
    os.makedirs(cp_dir, mode=0o700, exist_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=bl.collections_path(), ANSIBLE_PIPELINING="true",
               ANSIBLE_SSH_CONTROL_PATH_DIR=cp_dir, ANSIBLE_NOCOLOR="1")
    # Same workaround as benchmarks/scale.py: packages must not start their daemons.
    on_host("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d")
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                           os.path.join(bl.ROOT, "inventories", "lab"), "-i", inventory,
                           os.path.join(bl.ROOT, "site.yml")], capture_output=True, text=True, env=env, cwd=bl.ROOT,
                          check=False, timeout=1800)
    if done.returncode != 0:
        raise SystemExit("site.yml failed:\n%s" % done.stdout[-4000:])


def server_share(mac: str, address: str, started: float, seconds: float) -> Dict[str, Any]:
    """What the PXE host's logs say about one boot that began at `started` (epoch seconds)."""
    ended = started + seconds + 2
    log = on_host("cat %s" % ACCESS_LOG)
    requests = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] != address:
            continue
        finished, duration = float(fields[0]), float(fields[7])
        if started - 1 <= finished <= ended:
            requests.append({"uri": fields[5], "status": int(fields[2]), "bytes": int(fields[6]),
                             "start_s": round(finished - duration - started, 3), "seconds": duration})
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started - 1))
    journal = on_host("journalctl -u kea-dhcp4-server -o short-unix --no-pager --utc --since '%s UTC' "
                      "| grep -i 'DHCP4_LEASE_ALLOC' | grep -i '%s' || true" % (since, mac))
    acks = [round(float(line.split()[0]) - started, 3) for line in journal.splitlines() if line.strip()]
    acks = [t for t in acks if t <= seconds + 2]

    def first(pattern: str) -> Any:
        return next((r for r in requests if re.search(pattern, r["uri"])), None)

    script = first(r"^/nodes/")
    kernel = first(r"/vmlinuz$")
    initrd = first(r"/initrd$")
    return {
        "dhcp_acks_at_s": acks,
        "requests": len(requests),
        "server_seconds": round(sum(r["seconds"] for r in requests), 3),
        "script_at_s": script["start_s"] if script else None,
        "kernel_at_s": kernel["start_s"] if kernel else None,
        "kernel_transfer_s": kernel["seconds"] if kernel else None,
        "initrd_transfer_s": initrd["seconds"] if initrd else None,
        "non_200": [r for r in requests if r["status"] != 200],
    }


def boot(name: str, mac: str, firmware: str) -> Dict[str, Any]:
    started = time.time()
    done = lab("boot", "--mac", mac, "--firmware", firmware, "--json", "--timeout", "300", timeout=420, check=False)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"ok": False, "reason": done.stderr[-500:]}
    return {"name": name, "mac": mac, "firmware": firmware, "ok": bool(result.get("ok")) and done.returncode == 0,
            "seconds": result.get("seconds"), "started": started, "reason": result.get("reason"),
            "profile_ok": ("centra.profile=" in (result.get("cmdline") or ""))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-setup", action="store_true", help="the lab is up and converged with inventories/lab")
    parser.add_argument("--no-storm", action="store_true", help="leave out the four machines at once")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not args.no_setup:
        print("setting up the lab (load %s)" % bl.load(), file=sys.stderr, flush=True)
        setup()
    runs: List[Dict[str, Any]] = []
    for index in range(args.repeat):
        for firmware, (name, mac, address) in MACHINES.items():
            result = boot(name, mac, firmware)
            if result["ok"]:
                result.update(server_share(mac, address, result["started"], result["seconds"]))
            result["load"] = bl.load()
            runs.append(result)
            print("%s %s run %d: %s s ok=%s server %s s, load %s" % (
                firmware, name, index + 1, result["seconds"], result["ok"], result.get("server_seconds"),
                result["load"]), file=sys.stderr, flush=True)
    storm: List[Dict[str, Any]] = []
    if not args.no_storm:
        load_before = bl.load()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(STORM)) as pool:
            storm = list(pool.map(lambda m: boot(*m), STORM))
        for result in storm:
            result["load_before"] = load_before
    header = ("", "median", "min", "max", "first ACK", "script at", "kernel (s)", "server (s)")
    print("%-6s %8s %8s %8s %12s %12s %12s %12s" % header)
    summary = {}
    for firmware in MACHINES:
        done = [r for r in runs if r["firmware"] == firmware and r["ok"]]
        if not done:
            print("%-6s no successful boot" % firmware)
            continue
        seconds = [r["seconds"] for r in done]

        def med(key: str, rows=done) -> Any:
            values = [r[key] for r in rows if r.get(key) is not None]
            return bl.median(values) if values else None
        first_ack = bl.median([r["dhcp_acks_at_s"][0] for r in done if r.get("dhcp_acks_at_s")] or [0.0])
        summary[firmware] = {"median_s": bl.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
                             "ok": len(done), "runs": len([r for r in runs if r["firmware"] == firmware]),
                             "first_ack_s": first_ack, "script_at_s": med("script_at_s"),
                             "kernel_transfer_s": med("kernel_transfer_s"), "server_s": med("server_seconds")}
        row = summary[firmware]
        print("%-6s %8.1f %8.1f %8.1f %12.1f %12s %12s %12s" % (
            firmware, row["median_s"], row["min_s"], row["max_s"], row["first_ack_s"],
            "%.1f" % row["script_at_s"] if row["script_at_s"] is not None else "-",
            "%.3f" % row["kernel_transfer_s"] if row["kernel_transfer_s"] is not None else "-",
            "%.3f" % row["server_s"] if row["server_s"] is not None else "-"))
    if storm:
        print("four at once: %d/%d booted; %s" % (sum(1 for r in storm if r["ok"]), len(storm), ", ".join(
            "%s %s %s s" % (r["name"], r["firmware"], r["seconds"]) for r in storm)))
    print("date %s, load %s" % (bl.stamp(), bl.load()))
    bl.write_json(args.json, {"runs": runs, "storm": storm, "summary": summary, "date": bl.stamp()})
    return 0 if all(r["ok"] for r in runs + storm) else 1


if __name__ == "__main__":
    sys.exit(main())
