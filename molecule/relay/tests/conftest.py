# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The relay scenario's verification: the shared lab helpers, the far network's nodes,
and one boot of each far node, shared by every test that inspects what it left."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "resources"))
from labclient import PROJECT, SERVER_ADDRESS, boot, booted_profile, lab, lab_exec, pxe_shell  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

FAR_NETWORK = "198.51.100.0/24"
FAR_POOL = ("198.51.100.100", "198.51.100.199")
ROUTER_NEAR = "192.0.2.254"
ROUTER_FAR = "198.51.100.1"

# molecule/relay/inventory/hosts.yml: one BIOS node with a fixed address, one UEFI
# node that takes an address from the far subnet's pool.
FAR_NODES = {
    "node05": {"profile": "control_plane", "mac": "52:54:00:00:05:01", "ip": "198.51.100.15", "firmware": "bios"},
    "node06": {"profile": "all_in_one", "mac": "52:54:00:00:06:01", "ip": None, "firmware": "uefi"},
}


@pytest.fixture(scope="session")
def backend() -> str:
    return "isc" if os.environ.get("MOLECULE_SCENARIO_NAME", "").endswith("isc") else "kea"


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
        futures = {name: pool.submit(boot, node["mac"], node["firmware"], "--network", "far")
                   for name, node in FAR_NODES.items()}
        return {name: future.result() for name, future in futures.items()}
