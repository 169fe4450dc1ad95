# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Packet level: DISCOVERs as firmware sends them, checked against the boot policy.

The expected answers come from decide(), the same table the configs are generated
from; the received answers come from the running daemon, over the wire."""

from __future__ import annotations

import json
import sys

import pytest
from labkit.client import lab_exec, pxe_shell
from labkit.common import BRIDGE
from labkit.facts import lab_facts

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BootServer, decide

LAB = lab_facts()
# The loaders of the lab host: the role defaults (Debian's ipxe package has no 32-bit
# or ARM EFI build, so those architectures get no boot file).
SERVER = BootServer(LAB.server_address, LAB.http_base, {"bios": "undionly.kpxe", "efi64": "ipxe.efi"})


@pytest.fixture(scope="module")
def answers():
    run = lab_exec(sys.executable, "-m", "labkit.dhcp_probe", "--iface", BRIDGE, timeout=300)
    return {a["case"]: a for a in (json.loads(line) for line in run.stdout.splitlines() if line.startswith("{"))}


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
