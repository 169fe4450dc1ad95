# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every scenario's verification uses: the lab harness and the lab inventory's nodes.

Each scenario's tests directory puts this folder on sys.path (see its conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

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
sys.path.insert(0, os.path.join(PROJECT, "tests", "lab"))
from labkit.common import NETNS  # noqa: E402  pylint: disable=wrong-import-position


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


def lab_netns() -> str:
    """The lab's network namespace (its name depends on CENTRA_LAB_NAME)."""
    return json.loads(lab("status", timeout=60).stdout)["netns"]


def pxe_shell(command: str, host: str = "pxe01", timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command on a PXE host over ssh (lab.py ssh: no shared connection, so
    it works right after the host restarted)."""
    run = lab("ssh", host, "--", command, timeout=timeout, check=False)
    if check:
        assert run.returncode == 0, "%s on %s: rc=%s\n%s%s" % (command, host, run.returncode, run.stdout[-3000:], run.stderr[-3000:])
    return run


def unit_state(unit: str, host: str = "pxe01") -> dict[str, str]:
    """systemctl show of a unit: MainPID, ActiveState, SubState, UnitFileState, NRestarts."""
    run = pxe_shell("systemctl show -p MainPID -p ActiveState -p SubState -p UnitFileState -p NRestarts %s" % unit, host)
    return dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)


def wait_for_new_main_pid(unit: str, old_pid: int, timeout: float = 90, host: str = "pxe01") -> dict[str, str]:
    """Wait until systemd runs the unit again under another main PID, active."""
    deadline = time.monotonic() + timeout
    state = unit_state(unit, host)
    while time.monotonic() < deadline:
        if state["ActiveState"] == "active" and int(state["MainPID"]) not in (0, old_pid):
            return state
        time.sleep(1)
        state = unit_state(unit, host)
    raise AssertionError("%s did not come back within %d s after its main PID %d died: %s" % (unit, timeout, old_pid, state))


def tree_digest(*paths: str, host: str = "pxe01") -> dict[str, str]:
    """path -> "mode owner group sha256" (or "dir ..." / "link -> target") for every
    entry under the given paths on a PXE host; absent paths are left out."""
    script = ("for p in %s; do [ -e \"$p\" ] || continue; find \"$p\" -xdev -printf '%%y %%p %%m %%u %%g %%l\\n'; done"
              % " ".join("'%s'" % path for path in paths))
    entries = {}
    for line in pxe_shell(script, host).stdout.splitlines():
        kind, path, mode, user, group, *link = line.split(" ")
        entries[path] = "%s %s %s %s %s" % (kind, mode, user, group, " ".join(link))
    files = [path for path, entry in entries.items() if entry.startswith("f ")]
    if files:
        sums = pxe_shell("sha256sum " + " ".join("'%s'" % path for path in files), host).stdout
        for line in sums.splitlines():
            checksum, path = line.split(None, 1)
            entries[path] += checksum
    return entries


@contextlib.contextmanager
def foreign_client(address: str = "203.0.113.10", server: str = SERVER_ADDRESS,
                   server_interface: str = "host0") -> Iterator[str]:
    """A client on the lab wire with an address outside every allowed subnet.

    A namespace of its own (cpxe-out[-<lab>]) whose veth is a port of the lab bridge;
    both sides get an on-link route to the other's subnet (the PXE host for the
    duration only), so packets flow and a refusal is the server's doing, never a
    missing route. Nothing is routed or forwarded. Yields the namespace name;
    everything is removed afterwards.
    """
    lab_ns = lab_netns()
    netns = lab_ns.replace("cpxe-lab", "cpxe-out", 1)
    lab_end, client_end = "cpxeo0", "cpxeo1"
    network = re.sub(r"\.\d+$", ".0/24", address)

    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)

    def remove() -> None:
        pxe_shell("ip route del %s dev %s 2>/dev/null; true" % (network, server_interface), check=False)
        ip("-n", lab_ns, "link", "delete", lab_end, check=False)
        ip("netns", "delete", netns, check=False)

    remove()  # whatever an interrupted run left
    try:
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", lab_ns, "link", "add", lab_end, "type", "veth", "peer", "name", client_end, "netns", netns)
        ip("-n", lab_ns, "link", "set", lab_end, "master", "cpxebr0", "up")
        ip("-n", netns, "addr", "add", address + "/24", "dev", client_end)
        ip("-n", netns, "link", "set", client_end, "up")
        ip("-n", netns, "route", "add", server + "/32", "dev", client_end)
        pxe_shell("ip route replace %s dev %s" % (network, server_interface))
        yield netns
    finally:
        remove()


# --- ansible-playbook on the lab, as an operator runs it --------------------------------

PLAYBOOKS = os.path.join(PROJECT, "playbooks")
LAB_INVENTORY = os.path.join(PROJECT, "inventories", "lab")
RECAP_LINE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                        r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def scenario_inventory() -> str:
    """Molecule's inventory of the running scenario: how to reach the lab's PXE host(s),
    and the scenario's group vars (its DHCP backend). Converge uses it with inventories/lab."""
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
    path = os.path.join(ephemeral, "inventory")
    assert ephemeral and os.path.isdir(path), "no molecule inventory (MOLECULE_EPHEMERAL_DIRECTORY=%r)" % ephemeral
    return path


