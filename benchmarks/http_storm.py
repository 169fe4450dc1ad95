# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTP boot storm: N concurrent clients fetching kernel + initrd from the generated
nginx site vs Debian's stock nginx site on the same files, and the raw capacity of
the same link (one TCP stream, sendfile() on one side, recv into a buffer on the other).

Both nginx runs use Debian's own /etc/nginx/nginx.conf (paths of pid and logs moved to
a scratch directory); they differ only in the site: ours is roles/pxe_http's template
rendered with the role's defaults for a server at 198.18.0.1 whose pxe_subnets is
198.18.0.0/15, the stock one is Debian's sites-available/default with its root moved
to the same boot tree. The files are the lab's test image (kernel about 8 MB, initrd
about 1 MB), or same-size random files when the lab image is not built.

The load tool is wrk (Debian package wrk): each connection fetches the kernel and the
initrd in turn, keep-alive, for --seconds; wrk reports transfer/s and the latency
distribution (p99 per request). Everything runs in two bench namespaces joined by a
veth; nginx is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Dict, List

import jinja2
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchlib as bl  # noqa: E402  pylint: disable=wrong-import-position

LAB_IMAGE = "/var/cache/centra-pxe-lab/image"
PATHS = ("/profiles/worker/vmlinuz", "/profiles/worker/initrd")
WRK_SCRIPT = """
local paths = {"%s", "%s"}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% 2) + 1])
end
""" % PATHS


def boot_tree(work: str) -> Dict[str, int]:
    tree = os.path.join(work, "srv", "http", "profiles", "worker")
    os.makedirs(tree)
    sizes = {}
    for name, source, size in (("vmlinuz", "vmlinuz", 8247232), ("initrd", "initrd.img", 1028113)):
        target = os.path.join(tree, name)
        if os.path.exists(os.path.join(LAB_IMAGE, source)):
            shutil.copyfile(os.path.join(LAB_IMAGE, source), target)
        else:
            with open(target, "wb") as handle:
                handle.write(os.urandom(size))
        sizes[name] = os.path.getsize(target)
    for directory, _dirs, _files in os.walk(os.path.join(work, "srv")):
        os.chmod(directory, 0o755)
    os.chmod(work, 0o755)
    return sizes


def nginx_conf(work: str, name: str, site: str) -> str:
    """Debian's nginx.conf with pid, logs and the sites include pointed into `work`."""
    with open("/etc/nginx/nginx.conf", encoding="utf-8") as handle:
        text = handle.read()
    directory = os.path.join(work, name)
    os.makedirs(directory)
    site_path = os.path.join(directory, "site.conf")
    with open(site_path, "w", encoding="utf-8") as handle:
        handle.write(site)
    replacements = {
        r"^pid .*;$": "pid %s/nginx.pid;" % directory,
        r"^error_log .*;$": "error_log %s/error.log;" % directory,
        r"^(\s*)access_log .*;$": r"\1access_log %s/access.log;" % directory,
        r"^(\s*)include /etc/nginx/sites-enabled/\*;$": r"\1include %s;" % site_path,
    }
    for pattern, replacement in replacements.items():
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        if count != 1:
            raise SystemExit("/etc/nginx/nginx.conf: expected one line matching %s" % pattern)
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def generated_site(work: str) -> str:
    """roles/pxe_http/templates/centra-pxe.conf.j2 with the role's defaults."""
    role = os.path.join(bl.ROOT, "roles", "pxe_http")
    with open(os.path.join(role, "defaults", "main.yml"), encoding="utf-8") as handle:
        variables: Dict[str, Any] = yaml.safe_load(handle)
    with open(os.path.join(bl.ROOT, "roles", "pxe_server", "defaults", "main.yml"), encoding="utf-8") as handle:
        server_defaults = yaml.safe_load(handle)
    variables.update(
        ansible_managed="Ansible managed (benchmarks/http_storm.py)",
        pxe_server_http_port=server_defaults.get("pxe_server_http_port", 80),
        pxe_server_root=os.path.join(work, "srv"),
        _pxe_http_tls=False,
        _pxe_server_self={"address": bl.SERVER_ADDRESS},
        _pxe_http_access_log=os.path.join(work, "ours", "centra-pxe.access.log"),
        _pxe_http_allow=["198.18.0.0/15", bl.SERVER_ADDRESS],
    )
    # Ansible's template module renders with trim_blocks; `bool` is Ansible's filter.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(role, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["bool"] = lambda value: str(value).lower() in ("1", "true", "yes", "on")
    return env.get_template("centra-pxe.conf.j2").render(**variables)


