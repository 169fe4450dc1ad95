# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Onboarding as an operator does it: one more node in the inventory, playbooks/onboard.yml,
power it on, and it boots its profile from its fixed address; then the node leaves the
inventory again and onboard.yml takes its script and its reservation away.

Kea takes the new reservation by a reload (same process); ISC dhcpd restarts."""

from __future__ import annotations

import pytest
from labkit.client import boot, booted_profile, pxe_shell, unit_state
from labkit.facts import LAB_INVENTORY, node_script_path, scenario_inventory
from labkit.playbook import ansible_playbook, recap

# The node this test adds to the inventory (and takes out again).
NAME, MAC, ADDRESS, PROFILE = "node09", "52:54:00:00:09:01", "192.0.2.19", "worker"
SCRIPT = "/srv/centra-pxe/http" + node_script_path(MAC)
DHCP_CONFIGS = {"kea": "/etc/kea/kea-dhcp4.conf", "isc": "/etc/dhcp/dhcpd.conf"}
DHCP_UNITS = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server"}


@pytest.fixture(name="new_node_inventory")
def fixture_new_node_inventory(tmp_path):
    path = tmp_path / "new-node.yml"
    path.write_text("all:\n  children:\n    pxe_nodes:\n      children:\n        %s:\n          hosts:\n"
                    "            %s: {pxe_mac: \"%s\", pxe_ip: %s}\n" % (PROFILE, NAME, MAC, ADDRESS))
    return str(path)


def onboard(*extra_inventories: str):
    run = ansible_playbook("onboard.yml", inventories=(scenario_inventory(), LAB_INVENTORY, *extra_inventories))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return recap(run.stdout)["pxe01"]


def test_onboard_a_node_boot_it_then_take_it_out(backend, new_node_inventory):
    unit, config = DHCP_UNITS[backend], DHCP_CONFIGS[backend]
    assert pxe_shell("test -e %s && echo present || echo absent" % SCRIPT).stdout.strip() == "absent"
    pid_before = unit_state(unit)["MainPID"]

    added = onboard(new_node_inventory)
    assert added["changed"] > 0 and added["failed"] == 0
    assert pxe_shell("test -f %s && grep -c %s %s" % (SCRIPT, MAC, config)).stdout.strip() != "0"
    state = unit_state(unit)
    assert state["ActiveState"] == "active"
    if backend == "kea":
        assert state["MainPID"] == pid_before, "Kea was restarted, not reloaded"

    result = boot(MAC, "bios")
    assert booted_profile(result["line"]) == PROFILE
    # Its script came from its reserved address: the reservation is live.
    access = pxe_shell("grep ' %s 200 .* %s ' /var/log/nginx/centra-pxe.access.log || true"
                       % (ADDRESS, node_script_path(MAC))).stdout
    assert access.strip(), "no fetch of node09's script from %s in nginx's access log" % ADDRESS

    removed = onboard()
    assert removed["changed"] > 0 and removed["failed"] == 0
    assert pxe_shell("test -e %s && echo present || echo absent" % SCRIPT).stdout.strip() == "absent"
    assert pxe_shell("grep -c %s %s || true" % (MAC, config)).stdout.strip() == "0"
