# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The default scenario's tests (Kea), also run by the isc scenario (ISC dhcpd).

The helpers are the labkit package (tests/lab/labkit), on PYTHONPATH through molecule's
config (verifier.env); the lab facts come from the inventories (labkit.facts).
"""

from __future__ import annotations

import pytest
from labkit.facts import lab_facts


@pytest.fixture(scope="session")
def backend() -> str:
    """The scenario's DHCP backend, as its inventory says (pxe_dhcp_backend)."""
    return lab_facts().backend
