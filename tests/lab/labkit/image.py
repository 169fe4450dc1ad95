"""The test image PXE clients boot: Debian's kernel plus a busybox initrd.

Every boot of the initrd prints exactly one line on the serial port first,
``PXE-BOOT-OK cmdline=<contents of /proc/cmdline>``. That line is how a test learns
that the whole chain (DHCP, TFTP, iPXE, HTTP, kernel) worked and which command line
the PXE server chose. Then:

- an ordinary boot powers off, as it always did;
- an *install boot*, whose command line carries ``centra.callback=`` and
  ``centra.token=``, runs ``/install``: a small real installer that writes the lab's
  local system (see sysimage.py) to the first disk, reports ``started`` and
  ``installed`` to the callback, prints ``INSTALL-OK <node>`` and reboots (on any
  failure: reports ``failed``, prints ``INSTALL-FAILED <why>``, powers off).

The kernel and its modules come from the ``linux-image-amd64`` dependency .deb,
unpacked with ``dpkg-deb -x``: it is never installed on this machine. Only the
modules the lab's virtual hardware needs go into the initrds (NICs: e1000,
virtio-net; disk: virtio-blk), with the modules they depend on.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import debs, sysimage
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
LOCAL_INITRD = IMAGE_DIR / "local-initrd.img"     # the initrd of the installed system
SYSTEM_IMAGE = IMAGE_DIR / "system.img"            # what the installer writes to the disk
MODULES_DIR = IMAGE_DIR / "modules"                # the kernel modules the initrds carry
IMAGE_META = IMAGE_DIR / "image.json"
BUSYBOX = Path("/bin/busybox")
KERNEL_METAPACKAGE = "linux-image-amd64"

# What the lab's QEMU machines need: the NICs of lab.py boot (--nic-model e1000 or
# virtio) and the disk of --disk (virtio-blk). Their dependencies are added from the
# modules' own "depends=" field.
NET_MODULES = ("e1000", "virtio_net")
DISK_MODULES = ("virtio_pci", "virtio_blk")

# Written straight to ttyS0 when it exists (whatever console= says), else to the
# console: one line, always on the serial port the harness watches. The pause lets
# the UART drain before the power goes off. Only an install boot goes further.
INIT_SCRIPT = """\
#!/bin/busybox sh
# centra.pxe lab test image: report /proc/cmdline on the serial port; install when
# the command line asks for it (centra.callback= and centra.token=), else power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
read -r cmdline < /proc/cmdline
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
echo "PXE-BOOT-OK cmdline=$cmdline" > "$out"
callback= token=
for word in $cmdline; do
    case "$word" in
        centra.callback=?*) callback=1 ;;
        centra.token=?*) token=1 ;;
    esac
done
if [ -n "$callback" ] && [ -n "$token" ]; then
    export cmdline out
    exec /bin/busybox sh /install
fi
/bin/busybox sleep 1
/bin/busybox poweroff -f
"""

# The installer. Runs as PID 1 (exec'd by /init), output on the serial port. It must
# never exit: PID 1 exiting panics the kernel, and panic=-1 would reboot into a loop.
INSTALL_SCRIPT = """\
#!/bin/busybox sh
# centra.pxe lab installer: network up, POST started, write the local system to the
# first disk, record the node on it, POST installed, print INSTALL-OK, reboot.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
exec > "$out" 2>&1

IMAGE_SECTORS=@IMAGE_SECTORS@
NODE_START=@NODE_START@
IMAGE_SHA256=@IMAGE_SHA256@

arg() {  # arg NAME: the value of NAME= on the kernel command line
    for word in $cmdline; do
        case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
    done
    return 1
}
callback=$(arg centra.callback)
token=$(arg centra.token)
node=$(arg centra.node)

clean() {  # a message fit for a JSON string and one serial line
    printf '%s' "$1" | tr -d '"\\\\' | tr '\\n\\r\\t' '   ' | head -c 200
}

