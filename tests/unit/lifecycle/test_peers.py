# SPDX-License-Identifier: GPL-3.0-or-later
"""An HA pair: two real servers on Unix sockets that push and pull each other's state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import PROGRAM, Client, Env, lc, mac_of, node

M1, M2 = mac_of(1), mac_of(2)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def pair(tmp_path, short_dir):
    """Two servers, A and B, with one plan and one secret (Ansible copies it in production)."""
    envs = {}
    for name in ("a", "b"):
        env = Env(str(tmp_path / name))
        env.write_plan([node("n1", [M1]), node("n2", [M2])])
        envs[name] = env
    envs["a"].store().close()
    shutil.copy(os.path.join(envs["a"].state_dir, "secret"), os.path.join(envs["b"].state_dir, "secret"))
    sockets = {name: os.path.join(short_dir, name + ".sock") for name in envs}
    return envs, sockets


def start(serve, pair, name):
    envs, sockets = pair
    other = "b" if name == "a" else "a"
    server = serve(envs[name], name + ".sock", peers=["unix:" + sockets[other]])
    server.store.sync(envs[name].plan)
    return server


def test_callback_is_pushed_to_the_peer(serve, pair):
    a, b = start(serve, pair, "a"), start(serve, pair, "b")
    env = pair[0]["a"]
    assert a.client.callback("n1", env.token("n1", 1), "started")[0] == 200
    assert a.client.callback("n1", env.token("n1", 1), "installed")[0] == 200
    # The state commits first, the boot file follows under the same lock.
    assert wait_for(lambda: b.store.show("n1")["state"] == "installed" and "sanboot" in pair[0]["b"].boot_file(M1))
    assert b.store.events("n1")[-1]["source"] == "peer-push"
    # The token works on both servers: the generation and the secret agree.
    assert b.client.callback("n2", env.token("n2", 1), "started")[0] == 200
    assert wait_for(lambda: a.store.show("n2")["state"] == "installing")


def test_peer_down_during_callback_catches_up(serve, pair):
    a = start(serve, pair, "a")
    env = pair[0]["a"]
    assert a.client.callback("n1", env.token("n1", 1), "installed")[0] == 200  # B is down: still 200
    b = start(serve, pair, "b")
    assert b.store.show("n1")["state"] == "install"
    result = b.peers.pull_all()  # what serve does at start and every peer_interval
    assert result["unix:" + pair[1]["a"]]["applied"] == ["n1"]
    assert b.store.show("n1")["state"] == "installed" and "sanboot" in pair[0]["b"].boot_file(M1)


def test_rearm_missed_by_the_peer_is_adopted(serve, pair):
    a, b = start(serve, pair, "a"), start(serve, pair, "b")
    env = pair[0]["a"]
    assert a.client.callback("n1", env.token("n1", 1), "installed")[0] == 200
    assert wait_for(lambda: b.store.show("n1")["state"] == "installed")
    b.stop()
    a.store.rearm(["n1"])  # reinstall.yml while B is down
    b = start(serve, pair, "b")
    b.peers.pull_all()
    shown = b.store.show("n1")
    assert shown["generation"] == 2 and shown["state"] == "install"
    assert env.token("n1", 2) in pair[0]["b"].boot_file(M1)
    # A pull the other way changes nothing: B's older state never wins.
    assert a.peers.pull_all()["unix:" + pair[1]["b"]]["applied"] == []


def test_peer_push_failure_never_blocks_the_callback(serve, pair, short_dir):
    envs, sockets = pair
    a = serve(envs["a"], "a.sock", peers=["unix:" + os.path.join(short_dir, "nobody.sock")])
    a.store.sync(envs["a"].plan)
    started = time.monotonic()
    assert a.client.callback("n1", envs["a"].token("n1", 1), "installed")[0] == 200
    assert time.monotonic() - started < 2
    assert a.peers.pull_all()["unix:" + os.path.join(short_dir, "nobody.sock")]["ok"] is False


def signed(secret, method, path, body, timestamp=None):
    timestamp = timestamp or "%.3f" % time.time()
    return {"X-Centra-Timestamp": timestamp,
            "X-Centra-Signature": lc.peer_signature(secret, method, path, timestamp, body)}


def test_peer_endpoints_refuse_bad_signatures(serve, pair):
    b = start(serve, pair, "b")
    secret = pair[0]["b"].secret()
    body = json.dumps({"records": [{"name": "n1", "generation": 1, "state": "installed",
                                    "state_at": time.time()}]}).encode()
    path = "/api/v1/peer/event"
    cases = [
        ("no signature", {}),
        ("wrong key", signed(b"x" * 32, "POST", path, body)),
        ("token as key", signed(pair[0]["b"].token("n1", 1).encode(), "POST", path, body)),
        ("other body", signed(secret, "POST", path, body + b" ")),
        ("other path", signed(secret, "POST", "/api/v1/peer/state", body)),
        ("stale", signed(secret, "POST", path, body, "%.3f" % (time.time() - 3600))),
        ("bad timestamp", dict(signed(secret, "POST", path, body), **{"X-Centra-Timestamp": "nan"})),
    ]
    for label, headers in cases:
        status, _answer = b.client.request("POST", path, body=body, headers=headers)
        assert status == 403, label
        assert b.store.show("n1")["state"] == "install", label
    status, answer = b.client.request("POST", path, body=body, headers=signed(secret, "POST", path, body))
    assert status == 200 and answer["applied"] == ["n1"]
    state_path = "/api/v1/peer/state"
    status, _answer = b.client.request("GET", state_path, headers=signed(b"x" * 32, "GET", state_path, b""))
    assert status == 403
    status, state = b.client.request("GET", state_path, headers=signed(secret, "GET", state_path, b""))
    assert status == 200 and {r["name"]: r["state"] for r in state["records"]} == {"n1": "installed", "n2": "install"}
    assert pair[0]["b"].token("n1", 1) not in json.dumps(state)


def test_serve_pulls_at_start_and_pushes(pair, short_dir):
    """Two `serve` processes: B, down during the callback, catches up when it starts;
    then a callback to B reaches A by push."""
    envs, _sockets = pair
    socks = {name: os.path.join(short_dir, name + "-serve.sock") for name in envs}
    procs = {}

    def launch(name):
        other = "b" if name == "a" else "a"
        envs[name].write_config(peers=["unix:" + socks[other]], peer_interval=3600)
        cmd = [sys.executable, PROGRAM, "--state-dir", envs[name].state_dir, "--plan", envs[name].plan,
               "--scripts-dir", envs[name].scripts_dir, "--config", envs[name].config_path, "serve", "--socket", socks[name]]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Client(socks[name])
        assert wait_for(lambda: os.path.exists(socks[name]) and _status(client) == 200)
        return client

    try:
        a = launch("a")
        assert a.callback("n1", envs["a"].token("n1", 1), "installed")[0] == 200
        b = launch("b")
        assert wait_for(lambda: b.request("GET", "/api/v1/nodes/n1")[1]["state"] == "installed")
        assert wait_for(lambda: "sanboot" in (envs["b"].boot_file(M1) or ""))
        assert b.callback("n2", envs["b"].token("n2", 1), "failed", "disk missing")[0] == 200
        assert wait_for(lambda: a.request("GET", "/api/v1/nodes/n2")[1]["state"] == "failed")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)


def _status(client):
    try:
        return client.request("GET", "/api/v1/status")[0]
    except OSError:
        return None
