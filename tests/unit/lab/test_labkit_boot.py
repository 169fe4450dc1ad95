# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab harness's `boot` without QEMU: arguments, QEMU command lines, MACs, serial
markers, reboot counting, results; and the test image's module order and disk image.

    python -m pytest -q -p no:cacheprovider tests/unit/lab
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"
sys.path.insert(0, str(LAB))

import lab  # noqa: E402  pylint: disable=wrong-import-position
from labkit import boot, image, sysimage  # noqa: E402  pylint: disable=wrong-import-position
from labkit.common import LabError  # noqa: E402  pylint: disable=wrong-import-position

OLD_JSON_KEYS = ["ok", "mac", "boot_mac", "macs", "firmware", "http_boot", "network", "seconds",
                 "line", "cmdline", "log", "reason", "tail"]


def request_of(*argv: str) -> boot.BootRequest:
    return lab.boot_request(lab.parser().parse_args(["boot", *argv]))


def argv_of(request: boot.BootRequest) -> list[str]:
    nics = boot.plan_nics(request)
    return boot.qemu_argv(request, nics, Path("/tmp/serial.log"), Path("/tmp/q.qmp"))


# --- arguments: without the new options, the boot of the contract ----------------------


def test_plain_boot_is_unchanged() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios")
    assert (request.timeout, request.max_boots, request.until) == (180.0, 1, "PXE-BOOT-OK")
    assert request.disk is None and not request.multi_boot
    argv = argv_of(request)
    assert "-no-reboot" in argv
    assert "-qmp" not in argv and "-drive" not in argv
    assert argv[argv.index("-device") + 1].endswith("bootindex=1")


def test_plain_boot_keeps_explicit_timeout() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "uefi", "--timeout", "42")
    assert request.timeout == 42.0 and request.nic_model == "virtio"


def test_disk_boot_reboots_and_boots_the_disk_after_the_network() -> None:
    request = request_of("--mac", "52-54-00-00-01-01", "--firmware", "bios", "--disk", "n01",
                         "--until", "LOCAL-BOOT-OK")
    assert request.max_boots == boot.DEFAULT_MAX_BOOTS == 3
    assert request.timeout == 180.0 * 3
    assert request.multi_boot and request.disk_path == boot.DISKS_DIR / "n01.img"
    argv = argv_of(request)
    assert "-no-reboot" not in argv
    assert argv[argv.index("-qmp") + 1] == "unix:/tmp/q.qmp,server=on,wait=off"
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert devices[0].startswith("e1000,mac=52:54:00:00:01:01") and devices[0].endswith("bootindex=1")
    assert devices[1] == "virtio-blk-pci,drive=disk0,bootindex=2"
    assert f"file={boot.DISKS_DIR / 'n01.img'},format=raw" in argv[argv.index("-drive") + 1]


def test_max_boots_one_with_a_disk_keeps_no_reboot() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", "--disk", "d",
                         "--max-boots", "1")
    assert "-no-reboot" in argv_of(request) and request.multi_boot


@pytest.mark.parametrize("extra", [["--disk-size", "64"], ["--fresh-disk"]])
def test_disk_options_need_a_disk(extra: list[str]) -> None:
    with pytest.raises(LabError, match="need --disk"):
        request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", *extra)


# --- MACs: the collection's parser, the lab's notations and error style ----------------


@pytest.mark.parametrize("text", ["52:54:00:00:01:0A", "52-54-00-00-01-0a", "5254.0000.010a",
                                  "52540000010A", " 52:54:00:00:01:0a "])
def test_mac_notations(text: str) -> None:
    assert boot.canonical_mac(text) == "52:54:00:00:01:0a"


def test_multicast_mac_is_refused_in_the_collections_words() -> None:
    with pytest.raises(LabError, match=r"^'01-00-5e-00-00-01' is a multicast"):
        boot.canonical_mac("01-00-5e-00-00-01")


@pytest.mark.parametrize("text", ["52:54:00:00:01", "52:54:00:00:01:zz", "hello", ""])
def test_not_a_mac(text: str) -> None:
    with pytest.raises(LabError, match="not a MAC address"):
        boot.canonical_mac(text)


# --- serial markers ---------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("PXE-BOOT-OK cmdline=a b", ("PXE-BOOT-OK", "PXE-BOOT-OK cmdline=a b")),
    ("[   3.1] foo INSTALL-OK node01  ", ("INSTALL-OK", "INSTALL-OK node01")),
    ("LOCAL-BOOT-OK node01", ("LOCAL-BOOT-OK", "LOCAL-BOOT-OK node01")),
    ("INSTALL-FAILED no disk found", ("INSTALL-FAILED", "INSTALL-FAILED no disk found")),
    ("LOCAL-BOOT-FAILED", ("LOCAL-BOOT-FAILED", "LOCAL-BOOT-FAILED")),
    ("Kernel command line: centra.node=x centra.callback=http://y", None),
    ("XPXE-BOOT-OK cmdline=", None),
    ("PXE-BOOT-OKAY", None),
])
def test_find_marker(text: str, expected: tuple[str, str] | None) -> None:
    assert boot.find_marker(text) == expected