reply=
report() {  # report EVENT [MESSAGE]: POST to the callback; retried unless HTTP said no
    body="{\\"event\\":\\"$1\\""
    [ -n "$2" ] && body="$body,\\"message\\":\\"$(clean "$2")\\""
    body="$body}"
    try=1
    while :; do
        if reply=$(timeout 20 wget -q -O /dev/null --header "Authorization: Bearer $token" \\
                --header "Content-Type: application/json" --post-data "$body" "$callback" 2>&1); then
            return 0
        fi
        reply=$(clean "${reply#wget: }")
        case "$reply" in *"server returned error"*) return 1 ;; esac
        [ "$try" -ge 3 ] && return 1
        try=$((try + 1))
        sleep 2
    done
}

stop() {  # power off; never return (PID 1 must not exit)
    sync
    sleep 1
    poweroff -f
    while :; do sleep 3600; done
}

fail() {  # fail WHY: report it if the network allows, say it, power off
    why=$(clean "$1")
    [ -n "$network" ] && report failed "$why"
    echo "INSTALL-FAILED $why"
    stop
}

for module in @MODULES@; do
    insmod "/lib/modules/$module.ko" 2>/dev/null
done

# The boot NIC, if the command line names it (BOOTIF=01-aa-bb-.. as pxelinux passes it,
# or centra.mac=); else every NIC in turn.
want=$(arg BOOTIF | sed 's/^01-//; s/-/:/g')
[ -n "$want" ] || want=$(arg centra.mac)
want=$(echo "$want" | tr 'A-F' 'a-f')
network=
tries=0
while [ -z "$network" ] && [ "$tries" -lt 2 ]; do
    tries=$((tries + 1))
    [ "$tries" -gt 1 ] || sleep 1       # let the NIC drivers bind
    for path in /sys/class/net/*; do
        nic=${path##*/}
        [ "$nic" = lo ] && continue
        [ -n "$want" ] && [ "$(cat "$path/address")" != "$want" ] && continue
        ip link set "$nic" up
        if udhcpc -i "$nic" -n -q -t 5 -T 2 -s /etc/udhcpc.script; then
            network=$nic
            break
        fi
    done
done
[ -n "$network" ] || { echo "INSTALL-FAILED no DHCP lease on any network interface"; stop; }

[ -n "$node" ] || fail "no centra.node= on the kernel command line"
report started || fail "callback started refused or unreachable: $reply"
echo "INSTALL-STARTED $node"

