# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the HA verification: the Kea control socket of each server of the pair.

The shared helpers are labkit's (labkit.ha, labkit.client), on PYTHONPATH through
molecule's config (verifier.env).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from typing import Any, Dict

from labkit.facts import lab_facts
from labkit.ha import ssh

# The plan's default subnet id: the lab subnet's network address as a number.
SUBNET_ID = int(ipaddress.ip_network(lab_facts().subnets[0].cidr).network_address)
KEA_HA_PORT = 8001

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


def kea(host: str, command: str, **arguments: Any) -> Dict[str, Any]:
    """The answer of the host's kea-dhcp4 to one control command."""
    request = {"command": command}
    if arguments:
        request["arguments"] = arguments
    run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote(json.dumps(request))), check=False)
    assert run.returncode == 0, "%s on %s failed: %s %s" % (command, host, run.stdout, run.stderr)
    return json.loads(run.stdout)


def ha_state(host: str) -> str:
    run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote('{"command": "ha-heartbeat"}')),
              check=False)
    if run.returncode != 0:
        return "unreachable"
    return json.loads(run.stdout).get("arguments", {}).get("state", "unknown")


def lease_of(host: str, mac: str) -> Dict[str, Any]:
    """The host's lease of a MAC in the lab subnet ({} when it has none)."""
    answer = kea(host, "lease4-get", **{"identifier-type": "hw-address", "identifier": mac, "subnet-id": SUBNET_ID})
    return answer.get("arguments") or {} if answer["result"] == 0 else {}
