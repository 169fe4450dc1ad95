# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot trace (issue 13), end to end: the daemons' own feeders (Kea's lease and class
log lines, or dhcpd's log lines, and tftpd-hpa --verbose, all through the journal feeder;
nginx's syslog access log) into the lifecycle service, read back through its API.

No boot of its own: the install boots of test_install_once (which pytest runs right
before this file: the name keeps it there) are the machines traced here. The suite's
hostile-input tests come later: their requests from a node's address fill that node's
bounded trace and push its install events out. An unknown machine is a DISCOVER from labkit's
dhcp_probe; the flood is perfdhcp posing as a relay, on lab addresses only.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from labkit.client import lab_exec, pxe_shell
from labkit.common import BRIDGE
from labkit.facts import LAB_INVENTORY, PROJECT, ansible_command, lab_facts, scenario_inventory


LAB = lab_facts()
NODES = LAB.nodes
SERVER = LAB.server_address
KEA = os.environ.get("MOLECULE_SCENARIO_NAME", "default") != "isc"
# The install boots test_install_once made in this scenario (the same list as there).
INSTALLS = [("node01", "bios"), ("node02", "uefi")] if KEA else [("node02", "uefi")]
# Option 93 as each firmware of the lab sends it: SeaBIOS's iPXE ROM 0, OVMF x86-64 7.
ARCH = {"bios": 0, "uefi": 7}
LIFECYCLE_CONFIG = "/etc/centra-pxe/lifecycle.json"


def api(path: str) -> dict:
    run = lab_exec("curl", "-sS", "--fail", "--max-time", "10", "http://%s/api/v1/%s" % (SERVER, path))
    return json.loads(run.stdout)


def events(mac: str) -> list[dict]:
    return api("nodes/%s/events" % mac)["events"]


def discovered() -> dict[str, dict]:
    return {entry["mac"]: entry for entry in api("discovered")["discovered"]}


def wait_for(what, timeout: float = 30.0, interval: float = 1.0):
    """what() until it is truthy (the feeders and the service's writer are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def install_steps(firmware: str) -> list[tuple[str, object]]:
    """What an install boot shows, in order: (description, predicate on an event)."""
    steps: list[tuple[str, object]] = [("DHCP", lambda e: e["src"] == "dhcp")]
    if firmware == "uefi":
        # OVMF's own PXE client fetches iPXE over TFTP first.
        steps.append(("TFTP loader", lambda e: e["src"] == "tftp" and e["kind"] == "loader"))
    steps += [
        ("install script", lambda e: e["src"] == "http" and e["kind"] == "install_script"),
        ("kernel", lambda e: e["src"] == "http" and e["kind"] == "kernel" and e.get("status") == 200),
        ("initrd", lambda e: e["src"] == "http" and e["kind"] == "initrd" and e.get("status") == 200),
        ("installer started", lambda e: e["src"] == "lifecycle" and e.get("event") == "started"),
        ("installer installed", lambda e: e["src"] == "lifecycle" and e.get("event") == "installed"),
    ]
    return steps


def in_order(timeline: list[dict], steps) -> tuple[list[dict], str]:
    """The first events matching the steps one after the other, and the step not found (or "")."""
    found, position = [], 0
    for name, matches in steps:
        while position < len(timeline) and not matches(timeline[position]):
            position += 1
        if position == len(timeline):
            return found, name
        found.append(timeline[position])
        position += 1
    return found, ""


@pytest.mark.parametrize("name, firmware", INSTALLS, ids=["%s-%s" % i for i in INSTALLS])
def test_an_install_boot_is_traced_in_order(name, firmware):
    mac = NODES[name].macs[0]
    timeline = events(mac)
    found, missing = in_order(timeline, install_steps(firmware))
    assert not missing, "no %s after %s in the trace of %s:\n%s" % (
        missing, [(e["src"], e["kind"]) for e in found], name,
        "\n".join(json.dumps(e, sort_keys=True) for e in timeline[:60]))
    assert [e["ts"] for e in found] == sorted(e["ts"] for e in found)
    dhcp = [e for e in timeline if e["src"] == "dhcp"]
    assert any(e.get("arch") == ARCH[firmware] for e in dhcp), "option 93 %d in no DHCP event: %s" % (ARCH[firmware], dhcp[:6])
    assert all(e["mac"] == mac for e in dhcp)
    acks = [e for e in dhcp if e["kind"] == "dhcp_ack" and e.get("ip") == NODES[name].ip]
    assert acks, "no ack of %s in the trace: %s" % (NODES[name].ip, dhcp[:6])
    # From the server that gave it: Kea's DHCP4_LEASE_ALLOC line, or dhcpd's trace line.
    assert all(e.get("server") == ("kea" if KEA else "dhcpd") for e in acks), acks
    if KEA:
        # Joined to the class line of its REQUEST: the firmware's ack names its option 93.
        assert any(e.get("arch") == ARCH[firmware] for e in acks), acks
    kernel = next(e for e in found if e.get("kind") == "kernel")
    assert kernel["bytes"] > 1_000_000 and kernel["seconds"] >= 0, kernel


def test_an_unknown_machine_is_discovered_with_its_architecture():
    """A DISCOVER alone (no lease committed) from a MAC in no inventory, as x86-64 UEFI firmware sends it."""
    mac = "02:ce:13:00:00:07"
    assert mac not in {m for node in NODES.values() for m in node.macs}
    run = lab_exec(sys.executable, "-m", "labkit.dhcp_probe", "--iface", BRIDGE, "--case", "arch7", "--mac", mac,
                   timeout=120)
    assert json.loads(run.stdout.strip().splitlines()[-1])["offer"], run.stdout
    entry = wait_for(lambda: discovered().get(mac))
    assert entry, "%s not in /api/v1/discovered" % mac
    assert entry["arch"] == 7 and entry["vendor"].startswith("PXEClient:Arch:00007"), entry
    assert entry["ip"] and LAB.subnets[0].in_pool(entry["ip"]), entry
    # status.yml: the discovered machines as an inventory snippet to paste under a profile
    # group. Run from the lab network, as an operator's controller in pxe_subnets would.
    command = ["env", "ANSIBLE_CONFIG=%s/ansible.cfg" % PROJECT, "ANSIBLE_NOCOLOR=1",
               "ANSIBLE_COLLECTIONS_PATH=%s/.ansible/collections" % PROJECT,
               ansible_command("ansible-playbook"), "-i", scenario_inventory(), "-i", LAB_INVENTORY,
               os.path.join(PROJECT, "playbooks", "status.yml")]
    status = lab_exec(*command, timeout=300, check=False)
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-2000:]
    assert '"    pxe_mac: \\"%s\\""' % mac in status.stdout, status.stdout[-3000:]


def _lifecycle_config() -> dict:
    return json.loads(pxe_shell("cat %s" % LIFECYCLE_CONFIG).stdout)


def _set_lifecycle_config(config: dict) -> None:
    pxe_shell("printf '%%s\\n' %s > %s && systemctl restart centra-pxe-lifecycle"
              % (json.dumps(json.dumps(config)).replace("$", "\\$"), LIFECYCLE_CONFIG))
    # Answering again before the next test reads the API.
    assert wait_for(lambda: lab_exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                     "http://%s/api/v1/nodes" % SERVER, check=False).stdout == "200")


@pytest.fixture
def short_stall():
    """A test-only override: stall after 5 s instead of the role's hours, restored afterwards."""
    original = _lifecycle_config()
    _set_lifecycle_config(dict(original, stall_seconds=5))
    try:
        yield 5
    finally:
        _set_lifecycle_config(original)


