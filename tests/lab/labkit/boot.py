"""PXE clients: one QEMU machine per `boot`, on the lab bridge, watched via its serial log.

BIOS machines run SeaBIOS with the NIC's iPXE option ROM (package ipxe-qemu), so
their first DHCP request already says "iPXE". UEFI machines run OVMF with an empty
``romfile=`` so that the firmware's *own* PXE client boots (DHCP option 93 = 7,
TFTP), as real UEFI servers do; OVMF only drives virtio NICs by itself. With
``--http-boot`` OVMF's PXE boot options are switched off through fw_cfg, which
leaves its "UEFI HTTPv4" option (option 93 = 16, vendor class "HTTPClient").

``--firmware uefi-secureboot`` is OVMF with Secure Boot enforced: the 4M Secure Boot
build (needs SMM: ``-machine q35,smm=on`` and secure pflash) with a per-boot copy of the
Microsoft-enrolled variable store, so the firmware runs only Microsoft-signed EFI
binaries (shim) and says "Access Denied" to anything else. ``--arch arm64`` is
``qemu-system-aarch64 -M virt -cpu cortex-a57`` with AAVMF (``uefi``: the plain
variable store; ``uefi-secureboot``: the Microsoft-enrolled one), option 93 = 11.

A boot ends as soon as the test image prints ``PXE-BOOT-OK cmdline=...``; QEMU is
then killed by PID, and its taps deleted, whatever happened (also on Ctrl-C). QEMU
gets PR_SET_PDEATHSIG so that it dies even if this process is SIGKILLed.

With ``--disk NAME`` the machine also gets a persistent virtio disk (a raw file in the
lab's state directory), booted after the network (bootindex 1 = the boot NIC, 2 = the
disk), as a rack server is set up. Such a machine may reboot: QEMU then runs without
``-no-reboot`` and the boot ends when a line starting with ``--until`` appears
(default PXE-BOOT-OK), or fails when the guest starts boot ``--max-boots`` + 1. Guest
resets are counted from QEMU's QMP ``RESET`` events. Every marker line seen on the way
(PXE-BOOT-OK, INSTALL-*, LOCAL-BOOT-*) is reported with its boot and time.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import net, net6
from .common import (
    BOOTS_DIR,
    BRIDGE,
    FAR_BRIDGE,
    LAB_DIR,
    LOGS_DIR,
    NETNS,
    STATE_DIR,
    LabError,
    ProcessRef,
    log,
    read_json,
    set_parent_death_signal,
    signals_deferred,
    timestamp,
    write_json_atomic,
)

OVMF = Path("/usr/share/ovmf/OVMF.fd")
# --firmware uefi-secureboot (amd64): code and the Microsoft-enrolled variables
# (package ovmf; note the capital directory).
OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
# --arch arm64 (package qemu-efi-aarch64): one code image; Secure Boot is on when
# the variable store has the Microsoft keys enrolled.
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
AAVMF_MS_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.ms.fd")
FIRMWARES = ("bios", "uefi", "uefi-secureboot")
ARCHES = ("amd64", "arm64")
QEMU_BINARIES = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
IPXE_ROMS = {"e1000": Path("/usr/lib/ipxe/qemu/pxe-e1000.rom"),
             "virtio": Path("/usr/lib/ipxe/qemu/pxe-virtio.rom")}
QEMU_DEVICES = {"e1000": "e1000", "virtio": "virtio-net-pci"}
SUCCESS_MARK = "PXE-BOOT-OK"
# The lines the test image prints (see image.py): what a boot reports, in order.
MARKER_RE = re.compile(r"(?<![A-Za-z0-9_-])(PXE-BOOT-OK|INSTALL-[A-Z]+|LOCAL-BOOT-[A-Z]+)(?= |$)")
DISKS_DIR = STATE_DIR / "disks"          # --disk NAME: DISKS_DIR/NAME.img, kept by `down`
DISK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_DISK_MB = 256
DEFAULT_MAX_BOOTS = 3                    # with --disk: install, then local boot, and one spare
RESET_SETTLE = 5.0                       # s: guest resets closer together are one reboot
# --network: which lab bridge the machine's NICs are plugged into.
NETWORK_BRIDGES = {"near": BRIDGE, "far": FAR_BRIDGE}
TAIL_LINES = 40

_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def _collection_parse_mac() -> Any:
    """The collection's one MAC parser (centra.pxe.plugins.module_utils._mac).

    Importable as it is when the checkout sits in an ansible_collections tree (or a test
    put one on sys.path); otherwise through .ansible/collections/ansible_collections/
    centra/pxe, the link to the checkout that molecule/resources/labclient.py uses too.
    """
    repository = LAB_DIR.parent.parent
    candidates = [repository / ".ansible" / "collections"]
    if repository.parent.parent.name == "ansible_collections":
        candidates.insert(0, repository.parent.parent.parent)
    try:
        from ansible_collections.centra.pxe.plugins.module_utils import _mac
        return _mac
    except ImportError:
        pass
    for path in candidates:
        if path.is_dir() and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    try:
        from ansible_collections.centra.pxe.plugins.module_utils import _mac
    except ImportError as err:
        raise LabError(f"cannot import the collection's MAC parser (centra.pxe from "
                       f"{candidates[-1]}: is ansible_collections/centra/pxe linked to the "
                       f"repository?): {err}") from None
    return _mac


def canonical_mac(text: str) -> str:
    """Accept 52:54:00:.., 52-54-00-.., 5254.0000.0101 or bare hex; return aa:bb:.. form."""
    mac = _collection_parse_mac()
    try:
        return str(mac.parse_mac(text))
    except mac.MacError as err:
        raise LabError(str(err)) from None


@dataclass
class Nic:
    """One NIC of the machine; ``tap`` is None for a NIC plugged into nothing."""

    index: int
    mac: str
    tap: str | None
    boot: bool


@dataclass
class BootRequest:
    macs: list[str]
    firmware: str             # bios | uefi
    timeout: float
    boot_nic: int             # 1-based
    attach_all: bool          # all NICs on the bridge even with --boot-nic
    http_boot: bool
    nic_model: str            # e1000 | virtio
    memory_mb: int = 512
    network: str = "near"     # near: 192.0.2.0/24 | far: 198.51.100.0/24 behind the relay
    disk: str | None = None   # --disk NAME: a persistent disk DISKS_DIR/NAME.img
    disk_size_mb: int = DEFAULT_DISK_MB
    fresh_disk: bool = False  # start from an empty disk (recreate it)
    until: str = SUCCESS_MARK
    max_boots: int = 1        # > 1: the guest may reboot (no -no-reboot)
    ipv6: bool = False        # --ipv6: OVMF's IPv4 stack off (PXEv6, or HTTPv6 with http_boot)
    arch: str = "amd64"       # amd64 | arm64

    @property
    def uefi(self) -> bool:
        """uefi and uefi-secureboot: OVMF/AAVMF with its own network stack."""
        return self.firmware in ("uefi", "uefi-secureboot")

    @property
    def secure_boot(self) -> bool:
        return self.firmware == "uefi-secureboot"

    @property
    def vars_template(self) -> Path | None:
        """The variable store a boot gets a copy of (None: OVMF.fd, which has its own)."""
        if self.arch == "arm64":
            return AAVMF_MS_VARS if self.secure_boot else AAVMF_VARS
        return OVMF_MS_VARS if self.secure_boot else None

    @property
    def bridge(self) -> str:
        return NETWORK_BRIDGES[self.network]

    @property
    def multi_boot(self) -> bool:
        """The extended mode (--disk, --max-boots, --until): markers and boots reported."""
        return self.disk is not None or self.max_boots > 1 or self.until != SUCCESS_MARK

    @property
    def disk_path(self) -> Path | None:
        return None if self.disk is None else DISKS_DIR / f"{self.disk}.img"


@dataclass
class Marker:
    """One marker line of the serial log: which boot (1-based), when (s from QEMU's start)."""

    boot: int
    seconds: float
    marker: str               # PXE-BOOT-OK, INSTALL-OK, LOCAL-BOOT-OK ...
    line: str

    def to_json(self) -> dict[str, Any]:
        return {"boot": self.boot, "seconds": round(self.seconds, 1), "marker": self.marker,
                "line": self.line}


@dataclass
class BootResult:
    ok: bool
    seconds: float
    line: str | None
    log_path: Path
    tail: list[str]
    reason: str
    markers: list[Marker] | None = None
    boots: int = 1


def plan_nics(request: BootRequest) -> list[Nic]:
    """The boot NIC is on the bridge; the others too, unless --boot-nic isolates it."""
    nics = []
    for index, mac in enumerate(request.macs, start=1):
        is_boot = index == request.boot_nic
        attached = is_boot or request.attach_all
        nics.append(Nic(index=index, mac=mac, tap=net.new_tap_name() if attached else None,
                        boot=is_boot))
    return nics


def qemu_argv(request: BootRequest, nics: list[Nic], serial_log: Path,
              qmp_socket: Path | None = None, vars_file: Path | None = None) -> list[str]:
    """The QEMU command line; see the module docstring for the firmware choices.

    ``vars_file`` is this boot's own copy of ``request.vars_template`` (Secure Boot or
    arm64): the firmware writes to its variable store, so each boot gets a fresh one.
    """
    argv = [
        QEMU_BINARIES[request.arch], "-name", f"cpxe-boot-{request.macs[0]}",
    ]
    if request.arch == "arm64":
        argv += ["-M", "virt", "-cpu", "cortex-a57"]
    elif request.secure_boot:
        # The Secure Boot build keeps its variables in SMM: without smm=on and secure
        # pflash it stops in its reset vector.
        argv += ["-machine", "q35,smm=on",
                 "-global", "driver=cfi.pflash01,property=secure,value=on"]
    argv += [
        "-accel", "tcg", "-m", str(request.memory_mb), "-smp", "1",
        "-nodefaults", "-nographic", "-monitor", "none",
        "-serial", f"file:{serial_log}",
    ]
    if request.max_boots > 1:
        # The guest may reboot: QEMU resets it and says so on QMP (RESET events).
        if qmp_socket is not None:
            argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    else:
        argv.append("-no-reboot")
    argv += ["-boot", "strict=on"]
    if request.uefi:
        if request.vars_template is None:
            argv += ["-bios", str(OVMF)]
        else:
            if vars_file is None:
                raise LabError("internal: a firmware variable store copy is needed")
            code = AAVMF_CODE if request.arch == "arm64" else OVMF_SECBOOT_CODE
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}"]
        # One address family (IPv4 unless --ipv6), PXE or only HTTP boot: net6.ovmf_fw_cfg.
        argv += net6.ovmf_fw_cfg(request.ipv6, request.http_boot)
    device = QEMU_DEVICES[request.nic_model]
    romfile = "" if request.uefi else str(IPXE_ROMS[request.nic_model])
    for nic in nics:
        options = [device, f"mac={nic.mac}", f"romfile={romfile}"]
        if nic.tap is not None:
            argv += ["-netdev", f"tap,id=net{nic.index},ifname={nic.tap},script=no,downscript=no"]
            options.append(f"netdev=net{nic.index}")
        if nic.boot:
            options.append("bootindex=1")
        argv += ["-device", ",".join(options)]
    if request.disk_path is not None:
        # After the network, as on a rack server: the firmware tries the disk when the
        # network boot ends (iPXE `exit`) or fails.
        argv += ["-drive", f"if=none,id=disk0,file={request.disk_path},format=raw",
                 "-device", "virtio-blk-pci,drive=disk0,bootindex=2"]
    return argv


