# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the ISC failover verification: the lab harness, dhcpd's journal and lease file."""

from __future__ import annotations

import os
import re
import sys
from typing import Optional

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "resources"))
from labclient import MENU_DEFAULT, NODES, boot, booted_profile, lab  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from haclient import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    ADDRESSES, POOL, PRIMARY, STANDBY, UNKNOWN_MAC, fetched_script, kill_and_wait_for_restart, main_pid,
    port_open_from_peer_and_closed_to_others, ssh, wait_for)

ISC_FAILOVER_PORT = 647
UNIT = "isc-dhcp-server"
_MOVE = re.compile(r"failover peer centra-pxe: I move from \S+ to (\S+)")


def failover_state(host: str) -> str:
    """The failover state the running dhcpd last logged for itself ("" if none yet)."""
    pid = main_pid(host, UNIT)
    if not pid:
        return "stopped"
    run = ssh(host, "journalctl --no-pager -o cat _PID=%d" % pid, check=False)
    states = _MOVE.findall(run.stdout)
    return states[-1] if states else ""


def active_lease(host: str, mac: str) -> Optional[str]:
    """The address of the MAC's active lease in the host's dhcpd.leases, if any (the last entry wins)."""
    text = ssh(host, "cat /var/lib/dhcp/dhcpd.leases").stdout
    address = None
    for ip, body in re.findall(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        if re.search(r"hardware ethernet %s;" % re.escape(mac), body, re.I):
            address = ip if re.search(r"^\s*binding state active;", body, re.M) else None
    return address
