# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hardening (issue 18): fair service under one greedy address, a firewall that every
nftables action leaves in place, no version disclosure, logs as private as Debian's.

One lab address (a second address of the lab side of the bridge, in the lab namespace
only) opens 2,000 slow connections for a bounded time while the lab's own address
fetches /boot.ipxe and a real machine boots. The counts are printed (pytest -s, or
-rP) as "HARDENING {json}".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import yaml
from labkit.client import LAB_PY, boot, booted_profile, lab_exec, lab_netns, pxe_shell, unit_state
from labkit.common import BRIDGE
from labkit.facts import PROJECT, lab_facts

LAB = lab_facts()
HTTP_BASE = LAB.http_base
SERVER_ADDRESS = LAB.server_address
HTTP_PORT = int(re.search(r":(\d+)$", HTTP_BASE).group(1)) if re.search(r":(\d+)$", HTTP_BASE) else 80
# The greedy client: an address of the lab subnet (allowed by the site) that no node,
# pool or PXE host uses.
GREEDY_ADDRESS = "192.0.2.251"
SLOW_CONNECTIONS = 2000
SITE_LOGS = ("/var/log/nginx/centra-pxe.access.log", "/var/log/nginx/centra-pxe.error.log")
ERROR_LOG = SITE_LOGS[1]

with open("%s/roles/pxe_http/defaults/main.yml" % PROJECT, encoding="utf-8") as _handle:
    HTTP_DEFAULTS = yaml.safe_load(_handle)

# Runs on the lab network (lab.py exec): holds up to COUNT connections from SOURCE, each
# with an unfinished request header, opening new ones as the server closes them, until
# SECONDS have passed or its stdin closes. Prints READY once it has tried COUNT, then
# its counts as JSON.
SLOW_CLIENT = r"""
import json, resource, selectors, socket, sys, time
source, server, port, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
selector = selectors.DefaultSelector()
selector.register(sys.stdin, selectors.EVENT_READ, None)
held = set()
counts = {"attempts": 0, "connected": 0, "refused": 0, "timeouts": 0, "closed_by_server": 0, "peak_held": 0}
partial = b"GET /boot.ipxe HTTP/1.1\r\nHost: " + server.encode() + b"\r\nX-Slow: "
deadline = time.monotonic() + seconds
ready = stop = False
while not stop and time.monotonic() < deadline:
    for _ in range(count - len(held)):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(0.5)
        counts["attempts"] += 1
        try:
            sock.connect((server, port))
            sock.sendall(partial)
        except socket.timeout:
            counts["timeouts"] += 1
            sock.close()
            continue
        except OSError:
            counts["refused"] += 1
            sock.close()
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, "held")
        held.add(sock)
        counts["connected"] += 1
        counts["peak_held"] = max(counts["peak_held"], len(held))
    if not ready:
        print("READY", flush=True)
        ready = True
    for key, _events in selector.select(timeout=1.0):
        if key.data is None:
            stop = not sys.stdin.readline()
            continue
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data or data.startswith(b"HTTP/"):
            selector.unregister(key.fileobj)
            key.fileobj.close()
            held.discard(key.fileobj)
            counts["closed_by_server"] += 1
for sock in held:
    sock.close()
print(json.dumps(counts), flush=True)
"""


def report(what: str, data: dict) -> None:
    print("HARDENING %s" % json.dumps({"what": what, **data}, sort_keys=True))


def curl(url: str, *options: str) -> tuple[int, str, str]:
    """(status, headers, body) of one request from the lab's own address."""
    run = lab_exec("curl", "-s", "--max-time", "10", "-D", "/dev/stderr", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                   *options, url, check=False)
    body, _sep, code = run.stdout.rpartition("\n")
    return int(code or 0), run.stderr, body


@pytest.fixture
def greedy_address():
    """GREEDY_ADDRESS on the lab side of the bridge, for the test's duration."""
    def address(action: str, check: bool) -> None:
        subprocess.run(["ip", "-n", lab_netns(), "addr", action, "%s/24" % GREEDY_ADDRESS, "dev", BRIDGE],
                       capture_output=True, text=True, check=check)

    address("del", False)  # whatever an interrupted run left
    address("add", True)
    try:
        yield GREEDY_ADDRESS
    finally:
        address("del", False)


