# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP service against hostile input: a real server on a temporary Unix socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import PROGRAM, Client, lc, mac_of, node

M1, M2, M3 = mac_of(1), mac_of(1, 2), mac_of(2)


@pytest.fixture
def server(env, serve):
    env.write_plan([node("n1", [M1, M2]), node("n2", [M3]), node("n3", [mac_of(3)], boot="netboot")])
    running = serve(env)
    running.store.sync(env.plan)
    return running


def snapshot(server):
    """Everything a refused request must leave alone: the state and the boot files."""
    env = server.env
    files = {}
    nodes_dir = os.path.join(env.state_dir, "boot", "nodes")
    for name in sorted(os.listdir(nodes_dir)):
        with open(os.path.join(nodes_dir, name)) as handle:
            files[name] = handle.read()
    return server.store.show(), {n: server.store.events(n) for n in ("n1", "n2", "n3")}, files


def test_callback_flow_and_read_api(server):
    env, client = server.env, server.client
    status, body = client.callback("n1", env.token("n1", 1), "started", "partitioning")
    assert status == 200 and body == {"ok": True, "node": "n1", "state": "installing", "generation": 1}
    assert env.token("n1", 1) in env.boot_file(M1)
    status, body = client.callback("n1", env.token("n1", 1), "installed")
    assert status == 200 and body["state"] == "installed"
    assert "sanboot" in env.boot_file(M1) and "vmlinuz" not in env.boot_file(M1) and "sanboot" in env.boot_file(M2)
    for key in ("n1", M2, lc.mac_hyphen(M2).upper(), "525400000102", "5254.0000.0102"):
        status, shown = client.request("GET", "/api/v1/nodes/" + key)
        assert status == 200 and shown["name"] == "n1" and shown["state"] == "installed", key
    assert shown["profile"] == "worker" and shown["generation"] == 1 and shown["macs"] == [M1, M2]
    assert shown["last_event"]["event"] == "installed" and shown["last_event"]["at"].endswith("Z")
    assert shown["install_duration_seconds"] is not None and shown["installed_at"]
    status, listing = client.request("GET", "/api/v1/nodes")
    assert status == 200 and [n["name"] for n in listing["nodes"]] == ["n1", "n2", "n3"]
    status, health = client.request("GET", "/api/v1/status")
    assert status == 200 and health["ok"] is True and health["plan_digest"] == "digest-1"
    tokens = [env.token(n, g) for n in ("n1", "n2", "n3") for g in (1, 2)]
    assert not any(t in json.dumps(listing) for t in tokens)
    status, _answer = client.request("GET", "/api/v1/nodes/nope")
    assert status == 404


def test_conflict_after_installed(server):
    env, client = server.env, server.client
    assert client.callback("n1", env.token("n1", 1), "installed")[0] == 200
    before = snapshot(server)
    for event in ("started", "installed", "failed"):
        assert client.callback("n1", env.token("n1", 1), event)[0] == 409
    assert snapshot(server) == before


def test_failed_keeps_install_script(server):
    env, client = server.env, server.client
    assert client.callback("n1", env.token("n1", 1), "failed", "no disk")[0] == 200
    shown = client.request("GET", "/api/v1/nodes/n1")[1]
    assert shown["state"] == "failed" and shown["last_event"]["message"] == "no disk"
    assert env.token("n1", 1) in env.boot_file(M1)
    assert client.callback("n1", env.token("n1", 1), "started")[1]["state"] == "installing"


def bearer(token):
    return {"Authorization": "Bearer " + token, "Content-Type": "application/json"}


