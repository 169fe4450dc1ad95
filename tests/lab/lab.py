"""centra.pxe lab harness: a real PXE host (nspawn container) and real PXE clients (QEMU).

    python3 tests/lab/lab.py up [--inventory PATH] [--hosts N] [--apt-packages a,b] [--far-network]
                                [--foreign-dhcp] [--ipv6]
    python3 tests/lab/lab.py boot --mac MAC --firmware bios|uefi|uefi-secureboot [--arch amd64|arm64]
                                  [--timeout S] [--json] [--ipv6]
                                  [--network near|far]
                                  [--disk NAME [--disk-size MB] [--fresh-disk]]
                                  [--until MARKER] [--max-boots N]
    python3 tests/lab/lab.py down [--purge-logs]
    python3 tests/lab/lab.py image [--arch amd64|arm64] | status
    python3 tests/lab/lab.py exec [--router] -- CMD...   (run CMD on the lab network,
                                                          or in the far network's router)
    python3 tests/lab/lab.py ssh [pxe01] [-- CMD...]
    python3 tests/lab/lab.py stop|start|restart HOST [--kill]   (one PXE host; disk kept)

The subcommands and their output are a contract that tests outside this repository
rely on (see tests/lab/README.md and docs/lab.md). Run as root.
Exit status: 0 success, 1 a boot did not reach PXE-BOOT-OK, 2 any other failure.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

# labkit is found beside this script: Python puts a script's own directory first on sys.path.
from labkit import boot, container, far, foreign, image, inventory, net, net6, rootfs
from labkit.common import (
    BOOTS_DIR,
    BRIDGE,
    BRIDGE_ADDRESS,
    BRIDGE_NETWORK,
    DEFAULT_INVENTORY,
    FAR_BRIDGE,
    LOGS_DIR,
    MAX_PXE_HOSTS,
    NETNS,
    ROUTER_NETNS,
    NFT_TABLE,
    SSH_KEY,
    STATE_DIR,
    STATE_FILE,
    STATE_VERSION,
    LabError,
    ProcessRef,
    cache_lock,
    lab_lock,
    log,
    read_json,
    require_root,
    run,
    stdout_to_stderr,
    timestamp,
    write_json_atomic,
)
from labkit.container import PxeHost

HOSTS_DIR = STATE_DIR / "hosts"


# --- state -----------------------------------------------------------------------------


def save_state(state: dict[str, object], hosts: list[PxeHost]) -> None:
    """Rewritten after every step of `up`, so a crash leaves an accurate record."""
    state["hosts"] = [h.to_json() for h in hosts]
    write_json_atomic(STATE_FILE, state)


def host_address(index: int) -> str:
    """PXE host i (1-based) gets 192.0.2.(1+i): pxe01 is 192.0.2.2."""
    return f"192.0.2.{1 + index}"


# --- teardown (down, and the first thing `up` does) ------------------------------------


def teardown() -> None:
    """Remove everything a previous `up` or `boot` made, as far as it still exists.

    Driven by the state files first (PIDs are only ever signalled if they match what
    was recorded), then by the lab's own names (namespace cpxe-lab with everything in
    it, table inet centra_lab) for whatever a crash left unrecorded. Caches and logs
    are kept.
    """
    boot.cleanup_stale_boots()
    state = read_json(STATE_FILE) or {}
    far_record = state.get("far_network")
    if isinstance(far_record, dict):
        far.stop_relay(far.FarNetwork.from_json(far_record))
    far.delete_router()         # takes its veths (and their peers on the bridges) with it
    foreign_record = state.get("foreign_dhcp")
    if isinstance(foreign_record, dict):
        foreign.stop(foreign.ForeignDhcp.from_json(foreign_record))
    foreign.delete_namespace()  # takes its veth (and the peer on the bridge) with it
    ipv6_record = state.get("ipv6")
    if isinstance(ipv6_record, dict):
        net6.stop(net6.Ipv6Lab.from_json(ipv6_record))
    for data in state.get("hosts", []):
        host = PxeHost.from_json(data)
        log(f"stopping {host.name} ({host.machine})")
        container.stop(host)
    if HOSTS_DIR.exists():
        rootfs.remove_tree(HOSTS_DIR)
    inventory_path = state.get("inventory")
    if isinstance(inventory_path, str):
        Path(inventory_path).unlink(missing_ok=True)
    container.close_ssh_masters()
    net.delete_netns()          # takes the bridge, taps and veths with it
    net.remove_host_guard()
    STATE_FILE.unlink(missing_ok=True)


# --- up ----------------------------------------------------------------------------------


def ensure_ssh_key() -> str:
    """The lab's SSH key pair (cached); returns the public key."""
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "centra-pxe-lab", "-f", SSH_KEY])
    return SSH_KEY.with_suffix(".pub").read_text()


