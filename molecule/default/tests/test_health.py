# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""/healthz tells the truth (issue 18): answered by centra-pxe-health from the live state.

Each component is broken in turn on the converged host (its DHCP server, tftpd-hpa, the
lifecycle service, the centra_pxe nftables table); /healthz must answer 503 naming it
within a few seconds, and 200 again once it is restored. Every test restores what it
broke, also when it fails (try/finally), so the host stays converged for the others.
The default (Kea) and isc scenarios both run these.
"""

from __future__ import annotations

import json
import time

import pytest
from labkit.client import lab_exec, pxe_shell
from labkit.facts import lab_facts

LAB = lab_facts()
HTTP_BASE = LAB.http_base
DHCP_SERVICE = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server"}
COMPONENTS = {"dhcp", "tftp", "http", "lifecycle", "firewall", "disk"}
# The service caches a result for 2 s; a check takes well under a second.
FLIP_SECONDS = 8
# Kea and dhcpd may take a few seconds to open their sockets after a start.
RECOVER_SECONDS = 45


def healthz() -> tuple[int, dict]:
    run = lab_exec("curl", "-s", "--max-time", "10", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                   HTTP_BASE + "/healthz", check=False)
    body, _sep, code = run.stdout.rpartition("\n")
    try:
        return int(code or 0), json.loads(body)
    except ValueError:
        return int(code or 0), {"raw": body[:500]}


def wait_for(predicate, seconds: float) -> tuple[float, int, dict]:
    """Poll /healthz until predicate(code, body) holds; (seconds it took, code, body)."""
    start = time.monotonic()
    code, body = healthz()
    while not predicate(code, body):
        if time.monotonic() - start > seconds:
            raise AssertionError("after %.0f s /healthz still answers %d %s" % (seconds, code, json.dumps(body)[:2000]))
        time.sleep(0.5)
        code, body = healthz()
    return time.monotonic() - start, code, body


def healthy(code: int, body: dict) -> bool:
    return code == 200 and body.get("status") == "ok"


def faults(backend: str) -> dict[str, tuple[str, str]]:
    """component -> (how to break it, how to restore it) on the PXE host."""
    dhcp = DHCP_SERVICE[backend]
    return {
        "dhcp": ("systemctl stop %s" % dhcp, "systemctl start %s" % dhcp),
        "tftp": ("systemctl stop tftpd-hpa", "systemctl start tftpd-hpa"),
        "lifecycle": ("systemctl stop centra-pxe-lifecycle", "systemctl start centra-pxe-lifecycle"),
        "firewall": ("nft delete table inet centra_pxe", "systemctl restart centra-pxe-firewall"),
    }


def test_healthz_is_live_and_keeps_the_old_fields(host):
    _took, code, body = wait_for(healthy, RECOVER_SECONDS)
    assert code == 200 and body["failing"] == []
    assert set(body["components"]) == COMPONENTS
    assert all(c["ok"] for c in body["components"].values()), body["components"]
    # The fields of the static document it replaces stay.
    assert len(body["config_version"]) == 64 and body["nodes"] == len(LAB.nodes)
    assert isinstance(body["assets"], dict) and body["profiles"]
    for name in ("dhcp", "lifecycle", "http"):
        assert body["components"][name]["plan"] == body["config_version"], name
    assert body["components"]["firewall"]["table"] == "inet centra_pxe"


@pytest.mark.parametrize("component", ["dhcp", "tftp", "lifecycle", "firewall"])
def test_healthz_flips_when_a_component_fails_and_back(host, backend, component):
    wait_for(healthy, RECOVER_SECONDS)
    breaking, restoring = faults(backend)[component]
    try:
        pxe_shell(breaking)
        took, code, body = wait_for(lambda c, b: c == 503 and component in b.get("failing", []), FLIP_SECONDS)
        assert body["status"] == "failing" and body["failing"] == [component], body["failing"]
        assert not body["components"][component]["ok"]
        print("HEALTH %s" % json.dumps({"component": component, "backend": backend, "flip_seconds": round(took, 1),
                                        "detail": body["components"][component]}))
    finally:
        pxe_shell(restoring)
    took, _code, _body = wait_for(healthy, RECOVER_SECONDS)
    print("HEALTH %s" % json.dumps({"component": component, "backend": backend, "recover_seconds": round(took, 1)}))


def test_the_dhcp_server_serving_another_plan_fails_dhcp(host, backend):
    """The digest check, not only the unit state: a configuration of another plan fails."""
    wait_for(healthy, RECOVER_SECONDS)
    if backend == "kea":
        config = "/etc/kea/kea-dhcp4.conf"
        edit = ("sed -i 's/\"plan\": \"\\([0-9a-f]\\{60\\}\\)[0-9a-f]\\{4\\}\"/\"plan\": \"\\1beef\"/' %s "
                "&& systemctl reload kea-dhcp4-server" % config)
        restore = "cp -p %s.health-test %s && systemctl reload kea-dhcp4-server" % (config, config)
    else:
        config = "/etc/dhcp/dhcpd.conf"
        # A change after dhcpd started: its running configuration is not the file's.
        edit = "touch %s" % config
        restore = "cp -p %s.health-test %s && systemctl restart isc-dhcp-server" % (config, config)
    pxe_shell("cp -p %s %s.health-test" % (config, config))
    try:
        pxe_shell(edit)
        _took, code, body = wait_for(lambda c, b: c == 503 and "dhcp" in b.get("failing", []), FLIP_SECONDS)
        assert body["failing"] == ["dhcp"], body
    finally:
        pxe_shell(restore)
        pxe_shell("rm -f %s.health-test" % config)
    wait_for(healthy, RECOVER_SECONDS)


def test_healthz_is_502_while_the_health_service_is_down(host):
    wait_for(healthy, RECOVER_SECONDS)
    try:
        pxe_shell("systemctl stop centra-pxe-health")
        code, _body = healthz()
        assert code == 502
    finally:
        pxe_shell("systemctl start centra-pxe-health")
    wait_for(healthy, RECOVER_SECONDS)


def test_a_flood_of_healthz_requests_is_limited(host):
    wait_for(healthy, RECOVER_SECONDS)
    time.sleep(3)  # let the per-address bucket refill
    run = lab_exec("sh", "-c", "for i in $(seq 40); do curl -s -o /dev/null -w '%%{http_code}\\n' %s/healthz; done"
                   % HTTP_BASE)
    codes = run.stdout.split()
    assert len(codes) == 40
    assert codes.count("200") >= 10 and codes.count("429") >= 1 and set(codes) <= {"200", "429"}, codes


def test_the_health_service_runs_hardened(host):
    service = host.service("centra-pxe-health")
    assert service.is_running and service.is_enabled
    show = host.run("systemctl show centra-pxe-health -p User -p CapabilityBoundingSet -p AmbientCapabilities "
                    "-p NoNewPrivileges -p RestrictAddressFamilies -p ProtectSystem -p MainPID")
    props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line)
    assert props["User"] == "centra-pxe-health"
    assert props["CapabilityBoundingSet"] == props["AmbientCapabilities"] == "cap_net_admin"
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_NETLINK"}
    owner = host.run("stat -c %%U /proc/%s" % props["MainPID"]).stdout.strip()
    assert owner == "centra-pxe-health"
    socket = host.file("/run/centra-pxe-health/health.sock")
    assert socket.is_socket
