"""Secure Boot in the lab, on its own (no collection role): Debian's signed chain boots
and an unsigned EFI binary is refused.

Brings a lab up, and on pxe01 (ISC dhcpd and tftpd-hpa, installed offline from the apt
cache `up` filled) serves a tree built from Debian's .debs, unpacked on the build machine
(labkit.debs): ``shimx64.efi`` (shim-signed, Microsoft-signed), ``grubx64.efi`` (the
Debian-signed netboot GRUB of grub-efi-amd64-signed, under the name shim loads next),
``grub/grub.cfg`` (where that GRUB looks: its embedded prefix is /grub), the lab's test
kernel (Debian-signed) and initrd. Then, side by side:

- a machine with OVMF Secure Boot enforced (``--firmware uefi-secureboot``: Microsoft keys
  enrolled) goes shim -> GRUB -> kernel and prints PXE-BOOT-OK with the command line
  GRUB gave it; the kernel itself says Secure Boot is on;
- a machine whose DHCP answer names Debian's ipxe.efi (unsigned) is refused by the
  firmware: "Access Denied", nothing boots;
- a machine whose GRUB config names an unsigned copy of the kernel is refused by GRUB
  (shim's verifier): "bad shim signature", nothing boots;
- the same refusal without TFTP: a UEFI HTTP boot machine (option 93 = 16) gets a FAT disk
  image over HTTP (the route of pxe_server_secure_boot_http_image, docs/secure-boot.md),
  boots shim from its RAM disk, and GRUB refuses the unsigned kernel in the image.

Only runs when asked, as root (scripts/test.sh's `harness` stage does):
    CENTRA_LAB=1 PYTHONPATH=tests/lab:.ansible/collections .venv/bin/python -m pytest -s tests/lab/test_secure_boot.py
About 2 minutes warm (the boots run in parallel).
"""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from labkit import debs
from labkit.facts import inventory_facts

