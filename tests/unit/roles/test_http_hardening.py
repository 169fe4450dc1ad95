# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pxe_http's site and its http-level part, rendered with the role's defaults and TLS on,
served by a real nginx on Unix sockets: no version in any header or error page, over
HTTP and over HTTPS (the lab scenario runs without a certificate)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import jinja2
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "pxe_http")
FIXTURES = os.path.join(ROOT, "tests", "golden", "fixtures")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, tls: bool = False) -> None:
        super().__init__("localhost", timeout=10)
        self.path, self.tls = path, tls

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.path)
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        self.sock = sock


def render(name: str, values: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["bool"] = lambda value: str(value).lower() in ("1", "true", "yes", "on")
    return env.get_template(name).render(**values)


@pytest.fixture
def site():
    work = tempfile.mkdtemp(prefix="hh-", dir="/tmp")  # Unix socket paths stay short
    os.chmod(work, 0o755)
    try:
        os.makedirs(os.path.join(work, "http"))
        with open(os.path.join(work, "http", "boot.ipxe"), "w", encoding="utf-8") as handle:
            handle.write("#!ipxe\n")
        tls_file = os.path.join(work, "tls.pem")
        with open(tls_file, "w", encoding="utf-8") as handle:
            for name in ("tls.crt", "tls.key"):
                with open(os.path.join(FIXTURES, name), encoding="utf-8") as part:
                    handle.write(part.read() + "\n")
        with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
        values.update(
            ansible_managed="test",
            centra_pxe_server={"http_port": "unix:%s/http.sock" % work, "address": "192.0.2.2", "root": work,
                               "lifecycle": {"socket": "%s/lifecycle.sock" % work, "boot_dir": work,
                                             "peer_addresses": ["192.0.2.3"]},
                               "health": {"socket": "%s/health.sock" % work}},
            pxe_http_trace=False,  # the trace socket is not what this test is about
            pxe_http_tls_port="unix:%s/https.sock" % work,
            _pxe_http_tls=True, _pxe_http_tls_file=tls_file,
            _pxe_http_access_log="%s/access.log" % work, _pxe_http_error_log="%s/error.log" % work,
            _pxe_http_allow=["unix:"], _pxe_http_lifecycle_conf="%s/http.conf" % work,
        )
        for name, target in (("centra-pxe-lifecycle-http.conf.j2", "http.conf"), ("centra-pxe.conf.j2", "site.conf")):
            with open(os.path.join(work, target), "w", encoding="utf-8") as handle:
                handle.write(render(name, values))
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write("""
pid %(d)s/nginx.pid;
error_log %(d)s/main-error.log;
daemon off;
%(user)s
events {}
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    include %(d)s/http.conf;
    include %(d)s/site.conf;
}
""" % {"d": work, "user": "user root;" if os.geteuid() == 0 else ""})
        base = [NGINX, "-e", os.path.join(work, "main-error.log"), "-p", work, "-c", conf]
        check = subprocess.run(base + ["-t"], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(work, "https.sock")) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield work
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_no_version_in_headers_or_error_pages(site, tls):
    codes = {}
    for path, headers in (("/boot.ipxe", {}), ("/no-such-file", {}), ("/api/unknown", {}), ("/boot.ipxe", {"Host": ""})):
        connection = UnixConnection(os.path.join(site, "https.sock" if tls else "http.sock"), tls=tls)
        connection.putrequest("GET", path, skip_host=True)
        if headers.get("Host", "localhost"):
            connection.putheader("Host", "localhost")
        connection.endheaders()
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace")
        codes[path + (" (no Host)" if "Host" in headers else "")] = answer.status
        assert answer.getheader("Server") == "nginx", (path, answer.getheaders())
        assert not re.search(r"nginx/\d", str(answer.getheaders()) + body), (path, body)
        connection.close()
    assert codes == {"/boot.ipxe": 200, "/no-such-file": 404, "/api/unknown": 404, "/boot.ipxe (no Host)": 400}, codes
