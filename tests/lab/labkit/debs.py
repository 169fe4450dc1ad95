"""Debian packages the lab takes files from without installing them: the signed
Secure Boot loaders (shim, GRUB) and, for arm64, the kernel and busybox.

Everything is fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
the cache: installing shim-signed or grub-efi-*-signed would run bootloader hooks on
the build machine.

arm64 packages: ``apt-get download pkg:arm64`` says "Unable to locate package" on a
machine without arm64 in ``dpkg --print-foreign-architectures``, and adding the
architecture would change the machine for everyone. Instead the lab keeps an apt
state of its own for arm64 (lists and archives under the cache; ``APT::Architecture``
set to arm64, no dpkg status), filled by one ``apt-get update`` against Debian's
mirrors with the build machine's archive keyring.

Also here: Debian's Secure Boot CA certificate. No Debian 12 package ships it as a
file; shim carries it as its vendor certificate (PE section ``.vendor_cert``), and
that is where :func:`debian_ca_der` reads it from.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .common import CACHE_DIR, LabError, log, read_json, run, set_parent_death_signal, write_json_atomic

DEBS_DIR = CACHE_DIR / "debs"                 # DEBS_DIR/<arch>/<package>/: unpacked trees
APT_ARM64_DIR = CACHE_DIR / "apt-arm64"       # the private apt state for arm64 packages
MIRROR = os.environ.get("CENTRA_LAB_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("CENTRA_LAB_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# Debian's names: shim-signed ships shim<efi>.efi.signed, grub-efi-<arch>-signed the
# netboot GRUB grubnet<efi>.efi.signed. Shim loads "grub<efi>.efi" from its own directory
# (DEFAULT_LOADER, seen in the binary and in the TFTP log), so GRUB is served under that name.
EFI_ARCH = {"amd64": "x64", "arm64": "aa64"}
GRUB_DIR = {"amd64": "usr/lib/grub/x86_64-efi-signed", "arm64": "usr/lib/grub/arm64-efi-signed"}


@dataclass(frozen=True)
class SignedLoaders:
    """Paths (in the cache) of Debian's signed network boot chain for one architecture."""

    arch: str
    shim: Path          # Microsoft-signed shim: the boot file the firmware gets
    grub: Path          # Debian-signed netboot GRUB: serve it as grub_name next to shim
    version: str        # shim-signed and grub versions, for logs and reports

    @property
    def disk_grub(self) -> Path:
        """Debian's signed GRUB for a disk (embedded prefix /EFI/debian; no tftp module)."""
        return self.grub.with_name(f"grub{EFI_ARCH[self.arch]}.efi.signed")

    @property
    def shim_name(self) -> str:
        return f"shim{EFI_ARCH[self.arch]}.efi"

    @property
    def grub_name(self) -> str:
        return f"grub{EFI_ARCH[self.arch]}.efi"


def apt_options(arch: str) -> list[str]:
    """apt-get options for packages of ``arch``: none for the build machine's own
    architecture, the private arm64 state otherwise (see the module docstring)."""
    if arch == "amd64":
        return []
    lists, archives = APT_ARM64_DIR / "lists", APT_ARM64_DIR / "cache"
    return ["-o", f"Dir::State::Lists={lists}", "-o", "Dir::State::status=/dev/null",
            "-o", f"Dir::Cache={archives}",
            "-o", f"Dir::Etc::SourceList={APT_ARM64_DIR / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "APT::Architecture=arm64",
            "-o", "APT::Architectures::=arm64", "-o", "Acquire::Languages=none"]


def _ensure_arm64_lists() -> None:
    """The private arm64 package lists, fetched once (`rm -r` APT_ARM64_DIR to refresh)."""
    stamp = APT_ARM64_DIR / "updated"
    if stamp.exists():
        return
    for sub in ("lists/partial", "cache/archives/partial"):
        (APT_ARM64_DIR / sub).mkdir(parents=True, exist_ok=True)
    (APT_ARM64_DIR / "sources.list").write_text(
        f"deb [signed-by={KEYRING}] {MIRROR} bookworm main\n"
        f"deb [signed-by={KEYRING}] {MIRROR} bookworm-updates main\n"
        f"deb [signed-by={KEYRING}] {SECURITY_MIRROR} bookworm-security main\n")
    log("fetching the arm64 package lists (a private apt state; the machine's is not touched)")
    run(["apt-get", *apt_options("arm64"), "-q", "update"], timeout=600)
    stamp.write_text("")


def depends_on_kernel(metapackage: str, arch: str) -> str:
    """The versioned kernel package a linux-image-<arch> metapackage depends on now."""
    if arch != "amd64":
        _ensure_arm64_lists()
    out = run(["apt-cache", *apt_options(arch), "depends", metapackage], capture=True).stdout
    for line in out.splitlines():
        kind, _colon, name = line.strip().partition(":")
        if kind in ("Depends", "|Depends") and name.strip().startswith("linux-image-"):
            return name.strip()
    raise LabError(f"apt-cache knows no kernel for {metapackage}; run apt-get update")


