# SPDX-License-Identifier: GPL-3.0-or-later
"""The installer snippets of docs/lifecycle.md, run with /bin/sh against a real server.

/proc/cmdline is replaced by a file of the test. curl reaches the server's Unix socket
through a shim that adds --unix-socket (no network is used); BusyBox wget cannot do
that, so its shim records the arguments and the test sends the request they describe.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import threading
import time

import pytest
import yaml

from conftest import ROOT, Client, mac_of, node

DOC = os.path.join(ROOT, "docs", "lifecycle.md")
NAMES = ("posix", "preseed", "autoinstall", "kickstart", "cloud-init", "nixos")


def snippets():
    with open(DOC) as handle:
        text = handle.read()
    found = dict(re.findall(r"<!-- snippet: ([\w-]+) -->\n```[a-z]*\n(.*?)```", text, re.S))
    assert sorted(found) == sorted(NAMES)
    return found


def argv_of(name, text, cmdline_path):
    """The command a real installer would run for this snippet, as an argv."""
    text = text.replace("/proc/cmdline", cmdline_path)
    if name == "posix":
        return ["/bin/sh", "-c", text.strip()]
    if name == "preseed":
        prefix = "d-i preseed/late_command string "
        assert text.startswith(prefix)
        return ["/bin/sh", "-c", text[len(prefix):].strip()]  # d-i runs it with sh -c
    if name == "autoinstall":
        return yaml.safe_load(text)["autoinstall"]["late-commands"][0]  # a list: executed as argv
    if name == "kickstart":
        lines = text.strip().splitlines()
        assert lines[0] == "%post" and lines[-1] == "%end"
        return ["/bin/sh", "-c", "\n".join(lines[1:-1])]
    if name == "cloud-init":
        return yaml.safe_load(text)["runcmd"][0]  # a list: executed as argv
    if name == "nixos":
        match = re.fullmatch(r"system\.activationScripts\.centraInstalled = ''(.*)'';\s*", text, re.S)
        assert match and "''" not in match.group(1)  # '' would end the Nix string early
        return ["/bin/sh", "-c", re.sub(r"\$\{pkgs\.\w+\}/bin/", "", match.group(1))]
    raise AssertionError(name)


@pytest.fixture
def lab(env, serve, short_dir):
    env.write_plan([node(name, [mac_of(i + 1)]) for i, name in enumerate(NAMES)])
    server = serve(env)
    server.store.sync(env.plan)
    shims = os.path.join(short_dir, "bin")
    os.makedirs(shims)
    calls = os.path.join(short_dir, "calls")
    for tool, body in (
            ("curl", 'printf "%%s\\n" curl >>"%s"\nexec /usr/bin/curl --unix-socket "%s" "$@"\n' % (calls, server.client.path)),
            ("wget", 'for a in "$@"; do printf "%%s\\n" "$a"; done >"%s.wget"\nprintf "%%s\\n" wget >>"%s"\n'
                     % (calls, calls))):
        path = os.path.join(shims, tool)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\n" + body)
        os.chmod(path, stat.S_IRWXU)
    return env, server, shims, calls


def run(argv, shims):
    return subprocess.run(argv, check=False, env={"PATH": shims + ":/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", NAMES)
def test_snippet_reports_installed(lab, name, tmp_path):
    env, server, shims, calls = lab
    token = env.token(name, 1)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=vmlinuz initrd=initrd.img centra.profile=worker centra.node=%s "
                       "centra.callback=http://192.0.2.2/api/v1/callback/%s centra.token=%s quiet\n"
                       % (name, name, token))
    result = run(argv_of(name, snippets()[name], str(cmdline)), shims)
    assert result.returncode == 0, result.stderr
    if name == "preseed":
        with open(calls + ".wget") as handle:
            args = handle.read().splitlines()
        assert args == ["-q", "-T", "30", "-O", "/dev/null", "--header=Authorization: Bearer %s" % token,
                        "--header=Content-Type: application/json", '--post-data={"event":"installed"}',
                        "http://192.0.2.2/api/v1/callback/%s" % name]
        status, _answer = Client(server.client.path).request(
            "POST", "/api/v1/callback/" + name, body=args[7].split("=", 1)[1],
            headers=dict(h.split("=", 1)[1].split(": ", 1) for h in args[5:7]))
        assert status == 200
    else:
        assert json.loads(result.stdout)["state"] == "installed"
    assert server.store.show(name)["state"] == "installed"


@pytest.mark.parametrize("name", NAMES)
def test_snippet_does_nothing_without_the_parameters(lab, name, tmp_path):
    env, server, shims, calls = lab
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=vmlinuz root=/dev/sda2 xcentra.callback=http://192.0.2.9/x\n")
    run(argv_of(name, snippets()[name], str(cmdline)), shims)
    assert not os.path.exists(calls)
    assert server.store.show(name)["state"] == "install"


# -- retries: a 503, a 429, a timeout, a refused connection ---------------------------

CURL_NAMES = tuple(name for name in NAMES if name != "preseed")


class ScriptedServer:
    """A Unix-socket HTTP server that answers its connections as scripted, in order:
    a status code, or "hang" (read the request, answer nothing until the client leaves)."""

    def __init__(self, path, script, listen_after=0.0):
        self.path, self.script, self.seen = path, list(script), []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)  # bound, not yet listening: a connection is refused
        self.listen_after = listen_after
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        time.sleep(self.listen_after)
        self.sock.listen(8)
        for action in self.script:
            conn, _addr = self.sock.accept()
            with conn:
                conn.settimeout(60)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                self.seen.append((time.monotonic(), action, request.split(b"\r\n", 1)[0].decode()))
                if action == "hang":
                    while conn.recv(65536):
                        pass
                    continue
                body = b'{"state": "installed"}\n' if action == 200 else b'{"error": "busy"}\n'
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Retry-After: 1\r\nConnection: close\r\n\r\n%s" % (action, len(body), body))

    def close(self):
        self.sock.close()


def curl_shim(shims, socket_path):
    os.makedirs(shims, exist_ok=True)
    path = os.path.join(shims, "curl")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\nexec /usr/bin/curl --unix-socket "%s" "$@"\n' % socket_path)
    os.chmod(path, stat.S_IRWXU)


def cmdline_file(tmp_path, name):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("centra.callback=http://192.0.2.2/api/v1/callback/%s centra.token=%s\n" % (name, "T" * 43))
    return str(cmdline)


@pytest.mark.parametrize("name", CURL_NAMES)
def test_curl_snippets_retry_a_503_and_a_429(name, short_dir, tmp_path):
    server = ScriptedServer(os.path.join(short_dir, "r.sock"), [503, 429, 200])
    curl_shim(os.path.join(short_dir, "bin"), server.path)
    try:
        result = run(argv_of(name, snippets()[name], cmdline_file(tmp_path, name)), os.path.join(short_dir, "bin"))
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert [action for _at, action, _line in server.seen] == [503, 429, 200]
    assert all(line == "POST /api/v1/callback/%s HTTP/1.1" % name for _at, _action, line in server.seen)
    # The 503 and the 429 each said Retry-After: 1, and curl waited for it.
    assert server.seen[2][0] - server.seen[0][0] >= 1.9


def test_curl_snippet_retries_a_timeout_and_a_refused_connection(short_dir, tmp_path):
    """The same flags; the per-attempt limit cut from 30 s to 2 s to keep the test short."""
    text = snippets()["posix"]
    assert " -m 30 " in text
    text = text.replace(" -m 30 ", " -m 2 ")
    socket_path = os.path.join(short_dir, "r.sock")
    curl_shim(os.path.join(short_dir, "bin"), socket_path)
    server = ScriptedServer(socket_path, ["hang", 200], listen_after=1.5)
    try:
        result = run(argv_of("posix", text, cmdline_file(tmp_path, "posix")), os.path.join(short_dir, "bin"))
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert [action for _at, action, _line in server.seen] == ["hang", 200]
    assert "Couldn't connect" in result.stderr or "Failed to connect" in result.stderr
    assert "timed out" in result.stderr


def wget_shims(shims, failures):
    """wget fails its first `failures` calls (as BusyBox wget does on a 503 or a timeout);
    sleep records its argument and returns at once."""
    os.makedirs(shims, exist_ok=True)
    log = os.path.join(shims, "log")
    for tool, body in (
            ("wget", 'printf "wget\\n" >>"%s"\n[ "$(grep -c wget "%s")" -gt %d ]\n' % (log, log, failures)),
            ("sleep", 'printf "sleep %%s\\n" "$1" >>"%s"\n' % log)):
        path = os.path.join(shims, tool)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\n" + body)
        os.chmod(path, stat.S_IRWXU)
    return log


@pytest.mark.parametrize("failures, calls, returncode", [
    (2, ["wget", "sleep 1", "wget", "sleep 2", "wget"], 0),
    (99, ["wget", "sleep 1", "wget", "sleep 2", "wget", "sleep 4", "wget", "sleep 8", "wget", "sleep 16", "wget",
          "sleep 0"], 1),
])
def test_wget_snippet_retries_with_a_bounded_backoff(failures, calls, returncode, short_dir, tmp_path):
    shims = os.path.join(short_dir, "bin")
    log = wget_shims(shims, failures)
    result = run(argv_of("preseed", snippets()["preseed"], cmdline_file(tmp_path, "preseed")), shims)
    with open(log) as handle:
        assert handle.read().splitlines() == calls
    assert (result.returncode != 0) == bool(returncode), result.stderr
