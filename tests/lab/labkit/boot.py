"""PXE clients: one QEMU machine per `boot`, on the lab bridge, watched via its serial log.

BIOS machines run SeaBIOS with the NIC's iPXE option ROM (package ipxe-qemu), so
their first DHCP request already says "iPXE". UEFI machines run OVMF with an empty
``romfile=`` so that the firmware's *own* PXE client boots (DHCP option 93 = 7,
TFTP), as real UEFI servers do; OVMF only drives virtio NICs by itself. With
``--http-boot`` OVMF's PXE boot options are switched off through fw_cfg, which
leaves its "UEFI HTTPv4" option (option 93 = 16, vendor class "HTTPClient").

A boot ends as soon as the test image prints ``PXE-BOOT-OK cmdline=...``; QEMU is
then killed by PID, and its taps deleted, whatever happened (also on Ctrl-C). QEMU
gets PR_SET_PDEATHSIG so that it dies even if this process is SIGKILLed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import net
from .common import (
    BOOTS_DIR,
    BRIDGE,
    FAR_BRIDGE,
    LOGS_DIR,
    NETNS,
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
IPXE_ROMS = {"e1000": Path("/usr/lib/ipxe/qemu/pxe-e1000.rom"),
             "virtio": Path("/usr/lib/ipxe/qemu/pxe-virtio.rom")}
QEMU_DEVICES = {"e1000": "e1000", "virtio": "virtio-net-pci"}
SUCCESS_MARK = "PXE-BOOT-OK"
# --network: which lab bridge the machine's NICs are plugged into.
NETWORK_BRIDGES = {"near": BRIDGE, "far": FAR_BRIDGE}
TAIL_LINES = 40

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def canonical_mac(text: str) -> str:
    """Accept 52:54:00:.., 52-54-00-.., 5254.0000.0101 or bare hex; return aa:bb:.. form."""
    digits = re.sub(r"[:.\-]", "", text.strip().lower())
    if not _MAC_HEX.fullmatch(digits):
        raise LabError(f"not a MAC address: {text!r}")
    if int(digits[:2], 16) & 1:
        raise LabError(f"{text!r} is a multicast MAC address; a NIC needs a unicast one")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


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

    @property
    def bridge(self) -> str:
        return NETWORK_BRIDGES[self.network]


@dataclass
class BootResult:
    ok: bool
    seconds: float
    line: str | None
    log_path: Path
    tail: list[str]
    reason: str


def plan_nics(request: BootRequest) -> list[Nic]:
    """The boot NIC is on the bridge; the others too, unless --boot-nic isolates it."""
    nics = []
    for index, mac in enumerate(request.macs, start=1):
        is_boot = index == request.boot_nic
        attached = is_boot or request.attach_all
        nics.append(Nic(index=index, mac=mac, tap=net.new_tap_name() if attached else None,
                        boot=is_boot))
    return nics


def qemu_argv(request: BootRequest, nics: list[Nic], serial_log: Path) -> list[str]:
    """The QEMU command line; see the module docstring for the firmware choices."""
    argv = [
        "qemu-system-x86_64", "-name", f"cpxe-boot-{request.macs[0]}",
        "-accel", "tcg", "-m", str(request.memory_mb), "-smp", "1",
        "-nodefaults", "-nographic", "-monitor", "none",
        "-serial", f"file:{serial_log}", "-no-reboot", "-boot", "strict=on",
    ]
    if request.firmware == "uefi":
        argv += ["-bios", str(OVMF),
                 # The lab network is IPv4 only: no PXEv6/HTTPv6 attempts, no DHCPv6.
                 "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no"]
        if request.http_boot:
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no"]
    device = QEMU_DEVICES[request.nic_model]
    romfile = "" if request.firmware == "uefi" else str(IPXE_ROMS[request.nic_model])
    for nic in nics:
        options = [device, f"mac={nic.mac}", f"romfile={romfile}"]
        if nic.tap is not None:
            argv += ["-netdev", f"tap,id=net{nic.index},ifname={nic.tap},script=no,downscript=no"]
            options.append(f"netdev=net{nic.index}")
        if nic.boot:
            options.append("bootindex=1")
        argv += ["-device", ",".join(options)]
    return argv


def validate(request: BootRequest) -> None:
    """Reject combinations that cannot work, before anything is created."""
    if len(set(request.macs)) != len(request.macs):
        raise LabError("each NIC needs its own MAC address")
    if not 1 <= request.boot_nic <= len(request.macs):
        raise LabError(f"--boot-nic must be between 1 and {len(request.macs)}")
    if request.http_boot and request.firmware != "uefi":
        raise LabError("--http-boot needs --firmware uefi (BIOS has no HTTP boot)")
    if request.firmware == "uefi" and request.nic_model != "virtio":
        raise LabError("UEFI boots use OVMF's own network stack, which drives virtio NICs only")
    if request.firmware == "uefi" and not OVMF.exists():
        raise LabError(f"{OVMF} is missing: apt-get install ovmf")
    if request.firmware == "bios" and not IPXE_ROMS[request.nic_model].exists():
        raise LabError(f"{IPXE_ROMS[request.nic_model]} is missing: apt-get install ipxe-qemu")
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


class SerialWatcher:
    """Follows a growing serial log and reports the first complete PXE-BOOT-OK line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""

    def poll(self) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return None
        self.offset += len(chunk)
        self.pending += chunk
        *complete, self.pending = self.pending.split(b"\n")
        for raw_line in complete:
            text = clean_text(raw_line)
            at = text.find(f"{SUCCESS_MARK} ")
            if at >= 0:
                return text[at:].rstrip()
        return None


