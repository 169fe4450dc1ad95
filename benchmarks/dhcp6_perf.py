# SPDX-License-Identifier: GPL-3.0-or-later
"""DHCPv6 leases per second: the generated kea-dhcp6 config (N reservations by DUID, the
option-61 PXE classes) vs the same Kea with a minimal config (same interface, lease
database, lifetimes, subnet and pool; no classes, no reservations). docs/ipv6.md.

The generated config comes from the collection: build_plan() over N nodes with pxe_ip6
and pxe_duid in 2001:db8:0:1::/64, then kea_dhcp6_config(); only the lease file, the
control socket, the server id (not persisted) and the log level are changed to fit the
bench namespaces. perfdhcp -6 (package kea-admin) runs in the client namespace, directly
on the veth (no relay): SOLICIT, ADVERTISE, REQUEST, REPLY, with option 61 = 7 (x86-64
UEFI) so that the classes are evaluated on every packet, from N clients whose DUIDs are
not the reserved ones (perfdhcp makes its own DUIDs). Each configuration runs `--rounds`
times, interleaved; the ratio of medians is the result (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position

bl.import_collection()
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import kea_dhcp6_config  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "2001:db8:0:1::"
SUBNET6 = {"cidr": PREFIX + "/64", "pool": PREFIX + "1:0-" + PREFIX + "ffff:ffff"}
SERVER6 = PREFIX + "2"
LOADERS = {"bios": "undionly.kpxe", "efi32": "", "efi64": "ipxe.efi", "arm32": "", "arm64": ""}
ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


def plan_for(nodes: int) -> Dict[str, Any]:
    inventory = {}
    for index in range(nodes):
        inventory["n%05d" % index] = {
            "groups": ["all", "pxe_nodes", "worker"], "pxe_mac": "52:54:%02x:%02x:%02x:01" % (
                index >> 16 & 0xFF, index >> 8 & 0xFF, index & 0xFF),
            "pxe_ip6": PREFIX + "%x" % (0x10 + index), "pxe_duid": "0004%032x" % (index + 1)}
    return build_plan([{"cidr": "192.0.2.0/24"}, SUBNET6], {"worker": {"kernel": ASSET, "initrd": ASSET}}, inventory)


def configs(plan: Dict[str, Any], pair: bl.NamespacePair, work: str) -> Dict[str, Dict[str, Any]]:
    server = {"name": "bench", "interface": pair.server_if, "address6": SERVER6, "cidr6": SUBNET6["cidr"],
              "http_port": 80, "loaders": LOADERS}
    settings = {"interfaces": [pair.server_if], "lease_file": os.path.join(work, "leases6.csv"),
                "control_socket": os.path.join(work, "kea6.sock"), "valid_lifetime": 3600,
                "socket_retries": 5, "socket_retry_wait_ms": 1000, "log_severity": "WARN"}
    generated = kea_dhcp6_config(plan, server, settings)
    generated["Dhcp6"]["server-id"] = {"type": "LL", "persist": False}
    subnet = generated["Dhcp6"]["subnet6"][0]
    minimal = {"Dhcp6": {
        key: generated["Dhcp6"][key]
        for key in ("interfaces-config", "control-socket", "lease-database", "valid-lifetime",
                    "preferred-lifetime", "loggers", "server-id")}}
    minimal["Dhcp6"]["subnet6"] = [{k: subnet[k] for k in ("id", "subnet", "interface", "pools")}]
    return {"generated": generated, "minimal": minimal}


def perfdhcp(pair: bl.NamespacePair, rate: int, seconds: int, clients: int) -> Dict[str, Any]:
    argv = ["perfdhcp", "-6", "-l", pair.client_if, "-r", str(rate), "-p", str(seconds), "-R", str(clients),
            "-o", "61,0007"]
    done = bl.run(pair.in_client(argv), check=False, timeout=seconds + 60)
    rate_match = re.search(r"^Rate: ([0-9.]+) 4-way exchanges/second", done.stdout, re.M)
    drops = [int(x) for x in re.findall(r"^drops: (\d+)", done.stdout, re.M)]
    if not rate_match:
        raise SystemExit("perfdhcp -6 gave no rate (exit %d):\n%s\n%s"
                         % (done.returncode, done.stdout[-3000:], done.stderr[-2000:]))
    return {"rate": float(rate_match.group(1)), "drops": sum(drops)}


def start_kea(pair: bl.NamespacePair, name: str, config: Dict[str, Any], work: str) -> bl.Daemon:
    path = os.path.join(work, name + ".json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    lease_file = config["Dhcp6"]["lease-database"]["name"]
    if os.path.exists(lease_file):
        os.unlink(lease_file)
    env = dict(os.environ, KEA_PIDFILE_DIR=work, KEA_LOCKFILE_DIR=work)
    return bl.start_checked(pair, "kea-dhcp6 (%s)" % name, ["kea-dhcp6", "-t", path], ["kea-dhcp6", "-c", path], 547,
                            os.path.join(work, name + ".log"), env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10000, help="reservations in the generated config")
    parser.add_argument("--rate", type=int, default=10000, help="exchanges perfdhcp starts per second")
    parser.add_argument("--seconds", type=int, default=10, help="length of one perfdhcp run")
    parser.add_argument("--clients", type=int, default=20000, help="perfdhcp -R: distinct clients")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each configuration")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    started = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {"generated": [], "minimal": []}
    with tempfile.TemporaryDirectory(prefix="cpxe-dhcp6-") as work, bl.NamespacePair("d6") as pair:
        bl.run(pair.in_server(["ip", "-6", "addr", "add", SERVER6 + "/64", "dev", pair.server_if, "nodad"]))
        for argv in (pair.in_server, pair.in_client):  # the link-local addresses out of DAD on both ends
            bl.wait_for(lambda argv=argv: "fe80" in bl.run(argv(["ip", "-6", "addr", "show", "scope", "link"])).stdout
                        and not bl.run(argv(["ip", "-6", "addr", "show", "tentative"])).stdout.strip(),
                        30, "the link-local addresses", interval=0.2)
        variants = configs(plan_for(args.nodes), pair, work)
        for _round in range(args.rounds):
            for name, config in variants.items():
                daemon = start_kea(pair, name, config, work)
                try:
                    result = perfdhcp(pair, args.rate, args.seconds, args.clients)
                finally:
                    daemon.stop()
                results[name].append(result)
                print("%-9s %8.0f exchanges/s (drops %d)" % (name, result["rate"], result["drops"]), flush=True)
    medians = {name: bl.median([r["rate"] for r in runs]) for name, runs in results.items()}
    ratio = medians["generated"] / medians["minimal"] if medians["minimal"] else 0.0
    print("median: generated %.0f/s, minimal %.0f/s: generated/minimal = %.2f (load %s)"
          % (medians["generated"], medians["minimal"], ratio, bl.load()))
    bl.write_json(args.json, {"args": vars(args), "results": results, "medians": medians, "ratio": ratio,
                              "started": started, "load": bl.load()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