def validate(request: BootRequest) -> None:
    """Reject combinations that cannot work, before anything is created."""
    if len(set(request.macs)) != len(request.macs):
        raise LabError("each NIC needs its own MAC address")
    if not 1 <= request.boot_nic <= len(request.macs):
        raise LabError(f"--boot-nic must be between 1 and {len(request.macs)}")
    if request.firmware not in FIRMWARES:
        raise LabError(f"--firmware must be one of {', '.join(FIRMWARES)}")
    if request.arch not in ARCHES:
        raise LabError(f"--arch must be one of {', '.join(ARCHES)}")
    if request.arch == "arm64" and not request.uefi:
        raise LabError("--arch arm64 needs --firmware uefi or uefi-secureboot (arm64 has no BIOS)")
    if request.http_boot and not request.uefi:
        raise LabError("--http-boot needs --firmware uefi (BIOS has no HTTP boot)")
    if request.ipv6 and not request.uefi:
        raise LabError("--ipv6 needs --firmware uefi (the lab's BIOS iPXE ROM boots over IPv4)")
    if request.uefi and request.nic_model != "virtio":
        raise LabError("UEFI boots use OVMF's own network stack, which drives virtio NICs only")
    if request.firmware == "uefi" and request.arch == "amd64" and not OVMF.exists():
        raise LabError(f"{OVMF} is missing: apt-get install ovmf")
    if request.arch == "amd64" and request.secure_boot:
        for path in (OVMF_SECBOOT_CODE, OVMF_MS_VARS):
            if not path.exists():
                raise LabError(f"{path} is missing: apt-get install ovmf")
    if request.arch == "arm64":
        for path in (AAVMF_CODE, AAVMF_VARS, AAVMF_MS_VARS):
            if not path.exists():
                raise LabError(f"{path} is missing: apt-get install qemu-efi-aarch64")
    if shutil.which(QEMU_BINARIES[request.arch]) is None:
        package = "qemu-system-arm" if request.arch == "arm64" else "qemu-system-x86"
        raise LabError(f"{QEMU_BINARIES[request.arch]} is missing: apt-get install {package}")
    if request.firmware == "bios" and not IPXE_ROMS[request.nic_model].exists():
        raise LabError(f"{IPXE_ROMS[request.nic_model]} is missing: apt-get install ipxe-qemu")
    if request.disk is not None and not DISK_NAME_RE.fullmatch(request.disk):
        raise LabError(f"--disk {request.disk!r}: use a name of letters, digits, '.', '_' "
                       "and '-' (up to 64), not a path")
    if not 1 <= request.disk_size_mb <= 65536:
        raise LabError("--disk-size must be between 1 and 65536 (MiB)")
    if request.max_boots < 1:
        raise LabError("--max-boots must be 1 or more")
    if not request.until.strip():
        raise LabError("--until needs a marker, e.g. LOCAL-BOOT-OK")
    if not net.link_exists(BRIDGE):
        raise LabError(f"bridge {BRIDGE} does not exist (namespace {NETNS}): "
                       "run `lab.py up` first")
    if request.network not in NETWORK_BRIDGES:
        raise LabError(f"--network must be one of {', '.join(NETWORK_BRIDGES)}")
    if not net.link_exists(request.bridge):
        raise LabError(f"the far network is not up (no bridge {request.bridge} in {NETNS}): "
                       "run `lab.py up --far-network` first")


