"""Paths, constants, command running, process identity and the state file.

Everything the lab creates is recorded in JSON state files before or right after it
is created, so that ``down`` (or the next ``up``) can remove it after a crash. The
processes the lab starts are recorded as (pid, start time): a PID alone could have
been reused by an unrelated process after a crash or a reboot, and the lab must never
signal a process it did not start.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_DIR = Path(__file__).resolve().parent.parent          # tests/lab


def _lab_name() -> str:
    """CENTRA_LAB_NAME picks one of several labs that can exist side by side.

    Unset: the lab of the contract (namespace cpxe-lab). Set to a short name, say
    ``b``: namespace cpxe-lab-b, its own state and inventory. Every lab network lives
    in a namespace of its own, so two labs may both use 192.0.2.0/24; the name is kept
    short because nspawn's veth names ("vb-" + machine) are cut at 15 characters.
    """
    name = os.environ.get("CENTRA_LAB_NAME", "")
    if name and not (len(name) <= 3 and name.isascii() and name.isalnum() and name.islower()):
        raise SystemExit(f"CENTRA_LAB_NAME={name!r}: use 1 to 3 lowercase letters or digits")
    return name


LAB_NAME = _lab_name()
_SUFFIX = f"-{LAB_NAME}" if LAB_NAME else ""
CACHE_DIR = Path(os.environ.get("CENTRA_LAB_CACHE", "/var/cache/centra-pxe-lab"))
STATE_DIR = Path(os.environ.get("CENTRA_LAB_STATE", f"/var/lib/centra-pxe-lab{_SUFFIX}"))
STATE_FILE = STATE_DIR / "state.json"
BOOTS_DIR = STATE_DIR / "boots"          # one JSON file per running `boot`
LOGS_DIR = STATE_DIR / "logs"            # serial and console logs; kept by `down`
LOCK_FILE = STATE_DIR / ".lock"
DEFAULT_INVENTORY = LAB_DIR / ".state" / f"inventory{_SUFFIX}.yml"

BRIDGE = "cpxebr0"
BRIDGE_NETWORK = "192.0.2.0/24"
BRIDGE_ADDRESS = "192.0.2.1"
PREFIX_LEN = 24
TAP_PREFIX = "cpxet"                     # every tap the lab makes starts with this
NFT_TABLE = f"centra_lab_{LAB_NAME}" if LAB_NAME else "centra_lab"  # `table inet centra_lab`
MACHINE_PREFIX = f"cpxe{LAB_NAME}-"                # nspawn machine names: cpxe-pxe01 ...
MAX_PXE_HOSTS = 8                        # 192.0.2.2 .. 192.0.2.9

NETNS = f"cpxe-lab{_SUFFIX}"             # the lab network lives in this namespace

# The far network (`up --far-network`): 198.51.100.0/24 on bridge cpxebr1 (no address
# of the lab's own), reached from 192.0.2.0/24 only through a router namespace that
# runs dhcrelay. The router's name follows the lab's, so labs side by side never meet.
FAR_BRIDGE = "cpxebr1"
FAR_NETWORK = "198.51.100.0/24"
ROUTER_NETNS = f"{NETNS}-rt"
ROUTER_NEAR_ADDRESS = "192.0.2.254"      # the router on cpxebr0: PXE hosts route via it
ROUTER_FAR_ADDRESS = "198.51.100.1"      # the router on cpxebr1: far clients' gateway, giaddr

SSH_KEY = CACHE_DIR / "ssh" / "id_ed25519"
# Where Ansible keeps this lab's ssh master sockets: the lab inventory's
# ansible_control_path_dir (~/.ansible/cp/<namespace>/) and molecule's control_path
# (~/.ansible/cp/<host>-<port>-<user>-lab-<name>, see .config/molecule/config.yml).
ANSIBLE_CP_DIR = Path("~/.ansible/cp").expanduser()
ANSIBLE_CONTROL_SOCKETS = (f"{NETNS}/*", f"*-lab-{LAB_NAME or 'main'}")
# ssh reaches the PXE hosts through a relay that enters the lab namespace. Debian's own
# python runs it by path: it needs nothing but the standard library.
SSH_PROXY_COMMAND = f"/usr/bin/python3 {LAB_DIR / 'labkit' / 'nsproxy.py'} {NETNS} %h %p"
SSH_COMMON_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                   f'-o ProxyCommand="{SSH_PROXY_COMMAND}"')

STATE_VERSION = 1


class LabError(Exception):
    """A failure with a message meant for a person; printed without a traceback."""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout stays machine-readable (boot line, JSON)."""
    print(f"lab: {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command from an argument list (never through a shell).

    On failure the error names the command and carries its stderr, because a bare
    CalledProcessError traceback is useless to whoever reads a CI log. The command
    dies with us (PR_SET_PDEATHSIG): a killed `up` must not leave an apt-get running
    in a rootfs that the next `up` wants to delete.
    """
    args = [str(a) for a in argv]
    try:
        return subprocess.run(
            args,
            check=check,
            text=True,
            env=env,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            preexec_fn=set_parent_death_signal,
        )
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or "").strip()[-2000:]
        raise LabError(
            f"command failed (exit {err.returncode}): {' '.join(args)}"
            + (f"\n{detail}" if detail else "")
        ) from None
    except FileNotFoundError:
        raise LabError(f"command not found: {args[0]} (is its Debian package installed?)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout}s: {' '.join(args)}") from None


def require_root() -> None:
    """Bridges, taps, nftables, chroot and nspawn all need root; say so up front."""
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (bridges, taps, nftables, nspawn)")


# --- processes -------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRef:
    """A process the lab started, identified by PID *and* kernel start time."""

    pid: int
    start: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProcessRef | None:
        if not data:
            return None
        return cls(pid=int(data["pid"]), start=int(data["start"]))

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        start = process_start_time(pid)
        if start is None:
            raise LabError(f"process {pid} vanished right after it was started")
        return cls(pid=pid, start=start)

    def alive(self) -> bool:
        """True while this very process exists and is not a zombie."""
        stat = _read_stat(self.pid)
        return stat is not None and stat[0] != "Z" and int(stat[19]) == self.start

    def signal(self, signum: int) -> bool:
        """Send a signal only if the PID still belongs to the process we started."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def wait_gone(self, timeout: float) -> bool:
        """Poll until the process is gone; reaps it if it happens to be our child."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(self.pid, os.WNOHANG)
            if not self.alive():
                return True
            time.sleep(0.2)
        return not self.alive()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL and wait: the last resort after a polite signal timed out."""
        if self.signal(signal.SIGKILL):
            self.wait_gone(timeout)


def _read_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat that follow ``(comm)``, or None if gone.

    The command name may contain spaces and parentheses, hence the split after the
    last ``)``. Index 0 is the state letter, index 19 the start time in clock ticks
    (field 22 of proc(5)).
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    after_comm = raw[raw.rfind(")") + 2:].split()
    return after_comm if len(after_comm) > 19 else None


