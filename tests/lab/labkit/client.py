# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab from a test's side: lab.py's commands, boots, commands on a PXE host, its state.

Every scenario's verification imports this (molecule's config puts tests/lab and the
collection on PYTHONPATH). Lab facts (addresses, nodes) come from labkit.facts;
ansible-playbook runs and their output from labkit.playbook.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

from .common import BRIDGE, LAB_DIR
from .facts import lab_facts

LAB_PY = str(LAB_DIR / "lab.py")


def lab(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, LAB_PY, *args], capture_output=True, text=True, timeout=timeout, check=check)


def lab_exec(*command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command on the lab network (the build machine's side of the bridge)."""
    return lab("exec", "--", *command, timeout=timeout, check=check)


def boot(mac: str, firmware: str, *extra: str, timeout: float = 300) -> dict:
    run = lab("boot", "--mac", mac, "--firmware", firmware, "--json", *extra, timeout=timeout + 60, check=False)
    assert run.returncode == 0, "boot of %s (%s) failed:\n%s\n%s" % (mac, firmware, run.stdout[-4000:], run.stderr[-4000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def boot_until(mac: str, firmware: str, done: Callable[[], bool], *extra: str, timeout: float = 900,
               poll: float = 5) -> dict:
    """Boot a machine that never prints a marker (a real installer, docs/debian-installer.md)
    until done() holds, at most timeout seconds, then stop it: SIGTERM to `lab.py boot`, which
    stops its QEMU and removes its taps. Returns {"done", "seconds" (launch to done), "log"}."""
    argv = [sys.executable, LAB_PY, "boot", "--mac", mac, "--firmware", firmware, "--timeout", str(timeout), *extra]
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        started = time.monotonic()
        reached = False
        try:
            while time.monotonic() - started < timeout and process.poll() is None:
                if done():
                    reached = True
                    break
                time.sleep(poll)
            seconds = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    match = re.search(r"serial log: (\S+)", stderr)
    assert match, "lab.py boot printed no serial log path:\n%s" % stderr[-4000:]
    return {"done": reached, "seconds": seconds, "log": match.group(1), "stderr": stderr}


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
def foreign_client(address: str = "203.0.113.10", server: str | None = None,
                   server_interface: str = "host0") -> Iterator[str]:
    """A client on the lab wire with an address outside every allowed subnet.

    A namespace of its own (cpxe-out[-<lab>]) whose veth is a port of the lab bridge;
    both sides get an on-link route to the other's subnet (the PXE host for the
    duration only), so packets flow and a refusal is the server's doing, never a
    missing route. Nothing is routed or forwarded. Yields the namespace name;
    everything is removed afterwards.
    """
    server = server or lab_facts().server_address
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
        ip("-n", lab_ns, "link", "set", lab_end, "master", BRIDGE, "up")
        ip("-n", netns, "addr", "add", address + "/24", "dev", client_end)
        ip("-n", netns, "link", "set", client_end, "up")
        ip("-n", netns, "route", "add", server + "/32", "dev", client_end)
        pxe_shell("ip route replace %s dev %s" % (network, server_interface))
        yield netns
    finally:
        remove()


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
    live nftables table of centra.pxe (without its counters, nor the elements of its sets:
    the per-address connection cap fills one as clients connect). Equal states mean byte-for-byte unchanged
    files and services that were neither restarted nor stopped."""
    script = "\n".join([
        # Only the paths this backend has (/etc/dhcp exists with ISC dhcpd only).
        "set -- $(for p in %s; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done)" % " ".join(paths),
        "find \"$@\" -printf 'path %p %y %m %u:%g %l\\n'",
        "find \"$@\" -type f -exec sha256sum {} + | awk '{print \"file\", $2, $1}'",
        *["echo \"service %s $(systemctl show -p ActiveState,MainPID --value %s | tr '\\n' ' ')\"" % (s, s)
          for s in services],
        "echo \"nft centra_pxe $( (nft -s -t list table inet centra_pxe 2>&1 || true) | sha256sum | cut -c1-64)\"",
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
