"""The lab network: bridge ``cpxebr0`` (192.0.2.1/24), tap devices, the nft guard.

The lab network is an island: the build machine only holds 192.0.2.1 on the bridge,
IP forwarding stays off, and ``table inet centra_lab`` drops anything that would be
forwarded between a lab interface and any other interface, should somebody turn
forwarding on later. Every interface the lab makes is named ``cpxe*``.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from .common import (
    BRIDGE,
    BRIDGE_ADDRESS,
    NFT_TABLE,
    PREFIX_LEN,
    TAP_PREFIX,
    LabError,
    log,
    run,
)

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


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def list_links(prefix: str) -> list[str]:
    """Names of network interfaces starting with ``prefix``."""
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(prefix))


def disable_ipv6(name: str) -> None:
    """Keep lab links quiet: no IPv6 link-local, router solicitations or MLD."""
    knob = Path("/proc/sys/net/ipv6/conf", name, "disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


def _addresses_elsewhere(prefix: str) -> list[str]:
    """Interfaces other than ours that hold an address starting with ``prefix``."""
    out = run(["ip", "-j", "-4", "addr", "show"], capture=True).stdout
    found = []
    for link in json.loads(out or "[]"):
        if link.get("ifname", "").startswith("cpxe"):
            continue
        for addr in link.get("addr_info", []):
            if str(addr.get("local", "")).startswith(prefix):
                found.append(f"{link['ifname']}:{addr['local']}")
    return found


def create_bridge() -> None:
    """Create cpxebr0 with 192.0.2.1/24; refuse if 192.0.2.0/24 is in use elsewhere."""
    clash = _addresses_elsewhere("192.0.2.")
    if clash:
        raise LabError(f"192.0.2.0/24 is already used on this machine ({', '.join(clash)}); "
                       "the lab needs it for itself")
    if link_exists(BRIDGE):
        delete_link(BRIDGE)
    run(["ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    disable_ipv6(BRIDGE)
    run(["ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def delete_link(name: str) -> None:
    """Delete an interface if it exists (idempotent)."""
    if link_exists(name):
        run(["ip", "link", "delete", name], check=False)
        if link_exists(name):
            raise LabError(f"could not delete network interface {name}")


def new_tap_name() -> str:
    """Random, so that several `boot` commands can run side by side (max 15 chars)."""
    return f"{TAP_PREFIX}{secrets.token_hex(4)}"


def create_tap(name: str, bridge: str | None = BRIDGE) -> None:
    """A persistent tap for QEMU, enslaved to the lab bridge (or left unattached)."""
    if bridge is not None and not link_exists(bridge):
        raise LabError(f"bridge {bridge} does not exist: run `lab.py up` first")
    run(["ip", "tuntap", "add", "dev", name, "mode", "tap"])
    disable_ipv6(name)
    if bridge is not None:
        run(["ip", "link", "set", "dev", name, "master", bridge])
    run(["ip", "link", "set", "dev", name, "up"])


def install_nft_guard() -> None:
    """(Re)create ``table inet centra_lab`` atomically in one nft transaction."""
    run(["nft", "-f", "-"], input_text=NFT_RULESET, capture=True)


def remove_nft_guard() -> None:
    if run(["nft", "list", "table", "inet", NFT_TABLE], check=False, capture=True).returncode == 0:
        run(["nft", "delete", "table", "inet", NFT_TABLE], capture=True)


def check_forwarding_off() -> None:
    """The lab never routes; warn loudly if someone else turned forwarding on."""
    value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    if value != "0":
        log("warning: net.ipv4.ip_forward is on (not by the lab); "
            f"table inet {NFT_TABLE} still drops forwarding to/from lab links")


def remove_stray_taps() -> list[str]:
    """Delete leftover ``cpxet*`` taps (only the lab uses that prefix)."""
    removed = []
    for name in list_links(TAP_PREFIX):
        delete_link(name)
        removed.append(name)
    return removed
