# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the HA scenarios' verification shares: the pair, commands on its hosts, waiting.

The pair's names and addresses come from the scenario's inventory (labkit.facts).
"""

from __future__ import annotations

import shlex
import time
from typing import Any, Callable

from .client import lab_exec, pxe_shell, unit_state, wait_for_new_main_pid
from .facts import lab_facts, node_script_path

PRIMARY, STANDBY = "pxe01", "pxe02"  # the order of molecule/ha's platforms
UNKNOWN_MAC = "52:54:00:00:99:11"  # a machine the inventory does not know: a dynamic lease
LATE_NODE = "node01"  # a node that boots only once the primary is gone


def addresses() -> dict[str, str]:
    """Each server of the relationship -> its address (the scenario's inventory): the pair,
    then Kea's backup servers (pxe03, CENTRA_HA_BACKUP=1 in molecule/ha)."""
    servers = lab_facts().servers
    assert sorted(servers)[:2] == [PRIMARY, STANDBY], servers
    return servers


_PORT_PROBE = ("import socket,sys\n"
               "try:\n"
               "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
               "    print('open')\n"
               "except OSError as exc:\n"
               "    print('closed', exc)\n")


def ssh(host: str, command: str, check: bool = True, timeout: float = 120):
    return pxe_shell(command, host=host, timeout=timeout, check=check)


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
    path = node_script_path(mac)
    run = ssh(host, "grep -c %s /var/log/nginx/centra-pxe.access.log" % shlex.quote(path), check=False)
    return run.stdout.strip() not in ("", "0")


def kill_and_wait_for_restart(host: str, unit: str) -> int:
    """kill -9 the unit's main process; wait until systemd has restarted it; return NRestarts."""
    before = int(unit_state(unit, host)["MainPID"])
    assert before > 0, "%s does not run on %s" % (unit, host)
    ssh(host, "kill -9 %d" % before)
    return int(wait_for_new_main_pid(unit, before, timeout=60, host=host)["NRestarts"])


def port_open_from_peer_and_closed_to_others(port: int, server: str = PRIMARY, peer: str = STANDBY) -> None:
    """A link between the servers (by default the HA peer link): the peer reaches the server's
    port, the lab network (192.0.2.1) does not."""
    address = addresses()[server]
    command = "python3 -c %s %s %d" % (shlex.quote(_PORT_PROBE), address, port)
    from_peer = ssh(peer, command).stdout
    assert from_peer.startswith("open"), from_peer
    from_lab = lab_exec("python3", "-c", _PORT_PROBE, address, str(port)).stdout
    assert from_lab.startswith("closed"), from_lab
