# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the HA verification, for both backends: scenario ha (a Kea HA pair) and
ha-isc (an ISC dhcpd failover pair) run the same tests; the backend comes from the
scenario's inventory.

Kea answers on its control socket (ha-heartbeat, lease4-get, config-get); dhcpd has
none, so its failover state is read from the "I move from X to Y" lines its running
process logged, and its leases from /var/lib/dhcp/dhcpd.leases.

The shared helpers are labkit's (labkit.ha, labkit.client), on PYTHONPATH through
molecule's config (verifier.env).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from typing import Any, Dict, Optional

from ansible_collections.centra.pxe.plugins.plugin_utils._ha import HA_SETTINGS
from labkit.client import unit_state
from labkit.facts import lab_facts
from labkit.ha import ssh

BACKEND = lab_facts().backend
KEA, ISC = BACKEND == "kea", BACKEND == "isc"
assert KEA or ISC, BACKEND
UNIT = "kea-dhcp4-server" if KEA else "isc-dhcp-server"
HA_PORT = HA_SETTINGS[BACKEND]["port"]  # the scenarios keep the default port
# The state of a pair that serves as configured (hot-standby for Kea, normal for ISC).
SERVING = "hot-standby" if KEA else "normal"

# The plan's default subnet id: the lab subnet's network address as a number.
SUBNET_ID = int(ipaddress.ip_network(lab_facts().subnets[0].cidr).network_address)

# Sent on the PXE host: one command to kea-dhcp4's unix control socket, the answer on stdout.
_KEA_CLIENT = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_UNIX)\n"
    "s.connect('/run/kea/kea4-ctrl-socket')\n"
    "s.sendall(sys.argv[1].encode())\n"
    "d=b''\n"
    "while True:\n"
    "    c=s.recv(65536)\n"
    "    if not c: break\n"
    "    d+=c\n"
    "sys.stdout.write(d.decode())\n"
)
_ISC_MOVE = re.compile(r"failover peer centra-pxe: I move from \S+ to (\S+)")


def kea(host: str, command: str, **arguments: Any) -> Dict[str, Any]:
    """The answer of the host's kea-dhcp4 to one control command."""
    request = {"command": command}
    if arguments:
        request["arguments"] = arguments
    run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote(json.dumps(request))), check=False)
    assert run.returncode == 0, "%s on %s failed: %s %s" % (command, host, run.stdout, run.stderr)
    return json.loads(run.stdout)


def ha_state(host: str) -> str:
    """The HA state the host's DHCP server is in ("unreachable"/"stopped" if none answers)."""
    if KEA:
        run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote('{"command": "ha-heartbeat"}')),
                  check=False)
        if run.returncode != 0:
            return "unreachable"
        return json.loads(run.stdout).get("arguments", {}).get("state", "unknown")
    pid = int(unit_state(UNIT, host).get("MainPID", "0"))
    if not pid:
        return "stopped"
    run = ssh(host, "journalctl --no-pager -o cat _PID=%d" % pid, check=False)
    states = _ISC_MOVE.findall(run.stdout)
    return states[-1] if states else ""


def lease_of(host: str, mac: str) -> Dict[str, Any]:
    """The host's lease of a MAC in the lab subnet ({} when it has none)."""
    answer = kea(host, "lease4-get", **{"identifier-type": "hw-address", "identifier": mac, "subnet-id": SUBNET_ID})
    return answer.get("arguments") or {} if answer["result"] == 0 else {}


def isc_active_lease(host: str, mac: str) -> Optional[str]:
    """The address of the MAC's active lease in the host's dhcpd.leases, if any (the last entry wins)."""
    text = ssh(host, "cat /var/lib/dhcp/dhcpd.leases").stdout
    address = None
    for ip, body in re.findall(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        if re.search(r"hardware ethernet %s;" % re.escape(mac), body, re.I):
            address = ip if re.search(r"^\s*binding state active;", body, re.M) else None
    return address


def leased_address(host: str, mac: str) -> Optional[str]:
    """The address the host holds an active lease of for this MAC, if any."""
    if KEA:
        return lease_of(host, mac).get("ip-address")
    return isc_active_lease(host, mac)
