"""The foreign DHCP server (``up --foreign-dhcp``): the site's own DHCP server, for proxyDHCP.

Sites that run proxyDHCP (``pxe_dhcp_backend: proxy``) already have a DHCP server they
do not control, one that knows nothing of PXE. The lab plays it with a plain Kea:

- a namespace of its own, ``<lab namespace>-fd`` (``cpxe-lab-fd``, ``cpxe-lab-b-fd``
  ...), with veth ``cpxe-fdhcp`` (192.0.2.253/24) whose peer ``cpxefd0`` sits on the
  lab bridge cpxebr0: another machine on the lab network, not a PXE host;
- ``kea-dhcp4`` of the build machine there, in the foreground, recorded by PID and
  start time like every process the lab starts, stopped by that PID. Its
  configuration hands out 192.0.2.100-192.0.2.199 (lease time 10 minutes) with no
  boot file, no next-server, no option 60/43/66/67 and no reservation: whatever boot
  information a client gets comes from the proxy;
- its memfile lease file in the lab's state directory (``foreign-dhcp/leases4.csv``;
  ``lab.py status`` names it): the leases the tests compare with what booted.

The namespace has no other link and no forwarding; the build machine's namespace is
never touched.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import net
from .common import (
    BRIDGE,
    LOGS_DIR,
    NETNS,
    PREFIX_LEN,
    STATE_DIR,
    LabError,
    ProcessRef,
    log,
    run,
    timestamp,
)

FOREIGN_NETNS = f"{NETNS}-fd"
FOREIGN_NETNS_PATH = Path("/run/netns") / FOREIGN_NETNS
FOREIGN_LINK = "cpxe-fdhcp"              # inside the foreign namespace
LAB_PEER = "cpxefd0"                     # on cpxebr0
FOREIGN_ADDRESS = "192.0.2.253"
FOREIGN_POOL = ("192.0.2.100", "192.0.2.199")
FOREIGN_LEASE_SECONDS = 600
FOREIGN_DIR = STATE_DIR / "foreign-dhcp"
KEA_DHCP4 = "/usr/sbin/kea-dhcp4"


def kea_config(lease_file: Path) -> dict[str, Any]:
    """A plain DHCP server: addresses only, nothing a PXE client could boot from."""
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": [FOREIGN_LINK], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": True, "name": str(lease_file), "lfc-interval": 0},
        "valid-lifetime": FOREIGN_LEASE_SECONDS,
        "authoritative": False,
        "subnet4": [{"id": 1, "subnet": "192.0.2.0/24",
                     "pools": [{"pool": "%s - %s" % FOREIGN_POOL}]}],
        "loggers": [{"name": "kea-dhcp4", "severity": "INFO", "output_options": [{"output": "stdout"}]}],
    }}


@dataclass
class ForeignDhcp:
    """What `up --foreign-dhcp` made, as recorded in the state file."""

    log_path: Path
    kea: ProcessRef | None = None

    @property
    def lease_file(self) -> Path:
        return FOREIGN_DIR / "leases4.csv"

    def to_json(self) -> dict[str, Any]:
        return {
            "netns": FOREIGN_NETNS, "address": FOREIGN_ADDRESS, "link": FOREIGN_LINK, "lab_peer": LAB_PEER,
            "pool": list(FOREIGN_POOL), "lease_file": str(self.lease_file), "log": str(self.log_path),
            "kea": self.kea.to_json() if self.kea else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForeignDhcp:
        return cls(log_path=Path(data.get("log", "")), kea=ProcessRef.from_json(data.get("kea")))


def in_foreign(*argv: str | Path) -> list[str]:
    return ["ip", "netns", "exec", FOREIGN_NETNS, *(str(a) for a in argv)]


def namespace_exists() -> bool:
    return FOREIGN_NETNS_PATH.exists()


def create() -> ForeignDhcp:
    """The namespace and its veth on the lab bridge; the server is started separately."""
    if not net.netns_exists():
        raise LabError(f"namespace {NETNS} does not exist: the lab network comes first")
    delete_namespace()
    run(["ip", "netns", "add", FOREIGN_NETNS])
    run(["ip", "-n", FOREIGN_NETNS, "link", "set", "lo", "up"])
    run(in_foreign("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.ip_forward=0"))
    run(["ip", "-n", NETNS, "link", "add", LAB_PEER, "type", "veth",
         "peer", "name", FOREIGN_LINK, "netns", FOREIGN_NETNS])
    run(["ip", "-n", NETNS, "link", "set", LAB_PEER, "master", BRIDGE, "up"])
    run(["ip", "-n", FOREIGN_NETNS, "addr", "add", f"{FOREIGN_ADDRESS}/{PREFIX_LEN}", "dev", FOREIGN_LINK])
    run(["ip", "-n", FOREIGN_NETNS, "link", "set", FOREIGN_LINK, "up"])
    log(f"foreign DHCP network namespace {FOREIGN_NETNS} ({FOREIGN_ADDRESS} on {BRIDGE})")
    return ForeignDhcp(log_path=LOGS_DIR / f"foreign-dhcp-{timestamp()}.log")


def start(foreign: ForeignDhcp) -> None:
    """kea-dhcp4 in the foreground inside the foreign namespace, in its own session.

    Its pid and lock files go to the lab's state directory (KEA_PIDFILE_DIR,
    KEA_LOCKFILE_DIR), not /run/kea: a PXE-host-like Kea of the build machine, if any,
    is left alone. The caller records ``foreign.kea`` right away, then waits with
    :func:`wait_ready`.
    """
    if not Path(KEA_DHCP4).exists():
        raise LabError(f"{KEA_DHCP4} is missing: apt-get install kea-dhcp4-server")
    FOREIGN_DIR.mkdir(parents=True, exist_ok=True)
    foreign.lease_file.unlink(missing_ok=True)
    config = FOREIGN_DIR / "kea-dhcp4.json"
    config.write_text(json.dumps(kea_config(foreign.lease_file), indent=2) + "\n")
    foreign.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KEA_PIDFILE_DIR": str(FOREIGN_DIR),
           "KEA_LOCKFILE_DIR": str(FOREIGN_DIR)}
    with open(foreign.log_path, "ab") as kea_log:
        process = subprocess.Popen([KEA_DHCP4, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=kea_log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                   preexec_fn=lambda: net.enter_netns(FOREIGN_NETNS_PATH))
    foreign.kea = ProcessRef.of(process.pid)


def wait_ready(foreign: ForeignDhcp, timeout: float = 20.0) -> None:
    """Until Kea says it serves (DHCP4_STARTED); fails with its log otherwise."""
    kea = foreign.kea
    deadline = time.monotonic() + timeout
    while kea is not None and time.monotonic() < deadline:
        text = foreign.log_path.read_text(errors="replace")
        if "DHCP4_STARTED" in text:
            log(f"foreign DHCP server kea-dhcp4 (PID {kea.pid}) at {FOREIGN_ADDRESS} hands out "
                f"{FOREIGN_POOL[0]}-{FOREIGN_POOL[1]}; leases: {foreign.lease_file}")
            return
        if not kea.alive():
            break
        kea.wait_gone(0.2)
    raise LabError(f"the foreign DHCP server did not come up; log {foreign.log_path}:\n"
                   + foreign.log_path.read_text(errors="replace")[-2000:])


def stop(foreign: ForeignDhcp) -> None:
    """SIGTERM by recorded PID (and start time), then SIGKILL."""
    kea = foreign.kea
    if kea is not None and kea.signal(signal.SIGTERM) and not kea.wait_gone(5):
        kea.kill()
    if kea is not None and kea.alive():
        raise LabError(f"could not stop the foreign DHCP server (PID {kea.pid})")


def delete_namespace() -> None:
    """Deleting the namespace takes its veth (and the peer on the bridge) along."""
    if namespace_exists():
        run(["ip", "netns", "delete", FOREIGN_NETNS])


def leases(lease_file: Path) -> list[dict[str, str]]:
    """The foreign server's leases (Kea's memfile CSV: address, hwaddr, ...; the last line of an address wins)."""
    if not lease_file.exists():
        return []
    lines = lease_file.read_text().splitlines()
    if not lines:
        return []
    header = lines[0].split(",")
    by_address: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("address"):
            by_address[row["address"]] = row
    return list(by_address.values())
