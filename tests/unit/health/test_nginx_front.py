# SPDX-License-Identifier: GPL-3.0-or-later
"""pxe_http's /healthz location, rendered and served by a real nginx in front of the real
health server (fake host state), both on Unix sockets: 200 and 503 pass through, other
methods are refused, a burst is cut at rate + burst, and 502 when the service is down.
Needs the nginx binary (Debian's nginx package); skipped, and said so, without it."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import jinja2
import pytest
import yaml

from test_checker import FakeHost, ROOT, config, hc

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
TEMPLATES = os.path.join(ROOT, "roles", "pxe_http", "templates")


def render(name: str, health_socket: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True)
    env.filters["bool"] = bool
    # The role's defaults, then what this test is about.
    with open(os.path.join(os.path.dirname(TEMPLATES), "defaults", "main.yml"), encoding="utf-8") as handle:
        values = yaml.safe_load(handle)
    values.update({
        "ansible_managed": "test",
        "centra_pxe_server": {"health": {"socket": health_socket},
                              "lifecycle": {"socket": "/nonexistent/lc.sock", "boot_dir": "/nonexistent",
                                            "peer_addresses": []},
                              "http_port": 80, "address": "192.0.2.2", "root": "/nonexistent"},
        "pxe_http_callback_zone_size": "1m", "pxe_http_callback_rate": "10r/s", "pxe_http_callback_burst": 20,
        "pxe_http_healthz_rate": "1r/m", "pxe_http_healthz_burst": 3,
        "_pxe_http_lifecycle_conf": "/nonexistent", "_pxe_http_tls": False, "pxe_http_autoindex": False,
        "_pxe_http_access_log": "off", "_pxe_http_allow": [], "pxe_http_asset_max_age": 60,
        "_pxe_http_error_log": "/dev/null", "pxe_http_trace": False,
    })
    return env.get_template(name).render(**values)


class _Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def get(path, method="GET"):
    conn = _Conn(path)
    try:
        conn.request(method, "/healthz", headers={"Host": "192.0.2.2"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def front():
    directory = tempfile.mkdtemp(prefix="hn", dir="/tmp")
    os.chmod(directory, 0o755)
    health_sock = os.path.join(directory, "health.sock")
    host = FakeHost()
    handler = type("H", (hc.Handler,), {"checker": hc.CachedChecker(dict(config(), cache_seconds=0.01), host)})
    server = hc.UnixServer(health_sock, handler, 4, 5)
    os.chmod(health_sock, 0o666)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = render("centra-pxe.conf.j2", health_sock)
    location = re.search(r"\n(    location = /healthz \{.*?\n    \})", site, re.S).group(1)
    http_part = render("centra-pxe-lifecycle-http.conf.j2", health_sock)
    front_sock = os.path.join(directory, "front.sock")
    conf = os.path.join(directory, "nginx.conf")
    values = {"d": directory, "sock": front_sock, "http": http_part, "location": location,
              "user": "user root;" if os.geteuid() == 0 else ""}
    with open(conf, "w") as handle:
        handle.write("""
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
daemon off;
%(user)s
events {}
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    %(http)s
    server {
        listen unix:%(sock)s;
    %(location)s
    }
}
""" % values)
    base = [NGINX, "-e", os.path.join(directory, "error.log"), "-p", directory, "-c", conf]
    check = subprocess.run(base + ["-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(front_sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield front_sock, host, server
    proc.terminate()
    proc.wait(10)
    server.shutdown()
    server.server_close()
    shutil.rmtree(directory, ignore_errors=True)


def test_nginx_passes_the_live_answer_and_limits_it(front):
    sock, host, server = front
    status, body = get(sock)
    assert status == 200 and json.loads(body)["status"] == "ok"
    host.unit_state["tftpd-hpa"] = ("inactive", "dead")
    time.sleep(0.05)
    status, body = get(sock)
    assert status == 503 and json.loads(body)["failing"] == ["tftp"]
    assert get(sock, "POST")[0] == 403  # limit_except GET
    # 1r/m with a burst of 3: the fourth request within the minute is refused.
    codes = [get(sock)[0] for _index in range(4)]
    assert codes.count(429) >= 1, codes


def test_nginx_says_502_when_the_health_service_is_down(front):
    sock, _host, server = front
    server.shutdown()
    server.server_close()
    os.unlink(server.server_address)
    assert get(sock)[0] == 502
