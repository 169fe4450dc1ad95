# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The proxy scenario's facts: its own inventory (MACs only) and the foreign DHCP server
that `lab.py up --foreign-dhcp` runs (address, pool, lease file: `lab.py status`).

The shared helpers are labkit's, on PYTHONPATH through molecule's config (verifier.env).
"""

from __future__ import annotations

import json
import os

import pytest
from labkit.client import lab
from labkit.facts import generated_inventory, inventory_facts

PROXY_INVENTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "inventory")
LAB = inventory_facts([generated_inventory(), PROXY_INVENTORY])


@pytest.fixture(scope="session")
def foreign_dhcp() -> dict:
    """The foreign DHCP server as `lab.py status` reports it (with its current leases)."""
    state = json.loads(lab("status").stdout)
    assert state.get("foreign_dhcp"), "the lab runs no foreign DHCP server: lab.py up --foreign-dhcp"
    return state["foreign_dhcp"]