def serial_log_path(mac: str) -> Path:
    """Named by MAC and time, plus the PID so that parallel boots never collide."""
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    return LOGS_DIR / f"boot-{mac.replace(':', '-')}-{timestamp()}-{os.getpid()}.log"


def clean_text(raw: bytes) -> str:
    """Serial bytes to readable text: drop ANSI sequences (OVMF paints menus) and CRs."""
    return _ANSI.sub("", raw.decode("utf-8", errors="replace")).replace("\r", "")


def find_marker(text: str) -> tuple[str, str] | None:
    """(marker, line from the marker on) if this serial line carries a marker."""
    match = MARKER_RE.search(text)
    if match is None:
        return None
    return match.group(1), text[match.start():].rstrip()


def until_reached(until: str, marker: str, line: str) -> bool:
    """--until PXE-BOOT-OK matches that marker; --until 'LOCAL-BOOT-OK node01' the line's start."""
    return marker == until or line == until or line.startswith(until + " ")


class SerialWatcher:
    """Follows a growing serial log and reports each new complete marker line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""

    def poll(self) -> list[tuple[str, str]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        self.pending += chunk
        *complete, self.pending = self.pending.split(b"\n")
        found = []
        for raw_line in complete:
            marker = find_marker(clean_text(raw_line))
            if marker is not None:
                found.append(marker)
        return found


class QmpEvents:
    """The guest's resets and power-offs, read from QEMU's QMP socket (no commands sent
    but the handshake). Only used when the guest may reboot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.buffer = b""

    def connect(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(5)
                sock.connect(str(self.path))
                break
            except OSError:
                sock.close()
                if process.poll() is not None or time.monotonic() >= deadline:
                    raise LabError(f"QEMU's QMP socket {self.path} did not answer") from None
                time.sleep(0.05)
        greeting = sock.makefile("rb").readline()
        if b"QMP" not in greeting:
            raise LabError(f"unexpected QMP greeting: {greeting[:200]!r}")
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        sock.setblocking(False)
        self.sock = sock

    def poll(self) -> list[dict[str, Any]]:
        """New events (RESET, SHUTDOWN ...); command replies are dropped."""
        if self.sock is None:
            return []
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:              # QEMU is gone
                self.close()
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and "event" in message:
                    events.append(message)
        return events

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def tail(path: Path, count: int = TAIL_LINES) -> list[str]:
    try:
        text = clean_text(path.read_bytes())
    except FileNotFoundError:
        return []
    return text.splitlines()[-count:]


def _record(record_path: Path, data: dict[str, Any]) -> None:
    """Each running boot has its own state file, so `down` can clean up after it."""
    write_json_atomic(record_path, data)


@contextlib.contextmanager
def attached_disk(request: BootRequest) -> Iterator[None]:
    """Create the disk on first use (sparse raw file, or anew with --fresh-disk) and hold
    a lock on it for the whole boot: two machines never share a disk."""
    path = request.disk_path
    if path is None:
        yield
        return
    DISKS_DIR.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            # flock, not fcntl locks: QEMU takes its own (OFD) locks on the image.
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"disk {request.disk} ({path}) is in use by another boot") from None
        size = request.disk_size_mb * 1024 * 1024
        current = os.fstat(handle.fileno()).st_size
        if request.fresh_disk or current == 0:
            handle.truncate(0)
            handle.truncate(size)
            log(f"disk {request.disk}: new, empty, {request.disk_size_mb} MiB ({path})")
        else:
            log(f"disk {request.disk}: reused, {current // (1024 * 1024)} MiB ({path})")
        yield