def prepare_hosts(count: int, packages: tuple[str, ...], public_key: str,
                  routes: list[tuple[str, str]]) -> list[PxeHost]:
    """Fresh rootfs copies: the first is unpacked and primed, the others cloned from it."""
    stamp = timestamp()
    hosts: list[PxeHost] = []
    for index in range(1, count + 1):
        name = f"pxe{index:02d}"
        host = PxeHost(name=name, address=host_address(index),
                       rootfs=HOSTS_DIR / name / "rootfs",
                       console_log=LOGS_DIR / f"console-{name}-{stamp}.log")
        if index == 1:
            with cache_lock():
                rootfs.extract_rootfs(rootfs.ensure_rootfs_tarball(), host.rootfs)
                rootfs.prime_apt_cache(host.rootfs, packages)
        else:
            rootfs.clone_rootfs(hosts[0].rootfs, host.rootfs)
        hosts.append(host)
    for host in hosts:   # after cloning, so that no two hosts share an identity
        rootfs.personalize(host.rootfs, host.name, host.address, public_key, routes)
    return hosts


def cmd_up(args: argparse.Namespace) -> int:
    if not 1 <= args.hosts <= MAX_PXE_HOSTS:
        raise LabError(f"--hosts must be between 1 and {MAX_PXE_HOSTS}")
    packages = rootfs.apt_packages_from(args.apt_packages)
    if args.ipv6 and net6.KEA_DHCP6_PACKAGE not in packages:
        packages += (net6.KEA_DHCP6_PACKAGE,)
    inventory_path = Path(args.inventory).resolve() if args.inventory else DEFAULT_INVENTORY
    started = time.monotonic()
    with lab_lock(), stdout_to_stderr():
        if STATE_FILE.exists() or net.netns_exists():
            log("cleaning up what a previous run left behind")
        teardown()
        with cache_lock():
            public_key = ensure_ssh_key()
            image.ensure_image()
            # The demo inventory's worker profile has arm64 assets (node09): the plan needs
            # the files on the controller. Cached like the amd64 image.
            image.ensure_arm64_image()
        state: dict[str, object] = {
            "version": STATE_VERSION, "created": time.strftime("%FT%T%z"),
            "netns": NETNS, "bridge": BRIDGE, "network": BRIDGE_NETWORK,
            "bridge_address": BRIDGE_ADDRESS,
            "nft_table": f"inet {NFT_TABLE}", "inventory": str(inventory_path),
            "apt_packages": list(packages), "hosts": [],
        }
        save_state(state, [])
        net.check_forwarding_off()
        net.install_host_guard()
        net.create_netns()
        net.create_bridge()
        if args.far_network:
            far_network = far.create([host_address(i) for i in range(1, args.hosts + 1)])
            state["far_network"] = far_network.to_json()
            save_state(state, [])
            far.start_relay(far_network)
            state["far_network"] = far_network.to_json()
            save_state(state, [])
            far.wait_relay_ready(far_network)
        if args.foreign_dhcp:
            foreign_dhcp = foreign.create()
            state["foreign_dhcp"] = foreign_dhcp.to_json()
            save_state(state, [])
            foreign.start(foreign_dhcp)
            state["foreign_dhcp"] = foreign_dhcp.to_json()
            save_state(state, [])
            foreign.wait_ready(foreign_dhcp)
        if args.ipv6:
            lab6 = net6.start()
            state["ipv6"] = lab6.to_json()
            save_state(state, [])
        routes = far.pxe_host_routes() if args.far_network else []
        hosts = prepare_hosts(args.hosts, packages, public_key, routes)
        for index, host in enumerate(hosts, start=1):
            if args.ipv6:
                net6.write_host_dropin(host.rootfs, index)
        save_state(state, hosts)
        for host in hosts:
            container.start(host)
            save_state(state, hosts)
            log(f"started {host.name} (nspawn PID {host.nspawn.pid if host.nspawn else '?'}), "
                f"console: {host.console_log}")
        for host in hosts:
            host.init = container.find_init(host)
            save_state(state, hosts)
        for host in hosts:
            status = container.wait_ready(host)
            log(f"{host.name} at {host.address} is {status}")
        if args.ipv6:
            net6.wait_sending(lab6)
        inventory.write(inventory_path, hosts)
        state["ready_seconds"] = round(time.monotonic() - started, 1)
        save_state(state, hosts)
    log(f"lab is up in {time.monotonic() - started:.0f}s; inventory: {inventory_path}")
    print(inventory_path)
    return 0