def slow_client(count: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, LAB_PY, "exec", "--", sys.executable, "-c", SLOW_CLIENT, GREEDY_ADDRESS,
                             SERVER_ADDRESS, str(HTTP_PORT), str(count), str(seconds)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def counts_of(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def fetch_boot_script(attempts: int = 3) -> list[int]:
    """GET /boot.ipxe from the lab's own address as iPXE does it: a failed fetch is tried
    again (at most ATTEMPTS, 10 s each: on this shared 2-core machine one fetch in a
    run was seen answered by nginx just as curl's 10 s ran out). Returns the codes."""
    codes = []
    for _attempt in range(attempts):
        code, headers, body = curl(HTTP_BASE + "/boot.ipxe")
        codes.append(code)
        if code == 200 and body.startswith("#!ipxe"):
            return codes
    raise AssertionError("GET /boot.ipxe from the lab address failed %d times: %s %s" % (attempts, codes, headers[-500:]))


# --- fair service -----------------------------------------------------------------------


def test_nginx_is_sized_from_the_budget(host):
    budget = int(HTTP_DEFAULTS["pxe_http_budget_machines"]) * int(HTTP_DEFAULTS["pxe_http_budget_connections_per_machine"])
    connections = max(1024, budget * 2)
    dump = host.run("nginx -T")
    assert dump.rc == 0, dump.stderr
    assert re.search(r"^\s*worker_connections %d;" % connections, dump.stdout, re.M), "worker_connections"
    assert re.search(r"^worker_rlimit_nofile %d;" % (connections * 2 + 64), dump.stdout, re.M), "worker_rlimit_nofile"
    # The workers really got the file limit (a container without the hard limit would not).
    workers = host.run("pgrep -f 'nginx: worker process'").stdout.split()
    assert workers
    for pid in workers:
        limits = host.run("cat /proc/%s/limits" % pid).stdout
        assert re.search(r"^Max open files\s+%d\s+%d" % (connections * 2 + 64, connections * 2 + 64), limits, re.M), limits


def test_one_address_is_held_to_its_request_rate(greedy_address):
    """A burst well over pxe_http_address_burst from one address gets 429s; another
    address is served meanwhile and after."""
    count = int(HTTP_DEFAULTS["pxe_http_address_burst"]) * 4
    argv = ["curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", "10", "--interface", greedy_address,
            "-w", "%{http_code}\n"]
    for _connection in range(count):
        argv += ["-o", "/dev/null", HTTP_BASE + "/boot.ipxe"]
    codes = lab_exec(*argv, check=False).stdout.split()
    assert len(codes) == count, codes
    assert codes.count("429") > 0 and codes.count("200") >= int(HTTP_DEFAULTS["pxe_http_address_burst"]), codes
    assert set(codes) <= {"200", "429"}, codes
    code, _headers, body = curl(HTTP_BASE + "/boot.ipxe")
    assert code == 200 and body.startswith("#!ipxe")
    report("request_rate", {"requests": count, "ok": codes.count("200"), "limited": codes.count("429")})


def test_slow_connections_from_one_address_do_not_stop_other_boots(greedy_address):
    """2,000 unfinished requests from one address: other addresses still fetch boot.ipxe,
    a real machine still boots, and nginx never runs out of connections."""
    marker = int(pxe_shell("wc -l < %s" % ERROR_LOG).stdout.strip() or 0)
    # Bounded: it stops when its stdin closes below, or after 240 s whatever happens.
    slow = slow_client(SLOW_CONNECTIONS, 240)
    try:
        assert slow.stdout.readline().strip() == "READY", slow.stderr.read() if slow.poll() is not None else "no READY"
        fetches: list[list[int]] = []
        for _try in range(5):
            fetches.append(fetch_boot_script())
            time.sleep(1)
        node = next(n for n in LAB.nodes.values() if n.boot == "netboot")
        result = boot(node.macs[0], "bios")
        assert booted_profile(result["line"]) == node.profile
        # Still under attack after the boot (the client holds its connections until told).
        assert slow.poll() is None, "the slow client ended before the boot did"
        fetches.append(fetch_boot_script())
    finally:
        try:
            out, err = slow.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            slow.kill()
            out, err = slow.communicate()
    counts = counts_of(out)
    # The attack happened: the client tried every connection.
    assert counts["attempts"] >= SLOW_CONNECTIONS, (counts, err[-2000:])
    errors = pxe_shell("tail -n +%d %s" % (marker + 1, ERROR_LOG)).stdout
    assert "worker_connections are not enough" not in errors, errors[-2000:]
    report("slow_connections", {"client": greedy_address, **counts, "boot_seconds": result["seconds"],
                                "other_fetches": fetches})


# --- no version disclosure ----------------------------------------------------------------


def test_no_version_in_any_header_or_error_page(host):
    cases = {
        "/boot.ipxe": 200,
        "/no-such-file": 404,
        "/api/unknown": 404,
    }
    seen = {}
    for path, expected in cases.items():
        code, headers, body = curl(HTTP_BASE + path)
        seen[path] = code
        assert code == expected, (path, code)
        server = re.findall(r"^Server:\s*(.*?)\s*$", headers, re.M | re.I)
        assert server == ["nginx"], (path, server)
        assert not re.search(r"nginx/\d", headers + body), (path, headers, body[:300])
    # A request nginx refuses before it picks a location (HTTP/1.1 without Host: 400,
    # nginx's own error page).
    code, headers, body = curl(HTTP_BASE + "/boot.ipxe", "-H", "Host:")
    seen["no Host"] = code
    assert code == 400, (code, headers)
    assert not re.search(r"nginx/\d", headers + body), (headers, body[:300])
    # HTTPS: server_tokens is set for the whole http block, so every server and listen
    # (the TLS one too) has it. The lab scenario runs without a certificate, so this part
    # is checked in the running configuration, not over TLS (the golden lab-tls case has
    # the TLS listen in the same server).
    # The http-level file (conf.d, included in the http block) has it, and nginx runs it.
    dump = host.run("nginx -T").stdout
    http_part = dump.split("# configuration file /etc/nginx/conf.d/centra-pxe-lifecycle.conf:", 1)[-1]
    http_part = http_part.split("# configuration file ", 1)[0]
    assert re.search(r"^server_tokens off;", http_part, re.M), http_part[:2000]
    assert re.search(r"^\s*include /etc/nginx/conf\.d/\*\.conf;", dump, re.M)
    report("server_tokens", {"codes": seen})


# --- logs -----------------------------------------------------------------------------------


def test_site_logs_are_as_private_as_debians_also_after_logrotate(host):
    debian = host.file("/var/log/nginx/access.log")
    expected = (debian.user, debian.group, debian.mode)
    assert expected == ("www-data", "adm", 0o640), expected

    def modes() -> dict:
        return {path: (host.file(path).user, host.file(path).group, host.file(path).mode) for path in SITE_LOGS}

    before = modes()
    assert all(state == expected for state in before.values()), before
    # Debian's rule (nginx-common's /etc/logrotate.d/nginx) covers them, and recreates
    # each log as it creates its own.
    rule = host.file("/etc/logrotate.d/nginx").content_string
    assert rule.startswith("/var/log/nginx/*.log {"), rule
    create = re.search(r"^\s*create (\d+) (\S+) (\S+)$", rule, re.M)
    assert create and (create.group(2), create.group(3), int(create.group(1), 8)) == expected, rule
    postrotate = re.search(r"postrotate\n\s*(.*?)\n\s*endscript", rule, re.S).group(1).strip()
    # The lab's PXE host has no logrotate package (nginx does not pull it in): do what
    # the rule does - move each log, create it as the rule says, run its postrotate.
    for path in SITE_LOGS:
        rotate = host.run("mv {p} {p}.1 && install -m {m} -o {o} -g {g} /dev/null {p}".format(
            p=path, m=create.group(1), o=create.group(2), g=create.group(3)))
        assert rotate.rc == 0, rotate.stderr
    reopen = host.run(postrotate.replace(">/dev/null 2>&1", ""))
    assert reopen.rc == 0, (postrotate, reopen.stdout, reopen.stderr)
    # nginx writes to the new file, which keeps its mode and owner.
    deadline = time.monotonic() + 10
    while host.file(SITE_LOGS[0]).size == 0 and time.monotonic() < deadline:
        curl(HTTP_BASE + "/boot.ipxe")
        time.sleep(0.5)
    assert host.file(SITE_LOGS[0]).size > 0, "nginx did not reopen its logs"
    after = modes()
    assert all(state == expected for state in after.values()), after
    report("logs", {"expected": list(expected[:2]) + ["%o" % expected[2]], "postrotate": postrotate})


# --- the firewall ---------------------------------------------------------------------------

# In this order: each starts from the state the one before left (nftables.service
# inactive, as on a converged host, for the first).
NFTABLES_ACTIONS = [
    ["systemctl start nftables"],
    ["systemctl reload nftables"],
    ["systemctl restart nftables"],
    ["nft flush ruleset", "systemctl reload nftables"],
    ["nft flush ruleset", "systemctl restart nftables"],
    ["systemctl stop nftables"],
    ["nft flush ruleset", "systemctl start nftables"],
    ["systemctl stop nftables"],
]


def centra_chain() -> str:
    run = pxe_shell("nft -s list chain inet centra_pxe input", check=False)
    return run.stdout if run.returncode == 0 else ""


def test_the_table_survives_every_nftables_action():
    was_active = unit_state("nftables")["ActiveState"] == "active"
    reference = centra_chain()
    assert "udp dport { 67, 69 }" in reference, reference
    lost = []
    try:
        for steps in NFTABLES_ACTIONS:
            for step in steps:
                pxe_shell(step)
            if centra_chain() != reference:
                lost.append(" && ".join(steps))
            assert unit_state("centra-pxe-firewall")["ActiveState"] == "active", steps
    finally:
        pxe_shell("systemctl %s nftables" % ("start" if was_active else "stop"), check=False)
    assert not lost, "the centra_pxe table was gone or changed after: %s" % lost
    assert centra_chain() == reference
    report("nftables_actions", {"actions": [" && ".join(s) for s in NFTABLES_ACTIONS], "lost_after": lost})


def test_the_table_comes_back_at_boot():
    """What brings it back after a reboot: the unit is enabled and ordered after
    nftables.service, whose own start reloads the table too. (The reliability tests'
    clean and power-pulled restarts of the PXE host check the table is there.)"""
    state = pxe_shell("systemctl show -p UnitFileState -p WantedBy -p After centra-pxe-firewall").stdout
    assert "UnitFileState=enabled" in state and "multi-user.target" in state and "nftables.service" in state, state
    dropin = pxe_shell("systemctl cat nftables").stdout
    assert re.search(r"^ExecStartPost=/usr/sbin/nft -f /etc/nftables.d/centra-pxe.nft$", dropin, re.M), dropin


def test_one_address_cannot_hold_more_http_connections_than_the_cap(greedy_address):
    """The firewall's per-address cap bounds what nginx's limit_conn cannot count
    (connections that have not sent a whole request): one pass of twice the cap, then
    the client lets go (its stdin is closed at once)."""
    cap = int(re.search(r"ct count over (\d+)", pxe_shell("nft list chain inet centra_pxe input").stdout).group(1))
    slow = slow_client(cap * 2, 60)
    out, err = slow.communicate(input="", timeout=120)
    assert slow.returncode == 0, err[-2000:]
    counts = counts_of(out)
    assert counts["attempts"] == cap * 2, (counts, err[-2000:])
    # The property: never more than the cap held at once, and the firewall refused the
    # rest. On a loaded machine some attempts time out instead of being refused (seen:
    # 27 held, 62 refused, 39 timed out of 128), so "refused" is bounded by what did not connect.
    assert counts["peak_held"] <= cap, counts
    assert counts["refused"] >= 1 and counts["connected"] + counts["refused"] <= counts["attempts"], counts
    code, _headers, _body = curl(HTTP_BASE + "/boot.ipxe")
    assert code == 200
    report("connection_cap", {"cap": cap, **counts})
