# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
from ansible_collections.centra.pxe.plugins.modules import node_scripts
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


def make_plan(nodes, boot=None):
    boot = boot or {}
    return dump_plan(build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                                {n: dict({"groups": ["worker"], "pxe_mac": m}, **({"pxe_boot": boot[n]} if n in boot else {}))
                                 for n, m in nodes.items()}))


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


def test_a_file_where_the_directory_should_be_fails_clearly(tmp_path, run):
    dest = tmp_path / "nodes"
    dest.write_text("")
    result = run(plan=make_plan({"a": "52:54:00:00:00:0a"}), dest=str(dest))
    assert result["failed"] and "is not a directory" in result["msg"]


def test_node_scripts_do_not_change_when_another_node_is_added(tmp_path, run):
    dest = str(tmp_path / "nodes")
    run(plan=make_plan({"a": "52:54:00:00:00:0a"}), dest=dest)
    second = run(plan=make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"}), dest=dest)
    assert second["added"] == ["52-54-00-00-00-0b.ipxe"] and second["updated"] == []


def test_settings_are_required_and_complete(tmp_path, run, ipxe_settings):
    plan = make_plan({"a": "52:54:00:00:00:0a"})
    result = run(plan=plan, dest=str(tmp_path / "nodes"), settings={k: v for k, v in ipxe_settings.items() if k != "console"})
    assert result["failed"] and "the iPXE settings lack console" in result["msg"]
    assert not (tmp_path / "nodes").exists()


def test_lifecycle_dest_writes_both_variants_of_install_nodes_in_the_same_run(tmp_path, run):
    dest, lifecycle = str(tmp_path / "nodes"), str(tmp_path / "lifecycle")
    plan = make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"}, boot={"b": "netboot"})
    first = run(plan=plan, dest=dest, lifecycle_dest=lifecycle)
    assert first["changed"] and first["count"] == 2
    assert first["lifecycle"]["install"]["added"] == first["lifecycle"]["local"]["added"] == ["52-54-00-00-00-0a.ipxe"]
    assert "centra.token=@CENTRA_TOKEN@" in (tmp_path / "lifecycle" / "install" / "52-54-00-00-00-0a.ipxe").read_text()
    assert "kernel" not in (tmp_path / "lifecycle" / "local" / "52-54-00-00-00-0a.ipxe").read_text()
    # nodes/: the install node boots its disk unless the service serves it; the netboot node its profile.
    assert "kernel" not in (tmp_path / "nodes" / "52-54-00-00-00-0a.ipxe").read_text()
    assert "kernel" in (tmp_path / "nodes" / "52-54-00-00-00-0b.ipxe").read_text()

    again = run(plan=plan, dest=dest, lifecycle_dest=lifecycle)
    assert not again["changed"]

    netboot_only = make_plan({"a": "52:54:00:00:00:0a", "b": "52:54:00:00:00:0b"}, boot={"a": "netboot", "b": "netboot"})
    third = run(plan=netboot_only, dest=dest, lifecycle_dest=lifecycle, _ansible_check_mode=True, _ansible_diff=True)
    assert third["changed"] and third["lifecycle"]["install"]["removed"] == ["52-54-00-00-00-0a.ipxe"]
    assert [d["before_header"] for d in third["diff"]] == [dest, lifecycle + "/install", lifecycle + "/local"]
    assert os.listdir(tmp_path / "lifecycle" / "install") == ["52-54-00-00-00-0a.ipxe"], "check mode wrote"


def test_grub_configs_beside_the_ipxe_scripts(tmp_path, run):
    """grub_dest: the grub chain's configs, for the nodes of the grub chain only; the iPXE
    scripts and the GRUB configs share the lifecycle directories without touching each other."""
    dest, lifecycle, grub = str(tmp_path / "nodes"), str(tmp_path / "lifecycle"), str(tmp_path / "tftp" / "grub")
    plan = dump_plan(build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}}, {
        "a": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:0a", "pxe_loader": "grub"},
        "b": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:0b", "pxe_boot": "netboot"},
    }))
    first = run(plan=plan, dest=dest, lifecycle_dest=lifecycle, grub_dest=grub)
    assert first["changed"] and first["grub"]["nodes"]["added"] == ["52-54-00-00-00-0a.cfg"]
    assert sorted(os.listdir(grub)) == ["grub.cfg", "menu.cfg", "nodes"]
    assert sorted(os.listdir(os.path.join(lifecycle, "install"))) == ["52-54-00-00-00-0a.cfg", "52-54-00-00-00-0a.ipxe"]
    assert "linux /profiles/worker/vmlinuz" in open(os.path.join(lifecycle, "install", "52-54-00-00-00-0a.cfg"),
                                                    encoding="utf-8").read()
    assert not run(plan=plan, dest=dest, lifecycle_dest=lifecycle, grub_dest=grub)["changed"]

    # The server's default grub: b (no pxe_loader of its own) joins the chain.
    second = run(plan=plan, dest=dest, lifecycle_dest=lifecycle, grub_dest=grub, default_loader="grub")
    assert second["grub"]["nodes"]["added"] == ["52-54-00-00-00-0b.cfg"]
    # Without grub_dest (the chain out of use), the lifecycle service's GRUB variants go; its iPXE ones stay.
    third = run(plan=plan, dest=dest, lifecycle_dest=lifecycle)
    assert "grub" not in third and third["changed"]
    assert sorted(os.listdir(os.path.join(lifecycle, "install"))) == ["52-54-00-00-00-0a.ipxe"]
    assert not run(plan=plan, dest=dest, lifecycle_dest=lifecycle)["changed"]


def test_a_script_edited_by_hand_or_re_moded_is_put_back(tmp_path, run):
    """The rerun's compare reads each file once: a byte more, a byte less, a byte changed and
    a mode changed are each found, and only the mode is fixed where the content is right."""
    dest = tmp_path / "nodes"
    plan = make_plan({n: "52:54:00:00:00:%02x" % i for i, n in enumerate("abcd", start=10)})
    run(plan=plan, dest=str(dest))
    names = sorted(os.listdir(dest))
    right = {n: (dest / n).read_bytes() for n in names}
    (dest / names[0]).write_bytes(right[names[0]] + b"\n")
    (dest / names[1]).write_bytes(right[names[1]][:-1])
    (dest / names[2]).write_bytes(right[names[2]][:-2] + b"X\n")
    (dest / names[3]).chmod(0o600)

    again = run(plan=plan, dest=str(dest))
    assert again["changed"] and again["updated"] == names[:3] and again["added"] == again["removed"] == []
    assert {n: (dest / n).read_bytes() for n in names} == right
    assert {oct((dest / n).stat().st_mode & 0o777) for n in names} == {"0o644"}
    assert not run(plan=plan, dest=str(dest))["changed"]


def test_written_whole_with_their_mode_whatever_the_umask(tmp_path, run):
    dest = tmp_path / "nodes"
    old = os.umask(0o077)
    try:
        run(plan=make_plan({"a": "52:54:00:00:00:0a"}), dest=str(dest), mode="0640")
    finally:
        os.umask(old)
    assert [(n, oct(os.stat(dest / n).st_mode & 0o777)) for n in os.listdir(dest)] == \
        [("52-54-00-00-00-0a.ipxe", "0o640")]  # and no temporary file left behind
