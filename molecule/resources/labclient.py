# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every scenario's verification uses: the lab harness and the lab inventory's nodes.

Each scenario's tests directory puts this folder on sys.path (see its conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
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


def booted_profile(line: str) -> str:
    """The profile a test image booted, read from its kernel command line."""
    match = re.search(r"centra\.profile=(\S+)", line)
    assert match, "no centra.profile= on the command line: %s" % line
    return match.group(1)
