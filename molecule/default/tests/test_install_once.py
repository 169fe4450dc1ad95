# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Install once, then boot from the disk (issue 12), with real machines: a BIOS machine
(SeaBIOS + iPXE ROM) and a UEFI one (OVMF's PXE client), each with a fresh disk and the
network first in its boot order, as rack servers are set up. The lab's test image is a
small installer: it reports started, writes a bootable system to the disk, reports
installed and reboots; the system on the disk prints LOCAL-BOOT-OK <node>."""

from __future__ import annotations

import json
import os
import re

import pytest
from labkit.client import boot, lab_exec, pxe_shell
from labkit.facts import lab_facts, node_script_path
from labkit.playbook import ansible_playbook, recap

LAB = lab_facts()
NODES = LAB.nodes
SERVER = LAB.server_address
ACCESS_LOG = "/var/log/nginx/centra-pxe.access.log"


def clock() -> float:
    return float(pxe_shell("date +%s.%N").stdout)


def fetched_since(start: float, path: str) -> int:
    """How many complete 200 answers nginx gave for path since start (access log format centra_pxe:
    msec, address, status, completion, method, uri, bytes, request time)."""
    out = pxe_shell("awk -v s=%s -v p=%s '$1 >= s && $3 == 200 && $4 == \"OK\" && $6 == p' %s | wc -l"
                    % (start, path, ACCESS_LOG)).stdout
    return int(out)


def node_state(mac: str) -> dict:
    run = lab_exec("curl", "-sS", "--max-time", "10", "http://%s/api/v1/nodes/%s" % (SERVER, mac))
    return json.loads(run.stdout)


def markers(result: dict) -> list[tuple[int, str]]:
    return [(m["boot"], m["line"].split()[0]) for m in result["markers"]]


def token_of(text: str) -> str:
    match = re.search(r"centra\.token=(\S+)", text)
    assert match, text
    return match.group(1)


def served_script(mac: str) -> str:
    """What nginx serves a machine with this MAC as its node script."""
    return lab_exec("curl", "-sS", "--max-time", "10", "http://%s%s" % (SERVER, node_script_path(mac))).stdout


# The token each install boot carried, by node: the reinstall test replays it.
INSTALL_TOKENS: dict[str, str] = {}


def callback(name: str, token: str, event: str = "installed") -> int:
    run = lab_exec("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                   "-H", "Authorization: Bearer %s" % token, "-H", "Content-Type: application/json",
                   "--data", json.dumps({"event": event}), "http://%s/api/v1/callback/%s" % (SERVER, name),
                   check=False)
    return int(run.stdout or 0)


# The isc scenario runs these tests too. The DHCP server matters for the PXE part only,
# so there a UEFI install cycle (dhcpd's option-93 answer, TFTP) is enough; the Kea
# scenario also runs the BIOS cycle and the reinstall.
KEA = os.environ.get("MOLECULE_SCENARIO_NAME", "default") != "isc"
INSTALLS = [("node01", "bios"), ("node02", "uefi")] if KEA else [("node02", "uefi")]


@pytest.mark.parametrize("name, firmware", INSTALLS, ids=["%s-%s" % i for i in INSTALLS])
def test_a_machine_installs_once_then_boots_from_its_disk(name, firmware):
    node = NODES[name]
    mac = node.macs[0]
    kernel = "/profiles/%s/vmlinuz" % node.profile
    start = clock()
    # First power-on, empty disk: install boot, reboot by itself, PXE again, sent to the disk.
    first = boot(mac, firmware, "--disk", name, "--fresh-disk", "--until", "LOCAL-BOOT-OK %s" % name,
                 timeout=900)
    seen = markers(first)
    assert ("PXE-BOOT-OK" in [m for _b, m in seen] and "INSTALL-OK" in [m for _b, m in seen]
            and seen[-1][1] == "LOCAL-BOOT-OK"), seen
    install_boot = next(b for b, m in seen if m == "INSTALL-OK")
    assert seen[-1][0] > install_boot, "the local boot came after a reboot: %r" % (seen,)
    assert "centra.node=%s" % name in first["cmdline"]
    assert "centra.callback=http://%s/api/v1/callback/%s" % (SERVER, name) in first["cmdline"]
    INSTALL_TOKENS[name] = token_of(first["cmdline"])
    assert fetched_since(start, kernel) == 1, "the profile's kernel was fetched once"
    assert fetched_since(start, "/profiles/%s/initrd" % node.profile) == 1
    state = node_state(mac)
    assert state["name"] == name and state["profile"] == node.profile and state["state"] == "installed", state
    assert state["installed_at"]
    # The third power-on: straight to the disk, no kernel of the profile.
    again_start = clock()
    third = boot(mac, firmware, "--disk", name, "--until", "LOCAL-BOOT-OK %s" % name, timeout=600)
    assert all(m.startswith("LOCAL-BOOT") for _b, m in markers(third)), markers(third)
    assert [b for b, _m in markers(third)] == [1] * len(markers(third)), "no reboot, no install: %r" % markers(third)
    assert fetched_since(again_start, kernel) == 0
    assert fetched_since(again_start, node_script_path(mac)) >= 1, "it asked the PXE server first"
    assert "kernel" not in served_script(mac)


@pytest.mark.skipif(not KEA, reason="the Kea scenario reinstalls; the lifecycle does not depend on the DHCP server")
def test_reinstall_installs_again_and_refuses_the_old_token():
    name = "node01"
    node = NODES[name]
    mac = node.macs[0]
    assert node_state(mac)["state"] == "installed"
    old = INSTALL_TOKENS[name]  # from the install above (pytest runs this file in order)
    assert callback(name, old, "started") in (401, 403, 409), "installed: nothing taken"
    assert node_state(mac)["state"] == "installed"
    run = ansible_playbook("reinstall.yml", "-l", name)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run.stdout)[name]["failed"] == 0
    assert node_state(mac)["state"] == "install"
    new = token_of(served_script(mac))
    assert new != old
    assert callback(name, old, "started") in (401, 403)
    start = clock()
    result = boot(mac, "bios", "--disk", name, "--until", "LOCAL-BOOT-OK %s" % name, timeout=900)
    assert "INSTALL-OK" in [m for _b, m in markers(result)], markers(result)
    assert token_of(result["cmdline"]) == new
    assert fetched_since(start, "/profiles/%s/vmlinuz" % node.profile) == 1
    assert node_state(mac)["state"] == "installed"
    assert callback(name, old, "started") in (401, 403)


def test_a_netboot_node_boots_its_profile_on_every_boot():
    node = next(n for n in NODES.values() if n.boot == "netboot")
    mac = node.macs[0]
    for _attempt in range(2):
        start = clock()
        result = boot(mac, "bios")
        assert "centra.profile=%s" % node.profile in result["line"] and "centra.token" not in result["line"]
        assert fetched_since(start, "/profiles/%s/vmlinuz" % node.profile) == 1
    assert node_state(mac)["state"] == "netboot"
