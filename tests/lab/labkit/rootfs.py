"""The PXE host's root filesystem: a cached debootstrap tarball plus per-host copies.

Cold, ``debootstrap --variant=minbase`` builds Debian 12 with just what Ansible and
systemd-nspawn need, and the result is cached as a tarball. Every ``up`` unpacks a
fresh copy per PXE host, so no run inherits changes from the previous one.

The container has no way out of the lab network, so its apt cache is filled before
it boots, through ``chroot`` (which shares this machine's network): ``apt-get update``
plus ``apt-get install --download-only`` of the service packages. The role's install
step then runs for real, offline, inside the container. Downloaded .debs are kept in
the cache directory too, so a warm ``up`` downloads nothing.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from .common import (
    BRIDGE_ADDRESS,
    CACHE_DIR,
    PREFIX_LEN,
    LabError,
    log,
    read_json,
    run,
    set_parent_death_signal,
    write_json_atomic,
)

SUITE = "bookworm"
MIRROR = os.environ.get("CENTRA_LAB_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("CENTRA_LAB_SECURITY_MIRROR", "http://deb.debian.org/debian-security")

# What the container needs to boot with systemd and be driven by Ansible over SSH.
DEBOOTSTRAP_INCLUDE = ("openssh-server", "python3", "systemd-sysv", "dbus", "iproute2")

# Downloaded (not installed) into every PXE host's apt cache before it boots. The
# Secure Boot chain (pxe_loader: grub): Debian's signed shim and netboot GRUB, which
# the server unpacks from their .debs, and sbsigntool for the kernels' signature check.
# Debian's installer netboot packages (Architecture: all): the arm64 signed chain (shim
# and netboot GRUB for arm64 machines, which an amd64 server's apt cannot otherwise reach)
# and the installer profile's signed kernel and initrd. dosfstools and mtools build the
# Secure Boot HTTP boot image (pxe_server_secure_boot_http_image).
DEFAULT_APT_PACKAGES = (
    "kea-dhcp4-server", "kea-ctrl-agent", "isc-dhcp-server", "tftpd-hpa",
    "nginx-light", "ipxe", "nftables", "python3-apt", "curl",
    "shim-signed", "grub-efi-amd64-signed", "sbsigntool",
    "debian-installer-12-netboot-amd64", "debian-installer-12-netboot-arm64",
    "dosfstools", "mtools",
    # pxe_dhcp_kea_host_database (molecule/ha)
    "postgresql", "kea-admin",
)

# Timers that would grab the dpkg lock or do useless work in the middle of a test.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
                "e2scrub_all.timer", "fstrim.timer")

# Bump when the recipe below changes: the cached tarball is then rebuilt.
RECIPE_VERSION = 2

ROOTFS_TAR = CACHE_DIR / f"rootfs-{SUITE}.tar"
ROOTFS_META = CACHE_DIR / f"rootfs-{SUITE}.json"
APT_ARCHIVE_CACHE = CACHE_DIR / "apt-archives"

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "HOME": "/root",
}


def apt_packages_from(value: str | None) -> tuple[str, ...]:
    """``--apt-packages`` / ``CENTRA_LAB_APT_PACKAGES``: a comma list, else the default."""
    raw = value if value is not None else os.environ.get("CENTRA_LAB_APT_PACKAGES")
    if raw is None:
        return DEFAULT_APT_PACKAGES
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _recipe() -> dict[str, object]:
    return {"recipe": RECIPE_VERSION, "suite": SUITE, "mirror": MIRROR,
            "include": list(DEBOOTSTRAP_INCLUDE), "masked": list(MASKED_UNITS)}


# --- filesystem safety ---------------------------------------------------------------


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    root = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].encode().decode("unicode_escape")
        if mount_point == root or mount_point.startswith(root + "/"):
            found.append(Path(mount_point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def processes_using(path: Path) -> list[int]:
    """PIDs running inside ``path``: chroots (root directory below it) or nspawn
    containers (``--directory=`` below it; their own root looks like "/" from here).
    """
    target = str(path.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            root = os.readlink(entry / "root")
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        in_chroot = root == target or root.startswith(target + "/")
        in_nspawn = any(a.startswith(b"--directory=" + target.encode()) for a in args)
        if in_chroot or in_nspawn:
            pids.append(int(entry.name))
    return pids


def remove_tree(path: Path) -> None:
    """rm -rf a lab directory, but never through a mount or under a live process.

    A crashed debootstrap or chroot can leave /proc mounted inside a tree; deleting
    through it would be a disaster, so mounts are detached first and ``rm`` is told
    to stay on one file system.
    """
    if not path.exists() and not path.is_symlink():
        return
    users = processes_using(path) if path.is_dir() else []
    deadline = time.monotonic() + 10
    while users and time.monotonic() < deadline:   # leftovers of a killed run, dying
        time.sleep(0.5)
        users = processes_using(path)
    if users:
        raise LabError(f"refusing to delete {path}: processes {users} still run inside it "
                       "(not recorded in the lab state?); stop them first")
    for mount_point in mounts_under(path):
        run(["umount", "--lazy", mount_point], check=False)
    run(["rm", "-rf", "--one-file-system", path])


# --- chroot ----------------------------------------------------------------------------


def chroot_run(rootfs: Path, argv: Sequence[str], *, quiet: bool = False) -> None:
    """Run a command chrooted into ``rootfs`` with /proc mounted in a private namespace.

    The mount namespace dies with the command, so nothing stays mounted inside the
    tree even if the command is killed. The network is the build machine's. With
    ``quiet`` the output is kept and shown only if the command fails.
    """
    script = 'mount -t proc proc "$1/proc" && exec chroot "$@"'
    full = ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", script, "sh", str(rootfs), *argv]
    result = subprocess.run(full, env=CHROOT_ENV, stdin=subprocess.DEVNULL, text=True,
                            stdout=subprocess.PIPE if quiet else None,
                            stderr=subprocess.STDOUT if quiet else None,
                            preexec_fn=set_parent_death_signal, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout or "").splitlines()[-20:])
        raise LabError(f"in chroot {rootfs}: {' '.join(argv)} failed with exit "
                       f"{result.returncode}" + (f"\n{output}" if output else ""))


# --- the cached tarball -------------------------------------------------------------


def ensure_rootfs_tarball() -> Path:
    """Return the cached rootfs tarball, building it with debootstrap if needed."""
    meta = read_json(ROOTFS_META)
    if ROOTFS_TAR.exists() and meta is not None and meta.get("recipe") == _recipe():
        return ROOTFS_TAR
    build_rootfs_tarball()
    return ROOTFS_TAR


def build_rootfs_tarball() -> None:
    """debootstrap (minbase + the few packages we need), tune, and tar it up."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    build = CACHE_DIR / "rootfs.build"
    remove_tree(build)
    started = time.monotonic()
    log(f"building the PXE host rootfs with debootstrap ({SUITE}, minbase; takes a minute or two)")
    try:
        _debootstrap(build)
        _tune_rootfs(build)
        tmp = ROOTFS_TAR.with_suffix(".tar.tmp")
        run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
             "-C", build, "-cf", tmp, "."])
        os.replace(tmp, ROOTFS_TAR)
        write_json_atomic(ROOTFS_META, {"recipe": _recipe(), "built": time.strftime("%FT%T%z")})
    finally:
        remove_tree(build)
    log(f"rootfs tarball ready in {time.monotonic() - started:.0f}s: {ROOTFS_TAR}")