def stock_site(work: str) -> str:
    with open("/etc/nginx/sites-available/default", encoding="utf-8") as handle:
        text = handle.read()
    text, count = re.subn(r"^(\s*)root /var/www/html;$", r"\1root %s/srv/http;" % work, text, flags=re.M)
    if count != 1:
        raise SystemExit("/etc/nginx/sites-available/default: no 'root /var/www/html;' line")
    return text


def start_nginx(pair: bl.NamespacePair, conf: str) -> bl.Daemon:
    check = bl.run(pair.in_server(["nginx", "-t", "-c", conf]), check=False)
    if check.returncode != 0:
        raise SystemExit("nginx -t refused %s:\n%s" % (conf, check.stderr))
    daemon = bl.Daemon(pair.in_server(["nginx", "-c", conf, "-g", "daemon off;"]),
                       os.path.join(os.path.dirname(conf), "stdout.log"))

    def answers() -> bool:
        probe = bl.run(pair.in_client(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                       "http://%s%s" % (bl.SERVER_ADDRESS, PATHS[1])]), check=False)
        return probe.stdout == "200"
    try:
        bl.wait_for(lambda: answers() or not daemon.alive(), 20, "nginx to answer", interval=0.2)
        if not daemon.alive():
            raise SystemExit("nginx died:\n%s" % daemon.tail())
    except BaseException:
        daemon.stop()
        raise
    return daemon


