"""The "local system" the lab's installer writes to a machine's disk.

One raw disk image, built on the build machine without loop mounts or root-only
tricks, that boots on both firmwares:

- an MBR partition table (sfdisk) with the syslinux MBR boot code (``mbr.bin`` from
  ``syslinux-common``) in its first 440 bytes;
- partition 1: a FAT16 file system, type 0xEF (EFI system partition) and marked
  active, filled with mtools and made BIOS-bootable with ``syslinux --install``
  (package ``syslinux``). It holds Debian's kernel (``/vmlinuz``), a tiny initrd
  (``/local.img``), ``/syslinux/syslinux.cfg`` for BIOS, and
  ``/EFI/BOOT/BOOTX64.EFI`` = ``syslinux.efi`` (package ``syslinux-efi``) with its
  ``ldlinux.e64`` and ``syslinux.cfg`` next to it for UEFI (the removable-media path,
  which OVMF finds without a boot entry of its own);
- partition 2: 1 MiB of raw data (type 0xDA, no file system). The image leaves it
  zeroed; the installer writes the node's identity in its first sector, one line
  ``centra-node <name>``, which the local initrd reads.

BIOS: SeaBIOS -> mbr.bin -> active partition's boot sector (syslinux) -> ldlinux.sys
-> /syslinux/syslinux.cfg. UEFI: OVMF -> \\EFI\\BOOT\\BOOTX64.EFI (syslinux.efi) ->
/EFI/BOOT/syslinux.cfg. Both load the same kernel and initrd; only
``centra.loader=`` on the kernel command line tells them apart.

Under Secure Boot the unsigned syslinux.efi is refused, so the partition also holds
Debian's signed chain where a Debian system installed for Secure Boot has it:
``/EFI/debian/shimx64.efi`` (shim-signed), ``/EFI/debian/grubx64.efi`` (the disk GRUB of
grub-efi-amd64-signed, whose embedded prefix is /EFI/debian) and
``/EFI/debian/grub.cfg`` (same kernel and initrd, ``centra.loader=grub-efi``). Nothing
boots it by default: a network GRUB chainloads ``/EFI/debian/shimx64.efi`` to boot the
disk (measured: GRUB's ``exit`` never makes OVMF try the disk).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import LabError, log

SECTOR = 512
FAT_START = 2048                  # 1 MiB: the usual alignment
FAT_SECTORS = 24 * 2048           # 24 MiB: kernel (8 MiB) + initrd + loaders, with room
NODE_START = FAT_START + FAT_SECTORS
NODE_SECTORS = 2048               # 1 MiB raw partition: the node identity
IMAGE_SECTORS = NODE_START + NODE_SECTORS
DISK_ID = "0x43505845"            # "CPXE": a fixed disk signature, so builds are repeatable
FAT_VOLUME_ID = "43505845"

SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
SYSLINUX_EFI = Path("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi")
LDLINUX_E64 = Path("/usr/lib/syslinux/modules/efi64/ldlinux.e64")

# Both loaders write to the serial port too, so the serial log shows which one ran.
_SYSLINUX_CFG = """\
SERIAL 0 115200
DEFAULT local
PROMPT 0
TIMEOUT 0
LABEL local
  LINUX /vmlinuz
  INITRD /local.img
  APPEND console=ttyS0,115200 panic=-1 centra.loader={loader}
"""
BIOS_CFG = _SYSLINUX_CFG.format(loader="syslinux-bios")
EFI_CFG = _SYSLINUX_CFG.format(loader="syslinux-efi")
# Debian's disk GRUB, loaded by the disk's shim: its config (read from $prefix =
# (the partition)/EFI/debian).
GRUB_CFG = """\
set timeout=0
linux /vmlinuz console=ttyS0,115200 panic=-1 centra.loader=grub-efi
initrd /local.img
boot
"""

SFDISK_SCRIPT = f"""\
label: dos
label-id: {DISK_ID}
unit: sectors

