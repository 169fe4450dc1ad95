"""The lab network: namespace ``cpxe-lab`` holding bridge ``cpxebr0`` (192.0.2.1/24).

The lab network lives in a network namespace of its own rather than in the build
machine's: 192.0.2.0/24 is a documentation range, and a build machine may well use
it already (the development machine's own uplink is 192.0.2.2/24 via 192.0.2.1;
taking 192.0.2.1 there would cut it off). Inside ``cpxe-lab`` the bridge plays the
build machine's part, holding 192.0.2.1; PXE host containers and QEMU taps attach
to it. The namespace has no uplink at all, IP forwarding stays off in it, and
``table inet centra_lab`` (in the namespace and on the build machine) drops anything
forwarded between a lab interface and another one. Everything is named ``cpxe*``.

Processes that must sit on the lab network (nspawn, QEMU, the SSH proxy) enter the
namespace with setns(2) right before exec (see :func:`enter_netns`).
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
from pathlib import Path

from .common import (
    BRIDGE,
    BRIDGE_ADDRESS,
    NETNS,
    NFT_TABLE,
    PREFIX_LEN,
    TAP_PREFIX,
    LabError,
    log,
    run,
)

NETNS_PATH = Path("/run/netns") / NETNS
CLONE_NEWNET = 0x40000000

NFT_RULESET = f"""\
table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
    comment "centra.pxe lab: never forward into or out of a lab network"
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "cpxe*" oifname != "cpxe*" counter drop
        oifname "cpxe*" iifname != "cpxe*" counter drop
        iifname "vb-cpxe*" counter drop
        oifname "vb-cpxe*" counter drop
    }}
}}
"""


# --- the namespace -------------------------------------------------------------------


def netns_exists() -> bool:
    return NETNS_PATH.exists()


def enter_netns(path: Path = NETNS_PATH) -> None:
    """preexec_fn: move the child into the lab namespace (or ``path``) before it execs."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


def in_netns(*argv: str | os.PathLike[str]) -> list[str]:
    """Prefix a command so that it runs inside the lab namespace."""
    return ["ip", "netns", "exec", NETNS, *(str(a) for a in argv)]


def create_netns() -> None:
    """A fresh namespace: loopback up, forwarding off, no IPv6 chatter, nft guard."""
    if netns_exists():
        delete_netns()
    run(["ip", "netns", "add", NETNS])
    run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    run(in_netns("sysctl", "-q", "-w", "net.ipv4.ip_forward=0",
                 "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"))
    run(in_netns("nft", "-f", "-"), input_text=NFT_RULESET, capture=True)


def delete_netns() -> None:
    """Deleting the namespace removes the bridge, taps and veths inside it."""
    if netns_exists():
        run(["ip", "netns", "delete", NETNS])


# --- links inside the namespace ---------------------------------------------------


def link_exists(name: str) -> bool:
    if not netns_exists():
        return False
    return run(["ip", "-n", NETNS, "link", "show", "dev", name],
               check=False, capture=True).returncode == 0


def list_links(prefix: str) -> list[str]:
    """Interfaces in the lab namespace whose names start with ``prefix``."""
    if not netns_exists():
        return []
    out = run(["ip", "-n", NETNS, "-j", "link", "show"], capture=True).stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]")
                  if link.get("ifname", "").startswith(prefix))


def create_bridge() -> None:
    """cpxebr0 holding 192.0.2.1/24, STP off so new ports forward at once."""
    run(["ip", "-n", NETNS, "link", "add", BRIDGE, "type", "bridge",
         "stp_state", "0", "forward_delay", "0"])
    run(["ip", "-n", NETNS, "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "-n", NETNS, "link", "set", BRIDGE, "up"])


def delete_link(name: str) -> None:
    """Delete an interface in the lab namespace if it exists (idempotent)."""
    if link_exists(name):
        run(["ip", "-n", NETNS, "link", "delete", name], check=False, capture=True)
        if link_exists(name):
            raise LabError(f"could not delete network interface {name} in {NETNS}")


def new_tap_name() -> str:
    """Random, so that several `boot` commands can run side by side (max 15 chars)."""
    return f"{TAP_PREFIX}{secrets.token_hex(4)}"


def create_tap(name: str, bridge: str = BRIDGE) -> None:
    """A persistent tap for QEMU, enslaved to the lab bridge (or the far network's)."""
    if not link_exists(bridge):
        raise LabError(f"bridge {bridge} does not exist in namespace {NETNS}: "
                       "run `lab.py up` first")
    run(["ip", "-n", NETNS, "tuntap", "add", "dev", name, "mode", "tap"])
    run(["ip", "-n", NETNS, "link", "set", "dev", name, "master", bridge, "up"])


# --- the guard on the build machine itself ------------------------------------------


def install_host_guard() -> None:
    """The same table on the build machine, for lab links that ever end up there."""
    run(["nft", "-f", "-"], input_text=NFT_RULESET, capture=True)


def remove_host_guard() -> None:
    if run(["nft", "list", "table", "inet", NFT_TABLE], check=False, capture=True).returncode == 0:
        run(["nft", "delete", "table", "inet", NFT_TABLE], capture=True)


def check_forwarding_off() -> None:
    """The lab never routes; say so loudly if someone else turned forwarding on."""
    value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    if value != "0":
        log("warning: net.ipv4.ip_forward is on on this machine (not by the lab); "
            f"table inet {NFT_TABLE} drops forwarding to/from lab links anyway")
