# SPDX-License-Identifier: GPL-3.0-or-later
"""centra.pxe.node_scripts at scale: the first write and the rerun of every node's scripts.

At 100,000 nodes the module writes 300,001 files (the node script and the lifecycle
service's install/ and local/ variants of every node) and a rerun reads them all back;
in the 100,000-node converge (BENCHMARKS.md) this was the slowest task, 50 s.

One plan (N nodes of three profiles, all `pxe_boot: install`), then per round and per
checkout, in turn: a fresh directory, `sync`, the module's main() on an empty tree (the
first converge), then again on the written tree (the rerun, which must change nothing).
Each run is a process of its own; its wall-clock time and CPU time (user + system of all
its threads) are reported, and with --against DIR the this/against ratio of the medians.

    .venv/bin/python benchmarks/node_scripts_write.py --nodes 100000 --against /tmp/old --rounds 3

(`git worktree add /tmp/old <commit>` makes the other checkout.) The trees go under --dir
(default /var/tmp: the same filesystem as the lab's containers on this machine) and are
removed after each run, outside the timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchlib import checkout_arguments, bench_collections, first_and_rerun_medians, import_collection, load, stamp  # noqa: E402

# Run in a process of its own with the checkout's collection first on sys.path.
WORKER = r"""
import io, json, resource, sys, time
from ansible.module_utils.testing import patch_module_args
from ansible_collections.centra.pxe.plugins.modules import node_scripts

args = json.loads(sys.argv[1])
with open(args.pop("plan_file"), encoding="utf-8") as handle:
    args["plan"] = handle.read()
times = {}
for phase in ("first", "rerun"):
    wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    real_stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        with patch_module_args(args):
            node_scripts.main()
    except SystemExit as exc:
        code = exc.code
    finally:
        output, sys.stdout = sys.stdout.getvalue(), real_stdout
    after = resource.getrusage(resource.RUSAGE_SELF)
    times[phase] = {"seconds": time.perf_counter() - wall, "exit": code, "changed": json.loads(output)["changed"],
                    "cpu_s": (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)}
print(json.dumps(times))
"""


def write_plan(nodes: int, path: str) -> None:
    import_collection()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
    from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

    asset = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
    profiles = {name: {"kernel": asset, "initrd": asset, "cmdline": "panic=-1"}
                for name in ("control_plane", "worker", "all_in_one")}
    hosts = {"n%06d" % i: {"groups": [sorted(profiles)[i % 3]],
                           "pxe_mac": "52:54:%02x:%02x:%02x:%02x" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255)}
             for i in range(nodes)}
    plan = build_plan([{"cidr": "198.18.0.0/15", "pool": "198.19.200.1-198.19.255.254"}], profiles, hosts)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(dump_plan(plan))


def run_once(checkout: str, plan_file: str, base: str) -> dict:
    tree = tempfile.mkdtemp(prefix="centra-pxe-scripts-", dir=base)
    try:
        args = {"plan_file": plan_file, "http_base": "http://192.0.2.2",
                "settings": {"menu_timeout": 5, "menu_default": "worker", "console": ["tty0"],
                             "retry_seconds": 10, "title": "centra.pxe"},
                "dest": os.path.join(tree, "http", "nodes"), "lifecycle_dest": os.path.join(tree, "lifecycle"),
                "preseed_dest": os.path.join(tree, "http", "preseed"), "preseed_base": "http://192.0.2.2"}
        subprocess.run(["sync"], check=True)
        env = dict(os.environ, PYTHONPATH=bench_collections(checkout))
        run = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], capture_output=True, text=True,
                             env=env, check=False)
        if run.returncode != 0:
            raise SystemExit("node_scripts run failed (%s):\n%s" % (checkout, run.stderr[-3000:]))
        result = json.loads(run.stdout)
        files = sum(len(names) for _root, _dirs, names in os.walk(tree))
        result["files"] = files
        return result
    finally:
        shutil.rmtree(tree)
        subprocess.run(["sync"], check=True)


def main() -> int:
    args, checkouts = checkout_arguments(__doc__.split("\n", 1)[0], "where the trees are written (default /var/tmp)")
    runs: dict = {name: [] for name, _checkout in checkouts}
    with tempfile.TemporaryDirectory() as work:
        plan_file = os.path.join(work, "plan.json")
        write_plan(args.nodes, plan_file)
        print("%s, %d nodes, load %s" % (stamp(), args.nodes, load()))
        for round_number in range(args.rounds):
            # Who goes first alternates: the first run after a removal can be the faster.
            for name, checkout in (checkouts if round_number % 2 == 0 else checkouts[::-1]):
                result = run_once(checkout, plan_file, args.dir)
                for phase in ("first", "rerun"):
                    if result[phase]["exit"] != 0 or result[phase]["changed"] != (phase == "first"):
                        raise SystemExit("%s: the %s run exited %s, changed=%s" % (
                            name, phase, result[phase]["exit"], result[phase]["changed"]))
                runs[name].append(result)
                print("round %d %-8s first %6.1f s (CPU %5.1f s)  rerun %6.1f s (CPU %5.1f s)  %d files  load %s" % (
                    round_number + 1, name, result["first"]["seconds"], result["first"]["cpu_s"],
                    result["rerun"]["seconds"], result["rerun"]["cpu_s"], result["files"], load()))
    first_and_rerun_medians(runs, args.json, {"date": stamp(), "nodes": args.nodes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
