# SPDX-License-Identifier: GPL-3.0-or-later
"""The health checker's logic against a fake host, and its server on a real Unix socket."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import sys
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROGRAM = os.path.join(ROOT, "roles", "pxe_health", "files", "centra_pxe_health.py")
_spec = importlib.util.spec_from_file_location("centra_pxe_health", PROGRAM)
hc = importlib.util.module_from_spec(_spec)
sys.modules["centra_pxe_health"] = hc
_spec.loader.exec_module(hc)

DIGEST = "a" * 64
OTHER = "b" * 64
PLAN_DOC = {"status": "ok", "config_version": DIGEST, "profiles": ["worker"], "nodes": 3, "assets": {}}


UNITS = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server", "proxy": "centra-pxe-proxydhcp"}
CONFIG_FILES = {"kea": "", "isc": "/etc/dhcp/dhcpd.conf", "proxy": "/etc/centra-pxe-proxydhcp.conf"}


def config(backend="kea", firewall=True):
    return {
        "plan_file": "/srv/http/healthz",
        "dhcp": {"backend": backend, "unit": UNITS[backend],
                 "kea_socket": "/run/kea/sock", "config_file": CONFIG_FILES[backend]},
        "tftp": {"unit": "tftpd-hpa", "config_file": "/etc/default/tftpd-hpa", "root": "/srv/tftp",
                 "files": ["ipxe.efi", "undionly.kpxe"]},
        "lifecycle": {"unit": "centra-pxe-lifecycle", "socket": "/run/lc.sock"},
        "firewall": {"family": "inet", "table": "centra_pxe"} if firewall else None,
        "disk": ["/var/lib"], "min_free_mb": 100, "min_free_percent": 5,
        "cache_seconds": 2, "timeout": 1,
    }


class Stat:
    def __init__(self, free_blocks, blocks=100000, size=4096):
        self.f_bavail, self.f_blocks, self.f_frsize = free_blocks, blocks, size


class FakeHost(hc.Host):
    """Everything healthy unless a test changes it. Times: the monotonic clock is the
    wall clock minus 1000 s; units started at wall 2000, files written at wall 1500."""

    def __init__(self):
        self.unit_state = {n: ("active", "running") for n in
                           ("kea-dhcp4-server", "isc-dhcp-server", "centra-pxe-proxydhcp", "tftpd-hpa", "centra-pxe-lifecycle")}
        self.started = 1000.0  # monotonic seconds (= wall 2000)
        self.mtimes = {}
        self.kea = DIGEST
        self.lifecycle = DIGEST
        self.table = True
        self.files = {"/srv/http/healthz": json.dumps(PLAN_DOC),
                      "/etc/dhcp/dhcpd.conf": "# Managed by centra.pxe. Plan %s.\nauthoritative;\n" % DIGEST,
                      "/etc/centra-pxe-proxydhcp.conf": "# Managed by centra.pxe: changes here are overwritten. Plan %s.\n"
                                                        "port=0\n" % DIGEST}
        self.missing = set()
        self.free_blocks = 50000
        self.calls = 0

    def units(self, names, timeout):
        self.calls += 1
        text = "\n\n".join("Id=%s.service\nLoadState=loaded\nActiveState=%s\nSubState=%s\n"
                           "ExecMainStartTimestampMonotonic=%d" % ((n,) + self.unit_state[n] + (self.started * 1e6,))
                           for n in names)
        return hc.parse_units(text)

    def kea_digest(self, path, timeout, hosts_plan_file=""):
        if isinstance(self.kea, Exception):
            raise self.kea
        return self.kea

    def lifecycle_digest(self, path, timeout):
        if isinstance(self.lifecycle, Exception):
            raise self.lifecycle
        return self.lifecycle

    def nft_table(self, family, name, timeout):
        return self.table

    def read_text(self, path, limit=1 << 20):
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path][:limit]

    def mtime(self, path):
        return self.mtimes.get(path, 1500.0)

    def exists(self, path):
        return os.path.basename(path) not in self.missing

    def statvfs(self, path):
        return Stat(self.free_blocks)

    def monotonic_offset(self):
        return 1000.0


@pytest.mark.parametrize("backend", ["kea", "isc", "proxy"])
def test_all_well_is_ok_and_keeps_the_old_fields(backend):
    result = hc.check(config(backend), FakeHost())
    assert result["status"] == "ok" and result["failing"] == []
    assert result["config_version"] == DIGEST and result["nodes"] == 3 and result["profiles"] == ["worker"]
    assert set(result["components"]) == set(hc.COMPONENTS)
    assert all(c["ok"] for c in result["components"].values())
    assert result["components"]["dhcp"]["plan"] == DIGEST


@pytest.mark.parametrize("unit,component", [("kea-dhcp4-server", "dhcp"), ("tftpd-hpa", "tftp"),
                                            ("centra-pxe-lifecycle", "lifecycle")])
@pytest.mark.parametrize("state", [("inactive", "dead"), ("failed", "failed"), ("activating", "auto-restart")])
def test_a_stopped_unit_fails_its_component(unit, component, state):
    host = FakeHost()
    host.unit_state[unit] = state
    result = hc.check(config(), host)
    assert result["status"] == "failing" and result["failing"] == [component]
    assert result["components"][component]["state"] == "%s (%s)" % state


def test_isc_stopped_fails_dhcp():
    host = FakeHost()
    host.unit_state["isc-dhcp-server"] = ("inactive", "dead")
    assert hc.check(config("isc"), host)["failing"] == ["dhcp"]


def test_a_unit_systemd_does_not_know():
    host = FakeHost()
    host.units = lambda names, timeout: hc.parse_units(
        "Id=kea-dhcp4-server.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n\n"
        "Id=tftpd-hpa.service\nLoadState=loaded\nActiveState=active\nSubState=running\n\n"
        "Id=centra-pxe-lifecycle.service\nLoadState=loaded\nActiveState=active\nSubState=running")
    result = hc.check(config(), host)
    assert result["failing"] == ["dhcp"] and result["components"]["dhcp"]["state"] == "not installed"


def test_systemctl_failing_fails_the_unit_components():
    host = FakeHost()

    def broken(names, timeout):
        raise OSError("systemctl show: Failed to connect to bus")
    host.units = broken
    result = hc.check(config(), host)
    assert result["failing"] == ["dhcp", "tftp", "lifecycle"]
    assert "Failed to connect to bus" in result["components"]["tftp"]["error"]


def test_kea_serving_another_plan_or_not_answering():
    host = FakeHost()
    host.kea = OTHER
    result = hc.check(config(), host)
    assert result["failing"] == ["dhcp"] and "not aaaaaaaaaaaa" in result["components"]["dhcp"]["error"]
    host.kea = ConnectionRefusedError(111, "Connection refused")
    result = hc.check(config(), host)
    assert result["failing"] == ["dhcp"] and "refused" in result["components"]["dhcp"]["error"]


def test_isc_config_written_after_dhcpd_started_is_pending():
    host = FakeHost()
    host.mtimes["/etc/dhcp/dhcpd.conf"] = 2100.0  # wall; dhcpd started at wall 2000
    result = hc.check(config("isc"), host)
    assert result["failing"] == ["dhcp"] and "restart pending" in result["components"]["dhcp"]["error"]


def test_isc_config_of_another_plan():
    host = FakeHost()
    host.files["/etc/dhcp/dhcpd.conf"] = "# Plan %s.\n" % OTHER
    assert hc.check(config("isc"), host)["failing"] == ["dhcp"]


def test_tftp_config_changed_or_loader_missing():
    host = FakeHost()
    host.mtimes["/etc/default/tftpd-hpa"] = 2100.0
    assert hc.check(config(), host)["failing"] == ["tftp"]
    host = FakeHost()
    host.missing.add("ipxe.efi")
    result = hc.check(config(), host)
    assert result["failing"] == ["tftp"] and "ipxe.efi" in result["components"]["tftp"]["error"]


def test_lifecycle_other_plan_or_silent():
    host = FakeHost()
    host.lifecycle = OTHER
    assert hc.check(config(), host)["failing"] == ["lifecycle"]
    host.lifecycle = FileNotFoundError(2, "No such file or directory")
    assert hc.check(config(), host)["failing"] == ["lifecycle"]


def test_missing_table_fails_firewall_unless_disabled():
    host = FakeHost()
    host.table = False
    result = hc.check(config(), host)
    assert result["failing"] == ["firewall"] and "centra_pxe" in result["components"]["firewall"]["error"]
    assert hc.check(config(firewall=False), host)["status"] == "ok"


@pytest.mark.parametrize("free_blocks,ok", [(50000, True), (6000, True), (4000, False), (10, False)])
def test_disk_space_thresholds(free_blocks, ok):
    # 100000 blocks of 4 KiB: 5 % is 5000 blocks (about 19.5 MiB), 100 MiB is 25600 blocks.
    host = FakeHost()
    host.free_blocks = free_blocks
    cfg = config()
    cfg.update(min_free_mb=0, min_free_percent=5)
    assert hc.check(cfg, host)["components"]["disk"]["ok"] is ok
    cfg.update(min_free_mb=100, min_free_percent=0)
    assert hc.check(cfg, host)["components"]["disk"]["ok"] is (free_blocks >= 25600)


def test_missing_plan_file_fails_everything_that_compares():
    host = FakeHost()
    del host.files["/srv/http/healthz"]
    result = hc.check(config(), host)
    assert {"dhcp", "http", "lifecycle"} <= set(result["failing"])
    assert "/srv/http/healthz" in result["components"]["http"]["error"]


def test_cache_reuses_a_result_for_cache_seconds():
    host = FakeHost()
    now = [100.0]
    checker = hc.CachedChecker(config(), host, clock=lambda: now[0])
    assert checker.get()["status"] == "ok"
    host.unit_state["tftpd-hpa"] = ("inactive", "dead")
    now[0] += 1.0
    assert checker.get()["status"] == "ok" and checker.checks == 1
    now[0] += 1.5
    assert checker.get()["failing"] == ["tftp"] and checker.checks == 2


def test_parse_units_strips_service():
    units = hc.parse_units("Id=a.service\nActiveState=active\n\nId=b.socket\nActiveState=inactive\n")
    assert set(units) == {"a", "b.socket"}


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.pop("dhcp"), "dhcp must be a dict"),
    (lambda c: c["dhcp"].update(backend="dnsmasq"), "kea, isc or proxy"),
    (lambda c: c.update(cache_seconds=0), "cache_seconds"),
    (lambda c: c.update(min_free_mb=-1), "min_free_mb"),
    (lambda c: c.update(disk=["var/log"]), "absolute paths"),
])
def test_load_config_refuses_bad_files(tmp_path, mutate, message):
    cfg = config()
    mutate(cfg)
    path = tmp_path / "health.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(hc.ConfigError, match=message):
        hc.load_config(str(path))
    path.write_text(json.dumps(config()))
    assert hc.load_config(str(path))["timeout"] == 1


# --- the server, on a real Unix socket ----------------------------------------------

class _Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


@pytest.fixture
def served():
    host = FakeHost()
    directory = tempfile.mkdtemp(prefix="hc")
    path = os.path.join(directory, "health.sock")
    handler = type("H", (hc.Handler,), {"checker": hc.CachedChecker(config(), host), "max_header_bytes": 2048})
    server = hc.UnixServer(path, handler, 16, 5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path, host, handler.checker
    server.shutdown()
    server.server_close()
    os.unlink(path)
    os.rmdir(directory)


def get(path, url="/healthz", method="GET", headers=None):
    conn = _Conn(path)
    conn.request(method, url, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_server_answers_200_then_503(served):
    path, host, checker = served
    status, body = get(path)
    assert status == 200 and json.loads(body)["status"] == "ok"
    host.unit_state["centra-pxe-lifecycle"] = ("inactive", "dead")
    checker._at = -1e9  # expire the cache
    status, body = get(path)
    assert status == 503 and json.loads(body)["failing"] == ["lifecycle"]
    status, body = get(path, method="HEAD")
    assert status == 503 and body == b""


def test_server_other_paths_and_methods(served):
    path = served[0]
    assert get(path, "/")[0] == 404
    assert get(path, "/healthz/../etc/passwd")[0] == 404
    assert get(path, method="POST")[0] == 501


def test_server_refuses_huge_headers(served):
    path = served[0]
    status = get(path, headers={"X-Big": "x" * 4000})[0]
    assert status == 431


def test_server_refuses_a_huge_request_line(served):
    path = served[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n")
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.0 431")
    assert get(path)[0] == 200  # and it still serves


def test_a_flood_costs_one_check(served):
    path, host, checker = served
    results = []

    def worker():
        for _request in range(10):
            results.append(get(path)[0])
    threads = [threading.Thread(target=worker) for _thread in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 40 and checker.checks == 1 and host.calls == 1


def _fake_kea(path, context):
    """A one-shot Kea control socket answering config-get with a Dhcp4 user-context."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def answer():
        connection, _address = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(json.dumps({"result": 0, "arguments": {
                "Dhcp4": {"user-context": {"centra.pxe": context}}}}).encode())
        server.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("context, plan_file, expected", [
    ({"plan": DIGEST}, "", DIGEST),
    ({"plan": DIGEST}, "unused", DIGEST),
    ({"hosts-database": True}, "written", OTHER),
])
def test_kea_serves_the_plan_of_its_file_or_of_its_host_database(context, plan_file, expected):
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "sock")
        if plan_file == "written":
            plan_file = os.path.join(work, "hosts.plan")
            with open(plan_file, "w", encoding="utf-8") as handle:
                handle.write(OTHER + "\n")
        thread = _fake_kea(path, context)
        assert hc.kea_plan_digest(path, 5.0, plan_file) == expected
        thread.join(5)


@pytest.mark.parametrize("plan_file, error", [
    ("", "no plan file of it is configured"),
    ("missing", "the host database's plan file: .*No such file"),
])
def test_kea_on_the_host_database_without_its_plan_file_is_an_error(plan_file, error):
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "sock")
        thread = _fake_kea(path, {"hosts-database": True})
        with pytest.raises(ValueError, match=error):
            hc.kea_plan_digest(path, 5.0, os.path.join(work, plan_file) if plan_file else "")
        thread.join(5)
