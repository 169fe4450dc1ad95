# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secure Boot through the real converge (issue 14): a node with pxe_loader: grub boots
under OVMF with Secure Boot enforced (Microsoft keys enrolled) through Debian's signed
chain, shim -> GRUB -> the profile's Debian-signed kernel, and its kernel command line
is the one the iPXE chain gives the same node. (The install-once-then-disk test and the
UEFI HTTP boot test of the grub chain are on the git branch `sblab`, not in the suite:
docs/secure-boot.md says why.)

The lab machines: `lab.py boot --firmware uefi-secureboot` (tests/lab/README.md)."""

from __future__ import annotations

import pytest
from labkit.client import boot, booted_profile, lab_exec
from labkit.facts import lab_facts, node_script_path

LAB = lab_facts()
NODES = LAB.nodes
SERVER = LAB.server_address
GRUB_NODES = sorted(name for name, node in NODES.items() if node.loader == "grub")


def serial(result: dict) -> str:
    with open(result["log"], encoding="utf-8", errors="replace") as handle:
        return handle.read()


def ipxe_kernel_args(mac: str) -> list[str]:
    """The kernel arguments of the node's iPXE script (what the iPXE chain would boot)."""
    script = lab_exec("curl", "-sS", "--max-time", "10", "http://%s%s" % (SERVER, node_script_path(mac))).stdout
    line = next(line for line in script.splitlines() if line.startswith("kernel "))
    words = line.split(" || ", 1)[0].split()[2:]     # "kernel URL ARGS || goto ..."
    return [word for word in words if not word.startswith("initrd=")]


def grub_kernel_args(cmdline: str) -> list[str]:
    """The booted command line without what GRUB adds itself (BOOT_IMAGE=<path>)."""
    return [word for word in cmdline.split() if not word.startswith("BOOT_IMAGE=")]


def assert_signed_chain(text: str) -> None:
    """The serial log shows shim fetching GRUB and a kernel that runs with Secure Boot on."""
    assert "Fetching Netboot Image grubx64.efi" in text, "shim did not load GRUB"
    assert "secureboot: Secure boot enabled" in text, "the kernel did not run under Secure Boot"


@pytest.fixture(name="grub_node")
def fixture_grub_node():
    if not GRUB_NODES:
        pytest.fail("inventories/lab has no node with pxe_loader: grub")
    return NODES[GRUB_NODES[0]]


def test_a_grub_node_boots_its_profile_under_secure_boot_over_tftp(grub_node):
    mac = grub_node.macs[0]
    result = boot(mac, "uefi-secureboot", timeout=400)
    assert booted_profile(result["line"]) == grub_node.profile
    text = serial(result)
    assert "Start PXE over IPv4" in text and "NBP filename is shimx64.efi" in text
    assert_signed_chain(text)
    # The same command line as the iPXE chain renders for this node (one renderer).
    assert grub_kernel_args(result["cmdline"]) == ipxe_kernel_args(mac)