def _size(value: str, unit: str) -> float:
    """Bytes of a wrk size (wrk counts in powers of 1024)."""
    return float(value) * {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[unit]


def _duration_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(pair: bl.NamespacePair, script: str, clients: int, seconds: int) -> Dict[str, Any]:
    argv = ["wrk", "-t", "2", "-c", str(clients), "-d", "%ds" % seconds, "--timeout", "60s", "--latency",
            "-s", script, "http://%s/" % bl.SERVER_ADDRESS]
    done = bl.run(pair.in_client(argv), check=False, timeout=seconds + 120)
    out = done.stdout
    transfer = re.search(r"^Transfer/sec:\s+([0-9.]+)([KMG]?B)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s|m)\s*$", out, re.M)
    p50 = re.search(r"^\s+50%\s+([0-9.]+)(us|ms|s|m)\s*$", out, re.M)
    requests = re.search(r"^\s+(\d+) requests in ([0-9.]+)(s|m)", out, re.M)
    if done.returncode != 0 or not (transfer and p99 and p50 and requests):
        raise SystemExit("wrk failed (exit %d):\n%s\n%s" % (done.returncode, out[-3000:], done.stderr[-2000:]))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"clients": clients, "mb_s": _size(transfer.group(1), transfer.group(2)) / 1e6,
            "p99_ms": _duration_ms(p99.group(1), p99.group(2)), "p50_ms": _duration_ms(p50.group(1), p50.group(2)),
            "requests": int(requests.group(1)), "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else ""}


RAW_SERVER = r"""
import os, socket, sys, time
path, address, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, 9999)); listener.listen(1); print("ready", flush=True)
conn, _ = listener.accept()
deadline = time.monotonic() + seconds
with open(path, "rb") as f:
    while time.monotonic() < deadline:
        conn.sendfile(f, 0)
conn.close()
"""

RAW_CLIENT = r"""
import socket, sys, time
sock = socket.create_connection((sys.argv[1], 9999))
buffer = bytearray(1 << 20); view = memoryview(buffer); total = 0
started = time.monotonic()
while True:
    n = sock.recv_into(view)
    if not n:
        break
    total += n
print(total, time.monotonic() - started)
"""


def raw_copy(pair: bl.NamespacePair, work: str, seconds: int) -> float:
    """MB/s of one TCP stream over the same veth: sendfile() of a 256 MiB file, discarded on arrival."""
    big = os.path.join(work, "big")
    if not os.path.exists(big):
        with open(big, "wb") as handle:
            for _mebibyte in range(256):
                handle.write(os.urandom(1 << 20))
    server = bl.Daemon(pair.in_server([sys.executable, "-c", RAW_SERVER, big, bl.SERVER_ADDRESS, str(seconds)]),
                       os.path.join(work, "raw-server.log"))
    try:
        bl.wait_for(lambda: b"ready" in open(server.log_path, "rb").read() or not server.alive(), 10, "raw server")
        done = bl.run(pair.in_client([sys.executable, "-c", RAW_CLIENT, bl.SERVER_ADDRESS]), timeout=seconds + 60)
        total, elapsed = done.stdout.split()
        return int(total) / float(elapsed) / 1e6
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="50,200")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each config per client count")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk; scripts/setup.sh installs it)")
    results: List[Dict[str, Any]] = []
    raw: List[float] = []
    with tempfile.TemporaryDirectory(prefix="cpxe-bench-http-") as work, bl.NamespacePair("http") as pair:
        sizes = boot_tree(work)
        script = os.path.join(work, "storm.lua")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(WRK_SCRIPT)
        confs = {"ours": nginx_conf(work, "ours", generated_site(work)), "stock": nginx_conf(work, "stock", stock_site(work))}
        print("files: %s; load %s" % (sizes, bl.load()), file=sys.stderr)
        raw.append(raw_copy(pair, work, args.seconds))
        print("raw copy: %.0f MB/s, load %s" % (raw[-1], bl.load()), file=sys.stderr, flush=True)
        for clients in (int(c) for c in args.clients.split(",")):
            for round_no in range(args.rounds):
                for name in (("ours", "stock") if round_no % 2 == 0 else ("stock", "ours")):
                    daemon = start_nginx(pair, confs[name])
                    try:
                        cpu_before = daemon.tree_cpu_seconds()
                        row = wrk(pair, script, clients, args.seconds)
                        cpu = daemon.tree_cpu_seconds() - cpu_before
                    finally:
                        daemon.stop()
                    # nginx's own CPU (workers, kernel time of sendfile included) per MB: what the
                    # site costs, steadier than MB/s while wrk and the neighbours share the cores.
                    row.update(config=name, round=round_no + 1, load=bl.load(), nginx_cpu_s=cpu,
                               mb_per_cpu_s=row["mb_s"] * args.seconds / cpu if cpu else 0.0)
                    results.append(row)
                    print("%-5s c=%3d round %d: %7.1f MB/s (%5.0f per nginx CPU-s) p50 %7.1f ms p99 %7.1f ms, "
                          "%d requests, non-2xx %d, errors %s, load %s" % (
                              name, clients, round_no + 1, row["mb_s"], row["mb_per_cpu_s"], row["p50_ms"],
                              row["p99_ms"], row["requests"], row["non_2xx"], row["socket_errors"] or "none",
                              row["load"]),
                          file=sys.stderr, flush=True)
        raw.append(raw_copy(pair, work, args.seconds))
        print("raw copy: %.0f MB/s, load %s" % (raw[-1], bl.load()), file=sys.stderr, flush=True)
    raw_mb_s = bl.median(raw)
    print("%8s %6s %10s %10s %10s %12s %14s %12s" % ("clients", "config", "MB/s", "p99 (ms)", "% of raw", "vs stock",
                                                     "MB/nginx CPU-s", "vs stock"))
    summary = []
    for clients in sorted({r["clients"] for r in results}):
        medians = {}
        for name in ("ours", "stock"):
            runs = [r for r in results if r["clients"] == clients and r["config"] == name]
            medians[name] = {key: bl.median([r[key] for r in runs]) for key in ("mb_s", "p99_ms", "mb_per_cpu_s")}
        for name in ("ours", "stock"):
            row = medians[name]
            print("%8d %6s %10.1f %10.1f %9.0f%% %11.2fx %14.0f %11.2fx" % (
                clients, name, row["mb_s"], row["p99_ms"], 100 * row["mb_s"] / raw_mb_s,
                row["mb_s"] / medians["stock"]["mb_s"], row["mb_per_cpu_s"],
                row["mb_per_cpu_s"] / medians["stock"]["mb_per_cpu_s"]))
        summary.append({"clients": clients, **medians})
    print("raw copy (one stream, median of %d): %.1f MB/s" % (len(raw), raw_mb_s))
    print("date %s, load %s" % (bl.stamp(), bl.load()))
    bl.write_json(args.json, {"runs": results, "raw_mb_s": raw, "summary": summary, "date": bl.stamp()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