def run_boot(request: BootRequest) -> BootResult:
    """Boot one machine and wait for the test image's line. Always cleans up."""
    validate(request)
    with attached_disk(request):
        return _run_boot(request)


def _run_boot(request: BootRequest) -> BootResult:
    nics = plan_nics(request)
    boot_mac = request.macs[request.boot_nic - 1]
    serial_log = serial_log_path(boot_mac)
    serial_log.touch()
    record_id = f"boot-{os.getpid()}-{secrets.token_hex(3)}"
    record_path = BOOTS_DIR / f"{record_id}.json"
    qmp_socket = BOOTS_DIR / f"{record_id}.qmp" if request.max_boots > 1 else None
    # The firmware's variable store is written to by the firmware: a copy per boot.
    vars_file = BOOTS_DIR / f"{record_id}.vars.fd" if request.vars_template is not None else None
    cleanup_stale_boots(only_orphans=True)
    record: dict[str, Any] = {"macs": request.macs, "firmware": request.firmware,
                              "network": request.network,
                              "log": str(serial_log), "taps": [n.tap for n in nics if n.tap],
                              "owner": ProcessRef.of(os.getpid()).to_json(), "qemu": None}
    if request.disk_path is not None:
        record["disk"] = str(request.disk_path)
    if qmp_socket is not None:
        record["qmp"] = str(qmp_socket)
    if vars_file is not None:
        record["vars"] = str(vars_file)
    if request.arch != "amd64":
        record["arch"] = request.arch
    _record(record_path, record)
    qemu: ProcessRef | None = None
    events: QmpEvents | None = None
    stderr_path = serial_log.with_suffix(".qemu-stderr")
    result: BootResult | None = None
    try:
        for nic in nics:
            if nic.tap is not None:
                net.create_tap(nic.tap, request.bridge)
        if vars_file is not None and request.vars_template is not None:
            shutil.copyfile(request.vars_template, vars_file)
        argv = qemu_argv(request, nics, serial_log, qmp_socket, vars_file)
        extra = ""
        if request.arch != "amd64":
            extra = f", {request.arch}"
        if request.disk is not None:
            extra += f", disk {request.disk}"
        if request.multi_boot:
            extra += f", until {request.until}, at most {request.max_boots} boot(s)"
        log(f"booting {boot_mac} ({request.firmware}{', HTTP boot' if request.http_boot else ''}, "
            f"{request.network} network{extra}); "
            f"serial log: {serial_log}")
        with open(stderr_path, "wb") as stderr:
            # Own session: a terminal's Ctrl-C reaches us, and we stop QEMU ourselves.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_qemu_preexec)
        qemu = ProcessRef.of(process.pid)
        record["qemu"] = qemu.to_json()
        _record(record_path, record)
        started = time.monotonic()
        if qmp_socket is not None:
            events = QmpEvents(qmp_socket)
            events.connect(process, started + 30)
        result = _watch(request, process, serial_log, stderr_path, started, events)
        return result
    finally:
        with signals_deferred():
            if events is not None:
                events.close()
            if qemu is not None:
                stop_qemu(qemu)
            for nic in nics:
                if nic.tap is not None:
                    net.delete_link(nic.tap)
            if qmp_socket is not None:
                qmp_socket.unlink(missing_ok=True)
            if vars_file is not None:
                vars_file.unlink(missing_ok=True)
            record_path.unlink(missing_ok=True)
            if result is not None and result.ok:   # QEMU's messages only matter on failure
                stderr_path.unlink(missing_ok=True)


