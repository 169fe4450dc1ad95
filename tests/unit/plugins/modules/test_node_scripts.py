# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import os

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.centra.pxe.plugins.module_utils._plan import BOOT_MODES, dump_plan
from ansible_collections.centra.pxe.plugins.modules import node_scripts
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


def make_plan(nodes):
    return dump_plan(build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                                {n: {"groups": ["worker"], "pxe_mac": m} for n, m in nodes.items()}))


@pytest.fixture(name="run")
def fixture_run(capsys, ipxe_settings):
    def run(**args):
        args.setdefault("http_base", "http://192.0.2.2")
        args.setdefault("settings", ipxe_settings)
        with patch_module_args(args), pytest.raises(SystemExit):
            node_scripts.main()
        return json.loads(capsys.readouterr().out)
    return run


def test_writes_updates_and_removes(tmp_path, run):
    dest = str(tmp_path / "nodes")
    plan = make_plan({"a": "52:54:00:00:00:0a", "b": ["52:54:00:00:00:0b", "52:54:00:00:00:0c"]})

    first = run(plan=plan, dest=dest)
    assert first["changed"] and first["count"] == 3
    assert sorted(os.listdir(dest)) == ["52-54-00-00-00-0a.ipxe", "52-54-00-00-00-0b.ipxe", "52-54-00-00-00-0c.ipxe"]
    assert oct(os.stat(os.path.join(dest, "52-54-00-00-00-0a.ipxe")).st_mode & 0o777) == "0o644"

    again = run(plan=plan, dest=dest)
    assert not again["changed"] and again["added"] == again["updated"] == again["removed"] == []

    smaller = make_plan({"a": "52:54:00:00:00:0a"})
    (tmp_path / "nodes" / "notes.txt").write_text("operator file, not ours")
    third = run(plan=smaller, dest=dest)
    assert third["changed"] and third["removed"] == ["52-54-00-00-00-0b.ipxe", "52-54-00-00-00-0c.ipxe"]
    assert sorted(os.listdir(dest)) == ["52-54-00-00-00-0a.ipxe", "notes.txt"]


def test_check_mode_reports_and_changes_nothing(tmp_path, run):
    dest = str(tmp_path / "nodes")
    plan = make_plan({"a": "52:54:00:00:00:0a"})
    result = run(plan=plan, dest=dest, _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] and result["added"] == ["52-54-00-00-00-0a.ipxe"]
    assert "add 52-54-00-00-00-0a.ipxe" in result["diff"][0]["after"]
    assert not os.path.exists(dest)


def test_override_changes_one_nodes_boot_mode(tmp_path, run):
    dest = str(tmp_path / "nodes")
    plan = make_plan({"a": "52:54:00:00:00:0a"})
    run(plan=plan, dest=dest, override={"a": "local"})
    text = (tmp_path / "nodes" / "52-54-00-00-00-0a.ipxe").read_text()
    assert "kernel" not in text and "exit" in text


def test_a_file_where_the_directory_should_be_fails_clearly(tmp_path, run):
    dest = tmp_path / "nodes"
    dest.write_text("")
    result = run(plan=make_plan({"a": "52:54:00:00:00:0a"}), dest=str(dest))
    assert result["failed"] and "is not a directory" in result["msg"]


def test_boot_forces_every_node(tmp_path, run):
    dest = str(tmp_path / "install")
    plan = make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"})
    run(plan=plan, dest=dest, override={"a": "local"}, boot="install")
    for name in ("52-54-00-00-00-0a.ipxe", "52-54-00-00-00-0b.ipxe"):
        assert "kernel" in (tmp_path / "install" / name).read_text()


def test_node_scripts_do_not_change_when_another_node_is_added(tmp_path, run):
    dest = str(tmp_path / "nodes")
    run(plan=make_plan({"a": "52:54:00:00:00:0a"}), dest=dest)
    second = run(plan=make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"}), dest=dest)
    assert second["added"] == ["52-54-00-00-00-0b.ipxe"] and second["updated"] == []


def test_install_dest_writes_every_install_script_in_the_same_run(tmp_path, run):
    dest, install = str(tmp_path / "nodes"), str(tmp_path / "install")
    plan = make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"})
    first = run(plan=plan, dest=dest, install_dest=install, override={"a": "local"})
    assert first["changed"] and first["count"] == 2 and first["install"]["count"] == 2
    assert first["install"]["added"] == ["52-54-00-00-00-0a.ipxe", "52-54-00-00-00-0b.ipxe"]
    # The override applies to nodes/ only: install/ always installs.
    local = (tmp_path / "nodes" / "52-54-00-00-00-0a.ipxe").read_text()
    assert "kernel" not in local and "exit" in local
    for name in ("52-54-00-00-00-0a.ipxe", "52-54-00-00-00-0b.ipxe"):
        assert "kernel" in (tmp_path / "install" / name).read_text()

    again = run(plan=plan, dest=dest, install_dest=install, override={"a": "local"})
    assert not again["changed"] and again["install"]["added"] == again["install"]["removed"] == []

    smaller = make_plan({"b": "52:54:00:00:00:0b"})
    third = run(plan=smaller, dest=dest, install_dest=install, _ansible_check_mode=True, _ansible_diff=True)
    assert third["changed"] and third["install"]["removed"] == ["52-54-00-00-00-0a.ipxe"]
    assert [d["before_header"] for d in third["diff"]] == [dest, install]
    assert sorted(os.listdir(install)) == ["52-54-00-00-00-0a.ipxe", "52-54-00-00-00-0b.ipxe"], "check mode wrote"


def test_settings_are_required_and_complete(tmp_path, run, ipxe_settings):
    plan = make_plan({"a": "52:54:00:00:00:0a"})
    result = run(plan=plan, dest=str(tmp_path / "nodes"), settings={k: v for k, v in ipxe_settings.items() if k != "console"})
    assert result["failed"] and "the iPXE settings lack console" in result["msg"]
    assert not (tmp_path / "nodes").exists()


def test_the_documented_boot_modes_are_the_plans():
    assert yaml.safe_load(node_scripts.DOCUMENTATION)["options"]["boot"]["choices"] == list(BOOT_MODES)