# --- down, status, image --------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with lab_lock(), stdout_to_stderr():
        teardown()
        if args.purge_logs and LOGS_DIR.exists():
            rootfs.remove_tree(LOGS_DIR)
    log(f"lab is down ({time.monotonic() - started:.1f}s); caches kept")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The state JSON, plus whether each recorded process is still alive."""
    state = read_json(STATE_FILE)
    if state is None:
        print(json.dumps({"up": False}, indent=2))
        return 0
    for data in state.get("hosts", []):
        host = PxeHost.from_json(data)
        data["alive"] = bool(host.nspawn and host.nspawn.alive())
    state["up"] = any(h.get("alive") for h in state.get("hosts", []))
    state["bridge_present"] = net.link_exists(BRIDGE)
    far_record = state.get("far_network")
    if isinstance(far_record, dict):
        relay = far.FarNetwork.from_json(far_record).dhcrelay
        far_record["dhcrelay_alive"] = bool(relay and relay.alive())
        far_record["bridge_present"] = net.link_exists(FAR_BRIDGE)
        far_record["router_present"] = far.router_exists()
    foreign_record = state.get("foreign_dhcp")
    if isinstance(foreign_record, dict):
        kea = foreign.ForeignDhcp.from_json(foreign_record).kea
        foreign_record["kea_alive"] = bool(kea and kea.alive())
        foreign_record["leases"] = foreign.leases(Path(foreign_record.get("lease_file", "")))
    ipv6_record = state.get("ipv6")
    if isinstance(ipv6_record, dict):
        ra = net6.Ipv6Lab.from_json(ipv6_record).ra
        ipv6_record["ra_alive"] = bool(ra and ra.alive())
    state["running_boots"] = running_boots()
    print(json.dumps(state, indent=2, sort_keys=True))
    return 0


def running_boots() -> list[dict[str, object]]:
    """Boot records, each marked with whether its `boot` process is still there."""
    boots = []
    for path in sorted(BOOTS_DIR.glob("boot-*.json")) if BOOTS_DIR.is_dir() else []:
        record = read_json(path)
        if record is not None:
            owner = ProcessRef.from_json(record.get("owner"))
            record["orphaned"] = owner is None or not owner.alive()
            boots.append(record)
    return boots


def cmd_image(args: argparse.Namespace) -> int:
    with stdout_to_stderr(), cache_lock():
        if args.arch == "arm64":
            vmlinuz, initrd = image.ensure_arm64_image()
        else:
            vmlinuz, initrd = image.ensure_image()
    print(vmlinuz)
    print(initrd)
    return 0


# --- boot ---------------------------------------------------------------------------------


def boot_request(args: argparse.Namespace) -> boot.BootRequest:
    """The `boot` arguments as a request. Without --disk, --max-boots and --until it is
    the boot of the contract: one boot, -no-reboot, done at PXE-BOOT-OK."""
    macs = [boot.canonical_mac(m) for m in [args.mac, *args.extra_mac]]
    if args.disk is None and (args.disk_size is not None or args.fresh_disk):
        raise LabError("--disk-size and --fresh-disk need --disk NAME")
    max_boots = args.max_boots
    if max_boots is None:
        max_boots = boot.DEFAULT_MAX_BOOTS if args.disk is not None else 1
    timeout = args.timeout if args.timeout is not None else 180.0 * max_boots
    return boot.BootRequest(
        macs=macs, firmware=args.firmware, timeout=timeout,
        boot_nic=args.boot_nic or 1, attach_all=args.boot_nic is None or args.attach_all,
        http_boot=args.http_boot, ipv6=args.ipv6,
        nic_model=args.nic_model or ("e1000" if args.firmware == "bios" else "virtio"),
        memory_mb=args.memory, network=args.network,
        disk=args.disk, disk_size_mb=args.disk_size or boot.DEFAULT_DISK_MB,
        fresh_disk=args.fresh_disk, until=args.until or boot.SUCCESS_MARK,
        max_boots=max_boots, arch=args.arch,
    )


def cmd_boot(args: argparse.Namespace) -> int:
    request = boot_request(args)
    result = boot.run_boot(request)
    if args.json:
        print(boot.result_json(request, result))
    else:
        print(boot.result_text(request, result))
    if result.ok:
        log(f"{request.macs[request.boot_nic - 1]} booted in {result.seconds:.1f}s")
    return 0 if result.ok else 1


# --- one PXE host: power off, power on (its disk, leases included, is kept) --------------


def _recorded_host(state: dict[str, object], name: str) -> tuple[int, PxeHost]:
    records = state.get("hosts", [])
    assert isinstance(records, list)
    for index, data in enumerate(records):
        if data["name"] == name:
            return index, PxeHost.from_json(data)
    known = ", ".join(str(d["name"]) for d in records) or "none"
    raise LabError(f"no PXE host {name!r} in this lab (known: {known})")


def cmd_host_power(args: argparse.Namespace) -> int:
    """stop: clean poweroff (--kill: SIGKILL, as if the power were pulled); start: boot
    the same rootfs again and wait until systemd is up; restart: both."""
    with lab_lock(), stdout_to_stderr():
        state = read_json(STATE_FILE)
        if state is None:
            raise LabError("the lab is not up: run `lab.py up` first")
        index, host = _recorded_host(state, args.host)
        if args.command in ("stop", "restart"):
            if args.kill:
                for process in (host.init, host.nspawn):
                    if process is not None and process.alive():
                        process.kill()
            container.stop(host)
            log(f"{host.name} is off")
        if args.command in ("start", "restart"):
            if host.nspawn is not None and host.nspawn.alive():
                raise LabError(f"{host.name} is running already")
            host.console_log = LOGS_DIR / f"console-{host.name}-{timestamp()}.log"
            container.start(host)
            host.init = container.find_init(host)
            state["hosts"][index] = host.to_json()  # type: ignore[index]
            write_json_atomic(STATE_FILE, state)
            log(f"{host.name} is {container.wait_ready(host)}")
        state["hosts"][index] = host.to_json()  # type: ignore[index]
        write_json_atomic(STATE_FILE, state)
    return 0


# --- conveniences: a shell on the lab network, SSH into a PXE host ----------------------


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command inside the lab namespace (where 192.0.2.0/24 is reachable), or
    with --router inside the far network's router namespace."""
    if not net.netns_exists():
        raise LabError(f"namespace {NETNS} does not exist: run `lab.py up` first")
    if args.router and not far.router_exists():
        raise LabError(f"namespace {ROUTER_NETNS} does not exist: run `lab.py up --far-network`")
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise LabError("usage: lab.py exec [--router] -- COMMAND [ARG ...]")
    os.execvp("ip", far.in_router(*command) if args.router else net.in_netns(*command))
    return 127  # not reached