def _qemu_preexec() -> None:
    """In the child: join the lab namespace (for the taps), die with our process."""
    net.enter_netns()
    set_parent_death_signal()


def _event_time(event: dict[str, Any]) -> float | None:
    stamp = event.get("timestamp") or {}
    try:
        return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6
    except (KeyError, TypeError, ValueError):
        return None


class _Progress:
    """What a watched boot has seen so far: markers, boots, and whether it is done."""

    def __init__(self, request: BootRequest, started: float) -> None:
        self.request = request
        self.started = started
        self.markers: list[Marker] = []
        self.boot = 1
        self.line: str | None = None       # the --until line, once seen
        self.too_many_boots = False
        self.powered_off = False
        self.last_reset: float | None = None

    def seen(self, found: list[tuple[str, str]]) -> None:
        for marker, line in found:
            if self.line is not None:
                return
            self.markers.append(Marker(self.boot, time.monotonic() - self.started, marker, line))
            if self.request.multi_boot:
                log(f"boot {self.boot}, {time.monotonic() - self.started:.1f}s: {line}")
            if until_reached(self.request.until, marker, line):
                self.line = line

    def events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            name = event.get("event")
            data = event.get("data") or {}
            if name == "RESET" and data.get("guest", True):
                # One reboot can be several resets: Linux's restart, then SeaBIOS resets
                # the machine again on a warm start. Resets less than RESET_SETTLE
                # seconds apart (QEMU's event times) are one reboot.
                at = _event_time(event)
                previous, self.last_reset = self.last_reset, at
                if previous is not None and at is not None and at - previous < RESET_SETTLE:
                    continue
                self.boot += 1
                log(f"the guest rebooted ({data.get('reason', '?')}): boot {self.boot}")
                if self.boot > self.request.max_boots:
                    self.too_many_boots = True
            elif name == "SHUTDOWN" and data.get("guest", True):
                self.powered_off = True

    def result(self, ok: bool, serial_log: Path, reason: str) -> BootResult:
        boots = min(self.boot, self.request.max_boots) if self.too_many_boots else self.boot
        return BootResult(ok, time.monotonic() - self.started, self.line, serial_log,
                          [] if ok else tail(serial_log), reason,
                          markers=self.markers, boots=boots)

    def last_marker(self) -> str:
        return f"; last marker: {self.markers[-1].line}" if self.markers else "; no marker seen"