def ansible_playbook(playbook: str, *args: str, inventories: tuple[str, ...] | None = None,
                     extra_vars: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """ansible-playbook from the repository, with its ansible.cfg, as the README runs it.

    inventories: by default what converge uses (the scenario's inventory, then
    inventories/lab). extra_vars: passed as one -e @file. The default callback, with
    results as JSON (task_results() reads them)."""
    if inventories is None:
        inventories = (scenario_inventory(), LAB_INVENTORY)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook")]
    for inventory in inventories:
        command += ["-i", inventory]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_PYTHON_INTERPRETER="auto_silent", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               # Labs side by side all have a pxe01 at 192.0.2.2: ssh masters of this lab only.
               ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.expanduser("~/.ansible/cp/%s" % NETNS))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="centra-extra-vars-") as handle:
        if extra_vars:
            json.dump(extra_vars, handle)
            handle.flush()
            command += ["-e", "@" + handle.name]
        command += [*args, os.path.join(PLAYBOOKS, playbook)]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=timeout,
                              check=False)


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a default-callback run: host -> ok, changed, unreachable, failed, ..."""
    keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
    return {m.group(1): dict(zip(keys, map(int, m.groups()[1:]))) for m in RECAP_LINE.finditer(stdout)}


TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?:[^\]:]+ : )?(.*?)\] \**$", re.M)
HOST_RESULT = re.compile(r"^(ok|changed|skipping|fatal|failed|unreachable): \[([^\]]+)\](?:: (?:FAILED|UNREACHABLE)!)?"
                         r"(?: => )?", re.M)


def task_results(stdout: str) -> list[tuple[str, str, str, dict]]:
    """(task name, status, host, result) of each task a default-callback run printed, in
    order; result is the JSON the callback printed after "=>" ({} when none)."""
    found = []
    headers = list(TASK_HEADER.finditer(stdout))
    decoder = json.JSONDecoder()
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(stdout)
        for match in HOST_RESULT.finditer(stdout, header.end(), end):
            result = {}
            if match.group(0).endswith("=> "):
                try:
                    result = decoder.raw_decode(stdout[match.end():end])[0]
                except ValueError:
                    pass
            found.append((header.group(1), match.group(1), match.group(2), result))
    return found


# --- the state of a PXE host, to prove that a run changed nothing --------------------------

# Everything the roles write (configs, units and drop-ins, the helper script, the HTTP
# and TFTP trees) and the services they run.
PXE_HOST_PATHS = ("/etc/kea", "/etc/dhcp", "/etc/default/isc-dhcp-server", "/etc/default/tftpd-hpa", "/etc/nginx",
                  "/etc/systemd/system", "/etc/nftables.d", "/usr/local/sbin/centra-pxe-nginx-check",
                  "/srv/centra-pxe")
PXE_SERVICES = ("kea-dhcp4-server", "isc-dhcp-server", "nginx", "tftpd-hpa", "centra-pxe-firewall")


def host_state(host: str = "pxe01", paths: tuple[str, ...] = PXE_HOST_PATHS,
               services: tuple[str, ...] = PXE_SERVICES) -> dict[str, str]:
    """One ssh call: every file, directory and link under paths (type, mode, owner,
    link target, sha256 of the content), each service's state and MainPID, and the
    live nftables table of centra.pxe (without its counters). Equal states mean byte-for-byte unchanged
    files and services that were neither restarted nor stopped."""
    script = "\n".join([
        # Only the paths this backend has (/etc/dhcp exists with ISC dhcpd only).
        "set -- $(for p in %s; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done)" % " ".join(paths),
        "find \"$@\" -printf 'path %p %y %m %u:%g %l\\n'",
        "find \"$@\" -type f -exec sha256sum {} + | awk '{print \"file\", $2, $1}'",
        *["echo \"service %s $(systemctl show -p ActiveState,MainPID --value %s | tr '\\n' ' ')\"" % (s, s)
          for s in services],
        "echo \"nft centra_pxe $( (nft -s list table inet centra_pxe 2>&1 || true) | sha256sum | cut -c1-64)\"",
    ])
    run = lab("ssh", host, "--", "sh -c %s" % shlex.quote(script), timeout=120)
    state = {}
    for line in run.stdout.splitlines():
        kind, _sep, rest = line.partition(" ")
        name, _sep, value = rest.partition(" ")
        if kind in ("path", "file", "service", "nft"):
            state["%s %s" % (kind, name)] = value.strip()
    assert any(k.startswith("file /srv/centra-pxe/") for k in state), "no boot tree on %s:\n%s" % (host, run.stdout[-2000:])
    return state


def state_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs between two host_state() results, one line each (empty: nothing)."""
    return ["%s: %r -> %r" % (key, before.get(key), after.get(key))
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
