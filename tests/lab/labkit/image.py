"""The test image PXE clients boot: Debian's kernel plus a tiny busybox initrd.

The initrd's /init prints exactly one line on the serial port,
``PXE-BOOT-OK cmdline=<contents of /proc/cmdline>``, and powers off. That line is
how a test learns that the whole chain (DHCP, TFTP, iPXE, HTTP, kernel) worked and
which command line the PXE server chose. The kernel is taken from the
``linux-image-amd64`` dependency .deb, unpacked with ``dpkg-deb -x``: it is never
installed on this machine.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from .common import (
    CACHE_DIR,
    LabError,
    log,
    read_json,
    run,
    set_parent_death_signal,
    write_json_atomic,
)

IMAGE_DIR = CACHE_DIR / "image"
VMLINUZ = IMAGE_DIR / "vmlinuz"
INITRD = IMAGE_DIR / "initrd.img"
IMAGE_META = IMAGE_DIR / "image.json"
BUSYBOX = Path("/bin/busybox")
KERNEL_METAPACKAGE = "linux-image-amd64"

# Written straight to ttyS0 when it exists (whatever console= says), else to the
# console: one line, always on the serial port the harness watches. The pause lets
# the UART drain before the power goes off.
INIT_SCRIPT = """\
#!/bin/busybox sh
# centra.pxe lab test image: report /proc/cmdline on the serial port, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
read -r cmdline < /proc/cmdline
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
echo "PXE-BOOT-OK cmdline=$cmdline" > "$out"
/bin/busybox sleep 1
/bin/busybox poweroff -f
"""

RECIPE = hashlib.sha256(f"v1\n{INIT_SCRIPT}".encode()).hexdigest()[:16]


def ensure_image() -> tuple[Path, Path]:
    """Return (vmlinuz, initrd.img), building whichever is missing or outdated."""
    meta = read_json(IMAGE_META) or {}
    if VMLINUZ.exists() and INITRD.exists() and meta.get("recipe") == RECIPE:
        return VMLINUZ, INITRD
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    kernel = meta.get("kernel_package")
    if not VMLINUZ.exists() or not kernel:
        kernel = fetch_kernel(VMLINUZ)
    build_initrd(INITRD)
    write_json_atomic(IMAGE_META, {"recipe": RECIPE, "kernel_package": kernel})
    return VMLINUZ, INITRD


def kernel_package() -> str:
    """The versioned kernel package linux-image-amd64 depends on right now."""
    out = run(["apt-cache", "depends", KERNEL_METAPACKAGE], capture=True).stdout
    for line in out.splitlines():
        kind, _colon, name = line.strip().partition(":")
        if kind in ("Depends", "|Depends") and name.strip().startswith("linux-image-"):
            return name.strip()
    raise LabError(f"apt-cache knows no kernel for {KERNEL_METAPACKAGE}; run apt-get update")


def fetch_kernel(dest: Path) -> str:
    """apt-get download the kernel .deb and unpack only its vmlinuz."""
    package = kernel_package()
    log(f"downloading {package} (extracted with dpkg-deb, not installed)")
    with tempfile.TemporaryDirectory(prefix="centra-lab-kernel-") as tmp:
        work = Path(tmp)
        _let_apt_sandbox_write(work)
        try:
            subprocess.run(["apt-get", "download", "-q", package], cwd=work, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           preexec_fn=set_parent_death_signal)
        except subprocess.CalledProcessError:
            raise LabError(f"apt-get download {package} failed (try apt-get update)") from None
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"expected one .deb for {package}, found {debs}")
        run(["dpkg-deb", "-x", debs[0], work / "root"])
        kernels = sorted((work / "root/boot").glob("vmlinuz-*"))
        if not kernels:
            raise LabError(f"{debs[0].name} holds no /boot/vmlinuz-*")
        tmp_dest = dest.with_suffix(".tmp")
        shutil.copyfile(kernels[0], tmp_dest)
        os.replace(tmp_dest, dest)
    return package


def _let_apt_sandbox_write(directory: Path) -> None:
    """apt-get download drops to the _apt user; without this it warns and runs as root."""
    with contextlib.suppress(KeyError):
        os.chown(directory, pwd.getpwnam("_apt").pw_uid, -1)


def _check_busybox() -> None:
    if not BUSYBOX.exists():
        raise LabError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    ldd = run(["ldd", BUSYBOX], check=False, capture=True)
    if "not a dynamic executable" not in (ldd.stdout + ldd.stderr):
        raise LabError(f"{BUSYBOX} is dynamically linked: install busybox-static, not busybox")


def build_initrd(dest: Path) -> None:
    """cpio (newc) + gzip of: /init, a static busybox, and the /dev/console node."""
    _check_busybox()
    log(f"building the test initrd {dest}")
    with tempfile.TemporaryDirectory(prefix="centra-lab-initrd-") as tmp:
        root = Path(tmp)
        for directory in ("bin", "dev", "proc", "sys"):
            (root / directory).mkdir()
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        init = root / "init"
        init.write_text(INIT_SCRIPT)
        init.chmod(0o755)
        # The kernel opens /dev/console for init's stdio before anything is mounted.
        os.mknod(root / "dev/console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        archive = _cpio(root, names)
        tmp_dest = dest.with_suffix(".tmp")
        with gzip.open(tmp_dest, "wb", compresslevel=9) as out:
            out.write(archive)
        os.replace(tmp_dest, dest)


def _cpio(root: Path, names: list[str]) -> bytes:
    """The newc archive of ``names`` (relative to ``root``), owned by root."""
    try:
        result = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"],
                                input=("\n".join(names) + "\n").encode(), cwd=root,
                                check=True, capture_output=True)
    except FileNotFoundError:
        raise LabError("cpio is missing: apt-get install cpio") from None
    except subprocess.CalledProcessError as err:
        raise LabError(f"cpio failed: {err.stderr.decode(errors='replace')}") from None
    return result.stdout
