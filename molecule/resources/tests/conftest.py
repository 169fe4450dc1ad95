# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the lab verification: the lab harness, the scenario's backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LAB = os.path.join(PROJECT, "tests", "lab", "lab.py")
SERVER_ADDRESS = "192.0.2.2"
HTTP_BASE = "http://%s" % SERVER_ADDRESS

# The lab inventory's nodes (inventories/lab/hosts.yml).
NODES = {
    "node01": {"profile": "control_plane", "macs": ["52:54:00:00:01:01"], "ip": "192.0.2.11"},
    "node02": {"profile": "worker", "macs": ["52:54:00:00:02:01"], "ip": "192.0.2.12"},
    "node03": {"profile": "all_in_one", "macs": ["52:54:00:00:03:01"], "ip": "192.0.2.13"},
    "node04": {"profile": "worker", "macs": ["52:54:00:00:04:01", "52:54:00:00:04:02"], "ip": "192.0.2.14"},
}
MENU_DEFAULT = "worker"

sys.path.insert(0, os.path.join(PROJECT, ".ansible", "collections"))


def lab(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, LAB, *args], capture_output=True, text=True, timeout=timeout, check=check)


def lab_exec(*command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command on the lab network (the build machine's side of the bridge)."""
    return lab("exec", "--", *command, timeout=timeout, check=check)


def boot(mac: str, firmware: str, *extra: str, timeout: float = 300) -> dict:
    run = lab("boot", "--mac", mac, "--firmware", firmware, "--json", *extra, timeout=timeout + 60, check=False)
    assert run.returncode == 0, "boot of %s (%s) failed:\n%s\n%s" % (mac, firmware, run.stdout[-4000:], run.stderr[-4000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def backend() -> str:
    return "isc" if os.environ.get("MOLECULE_SCENARIO_NAME") == "isc" else "kea"
