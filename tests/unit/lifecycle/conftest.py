# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the lifecycle service: the program imported by path, a state directory,
a plan, the per-MAC script variants, and real servers on temporary Unix sockets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import http.client

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROGRAM = os.path.join(ROOT, "roles", "pxe_lifecycle", "files", "centra_pxe_lifecycle.py")

_spec = importlib.util.spec_from_file_location("centra_pxe_lifecycle", PROGRAM)
lc = importlib.util.module_from_spec(_spec)
sys.modules["centra_pxe_lifecycle"] = lc
_spec.loader.exec_module(lc)

INSTALL_SCRIPT = ("#!ipxe\nkernel http://192.0.2.2/profiles/{profile}/vmlinuz initrd=initrd.img "
                  "centra.profile={profile} centra.node={name} centra.callback=@CENTRA_CALLBACK@ "
                  "centra.token=@CENTRA_TOKEN@\ninitrd http://192.0.2.2/profiles/{profile}/initrd.img\nboot\n")
LOCAL_SCRIPT = "#!ipxe\n# {name}: boot from the local disk\nsanboot --no-describe --drive 0x80 || exit\n"


def node(name, macs, boot="install", profile="worker"):
    return {"name": name, "profile": profile, "boot": boot, "macs": list(macs)}


def mac_of(index, nic=1):
    return "52:54:00:%02x:%02x:%02x" % (index // 256, index % 256, nic)


class Env:
    """A state dir, a plan and the script variants the collection would write."""

    def __init__(self, base):
        self.base = base
        self.state_dir = os.path.join(base, "state")
        self.scripts_dir = os.path.join(base, "scripts")
        self.plan = os.path.join(base, "plan.json")
        self.config_path = os.path.join(base, "lifecycle.json")
        self.config = dict(lc.DEFAULT_CONFIG_VALUES, callback_base="http://192.0.2.2")
        os.makedirs(self.state_dir)
        self.nodes = []

    def write_plan(self, nodes, digest="digest-1"):
        self.nodes = list(nodes)
        for entry in nodes:
            if entry["boot"] == "install":
                for mac in entry["macs"]:
                    self.write_scripts(entry, mac)
        with open(self.plan, "w") as handle:
            json.dump({"schema": 1, "digest": digest, "nodes": nodes}, handle)

    def write_scripts(self, entry, mac):
        hy = lc.mac_hyphen(mac)
        for variant, text in (("install", INSTALL_SCRIPT), ("local", LOCAL_SCRIPT)):
            os.makedirs(os.path.join(self.scripts_dir, variant), exist_ok=True)
            with open(os.path.join(self.scripts_dir, variant, hy + ".ipxe"), "w") as handle:
                handle.write(text.format(name=entry["name"], profile=entry["profile"]))

    def write_config(self, **values):
        self.config.update(values)
        with open(self.config_path, "w") as handle:
            json.dump(self.config, handle)

    def store(self):
        return lc.Store(self.state_dir, self.scripts_dir, self.config)

    def boot_file(self, mac):
        path = os.path.join(self.state_dir, "boot", "nodes", lc.mac_hyphen(mac) + ".ipxe")
        try:
            with open(path) as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def secret(self):
        with open(os.path.join(self.state_dir, "secret"), "rb") as handle:
            return handle.read()

    def token(self, name, generation):
        return lc.make_token(self.secret(), name, generation)


@pytest.fixture
def env(tmp_path):
    return Env(str(tmp_path))


@pytest.fixture
def short_dir():
    # A Unix socket path must stay under 108 bytes: pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="lc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Client:
    def __init__(self, path):
        self.path = path

    def request(self, method, url, body=None, headers=None):
        """(status, parsed JSON or raw bytes) of one request."""
        conn = UnixHTTPConnection(self.path)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, url, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = data
            return response.status, parsed
        finally:
            conn.close()

    def callback(self, name, token, event="installed", message=None, **kwargs):
        body = {"event": event}
        if message is not None:
            body["message"] = message
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        return self.request("POST", "/api/v1/callback/" + name, body=kwargs.get("body", body), headers=headers)

    def raw(self, data, timeout=10):
        """Send raw bytes, return everything the server answers before it closes."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.path)
        try:
            sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            sock.close()


class Running:
    """A real server (Store + App + PoolServer) on a temporary Unix socket, in threads."""

    def __init__(self, env, socket_path, peers=None):
        self.env = env
        self.store = env.store()
        self.peers = None
        if peers:
            self.peers = lc.PeerSync(self.store, peers, 3600, 2)
            self.store.on_change = self.peers.submit
            self.peers.start()
        self.app = lc.App(self.store, env.config, self.peers)
        self.server = lc.make_server(self.app, socket_path)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.client = Client(socket_path)

    def stop(self):
        if self.peers is not None:
            self.peers.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.store.close()


@pytest.fixture
def serve(short_dir):
    running = []

    def start(env, name="s.sock", peers=None):
        server = Running(env, os.path.join(short_dir, name), peers)
        running.append(server)
        return server

    yield start
    for server in running:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - a test may have stopped it already
            pass
