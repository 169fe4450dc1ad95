# SPDX-License-Identifier: GPL-3.0-or-later
"""Old code against new at one inventory size, as ratios in one run: converge, idempotent
rerun (several rounds, old and new alternating, so both see the same machine) and
onboarding one node.

Each side is a checkout of the collection (a `git worktree` of the older commit, and
this one), each with its own lab (CENTRA_LAB_NAME=<prefix>o / <prefix>n, two network
namespaces: both labs are up at once). Each side runs its own benchmarks/scale.py:
first `--sizes N --no-onboard` (lab up, converge, rerun); then each side's profiles are
pointed at a private copy of the lab's test image (all labs share one image, which a
`lab up` with another recipe rebuilds) with one untimed rerun; then more reruns through
that scale.py's playbook() in alternating rounds, then `--onboard-only N` (old, then new).
Onboarding writes a new inventory with the shared image: run it when no other lab is
being brought up (a changed image shows as a profile-asset copy in its task profile).

    git worktree add --detach /tmp/centra-old <commit>
    (cd /tmp/centra-old && bash scripts/setup.sh)    # or link .venv and the collection
    .venv/bin/python benchmarks/rerun_ratio.py --old /tmp/centra-old --new . --nodes 10000

Lab addresses only (each scale.py's own); both labs are taken down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

RERUN = """
import json, os, sys
sys.path.insert(0, "benchmarks")
import scale
result = scale.playbook(os.path.join(scale.bl.ROOT, "site.yml"), sys.argv[1], sys.argv[2])
print(json.dumps(result))
"""


def side_env(prefix: str, side: str) -> Dict[str, str]:
    return dict(os.environ, CENTRA_LAB_NAME=prefix + side[0])


def run(checkout: str, argv: List[str], env: Dict[str, str], timeout: float) -> str:
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit("%s in %s failed (exit %d):\n%s\n%s"
                         % (" ".join(argv[:3]), checkout, done.returncode, done.stdout[-3000:], done.stderr[-3000:]))
    return done.stdout


LAB_IMAGE = "/var/cache/centra-pxe-lab/image"  # where every checkout's scale.py points its profiles


def private_image(work: str, nodes: int) -> None:
    """Copy the lab image into work/image and point the side's inventory at the copy."""
    image = os.path.join(work, "image")
    shutil.rmtree(image, ignore_errors=True)
    shutil.copytree(LAB_IMAGE, image)
    inventory = os.path.join(work, "inv%d" % nodes, "hosts.yml")
    with open(inventory, encoding="utf-8") as handle:
        text = handle.read()
    with open(inventory, "w", encoding="utf-8") as handle:
        handle.write(text.replace(LAB_IMAGE + "/", image + "/"))


def python_of(checkout: str) -> str:
    return os.path.join(checkout, ".venv", "bin", "python")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="checkout of the older code")
    parser.add_argument("--new", default=".", help="checkout of the newer code (default: this one)")
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="extra reruns per side, alternating")
    parser.add_argument("--lab-prefix", default="r", help="lab names: <prefix>o and <prefix>n")
    parser.add_argument("--work", default="/tmp/centra-rerun-ratio", help="inventories and profiles")
    parser.add_argument("--json")
    args = parser.parse_args()
    sides = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    results: Dict[str, Dict[str, Any]] = {side: {"reruns": []} for side in sides}
    try:
        for side, checkout in sides.items():
            work = os.path.join(args.work, side)
            os.makedirs(work, exist_ok=True)
            print("%s: lab up, converge and first rerun of %d nodes (%s)" % (side, args.nodes, checkout),
                  file=sys.stderr, flush=True)
            run(checkout, [python_of(checkout), "benchmarks/scale.py", "--sizes", str(args.nodes), "--no-onboard",
                           "--profiles", work, "--json", os.path.join(work, "scale.json")],
                side_env(args.lab_prefix, side), 3600)
            private_image(work, args.nodes)
            with open(os.path.join(work, "scale.json"), encoding="utf-8") as handle:
                row = json.load(handle)["rows"][0]
            results[side]["converge"] = row["converge"]["seconds"]
            results[side]["reruns"].append(row["rerun"]["seconds"])
        # Every lab on this machine shares one test image (LAB_IMAGE), and any `lab up` whose
        # recipe differs (the other side's, another checkout's) rebuilds it: the kernel and
        # initrd a side converged with would change under its reruns. Each side gets a copy
        # of the image as it was right after its converge (taken in the loop above), and
        # one untimed rerun moves it onto that copy; the timed rounds follow.
        for side, checkout in sides.items():
            work = os.path.join(args.work, side)
            out = run(checkout, [python_of(checkout), "-c", RERUN, os.path.join(work, "inv%d" % args.nodes, "hosts.yml"),
                                 os.path.join(work, "profile-rerun-settle.json")], side_env(args.lab_prefix, side), 3600)
            settle = json.loads(out.strip().splitlines()[-1])
            results[side]["settle_changed"] = settle["changed"]
            print("%s: untimed rerun onto its own image copy, changed=%d" % (side, settle["changed"]),
                  file=sys.stderr, flush=True)
        for round_number in range(args.rounds):
            for side, checkout in sides.items():
                work = os.path.join(args.work, side)
                profile = os.path.join(work, "profile-rerun-extra-%d.json" % round_number)
                out = run(checkout, [python_of(checkout), "-c", RERUN, os.path.join(work, "inv%d" % args.nodes, "hosts.yml"),
                                     profile], side_env(args.lab_prefix, side), 3600)
                rerun = json.loads(out.strip().splitlines()[-1])
                if rerun["changed"]:
                    with open(profile, encoding="utf-8") as handle:
                        changed = [t["name"] for t in json.load(handle)["tasks"] if t.get("changed")]
                    raise SystemExit("%s: rerun %d changed %d tasks: %s" % (side, round_number, rerun["changed"], changed))
                results[side]["reruns"].append(rerun["seconds"])
                print("%s: rerun %.1f s (load %s)" % (side, rerun["seconds"], rerun["load_after"]),
                      file=sys.stderr, flush=True)
        for side, checkout in sides.items():
            work = os.path.join(args.work, side)
            run(checkout, [python_of(checkout), "benchmarks/scale.py", "--onboard-only", str(args.nodes),
                           "--profiles", work, "--json", os.path.join(work, "onboard.json")],
                side_env(args.lab_prefix, side), 3600)
            with open(os.path.join(work, "onboard.json"), encoding="utf-8") as handle:
                onboarding = json.load(handle)["onboarding"]
            if not (onboarding["kea_kept_running"] and onboarding["lease_kept"] and onboarding["new_node_script"]):
                raise SystemExit("%s: onboarding did not keep DHCP running or its leases: %s" % (side, onboarding))
            results[side]["onboard"] = onboarding["seconds"]
            print("%s: onboarding %.1f s" % (side, onboarding["seconds"]), file=sys.stderr, flush=True)
    finally:
        for side, checkout in sides.items():
            subprocess.run([python_of(checkout), "tests/lab/lab.py", "down"], cwd=checkout,
                           env=side_env(args.lab_prefix, side), capture_output=True, check=False, timeout=600)
    old, new = results["old"], results["new"]
    summary = {
        "nodes": args.nodes,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "old": old, "new": new,
        "converge_ratio": new["converge"] / old["converge"],
        "rerun_median_ratio": statistics.median(new["reruns"]) / statistics.median(old["reruns"]),
        "rerun_pair_ratios": [n / o for n, o in zip(new["reruns"], old["reruns"])],
        "onboard_ratio": new["onboard"] / old["onboard"],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
