# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ipv6 scenario's facts: its own inventory (an IPv6 prefix, IPv6-only UEFI nodes) and
the lab's IPv6 network (`lab.py up --ipv6`, `lab.py status` under "ipv6").

The shared helpers are labkit's, on PYTHONPATH through molecule's config (verifier.env).
"""

from __future__ import annotations

import os

from labkit.facts import generated_inventory, inventory_facts

IPV6_INVENTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "inventory")
LAB = inventory_facts([generated_inventory(), IPV6_INVENTORY])
