# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The demo: site.yml against a lab PXE host, then one machine per profile boots.

Prints: node, firmware, MAC, expected profile, booted profile, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = [sys.executable, os.path.join(ROOT, "tests", "lab", "lab.py")]
STATE = os.path.join(ROOT, "tests", "lab", ".state")

# node, firmware, MACs (the first boots unless --boot-nic says otherwise), expected profile
BOOTS = [
    ("node01", "bios", ["52:54:00:00:01:01"], "control_plane", []),
    ("node02", "uefi", ["52:54:00:00:02:01"], "worker", []),
    ("node03", "uefi", ["52:54:00:00:03:01"], "all_in_one", []),
    ("node04 (2nd NIC)", "bios", ["52:54:00:00:04:01", "52:54:00:00:04:02"], "worker", ["--boot-nic", "2"]),
    ("unknown (menu)", "bios", ["52:54:00:00:99:01"], "worker", []),
]


def collections_path() -> str:
    """Where scripts/setup.sh (run by demo.sh) links this checkout in as centra.pxe."""
    base = os.path.join(ROOT, ".ansible", "collections")
    if not os.path.isdir(os.path.join(base, "ansible_collections", "centra", "pxe")):
        sys.exit("demo: %s has no centra.pxe: run bash scripts/setup.sh first" % base)
    return base


def step(title: str) -> None:
    print("\n==> %s" % title, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("kea", "isc"), default="kea")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    inventory = os.path.join(STATE, "demo-inventory.yml")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_FORCE_COLOR="0")
    rows = []
    try:
        step("lab up: a Debian 12 PXE host (systemd-nspawn) on an isolated bridge")
        subprocess.run([*LAB, "up", "--inventory", inventory], check=True)
        step("ansible-playbook site.yml (backend %s)" % args.backend)
        started = time.monotonic()
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                        "-i", os.path.join(ROOT, "inventories", "lab"), "-i", inventory,
                        "-e", "pxe_dhcp_backend=%s" % args.backend, os.path.join(ROOT, "site.yml")],
                       check=True, env=env, cwd=ROOT)
        print("converged in %.0f s" % (time.monotonic() - started))
        for node, firmware, macs, expected, extra in BOOTS:
            step("boot %s with %s firmware (%s)" % (node, firmware, macs[-1] if extra else macs[0]))
            command = [*LAB, "boot", "--mac", macs[0], "--firmware", firmware, "--json", *extra]
            for mac in macs[1:]:
                command += ["--extra-mac", mac]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            booted, seconds = "FAILED", "-"
            if run.returncode == 0:
                result = json.loads(run.stdout.strip().splitlines()[-1])
                match = re.search(r"centra\.profile=(\S+)", result["line"])
                booted = match.group(1) if match else "(none)"
                seconds = "%.0f" % result["seconds"]
            else:
                print(run.stdout[-2000:], run.stderr[-2000:])
            rows.append((node, firmware, macs[-1] if extra else macs[0], expected, booted, seconds))
            print("%s booted %s" % (node, booted))
    finally:
        if not args.keep:
            step("lab down")
            subprocess.run([*LAB, "down"], check=False)
    header = ("node", "firmware", "MAC", "expected profile", "booted profile", "seconds")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    ok = all(r[3] == r[4] for r in rows) and len(rows) == len(BOOTS)
    print("\n%d of %d machines booted their expected profile" % (sum(r[3] == r[4] for r in rows), len(BOOTS)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
