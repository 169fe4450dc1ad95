# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The relay scenario's verification (also run by relay-isc): the far network's nodes,
read from this scenario's inventory, and one boot of each far node, shared by every
test that inspects what it left.

The shared helpers are labkit's, on PYTHONPATH through molecule's config (verifier.env).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from labkit.client import boot, lab, pxe_shell
from labkit.common import FAR_NETWORK
from labkit.facts import inventory_facts, lab_facts

# The scenario's own inventory (the far subnet and its nodes), which converge adds to
# inventories/lab; relay-isc runs these tests with the same inventory.
RELAY_INVENTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "inventory")
LAB = lab_facts(RELAY_INVENTORY)
FAR_SUBNET = LAB.subnet(FAR_NETWORK)
# The nodes of the scenario's inventory, the far network's: one BIOS node with a fixed
# address, one UEFI node that takes an address from the far subnet's pool.
FAR_NODES = {name: LAB.nodes[name] for name in inventory_facts([RELAY_INVENTORY]).hosts_of("pxe_nodes")}
FIRMWARE = {"node05": "bios", "node06": "uefi"}
assert sorted(FAR_NODES) == sorted(FIRMWARE), "the far nodes of %s: %s" % (RELAY_INVENTORY, sorted(FAR_NODES))


@pytest.fixture(scope="session")
def backend() -> str:
    """The scenario's DHCP backend, as its inventory says (pxe_dhcp_backend)."""
    return LAB.backend


@pytest.fixture(scope="session")
def lab_state() -> dict:
    return json.loads(lab("status").stdout)


def on_pxe_host(*command: str) -> str:
    return pxe_shell(" ".join(command)).stdout


def in_router(*command: str) -> str:
    return lab("exec", "--router", "--", *command, timeout=120).stdout


def router_rules() -> dict:
    """The router's forward chain: {"policy": ..., "rules": {comment: rule}}."""
    ruleset = json.loads(in_router("nft", "-j", "list", "table", "inet", "centra_lab_router"))["nftables"]
    chain = next(item["chain"] for item in ruleset if "chain" in item)
    rules = {item["rule"]["comment"]: item["rule"] for item in ruleset if "rule" in item}
    return {"chain": chain, "rules": rules}


def counter_packets(rule: dict) -> int:
    return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)


@pytest.fixture(scope="session")
def far_boots() -> dict:
    """Both far nodes PXE-boot at once (BIOS and UEFI), each on the far bridge."""
    with ThreadPoolExecutor(max_workers=len(FAR_NODES)) as pool:
        futures = {name: pool.submit(boot, node.macs[0], FIRMWARE[name], "--network", "far")
                   for name, node in FAR_NODES.items()}
        return {name: future.result() for name, future in futures.items()}
