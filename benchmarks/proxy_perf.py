# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""proxyDHCP answers per second: dnsmasq with the generated proxy configuration
(pxe_dhcp_backend: proxy; a tag per row of the boot policy table, iPXE tagged apart, N
nodes in the plan) vs the same dnsmasq with the minimal proxy configuration a site would
write by hand (one boot file for every PXE client). docs/proxy.md.

Both run in the bench namespace pair (198.18.0.1 and .2/15, no route out): proxy mode on
198.18.0.0/15, DNS off, no leases. perfdhcp -4 -i (DISCOVER then the proxy's OFFER, the
exchange a proxy answers on port 67) runs in the client namespace, with option 60
`PXEClient:Arch:00007:UNDI:003016` and option 93 = 7 (x86-64 UEFI) on every DISCOVER so
that dnsmasq's PXE path and the tags are evaluated each time. Each configuration runs
`--rounds` times, interleaved; the ratio of medians is the result (the machine is shared).
"""

from __future__ import annotations

import argparse
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
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dnsmasq import dnsmasq_proxy_config  # noqa: E402  pylint: disable=wrong-import-position

SUBNET = {"cidr": "198.18.0.0/15"}
ASSET = {"url": "http://198.18.0.1/a", "checksum": "sha256:" + "cd" * 32}
LOADERS = {"bios": "undionly.kpxe", "efi32": "", "efi64": "ipxe.efi", "arm32": "", "arm64": ""}
VENDOR_CLASS = b"PXEClient:Arch:00007:UNDI:003016"


def plan_for(nodes: int) -> Dict[str, Any]:
    inventory = {
        "n%05d" % index: {"groups": ["all", "pxe_nodes", "worker"],
                          "pxe_mac": "52:54:%02x:%02x:%02x:01" % (index >> 16 & 0xFF, index >> 8 & 0xFF, index & 0xFF)}
        for index in range(nodes)}
    return build_plan([SUBNET], {"worker": {"kernel": ASSET, "initrd": ASSET}}, inventory)


def configs(plan: Dict[str, Any], pair: bl.NamespacePair) -> Dict[str, str]:
    server = {"name": "bench", "address": bl.SERVER_ADDRESS, "http_base": "http://%s" % bl.SERVER_ADDRESS,
              "loaders": LOADERS}
    generated = dnsmasq_proxy_config(plan, server, {"interfaces": [pair.server_if], "log_dhcp": False})
    minimal = "\n".join([
        "port=0", "leasefile-ro", "pid-file=", "log-facility=-", "interface=%s" % pair.server_if,
        "dhcp-range=198.18.0.0,proxy,255.254.0.0", "dhcp-pxe-vendor=PXEClient,HTTPClient",
        'pxe-prompt="boot",0', "dhcp-boot=ipxe.efi,,%s" % bl.SERVER_ADDRESS]) + "\n"
    return {"generated": generated, "minimal": minimal}


def perfdhcp(pair: bl.NamespacePair, rate: int, seconds: int, clients: int) -> Dict[str, Any]:
    argv = ["perfdhcp", "-4", "-i", "-l", pair.client_if, "-r", str(rate), "-p", str(seconds), "-R", str(clients),
            "-o", "60," + VENDOR_CLASS.hex(), "-o", "93,0007"]
    done = bl.run(pair.in_client(argv), check=False, timeout=seconds + 60)
    rate_match = re.search(r"^Rate: ([0-9.]+) ", done.stdout, re.M)
    drops = [int(x) for x in re.findall(r"^drops: (\d+)", done.stdout, re.M)]
    received = [int(x) for x in re.findall(r"^received packets: (\d+)", done.stdout, re.M)]
    if not rate_match or not received or received[0] == 0:
        raise SystemExit("perfdhcp -4 -i got no proxy offers (exit %d):\n%s\n%s"
                         % (done.returncode, done.stdout[-3000:], done.stderr[-2000:]))
    return {"rate": float(rate_match.group(1)), "drops": sum(drops), "received": received[0]}


def start_dnsmasq(pair: bl.NamespacePair, name: str, text: str, work: str) -> bl.Daemon:
    path = os.path.join(work, name + ".conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return bl.start_checked(pair, "dnsmasq (%s)" % name, ["dnsmasq", "--test", "--conf-file=" + path],
                            ["dnsmasq", "--keep-in-foreground", "--conf-file=" + path], 67,
                            os.path.join(work, name + ".log"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10000, help="nodes in the plan of the generated config")
    parser.add_argument("--rate", type=int, default=10000, help="DISCOVERs perfdhcp sends per second")
    parser.add_argument("--seconds", type=int, default=10, help="length of one perfdhcp run")
    parser.add_argument("--clients", type=int, default=20000, help="perfdhcp -R: distinct clients")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each configuration")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    started = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {"generated": [], "minimal": []}
    cpu: Dict[str, List[float]] = {"generated": [], "minimal": []}
    with tempfile.TemporaryDirectory(prefix="cpxe-proxy-") as work, bl.NamespacePair("px") as pair:
        variants = configs(plan_for(args.nodes), pair)
        for _round in range(args.rounds):
            for name, text in variants.items():
                daemon = start_dnsmasq(pair, name, text, work)
                try:
                    before = daemon.cpu_seconds()
                    result = perfdhcp(pair, args.rate, args.seconds, args.clients)
                    result["cpu_seconds"] = daemon.cpu_seconds() - before
                finally:
                    daemon.stop()
                results[name].append(result)
                print("%-9s %8.0f offers/s (received %d, drops %d, dnsmasq CPU %.2f s)"
                      % (name, result["rate"], result["received"], result["drops"], result["cpu_seconds"]), flush=True)
    medians = {name: bl.median([r["rate"] for r in runs]) for name, runs in results.items()}
    cpu_per_offer = {name: bl.median([r["cpu_seconds"] / r["received"] * 1e6 for r in runs])
                     for name, runs in results.items()}
    ratio = medians["generated"] / medians["minimal"] if medians["minimal"] else 0.0
    print("median: generated %.0f/s, minimal %.0f/s: generated/minimal = %.2f; dnsmasq CPU per offer "
          "%.1f / %.1f us (load %s)" % (medians["generated"], medians["minimal"], ratio,
                                        cpu_per_offer["generated"], cpu_per_offer["minimal"], bl.load()))
    bl.write_json(args.json, {"args": vars(args), "results": results, "medians": medians, "ratio": ratio,
                              "cpu_us_per_offer": cpu_per_offer, "started": started, "load": bl.load()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
