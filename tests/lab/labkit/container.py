"""PXE hosts as systemd-nspawn containers with systemd as PID 1.

This machine does not run systemd, so there is no machine bus: containers run with
``--register=no --keep-unit`` in the background, their console goes to a log file,
and they are tracked by PID. Ansible reaches them over SSH, as in production.
"""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    ANSIBLE_CONTROL_SOCKETS,
    ANSIBLE_CP_DIR,
    BRIDGE,
    MACHINE_PREFIX,
    SSH_KEY,
    SSH_PROXY_COMMAND,
    LabError,
    ProcessRef,
    log,
    run,
)
from .net import enter_netns

# The same access path as the inventory's (key, no host key checks, namespace relay).
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", f"ProxyCommand={SSH_PROXY_COMMAND}",
               "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]


@dataclass
class PxeHost:
    """One PXE host container as recorded in the state file."""

    name: str                        # inventory name and hostname: pxe01
    address: str                     # 192.0.2.2
    rootfs: Path
    console_log: Path
    nspawn: ProcessRef | None = None
    init: ProcessRef | None = None   # the container's PID 1, seen from the host

    @property
    def machine(self) -> str:
        return f"{MACHINE_PREFIX}{self.name}"

    @property
    def veth(self) -> str:
        """Host side of the veth nspawn creates for --network-bridge."""
        return f"vb-{self.machine}"[:15]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "address": self.address, "machine": self.machine,
            "rootfs": str(self.rootfs), "console_log": str(self.console_log),
            "veth": self.veth,
            "nspawn": self.nspawn.to_json() if self.nspawn else None,
            "init": self.init.to_json() if self.init else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PxeHost:
        return cls(name=data["name"], address=data["address"], rootfs=Path(data["rootfs"]),
                   console_log=Path(data["console_log"]),
                   nspawn=ProcessRef.from_json(data.get("nspawn")),
                   init=ProcessRef.from_json(data.get("init")))


def ssh_command(address: str, *remote: str) -> list[str]:
    return ["ssh", "-i", str(SSH_KEY), *SSH_OPTIONS, f"root@{address}", *remote]


def start(host: PxeHost) -> None:
    """Boot the container in the background; its console goes to ``console_log``.

    nspawn runs inside the lab namespace, where --network-bridge finds cpxebr0.
    """
    host.console_log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-nspawn", "--boot", "--register=no", "--keep-unit",
        f"--directory={host.rootfs}", f"--machine={host.machine}", f"--hostname={host.name}",
        f"--network-bridge={BRIDGE}", "--resolv-conf=off", "--timezone=off",
        "--link-journal=no", "--console=read-only",
        # SIGTERM to nspawn then powers the container off cleanly (SIGRTMIN+4 = poweroff).
        "--kill-signal=SIGRTMIN+4",
    ]
    with open(host.console_log, "ab") as console:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=enter_netns)
    host.nspawn = ProcessRef.of(process.pid)


def find_init(host: PxeHost, timeout: float = 20.0) -> ProcessRef:
    """Find the container's PID 1 (its PID in the host namespace).

    It is the child of nspawn whose innermost PID is 1. Recorded so that ``down``
    can still kill the container if nspawn itself died: the container's processes
    would otherwise outlive it, as no service manager on this machine tracks them.
    """
    if host.nspawn is None:
        raise LabError(f"{host.name} was never started")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not host.nspawn.alive():
            raise LabError(f"systemd-nspawn for {host.name} exited; see {host.console_log}")
        for pid in _children(host.nspawn.pid):
            if _innermost_pid(pid) == 1:
                return ProcessRef.of(pid)
        time.sleep(0.2)
    raise LabError(f"could not find PID 1 of container {host.machine}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _innermost_pid(pid: int) -> int | None:
    """The last NSpid field: the PID as seen inside the process's own PID namespace."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def wait_ready(host: PxeHost, timeout: float = 180.0) -> str:
    """Wait until SSH answers and systemd has finished booting: running or degraded.

    Polls over SSH itself (through the namespace relay), which is exactly the path
    Ansible will take afterwards.
    """
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        if host.nspawn is not None and not host.nspawn.alive():
            raise LabError(f"container {host.machine} stopped while booting; "
                           f"console log: {host.console_log}")
        result = run(ssh_command(host.address, "systemctl", "is-system-running"),
                     check=False, capture=True, timeout=30)
        state = result.stdout.strip() if result.returncode != 255 else "(no ssh yet)"
        if state in ("running", "degraded"):
            if state == "degraded":
                failed = run(ssh_command(host.address, "systemctl", "--failed", "--no-legend"),
                             check=False, capture=True, timeout=30).stdout.strip()
                log(f"warning: {host.name} is degraded; failed units:\n{failed}")
            return state
        if state == "stopping":
            break
        time.sleep(0.5)
    raise LabError(f"{host.name} did not finish booting (last answer: {state!r}); "
                   f"console log: {host.console_log}")


def stop(host: PxeHost, timeout: float = 30.0) -> None:
    """Power the container off cleanly, then kill whatever is left, by recorded PID.

    SIGTERM makes nspawn send SIGRTMIN+4 (poweroff) to the container's systemd. If
    nspawn is gone already, the same signal goes to the container's PID 1 directly.
    Killing a PID namespace's init with SIGKILL takes every process in it along.
    """
    nspawn, init = host.nspawn, host.init
    if nspawn is not None and nspawn.alive():
        nspawn.signal(signal.SIGTERM)
    elif init is not None and init.alive():
        init.signal(signal.SIGRTMIN + 4)
    deadline = time.monotonic() + timeout
    for process in (nspawn, init):
        if process is not None and not process.wait_gone(max(0.0, deadline - time.monotonic())):
            log(f"{host.name}: clean poweroff timed out, killing PID {process.pid}")
    for process in (init, nspawn):
        if process is not None and process.alive():
            process.kill()
    for process in (init, nspawn):
        if process is not None and process.alive():
            raise LabError(f"could not stop {host.machine} (PID {process.pid})")


def close_ssh_masters() -> None:
    """Ask Ansible's ssh masters of this lab to exit (``ssh -O exit``), then forget them.

    A master outlives its last session by ControlPersist; one still connected to a
    container that `down` removed would take the next `up`'s first Ansible command
    and hang it. Each master is addressed through its own socket, never by name.
    """
    for pattern in ANSIBLE_CONTROL_SOCKETS:
        for socket_path in ANSIBLE_CP_DIR.glob(pattern):
            if socket_path.is_socket():
                run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "lab-master"],
                    check=False, capture=True, timeout=10)
                socket_path.unlink(missing_ok=True)