def test_a_node_whose_installer_never_reports_turns_stalled(short_stall):
    """node03, re-armed, fetches its installer's kernel from its fixed address (as its
    firmware would) and then nothing: after the stall time it shows as stalled."""
    node = NODES["node03"]
    pxe_shell("centra-pxe-lifecycle rearm node03")
    address, mac = node.ip, node.macs[0]
    lab_exec("ip", "addr", "add", "%s/32" % address, "dev", BRIDGE)
    try:
        # An nginx worker loses the first event after the service (and its socket) restarted:
        # its syslog connection to the old socket fails once, then it reconnects. So: fetch
        # until the service has seen the kernel (at most once per worker and one more).
        for _attempt in range(4):
            lab_exec("curl", "-sS", "--fail", "-o", "/dev/null", "--max-time", "60", "--interface", address,
                     "http://%s/profiles/%s/vmlinuz" % (SERVER, node.profile))
            if wait_for(lambda: api("nodes/%s" % mac).get("install_booted_at"), timeout=5):
                break
    finally:
        lab_exec("ip", "addr", "del", "%s/32" % address, "dev", BRIDGE, check=False)

    def stalled() -> dict | None:
        state = api("nodes/%s" % mac)
        return state if state.get("display_state") == "stalled" else None

    state = wait_for(stalled, timeout=short_stall + 30)
    assert state, api("nodes/%s" % mac)
    assert state["state"] == "install" and state["stalled"] is True and state["install_booted_at"], state


def test_a_flood_of_discovers_leaves_the_store_bounded_and_the_traces_intact():
    """10,000 DISCOVERs from random MACs (perfdhcp as a relay on the lab bridge, at most
    60 s): the service stays up, the discovered machines stay within their bound, the
    database stays small, and the traced install boots are still there."""
    before = {name: events(NODES[name].macs[0]) for name, _firmware in INSTALLS}
    config = _lifecycle_config()
    size_before = int(pxe_shell("du -sb /var/lib/centra-pxe-lifecycle | cut -f1").stdout)
    run = lab_exec("perfdhcp", "-4", "-l", "192.0.2.1", "-i", "-r", "1000", "-n", "10000", "-R", "10000",
                   "-p", "60", "-o", "93,0007", SERVER, timeout=180, check=False)
    assert run.returncode in (0, 3), run.stdout[-2000:] + run.stderr[-2000:]  # 3: packets dropped, a result
    assert "sent packets:" in run.stdout, run.stdout[-2000:]
    time.sleep(5)  # the journal feeder and the service's writer catch up
    assert pxe_shell("systemctl is-active centra-pxe-lifecycle").stdout.strip() == "active"
    machines = discovered()
    bound = config.get("discovered_max", 10000)
    assert len(machines) <= bound
    size_after = int(pxe_shell("du -sb /var/lib/centra-pxe-lifecycle | cut -f1").stdout)
    print("trace store: %d bytes before, %d after the flood; %d discovered machines (bound %d)"
          % (size_before, size_after, len(machines), bound))
    assert size_after < 64 * 1024 * 1024
    for name, firmware in INSTALLS:
        after = events(NODES[name].macs[0])
        found_before = in_order(before[name], install_steps(firmware))[0]
        found_after, missing = in_order(after, install_steps(firmware))
        assert not missing and found_after == found_before, (name, missing)
