# SPDX-License-Identifier: GPL-3.0-or-later
"""The lifecycle service's `apply-plan` at scale: the first sync of N nodes and the rerun.

`apply-plan` is what the role runs on every converge (roles/pxe_lifecycle/tasks/plan.yml):
the plan on stdin, the node states reconciled with it in SQLite, and every install node's
boot file made to agree. In the 100,000-node rerun (BENCHMARKS.md) it was the slowest
task, 14.5 s, with nothing to change.

One plan (N install nodes, benchmarks/node_scripts_write.py's) and its install/ and local/
variants written once by this checkout's node_scripts module; then per round and per
checkout, in turn (who goes first alternates): a fresh state directory, `apply-plan`
(must report a change), `apply-plan` again (must report none). Each is a process of its
own, timed from start to exit, with its CPU time.

    .venv/bin/python benchmarks/lifecycle_apply_plan.py --nodes 100000 --against /tmp/old --rounds 3
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchlib import checkout_arguments, first_and_rerun_medians, import_collection, load, stamp  # noqa: E402
from node_scripts_write import write_plan  # noqa: E402

PROGRAM = os.path.join("roles", "pxe_lifecycle", "files", "centra_pxe_lifecycle.py")


def write_variants(plan_file: str, scripts_dir: str) -> None:
    """The install/ and local/ scripts of every node, as the role writes them."""
    import_collection()
    # pylint: disable=import-outside-toplevel
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.centra.pxe.plugins.modules import node_scripts

    with open(plan_file, encoding="utf-8") as handle:
        plan = handle.read()
    args = {"plan": plan, "http_base": "http://192.0.2.2", "dest": os.path.join(scripts_dir, "static"),
            "lifecycle_dest": scripts_dir,
            "settings": {"menu_timeout": 5, "menu_default": "worker", "console": ["tty0"], "retry_seconds": 10,
                         "title": "centra.pxe"}}
    real_stdout, sys.stdout = sys.stdout, io.StringIO()
    try:
        with patch_module_args(args):
            node_scripts.main()
    except SystemExit as exc:
        if exc.code != 0:
            raise
    finally:
        sys.stdout = real_stdout


def apply_plan(program: str, state_dir: str, scripts_dir: str, plan_file: str, config: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(plan_file, "rb") as stdin:
        run = subprocess.run([sys.executable, program, "--state-dir", state_dir,
                              "--plan", os.path.join(state_dir, "plan.json"), "--scripts-dir", scripts_dir,
                              "--config", config, "apply-plan"], stdin=stdin, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit("%s apply-plan failed:\n%s" % (program, run.stderr.decode(errors="replace")[-3000:]))
    result = json.loads(run.stdout)
    return {"seconds": seconds, "changed": result["changed"], "files_written": len(result["files_written"]),
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def main() -> int:
    args, checkouts = checkout_arguments(__doc__.split("\n", 1)[0], "where the state and scripts go (default /var/tmp)")
    runs: dict = {name: [] for name, _checkout in checkouts}
    work = tempfile.mkdtemp(prefix="centra-pxe-apply-plan-", dir=args.dir)
    try:
        plan_file, scripts_dir, config = (os.path.join(work, name) for name in ("plan.json", "scripts", "config.json"))
        write_plan(args.nodes, plan_file)
        write_variants(plan_file, scripts_dir)
        with open(config, "w", encoding="utf-8") as handle:
            json.dump({"callback_base": "http://192.0.2.2:8080"}, handle)
        print("%s, %d nodes, load %s" % (stamp(), args.nodes, load()))
        for round_number in range(args.rounds):
            for name, checkout in (checkouts if round_number % 2 == 0 else checkouts[::-1]):
                state_dir = os.path.join(work, "state")
                os.mkdir(state_dir)
                subprocess.run(["sync"], check=True)
                program = os.path.join(checkout, PROGRAM)
                result = {phase: apply_plan(program, state_dir, scripts_dir, plan_file, config)
                          for phase in ("first", "rerun")}
                shutil.rmtree(state_dir)
                if not result["first"]["changed"] or result["rerun"]["changed"] \
                        or result["first"]["files_written"] != args.nodes:
                    raise SystemExit("%s: the first run must write %d boot files and the rerun change nothing: %s"
                                     % (name, args.nodes, result))
                runs[name].append(result)
                print("round %d %-8s first %6.1f s (CPU %5.1f s)  rerun %6.1f s (CPU %5.1f s)  load %s" % (
                    round_number + 1, name, result["first"]["seconds"], result["first"]["cpu_s"],
                    result["rerun"]["seconds"], result["rerun"]["cpu_s"], load()))
    finally:
        shutil.rmtree(work)
    first_and_rerun_medians(runs, args.json, {"date": stamp(), "nodes": args.nodes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