pytestmark = [
    pytest.mark.skipif(os.environ.get("CENTRA_LAB") != "1",
                       reason="lab Secure Boot test: set CENTRA_LAB=1 (needs root, ~2 minutes)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

LAB_DIR = Path(__file__).resolve().parent
LAB = [sys.executable, str(LAB_DIR / "lab.py")]
CACHE_DIR = Path(os.environ.get("CENTRA_LAB_CACHE", "/var/cache/centra-pxe-lab"))
SIGNED_MAC = "52:54:00:5b:01:01"
UNSIGNED_LOADER_MAC = "52:54:00:5b:01:02"
UNSIGNED_KERNEL_MAC = "52:54:00:5b:01:03"
UNSIGNED_HTTP_MAC = "52:54:00:5b:01:04"
# The HTTP boot disk image (FAT, built here with mkfs.fat and mcopy), served by a plain HTTP
# server on pxe01: shim at the removable-media path, GRUB beside it, and GRUB's prefix
# (/grub, on the RAM disk now) holding a config that boots the unsigned kernel.
HTTP_IMAGE = "sb-unsigned.img"

# GRUB's own configuration: Debian's grubnetx64 reads $prefix/grub.cfg ((tftp,<server>)/grub)
# and sets $net_default_mac to the MAC of the NIC it booted from. A per-MAC file decides
# the kernel, as the collection's per-node configs do. `[ -f ... ]` is always false over
# TFTP (no directory listing), so the node file is sourced unguarded: a missing one is an
# error message, and GRUB goes on with the next line.
GRUB_CFG = """\
set timeout=0
echo "centra-lab: GRUB $grub_cpu-$grub_platform from $cmdpath"
echo "centra-lab: IP $net_default_ip"
source $prefix/nodes/$net_default_mac.cfg
linux /vmlinuz console=ttyS0,115200 panic=-1 centra.profile=secureboot centra.mac=$net_default_mac
initrd /initrd.img
boot
"""
# After a refused `linux`, GRUB goes on with the next lines (and would boot the default
# below the `source`): the node's file ends by powering the machine off, so the boot
# ends at once instead of timing out.
UNSIGNED_KERNEL_CFG = """\
linux /vmlinuz-unsigned console=ttyS0,115200 panic=-1 centra.profile=unsigned
initrd /initrd.img
boot
echo "centra-lab: the unsigned kernel did not boot"
halt
"""

HTTP_IMAGE_GRUB_CFG = 'echo "centra-lab: GRUB $grub_cpu-$grub_platform from $cmdpath"\n' + UNSIGNED_KERNEL_CFG

DHCPD_CONF = """\
# centra.pxe lab Secure Boot test: x86-64 UEFI (option 93 = 7 or 9) gets shim; UEFI HTTP
# boot (16) the disk image, with option 60 HTTPClient (OVMF takes no other answer).
option arch code 93 = unsigned integer 16;
authoritative;
ddns-update-style none;
default-lease-time 600;
max-lease-time 600;
subnet 192.0.2.0 netmask 255.255.255.0 {{
  range 192.0.2.100 192.0.2.199;
  next-server {server};
  if option arch = 00:07 or option arch = 00:09 {{
    filename "shimx64.efi";
  }} elsif option arch = 00:10 {{
    filename "http://{server}/{image}";
    option vendor-class-identifier "HTTPClient";
  }}
}}
host unsigned-loader {{
  hardware ethernet {unsigned_mac};
  filename "ipxe.efi";
}}
"""

SETUP_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get install -y -q --no-download --no-install-recommends isc-dhcp-server tftpd-hpa ipxe \
    >/tmp/secureboot-apt.log
rm -f /usr/sbin/policy-rc.d
mkdir -p /srv/tftp
tar -x -C /srv/tftp -f /tmp/tree.tar
cp /usr/lib/ipxe/ipxe.efi /srv/tftp/ipxe.efi
mv /tmp/dhcpd.conf /etc/dhcp/dhcpd.conf
sed -i 's/^INTERFACESv4=.*/INTERFACESv4="host0"/' /etc/default/isc-dhcp-server
# -v: every read request in the journal (the test reads which files were fetched).
sed -i 's/^TFTP_OPTIONS=.*/TFTP_OPTIONS="--secure -v"/' /etc/default/tftpd-hpa
dhcpd -t -cf /etc/dhcp/dhcpd.conf
systemctl restart isc-dhcp-server tftpd-hpa
systemctl is-active isc-dhcp-server tftpd-hpa
# The HTTP boot image, on the lab address only (the container's own python3).
systemd-run --quiet --unit=centra-lab-http python3 -m http.server 80 --bind "$1" --directory /srv/tftp/http
"""


def lab(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"lab.py {' '.join(args)} exited {result.returncode}\n"
                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def ssh(host: dict[str, str], command: str, stdin: bytes | None = None) -> str:
    argv = ["ssh", "-i", host["key"], "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            *shlex.split(host["ssh_args"]), f"root@{host['address']}", command]
    result = subprocess.run(argv, input=stdin, capture_output=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"ssh {command!r} failed ({result.returncode}):\n"
                    f"{result.stdout.decode(errors='replace')}\n{result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def boot(*args: str, timeout: float) -> dict[str, Any]:
    result = lab("boot", "--json", "--firmware", "uefi-secureboot", "--timeout", str(timeout),
                 *args, check=False, timeout=timeout + 120)
    try:
        data: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"boot printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    assert result.returncode == (0 if data["ok"] else 1)
    return data


def serial_log(data: dict[str, Any]) -> str:
    return Path(data["log"]).read_text(errors="replace")


def signed_tree() -> bytes:
    """The TFTP tree as a tar: Debian's signed loaders under the names the chain asks
    for, GRUB's configs, the test image, and an unsigned copy of the kernel."""
    loaders = debs.signed_loaders("amd64")
    image = CACHE_DIR / "image"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add_bytes(name: str, content: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        tar.add(loaders.shim, loaders.shim_name)
        tar.add(loaders.grub, loaders.grub_name)
        tar.add(image / "vmlinuz", "vmlinuz")
        tar.add(image / "initrd.img", "initrd.img")
        add_bytes("grub/grub.cfg", GRUB_CFG.encode())
        add_bytes(f"grub/nodes/{UNSIGNED_KERNEL_MAC}.cfg", UNSIGNED_KERNEL_CFG.encode())
        unsigned = unsigned_copy(image / "vmlinuz")
        add_bytes("vmlinuz-unsigned", unsigned)
        add_bytes("http/" + HTTP_IMAGE, http_image({
            "EFI/BOOT/BOOTX64.EFI": loaders.shim.read_bytes(),
            "EFI/BOOT/" + loaders.grub_name: loaders.grub.read_bytes(),
            "grub/grub.cfg": HTTP_IMAGE_GRUB_CFG.encode(),
            "vmlinuz-unsigned": unsigned,
            "initrd.img": (image / "initrd.img").read_bytes()}))
    return buffer.getvalue()


def http_image(files: dict[str, bytes]) -> bytes:
    """A FAT image (no partition table) holding files, by mkfs.fat and mcopy."""
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"centra-sb-image-{os.getpid()}"
    try:
        for name, content in files.items():
            (work / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
            (work / "tree" / name).write_bytes(content)
        size_kib = sum(len(c) for c in files.values()) // 1024 + 8192
        img = work / "image.img"
        subprocess.run(["mkfs.fat", "-C", str(img), str(size_kib)], check=True, capture_output=True)
        tops = sorted(str(p) for p in (work / "tree").iterdir())
        subprocess.run(["mcopy", "-s", "-i", str(img), *tops, "::/"], check=True, capture_output=True,
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
        return img.read_bytes()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unsigned_copy(kernel: Path) -> bytes:
    """The kernel with its signature table removed (sbattach --remove, on a copy)."""
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"centra-sb-{os.getpid()}.efi"
    shutil.copyfile(kernel, work)
    try:
        subprocess.run(["sbattach", "--remove", str(work)], check=True, capture_output=True)
        return work.read_bytes()
    finally:
        work.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pxe01(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if shutil.which("sbattach") is None:
        pytest.fail("sbattach is missing: apt-get install sbsigntool (scripts/setup.sh does)")
    inventory = tmp_path_factory.mktemp("lab") / "inventory.yml"
    lab("up", "--inventory", str(inventory))
    values = inventory_facts([str(inventory)]).hostvars["pxe01"]
    host = {"address": values["ansible_host"], "key": values["ansible_ssh_private_key_file"],
            "ssh_args": values["ansible_ssh_common_args"]}
    try:
        ssh(host, "cat > /tmp/tree.tar", signed_tree())
        ssh(host, "cat > /tmp/dhcpd.conf",
            DHCPD_CONF.format(server=host["address"], unsigned_mac=UNSIGNED_LOADER_MAC, image=HTTP_IMAGE).encode())
        ssh(host, "cat > /tmp/setup.sh", SETUP_SCRIPT.encode())
        ssh(host, "sh /tmp/setup.sh %s" % shlex.quote(host["address"]))
        yield host
    finally:
        lab("down")


@pytest.fixture(scope="module")
def boots(pxe01: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The four machines, side by side (the refused ones can only time out)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        signed = pool.submit(boot, "--mac", SIGNED_MAC, timeout=240)
        unsigned_loader = pool.submit(boot, "--mac", UNSIGNED_LOADER_MAC, timeout=75)
        unsigned_kernel = pool.submit(boot, "--mac", UNSIGNED_KERNEL_MAC, timeout=180)
        unsigned_http = pool.submit(boot, "--mac", UNSIGNED_HTTP_MAC, "--http-boot", timeout=180)
        results = {"signed": signed.result(), "unsigned_loader": unsigned_loader.result(),
                   "unsigned_kernel": unsigned_kernel.result(), "unsigned_http": unsigned_http.result()}
    print(f"\nSecure Boot boots: {time.monotonic() - started:.0f}s; signed chain "
          f"{results['signed']['seconds']}s")
    return results


def test_signed_chain_boots_under_secure_boot(pxe01: dict[str, str], boots: dict[str, dict[str, Any]]) -> None:
    data = boots["signed"]
    assert data["ok"], f"{data['reason']}\n" + "\n".join(data["tail"])
    assert data["firmware"] == "uefi-secureboot"
    assert "centra.profile=secureboot" in data["cmdline"]
    assert f"centra.mac={SIGNED_MAC}" in data["cmdline"], "GRUB's $net_default_mac is not the booting NIC"
    log = serial_log(data)
    assert "Start PXE over IPv4" in log
    assert f"centra-lab: GRUB x86_64-efi from (tftp,{pxe01['address']})" in log
    # The kernel's own word that the firmware enforces Secure Boot (and so that shim,
    # GRUB and the kernel all passed the firmware's and shim's checks).
    assert "Secure boot enabled" in log
    # Which files this machine fetched (tftpd-hpa -v: "RRQ from <address> filename <file>"),
    # in order: shim, GRUB under the name shim asks for, GRUB's config, the kernel.
    # (GRUB wraps its output at 80 columns: the address has a line of its own.)
    address = log.split("centra-lab: IP ", 1)[1].split()[0]
    # By in.tftpd's syslog identifier, not by unit: journald puts a message under a unit by
    # the sender's cgroup, which it reads when it gets to the message; the child in.tftpd
    # forks for a small file (GRUB's .lst files, grub.cfg) has often exited by then under
    # the load of four QEMU machines, and its lines then belong to no unit (CI: the
    # signed machine's grub.cfg line missing from `journalctl -u tftpd-hpa`).
    journal = ssh(pxe01, "journalctl -t in.tftpd -o cat --no-pager")
    fetched = [line.split(" filename ", 1)[1].strip().lstrip("/") for line in journal.splitlines()
               if line.startswith("RRQ from ") and line.split()[2].removeprefix("::ffff:") == address]
    wanted = ["shimx64.efi", "grubx64.efi", "grub/grub.cfg", "vmlinuz", "initrd.img"]
    assert [name for name in fetched if name in wanted] == \
        ["shimx64.efi"] * fetched.count("shimx64.efi") + wanted[1:], journal


def test_unsigned_efi_loader_is_refused_by_the_firmware(boots: dict[str, dict[str, Any]]) -> None:
    data = boots["unsigned_loader"]
    assert not data["ok"] and data["line"] is None
    log = serial_log(data)
    assert "Start PXE over IPv4" in log
    assert "Access Denied" in log
    assert "iPXE" not in log, "the unsigned iPXE ran under Secure Boot"


def test_unsigned_kernel_is_refused_by_grub(boots: dict[str, dict[str, Any]]) -> None:
    data = boots["unsigned_kernel"]
    assert not data["ok"] and data["line"] is None
    log = serial_log(data)
    assert "centra-lab: GRUB x86_64-efi" in log, "GRUB never ran: the refusal proves nothing"
    assert "error: bad shim signature." in log
    assert "centra-lab: the unsigned kernel did not boot" in log
    assert "EFI stub" not in log and "Linux version" not in log


def test_unsigned_kernel_in_the_http_boot_image_is_refused_by_grub(
        pxe01: dict[str, str], boots: dict[str, dict[str, Any]]) -> None:
    data = boots["unsigned_http"]
    assert not data["ok"] and data["line"] is None
    log = serial_log(data)
    assert f"URI: http://{pxe01['address']}/{HTTP_IMAGE}" in log, "the firmware did not fetch the image"
    assert "Start PXE over IPv4" not in log
    # GRUB ran from the RAM disk (not from TFTP), and shim's verifier refused the kernel.
    assert "centra-lab: GRUB x86_64-efi from" in log and "(tftp," not in log, "GRUB never ran from the image"
    assert "error: bad shim signature." in log
    assert "centra-lab: the unsigned kernel did not boot" in log
    assert "EFI stub" not in log and "Linux version" not in log
