# SPDX-License-Identifier: GPL-3.0-or-later
"""Tokens, the state store, transitions, sync with the plan, boot files and the peer merge."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac

from conftest import lc, mac_of, node

M1, M2, M3 = mac_of(1), mac_of(1, 2), mac_of(2)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- tokens, MACs, secret, config ---------------------------------------------------

def test_token_is_hmac_of_name_and_generation():
    secret = b"s" * 32
    token = lc.make_token(secret, "node01", 1)
    assert lc.TOKEN_RE.match(token) and "=" not in token
    assert token == lc.make_token(secret, "node01", 1)
    others = {lc.make_token(secret, "node01", 2), lc.make_token(secret, "node02", 1),
              lc.make_token(b"t" * 32, "node01", 1)}
    assert token not in others and len(others) == 3
    assert lc.token_matches(secret, "node01", 1, token)
    assert not lc.token_matches(secret, "node01", 2, token)
    # A peer signature is keyed differently: a token never passes for one.
    assert lc.peer_signature(secret, "GET", "/x", "1", b"") != lc.peer_signature(b"t" * 32, "GET", "/x", "1", b"")


@pytest.mark.parametrize("text", ["52:54:00:AB:cd:01", "52-54-00-ab-CD-01", "5254.00ab.cd01", "525400abcd01"])
def test_canonical_mac_forms(text):
    assert lc.canonical_mac(text) == "52:54:00:ab:cd:01"


@pytest.mark.parametrize("text", ["52:54:00:ab:cd", "52:54-00:ab:cd:01", "../../etc/passwd", "52:54:00:ab:cd:0g", ""])
def test_canonical_mac_refuses(text):
    assert lc.canonical_mac(text) is None


def test_secret_created_0600_and_kept(env):
    store = env.store()
    path = os.path.join(env.state_dir, "secret")
    assert mode(path) == 0o600 and len(env.secret()) == 32
    first = env.secret()
    store.close()
    env.store().close()
    assert env.secret() == first
    assert mode(os.path.join(env.state_dir, "lifecycle.db")) == 0o600


def test_short_secret_refused(env):
    with open(os.path.join(env.state_dir, "secret"), "wb") as handle:
        handle.write(b"short")
    with pytest.raises(lc.LifecycleError, match="at least 32"):
        env.store()


@pytest.mark.parametrize("config, message", [
    ({"bogus": 1}, "unknown key"), ({"peers": "http://x"}, "peers"), ({"peers": ["ftp://x"]}, "peers"),
    ({"workers": 0}, "workers"), ({"workers": True}, "workers"), ({"callback_base": "javascript:x"}, "callback_base"),
])
def test_config_refused(env, config, message):
    with open(env.config_path, "w") as handle:
        json.dump(config, handle)
    with pytest.raises(lc.LifecycleError, match=message):
        lc.load_config(env.config_path)


def test_config_defaults_and_values(env):
    assert lc.load_config(os.path.join(env.base, "missing.json"))["workers"] == 8
    env.write_config(peers=["http://192.0.2.3"], callback_base="http://192.0.2.2/")
    config = lc.load_config(env.config_path)
    assert config["peers"] == ["http://192.0.2.3"] and config["callback_base"] == "http://192.0.2.2"


# -- sync and boot files ------------------------------------------------------------

def test_sync_creates_states_and_files(env):
    env.write_plan([node("n1", [M1, M2]), node("n2", [M3], boot="netboot"), node("n3", [mac_of(3)], boot="local"),
                    node("n4", [mac_of(4)], boot="menu")])
    store = env.store()
    result = store.sync(env.plan)
    assert sorted(result["added"]) == ["n1", "n2", "n3", "n4"] and result["changed"]
    assert {n["name"]: n["state"] for n in store.show()} == {"n1": "install", "n2": "netboot", "n3": "local", "n4": "menu"}
    text = env.boot_file(M1)
    assert "centra.token=%s\n" % env.token("n1", 1) in text
    assert "centra.callback=http://192.0.2.2/api/v1/callback/n1 " in text
    assert "@CENTRA" not in text and env.boot_file(M2) == text
    assert env.boot_file(M3) is None and env.boot_file(mac_of(3)) is None  # non-install nodes: static tree
    boot = os.path.join(env.state_dir, "boot")
    assert mode(env.state_dir) == mode(boot) == mode(os.path.join(boot, "nodes")) == 0o755
    assert mode(os.path.join(boot, "nodes", format_mac(M1, "hyphen") + ".ipxe")) == 0o644
    expected = sorted([format_mac(M1, "hyphen") + ".ipxe", format_mac(M2, "hyphen") + ".ipxe"])
    assert sorted(os.listdir(os.path.join(boot, "nodes"))) == expected
    again = store.sync(env.plan)
    assert not again["changed"] and again["files_written"] == [] and store.meta("plan_digest") == "digest-1"


def test_sync_keeps_state_of_present_nodes(env):
    env.write_plan([node("n1", [M1]), node("n2", [M3])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "installed", "done")
    env.write_plan([node("n1", [M1, M2], profile="other"), node("n5", [mac_of(5)])], digest="digest-2")
    result = store.sync(env.plan)
    assert result["removed"] == ["n2"] and result["added"] == ["n5"]
    n1 = store.show("n1")
    assert n1["state"] == "installed" and n1["generation"] == 1 and n1["profile"] == "other" and n1["macs"] == [M1, M2]
    assert "sanboot" in env.boot_file(M1) and "sanboot" in env.boot_file(M2)
    assert env.boot_file(M3) is None  # the removed node's file is gone
    assert store.show("n2") is None and store.meta("plan_digest") == "digest-2"


def test_removed_node_loses_state_and_comes_back_with_new_generation(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    old = env.token("n1", 1)
    store.callback("n1", old, "installed", None)
    env.write_plan([])
    assert store.sync(env.plan)["removed"] == ["n1"]
    assert store.show() == [] and store.events("n1") == []
    env.write_plan([node("n1", [M1])])
    store.sync(env.plan)
    again = store.show("n1")
    assert again["state"] == "install" and again["generation"] == 2 and again["last_event"] is None
    with pytest.raises(PermissionError):
        store.callback("n1", old, "started", None)


def test_boot_mode_changes_reset_state(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "installed", None)
    env.write_plan([node("n1", [M1], boot="netboot")])
    assert store.sync(env.plan)["boot_changed"] == ["n1"]
    assert store.show("n1")["state"] == "netboot" and env.boot_file(M1) is None
    with pytest.raises(lc.Conflict):
        store.callback("n1", env.token("n1", 1), "started", None)
    env.write_plan([node("n1", [M1], boot="install")])
    store.sync(env.plan)
    shown = store.show("n1")
    assert shown["state"] == "install" and shown["generation"] == 2
    assert env.token("n1", 2) in env.boot_file(M1)


@pytest.mark.parametrize("bad", [
    {"name": "../../etc", "profile": "worker", "boot": "install", "macs": [M1]},
    {"name": "n1", "profile": "worker", "boot": "install", "macs": ["52-54-00-00-01-01"]},
    {"name": "n1", "profile": "worker", "boot": "reinstall", "macs": [M1]},
    {"name": "n1", "profile": "a/b", "boot": "install", "macs": [M1]},
    {"name": "n9", "profile": "worker", "boot": "install", "macs": [M3]},  # M3 is n2's
    "not an object",
])
def test_bad_plan_changes_nothing(env, bad):
    env.write_plan([node("n1", [M1]), node("n2", [M3])])
    store = env.store()
    store.sync(env.plan)
    before = store.show()
    files = sorted(os.listdir(os.path.join(env.state_dir, "boot", "nodes")))
    with open(env.plan, "w") as handle:
        json.dump({"nodes": [node("n2", [M3]), bad]}, handle)
    with pytest.raises(lc.LifecycleError):
        store.sync(env.plan)
    assert store.show() == before
    assert sorted(os.listdir(os.path.join(env.state_dir, "boot", "nodes"))) == files


def test_missing_plan_changes_nothing(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    os.unlink(env.plan)
    with pytest.raises(lc.LifecycleError, match="cannot read the plan"):
        store.sync(env.plan)
    assert store.show("n1")["state"] == "install"


def test_a_mac_that_changes_node_moves_with_its_boot_file(env):
    env.write_plan([node("n1", [M1, M2]), node("n2", [M3])])
    store = env.store()
    store.sync(env.plan)
    env.write_plan([node("n1", [M1]), node("n2", [M3, M2])], digest="digest-2")
    assert store.sync(env.plan)["changed"]
    assert store.show("n1")["macs"] == [M1] and store.show("n2")["macs"] == [M2, M3]
    assert env.token("n2", 1) in env.boot_file(M2) and env.token("n1", 1) not in env.boot_file(M2)
    assert store.find(M2) == "n2"
    assert not store.sync(env.plan)["changed"]


def test_grub_configs_follow_their_sources(env):
    """A node of the grub chain has a GRUB config among its variants: the boot file is written
    with its token, and removed by the next sync once the source is gone (the node left the
    grub chain); nodes of the iPXE chain get none."""
    env.write_plan([node("n1", [M1]), node("n2", [M3])])
    hyphen = format_mac(M1, "hyphen")
    for variant in ("install", "local"):
        with open(os.path.join(env.scripts_dir, variant, hyphen + lc.GRUB_SUFFIX), "w") as handle:
            handle.write("linux /k centra.token=@CENTRA_TOKEN@\n")
    store = env.store()
    store.sync(env.plan)
    nodes_dir = os.path.join(env.state_dir, "boot", "nodes")
    with open(os.path.join(nodes_dir, hyphen + lc.GRUB_SUFFIX)) as handle:
        assert handle.read() == "linux /k centra.token=%s\n" % env.token("n1", 1)
    assert format_mac(M3, "hyphen") + lc.GRUB_SUFFIX not in os.listdir(nodes_dir)
    for variant in ("install", "local"):
        os.unlink(os.path.join(env.scripts_dir, variant, hyphen + lc.GRUB_SUFFIX))
    result = store.sync(env.plan)
    assert result["files_removed"] == [hyphen + lc.GRUB_SUFFIX]
    assert sorted(os.listdir(nodes_dir)) == sorted(format_mac(m, "hyphen") + ".ipxe" for m in (M1, M3))


def test_sync_repairs_boot_files(env):
    env.write_plan([node("n1", [M1, M2]), node("n2", [M3])])
    store = env.store()
    store.sync(env.plan)
    # A crash between the commit and the file: the DB says installed, the file does not.
    with sqlite3.connect(os.path.join(env.state_dir, "lifecycle.db")) as db:
        db.execute("UPDATE nodes SET state = 'installed' WHERE name = 'n1'")
    nodes_dir = os.path.join(env.state_dir, "boot", "nodes")
    os.unlink(os.path.join(nodes_dir, format_mac(M3, "hyphen") + ".ipxe"))
    with open(os.path.join(nodes_dir, "52-54-00-99-99-99.ipxe"), "w") as handle:
        handle.write("stray")
    with open(os.path.join(nodes_dir, "x.tmp"), "w") as handle:
        handle.write("left by a crash")
    os.symlink("/etc/passwd", os.path.join(nodes_dir, "evil"))
    result = store.sync(env.plan)
    assert sorted(result["files_written"]) == sorted(format_mac(f, "hyphen") + ".ipxe" for f in (M1, M2, M3))
    assert "sanboot" in env.boot_file(M1) and "sanboot" in env.boot_file(M2)
    assert env.token("n2", 1) in env.boot_file(M3)
    assert sorted(os.listdir(nodes_dir)) == sorted(format_mac(f, "hyphen") + ".ipxe" for f in (M1, M2, M3))
    # A symlink planted in place of a boot file is replaced, never followed.
    os.unlink(os.path.join(nodes_dir, format_mac(M3, "hyphen") + ".ipxe"))
    os.symlink("/etc/hostname", os.path.join(nodes_dir, format_mac(M3, "hyphen") + ".ipxe"))
    store.sync(env.plan)
    assert not os.path.islink(os.path.join(nodes_dir, format_mac(M3, "hyphen") + ".ipxe"))
    assert env.token("n2", 1) in env.boot_file(M3)


def test_missing_variant_leaves_static_tree(env):
    env.write_plan([node("n1", [M1])])
    os.unlink(os.path.join(env.scripts_dir, "local", format_mac(M1, "hyphen") + ".ipxe"))
    store = env.store()
    store.sync(env.plan)
    assert env.boot_file(M1) is not None
    store.callback("n1", env.token("n1", 1), "installed", None)
    assert env.boot_file(M1) is None  # no local variant: nginx falls back to the static tree


# -- transitions --------------------------------------------------------------------

ALLOWED = {
    ("install", "started"): "installing", ("installing", "started"): "installing", ("failed", "started"): "installing",
    ("install", "installed"): "installed", ("installing", "installed"): "installed",
    ("failed", "installed"): "installed",
    ("install", "failed"): "failed", ("installing", "failed"): "failed",
}


@pytest.mark.parametrize("state", ["install", "installing", "installed", "failed"])
@pytest.mark.parametrize("event", ["started", "installed", "failed"])
def test_transitions(env, state, event):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    with sqlite3.connect(os.path.join(env.state_dir, "lifecycle.db")) as db:
        db.execute("UPDATE nodes SET state = ? WHERE name = 'n1'", (state,))
    expected = ALLOWED.get((state, event))
    if expected is None:
        with pytest.raises(lc.Conflict):
            store.callback("n1", env.token("n1", 1), event, None)
        assert store.show("n1")["state"] == state
    else:
        result = store.callback("n1", env.token("n1", 1), event, "msg")
        assert result["state"] == expected == store.show("n1")["state"]
        assert store.show("n1")["last_event"]["event"] == event
        if expected == "installed":
            assert "sanboot" in env.boot_file(M1) and "kernel" not in env.boot_file(M1)
        else:
            assert env.token("n1", 1) in env.boot_file(M1)


def test_install_times_and_events(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "started", None)
    time.sleep(0.05)
    store.callback("n1", env.token("n1", 1), "installed", "ok")
    shown = store.show("n1")
    assert shown["install_duration_seconds"] >= 0.05 and shown["installed_at"].endswith("Z")
    assert [e["event"] for e in store.events("n1")] == ["started", "installed"]


def test_rearm(env):
    env.write_plan([node("n1", [M1]), node("n2", [M3], boot="netboot")])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "installed", None)
    result = store.rearm(["n1"])
    assert result == {"changed": True, "nodes": {"n1": {"generation": [1, 2], "state": ["installed", "install"]}}}
    assert env.token("n1", 2) in env.boot_file(M1) and env.token("n1", 1) not in env.boot_file(M1)
    with pytest.raises(PermissionError):
        store.callback("n1", env.token("n1", 1), "started", None)
    with pytest.raises(lc.LifecycleError, match="unknown node"):
        store.rearm(["n1", "nope"])
    with pytest.raises(lc.LifecycleError, match="boots netboot"):
        store.rearm(["n2"])
    assert store.show("n1")["generation"] == 2  # a refused rearm changes nothing


def test_forget_starts_over(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "installed", None)
    result = store.forget(["n1", "ghost"], env.plan)
    assert result["forgotten"] == ["n1"] and result["sync"]["added"] == ["n1"]
    assert store.show("n1")["generation"] == 2 and env.token("n1", 2) in env.boot_file(M1)


def test_events_pruned_by_count_and_age(env):
    env.config["events_per_node"] = 5
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    for _index in range(10):
        store.callback("n1", env.token("n1", 1), "started", None)
    assert len(store.events("n1")) == 5
    with sqlite3.connect(os.path.join(env.state_dir, "lifecycle.db")) as db:
        db.execute("UPDATE events SET at = at - 100 * 86400")
    assert store.prune_events() == 5 and store.events("n1") == []


def test_schema_versioned_and_state_kept_on_reopen(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "started", None)
    store.close()
    store = env.store()
    assert store.meta("schema") == str(lc.SCHEMA_VERSION) and store.show("n1")["state"] == "installing"
    with sqlite3.connect(os.path.join(env.state_dir, "lifecycle.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    store.close()
    with pytest.raises(lc.LifecycleError, match="newer than this program"):
        env.store()


# -- peer merge ---------------------------------------------------------------------

def record(name="n1", generation=1, state="installed", at=None, **extra):
    rec = {"name": name, "generation": generation, "state": state, "state_at": at or time.time(),
           "last_event": extra.get("last_event", "installed" if state == "installed" else None),
           "last_event_at": at, "message": extra.get("message"), "install_started_at": None, "installed_at": at}
    return rec


def test_merge_applies_newer_and_materializes(env):
    env.write_plan([node("n1", [M1]), node("n2", [M3], boot="netboot")])
    store = env.store()
    store.sync(env.plan)
    installed = record()
    assert store.merge([installed], "peer-push") == ["n1"]
    assert store.show("n1")["state"] == "installed" and "sanboot" in env.boot_file(M1)
    assert store.merge([installed], "peer-push") == []  # same record again: not newer
    assert store.merge([record(name="n2"), record(name="ghost")], "peer-push") == []  # netboot, unknown: ignored
    assert store.show("n2")["state"] == "netboot"


def test_merge_order(env):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    store.callback("n1", env.token("n1", 1), "installed", None)
    # Same generation: install is never newer than installed, whatever the clocks say.
    assert store.merge([record(state="install", at=time.time() + 1000)], "peer-pull") == []
    assert store.merge([record(state="installing", at=time.time() + 1000)], "peer-pull") == []
    # A higher generation is a rearm this server missed: adopted.
    assert store.merge([record(generation=2, state="install", at=time.time() - 1000)], "peer-pull") == ["n1"]
    assert store.show("n1")["generation"] == 2 and env.token("n1", 2) in env.boot_file(M1)
    # installing vs failed: the later one wins; a lower generation never does.
    t = time.time()
    assert store.merge([record(generation=2, state="failed", at=t)], "p") == ["n1"]
    assert store.merge([record(generation=2, state="installing", at=t - 1)], "p") == []
    assert store.merge([record(generation=2, state="installing", at=t + 1)], "p") == ["n1"]
    assert store.merge([record(generation=1, state="installed", at=t + 9)], "p") == []
    assert store.show("n1")["state"] == "installing"


@pytest.mark.parametrize("garbage", [
    None, [], "x", {"name": "../x", "generation": 1, "state": "installed", "state_at": 1},
    {"name": "n1", "generation": 0, "state": "installed", "state_at": 1},
    {"name": "n1", "generation": True, "state": "installed", "state_at": 1},
    {"name": "n1", "generation": 1, "state": "netboot", "state_at": 1},
    {"name": "n1", "generation": 1, "state": "installed", "state_at": "soon"},
    {"name": "n1", "generation": 1, "state": "installed", "state_at": float("nan")},
    {"name": "n1", "generation": 1, "state": "installed", "state_at": 1e12, "message": "\x1b[31m"},
])
def test_merge_ignores_garbage(env, garbage):
    env.write_plan([node("n1", [M1])])
    store = env.store()
    store.sync(env.plan)
    assert store.merge([garbage], "p") == []
    assert store.show("n1")["state"] == "install"


def test_find_by_name_that_looks_like_a_mac(env):
    env.write_plan([node("cafe00000001", [M1]), node("n2", [M3])])
    store = env.store()
    store.sync(env.plan)
    assert store.show("cafe00000001")["name"] == "cafe00000001"
    assert store.show(format_mac(M1, "bare").upper())["name"] == "cafe00000001"
    assert store.show(format_mac(M3, "hyphen"))["name"] == "n2"
    assert store.show("52:54:00:99:99:99") is None and store.show("../n2") is None


# -- group commit ---------------------------------------------------------------------

def test_concurrent_callbacks_share_one_commit_and_a_refused_one_changes_nothing(env):
    """Callbacks that wait while the lock is held are applied together by the next holder:
    each gets its own answer, a refused or conflicting one leaves no trace, the rest apply
    and every applied node has its boot file before its caller returns."""
    names = ["n%d" % i for i in range(1, 7)]
    env.write_plan([node(name, [mac_of(i + 1)]) for i, name in enumerate(names)])
    store = env.store()
    store.sync(env.plan)
    commits = []
    real_transaction = store._transaction

    def counting_transaction():
        commits.append(1)
        return real_transaction()

    store._transaction = counting_transaction
    calls = {"n1": (env.token("n1", 1), "installed"), "n2": (env.token("n2", 1), "started"),
             "n3": (env.token("n4", 1), "installed"),   # another node's token: refused
             "n4": (env.token("n4", 1), "installed"), "n5": (env.token("n5", 1), "installed"),
             "n6": (env.token("n6", 1), "installed")}
    outcomes = {}
    threads = []
    with store._exclusive():  # hold the lock: every callback queues behind it
        for name, (token, event) in calls.items():
            def call(name=name, token=token, event=event):
                try:
                    outcomes[name] = store.callback(name, token, event, "msg")["state"]
                except (PermissionError, lc.Conflict) as exc:
                    outcomes[name] = type(exc).__name__
            thread = threading.Thread(target=call)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + 10
        while len(store._pending) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._pending) == len(calls)
    for thread in threads:
        thread.join(10)
    assert outcomes == {"n1": "installed", "n2": "installing", "n3": "PermissionError", "n4": "installed",
                        "n5": "installed", "n6": "installed"}
    assert len(commits) == 1  # one transaction for all six
    assert store.show("n3")["state"] == "install" and store.events("n3") == []
    for i, name in enumerate(names):
        expected = {"installed": "sanboot", "installing": "centra.token=", "PermissionError": "centra.token="}[outcomes[name]]
        assert expected in env.boot_file(mac_of(i + 1)), name
    # A second event for the same node in one batch sees the first one's effect.
    store2_calls = [("n2", "installed"), ("n2", "installed")]
    results = []
    with store._exclusive():
        for name, event in store2_calls:
            def again(name=name, event=event):
                try:
                    results.append(store.callback(name, env.token(name, 1), event, None)["state"])
                except lc.Conflict:
                    results.append("Conflict")
            thread = threading.Thread(target=again)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + 10
        while len(store._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    assert sorted(results) == ["Conflict", "installed"]
    store.close()


def test_a_failed_group_commit_answers_every_caller_and_leaves_nobody_waiting(env):
    names = ["n1", "n2", "n3"]
    env.write_plan([node(name, [mac_of(i + 1)]) for i, name in enumerate(names)])
    store = env.store()
    store.sync(env.plan)
    real_materialize = store._materialize
    failures = []

    def failing_once(names=None):
        if not failures:
            failures.append(names)
            raise OSError("disk full")
        return real_materialize(names)

    store._materialize = failing_once
    outcomes = {}
    threads = []
    with store._exclusive():
        for name in ("n1", "n2"):
            def call(name=name):
                try:
                    outcomes[name] = store.callback(name, env.token(name, 1), "started", None)["state"]
                except OSError as exc:
                    outcomes[name] = str(exc)
            thread = threading.Thread(target=call)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + 10
        while len(store._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    assert outcomes == {"n1": "disk full", "n2": "disk full"} and store._pending == []
    # The next callback is applied as usual, and sync repairs the boot files the failure skipped.
    assert store.callback("n3", env.token("n3", 1), "installed", None)["state"] == "installed"
    assert "sanboot" in env.boot_file(mac_of(3))
    store.sync(env.plan)
    store.close()