def download_unpack(package: str, arch: str, dest: Path) -> str:
    """apt-get download ``package`` (of ``arch``) and unpack it into ``dest`` (replaced);
    returns the .deb's file name."""
    if arch != "amd64":
        _ensure_arm64_lists()
    with tempfile.TemporaryDirectory(prefix="centra-lab-deb-") as tmp:
        work = Path(tmp)
        with contextlib.suppress(KeyError):   # apt's sandbox user may write there
            os.chown(work, pwd.getpwnam("_apt").pw_uid, -1)
        try:
            subprocess.run(["apt-get", *apt_options(arch), "download", "-q", package], cwd=work,
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           preexec_fn=set_parent_death_signal)
        except subprocess.CalledProcessError:
            raise LabError(f"apt-get download {package} ({arch}) failed (try apt-get update)") from None
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"expected one .deb for {package}, found {debs}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.with_name(dest.name + ".tmp")
        if staging.exists():
            shutil.rmtree(staging)
        run(["dpkg-deb", "-x", debs[0], staging])
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
        return debs[0].name


def signed_loaders(arch: str) -> SignedLoaders:
    """Debian's shim and netboot GRUB for ``arch``, downloaded once into the cache."""
    if arch not in EFI_ARCH:
        raise LabError(f"no signed loaders for {arch!r}")
    base = DEBS_DIR / arch
    meta_path = base / "loaders.json"
    efi = EFI_ARCH[arch]
    shim = base / "shim-signed" / "usr/lib/shim" / f"shim{efi}.efi.signed"
    grub = base / f"grub-efi-{arch}-signed" / GRUB_DIR[arch] / f"grubnet{efi}.efi.signed"
    meta = read_json(meta_path) or {}
    if not (shim.exists() and grub.exists() and meta.get("version")):
        base.mkdir(parents=True, exist_ok=True)
        log(f"downloading Debian's signed {arch} loaders (shim-signed, grub-efi-{arch}-signed; "
            "unpacked, not installed)")
        names = [download_unpack(package, arch, base / package)
                 for package in ("shim-signed", f"grub-efi-{arch}-signed")]
        for path in (shim, grub):
            if not path.exists():
                raise LabError(f"{path.relative_to(base)} is not in {', '.join(names)}")
        meta = {"version": " ".join(names)}
        write_json_atomic(meta_path, meta)
    return SignedLoaders(arch=arch, shim=shim, grub=grub, version=str(meta["version"]))


def pe_section(image: bytes, name: str) -> bytes:
    """The raw data of the PE/COFF section ``name`` (what objcopy --only-section gives)."""
    if image[:2] != b"MZ":
        raise LabError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", image, 0x3C)[0]
    if image[pe:pe + 4] != b"PE\0\0":
        raise LabError("not a PE image (no PE signature)")
    sections, symbols_at, symbols, optional_size = struct.unpack_from("<H4xIIH", image, pe + 6)
    table = pe + 24 + optional_size
    for index in range(sections):
        entry = table + 40 * index
        raw_name = image[entry:entry + 8].rstrip(b"\0").decode("ascii", "replace")
        if raw_name.startswith("/") and raw_name[1:].isdigit():
            # A name longer than 8 bytes (".vendor_cert") is "/<offset>" into the COFF
            # string table, which follows the symbol table (18 bytes a symbol).
            start = symbols_at + 18 * symbols + int(raw_name[1:])
            raw_name = image[start:image.index(b"\0", start)].decode("ascii", "replace")
        virtual_size, _address, raw_size, raw_offset = struct.unpack_from("<IIII", image, entry + 8)
        if raw_name == name:
            return image[raw_offset:raw_offset + min(virtual_size or raw_size, raw_size)]
    raise LabError(f"no section {name} in the PE image")


def vendor_certificate(shim_image: bytes) -> bytes:
    """The DER certificate shim trusts besides the firmware's db (its vendor cert):

    section .vendor_cert = u32 authorized size, u32 deauthorized size, u32 authorized
    offset, u32 deauthorized offset (little endian, offsets from the section start),
    then the data.
    """
    section = pe_section(shim_image, ".vendor_cert")
    size, _dbx_size, offset, _dbx_offset = struct.unpack_from("<IIII", section, 0)
    der = section[offset:offset + size]
    if size == 0 or len(der) != size or der[:1] != b"\x30":
        raise LabError("shim's .vendor_cert holds no certificate")
    return der


def debian_ca_der(arch: str = "amd64") -> bytes:
    """Debian Secure Boot CA (DER), as shim-signed carries it."""
    return vendor_certificate(signed_loaders(arch).shim.read_bytes())
