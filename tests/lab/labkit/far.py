"""The far network (``up --far-network``): a second lab network behind a DHCP relay.

Production sites keep machines in subnets of their own, behind routers that relay
DHCP to the PXE server (``ip helper-address``). The lab builds exactly that:

- bridge ``cpxebr1`` in the lab namespace, with no address of the lab's own: far
  clients (``boot --network far``) attach to it and live in 198.51.100.0/24;
- a router namespace, ``<lab namespace>-rt`` (``cpxe-lab-rt``, ``cpxe-lab-b-rt`` ...),
  with veth ``cpxe-near`` on cpxebr0 (192.0.2.254/24) and veth ``cpxe-far`` on
  cpxebr1 (198.51.100.1/24). IP forwarding is switched on in that namespace only,
  and its nftables table forwards between those two veths and those two networks
  and drops everything else (counted, so a test can read what passed);
- ISC's ``dhcrelay`` in the router namespace, in the foreground, recorded by PID and
  start time like every process the lab starts. It hears the far clients on
  cpxe-far and relays to the PXE hosts with giaddr 198.51.100.1, so the DHCP server
  picks the far subnet by giaddr, exactly as behind a real router;
- the PXE hosts get a route to 198.51.100.0/24 via 192.0.2.254 (systemd-networkd,
  written when their rootfs is personalised) and no default route.

Nothing here routes out of the lab: the router namespace has no link but those two
veths, and the build machine's namespace is never touched.
"""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import net
from .common import (
    BRIDGE,
    BRIDGE_NETWORK,
    FAR_BRIDGE,
    FAR_NETWORK,
    LOGS_DIR,
    NETNS,
    PREFIX_LEN,
    ROUTER_FAR_ADDRESS,
    ROUTER_NEAR_ADDRESS,
    ROUTER_NETNS,
    STATE_DIR,
    LabError,
    ProcessRef,
    log,
    run,
    timestamp,
)

ROUTER_NETNS_PATH = Path("/run/netns") / ROUTER_NETNS
# Router-side veth ends (inside the router namespace) and their lab-side peers.
ROUTER_NEAR_LINK = "cpxe-near"
ROUTER_FAR_LINK = "cpxe-far"
LAB_NEAR_PEER = "cpxert0"                # on cpxebr0
LAB_FAR_PEER = "cpxert1"                 # on cpxebr1
ROUTER_NFT_TABLE = "centra_lab_router"
DHCRELAY = "/usr/sbin/dhcrelay"

ROUTER_RULESET = f"""\
table inet {ROUTER_NFT_TABLE}
delete table inet {ROUTER_NFT_TABLE}
table inet {ROUTER_NFT_TABLE} {{
    comment "centra.pxe lab router: forward between {BRIDGE_NETWORK} and {FAR_NETWORK} only"
    chain forward {{
        type filter hook forward priority filter; policy drop;
        iifname "{ROUTER_NEAR_LINK}" oifname "{ROUTER_FAR_LINK}" ip saddr {BRIDGE_NETWORK} ip daddr {FAR_NETWORK} counter accept comment "near-to-far"
        iifname "{ROUTER_FAR_LINK}" oifname "{ROUTER_NEAR_LINK}" ip saddr {FAR_NETWORK} ip daddr {BRIDGE_NETWORK} counter accept comment "far-to-near"
        counter drop comment "everything-else"
    }}
}}
"""


@dataclass
class FarNetwork:
    """What `up --far-network` made, as recorded in the state file."""

    relay_to: list[str]                  # the PXE hosts dhcrelay forwards to
    log_path: Path
    dhcrelay: ProcessRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "bridge": FAR_BRIDGE, "network": FAR_NETWORK,
            "router_netns": ROUTER_NETNS, "router_near_address": ROUTER_NEAR_ADDRESS,
            "router_far_address": ROUTER_FAR_ADDRESS,
            "router_links": {"near": ROUTER_NEAR_LINK, "far": ROUTER_FAR_LINK},
            "nft_table": f"inet {ROUTER_NFT_TABLE}",
            "relay_to": list(self.relay_to), "dhcrelay_log": str(self.log_path),
            "dhcrelay": self.dhcrelay.to_json() if self.dhcrelay else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FarNetwork:
        return cls(relay_to=list(data.get("relay_to", [])),
                   log_path=Path(data.get("dhcrelay_log", "")),
                   dhcrelay=ProcessRef.from_json(data.get("dhcrelay")))


def pxe_host_routes() -> list[tuple[str, str]]:
    """(destination, gateway) routes a PXE host needs to answer far clients."""
    return [(FAR_NETWORK, ROUTER_NEAR_ADDRESS)]


def in_router(*argv: str | Path) -> list[str]:
    return ["ip", "netns", "exec", ROUTER_NETNS, *(str(a) for a in argv)]


def router_exists() -> bool:
    return ROUTER_NETNS_PATH.exists()