def test_until_matches_a_marker_or_a_line_start() -> None:
    assert boot.until_reached("LOCAL-BOOT-OK", "LOCAL-BOOT-OK", "LOCAL-BOOT-OK node01")
    assert boot.until_reached("LOCAL-BOOT-OK node01", "LOCAL-BOOT-OK", "LOCAL-BOOT-OK node01")
    assert not boot.until_reached("LOCAL-BOOT-OK node0", "LOCAL-BOOT-OK", "LOCAL-BOOT-OK node01")
    assert not boot.until_reached("LOCAL-BOOT-OK", "LOCAL-BOOT-INFO", "LOCAL-BOOT-INFO loader=x")


def test_serial_watcher_reads_complete_lines_across_polls(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"\x1b[2J\x1b[01;01HSeaBIOS\r\nPXE-BOOT-OK cmdline=x\r\nINSTALL-O")
    watcher = boot.SerialWatcher(log)
    assert watcher.poll() == [("PXE-BOOT-OK", "PXE-BOOT-OK cmdline=x")]
    with open(log, "ab") as handle:
        handle.write(b"K node01\n\x1b[=3h\x1b[2J")
    assert watcher.poll() == [("INSTALL-OK", "INSTALL-OK node01")]
    assert watcher.poll() == []
    assert boot.clean_text(b"\x1b[=3h\x1b[0;1miPXE\x1b[0m\r") == "iPXE"


def reset_at(seconds: float) -> dict[str, object]:
    return {"event": "RESET", "data": {"guest": True, "reason": "guest-reset"},
            "timestamp": {"seconds": int(seconds), "microseconds": int(seconds % 1 * 1e6)}}


def test_a_reboot_of_several_resets_is_one_boot(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"INSTALL-OK node01\nreboot: machine restart\n")
    watcher = boot.SerialWatcher(log)
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", "--disk", "d",
                         "--until", "LOCAL-BOOT-OK", "--max-boots", "2")
    progress = boot._Progress(request, started=0.0)  # pylint: disable=protected-access
    progress.seen(watcher.poll())
    # Linux's restart, then SeaBIOS's own resets on the warm start, in separate batches.
    progress.events([reset_at(1000.0), reset_at(1000.4)])
    progress.events([reset_at(1003.0), reset_at(1007.5)])   # each within 5 s of the one before
    progress.events([{"event": "STOP"}, {"event": "RESET", "data": {"guest": False}}])
    assert progress.boot == 2 and not progress.too_many_boots
    with open(log, "ab") as handle:
        handle.write(b"SeaBIOS\nLOCAL-BOOT-OK node01\n")
    progress.seen(watcher.poll())
    assert progress.line == "LOCAL-BOOT-OK node01"
    assert [(m.boot, m.marker) for m in progress.markers] == [(1, "INSTALL-OK"), (2, "LOCAL-BOOT-OK")]
    progress.events([reset_at(1060.0)])
    assert progress.boot == 3 and progress.too_many_boots


def test_guest_power_off_is_noticed() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", "--disk", "d")
    progress = boot._Progress(request, started=0.0)  # pylint: disable=protected-access
    progress.events([{"event": "SHUTDOWN", "data": {"guest": True, "reason": "guest-shutdown"}}])
    assert progress.powered_off and progress.boot == 1


# --- results ----------------------------------------------------------------------------


def result(ok: bool, line: str | None, markers: list[boot.Marker] | None = None) -> boot.BootResult:
    return boot.BootResult(ok, 12.34, line, Path("/x.log"), [] if ok else ["a", "b"],
                           "ok" if ok else "no PXE-BOOT-OK within 180s", markers=markers)


def test_plain_json_has_exactly_the_old_keys() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios")
    data = json.loads(boot.result_json(request, result(True, "PXE-BOOT-OK cmdline=a=b c")))
    assert list(data) == OLD_JSON_KEYS
    assert data["cmdline"] == "a=b c" and data["seconds"] == 12.3


def test_plain_text_output_is_unchanged() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios")
    assert boot.result_text(request, result(True, "PXE-BOOT-OK cmdline=x")) == "PXE-BOOT-OK cmdline=x"
    assert boot.result_text(request, result(False, None)) == (
        "lab: boot failed: no PXE-BOOT-OK within 180s; last 2 lines of /x.log:\na\nb")


