# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The parts of labkit that need no lab: reading the inventories and ansible-playbook's output.

Runs in scripts/test.sh's `harness` stage (PYTHONPATH: tests/lab and the collection path),
no root needed.
"""

from __future__ import annotations

import os

import pytest
from labkit.common import LabError
from labkit.facts import LAB_INVENTORY, PROJECT, inventory_facts, node_script_path
from labkit.playbook import recap, task_results

RELAY_INVENTORY = os.path.join(PROJECT, "molecule", "relay", "inventory")


def test_the_lab_inventory_nodes_are_read_with_profiles_and_canonical_macs():
    nodes = inventory_facts([LAB_INVENTORY]).nodes
    assert sorted(nodes) == ["node01", "node02", "node03", "node04", "node07"]
    assert nodes["node07"].boot == "netboot" and nodes["node01"].boot == "install"
    assert (nodes["node01"].profile, nodes["node01"].macs, nodes["node01"].ip) == \
        ("control_plane", ("52:54:00:00:01:01",), "192.0.2.11")
    assert nodes["node04"].profile == "worker" and nodes["node04"].macs == ("52:54:00:00:04:01", "52:54:00:00:04:02")


def test_servers_subnets_and_menu_come_from_the_generated_and_scenario_inventories(tmp_path):
    generated = tmp_path / "inventory.yml"
    generated.write_text("all:\n  children:\n    pxe_servers:\n      hosts:\n"
                         "        pxe01: {ansible_host: 192.0.2.2}\n        pxe02: {ansible_host: 192.0.2.3}\n")
    facts = inventory_facts([str(generated), LAB_INVENTORY, RELAY_INVENTORY])
    assert facts.servers == {"pxe01": "192.0.2.2", "pxe02": "192.0.2.3"}
    assert facts.server_address == "192.0.2.2" and facts.http_base == "http://192.0.2.2"
    assert facts.menu_default == "worker" and facts.backend == "kea"
    far = facts.subnet("198.51.100.0/24")
    assert far.gateway == "198.51.100.1" and far.in_pool("198.51.100.150") and not far.in_pool("198.51.100.15")
    assert facts.nodes["node06"].ip is None and facts.nodes["node05"].ip == "198.51.100.15"


def test_no_server_is_a_clear_error():
    with pytest.raises(LabError, match="no host in group pxe_servers"):
        assert inventory_facts([LAB_INVENTORY]).server_address


@pytest.mark.parametrize("mac", ["52:54:00:00:01:01", "52-54-00-00-01-01", "5254.0000.0101", "525400000101"])
def test_node_script_path_is_the_hyphen_form(mac):
    assert node_script_path(mac) == "/nodes/52-54-00-00-01-01.ipxe"


RUN = """
TASK [centra.pxe.pxe_server : Build the boot plan] ******************************
fatal: [pxe01]: FAILED! => {"changed": false, "msg": "bad inventory", "problems": ["host n1: pxe_mac"]}

PLAY RECAP *********************************************************************
pxe01                      : ok=3    changed=0    unreachable=0    failed=1    skipped=2    rescued=0    ignored=0
pxe02                      : ok=12   changed=4    unreachable=0    failed=0    skipped=0    rescued=1    ignored=2
"""


def test_recap_reads_every_host_line():
    assert recap(RUN) == {
        "pxe01": {"ok": 3, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 2, "rescued": 0, "ignored": 0},
        "pxe02": {"ok": 12, "changed": 4, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 1, "ignored": 2},
    }


def test_task_results_reads_the_json_of_each_result():
    assert task_results(RUN) == [("Build the boot plan", "fatal", "pxe01",
                                  {"changed": False, "msg": "bad inventory", "problems": ["host n1: pxe_mac"]})]