def create(relay_to: list[str]) -> FarNetwork:
    """Bridge, router namespace, veths, forwarding and its guard; dhcrelay is separate."""
    if not net.netns_exists():
        raise LabError(f"namespace {NETNS} does not exist: the lab network comes first")
    net.delete_link(FAR_BRIDGE)
    delete_router()
    run(["ip", "-n", NETNS, "link", "add", FAR_BRIDGE, "type", "bridge",
         "stp_state", "0", "forward_delay", "0"])
    run(["ip", "-n", NETNS, "link", "set", FAR_BRIDGE, "up"])

    run(["ip", "netns", "add", ROUTER_NETNS])
    run(["ip", "-n", ROUTER_NETNS, "link", "set", "lo", "up"])
    # The guard first, forwarding second: no packet is ever forwarded unfiltered.
    run(in_router("nft", "-f", "-"), input_text=ROUTER_RULESET, capture=True)
    # No ICMP redirects either: a packet the guard drops gets no advice on its way.
    run(in_router("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                  "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.conf.all.send_redirects=0",
                  "net.ipv4.conf.default.send_redirects=0", "net.ipv4.ip_forward=1"))
    for lab_peer, router_link, bridge, address in (
            (LAB_NEAR_PEER, ROUTER_NEAR_LINK, BRIDGE, ROUTER_NEAR_ADDRESS),
            (LAB_FAR_PEER, ROUTER_FAR_LINK, FAR_BRIDGE, ROUTER_FAR_ADDRESS)):
        run(["ip", "-n", NETNS, "link", "add", lab_peer, "type", "veth",
             "peer", "name", router_link, "netns", ROUTER_NETNS])
        run(["ip", "-n", NETNS, "link", "set", lab_peer, "master", bridge, "up"])
        run(["ip", "-n", ROUTER_NETNS, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", router_link])
        run(["ip", "-n", ROUTER_NETNS, "link", "set", router_link, "up"])
    log(f"far network {FAR_NETWORK} on {FAR_BRIDGE}; router {ROUTER_NETNS} "
        f"({ROUTER_NEAR_ADDRESS} / {ROUTER_FAR_ADDRESS})")
    return FarNetwork(relay_to=list(relay_to),
                      log_path=LOGS_DIR / f"dhcrelay-{timestamp()}.log")


def start_relay(far: FarNetwork) -> None:
    """dhcrelay in the foreground inside the router namespace, in its own session.

    -id: the far clients' side (giaddr = cpxe-far's address); -iu: the side the PXE
    hosts' answers come back on. The caller records ``far.dhcrelay`` right away, then
    waits with :func:`wait_relay_ready`.
    """
    if not Path(DHCRELAY).exists():
        raise LabError(f"{DHCRELAY} is missing: apt-get install isc-dhcp-relay "
                       "(scripts/setup.sh installs it)")
    far.log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [DHCRELAY, "-4", "-d", "-pf", str(STATE_DIR / "dhcrelay.pid"),
            "-id", ROUTER_FAR_LINK, "-iu", ROUTER_NEAR_LINK, *far.relay_to]
    with open(far.log_path, "ab") as relay_log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=relay_log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=lambda: net.enter_netns(ROUTER_NETNS_PATH))
    far.dhcrelay = ProcessRef.of(process.pid)


def wait_relay_ready(far: FarNetwork, timeout: float = 10.0) -> None:
    """Until dhcrelay says it listens on both links; fails with its log otherwise."""
    relay = far.dhcrelay
    deadline = time.monotonic() + timeout
    while relay is not None and time.monotonic() < deadline:
        text = far.log_path.read_text(errors="replace")
        if f"LPF/{ROUTER_FAR_LINK}" in text and f"LPF/{ROUTER_NEAR_LINK}" in text:
            log(f"dhcrelay (PID {relay.pid}) relays {ROUTER_FAR_LINK} -> "
                f"{', '.join(far.relay_to)}; log: {far.log_path}")
            return
        if not relay.alive():
            break
        relay.wait_gone(0.2)
    raise LabError(f"dhcrelay did not come up; log {far.log_path}:\n"
                   + far.log_path.read_text(errors="replace")[-2000:])


def stop_relay(far: FarNetwork) -> None:
    """SIGTERM by recorded PID (and start time), then SIGKILL."""
    relay = far.dhcrelay
    if relay is not None and relay.signal(signal.SIGTERM) and not relay.wait_gone(5):
        relay.kill()
    if relay is not None and relay.alive():
        raise LabError(f"could not stop dhcrelay (PID {relay.pid})")
    (STATE_DIR / "dhcrelay.pid").unlink(missing_ok=True)


def delete_router() -> None:
    """Deleting the namespace takes the router's veths (and their lab-side peers) along."""
    if router_exists():
        run(["ip", "netns", "delete", ROUTER_NETNS])