def hostile_cases(env):
    good = bearer(env.token("n1", 1))
    ok_body = json.dumps({"event": "installed"})
    return [
        ("no token", "POST", "/api/v1/callback/n1", ok_body, {"Content-Type": "application/json"}, 401),
        ("basic auth", "POST", "/api/v1/callback/n1", ok_body, {"Authorization": "Basic bjE6eA=="}, 401),
        ("malformed bearer", "POST", "/api/v1/callback/n1", ok_body, {"Authorization": "Bearer a b"}, 401),
        ("short token", "POST", "/api/v1/callback/n1", ok_body, {"Authorization": "Bearer abc"}, 401),
        ("wrong token", "POST", "/api/v1/callback/n1", ok_body, bearer("A" * 43), 403),
        ("other node's token", "POST", "/api/v1/callback/n1", ok_body, bearer(env.token("n2", 1)), 403),
        ("future generation", "POST", "/api/v1/callback/n1", ok_body, bearer(env.token("n1", 2)), 403),
        ("unknown node", "POST", "/api/v1/callback/ghost", ok_body, good, 403),
        ("traversal name", "POST", "/api/v1/callback/..%2F..%2Fetc%2Fpasswd", ok_body, good, 403),
        ("dotdot name", "POST", "/api/v1/callback/..", ok_body, good, 403),
        ("malformed JSON", "POST", "/api/v1/callback/n1", '{"event": "installed"', good, 400),
        ("not UTF-8", "POST", "/api/v1/callback/n1", b'{"event": "\xff"}', good, 400),
        ("JSON list", "POST", "/api/v1/callback/n1", '["installed"]', good, 400),
        ("JSON string", "POST", "/api/v1/callback/n1", '"installed"', good, 400),
        ("unknown event", "POST", "/api/v1/callback/n1", '{"event": "rebooted"}', good, 400),
        ("event not text", "POST", "/api/v1/callback/n1", '{"event": 1}', good, 400),
        ("control chars", "POST", "/api/v1/callback/n1", json.dumps({"event": "failed", "message": "a\x1b[2Jb"}), good, 400),
        ("message too long", "POST", "/api/v1/callback/n1", json.dumps({"event": "failed", "message": "x" * 1025}), good, 400),
        ("message not text", "POST", "/api/v1/callback/n1", json.dumps({"event": "failed", "message": {"a": 1}}), good, 400),
        ("oversized body", "POST", "/api/v1/callback/n1", json.dumps({"event": "installed", "pad": "x" * 5000}), good, 413),
        ("GET callback", "GET", "/api/v1/callback/n1", None, good, 405),
        ("PUT callback", "PUT", "/api/v1/callback/n1", ok_body, good, 405),
        ("POST nodes", "POST", "/api/v1/nodes/n1", ok_body, good, 405),
        ("traversal read", "GET", "/api/v1/nodes/..%2Fsecret", None, {}, 404),
        ("secret", "GET", "/api/v1/../secret", None, {}, 404),
        ("unknown route", "GET", "/api/v2/nodes", None, {}, 404),
        ("peer event unsigned", "POST", "/api/v1/peer/event", json.dumps({"records": []}), {}, 403),
        ("peer state unsigned", "GET", "/api/v1/peer/state", None, {}, 403),
    ]


def test_hostile_requests_change_nothing(server):
    before = snapshot(server)
    for label, method, url, body, headers, expected in hostile_cases(server.env):
        status, answer = server.client.request(method, url, body=body, headers=headers)
        assert status == expected, label
        assert server.env.token("n1", 1) not in json.dumps(answer if not isinstance(answer, bytes) else ""), label
        assert snapshot(server) == before, label


