"""The IPv6 lab network (``up --ipv6``, ``boot --ipv6``): 2001:db8:0:1::/64 on the lab bridge.

Beside the IPv4 network, never instead of it (the PXE hosts stay reachable over SSH
at 192.0.2.x):

- bridge ``cpxebr0`` holds 2001:db8:0:1::1/64 (IPv6 is switched on for the bridge only:
  the rest of the lab namespace keeps it off), multicast snooping off so that DHCPv6's
  ff02::1:2 reaches every port;
- PXE host i gets 2001:db8:0:1::(1+i)/64 and a link-local address (Kea's DHCPv6 server
  needs one) through a networkd drop-in beside the IPv4 file;
- a router-advertisement sender (this module, ``python3 -m labkit.net6 ra``) inside the
  lab namespace, recorded by PID like every process the lab starts. Its RA says
  "addresses come from DHCPv6" (M flag) and "2001:db8:0:1::/64 is on-link", with router
  lifetime 0: no client takes the bridge for a default router, so nothing is routed
  anywhere. iPXE starts DHCPv6 only on such an RA, and OVMF's PXEv6 looks for an on-link
  route to the boot server in its route table;
- ``boot --ipv6``: OVMF with its IPv4 stack switched off through fw_cfg (no PXEv4, no
  HTTPv4 and no DHCPv4), so the machine boots over IPv6 only: "UEFI PXEv6", or with
  ``--http-boot`` "UEFI HTTPv6".

Addresses: 2001:db8::/32 (documentation) only; no forwarding, the nft guard of net.py
applies unchanged.
"""
from __future__ import annotations

import argparse
import fcntl
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import net
from .common import BRIDGE, LOGS_DIR, NETNS, LabError, ProcessRef, log, run, timestamp

PREFIX6 = "2001:db8:0:1::"
PREFIX6_LEN = 64
NETWORK6 = f"{PREFIX6}/{PREFIX6_LEN}"
BRIDGE_ADDRESS6 = f"{PREFIX6}1"
RA_INTERVAL_SECONDS = 2.0
KEA_DHCP6_PACKAGE = "kea-dhcp6-server"  # the role installs it from the PXE host's apt cache
NETWORKD_DROPIN = "etc/systemd/network/10-lab-host0.network.d/50-ipv6.conf"

# ICMPv6 router advertisement (RFC 4861, 4.2) and its options.
ICMP6_ROUTER_ADVERT = 134
RA_FLAG_MANAGED = 0x80
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_PREFIX_INFORMATION = 3
PREFIX_FLAG_ON_LINK = 0x80
ALL_NODES = "ff02::1"
SIOCGIFHWADDR = 0x8927


def host_address6(index: int) -> str:
    """PXE host i (1-based) gets 2001:db8:0:1::(1+i), as its IPv4 address 192.0.2.(1+i)."""
    return f"{PREFIX6}{1 + index:x}"


def ovmf_fw_cfg(ipv6: bool, http_boot: bool) -> list[str]:
    """OVMF's network stack switches (fw_cfg) for a boot: which of its boot options exist.

    IPv4 (the default): no IPv6 stack, so no PXEv6/HTTPv6 attempts and no DHCPv6; with
    http_boot also no PXE, which leaves "UEFI HTTPv4". IPv6: no IPv4 stack (no PXEv4,
    HTTPv4, DHCPv4), which leaves "UEFI PXEv6" then "UEFI HTTPv6"; with http_boot no PXE
    either, which leaves "UEFI HTTPv6".
    """
    def knob(name: str) -> list[str]:
        return ["-fw_cfg", f"name=opt/org.tianocore/{name},string=no"]

    argv = knob("IPv4Support") if ipv6 else knob("IPv6Support")
    if http_boot:
        argv += knob("IPv4PXESupport") + knob("IPv6PXESupport")
    return argv


def networkd_dropin(index: int) -> str:
    """The PXE host's IPv6 address, added to the IPv4 file of rootfs.personalize()."""
    return ("# centra.pxe lab (up --ipv6): the host's IPv6 address; a link-local address for\n"
            "# DHCPv6 (Kea answers from it); no router advertisements taken.\n"
            f"[Network]\nAddress={host_address6(index)}/{PREFIX6_LEN}\n"
            "LinkLocalAddressing=ipv6\nIPv6AcceptRA=no\n")


def write_host_dropin(rootfs: Path, index: int) -> None:
    path = rootfs / NETWORKD_DROPIN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(networkd_dropin(index))


def enable_on_bridge(bridge: str = BRIDGE) -> None:
    """IPv6 on the bridge only (the namespace's default stays off), with its address."""
    run(net.in_netns("sysctl", "-q", "-w", f"net.ipv6.conf.{bridge}.disable_ipv6=0",
                     f"net.ipv6.conf.{bridge}.accept_ra=0", f"net.ipv6.conf.{bridge}.autoconf=0",
                     f"net.ipv6.conf.{bridge}.forwarding=0"))
    run(["ip", "-n", NETNS, "link", "set", bridge, "type", "bridge", "mcast_snooping", "0"])
    run(["ip", "-n", NETNS, "-6", "addr", "add", f"{BRIDGE_ADDRESS6}/{PREFIX6_LEN}", "dev", bridge, "nodad"])
    log(f"IPv6 on {bridge}: {BRIDGE_ADDRESS6}/{PREFIX6_LEN}")