def _watch(request: BootRequest, process: subprocess.Popen[bytes], serial_log: Path,
           stderr_path: Path, started: float, events: QmpEvents | None) -> BootResult:
    watcher = SerialWatcher(serial_log)
    progress = _Progress(request, started)
    deadline = started + request.timeout
    until = request.until
    while True:
        # Serial first: a marker printed before a reset belongs to the boot that printed it.
        progress.seen(watcher.poll())
        if progress.line is not None:
            return progress.result(True, serial_log, "ok")
        if events is not None:
            progress.events(events.poll())
            progress.seen(watcher.poll())
            if progress.line is not None:
                return progress.result(True, serial_log, "ok")
            if progress.too_many_boots:
                return progress.result(
                    False, serial_log,
                    f"the machine started boot {progress.boot} without {until} "
                    f"(--max-boots {request.max_boots}){progress.last_marker()}")
        if process.poll() is not None:
            progress.seen(watcher.poll())
            if progress.line is not None:
                return progress.result(True, serial_log, "ok")
            if request.multi_boot:
                how = "the machine powered off" if progress.powered_off else \
                    f"QEMU exited (status {process.returncode})"
                reason = f"{how} before {until}{progress.last_marker()}"
            else:
                reason = f"QEMU exited (status {process.returncode}) before {until}"
            qemu_err = ""
            if stderr_path.exists():
                qemu_err = stderr_path.read_text(errors="replace").strip()
            if qemu_err:
                reason += f": {qemu_err[-1000:]} (see {stderr_path})"
            return progress.result(False, serial_log, reason)
        if time.monotonic() >= deadline:
            reason = f"no {until} within {request.timeout:g}s"
            if request.multi_boot:
                reason += f" (boot {progress.boot}{progress.last_marker()})"
            return progress.result(False, serial_log, reason)
        time.sleep(0.25)


