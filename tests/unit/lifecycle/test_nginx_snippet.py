# SPDX-License-Identifier: GPL-3.0-or-later
"""The nginx snippets, rendered, checked with nginx -t and served by a real nginx in
front of a real lifecycle server, both on Unix sockets (no network is used).
Needs the nginx binary (Debian's nginx package); skipped, and said so, without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import jinja2
import pytest

from conftest import ROOT, UnixHTTPConnection, mac_of, node

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
# pxe_http owns the site: its http-level part (conf.d) and the lifecycle locations the
# site includes, rendered with the values the server context and the role give them.
TEMPLATES = os.path.join(ROOT, "roles", "pxe_http", "templates")
LIFECYCLE = {"socket": "/run/centra-pxe-lifecycle/lifecycle.sock", "boot_dir": "/var/lib/centra-pxe-lifecycle/boot",
             "peer_addresses": ["192.0.2.3"]}
HEALTH = {"socket": "/run/centra-pxe-health/health.sock"}
VALUES = {
    "ansible_managed": "test", "centra_pxe_server": {"lifecycle": LIFECYCLE, "health": HEALTH, "address": "192.0.2.2"},
    "_pxe_http_lifecycle_conf": "/etc/nginx/conf.d/centra-pxe-lifecycle.conf",
    "pxe_http_callback_zone_size": "1m", "pxe_http_callback_rate": "10r/s", "pxe_http_callback_burst": 20,
    "pxe_http_healthz_rate": "5r/s",
    "pxe_http_address_zone_size": "1m", "pxe_http_address_rate": "20r/s", "pxe_http_limit_exempt": [],
}


def render(name, **extra):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True)
    return env.get_template(name).render(**dict(VALUES, **extra))


@pytest.fixture
def front(env, serve, short_dir):
    os.chmod(short_dir, 0o755)
    env.write_plan([node("n1", [mac_of(1)]), node("n2", [mac_of(2)], boot="netboot")])
    server = serve(env)
    server.store.sync(env.plan)
    static = os.path.join(short_dir, "http")
    os.makedirs(os.path.join(static, "nodes"))
    with open(os.path.join(static, "menu.ipxe"), "w") as handle:
        handle.write("#!ipxe\n# menu\n")
    with open(os.path.join(static, "nodes", "52-54-00-00-02-01.ipxe"), "w") as handle:
        handle.write("#!ipxe\n# static n2\n")
    lifecycle = dict(LIFECYCLE, socket=server.client.path, boot_dir=os.path.join(env.state_dir, "boot"))
    http_part = render("centra-pxe-lifecycle-http.conf.j2",
                       centra_pxe_server={"lifecycle": lifecycle, "health": HEALTH, "address": "192.0.2.2"})
    server_part = render("centra-pxe-lifecycle-locations.conf.j2", centra_pxe_server={"lifecycle": lifecycle, "address": "192.0.2.2"})
    for name, text in (("http.conf", http_part), ("server.conf", server_part)):
        with open(os.path.join(short_dir, name), "w") as handle:
            handle.write(text)
    front_sock = os.path.join(short_dir, "front.sock")
    conf = os.path.join(short_dir, "nginx.conf")
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
    include %(d)s/http.conf;
    server {
        listen unix:%(sock)s;
        root %(d)s/http;
        location ~ \\.ipxe$ { default_type text/plain; }
        include %(d)s/server.conf;
    }
}
""" % {"d": short_dir, "sock": front_sock, "user": "user root;" if os.geteuid() == 0 else ""})
    base = [NGINX, "-e", os.path.join(short_dir, "error.log"), "-p", short_dir, "-c", conf]
    check = subprocess.run(base + ["-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(front_sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield env, server, front_sock
    proc.terminate()
    proc.wait(10)


def get(sock, method, path, body=None, headers=None):
    conn = UnixHTTPConnection(sock)
    try:
        conn.request(method, path, body=body, headers=dict({"Host": "192.0.2.2"}, **(headers or {})))
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_nginx_in_front(front):
    env, server, sock = front
    token = env.token("n1", 1)
    auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    status, text = get(sock, "GET", "/nodes/52-54-00-00-01-01.ipxe")
    assert status == 200 and "centra.token=" + token in text  # the service's file first
    assert get(sock, "GET", "/nodes/52-54-00-00-02-01.ipxe") == (200, "#!ipxe\n# static n2\n")  # then the static tree
    assert get(sock, "GET", "/nodes/52-54-00-00-09-01.ipxe") == (200, "#!ipxe\n# menu\n")
    assert get(sock, "GET", "/api/v1/status")[0] == 200
    assert get(sock, "POST", "/api/v1/callback/n1", '{"event":"installed"}')[0] == 401
    assert get(sock, "POST", "/api/v1/callback/n1", "x" * 5000, auth)[0] == 413  # nginx's limit
    assert get(sock, "GET", "/api/v1/peer/state")[0] == 403  # not a peer address
    assert get(sock, "GET", "/api/v1/anything")[0] == 404
    assert server.store.show("n1")["state"] == "install"
    assert get(sock, "POST", "/api/v1/callback/n1", '{"event":"installed"}', auth)[0] == 200
    status, text = get(sock, "GET", "/nodes/52-54-00-00-01-01.ipxe")
    assert status == 200 and "sanboot" in text and "vmlinuz" not in text
    # The rate limit holds: a burst from one client is cut at rate + burst.
    codes = [get(sock, "POST", "/api/v1/callback/n1", '{"event":"started"}', auth)[0] for _index in range(60)]
    assert set(codes) == {409, 429} and codes.count(409) <= 25
    assert server.store.show("n1")["state"] == "installed"


def test_nginx_serves_the_views_read_only(front):
    _env, _server, sock = front
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", "/status", headers={"Host": "192.0.2.2"})
        response = conn.getresponse()
        page = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200 and "n1" in page
    assert response.getheader("Content-Security-Policy", "").startswith("default-src 'none'")  # passed through
    status, text = get(sock, "GET", "/metrics")
    assert status == 200 and "centra_pxe_nodes_stalled 0" in text
    assert get(sock, "GET", "/api/v1/discovered") == (200, '{"discovered": []}\n')
    status, text = get(sock, "GET", "/api/v1/nodes/52-54-00-00-01-01/events")
    assert status == 200 and '"node": "n1"' in text
    for path in ("/status", "/metrics", "/api/v1/discovered"):
        assert get(sock, "POST", path, "{}", {"Content-Type": "application/json"})[0] == 403, path  # limit_except
