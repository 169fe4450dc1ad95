# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian installer as a profile (issue 14, docs/debian-installer.md): a node of the
lab's installer profile boots d-i under Secure Boot (OVMF with the Microsoft keys, shim ->
signed GRUB -> the Debian-signed installer kernel from debian-installer-12-netboot-amd64),
d-i fetches the node's preseed from nginx, and its early_command reports `started` with
the node's token; the lifecycle service records it. d-i prints no marker and the lab has
no package mirror, so the machine runs until the event is in the node's state (bounded)
and is then stopped: the install itself goes no further."""

from __future__ import annotations

import json
import re

import pytest
from labkit.client import boot_until, lab_exec, pxe_shell
from labkit.facts import lab_facts

LAB = lab_facts()
SERVER = LAB.server_address
ACCESS_LOG = "/var/log/nginx/centra-pxe.access.log"
INSTALLER_PROFILE = "debian_installer"
# d-i under TCG, measured in the lab: ~4 to 5 minutes from power-on to early_command.
TIMEOUT = 900


def node_state(mac: str) -> dict:
    return json.loads(lab_exec("curl", "-sS", "--max-time", "10", "http://%s/api/v1/nodes/%s" % (SERVER, mac)).stdout)


def clock() -> float:
    return float(pxe_shell("date +%s.%N").stdout)


@pytest.fixture(name="installer_node")
def fixture_installer_node():
    nodes = sorted((name for name, n in LAB.nodes.items() if n.profile == INSTALLER_PROFILE and n.loader == "grub"))
    if not nodes:
        pytest.fail("inventories/lab has no node of profile %s with pxe_loader: grub" % INSTALLER_PROFILE)
    return LAB.nodes[nodes[0]]


def test_the_preseed_is_served_and_names_the_node(installer_node):
    mac = installer_node.macs[0]
    preseed = lab_exec("curl", "-sS", "-f", "--max-time", "10",
                       "http://%s/preseed/%s.cfg" % (SERVER, mac.replace(":", "-"))).stdout
    assert "d-i netcfg/hostname string %s\n" % installer_node.name in preseed
    assert "d-i preseed/early_command string " in preseed and '{"event":"started"}' in preseed
    # The token is read from /proc/cmdline at install time: none is written here.
    assert "s/^centra\\.token=//p" in preseed and not re.search(r"Bearer [A-Za-z0-9]", preseed)


def test_d_i_boots_under_secure_boot_fetches_its_preseed_and_reports_started(installer_node):
    mac = installer_node.macs[0]
    before = node_state(mac)
    assert before["state"] == "install", "the node is not waiting to install: %s" % before
    start = clock()

    def started() -> bool:
        event = node_state(mac).get("last_event") or {}
        return event.get("event") == "started"

    # 1 GiB: with the lab's default 512 MiB d-i enters its low-memory mode and stops at a
    # dialog about it (seen in the lab), which no preseed can answer before it is fetched.
    result = boot_until(mac, "uefi-secureboot", started, "--memory", "1024", timeout=TIMEOUT, poll=10)
    with open(result["log"], encoding="utf-8", errors="replace") as handle:
        serial = handle.read()
    print("d-i: launch to started in the node's state: %.0f s" % result["seconds"])
    assert result["done"], "no started event within %d s; serial log %s, tail:\n%s" % (
        TIMEOUT, result["log"], serial[-3000:])
    # The signed chain: shim fetched GRUB, and the installer kernel ran with Secure Boot on.
    assert "Fetching Netboot Image grubx64.efi" in serial, "shim did not load GRUB"
    assert "secureboot: Secure boot enabled" in serial, "the kernel did not run under Secure Boot"
    # nginx served this node's preseed (d-i asked for it by the URL on its command line).
    fetched = pxe_shell("awk -v s=%s '$1 >= s && $3 == 200 && $5 == \"GET\" && $6 == \"/preseed/%s.cfg\"' %s | wc -l"
                        % (start, mac.replace(":", "-"), ACCESS_LOG)).stdout
    assert int(fetched) >= 1, "nginx logged no GET /preseed/%s.cfg" % mac.replace(":", "-")
    after = node_state(mac)
    assert after["name"] == installer_node.name and after["profile"] == INSTALLER_PROFILE
    assert after["last_event"]["event"] == "started" and after["state"] != "installed", after
    assert after["generation"] == before["generation"]  # accepted with the token of this generation