disk=
tries=0
while [ -z "$disk" ] && [ "$tries" -lt 20 ]; do
    for path in /sys/block/vd? /sys/block/sd? /sys/block/nvme?n1; do
        [ -e "$path" ] && { disk=${path##*/}; break; }
    done
    [ -n "$disk" ] || { tries=$((tries + 1)); usleep 250000; }
done
[ -n "$disk" ] || fail "no disk found"
sectors=$(cat "/sys/block/$disk/size")
[ "$sectors" -ge "$IMAGE_SECTORS" ] || fail "disk $disk has $sectors sectors, the system needs $IMAGE_SECTORS"

# The image carries the partition table, the boot code and both partitions.
dd if=/system.img of="/dev/$disk" bs=1M conv=fsync 2>/dev/null || fail "writing /dev/$disk failed"
printf 'centra-node %s\\n' "$node" | dd of="/dev/$disk" bs=512 seek="$NODE_START" conv=notrunc,fsync 2>/dev/null \\
    || fail "writing the node identity to /dev/$disk failed"
sync
echo 3 > /proc/sys/vm/drop_caches
written=$(dd if="/dev/$disk" bs=512 count="$NODE_START" 2>/dev/null | sha256sum)
[ "${written%% *}" = "$IMAGE_SHA256" ] || fail "/dev/$disk does not read back what was written"
identity=$(dd if="/dev/$disk" bs=512 skip="$NODE_START" count=1 2>/dev/null | head -n 1)
[ "$identity" = "centra-node $node" ] || fail "the node identity on /dev/$disk does not read back"

report installed || fail "callback installed refused or unreachable: $reply"
echo "INSTALL-OK $node"
sync
sleep 1
reboot -f
while :; do sleep 3600; done
"""

# busybox udhcpc hands the lease to this script; it only sets the address (and a
# default route if the lease has a router: the far network's clients need one).
UDHCPC_SCRIPT = """\
#!/bin/sh
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for gateway in $router; do
            ip route replace default via "$gateway" dev "$interface" && break
        done
        echo "centra installer: $interface has $ip/${mask:-24}"
        ;;
esac
exit 0
"""

# The init of the installed system (booted from the disk by syslinux): read the node
# identity the installer recorded on partition 2, print it, power off.
LOCAL_INIT_SCRIPT = """\
#!/bin/busybox sh
# centra.pxe lab local system: print LOCAL-BOOT-OK <node> on the serial port, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
read -r cmdline < /proc/cmdline
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
for module in @MODULES@; do
    /bin/busybox insmod "/lib/modules/$module.ko" 2>/dev/null
done
loader=unknown
for word in $cmdline; do
    case "$word" in centra.loader=*) loader=${word#*=} ;; esac
done
node=
tries=0
while [ -z "$node" ] && [ "$tries" -lt 40 ]; do
    for device in /dev/vda2 /dev/sda2 /dev/nvme0n1p2; do
        [ -b "$device" ] || continue
        line=$(/bin/busybox dd if="$device" bs=512 count=1 2>/dev/null | /bin/busybox head -n 1 | /bin/busybox tr -d '\\000')
        case "$line" in "centra-node "?*) node=${line#centra-node }; break ;; esac
    done
    [ -n "$node" ] || { tries=$((tries + 1)); /bin/busybox usleep 250000; }
done
echo "LOCAL-BOOT-INFO loader=$loader" > "$out"
if [ -n "$node" ]; then
    echo "LOCAL-BOOT-OK $node" > "$out"
else
    echo "LOCAL-BOOT-FAILED no node identity on partition 2 of the disk" > "$out"
fi
/bin/busybox sleep 1
/bin/busybox poweroff -f
"""

# The arm64 test image (`image --arch arm64`, for `boot --arch arm64`): Debian's arm64
# kernel and an arm64 busybox-static, both from their .debs. QEMU's virt machine has a
# PL011 UART (ttyAMA0), no ttyS0. It only reports and powers off: the installer of the
# amd64 image is not built for arm64.
ARM64_IMAGE_DIR = CACHE_DIR / "image-arm64"
ARM64_INIT_SCRIPT = """\
#!/bin/busybox sh
# centra.pxe lab test image (arm64): report /proc/cmdline on the serial port, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
read -r cmdline < /proc/cmdline
out=/dev/console
for tty in ttyAMA0 ttyS0; do
    [ -c "/dev/$tty" ] && { out=/dev/$tty; break; }
done
echo "PXE-BOOT-OK cmdline=$cmdline" > "$out"
/bin/busybox sleep 1
/bin/busybox poweroff -f
"""
ARM64_RECIPE = hashlib.sha256(("arm64-v1\n" + ARM64_INIT_SCRIPT).encode()).hexdigest()[:16]

RECIPE = hashlib.sha256("\n".join([
    "v2", INIT_SCRIPT, INSTALL_SCRIPT, UDHCPC_SCRIPT, LOCAL_INIT_SCRIPT,
    " ".join(NET_MODULES), " ".join(DISK_MODULES), sysimage.RECIPE_TEXT,
]).encode()).hexdigest()[:16]


def ensure_image() -> tuple[Path, Path]:
    """Return (vmlinuz, initrd.img), building whichever is missing or outdated."""
    meta = read_json(IMAGE_META) or {}
    outputs = (VMLINUZ, INITRD, LOCAL_INITRD, SYSTEM_IMAGE)
    if all(p.exists() for p in outputs) and meta.get("recipe") == RECIPE:
        return VMLINUZ, INITRD
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    wanted = NET_MODULES + DISK_MODULES
    kernel = meta.get("kernel_package")
    # The modules must come from the package vmlinuz came from; MODULES_DIR/.kernel
    # names it (an older harness may have rewritten image.json without the modules).
    stamp = MODULES_DIR / ".kernel"
    have_modules = (stamp.exists() and stamp.read_text().strip() == kernel
                    and all((MODULES_DIR / f"{name}.ko").exists() for name in wanted))
    if not VMLINUZ.exists() or not kernel or not have_modules:
        kernel = fetch_kernel(VMLINUZ, MODULES_DIR, wanted)
    find = _module_finder(MODULES_DIR)
    local_modules = module_order(DISK_MODULES, find)
    install_modules = module_order(NET_MODULES + DISK_MODULES, find)
    build_initrd(LOCAL_INITRD, LOCAL_INIT_SCRIPT.replace("@MODULES@", " ".join(local_modules)),
                 modules=local_modules)
    loaders = debs.signed_loaders("amd64")
    digest = sysimage.build_system_image(SYSTEM_IMAGE, VMLINUZ, LOCAL_INITRD,
                                         signed=(loaders.shim, loaders.disk_grub))
    install = (INSTALL_SCRIPT.replace("@MODULES@", " ".join(install_modules))
               .replace("@IMAGE_SECTORS@", str(sysimage.IMAGE_SECTORS))
               .replace("@NODE_START@", str(sysimage.NODE_START))
               .replace("@IMAGE_SHA256@", digest))
    build_initrd(INITRD, INIT_SCRIPT, modules=install_modules,
                 extra={"install": (install.encode(), 0o755),
                        "etc/udhcpc.script": (UDHCPC_SCRIPT.encode(), 0o755)},
                 extra_files={"system.img": SYSTEM_IMAGE})
    write_json_atomic(IMAGE_META, {"recipe": RECIPE, "kernel_package": kernel,
                                   "modules": list(wanted), "system_sha256": digest})
    return VMLINUZ, INITRD


def ensure_arm64_image() -> tuple[Path, Path]:
    """Return the arm64 (vmlinuz, initrd.img), building them if missing or outdated."""
    vmlinuz, initrd = ARM64_IMAGE_DIR / "vmlinuz", ARM64_IMAGE_DIR / "initrd.img"
    meta_path = ARM64_IMAGE_DIR / "image.json"
    meta = read_json(meta_path) or {}
    if vmlinuz.exists() and initrd.exists() and meta.get("recipe") == ARM64_RECIPE:
        return vmlinuz, initrd
    ARM64_IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    package = debs.depends_on_kernel("linux-image-arm64", "arm64")
    log(f"downloading {package} and busybox-static for arm64 (extracted, not installed)")
    kernel_tree = debs.DEBS_DIR / "arm64" / "kernel"
    busybox_tree = debs.DEBS_DIR / "arm64" / "busybox-static"
    debs.download_unpack(package, "arm64", kernel_tree)
    debs.download_unpack("busybox-static", "arm64", busybox_tree)
    kernels = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabError(f"{package} holds no /boot/vmlinuz-*")
    busybox = busybox_tree / "bin" / "busybox"
    if not busybox.exists():
        raise LabError("busybox-static (arm64) holds no /bin/busybox")
    build_initrd(initrd, ARM64_INIT_SCRIPT, busybox=busybox)
    tmp_dest = vmlinuz.with_suffix(".tmp")
    shutil.copyfile(kernels[0], tmp_dest)
    os.replace(tmp_dest, vmlinuz)
    write_json_atomic(meta_path, {"recipe": ARM64_RECIPE, "kernel_package": package})
    # The .debs' trees are only needed while building.
    shutil.rmtree(kernel_tree, ignore_errors=True)
    shutil.rmtree(busybox_tree, ignore_errors=True)
    return vmlinuz, initrd


def kernel_package() -> str:
    """The versioned kernel package linux-image-amd64 depends on right now."""
    out = run(["apt-cache", "depends", KERNEL_METAPACKAGE], capture=True).stdout
    for line in out.splitlines():
        kind, _colon, name = line.strip().partition(":")
        if kind in ("Depends", "|Depends") and name.strip().startswith("linux-image-"):
            return name.strip()
    raise LabError(f"apt-cache knows no kernel for {KERNEL_METAPACKAGE}; run apt-get update")


def fetch_kernel(dest: Path, modules_dir: Path, modules: tuple[str, ...]) -> str:
    """apt-get download the kernel .deb; keep its vmlinuz and the modules named (with
    their dependencies), flat in ``modules_dir`` as <name>.ko."""
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
        module_trees = sorted((work / "root/lib/modules").glob("*/kernel"))
        if not module_trees:
            raise LabError(f"{debs[0].name} holds no /lib/modules/*/kernel")
        find = _module_finder(module_trees[0])
        if modules_dir.exists():
            shutil.rmtree(modules_dir)
        modules_dir.mkdir(parents=True)
        for name in module_order(modules, find):
            shutil.copyfile(find(name), modules_dir / f"{name}.ko")
        tmp_dest = dest.with_suffix(".tmp")
        shutil.copyfile(kernels[0], tmp_dest)
        os.replace(tmp_dest, dest)
        (modules_dir / ".kernel").write_text(package + "\n")
    return package


def _module_finder(tree: Path) -> Callable[[str], Path]:
    """name -> path of <name>.ko under ``tree`` ("-" and "_" are the same to the kernel)."""
    index = {p.name[:-3].replace("-", "_"): p for p in tree.rglob("*.ko")}

    def find(name: str) -> Path:
        path = index.get(name.replace("-", "_"))
        if path is None:
            raise LabError(f"kernel module {name} is not in the kernel package "
                           "(built in, or renamed?)")
        return path
    return find


_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


def module_dependencies(module: Path) -> list[str]:
    """The ``depends=`` field of a .ko's .modinfo section (what modinfo prints)."""
    match = _DEPENDS.search(module.read_bytes())
    if match is None:
        return []
    return [name for name in match.group(1).decode().split(",") if name]


def module_order(names: tuple[str, ...], find: Callable[[str], Path]) -> list[str]:
    """``names`` and everything they depend on, each after its dependencies."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in order:
            return
        if name in visiting:
            raise LabError(f"kernel module dependency loop at {name}")
        visiting.add(name)
        for dependency in module_dependencies(find(name)):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in names:
        visit(name)
    return order


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


def build_initrd(dest: Path, init_script: str, *, modules: list[str] | None = None,
                 extra: dict[str, tuple[bytes, int]] | None = None,
                 extra_files: dict[str, Path] | None = None,
                 busybox: Path = BUSYBOX) -> None:
    """cpio (newc) + gzip of: /init, a static busybox, the /dev/console node, the kernel
    modules named (from MODULES_DIR, as /lib/modules/<name>.ko), and extra files.
    ``busybox``: the build machine's (checked to be static), or another architecture's
    from its busybox-static .deb (static by the package's definition)."""
    if busybox == BUSYBOX:
        _check_busybox()
    log(f"building the initrd {dest}")
    with tempfile.TemporaryDirectory(prefix="centra-lab-initrd-") as tmp:
        root = Path(tmp)
        for directory in ("bin", "dev", "proc", "sys", "etc", "tmp"):
            (root / directory).mkdir()
        shutil.copy2(busybox, root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        init = root / "init"
        init.write_text(init_script)
        init.chmod(0o755)
        if modules:
            (root / "lib/modules").mkdir(parents=True)
            for name in modules:
                shutil.copyfile(MODULES_DIR / f"{name}.ko", root / "lib/modules" / f"{name}.ko")
        for name, (content, mode) in (extra or {}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
            (root / name).chmod(mode)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, root / name)
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
