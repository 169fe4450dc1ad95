# SPDX-License-Identifier: GPL-3.0-or-later
"""TFTP: fetching undionly.kpxe and ipxe.efi with block size 512 vs 1468.

The server is in.tftpd (tftpd-hpa) started exactly as roles/pxe_tftp starts it: the
role's /etc/default/tftpd-hpa and unit templates are rendered with the role's
defaults (user tftp, --secure, bound to the provisioning address), and the unit's
ExecStart is run with that environment, in a bench namespace at 198.18.0.1. The
loaders are Debian's (package ipxe: /usr/lib/ipxe on this machine, or else the .deb
in the lab's apt cache, unpacked into a scratch directory).

The client is atftp (Debian package atftp) in a second namespace: without options
(RFC 1350: 512-byte blocks) and with `--option "blksize 1468"` (RFC 2348; 1468 fills
a 1500-byte Ethernet frame). Every fetch is compared byte for byte with the loader.
The runs are interleaved (512, 1468, 512, ...); the table shows medians. The time of
one fetch includes starting atftp (a few ms, the same for both sizes).
"""

from __future__ import annotations

import argparse
import filecmp
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import jinja2
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position

LOADERS = ("undionly.kpxe", "ipxe.efi")
BLOCK_SIZES = (512, 1468)


def find_loaders(work: str) -> Dict[str, str]:
    """Debian's loaders: installed, or unpacked from the lab's cached ipxe .deb."""
    found = {name: os.path.realpath(os.path.join("/usr/lib/ipxe", name)) for name in LOADERS}
    if all(os.path.isfile(path) for path in found.values()):
        return found
    debs = sorted(glob.glob("/var/cache/centra-pxe-lab/apt-archives/ipxe_*_all.deb"))
    if not debs:
        raise SystemExit("no iPXE loaders: install the ipxe package, or run tests/lab/lab.py up once")
    unpacked = os.path.join(work, "ipxe-deb")
    bl.run(["dpkg-deb", "-x", debs[-1], unpacked])
    found = {}
    for name in LOADERS:
        path = os.path.join(unpacked, "usr", "lib", "ipxe", name)
        # ipxe.efi is a link to /boot/ipxe.efi: resolve it inside the unpacked tree.
        link = os.readlink(path) if os.path.islink(path) else ""
        found[name] = os.path.join(unpacked, link.lstrip("/")) if link.startswith("/") else path
    return found


def tftpd_argv(root: str) -> List[str]:
    """ExecStart of the role's unit, with the role's /etc/default/tftpd-hpa as its environment."""
    role = os.path.join(bl.ROOT, "roles", "pxe_tftp")
    with open(os.path.join(role, "defaults", "main.yml"), encoding="utf-8") as handle:
        variables: Dict[str, Any] = yaml.safe_load(handle)
    variables.update(ansible_managed="benchmarks/tftp_blksize.py", _pxe_tftp_root=root,
                     _pxe_server_self={"address": bl.SERVER_ADDRESS})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(role, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    defaults: Dict[str, str] = {}
    for line in env.get_template("tftpd-hpa.j2").render(**variables).splitlines():
        match = re.match(r'^([A-Z_]+)="(.*)"$', line)
        if match:
            defaults[match.group(1)] = match.group(2)
    unit = env.get_template("tftpd-hpa.service.j2").render(**variables)
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    # systemd: ${VAR} is one word, $VAR is split on whitespace.
    argv: List[str] = []
    for word in exec_start.split():
        braced = re.fullmatch(r"\$\{(\w+)\}", word)
        bare = re.fullmatch(r"\$(\w+)", word)
        if braced:
            argv.append(defaults[braced.group(1)])
        elif bare:
            argv.extend(shlex.split(defaults[bare.group(1)]))
        else:
            argv.append(word)
    return argv


def fetch(pair: bl.NamespacePair, name: str, block_size: int, target: str) -> float:
    argv = ["atftp", "--get", "-r", name, "-l", target]
    if block_size != 512:
        argv += ["--option", "blksize %d" % block_size]
    argv.append(bl.SERVER_ADDRESS)
    if os.path.exists(target):
        os.unlink(target)
    started = time.monotonic()
    done = subprocess.run(pair.in_client(argv), capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit("atftp %s (blksize %d) failed: %s%s" % (name, block_size, done.stdout, done.stderr))
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="fetches of each loader at each block size")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not shutil.which("atftp"):
        raise SystemExit("atftp is not installed (apt-get install atftp; scripts/setup.sh installs it)")
    times: Dict[str, Dict[int, List[float]]] = {name: {size: [] for size in BLOCK_SIZES} for name in LOADERS}
    with tempfile.TemporaryDirectory(prefix="cpxe-bench-tftp-") as work, bl.NamespacePair("tftp") as pair:
        os.chmod(work, 0o755)
        root = os.path.join(work, "tftp")
        os.makedirs(root, mode=0o755)
        sources = find_loaders(work)
        sizes = {name: os.path.getsize(path) for name, path in sources.items()}
        for name, path in sources.items():
            shutil.copyfile(path, os.path.join(root, name))
            os.chmod(os.path.join(root, name), 0o644)
        argv = tftpd_argv(root)
        print("server: %s; load %s" % (" ".join(argv), bl.load()), file=sys.stderr)
        daemon = bl.Daemon(pair.in_server(argv), os.path.join(work, "tftpd.log"))
        try:
            time.sleep(0.5)
            if not daemon.alive():
                raise SystemExit("in.tftpd did not start:\n%s" % daemon.tail())
            target = os.path.join(work, "fetched")
            for _round in range(args.repeat):
                for name in LOADERS:
                    for size in BLOCK_SIZES:
                        times[name][size].append(fetch(pair, name, size, target))
                        if not filecmp.cmp(target, os.path.join(root, name), shallow=False):
                            raise SystemExit("%s at blksize %d: the fetched file differs" % (name, size))
        finally:
            daemon.stop()
    print("%-14s %8s %12s %12s %10s %8s" % ("loader", "bytes", "512 (ms)", "1468 (ms)", "1468 MB/s", "speedup"))
    rows = []
    for name in LOADERS:
        size = sizes[name]
        slow, fast = bl.median(times[name][512]), bl.median(times[name][1468])
        rows.append({"loader": name, "bytes": size, "ms_512": slow * 1000, "ms_1468": fast * 1000,
                     "speedup": slow / fast})
        print("%-14s %8d %12.1f %12.1f %10.2f %7.2fx"
              % (name, size, slow * 1000, fast * 1000, size / fast / 1e6, slow / fast))
    print("median of %d fetches each, every fetch checked byte for byte; date %s, load %s"
          % (args.repeat, bl.stamp(), bl.load()))
    bl.write_json(args.json, {"rows": rows, "times": times, "date": bl.stamp()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