def process_start_time(pid: int) -> int | None:
    stat = _read_stat(pid)
    return int(stat[19]) if stat else None


def set_parent_death_signal() -> None:
    """preexec_fn: make a child die with SIGKILL when the lab process dies.

    A `boot` killed with SIGKILL cannot run its cleanup, but its QEMU must not
    survive it; prctl(PR_SET_PDEATHSIG) asks the kernel to do that for us.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


# --- state files -------------------------------------------------------------------


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write via rename so a crash never leaves half a state file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """None when missing; an unreadable file is reported, not silently ignored."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        log(f"warning: ignoring corrupt state file {path}: {err}")
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _exclusive(path: Path, waiting_for: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {waiting_for} to finish ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lab_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise `up` and `down` of this lab (concurrent `boot`s do not take it)."""
    return _exclusive(LOCK_FILE, "another lab `up`/`down`")


def cache_lock() -> contextlib.AbstractContextManager[None]:
    """Serialise building and filling the caches that every lab shares (the rootfs
    tarball, the apt archives, the test image, the ssh key): labs side by side may
    come up at the same moment, on a machine where nothing is cached yet."""
    return _exclusive(CACHE_DIR / ".lock", "another lab filling the shared caches")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back while cleaning up; they arrive right after.

    A second Ctrl-C (or a supervisor's SIGTERM following a SIGINT) would otherwise
    abort a `finally` half-way and leave a tap or a QEMU behind.
    """
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send the chatter of every tool we run to stderr, at the file-descriptor level.

    Callers parse stdout (`up` prints the inventory path, `image` the image paths),
    so nothing else may land there, whatever a subprocess decides to print.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")