def router_advertisement(mac: bytes, prefix: str = PREFIX6, prefix_len: int = PREFIX6_LEN) -> bytes:
    """The RA the lab sends: managed (DHCPv6), router lifetime 0, the prefix on-link, no SLAAC.

    The checksum is left 0: the kernel fills it in for ICMPv6 raw sockets.
    """
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    header = struct.pack("!BBHBBHII", ICMP6_ROUTER_ADVERT, 0, 0, 64, RA_FLAG_MANAGED, 0, 0, 0)
    source = struct.pack("!BB", ND_OPT_SOURCE_LINKADDR, 1) + mac
    prefix_option = struct.pack("!BBBBIII", ND_OPT_PREFIX_INFORMATION, 4, prefix_len, PREFIX_FLAG_ON_LINK,
                                86400, 14400, 0) + socket.inet_pton(socket.AF_INET6, prefix)
    return header + source + prefix_option


def hardware_address(interface: str) -> bytes:
    """The interface's MAC, asked of the kernel in this process's network namespace
    (/sys/class/net is the build machine's: sysfs follows the mount, not setns())."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        info = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", interface.encode()[:15]))
    return info[18:24]


def _send_ras(interface: str, interval: float) -> None:
    """Send the RA to all nodes every ``interval`` seconds until SIGTERM.

    The bridge's MAC is read again for every RA: a Linux bridge takes the lowest MAC of
    its ports, so it changes as PXE hosts join. An RA naming the old one (its source
    link-layer option) put a MAC nobody has in the hosts' neighbour caches, and Kea's
    DHCPv6 answers to the bridge's link-local address were lost until the next check."""
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861: hop limit 255
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    sent = 0
    while running[0]:
        try:
            packet = router_advertisement(hardware_address(interface))
            sock.sendto(packet, (ALL_NODES, 0, 0, index))
            sent += 1
            if sent == 1:
                print(f"RA-SENDING on {interface} every {interval:.0f}s", flush=True)
        except OSError as exc:  # no link-local address yet (the bridge has no carrier before its first port)
            print(f"waiting for {interface}: {exc}", flush=True)
        time.sleep(interval)
    print(f"stopped after {sent} RAs", flush=True)


@dataclass
class Ipv6Lab:
    """What `up --ipv6` made, as recorded in the state file."""

    log_path: Path
    ra: ProcessRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {"network": NETWORK6, "bridge_address": BRIDGE_ADDRESS6, "log": str(self.log_path),
                "ra": self.ra.to_json() if self.ra else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ipv6Lab:
        return cls(log_path=Path(data.get("log", "")), ra=ProcessRef.from_json(data.get("ra")))


def start(bridge: str = BRIDGE) -> Ipv6Lab:
    """IPv6 on the bridge and the RA sender in the lab namespace (the caller records it)."""
    enable_on_bridge(bridge)
    lab6 = Ipv6Lab(log_path=LOGS_DIR / f"ipv6-ra-{timestamp()}.log")
    lab6.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lab6.log_path, "ab") as ra_log:
        process = subprocess.Popen([sys.executable, "-m", "labkit.net6", "ra", "--interface", bridge],
                                   cwd=str(Path(__file__).resolve().parent.parent), stdin=subprocess.DEVNULL,
                                   stdout=ra_log, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=net.enter_netns)
    lab6.ra = ProcessRef.of(process.pid)
    return lab6


def wait_sending(lab6: Ipv6Lab, timeout: float = 30.0) -> None:
    """Until the RA sender says it sends (the bridge has a link-local address once a port is
    up: call this after the PXE hosts are); fails with its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = lab6.log_path.read_text(errors="replace") if lab6.log_path.exists() else ""
        if "RA-SENDING" in text:
            log(f"router advertisements on {BRIDGE} (PID {lab6.ra.pid if lab6.ra else '?'}), log {lab6.log_path}")
            return
        if lab6.ra is None or not lab6.ra.alive():
            break
        time.sleep(0.3)
    raise LabError(f"the router-advertisement sender is not sending; log {lab6.log_path}:\n"
                   + (lab6.log_path.read_text(errors="replace")[-2000:] if lab6.log_path.exists() else ""))


def stop(lab6: Ipv6Lab) -> None:
    """SIGTERM by recorded PID (and start time), then SIGKILL."""
    ra = lab6.ra
    if ra is not None and ra.signal(signal.SIGTERM) and not ra.wait_gone(5):
        ra.kill()
    if ra is not None and ra.alive():
        raise LabError(f"could not stop the router-advertisement sender (PID {ra.pid})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labkit.net6")
    sub = parser.add_subparsers(dest="command", required=True)
    ra = sub.add_parser("ra", help="send the lab's router advertisements (run inside the lab namespace)")
    ra.add_argument("--interface", default=BRIDGE)
    ra.add_argument("--interval", type=float, default=RA_INTERVAL_SECONDS)
    args = parser.parse_args(argv)
    _send_ras(args.interface, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
