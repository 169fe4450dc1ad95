# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Packet level: the DHCP options of the inventory, in the running daemon's answers
(Kea here, ISC dhcpd in the isc scenario, which runs these tests too).

The expected payloads come from the inventory (the subnet's options, the worker group's,
node02's own), checked and encoded by the collection's option table; the received ones
are the raw bytes of the OFFERs. An unknown machine gets the subnet's options; node02
gets the subnet's, its group's over them and its own over both; node04 (same group,
nothing of its own) its group's over the subnet's. DISCOVERs only: no lease is taken.
"""

from __future__ import annotations

import json
import sys

import pytest
from labkit.client import lab_exec
from labkit.common import BRIDGE
from labkit.facts import dhcp_option_layers, lab_facts

from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import check_options, merge_options, wire

LAB = lab_facts()
LAB_SUBNET = "192.0.2.0/24"


def _entries(raw, where):
    problems = []
    entries = check_options(raw, where, lambda field, message: problems.append("%s: %s" % (field, message)))
    assert not problems, problems
    return entries


def _domain_names(payload: bytes) -> list:
    """The names of an RFC 1035 domain list, following compression pointers (RFC 3397
    allows them: dhcpd compresses option 119, Kea does not)."""
    names, index = [], 0
    while index < len(payload):
        labels, position, end = [], index, None
        while payload[position] != 0:
            if payload[position] >= 0xC0:  # a pointer to an earlier label
                end = position + 2 if end is None else end
                position = ((payload[position] & 0x3F) << 8) | payload[position + 1]
                continue
            length = payload[position]
            labels.append(payload[position + 1:position + 1 + length].decode("ascii"))
            position += 1 + length
        index = end if end is not None else position + 1
        names.append(".".join(labels))
    return names


def _comparable(kind, payload_hex):
    """A payload in the form both backends agree on: the bytes, or the names of a domain list."""
    if payload_hex is None:
        return None
    if kind == "domain-list":
        return _domain_names(bytes.fromhex(payload_hex))
    return payload_hex


def _expected(*layers):
    """code -> (type, payload hex) of the merged layers (later layers win, option by option)."""
    return {entry["code"]: (entry["type"], wire(entry["type"], entry["value"]).hex())
            for entry in merge_options(*layers)}


def _assert_options(got, expected):
    assert ({code: _comparable(kind, got.get(code)) for code, (kind, _payload) in expected.items()}
            == {code: _comparable(kind, payload) for code, (kind, payload) in expected.items()})


SUBNET_OPTIONS = _entries(next(s for s in LAB.server_vars["pxe_subnets"] if s["cidr"] == LAB_SUBNET).get("options"),
                          "options")
ASKED = sorted({entry["code"] for entry in SUBNET_OPTIONS}
               | {entry["code"] for name in ("node02", "node04") for layer in dhcp_option_layers(name) if layer
                  for entry in _entries(layer, "pxe_dhcp_options")})


def _probe(mac=None):
    extra = ["--mac", mac] if mac else []
    for code in ASKED:
        extra += ["--ask", str(code)]
    run = lab_exec(sys.executable, "-m", "labkit.dhcp_probe", "--iface", BRIDGE, "--case", "arch7", *extra,
                   timeout=120)
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 1 and answers[0]["offer"], run.stdout + run.stderr
    return {int(code): payload for code, payload in answers[0]["options"].items()}


def _node_expected(name):
    groups, own = dhcp_option_layers(name)
    return _expected(SUBNET_OPTIONS, _entries(groups, "groups"), _entries(own, "own"))


def test_the_lab_inventory_sets_options_at_every_level():
    """Not vacuous: the subnet, the worker group and node02 each set options, and node02 overrides."""
    groups, own = dhcp_option_layers("node02")
    assert SUBNET_OPTIONS and groups and own
    assert set(own) & {e["name"] for e in SUBNET_OPTIONS}, "node02 overrides none of the subnet's options"


def test_an_unknown_machine_gets_the_subnet_options():
    got = _probe()
    _assert_options(got, _expected(SUBNET_OPTIONS))
    # The routers option is not set in the lab (no gateway) and must not appear from the options either.
    assert 3 not in got


@pytest.mark.parametrize("name", ["node02", "node04"])
def test_a_node_gets_its_groups_and_its_own_options_over_the_subnets(name):
    node = LAB.nodes[name]
    got = _probe(node.macs[0])
    _assert_options(got, _node_expected(name))
    if name == "node02":
        # The node's own MTU (1400 in the lab inventory), not the subnet's.
        assert int(got[26], 16) == 1400
