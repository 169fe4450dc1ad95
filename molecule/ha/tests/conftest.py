# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the HA verification: the lab harness (labclient) and the Kea control socket."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "resources"))
from labclient import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    MENU_DEFAULT, NODES, boot, booted_profile, lab, lab_exec)

PRIMARY, STANDBY = "pxe01", "pxe02"
ADDRESSES = {PRIMARY: "192.0.2.2", STANDBY: "192.0.2.3"}
SUBNET_ID = 3221225984  # 192.0.2.0 as a number: the plan's default subnet id
POOL = ("192.0.2.100", "192.0.2.199")

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


def ssh(host: str, command: str, check: bool = True, timeout: float = 120):
    return lab("ssh", host, "--", command, check=check, timeout=timeout)


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


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90, every: float = 1) -> Any:
    """probe() until it returns something true; fail naming what and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("%s: not within %d s (last: %r)" % (what, timeout, value))


def fetched_script(host: str, mac: str) -> bool:
    """Whether the host's nginx served the boot script of this MAC."""
    path = "/nodes/%s.ipxe" % mac.replace(":", "-")
    run = ssh(host, "grep -c %s /var/log/nginx/centra-pxe.access.log" % shlex.quote(path), check=False)
    return run.stdout.strip() not in ("", "0")