def stop_qemu(qemu: ProcessRef) -> None:
    """SIGTERM, then SIGKILL: the test image is done, nothing to save."""
    if qemu.signal(signal.SIGTERM) and not qemu.wait_gone(5):
        qemu.kill()


def cleanup_stale_boots(only_orphans: bool = False) -> None:
    """Kill QEMUs and delete taps of boots that did not clean up after themselves.

    `down` cleans up every boot. A new `boot` only collects orphans, the records of
    `boot` processes that no longer exist (killed with SIGKILL), so that boots running
    side by side never touch each other.
    """
    if not BOOTS_DIR.is_dir():
        return
    for record_path in sorted(BOOTS_DIR.glob("boot-*.json")):
        record = read_json(record_path) or {}
        owner = ProcessRef.from_json(record.get("owner"))
        if only_orphans and (owner is None or owner.alive()):
            continue
        qemu = ProcessRef.from_json(record.get("qemu"))
        if qemu is not None and qemu.alive():
            log(f"stopping leftover QEMU PID {qemu.pid} ({record.get('macs')})")
            stop_qemu(qemu)
        for tap in record.get("taps", []):
            net.delete_link(tap)
        for key in ("qmp", "vars"):
            if isinstance(record.get(key), str):
                Path(record[key]).unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)


def _cmdline(line: str | None) -> str | None:
    prefix = f"{SUCCESS_MARK} cmdline="
    return line[len(prefix):] if line and line.startswith(prefix) else None


def result_json(request: BootRequest, result: BootResult) -> str:
    cmdline = _cmdline(result.line)
    if cmdline is None and request.multi_boot:
        # The command line of the last network boot (an install boot, say) on the way.
        for marker in reversed(result.markers or []):
            if marker.marker == SUCCESS_MARK:
                cmdline = _cmdline(marker.line)
                break
    data: dict[str, Any] = {
        "ok": result.ok,
        "mac": request.macs[0],
        "boot_mac": request.macs[request.boot_nic - 1],
        "macs": request.macs,
        "firmware": request.firmware,
        "http_boot": request.http_boot,
        "network": request.network,
        "seconds": round(result.seconds, 1),
        "line": result.line,
        "cmdline": cmdline,
        "log": str(result.log_path),
        "reason": result.reason,
        "tail": result.tail,
    }
    if request.arch != "amd64":   # only then: an amd64 boot's output is what it always was
        data["arch"] = request.arch
    if request.multi_boot:   # only then: without them the output is what it always was
        data.update({
            "disk": None if request.disk_path is None else str(request.disk_path),
            "until": request.until,
            "max_boots": request.max_boots,
            "boots": result.boots,
            "markers": [m.to_json() for m in result.markers or []],
        })
    return json.dumps(data)


def result_text(request: BootRequest, result: BootResult) -> str:
    """What `boot` prints without --json (the --until line, or the failure and the tail);
    in the extended mode every marker line first, one a line:
    ``boot <n> <seconds>s <marker line>``."""
    lines = []
    if request.multi_boot:
        lines += [f"boot {m.boot} {m.seconds:.1f}s {m.line}" for m in result.markers or []]
        if result.ok:
            return "\n".join(lines)
    elif result.ok:
        return str(result.line)
    lines.append(f"lab: boot failed: {result.reason}; last {len(result.tail)} lines of "
                 f"{result.log_path}:")
    lines.append("\n".join(result.tail))     # an empty line when there is no tail, as ever
    return "\n".join(lines)
