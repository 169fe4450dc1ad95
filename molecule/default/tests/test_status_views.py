# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot trace's receiving end and its views (issue 13, docs/status.md) on the
converged host, both backends: datagrams sent to the trace socket on the PXE host (as
the feeders send them: bare JSON, and syslog-framed by util-linux logger) show up in
/api/v1/nodes/<mac>/events in order, an unknown machine in /api/v1/discovered and in
status.yml's snippet, an installer booted long ago without a report as stalled;
/metrics passes promtool and counts the boot; /status renders in a real headless
chromium with no console errors and no request beyond the page (screenshot kept in
tests/output/status.png). The feeders themselves and real machine boots are tested
with them (helper trace's tests)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac
from labkit.client import lab_exec, pxe_shell
from labkit.facts import LAB_INVENTORY, PROJECT, ansible_command, lab_facts, scenario_inventory

LAB = lab_facts()
HTTP_BASE = LAB.http_base
TRACE_SOCKET = "/run/centra-pxe-lifecycle/trace.sock"
# node04's second NIC: the other tests boot node04 from its first one.
NODE, MAC, NODE_IP = "node04", "52:54:00:00:04:02", "192.0.2.14"
# An unknown machine per run (locally administered), so that runs never meet.
UNKNOWN = "02:00:5e:%02x:%02x:%02x" % (random.randrange(256), random.randrange(256), random.randrange(256))
OUTPUT = os.path.join(PROJECT, "tests", "output")

SENDER = r"""
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    sock.sendto(line.strip().encode(), sys.argv[1])
"""


def get(path: str) -> str:
    return lab_exec("curl", "-sS", "-f", "--max-time", "30", HTTP_BASE + path).stdout


def inject(events: list[dict]) -> None:
    """Send each event as one datagram from the PXE host (root may write to the socket)."""
    lines = "\n".join(json.dumps(e) for e in events) + "\n"
    pxe_shell("printf '%%s' %s | python3 -c %s %s" % (shlex_quote(lines), shlex_quote(SENDER), TRACE_SOCKET))


def shlex_quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _if_stalled(node: dict):
    return node if node["stalled"] else None


def wait_for(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture(scope="module")
def traced():
    """One boot's events for node04's second NIC, an installer that booted 3 hours ago
    and never reported, and an unknown machine; returns (start time, metrics before)."""
    before = get("/metrics")
    start = time.time()
    inject([
        {"src": "dhcp", "type": "discover", "mac": format_mac(MAC, "hyphen").upper(), "arch": 0, "ts": start},
        {"src": "dhcp", "type": "ack", "mac": MAC, "ip": NODE_IP, "arch": 0, "boot_file": "undionly.kpxe",
         "server": LAB.backend, "ts": start + 0.1},
        {"src": "tftp", "type": "rrq", "ip": NODE_IP, "file": "undionly.kpxe", "ts": start + 0.2},
        {"src": "dhcp", "type": "ack", "mac": MAC, "ip": NODE_IP, "arch": 0, "boot_file": HTTP_BASE + "/boot.ipxe",
         "ts": start + 0.3},
        {"src": "http", "type": "get", "ip": NODE_IP, "uri": "/boot.ipxe", "status": 200, "bytes": 300, "ts": start + 0.4},
        {"src": "http", "type": "get", "ip": NODE_IP, "uri": "/nodes/52-54-00-00-04-02.ipxe", "status": 200,
         "ts": start + 0.5},
        {"src": "http", "type": "get", "ip": NODE_IP, "uri": "/profiles/worker/vmlinuz", "status": 200,
         "bytes": 5000000, "seconds": 0.8, "ts": start + 1.5},
        {"src": "dhcp", "type": "discover", "mac": UNKNOWN, "arch": 7, "vendor": "PXEClient:Arch:00007:UNDI:003016",
         "ts": start + 2},
        {"src": "dhcp", "type": "offer", "mac": UNKNOWN, "ip": "192.0.2.150", "arch": 7, "ts": start + 2.1},
    ])
    # syslog-framed, as nginx's access_log syslog: and logger send it
    pxe_shell("logger --socket-errors=off -u %s -d -t nginx %s" % (TRACE_SOCKET, shlex_quote(json.dumps(
        {"src": "http", "type": "get", "ip": NODE_IP, "uri": "/profiles/worker/initrd", "status": 200,
         "bytes": 20000000, "seconds": 1.2, "ts": start + 3}))))
    # malformed and oversized datagrams: dropped and counted, nothing else
    pxe_shell("python3 -c %s %s" % (shlex_quote(
        "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
        "[s.sendto(d, sys.argv[1]) for d in (b'garbage', b'{' * 9000, b'{\"src\": \"dhcp\", \"mac\": \"' + b'f' * 5000 + b'\"}')]"),
        TRACE_SOCKET))
    wait_for(lambda: [e for e in events_since(start) if e["kind"] == "initrd"], "the initrd event")
    return start, before


def events_since(start: float) -> list[dict]:
    answer = json.loads(get("/api/v1/nodes/%s/events" % format_mac(MAC, "bare")))
    assert answer["node"] == NODE
    return [e for e in answer["events"] if e["ts"] >= start - 0.01 and e["src"] != "lifecycle"]


def test_the_trace_socket_is_the_contracts():
    mode = pxe_shell("stat -c '%%a %%G %%F' %s" % TRACE_SOCKET).stdout.split(None, 2)
    assert mode[:2] == ["660", "centra-pxe-trace"] and mode[2].strip() == "socket"


def test_a_boot_is_traced_in_order(traced):
    start, _before = traced
    events = events_since(start)
    shown = json.loads(get("/api/v1/nodes/" + NODE))
    # the script nginx serves it: by its state when the event was recorded (unchanged since)
    script = "node_script" if shown["boot"] != "install" else \
        "local_boot_script" if shown["state"] == "installed" else "install_script"
    assert [e["kind"] for e in events] == ["dhcp_discover", "dhcp_ack", "loader", "dhcp_ack", "entry_script",
                                           script, "kernel", "initrd"]
    kernel = events[6]
    assert kernel["bytes"] == 5000000 and kernel["seconds"] == 0.8 and kernel["ip"] == NODE_IP
    assert events[1]["arch"] == 0 and events[1]["firmware"] == "bios"


def test_an_unknown_machine_is_discovered(traced):
    found = {d["mac"]: d for d in json.loads(get("/api/v1/discovered"))["discovered"]}
    assert UNKNOWN in found, "no %s in /api/v1/discovered" % UNKNOWN
    assert found[UNKNOWN]["arch"] == 7 and found[UNKNOWN]["firmware"] == "efi64"
    assert found[UNKNOWN]["ip"] == "192.0.2.150" and found[UNKNOWN]["count"] == 2
    assert not {n.macs[0] for n in LAB.nodes.values()} & set(found)


def test_an_installer_that_never_reports_is_stalled(traced):
    armed = [n["name"] for n in json.loads(get("/api/v1/nodes"))["nodes"]
             if n["state"] == "install" and n["name"] in LAB.nodes and LAB.nodes[n["name"]].ip]
    if not armed:
        pytest.skip("no node is armed for install (the earlier tests installed them all): only an armed node can stall")
    name = armed[0]
    node_ip, profile = LAB.nodes[name].ip, LAB.nodes[name].profile
    # Its kernel fetched 3 hours ago (pxe_lifecycle_stall_after is 2 hours), no report since.
    inject([{"src": "http", "type": "get", "ip": node_ip, "uri": "/profiles/%s/vmlinuz" % profile, "status": 200,
             "ts": time.time() - 3 * 3600}])
    shown = wait_for(lambda: _if_stalled(json.loads(get("/api/v1/nodes/" + name))), "stalled")
    assert shown["display_state"] == "stalled" and shown["state"] == "install"
    assert metric(get("/metrics"), "centra_pxe_nodes_stalled") >= 1
    # a new boot into the installer restarts the clock: the node is not left stalled for the other tests
    inject([{"src": "http", "type": "get", "ip": node_ip, "uri": "/profiles/%s/vmlinuz" % profile, "status": 200}])
    wait_for(lambda: not json.loads(get("/api/v1/nodes/" + name))["stalled"], "not stalled")


def test_metrics_pass_promtool_and_count_the_boot(traced, backend):
    _start, before = traced
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing on the controller: scripts/setup.sh installs Debian's prometheus"
    text = get("/metrics")
    with tempfile.NamedTemporaryFile("w", suffix=".prom") as handle:
        handle.write(text)
        handle.flush()
        with open(handle.name) as source:
            run = subprocess.run([promtool, "check", "metrics"], stdin=source, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    boots = 'centra_pxe_boots_total{profile="%s",firmware="bios"}' % LAB.nodes[NODE].profile
    assert metric(text, boots) - metric(before, boots) == 1  # two acks (firmware, iPXE): one boot
    for reason in ("malformed", "oversize", "missing_field"):  # the three bad datagrams, one each
        dropped = 'centra_pxe_trace_events_dropped_total{reason="%s"}' % reason
        assert metric(text, dropped) - metric(before, dropped) == 1, reason
    assert metric(text, "centra_pxe_discovered_machines") >= 1
    assert MAC not in text and UNKNOWN not in text and NODE not in text  # bounded labels only
    if backend == "kea":
        assert metric(text, "centra_pxe_kea_up") == 1, "Kea's control socket did not answer the service"
        assert 'centra_pxe_kea_dhcp4_statistic{name="pkt4-received"}' in text
    else:
        assert "centra_pxe_kea_up" not in text


def test_status_page_in_a_headless_browser(traced):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing on the controller: scripts/setup.sh installs Debian's chromium"
    os.makedirs(OUTPUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="cpxe-chromium-")
    try:
        common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-extensions", "--disable-sync",
                  "--user-data-dir=" + os.path.join(work, "profile"), "--enable-logging=stderr", "--v=0",
                  "--window-size=1280,1400"]
        netlog = os.path.join(work, "netlog.json")
        dom = lab_exec(*common, "--log-net-log=" + netlog, "--dump-dom", HTTP_BASE + "/status", timeout=180)
        shot = lab_exec(*common, "--screenshot=" + os.path.join(OUTPUT, "status.png"), HTTP_BASE + "/status",
                        timeout=180)
        with open(netlog) as handle:
            log = json.load(handle)
        start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        jobs = [(e["params"]["url"], e["params"].get("initiator")) for e in log["events"]
                if e["type"] == start_job and "url" in e.get("params", {})]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    page = dom.stdout
    assert 'id="nodes"' in page and 'id="discovered"' in page
    for name in LAB.nodes:
        assert ">%s<" % name in page, name
    assert UNKNOWN in page
    # Self-contained: no script, no external reference in the DOM; the only request is the page.
    assert "<script" not in page and not re.search(r"(src|href)=", page)
    # The browser's own background requests (no initiator: they go nowhere from the lab
    # network) aside, the navigation is the only request; anything the page itself asked
    # for would carry the page's origin as its initiator.
    assert (HTTP_BASE + "/status", "not an origin") in jobs, jobs
    assert [job for job in jobs if job[1] == HTTP_BASE] == [], jobs
    for log in (dom.stderr, shot.stderr):
        assert "CONSOLE" not in log and "Refused to" not in log, log[-3000:]
    assert os.path.getsize(os.path.join(OUTPUT, "status.png")) > 10000


def test_status_playbook_table_snippet_and_trace(traced):
    command = ["env", "ANSIBLE_CONFIG=%s/ansible.cfg" % PROJECT, "ANSIBLE_NOCOLOR=1",
               "ANSIBLE_COLLECTIONS_PATH=%s/.ansible/collections" % PROJECT,
               ansible_command("ansible-playbook"), "-i", scenario_inventory(), "-i", LAB_INVENTORY,
               os.path.join(PROJECT, "playbooks", "status.yml")]
    # Run from the lab network: the controller there is 192.0.2.1, inside pxe_subnets.
    table = lab_exec(*command, timeout=300, check=False)
    assert table.returncode == 0, table.stdout[-4000:] + table.stderr[-2000:]
    for name in LAB.nodes:
        assert re.search(r'"%s +\S+ +\S+' % name, table.stdout), name
    assert '"    pxe_mac: \\"%s\\""' % UNKNOWN in table.stdout
    assert "arch (option 93): 7 (efi64)" in table.stdout
    trace = lab_exec(*command, "-l", NODE, timeout=300, check=False)
    assert trace.returncode == 0, trace.stdout[-4000:] + trace.stderr[-2000:]
    kinds = re.findall(r"pxe01 +(?:dhcp|tftp|http) +(\S+)", trace.stdout)
    assert {"dhcp_ack", "loader", "entry_script", "kernel", "initrd"} <= set(kinds), trace.stdout[-3000:]
