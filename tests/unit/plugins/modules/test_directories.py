# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.centra.pxe.plugins.modules import directories

ME = str(os.getuid())
MY_GROUP = str(os.getgid())


def run(capsys, **args):
    args.setdefault("owner", ME)
    args.setdefault("group", MY_GROUP)
    with patch_module_args(args), pytest.raises(SystemExit):
        directories.main()
    return json.loads(capsys.readouterr().out)


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_creates_then_reports_nothing_to_do(tmp_path, capsys):
    paths = [str(tmp_path / "srv"), str(tmp_path / "srv" / "http"), str(tmp_path / "srv" / "http" / "nodes")]
    first = run(capsys, paths=paths)
    assert first["changed"] and first["created"] == paths and first["fixed"] == []
    assert all(os.path.isdir(p) and mode_of(p) == 0o755 for p in paths)

    again = run(capsys, paths=paths)
    assert not again["changed"] and again["created"] == again["fixed"] == []


def test_fixes_the_mode_of_an_existing_directory_only(tmp_path, capsys):
    kept, loose = tmp_path / "kept", tmp_path / "loose"
    kept.mkdir(mode=0o755)
    loose.mkdir()
    os.chmod(loose, 0o777)
    result = run(capsys, paths=[str(kept), str(loose)], mode="0755", _ansible_diff=True)
    assert result["changed"] and result["fixed"] == [str(loose)] and result["created"] == []
    assert mode_of(loose) == 0o755
    assert "0777" in result["diff"]["before"] and "%s:%s 0755" % (ME, MY_GROUP) in result["diff"]["after"]


def test_check_mode_reports_and_changes_nothing(tmp_path, capsys):
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o700)
    missing = tmp_path / "missing"
    result = run(capsys, paths=[str(loose), str(missing)], _ansible_check_mode=True)
    assert result["changed"] and result["created"] == [str(missing)] and result["fixed"] == [str(loose)]
    assert not missing.exists() and mode_of(loose) == 0o700


def test_a_file_in_the_way_fails_before_any_change(tmp_path, capsys):
    first, blocker = tmp_path / "first", tmp_path / "blocker"
    blocker.write_text("not a directory")
    result = run(capsys, paths=[str(first), str(blocker)])
    assert result["failed"] and "%s exists and is not a directory" % blocker in result["msg"]
    assert not first.exists()


def test_relative_paths_and_bad_modes_are_refused(tmp_path, capsys):
    assert "must be absolute" in run(capsys, paths=["srv/http"])["msg"]
    assert "not an octal number" in run(capsys, paths=[str(tmp_path / "x")], mode="rwxr-xr-x")["msg"]
    assert "unknown owner or group" in run(capsys, paths=[str(tmp_path / "x")], owner="no-such-user-centra")["msg"]
