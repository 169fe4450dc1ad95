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
import stat
import subprocess

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
        assert args == ["-q", "-O", "/dev/null", "--header=Authorization: Bearer %s" % token,
                        "--header=Content-Type: application/json", '--post-data={"event":"installed"}',
                        "http://192.0.2.2/api/v1/callback/%s" % name]
        status, _answer = Client(server.client.path).request(
            "POST", "/api/v1/callback/" + name, body=args[5].split("=", 1)[1],
            headers=dict(h.split("=", 1)[1].split(": ", 1) for h in args[3:5]))
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
