# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Packet level: DISCOVERs as firmware sends them, checked against the boot policy.

The expected answers come from decide(), the same table the configs are generated
from; the received answers come from the running daemon, over the wire."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from labkit.client import lab_exec, pxe_shell
from labkit.common import BRIDGE
from labkit.facts import LAB_INVENTORY, lab_facts, scenario_inventory
from labkit.playbook import ansible_playbook, recap

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BootServer, decide

LAB = lab_facts()
# The loaders of the lab host: the role defaults (Debian's ipxe package has no 32-bit
# or ARM EFI build, so those architectures get no iPXE file), and both shims of the grub
# chain (inventories/lab sets pxe_server_shim_loaders.arm64: every arm64 machine gets it),
# and the Secure Boot HTTP boot image (pxe_server_secure_boot_http_image: true there).
SERVER = BootServer(LAB.server_address, LAB.http_base, {"bios": "undionly.kpxe", "efi64": "ipxe.efi"},
                    shims={"efi64": "shimx64.efi", "arm64": "shimaa64.efi"},
                    http_images={"efi64": "secureboot-x64.img"})
# The lab's node of the grub chain (pxe_loader: grub in inventories/lab), and its arm64 node
# (pxe_arch: arm64, no pxe_loader).
GRUB_NODE = "node08"
ARM64_NODE = "node20"


def _probe(*args):
    run = lab_exec(sys.executable, "-m", "labkit.dhcp_probe", "--iface", BRIDGE, *args, timeout=300)
    return {a["case"]: a for a in (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))}


@pytest.fixture(scope="module")
def answers():
    return _probe()


@pytest.fixture(scope="module")
def grub_node_answers():
    """Every case from the MAC of the grub node: its reservation puts it on the grub chain."""
    return _probe("--mac", LAB.nodes[GRUB_NODE].macs[0])


@pytest.fixture(scope="module")
def arm64_node_answers():
    """Every case from the MAC of the arm64 node (loader: the server's default, ipxe)."""
    return _probe("--mac", LAB.nodes[ARM64_NODE].macs[0])


def _converge_dhcp(*extra_inventories):
    run = ansible_playbook("site.yml", "--tags", "pxe_dhcp",
                           inventories=(scenario_inventory(), LAB_INVENTORY, *extra_inventories))
    assert run.returncode == 0 and all(r["failed"] == 0 for r in recap(run.stdout).values()), run.stdout[-3000:]


@pytest.fixture(scope="module")
def grub_default_answers(tmp_path_factory):
    """Unknown machines when the server's default loader is grub: the DHCP configuration
    converged with pxe_loader: grub on the PXE servers, probed, and converged back."""
    overlay = tmp_path_factory.mktemp("grub-default") / "grub-default.yml"
    overlay.write_text("all:\n  children:\n    pxe_servers:\n      vars:\n        pxe_loader: grub\n")
    _converge_dhcp(str(overlay))
    try:
        yield _probe()
    finally:
        _converge_dhcp()


CASES = ["absent", "arch0", "arch6", "arch7", "arch9", "arch10", "arch11", "arch16", "arch19", "arch_unknown",
         "ipxe_user_class", "ipxe_option_175_efi"]


@pytest.mark.parametrize("case", CASES)
def test_answer_matches_the_policy(answers, case):
    got = answers[case]
    assert got["offer"], "no OFFER for %s" % case
    expected = decide(SERVER, arch=got["arch"], user_class=got["user_class"].encode() if got["user_class"] else None,
                      option_175=got["option_175"])
    assert got["file"] == (expected.filename or ""), (case, got, expected)
    if expected.kind == "tftp":
        assert got["siaddr"] == LAB.server_address
    if expected.kind == "http":
        assert got["vendor_class"] == "HTTPClient"
    assert LAB.subnets[0].in_pool(got["yiaddr"]), got
    # arm64 (TFTP, HTTP boot): the signed arm64 chain, although unknown machines follow iPXE.
    if case == "arch11":
        assert (expected.kind, expected.loader, got["file"]) == ("tftp", "grub", "shimaa64.efi")
    if case == "arch19":
        assert (expected.kind, got["file"]) == ("http", "%s/loaders/shimaa64.efi" % LAB.http_base)


