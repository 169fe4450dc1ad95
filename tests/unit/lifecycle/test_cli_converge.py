# SPDX-License-Identifier: GPL-3.0-or-later
"""The subcommands the converge uses: check-config and check-plan (validate: of the
config and plan files), init-secret and install-secret (the HA pair's shared secret)
and rearm --dry-run (check mode of playbooks/reinstall.yml)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest

from conftest import PROGRAM, mac_of, node

M1 = mac_of(1)


def run(env, *args, stdin=None):
    base = [sys.executable, PROGRAM, "--state-dir", env.state_dir, "--plan", env.plan,
            "--scripts-dir", env.scripts_dir, "--config", env.config_path]
    return subprocess.run(base + list(args), input=stdin, capture_output=True, text=True, check=False)


def test_check_config(env):
    env.write_config(peers=["http://192.0.2.3"], stall_seconds=600)
    assert run(env, "check-config").returncode == 0
    env.write_config(workers=0)
    out = run(env, "check-config")
    assert out.returncode == 1 and "workers must be a positive integer" in out.stderr
    with open(env.config_path, "w") as handle:
        handle.write('{"callback_base": "http://192.0.2.2", "typo": 1}')
    out = run(env, "check-config")
    assert out.returncode == 1 and "unknown key 'typo'" in out.stderr
    os.unlink(env.config_path)
    out = run(env, "check-config")
    assert out.returncode == 1 and "no config file" in out.stderr


def test_check_plan_touches_no_state(env):
    env.write_plan([node("n1", [M1]), node("n2", [mac_of(2)], boot="local")], digest="d-42")
    out = run(env, "check-plan")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"plan_digest": "d-42", "nodes": 2}
    assert os.listdir(env.state_dir) == []
    env.write_plan([node("n1", [M1]), node("n2", [M1])])
    out = run(env, "check-plan")
    assert out.returncode == 1 and "MAC 52:54:00:00:01:01: on n1 and n2" in out.stderr
    with open(env.plan, "w") as handle:
        handle.write("{not json")
    assert run(env, "check-plan").returncode == 1


def test_init_secret_creates_once_and_never_prints_it(env):
    out = run(env, "init-secret")
    assert out.returncode == 0 and json.loads(out.stdout) == {"changed": True}
    secret = env.secret()
    assert len(secret) == 32 and stat.S_IMODE(os.stat(os.path.join(env.state_dir, "secret")).st_mode) == 0o600
    out = run(env, "init-secret")
    assert json.loads(out.stdout) == {"changed": False} and env.secret() == secret
    for text in (out.stdout, out.stderr):
        assert base64.b64encode(secret).decode() not in text and secret.hex() not in text


def test_install_secret_replaces_and_reports(env):
    run(env, "init-secret")
    peer = os.urandom(32)
    encoded = base64.b64encode(peer).decode()
    out = run(env, "install-secret", stdin=encoded + "\n")
    assert out.returncode == 0 and json.loads(out.stdout) == {"changed": True}
    assert env.secret() == peer and stat.S_IMODE(os.stat(os.path.join(env.state_dir, "secret")).st_mode) == 0o600
    out = run(env, "install-secret", stdin=encoded)
    assert json.loads(out.stdout) == {"changed": False}
    assert encoded not in out.stdout + out.stderr
    assert not [name for name in os.listdir(env.state_dir) if name.endswith(".tmp")]


@pytest.mark.parametrize("stdin, message", [
    ("not base64 at all!", "not base64"),
    (base64.b64encode(b"short").decode(), "at least 32 bytes"),
])
def test_install_secret_refuses(env, stdin, message):
    run(env, "init-secret")
    before = env.secret()
    out = run(env, "install-secret", stdin=stdin)
    assert out.returncode == 1 and message in out.stderr
    assert env.secret() == before


def test_rearm_dry_run_changes_nothing(env):
    env.write_plan([node("n1", [M1]), node("n2", [mac_of(2)], boot="netboot")])
    out = run(env, "rearm", "--dry-run", "n1")
    assert out.returncode == 1 and "no state" in out.stderr and os.listdir(env.state_dir) == []
    run(env, "sync")
    before = env.boot_file(M1)
    out = run(env, "rearm", "--dry-run", "n1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"changed": True, "dry_run": True,
                                      "nodes": {"n1": {"generation": [1, 2], "state": ["install", "install"]}}}
    shown = json.loads(run(env, "show", "n1").stdout)
    assert shown["generation"] == 1 and shown["events"] == [] and env.boot_file(M1) == before
    out = run(env, "rearm", "--dry-run", "n2")
    assert out.returncode == 1 and "boots netboot, not install" in out.stderr
    out = run(env, "rearm", "--dry-run", "ghost")
    assert out.returncode == 1 and "unknown node" in out.stderr
    out = run(env, "rearm", "n1")
    assert json.loads(out.stdout)["nodes"]["n1"]["generation"] == [1, 2]


def test_rearm_to_a_generation_is_idempotent(env):
    # The servers of an HA pair are re-armed to one generation: the one a peer pull
    # already brought is left alone, so both end at the same token.
    env.write_plan([node("n1", [M1]), node("n2", [mac_of(2)])])
    run(env, "sync")
    out = run(env, "rearm", "--generation", "3", "n1", "n2")
    assert json.loads(out.stdout) == {"changed": True, "nodes": {
        "n1": {"generation": [1, 3], "state": ["install", "install"]},
        "n2": {"generation": [1, 3], "state": ["install", "install"]}}}
    assert "centra.token=%s\n" % env.token("n1", 3) in env.boot_file(M1)
    assert json.loads(run(env, "rearm", "--generation", "3", "n1").stdout) == {"changed": False, "nodes": {}}
    assert json.loads(run(env, "rearm", "--dry-run", "--generation", "2", "n1").stdout)["changed"] is False
    out = run(env, "rearm", "--dry-run", "--generation", "4", "n1")
    assert json.loads(out.stdout)["nodes"] == {"n1": {"generation": [3, 4], "state": ["install", "install"]}}
    shown = json.loads(run(env, "show", "n1").stdout)
    assert shown["generation"] == 3 and [e["event"] for e in shown["events"]] == ["rearm"]


def _plan_text(nodes, digest):
    return json.dumps({"digest": digest, "nodes": nodes}, sort_keys=True)


def test_apply_plan_writes_a_changed_plan_syncs_and_then_has_nothing_to_do(env):
    text = _plan_text([node("n1", [M1])], "d-1")
    first = run(env, "apply-plan", stdin=text)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["changed"] and result["plan_written"] and result["added"] == ["n1"]
    with open(env.plan, encoding="utf-8") as handle:
        assert handle.read() == text + "\n"
    assert stat.S_IMODE(os.stat(env.plan).st_mode) == 0o644
    again = json.loads(run(env, "apply-plan", stdin=text).stdout)
    assert not again["changed"] and not again["plan_written"]


def test_apply_plan_check_reports_and_changes_nothing(env):
    run(env, "apply-plan", stdin=_plan_text([node("n1", [M1])], "d-1"))
    before = open(env.plan, encoding="utf-8").read()
    out = run(env, "apply-plan", "--check", stdin=_plan_text([node("n1", [M1]), node("n2", [mac_of(2)])], "d-2"))
    assert out.returncode == 0 and json.loads(out.stdout)["changed"] is True
    assert open(env.plan, encoding="utf-8").read() == before
    assert [entry["name"] for entry in json.loads(run(env, "show").stdout)] == ["n1"]


def test_apply_plan_refuses_a_bad_plan_and_keeps_the_old_one(env):
    good = _plan_text([node("n1", [M1])], "d-1")
    run(env, "apply-plan", stdin=good)
    out = run(env, "apply-plan", stdin=_plan_text([node("n1", [M1]), node("n2", [M1])], "d-bad"))
    assert out.returncode == 1 and "MAC 52:54:00:00:01:01: on n1 and n2" in out.stderr
    assert open(env.plan, encoding="utf-8").read() == good + "\n"
    assert [f for f in os.listdir(os.path.dirname(env.plan)) if f.startswith(".plan-")] == []