start={FAT_START}, size={FAT_SECTORS}, type=ef, bootable
start={NODE_START}, size={NODE_SECTORS}, type=da
"""

# Everything that shapes the image; image.py folds it into the test image's recipe.
RECIPE_TEXT = "\n".join([
    "sysimage v1", str(FAT_START), str(FAT_SECTORS), str(NODE_START), str(NODE_SECTORS),
    SFDISK_SCRIPT, BIOS_CFG, EFI_CFG, "signed: /EFI/debian shim + grub", GRUB_CFG,
])

REQUIRED_TOOLS = {
    "sfdisk": "fdisk", "mkfs.fat": "dosfstools", "mcopy": "mtools", "mmd": "mtools",
    "syslinux": "syslinux",
}


def check_tools() -> None:
    """Name the Debian package of whatever is missing, before anything is built."""
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    for path, pkg in ((SYSLINUX_MBR, "syslinux-common"), (SYSLINUX_EFI, "syslinux-efi"),
                      (LDLINUX_E64, "syslinux-efi")):
        if not path.exists():
            missing.append(pkg)
    if missing:
        raise LabError("building the disk image needs: apt-get install "
                       + " ".join(sorted(set(missing))))


def _tool(argv: list[str], stdin: str | None = None) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    try:
        subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, env=env)
    except subprocess.CalledProcessError as err:
        raise LabError(f"{' '.join(argv)} failed: {err.stderr.strip() or err.stdout.strip()}") \
            from None


def build_system_image(dest: Path, vmlinuz: Path, local_initrd: Path,
                       signed: tuple[Path, Path] | None = None) -> str:
    """Write the disk image to ``dest``; return the SHA-256 of its first NODE_START
    sectors (everything but the identity partition), which the installer checks after
    writing. ``signed``: (shim, disk GRUB) for /EFI/debian."""
    check_tools()
    log(f"building the local system image {dest}")
    with tempfile.TemporaryDirectory(prefix="centra-lab-sysimage-") as tmp:
        work = Path(tmp)
        disk = work / "disk.img"
        with open(disk, "wb") as handle:
            handle.truncate(IMAGE_SECTORS * SECTOR)
        _tool(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], SFDISK_SCRIPT)
        # --offset also records the partition's start as the FAT's hidden sectors,
        # which syslinux's boot sector needs to find itself.
        _tool(["mkfs.fat", "-F", "16", "-n", "CENTRA", "-i", FAT_VOLUME_ID, "--invariant",
               f"--offset={FAT_START}", str(disk), str(FAT_SECTORS * SECTOR // 1024)])
        fat = f"{disk}@@{FAT_START * SECTOR}"
        (work / "bios.cfg").write_text(BIOS_CFG)
        (work / "efi.cfg").write_text(EFI_CFG)
        (work / "grub.cfg").write_text(GRUB_CFG)
        _tool(["mmd", "-i", fat, "::/syslinux", "::/EFI", "::/EFI/BOOT"])
        files = [(vmlinuz, "::/vmlinuz"), (local_initrd, "::/local.img"),
                 (work / "bios.cfg", "::/syslinux/syslinux.cfg"),
                 (SYSLINUX_EFI, "::/EFI/BOOT/BOOTX64.EFI"),
                 (LDLINUX_E64, "::/EFI/BOOT/ldlinux.e64"),
                 (work / "efi.cfg", "::/EFI/BOOT/syslinux.cfg")]
        if signed is not None:
            _tool(["mmd", "-i", fat, "::/EFI/debian"])
            files += [(signed[0], "::/EFI/debian/shimx64.efi"),
                      (signed[1], "::/EFI/debian/grubx64.efi"),
                      (work / "grub.cfg", "::/EFI/debian/grub.cfg")]
        for source, target in files:
            _tool(["mcopy", "-i", fat, str(source), target])
        # Writes ldlinux.sys, ldlinux.c32 and the partition's boot sector (via mtools).
        _tool(["syslinux", "--install", "--offset", str(FAT_START * SECTOR),
               "--directory", "/syslinux", str(disk)])
        mbr_code = SYSLINUX_MBR.read_bytes()
        if len(mbr_code) > 440:
            raise LabError(f"{SYSLINUX_MBR} is {len(mbr_code)} bytes; the MBR has room for 440")
        with open(disk, "r+b") as handle:
            handle.write(mbr_code)     # the table (offset 446) and 0x55AA stay as sfdisk wrote
        digest = hashlib.sha256()
        with open(disk, "rb") as handle:
            remaining = NODE_START * SECTOR
            while remaining:
                chunk = handle.read(min(remaining, 1 << 20))
                if not chunk:
                    raise LabError(f"{disk} is shorter than expected")
                digest.update(chunk)
                remaining -= len(chunk)
        tmp_dest = dest.with_suffix(".tmp")
        shutil.copyfile(disk, tmp_dest)
        os.replace(tmp_dest, dest)
    return digest.hexdigest()
