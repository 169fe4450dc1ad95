# SPDX-License-Identifier: GPL-3.0-or-later
"""centra.pxe.fat_image against the real mkfs.fat and mtools (scripts/setup.sh installs them)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.centra.pxe.plugins.modules import fat_image

SBIN = "/usr/sbin:/sbin:" + os.environ.get("PATH", "")


@pytest.fixture(autouse=True)
def _tools(monkeypatch):
    for tool in ("mkfs.fat", "mcopy", "mtype"):
        assert shutil.which(tool, path=SBIN), "%s is missing: scripts/setup.sh installs dosfstools and mtools" % tool
    monkeypatch.setenv("PATH", SBIN)


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        fat_image.main()
    return json.loads(capsys.readouterr().out)


def read(image, path):
    return subprocess.run(["mtype", "-i", str(image), "::/" + path], capture_output=True, check=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout


@pytest.fixture
def sources(tmp_path):
    tree = tmp_path / "tftp" / "grub"
    (tree / "nodes").mkdir(parents=True)
    (tree / "grub.cfg").write_text("configfile /grub/menu.cfg\n")
    (tree / "nodes" / "52-54-00-00-08-01.cfg").write_text("linux /profiles/worker/vmlinuz\n")
    profile = tmp_path / "http" / "profiles" / "worker"
    (profile / "arm64").mkdir(parents=True)
    (profile / "vmlinuz").write_bytes(os.urandom(300_000))
    (profile / "initrd").write_bytes(b"initrd")
    (profile / "arm64" / "vmlinuz").write_bytes(b"not for x86-64")
    shim = tmp_path / "shimx64.efi"
    shim.write_bytes(b"MZ shim")
    (tmp_path / "out").mkdir()
    return {"dest": str(tmp_path / "out" / "secureboot-x64.img"),
            "files": [{"src": str(shim), "dest": "EFI/BOOT/BOOTX64.EFI"}],
            "trees": [{"src": str(tree), "dest": "grub"},
                      {"src": str(profile), "dest": "profiles/worker", "recurse": False}]}


def test_builds_once_then_reports_nothing_to_do(sources, capsys):
    first = run(capsys, **sources)
    assert first["changed"] and first["files"] == 5
    image = sources["dest"]
    assert read(image, "EFI/BOOT/BOOTX64.EFI") == b"MZ shim"
    assert read(image, "grub/nodes/52-54-00-00-08-01.cfg") == b"linux /profiles/worker/vmlinuz\n"
    assert read(image, "profiles/worker/vmlinuz") == open(os.path.join(
        os.path.dirname(sources["trees"][1]["src"]), "worker", "vmlinuz"), "rb").read()
    # recurse: false left the arm64 assets out.
    listing = subprocess.run(["mdir", "-/", "-b", "-i", image, "::/profiles"], capture_output=True, text=True,
                             env=dict(os.environ, MTOOLS_SKIP_CHECK="1"), check=True).stdout
    assert "arm64" not in listing
    assert oct(os.stat(image).st_mode & 0o777) == "0o644"
    # No temporary file or staging tree left beside it.
    assert os.listdir(os.path.dirname(image)) == ["secureboot-x64.img"]
    again = run(capsys, **sources)
    assert not again["changed"] and again["manifest_digest"] == first["manifest_digest"]


def test_a_changed_or_new_file_rebuilds_it_and_check_mode_only_tells(sources, capsys):
    run(capsys, **sources)
    node = os.path.join(sources["trees"][0]["src"], "nodes", "52-54-00-00-09-01.cfg")
    with open(node, "w", encoding="utf-8") as handle:
        handle.write("linux /profiles/worker/vmlinuz new\n")
    before = os.stat(sources["dest"]).st_mtime_ns
    checked = run(capsys, _ansible_check_mode=True, _ansible_diff=True, **sources)
    assert checked["changed"] and os.stat(sources["dest"]).st_mtime_ns == before
    assert "grub/nodes/52-54-00-00-09-01.cfg" in checked["diff"]["after"]
    assert "grub/nodes/52-54-00-00-09-01.cfg" not in checked["diff"]["before"]
    built = run(capsys, **sources)
    assert built["changed"] and read(sources["dest"], "grub/nodes/52-54-00-00-09-01.cfg").endswith(b"new\n")


def test_bad_input_fails_and_keeps_the_old_image(sources, capsys):
    run(capsys, **sources)
    with open(sources["dest"], "rb") as handle:
        old = handle.read()
    missing = dict(sources, files=sources["files"] + [{"src": "/nonexistent/grubx64.efi", "dest": "EFI/BOOT/grubx64.efi"}])
    failed = run(capsys, **missing)
    assert failed["failed"] and "/nonexistent/grubx64.efi" in failed["msg"]
    # FAT names have no case: two files that differ only in case are refused.
    clash = dict(sources, files=sources["files"] + [{"src": sources["files"][0]["src"], "dest": "efi/boot/bootx64.efi"}])
    assert "more than one file" in run(capsys, **clash)["msg"]
    escape = dict(sources, files=[{"src": sources["files"][0]["src"], "dest": "../x"}])
    assert "not a path inside the image" in run(capsys, **escape)["msg"]
    with open(sources["dest"], "rb") as handle:
        assert handle.read() == old
    # Check mode on a fresh host: the sources are not there yet, the run says it would build.
    fresh = run(capsys, _ansible_check_mode=True, **missing)
    assert fresh["changed"] and not fresh.get("failed")


def test_room_for_many_files_where_mkfs_picks_large_clusters(tmp_path, capsys):
    """Between 256 and 512 MiB mkfs.fat picks 8 KiB clusters: thousands of small files (node
    configs, renamed to 8.3 names as the Secure Boot image does) beside a large one still fit;
    a directory FAT cannot hold is refused."""
    nodes = tmp_path / "grub" / "nodes"
    nodes.mkdir(parents=True)
    for index in range(2000):
        (nodes / ("52-54-00-00-%02x-%02x.cfg" % divmod(index, 256))).write_text("linux /profiles/p/vmlinuz\n")
    (tmp_path / "grub" / "grub.cfg").write_text("entry\n")
    big = tmp_path / "initrd"
    with open(big, "wb") as handle:  # sparse: 270 MiB on the image, not on this disk
        handle.truncate(270 << 20)
    (tmp_path / "out").mkdir()
    rename = {"pattern": r"^nodes/(..)-(..)-(..)-(..)-(..)-(..)\.cfg$", "replacement": r"n/\1\2\3/\4\5\6.cfg"}
    args = {"dest": str(tmp_path / "out" / "big.img"), "files": [{"src": str(big), "dest": "profiles/p/initrd"}],
            "trees": [{"src": str(tmp_path / "grub"), "dest": "grub", "rename": rename}]}
    built = run(capsys, **args)
    assert built["changed"] and built["files"] == 2002, built
    assert read(args["dest"], "grub/n/525400/0007cf.cfg") == b"linux /profiles/p/vmlinuz\n"
    assert read(args["dest"], "grub/grub.cfg") == b"entry\n"  # not matched: not renamed
    assert fat_image.MAX_DIRECTORY_FILES < 65536 // 3
    many = [{"src": str(big), "dest": "d/%d" % i} for i in range(fat_image.MAX_DIRECTORY_FILES + 1)]
    with pytest.raises(ValueError, match="more than 20000 files in d"):
        fat_image.collect(many, [])
