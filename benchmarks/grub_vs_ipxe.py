# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The GRUB chain against the iPXE chain (issue 14, "Speed"): the same UEFI machine, the
same profile, power-on to the kernel's command line (PXE-BOOT-OK), in one run on one lab.

Two netboot nodes of inventories/lab in one profile group: one on the iPXE chain (OVMF ->
ipxe.efi by TFTP -> its script, kernel and initrd by HTTP) and one on the grub chain (OVMF
-> shimx64.efi -> grubx64.efi -> its config, kernel and initrd, all by TFTP). Both boot
with `--firmware uefi` (plain OVMF); the grub node boots a third time per round with
`--firmware uefi-secureboot` (OVMF's Secure Boot build, Microsoft keys: shim verifies GRUB,
GRUB has shim verify the kernel). The chains are interleaved, round by round, so a change of
the machine's load falls on all three; the load average is recorded with each boot.

Per boot, `lab.py boot --json` gives the seconds from QEMU's start to the PXE-BOOT-OK line
(the test image prints it first thing, with /proc/cmdline). QEMU runs under TCG: the
firmware and the kernel are emulated, which is most of a boot here, so the ratio says more
than the absolute times.

Setup (unless --no-setup): as benchmarks/boot_time.py (`lab.py up`, site.yml with
inventories/lab; CENTRA_LAB_NAME selects the lab).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position
from boot_time import lab, setup  # noqa: E402  pylint: disable=wrong-import-position

bl.import_collection()
sys.path.insert(0, os.path.join(bl.ROOT, "tests", "lab"))
from labkit.facts import LAB_INVENTORY, inventory_facts  # noqa: E402  pylint: disable=wrong-import-position

NODES = inventory_facts([LAB_INVENTORY]).nodes


def pick(loader: str) -> str:
    """The netboot node of a loader (a diskless node: it boots its profile every time)."""
    found = sorted(name for name, node in NODES.items() if node.boot == "netboot" and node.loader == loader)
    if not found:
        raise SystemExit("inventories/lab has no netboot node with pxe_loader: %s" % loader)
    return found[0]


def boot(name: str, firmware: str) -> Dict[str, Any]:
    mac = NODES[name].macs[0]
    load = bl.load()
    done = lab("boot", "--mac", mac, "--firmware", firmware, "--json", "--timeout", "400", timeout=520, check=False)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"ok": False, "reason": done.stderr[-500:]}
    return {"name": name, "firmware": firmware, "seconds": result.get("seconds"),
            "ok": bool(result.get("ok")) and done.returncode == 0, "reason": result.get("reason"),
            "profile": NODES[name].profile,
            "profile_ok": "centra.profile=%s" % NODES[name].profile in (result.get("cmdline") or ""),
            "load_before": load, "load_after": bl.load(), "at": time.time()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each boots every chain once)")
    parser.add_argument("--no-setup", action="store_true", help="the lab is up and converged with inventories/lab")
    parser.add_argument("--no-secure-boot", action="store_true", help="leave out the grub chain under Secure Boot")
    parser.add_argument("--json")
    args = parser.parse_args()
    ipxe, grub = pick("ipxe"), pick("grub")
    if NODES[ipxe].profile != NODES[grub].profile:
        raise SystemExit("%s and %s boot different profiles (%s, %s): not the same machine's profile"
                         % (ipxe, grub, NODES[ipxe].profile, NODES[grub].profile))
    chains = [("ipxe", ipxe, "uefi"), ("grub", grub, "uefi")]
    if not args.no_secure_boot:
        chains.append(("grub-sb", grub, "uefi-secureboot"))
    if not args.no_setup:
        print("setting up the lab (load %s)" % bl.load(), file=sys.stderr, flush=True)
        setup()
    runs: List[Dict[str, Any]] = []
    for index in range(args.repeat):
        for chain, name, firmware in chains:
            result = dict(boot(name, firmware), chain=chain, round=index + 1)
            runs.append(result)
            print("round %d %-7s %s %-15s %s s ok=%s profile_ok=%s load %s" % (
                index + 1, chain, name, firmware, result["seconds"], result["ok"], result["profile_ok"],
                result["load_before"]), file=sys.stderr, flush=True)
    print("%-8s %-7s %-16s %8s %8s %8s %5s" % ("chain", "node", "firmware", "median", "min", "max", "ok"))
    summary: Dict[str, Any] = {}
    for chain, name, firmware in chains:
        done = [r["seconds"] for r in runs if r["chain"] == chain and r["ok"] and r["profile_ok"]]
        total = len([r for r in runs if r["chain"] == chain])
        if not done:
            print("%-8s %-7s %-16s no successful boot" % (chain, name, firmware))
            continue
        summary[chain] = {"node": name, "firmware": firmware, "median_s": bl.median(done), "min_s": min(done),
                          "max_s": max(done), "ok": len(done), "runs": total}
        print("%-8s %-7s %-16s %8.1f %8.1f %8.1f %2d/%-2d"
              % (chain, name, firmware, bl.median(done), min(done), max(done), len(done), total))
    for chain in ("grub", "grub-sb"):
        if chain in summary and "ipxe" in summary:
            ratio = summary[chain]["median_s"] / summary["ipxe"]["median_s"]
            summary["ratio_%s_to_ipxe" % chain.replace("-", "_")] = round(ratio, 2)
            print("ratio %s / ipxe (medians): %.2f" % (chain, ratio))
    print("profile %s; date %s, load %s" % (NODES[ipxe].profile, bl.stamp(), bl.load()))
    bl.write_json(args.json, {"runs": runs, "summary": summary, "date": bl.stamp()})
    return 0 if runs and all(r["ok"] and r["profile_ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