def tail(path: Path, count: int = TAIL_LINES) -> list[str]:
    try:
        text = clean_text(path.read_bytes())
    except FileNotFoundError:
        return []
    return text.splitlines()[-count:]


def _record(record_path: Path, data: dict[str, Any]) -> None:
    """Each running boot has its own state file, so `down` can clean up after it."""
    write_json_atomic(record_path, data)


def run_boot(request: BootRequest) -> BootResult:
    """Boot one machine and wait for the test image's line. Always cleans up."""
    validate(request)
    nics = plan_nics(request)
    boot_mac = request.macs[request.boot_nic - 1]
    serial_log = serial_log_path(boot_mac)
    serial_log.touch()
    record_path = BOOTS_DIR / f"boot-{os.getpid()}-{secrets.token_hex(3)}.json"
    cleanup_stale_boots(only_orphans=True)
    record: dict[str, Any] = {"macs": request.macs, "firmware": request.firmware,
                              "network": request.network,
                              "log": str(serial_log), "taps": [n.tap for n in nics if n.tap],
                              "owner": ProcessRef.of(os.getpid()).to_json(), "qemu": None}
    _record(record_path, record)
    qemu: ProcessRef | None = None
    stderr_path = serial_log.with_suffix(".qemu-stderr")
    result: BootResult | None = None
    try:
        for nic in nics:
            if nic.tap is not None:
                net.create_tap(nic.tap, request.bridge)
        argv = qemu_argv(request, nics, serial_log)
        log(f"booting {boot_mac} ({request.firmware}{', HTTP boot' if request.http_boot else ''}, "
            f"{request.network} network); "
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
        result = _watch(process, serial_log, stderr_path, request.timeout, started)
        return result
    finally:
        with signals_deferred():
            if qemu is not None:
                stop_qemu(qemu)
            for nic in nics:
                if nic.tap is not None:
                    net.delete_link(nic.tap)
            record_path.unlink(missing_ok=True)
            if result is not None and result.ok:   # QEMU's messages only matter on failure
                stderr_path.unlink(missing_ok=True)


def _qemu_preexec() -> None:
    """In the child: join the lab namespace (for the taps), die with our process."""
    net.enter_netns()
    set_parent_death_signal()


def _watch(process: subprocess.Popen[bytes], serial_log: Path, stderr_path: Path,
           timeout: float, started: float) -> BootResult:
    watcher = SerialWatcher(serial_log)
    deadline = started + timeout
    while True:
        line = watcher.poll()
        if line is not None:
            return BootResult(True, time.monotonic() - started, line, serial_log, [], "ok")
        if process.poll() is not None:
            line = watcher.poll()
            if line is not None:
                return BootResult(True, time.monotonic() - started, line, serial_log, [], "ok")
            reason = f"QEMU exited (status {process.returncode}) before {SUCCESS_MARK}"
            qemu_err = ""
            if stderr_path.exists():
                qemu_err = stderr_path.read_text(errors="replace").strip()
            if qemu_err:
                reason += f": {qemu_err[-1000:]} (see {stderr_path})"
            return BootResult(False, time.monotonic() - started, None, serial_log,
                              tail(serial_log), reason)
        if time.monotonic() >= deadline:
            return BootResult(False, time.monotonic() - started, None, serial_log,
                              tail(serial_log), f"no {SUCCESS_MARK} within {timeout:g}s")
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
        record_path.unlink(missing_ok=True)


def result_json(request: BootRequest, result: BootResult) -> str:
    cmdline = None
    if result.line and result.line.startswith(f"{SUCCESS_MARK} cmdline="):
        cmdline = result.line[len(f"{SUCCESS_MARK} cmdline="):]
    return json.dumps({
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
    })
