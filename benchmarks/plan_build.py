# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot plan build (centra.pxe.boot_plan) vs a Jinja loop over hostvars, same inventory, same run.

Both read what a PXE server needs of every node (MACs, address, boot mode, groups);
the Jinja side does no validation at all, the plan side validates everything.
Prints one row per size with both times and their ratio. Times are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchlib import collections_path  # noqa: E402
from inventory_gen import write_inventory  # noqa: E402

PLAYBOOK = """
- name: Plan build against a Jinja loop over hostvars
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Start
      ansible.builtin.set_fact:
        t0: "{{ now(utc=true).timestamp() }}"
    - name: Boot plan
      centra.pxe.boot_plan:
        subnets: "{{ pxe_subnets }}"
        profiles: "{{ pxe_profiles }}"
    - name: Between
      ansible.builtin.set_fact:
        t1: "{{ now(utc=true).timestamp() }}"
    - name: Jinja loop over hostvars
      ansible.builtin.set_fact:
        jinja_nodes: >-
          {% set out = [] %}{% for h in groups['pxe_nodes'] %}{% set v = hostvars[h] %}{% set _ = out.append(
          {'name': h, 'mac': v.pxe_mac, 'ip': v.pxe_ip | default(none), 'boot': v.pxe_boot | default('install'),
           'groups': v.group_names}) %}{% endfor %}{{ out }}
    - name: End
      ansible.builtin.set_fact:
        t2: "{{ now(utc=true).timestamp() }}"
    - name: Report
      ansible.builtin.debug:
        msg: "RESULT {{ {'plan_s': (t1 | float) - (t0 | float), 'jinja_s': (t2 | float) - (t1 | float),
               'plan_nodes': (centra_pxe_plan | from_json).nodes | length, 'jinja_nodes': jinja_nodes | length} | to_json }}"
"""


def measure(nodes: int, work: str) -> dict:
    asset = os.path.join(work, "asset")
    with open(asset, "wb") as handle:
        handle.write(b"x" * 4096)
    inventory = write_inventory(os.path.join(work, "inv%d" % nodes), nodes, asset)
    playbook = os.path.join(work, "bench.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, playbook],
                         capture_output=True, text=True, env=env, check=False)
    match = re.search(r'RESULT (\{.*?\})"', run.stdout)
    if run.returncode != 0 or not match:
        raise SystemExit("benchmark run failed for %d nodes:\n%s" % (nodes, run.stdout[-3000:] + run.stderr[-2000:]))
    result = json.loads(match.group(1).replace('\\"', '"'))
    assert result["plan_nodes"] == result["jinja_nodes"] == nodes
    result["nodes"] = nodes
    result["ratio"] = result["jinja_s"] / result["plan_s"] if result["plan_s"] > 0 else float("inf")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        print("%8s %12s %14s %8s" % ("nodes", "plan (s)", "jinja loop (s)", "ratio"))
        for size in (int(s) for s in args.sizes.split(",")):
            row = measure(size, work)
            rows.append(row)
            print("%8d %12.3f %14.3f %7.1fx" % (size, row["plan_s"], row["jinja_s"], row["ratio"]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