def cmd_ssh(args: argparse.Namespace) -> int:
    """ssh into a PXE host with the lab key (interactive, or run a command)."""
    state = read_json(STATE_FILE) or {}
    hosts = {h["name"]: h for h in state.get("hosts", [])}
    if args.host not in hosts:
        raise LabError(f"no PXE host {args.host!r} is up (known: {', '.join(hosts) or 'none'})")
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    argv = container.ssh_command(hosts[args.host]["address"], *command)
    if not command:
        argv.insert(1, "-t")
    os.execvp("ssh", argv)
    return 127  # not reached


# --- command line --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = top.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="create the lab network and the PXE host container(s)")
    up.add_argument("--inventory", metavar="PATH",
                    help=f"where to write the inventory (default {DEFAULT_INVENTORY})")
    up.add_argument("--hosts", type=int, default=1, metavar="N",
                    help="number of PXE hosts pxe01.. (192.0.2.2..; default 1)")
    up.add_argument("--apt-packages", metavar="A,B,...",
                    help="packages to pre-download into each PXE host's apt cache "
                         "(default: env CENTRA_LAB_APT_PACKAGES, else "
                         f"{','.join(rootfs.DEFAULT_APT_PACKAGES)})")
    up.add_argument("--far-network", action="store_true",
                    help=f"also make the far network 198.51.100.0/24 ({FAR_BRIDGE}) behind a "
                         f"router namespace ({ROUTER_NETNS}) that runs dhcrelay to the PXE hosts")
    up.add_argument("--foreign-dhcp", action="store_true",
                    help=f"also run a plain DHCP server without PXE options (kea-dhcp4, "
                         f"{foreign.FOREIGN_ADDRESS}, pool {'-'.join(foreign.FOREIGN_POOL)}) in a namespace of "
                         f"its own ({foreign.FOREIGN_NETNS}) on the lab network: the site's server, for "
                         "pxe_dhcp_backend: proxy")
    up.add_argument("--ipv6", action="store_true",
                    help=f"also IPv6 on the lab network: {net6.NETWORK6} on {BRIDGE} "
                         f"({net6.BRIDGE_ADDRESS6}), PXE host i at {net6.PREFIX6}(1+i), router advertisements "
                         "(DHCPv6, no default router), kea-dhcp6-server in the apt cache")
    up.set_defaults(func=cmd_up)

    bt = sub.add_parser("boot", help="PXE-boot one QEMU machine and wait for PXE-BOOT-OK")
    bt.add_argument("--mac", required=True, help="MAC of the first NIC")
    bt.add_argument("--firmware", required=True, choices=boot.FIRMWARES,
                    help="bios: SeaBIOS + iPXE ROM; uefi: OVMF (AAVMF for arm64); "
                         "uefi-secureboot: the same with Secure Boot enforced (Microsoft keys)")
    bt.add_argument("--arch", choices=boot.ARCHES, default="amd64",
                    help="amd64 (default; qemu-system-x86_64) or arm64 (qemu-system-aarch64 "
                         "-M virt -cpu cortex-a57, AAVMF; UEFI only)")
    bt.add_argument("--timeout", type=float, metavar="S",
                    help="give up after S seconds (default 180 per allowed boot)")
    bt.add_argument("--extra-mac", action="append", default=[], metavar="MAC",
                    help="add another NIC (repeatable)")
    bt.add_argument("--boot-nic", type=int, metavar="N",
                    help="1-based NIC to boot from; the other NICs are then plugged into "
                         "nothing (unless --attach-all)")
    bt.add_argument("--attach-all", action="store_true",
                    help="with --boot-nic: keep every NIC on the lab bridge")
    bt.add_argument("--http-boot", action="store_true",
                    help="UEFI only: boot through OVMF's UEFI HTTPv4 entry instead of PXE")
    bt.add_argument("--ipv6", action="store_true",
                    help="UEFI only, after `up --ipv6`: boot over IPv6 only (OVMF's IPv4 stack off): "
                         "UEFI PXEv6, or UEFI HTTPv6 with --http-boot")
    bt.add_argument("--nic-model", choices=("e1000", "virtio"),
                    help="default: e1000 for bios, virtio for uefi (OVMF drives virtio only)")
    bt.add_argument("--memory", type=int, default=512, metavar="MB")
    bt.add_argument("--network", choices=("near", "far"), default="near",
                    help="near: the PXE hosts' network 192.0.2.0/24 (default); far: "
                         "198.51.100.0/24 behind the relay (needs `up --far-network`)")
    bt.add_argument("--disk", metavar="NAME",
                    help="attach the persistent disk NAME (a raw file in the lab's state "
                         "directory, created empty on first use), booted after the network; "
                         "the machine may then reboot (see --max-boots)")
    bt.add_argument("--disk-size", type=int, metavar="MB",
                    help=f"size of a new disk in MiB (default {boot.DEFAULT_DISK_MB})")
    bt.add_argument("--fresh-disk", action="store_true",
                    help="empty the disk first (as if new)")
    bt.add_argument("--until", metavar="MARKER",
                    help="succeed at the first serial line starting with MARKER, e.g. "
                         "LOCAL-BOOT-OK or 'LOCAL-BOOT-OK node01' (default PXE-BOOT-OK)")
    bt.add_argument("--max-boots", type=int, metavar="N",
                    help="let the guest reboot: fail when it starts boot N+1 "
                         f"(default {boot.DEFAULT_MAX_BOOTS} with --disk, else 1: -no-reboot)")
    bt.add_argument("--json", action="store_true", help="print one JSON object")
    bt.set_defaults(func=cmd_boot)

    down = sub.add_parser("down", help="remove everything `up` made (keeps the caches)")
    down.add_argument("--purge-logs", action="store_true",
                      help=f"also delete the serial/console logs in {LOGS_DIR}")
    down.set_defaults(func=cmd_down)

    im = sub.add_parser("image", help="build (or reuse) the test kernel + initrd")
    im.add_argument("--arch", choices=boot.ARCHES, default="amd64",
                    help="amd64 (default: the image `up` builds) or arm64 (for boot --arch arm64)")
    im.set_defaults(func=cmd_image)
    sub.add_parser("status", help="print the state JSON").set_defaults(func=cmd_status)

    ex = sub.add_parser("exec", help=f"run a command inside the lab namespace {NETNS}")
    ex.add_argument("--router", action="store_true",
                    help=f"run it in the far network's router namespace {ROUTER_NETNS} instead")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    for verb, text in (("stop", "power one PXE host off (its disk is kept)"),
                       ("start", "power a stopped PXE host on again and wait for it"),
                       ("restart", "stop, then start one PXE host")):
        power = sub.add_parser(verb, help=text)
        power.add_argument("host")
        power.add_argument("--kill", action="store_true",
                           help="stop with SIGKILL instead of a clean poweroff")
        power.set_defaults(func=cmd_host_power)

    sh = sub.add_parser("ssh", help="ssh into a PXE host (default pxe01)")
    sh.add_argument("host", nargs="?", default="pxe01")
    sh.add_argument("cmd", nargs=argparse.REMAINDER)
    sh.set_defaults(func=cmd_ssh)
    return top


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` cleanup still runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        require_root()
        return int(args.func(args))
    except LabError as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
