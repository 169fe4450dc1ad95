# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real PXE clients (QEMU: SeaBIOS + iPXE ROM, OVMF's own PXE client) boot from the
converged host, each into its own profile, read from its kernel command line."""

from __future__ import annotations

import pytest
from labkit.client import boot, booted_profile
from labkit.facts import lab_facts

LAB = lab_facts()
NODES = LAB.nodes

# One node per profile, BIOS and UEFI mixed.
PROFILE_BOOTS = [("node01", "bios"), ("node02", "uefi"), ("node03", "uefi")]


@pytest.mark.parametrize("name, firmware", PROFILE_BOOTS, ids=["%s-%s" % b for b in PROFILE_BOOTS])
def test_each_node_boots_its_profile(name, firmware):
    node = NODES[name]
    result = boot(node.macs[0], firmware)
    assert booted_profile(result["line"]) == node.profile
    assert "PXE-BOOT-OK" in result["line"]
    if firmware == "uefi":
        # OVMF's own PXE client: option 93 = 7, ipxe.efi over TFTP, then iPXE over HTTP.
        with open(result["log"], encoding="utf-8", errors="replace") as handle:
            assert "Start PXE over IPv4" in handle.read()


def test_an_unknown_machine_gets_the_menu_default_after_the_timeout():
    result = boot("52:54:00:00:99:01", "bios")
    assert booted_profile(result["line"]) == LAB.menu_default


def test_a_two_nic_node_booting_from_its_second_nic_is_recognised():
    first, second = NODES["node04"].macs
    result = boot(first, "bios", "--extra-mac", second, "--boot-nic", "2")
    assert booted_profile(result["line"]) == NODES["node04"].profile


def test_uefi_http_boot_gets_ipxe_over_http_and_boots_its_profile():
    """OVMF's "UEFI HTTPv4" entry (option 93 = 16): HTTPClient answer, loader over HTTP."""
    node = NODES["node03"]
    result = boot(node.macs[0], "uefi", "--http-boot")
    assert booted_profile(result["line"]) == node.profile
    with open(result["log"], encoding="utf-8", errors="replace") as handle:
        serial = handle.read()
    assert "Start HTTP Boot over IPv4" in serial and "Start PXE over IPv4" not in serial