def _debootstrap(target: Path) -> None:
    """Run debootstrap, its chatter going to a log file shown only on failure.

    debootstrap mounts /proc and /sys in the target: a private mount namespace
    makes sure those mounts go away with it, even if it is killed.
    """
    log_path = CACHE_DIR / "debootstrap.log"
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "debootstrap", "--variant=minbase", f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
            SUITE, str(target), MIRROR]
    with open(log_path, "w") as out:
        status = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT,
                                preexec_fn=set_parent_death_signal, check=False).returncode
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise LabError(f"debootstrap failed (exit {status}); {log_path} ends with:\n{tail}")


def _tune_rootfs(root: Path) -> None:
    """Settings shared by every PXE host; per-host identity comes in personalize()."""
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )
    (root / "etc/ssh/sshd_config.d/centra-lab.conf").write_text(
        "# centra.pxe lab: root logs in with the lab key only.\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    )
    chroot_run(root, ["systemctl", "enable", "systemd-networkd.service"], quiet=True)
    chroot_run(root, ["systemctl", "mask", *MASKED_UNITS], quiet=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for binary_cache in (root / "var/cache/apt").glob("*.bin"):
        binary_cache.unlink()


# --- per-host copies ---------------------------------------------------------------


def extract_rootfs(tarball: Path, dest: Path) -> None:
    """A fresh, writable copy of the cached rootfs."""
    remove_tree(dest)
    dest.mkdir(parents=True)
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", dest])


def clone_rootfs(source: Path, dest: Path) -> None:
    """Copy an already primed rootfs for the second and later PXE hosts."""
    remove_tree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", "--reflink=auto", source, dest])


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links keep the per-host apt caches nearly free on disk."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)


def prime_apt_cache(rootfs: Path, packages: Sequence[str]) -> None:
    """Fill the rootfs's apt lists and .deb cache through chroot, before it boots."""
    archives = rootfs / "var/cache/apt/archives"
    archives.mkdir(parents=True, exist_ok=True)
    APT_ARCHIVE_CACHE.mkdir(parents=True, exist_ok=True)
    for deb in APT_ARCHIVE_CACHE.glob("*.deb"):
        _link_or_copy(deb, archives / deb.name)
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    log(f"filling the apt cache through chroot: {' '.join(packages) or '(nothing)'}")
    # A cold cache downloads some 700 MB from the mirror: a dropped connection is retried
    # (with apt's back-off) rather than failing the whole lab.
    retries = ["-o", "Acquire::Retries=5"]
    chroot_run(rootfs, ["apt-get", *retries, "update", "-qq"])
    if packages:
        chroot_run(rootfs, ["apt-get", *retries, "install", "--download-only", "-y", "-qq", *packages],
                   quiet=True)
    for deb in archives.glob("*.deb"):
        _link_or_copy(deb, APT_ARCHIVE_CACHE / deb.name)
    # Fresh lists: an Ansible `apt: update_cache: true, cache_valid_time: N` inside the
    # offline container can skip its update (it looks at this stamp or the lists' mtime).
    stamp = rootfs / "var/lib/apt/periodic/update-success-stamp"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    os.utime(rootfs / "var/lib/apt/lists")


def personalize(rootfs: Path, hostname: str, address: str, public_key: str,
                routes: Sequence[tuple[str, str]] = ()) -> None:
    """Give one copy its own identity: name, machine-id, address, SSH keys.

    ``routes``: (destination, gateway) pairs, e.g. the far network via the lab's
    router; never a default route, so nothing leaves the lab networks.
    """
    etc = rootfs / "etc"
    (etc / "hostname").write_text(f"{hostname}\n")
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
                               f"{BRIDGE_ADDRESS}\tlab-gateway\n")
    (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
    # No DNS on the lab network: an empty resolv.conf fails fast instead of timing out.
    (etc / "resolv.conf").write_text("# centra.pxe lab: no DNS on the lab network\n")
    network_dir = etc / "systemd/network"
    network_dir.mkdir(parents=True, exist_ok=True)
    (network_dir / "10-lab-host0.network").write_text(
        "# centra.pxe lab: static address on the lab bridge, no IPv6 chatter.\n"
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={address}/{PREFIX_LEN}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        + "".join(f"\n[Route]\nDestination={destination}\nGateway={gateway}\n"
                  for destination, gateway in routes)
    )
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(public_key.strip() + "\n")
    os.chmod(authorized, 0o600)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    run(["ssh-keygen", "-q", "-A", "-f", rootfs], capture=True)
