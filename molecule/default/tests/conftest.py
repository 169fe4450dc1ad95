# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the lab verification: the lab harness, the scenario's backend."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from labclient import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    HTTP_BASE, LAB, MENU_DEFAULT, NODES, PROJECT, SERVER_ADDRESS, boot, booted_profile, lab, lab_exec)


@pytest.fixture(scope="session")
def backend() -> str:
    return "isc" if os.environ.get("MOLECULE_SCENARIO_NAME") == "isc" else "kea"
