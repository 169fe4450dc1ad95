# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/validate.yml end to end: the real ansible-playbook, the real inventory parsers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "inventories")


def task_result(output, index):
    return output[index]


def test_twelve_mistakes_fail_once_naming_each(run_validate, tmp_path):
    run, output = run_validate(os.path.join(FIXTURES, "dozen_mistakes", "hosts.yml"))
    assert run.returncode != 0
    problems = task_result(output, 0)["problems"]
    expected = [
        "subnet 192.0.2.128/25: cidr: overlaps subnet 192.0.2.0/24",
        "subnet 198.51.100.0/24: pool: 198.51.101.10 is outside 198.51.100.0/24",
        "profile control_plane: kernel.src: /nonexistent/centra/vmlinuz does not exist",
        "profile control_plane: initrd.checksum: 'sha256:1234' is not sha256",
        "profile worker: initrd: is missing",
        "host bad-mac: pxe_mac: '52:54:00:00:01' is not a MAC address",
        "host dup-b: pxe_mac: 52:54:00:00:02:01 (written '5254.0000.0201') is also the MAC of host dup-a",
        "host dup-b: pxe_ip: 192.0.2.20 is also the address of host dup-a",
        "host in-pool: pxe_ip: 192.0.2.150 lies inside the dynamic pool",
        "host outside: pxe_ip: 203.0.113.9 is in none of pxe_subnets",
        "host bad-boot: pxe_boot: 'reinstall' is not one of install, netboot, local, menu",
        "host no-mac: pxe_mac: is missing",
        "host dup-b: profile: is in 2 profile groups (control_plane, worker)",
        "host lost: profile: is in no profile group",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems
    assert len(output) == 1 and "Report the plan" not in run.stdout  # failed once, at the first task


def test_variables_from_every_inventory_layer(run_validate):
    run, output = run_validate(os.path.join(FIXTURES, "layered", "hosts.yml"))
    assert run.returncode == 0, run.stdout[-3000:]
    plan = json.loads(task_result(output, 0)["ansible_facts"]["centra_pxe_plan"])
    nodes = {n["name"]: n for n in plan["nodes"]}
    assert nodes["node01"]["macs"] == ["52:54:00:00:01:01"] and nodes["node01"]["ip"] == "192.0.2.11"
    assert nodes["node01"]["boot"] == "local"            # group_vars/worker.yml
    assert nodes["node02"]["boot"] == "install"          # host var beats group_vars
    assert nodes["node02"]["macs"] == ["52:54:00:00:02:01", "52:54:00:00:02:02"]
    assert nodes["node03"]["boot"] == "menu"             # inventory group vars
    assert plan["profiles"]["worker"]["kernel"]["src"] == os.path.join(FIXTURES, "layered", "images", "vmlinuz")


@pytest.mark.parametrize("inventory", ["inventories/example", "inventories/lab"])
def test_shipped_inventories_are_valid(run_validate, inventory):
    path = os.path.join(ROOT, inventory)
    if inventory.endswith("lab"):
        # The lab inventory points at the lab's test images (amd64, and arm64 for node09);
        # build whichever is missing first.
        for arch in ("amd64", "arm64"):
            folder = "image" if arch == "amd64" else "image-arm64"
            if not os.path.exists("/var/cache/centra-pxe-lab/%s/vmlinuz" % folder):
                subprocess.run([sys.executable, os.path.join(ROOT, "tests", "lab", "lab.py"), "image", "--arch", arch],
                               check=True, capture_output=True, timeout=900)
    run, _output = run_validate(path)
    assert run.returncode == 0, run.stdout[-3000:]


def test_the_example_declares_two_ha_pairs_through_group_vars(run_validate):
    """pxe_dhcp_ha set on each site's group of servers reaches the plan as two relationships."""
    run, output = run_validate(os.path.join(ROOT, "inventories", "example"))
    assert run.returncode == 0, run.stdout[-3000:]
    plan = json.loads(output[0]["ansible_facts"]["centra_pxe_plan"])
    pairs = {r["mode"]: [(p["name"], p["role"], p["address"]) for p in r["peers"]] for r in plan["ha"]}
    assert pairs == {
        "hot-standby": [("pxe-fra1", "primary", "198.51.100.2"), ("pxe-fra2", "standby", "198.51.100.3")],
        "load-balancing": [("pxe-ams1", "primary", "198.51.100.130"), ("pxe-ams2", "secondary", "192.0.2.131")],
    }
    fra = next(r for r in plan["ha"] if r["mode"] == "hot-standby")
    assert fra["max_response_delay_ms"] == 20000 and fra["max_unacked_clients"] == 5 and fra["port"] == 8001