def test_disk_json_lists_the_markers_in_order() -> None:
    request = request_of("--mac", "52:54:00:00:01:01", "--firmware", "bios", "--disk", "d",
                         "--until", "LOCAL-BOOT-OK")
    markers = [boot.Marker(1, 50.0, "PXE-BOOT-OK", "PXE-BOOT-OK cmdline=centra.node=n1"),
               boot.Marker(1, 61.26, "INSTALL-OK", "INSTALL-OK n1"),
               boot.Marker(2, 110.0, "LOCAL-BOOT-OK", "LOCAL-BOOT-OK n1")]
    res = result(True, "LOCAL-BOOT-OK n1", markers)
    res.boots = 2
    data = json.loads(boot.result_json(request, res))
    assert list(data)[:len(OLD_JSON_KEYS)] == OLD_JSON_KEYS
    assert data["cmdline"] == "centra.node=n1"             # the last network boot's
    assert (data["until"], data["max_boots"], data["boots"]) == ("LOCAL-BOOT-OK", 3, 2)
    assert data["markers"][1] == {"boot": 1, "seconds": 61.3, "marker": "INSTALL-OK",
                                  "line": "INSTALL-OK n1"}
    assert boot.result_text(request, res).splitlines() == [
        "boot 1 50.0s PXE-BOOT-OK cmdline=centra.node=n1", "boot 1 61.3s INSTALL-OK n1",
        "boot 2 110.0s LOCAL-BOOT-OK n1"]


# --- the test image ---------------------------------------------------------------------


def _fake_module(directory: Path, name: str, depends: str) -> None:
    (directory / f"{name}.ko").write_bytes(
        b"\x7fELF junk\x00license=GPL\x00depends=" + depends.encode() + b"\x00name=" + name.encode())


def test_module_order_puts_dependencies_first(tmp_path: Path) -> None:
    for name, depends in (("virtio_net", "virtio_ring,virtio,net_failover"),
                          ("net_failover", "failover"), ("failover", ""), ("virtio", ""),
                          ("virtio_ring", "virtio"), ("e1000", "")):
        _fake_module(tmp_path, name, depends)
    find = image._module_finder(tmp_path)  # pylint: disable=protected-access
    order = image.module_order(("e1000", "virtio_net"), find)
    assert order == ["e1000", "virtio", "virtio_ring", "failover", "net_failover", "virtio_net"]
    with pytest.raises(LabError, match="not in the kernel package"):
        image.module_order(("virtio_blk",), find)


def test_install_script_placeholders_are_all_known() -> None:
    for script in (image.INSTALL_SCRIPT, image.LOCAL_INIT_SCRIPT):
        placeholders = {word for word in script.split("@")[1::2] if word.isupper() or word == "MODULES"}
        assert placeholders <= {"MODULES", "IMAGE_SECTORS", "NODE_START", "IMAGE_SHA256"}


def test_plain_boot_path_of_init_is_the_old_one() -> None:
    """Without an install request, /init prints the line and powers off, as before."""
    init = image.INIT_SCRIPT
    assert 'echo "PXE-BOOT-OK cmdline=$cmdline" > "$out"' in init
    assert init.rstrip().endswith("/bin/busybox sleep 1\n/bin/busybox poweroff -f".rstrip())


@pytest.mark.skipif(any(shutil.which(t) is None for t in sysimage.REQUIRED_TOOLS)
                    or not sysimage.SYSLINUX_EFI.exists(),
                    reason="needs fdisk, dosfstools, mtools, syslinux, syslinux-efi")
def test_system_image_layout(tmp_path: Path) -> None:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "local.img"
    kernel.write_bytes(os.urandom(4096))
    initrd.write_bytes(b"initrd")
    dest = tmp_path / "system.img"
    digest = sysimage.build_system_image(dest, kernel, initrd)
    data = dest.read_bytes()
    assert len(data) == sysimage.IMAGE_SECTORS * 512 and len(digest) == 64
    assert data[:440].rstrip(b"\0") == sysimage.SYSLINUX_MBR.read_bytes().rstrip(b"\0")
    assert data[510:512] == b"\x55\xaa"
    table = json.loads(subprocess.run(["sfdisk", "--json", str(dest)], check=True,
                                      capture_output=True, text=True).stdout)["partitiontable"]
    parts = [(p["start"], p["size"], p["type"], p.get("bootable", False)) for p in table["partitions"]]
    assert parts == [(2048, sysimage.FAT_SECTORS, "ef", True),
                     (sysimage.NODE_START, sysimage.NODE_SECTORS, "da", False)]
    assert data[sysimage.NODE_START * 512:].count(0) == sysimage.NODE_SECTORS * 512
    listing = subprocess.run(["mdir", "-a", "-b", "-/", "-i", f"{dest}@@{2048 * 512}", "::/"],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout.split()
    for path in ("::/vmlinuz", "::/local.img", "::/syslinux/ldlinux.sys", "::/syslinux/syslinux.cfg",
                 "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/ldlinux.e64", "::/EFI/BOOT/syslinux.cfg"):
        assert path.lower() in [entry.lower() for entry in listing], listing
