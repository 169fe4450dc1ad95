# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot plan build (centra.pxe.boot_plan) vs a Jinja loop over hostvars, same inventory, same run.

Both read what a PXE server needs of every node (MACs, address, boot mode, groups);
the Jinja side does no validation at all, the plan side validates everything.
Then one task renders from the plan what a server's roles do (Kea, menu, entry script,
healthz, endpoint: five filters on the one plan string).
Prints one row per size with the times and the Jinja/plan ratio. Times are this machine's.

--against DIR also runs the same benchmark on another checkout of the collection (e.g.
`git worktree add /tmp/old main`), interleaved with this one, size by size, and prints
the new/old ratio of the plan build and of the render task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _benchlib import bench_collections  # noqa: E402
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
    - name: Render what a server's roles render from the plan
      ansible.builtin.set_fact:
        rendered: >-
          {{ [(centra_pxe_plan | centra.pxe.kea_config(server, kea) | to_json | length),
              (centra_pxe_plan | centra.pxe.ipxe_menu_script(server.http_base, ipxe) | length),
              (centra_pxe_plan | centra.pxe.ipxe_entry_script(server.http_base, ipxe) | length),
              (centra_pxe_plan | centra.pxe.healthz | length),
              (centra_pxe_plan | centra.pxe.server_endpoint(facts, 'eth1', '198.18.0.1')).address] }}
      vars:
        server: {name: pxe01, address: 198.18.0.1, http_base: "http://198.18.0.1",
                 loaders: {bios: undionly.kpxe, efi32: "", efi64: ipxe.efi, arm32: "", arm64: ""}}
        kea: {interfaces: [eth1], lease_file: /var/lib/kea/kea-leases4.csv, control_socket: /run/kea/kea4-ctrl-socket,
              valid_lifetime: 3600, authoritative: true, socket_retries: 60, socket_retry_wait_ms: 5000,
              log_severity: INFO, hooks_dir: /usr/lib/x86_64-linux-gnu/kea/hooks,
              ha_tls_dir: /etc/kea/ha-tls, host_database: false}
        ipxe: {menu_timeout: 30, menu_default: local, console: [tty0, "ttyS0,115200"], retry_seconds: 10, title: centra.pxe}
        facts: {interfaces: [eth1], eth1: {ipv4: {address: 198.18.0.1}}}
    - name: Rendered
      ansible.builtin.set_fact:
        t3: "{{ now(utc=true).timestamp() }}"
    - name: Report
      ansible.builtin.debug:
        msg: "RESULT {{ {'plan_s': (t1 | float) - (t0 | float), 'jinja_s': (t2 | float) - (t1 | float),
               'render_s': (t3 | float) - (t2 | float),
               'plan_nodes': (centra_pxe_plan | from_json).nodes | length, 'jinja_nodes': jinja_nodes | length} | to_json }}"
"""


def measure(nodes: int, work: str, collections: str) -> dict:
    asset = os.path.join(work, "asset")
    with open(asset, "wb") as handle:
        handle.write(b"x" * 4096)
    inventory = write_inventory(os.path.join(work, "inv%d" % nodes), nodes, asset)
    playbook = os.path.join(work, "bench.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, playbook],
                         capture_output=True, text=True, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r'RESULT (\{.*?\})"', run.stdout)
    if run.returncode != 0 or not match:
        raise SystemExit("benchmark run failed for %d nodes:\n%s" % (nodes, run.stdout[-3000:] + run.stderr[-2000:]))
    result = json.loads(match.group(1).replace('\\"', '"'))
    assert result["plan_nodes"] == result["jinja_nodes"] == nodes
    result["nodes"] = nodes
    # CPU seconds of the whole run (ansible-playbook and its workers): on a busy machine a
    # steadier measure of the work than the wall-clock times of the stages.
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["ratio"] = result["jinja_s"] / result["plan_s"] if result["plan_s"] > 0 else float("inf")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--against", metavar="DIR", help="another checkout of the collection to compare with")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --against: runs per size, the two checkouts in turn first")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = [("this", here)] + ([("against", args.against)] if args.against else [])
    paths = {label: bench_collections(path) for label, path in checkouts}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        print("%8s %8s %12s %14s %8s %11s %12s"
              % ("code", "nodes", "plan (s)", "jinja loop (s)", "ratio", "render (s)", "run CPU (s)"))
        for size in (int(s) for s in args.sizes.split(",")):
            sums: dict = {}
            for round_ in range(args.rounds if args.against else 1):
                for label, _path in (checkouts if round_ % 2 == 0 else checkouts[::-1]):
                    row = dict(measure(size, work, paths[label]), code=label, round=round_)
                    rows.append(row)
                    total = sums.setdefault(label, {"plan_s": 0.0, "render_s": 0.0, "cpu_s": 0.0})
                    for key in total:
                        total[key] += row[key]
                    print("%8s %8d %12.3f %14.3f %7.1fx %11.3f %12.2f"
                          % (label, size, row["plan_s"], row["jinja_s"], row["ratio"], row["render_s"], row["cpu_s"]),
                          flush=True)
            if "against" in sums:
                print("%8s %8d   this/against over %d round(s): plan build %.2f, render %.2f, run CPU %.2f" % (
                    "", size, args.rounds, sums["this"]["plan_s"] / sums["against"]["plan_s"],
                    sums["this"]["render_s"] / sums["against"]["render_s"],
                    sums["this"]["cpu_s"] / sums["against"]["cpu_s"]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