def test_raw_framing_refused(server):
    client, token = server.client, server.env.token("n1", 1)
    before = snapshot(server)
    head = "POST /api/v1/callback/n1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % token
    body = '{"event": "installed"}'
    assert b" 411 " in client.raw((head + "\r\n" + body).encode())[:20]  # no Content-Length
    chunked = head + "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert b" 411 " in client.raw(chunked.encode())[:20]
    both = head + "Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert b" 400 " in client.raw(both.encode())[:20]
    two = head + "Content-Length: %d\r\nContent-Length: 3\r\n\r\n%s" % (len(body), body)
    assert b" 400 " in client.raw(two.encode())[:20]
    negative = head + "Content-Length: -1\r\n\r\n" + body
    assert b" 400 " in client.raw(negative.encode())[:20]
    # The Content-Length is judged before the body is read: the server answers 413 at once.
    huge = head + "Content-Length: 100000000\r\n\r\n"
    assert b" 413 " in client.raw(huge.encode())[:20]
    huge_headers = head + "".join("X-Pad-%d: %s\r\n" % (i, "y" * 1000) for i in range(40)) + \
        "Content-Length: %d\r\n\r\n%s" % (len(body), body)
    assert b" 431 " in client.raw(huge_headers.encode())[:20]
    one_long_line = head + "X-Pad: " + "z" * 70000 + "\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert client.raw(one_long_line.encode())[:20].split()[1] in (b"431", b"400")
    assert client.raw(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")[:20].split()[1] == b"400"
    assert snapshot(server) == before
    assert client.callback("n1", token, "started")[0] == 200  # and it still serves


def test_slow_client_times_out_and_frees_the_worker(env, serve):
    env.config.update(workers=1, socket_timeout=1)
    env.write_plan([node("n1", [M1])])
    server = serve(env)
    server.store.sync(env.plan)
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(server.client.path)
    slow.sendall(b"POST /api/v1/callback/n1 HTTP/1.1\r\nContent-Length: 30\r\n")  # and then nothing
    started = time.monotonic()
    status, body = server.client.request("GET", "/api/v1/status")  # queued behind the only worker
    waited = time.monotonic() - started
    assert status == 200 and body["ok"] and 0.5 < waited < 5
    slow.settimeout(5)
    assert slow.recv(100) == b""  # the server gave up on it and closed it
    slow.close()
    # A slow body (headers complete, body never sent) is dropped too, nothing recorded.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(server.client.path)
    slow.sendall(("POST /api/v1/callback/n1 HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Length: 30\r\n\r\n{"
                  % env.token("n1", 1)).encode())
    slow.settimeout(5)
    answer = slow.recv(100)
    assert b" 400 " in answer[:20]
    slow.close()
    assert server.store.show("n1")["state"] == "install"


def test_burst_of_1000_callbacks(env, serve):
    nodes = [node("b%03d" % i, [mac_of(100 + i)]) for i in range(100)]
    env.write_plan(nodes)
    server = serve(env)
    server.store.sync(env.plan)
    secret = env.secret()
    jobs = []
    for i, entry in enumerate(nodes):
        good = lc.make_token(secret, entry["name"], 1)
        jobs.append((entry["name"], good, "started", {200}))
        jobs.append((entry["name"], lc.make_token(secret, nodes[(i + 1) % 100]["name"], 1), "installed", {403}))
        jobs.append((entry["name"], "B" * 43, "installed", {403}))
        jobs.append((entry["name"], None, "installed", {401}))
        jobs.append((entry["name"], good, "bogus", {400}))
        jobs.extend([(entry["name"], good, "started", {200, 409})] * 3)
        jobs.append((entry["name"], good, "failed", {200, 409}))
    results = []
    lock = threading.Lock()

    def run(chunk):
        client = Client(server.client.path)
        for name, token, event, expected in chunk:
            status = client.callback(name, token, event)[0]
            with lock:
                results.append((status in expected, name, event, status))

    threads = [threading.Thread(target=run, args=(jobs[i::32],)) for i in range(32)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - started
    assert len(results) == 900 and all(r[0] for r in results), [r for r in results if not r[0]][:5]
    # Then the 100 "installed" that finish each install: 1,000 callbacks in all.
    finals = [(e["name"], lc.make_token(secret, e["name"], 1), "installed", {200}) for e in nodes]
    threads = [threading.Thread(target=run, args=(finals[i::32],)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 1000 and all(r[0] for r in results)
    shown = server.store.show()
    assert [n["state"] for n in shown] == ["installed"] * 100
    assert all("sanboot" in env.boot_file(e["macs"][0]) for e in nodes)
    assert server.client.request("GET", "/api/v1/status")[0] == 200
    assert server.store.sync(env.plan)["files_written"] == []  # every file agrees with the DB
    print("1000 callbacks, first 900 in %.2f s" % elapsed)


def test_concurrent_rearm_and_callbacks(env, serve):
    env.write_plan([node("n1", [M1])])
    server = serve(env)
    server.store.sync(env.plan)
    other = env.store()  # a second Store on the same files: what a `rearm` over SSH does
    stop = threading.Event()
    seen = []

    def installer():
        client = Client(server.client.path)
        while not stop.is_set():
            generation = server.store.show("n1")["generation"]
            for event in ("started", "installed"):
                seen.append(client.callback("n1", env.token("n1", generation), event)[0])

    threads = [threading.Thread(target=installer) for _index in range(4)]
    for thread in threads:
        thread.start()
    for _index in range(15):
        other.rearm(["n1"])
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert set(seen) <= {200, 403, 409} and 200 in seen
    shown = server.store.show("n1")
    assert shown["generation"] == 16
    # The boot file agrees with the final state: a sync finds nothing to repair.
    assert other.sync(env.plan)["files_written"] == []
    expected = "sanboot" if shown["state"] == "installed" else env.token("n1", 16)
    assert expected in env.boot_file(M1)
    other.close()


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_kill_9_and_sighup(env, short_dir):
    env.write_plan([node("n1", [M1]), node("n2", [M3])])
    env.write_config()
    sock = os.path.join(short_dir, "k.sock")
    cmd = [sys.executable, PROGRAM, "--state-dir", env.state_dir, "--plan", env.plan, "--scripts-dir",
           env.scripts_dir, "--config", env.config_path, "serve", "--socket", sock]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: os.path.exists(sock)), proc.stderr.read1() if proc.poll() is not None else "no socket"
        client = Client(sock)
        assert wait_for(lambda: client.request("GET", "/api/v1/status")[0] == 200)
        token = env.token("n1", 1)
        assert client.callback("n1", token, "started")[0] == 200
        assert client.callback("n1", token, "installed")[0] == 200
        # SIGHUP: the plan is read again.
        env.write_plan([node("n1", [M1]), node("n2", [M3]), node("n4", [mac_of(4)])], digest="digest-2")
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: client.request("GET", "/api/v1/nodes/n4")[0] == 200)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        store = env.store()
        assert store.show("n1")["state"] == "installed" and store.meta("plan_digest") == "digest-2"
        assert "sanboot" in env.boot_file(M1)
        store.close()
        # Started again on the same state (and a stale socket file left by the kill).
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_for(lambda: os.path.exists(sock) and _status(client) == 200)
        assert client.request("GET", "/api/v1/nodes/n1")[1]["state"] == "installed"
        assert client.callback("n1", token, "started")[0] == 409
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        stderr = proc.stderr.read().decode()
        assert token not in stderr and "listening" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _status(client):
    try:
        return client.request("GET", "/api/v1/status")[0]
    except OSError:
        return None


def test_cli_rearm_show_forget(env):
    env.write_plan([node("n1", [M1])])
    base = [sys.executable, PROGRAM, "--state-dir", env.state_dir, "--plan", env.plan,
            "--scripts-dir", env.scripts_dir, "--config", env.config_path]
    out = subprocess.run(base + ["sync"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["added"] == ["n1"]
    out = subprocess.run(base + ["rearm", "n1"], capture_output=True, text=True, check=True)
    expected = {"changed": True, "nodes": {"n1": {"generation": [1, 2], "state": ["install", "install"]}}}
    assert json.loads(out.stdout) == expected
    out = subprocess.run(base + ["show", lc.mac_hyphen(M1)], capture_output=True, text=True, check=True)
    shown = json.loads(out.stdout)
    assert shown["generation"] == 2 and [e["event"] for e in shown["events"]] == ["rearm"]
    assert env.token("n1", 2) not in out.stdout
    out = subprocess.run(base + ["rearm", "ghost"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "unknown node" in out.stderr
    out = subprocess.run(base + ["forget", "n1"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["forgotten"] == ["n1"]
    out = subprocess.run(base + ["show"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)[0]["generation"] == 3


def test_full_queue_refuses_with_503(env, serve):
    env.config.update(workers=1, queue=1, socket_timeout=2)
    env.write_plan([node("n1", [M1])])
    server = serve(env)
    holders = []
    for _index in range(2):  # one holds the worker, one fills the queue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.client.path)
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\n")
        holders.append(sock)
        time.sleep(0.2)
    began = time.monotonic()
    answer = server.client.raw(b"GET /api/v1/status HTTP/1.1\r\n\r\n")
    assert time.monotonic() - began < 1  # at once, not after the socket timeout
    assert answer.startswith(b"HTTP/1.1 503 ")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"\r\nRetry-After: 1\r\n" in head and json.loads(body) == {"error": "busy, retry later"}
    # A client still sending its request when the 503 comes (nginx forwarding a body)
    # can finish sending, then reads the answer: no broken pipe (which nginx turns into a 502).
    late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late.settimeout(5)
    late.connect(server.client.path)
    time.sleep(0.3)  # the 503 is sent and the server's side half-closed by now
    late.sendall(b"POST /api/v1/callback/n1 HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000)
    received = b""
    while True:
        chunk = late.recv(4096)
        if not chunk:
            break
        received += chunk
    late.close()
    assert received.startswith(b"HTTP/1.1 503 ")
    for sock in holders:
        sock.close()
    assert wait_for(lambda: _status(server.client) == 200)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the state directory's owner needs root")
def test_cli_as_root_acts_as_the_state_owner(env, short_dir):
    # Everything under a directory the unprivileged owner can reach.
    base = os.path.join(short_dir, "owned")
    os.makedirs(os.path.join(base, "state"))
    os.chmod(short_dir, 0o755)
    env.write_plan([node("n1", [M1])])
    nobody = 65534
    os.chown(os.path.join(base, "state"), nobody, nobody)
    for path in (env.plan, env.scripts_dir):
        subprocess.run(["cp", "-a", path, base], check=True)
    subprocess.run(["chmod", "-R", "a+rX", base], check=True)
    cmd = [sys.executable, PROGRAM, "--state-dir", os.path.join(base, "state"), "--plan", os.path.join(base, "plan.json"),
           "--scripts-dir", os.path.join(base, "scripts"), "--config", "/nonexistent.json"]
    out = subprocess.run(cmd + ["sync"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    subprocess.run(cmd + ["rearm", "n1"], capture_output=True, text=True, check=True)
    for root, dirs, files in os.walk(os.path.join(base, "state")):
        for name in dirs + files:
            assert os.lstat(os.path.join(root, name)).st_uid == nobody, name
