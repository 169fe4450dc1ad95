# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""arm64 through the real converge (issue 14): the lab's arm64 node (pxe_arch: arm64, no
pxe_loader) boots an arm64 UEFI machine (AAVMF under TCG) through Debian's signed arm64
chain, shim (bootnetaa64.efi, served as shimaa64.efi) -> GRUB (grubaa64.efi) -> the arm64
kernel of its profile, with and without Secure Boot (docs/secure-boot.md, "arm64").

The lab machines: `lab.py boot --arch arm64 --firmware uefi|uefi-secureboot`."""

from __future__ import annotations

import re

import pytest
from labkit.client import boot, booted_profile
from labkit.facts import lab_facts

LAB = lab_facts()
ARM64_NODES = sorted(name for name, node in LAB.nodes.items() if node.arch == "arm64")
# TCG emulates the arm64 machine (about 25 s in the lab, BENCHMARKS.md; minutes on a busy host).
TIMEOUT = 600


def serial(result: dict) -> str:
    with open(result["log"], encoding="utf-8", errors="replace") as handle:
        return handle.read()


@pytest.fixture(name="arm64_node")
def fixture_arm64_node():
    if not ARM64_NODES:
        pytest.fail("inventories/lab has no node with pxe_arch: arm64")
    return LAB.nodes[ARM64_NODES[0]]


def assert_arm64_chain(result: dict, node) -> str:
    assert booted_profile(result["line"]) == node.profile
    text = serial(result)
    # The firmware got shim over TFTP (option 93 = 11), shim fetched GRUB from beside it.
    assert "shimaa64.efi" in text, "the firmware was not given the arm64 shim"
    assert "Fetching Netboot Image grubaa64.efi" in text, "shim did not load grubaa64.efi"
    # GRUB booted the profile's arm64 kernel, not its amd64 one (GRUB puts the path it
    # loaded into the command line), with the profile's command line.
    assert "BOOT_IMAGE=/profiles/%s/arm64/vmlinuz" % node.profile in result["cmdline"], result["cmdline"]
    assert "centra.profile=%s" % node.profile in result["cmdline"]
    assert re.search(r"Linux version \S+-arm64 ", text), "not Debian's arm64 kernel"
    return text


@pytest.mark.parametrize("firmware", ["uefi", "uefi-secureboot"])
def test_the_arm64_node_boots_its_profiles_arm64_kernel(arm64_node, firmware):
    result = boot(arm64_node.macs[0], firmware, "--arch", "arm64", timeout=TIMEOUT)
    text = assert_arm64_chain(result, arm64_node)
    if firmware == "uefi-secureboot":
        assert "secureboot: Secure boot enabled" in text, "the kernel did not run under Secure Boot"
    else:
        assert "secureboot: Secure boot disabled" in text
    print("arm64 %s boot: %.1f s" % (firmware, result["seconds"]))