def test_kea_logs_leases_but_no_class_verdicts_at_info(answers, backend):
    """Kea 2.2 logs an EVAL_RESULT line for every matching class of every packet at INFO
    (through kea-dhcp4.options): at the role's default severity the probes above leave
    their leases in the journal and no class verdict (those are for DEBUG)."""
    if backend != "kea":
        pytest.skip("ISC dhcpd has no class verdict lines")
    assert answers, "the probes ran"
    journal = pxe_shell("journalctl -u kea-dhcp4-server --no-pager -o cat --since -15min").stdout
    assert "DHCP4_LEASE_ADVERT" in journal
    assert "EVAL_RESULT" not in journal, [line for line in journal.splitlines() if "EVAL_RESULT" in line][:3]


def scheduling(pid: str) -> str:
    """`chrt -p`'s two lines for a process: its policy and priority."""
    return " ".join(pxe_shell("chrt -p %s" % pid).stdout.split())


def test_kea_runs_at_real_time_priority(backend):
    """pxe_dhcp_kea_realtime_priority (10): Kea's answers do not wait for a CPU behind a boot
    storm's transfers (BENCHMARKS.md). The rest of the server keeps the normal policy."""
    if backend != "kea":
        pytest.skip("the priority is Kea's")
    pid = pxe_shell("systemctl show -p MainPID --value kea-dhcp4-server").stdout.strip()
    assert "policy: SCHED_RR" in scheduling(pid) and "priority: 10" in scheduling(pid), scheduling(pid)
    nginx = pxe_shell("systemctl show -p MainPID --value nginx").stdout.strip()
    assert "policy: SCHED_OTHER" in scheduling(nginx), scheduling(nginx)


def _check(got, expected, case):
    assert got["offer"], "no OFFER for %s" % case
    assert got["file"] == (expected.filename or ""), (case, got, expected)
    if expected.next_server:
        assert got["siaddr"] == expected.next_server, (case, got, expected)
    if expected.kind == "http":
        assert got["vendor_class"] == "HTTPClient"


@pytest.mark.parametrize("case", CASES)
def test_a_grub_node_gets_the_grub_chain(grub_node_answers, case):
    """7, 9: shim over TFTP; 16: the Secure Boot disk image over HTTP, with HTTPClient; 11, 19
    without an arm64 shim, BIOS and iPXE itself: the iPXE answers, as decide() gives them for
    loader grub."""
    got = grub_node_answers[case]
    expected = decide(SERVER, arch=got["arch"], user_class=got["user_class"].encode() if got["user_class"] else None,
                      option_175=got["option_175"], loader="grub")
    _check(got, expected, case)
    assert got["yiaddr"] == LAB.nodes[GRUB_NODE].ip, got
    if case in ("arch7", "arch9"):
        assert (expected.kind, expected.filename) == ("tftp", "shimx64.efi")
    if case == "arch16":
        assert expected.filename == "%s/loaders/secureboot-x64.img" % LAB.http_base


@pytest.mark.parametrize("case", CASES)
def test_the_arm64_node_gets_the_arm64_chain(arm64_node_answers, case):
    """11, 19: the arm64 shim whatever the node's loader (the policy's grub_only rows); every
    other case: the answers of an iPXE node, as decide() gives them for the node's loader."""
    got = arm64_node_answers[case]
    node = LAB.nodes[ARM64_NODE]
    expected = decide(SERVER, arch=got["arch"], user_class=got["user_class"].encode() if got["user_class"] else None,
                      option_175=got["option_175"], loader=node.loader)
    _check(got, expected, case)
    assert got["yiaddr"] == node.ip, got
    if case == "arch11":
        assert (got["file"], got["siaddr"]) == ("shimaa64.efi", LAB.server_address)
    if case == "arch19":
        assert got["file"] == "%s/loaders/shimaa64.efi" % LAB.http_base and got["vendor_class"] == "HTTPClient"
    if case == "arch7":
        assert got["file"] == "ipxe.efi"


# Last in this file: grub_default_answers converges the server's default loader to grub
# and converges back only when the module ends, so every test after it would see grub as
# the default of nodes that set no loader (the arm64 node, for one).
@pytest.mark.parametrize("case", CASES)
def test_unknown_machines_follow_a_grub_default(grub_default_answers, case):
    got = grub_default_answers[case]
    expected = decide(dataclasses.replace(SERVER, default_loader="grub"), arch=got["arch"],
                      user_class=got["user_class"].encode() if got["user_class"] else None,
                      option_175=got["option_175"])
    _check(got, expected, case)
    assert LAB.subnets[0].in_pool(got["yiaddr"]), got
    if case == "arch7":
        assert expected.filename == "shimx64.efi"
