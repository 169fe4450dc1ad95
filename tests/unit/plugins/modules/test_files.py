# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.centra.pxe.plugins.modules import files

ME = str(os.getuid())
MY_GROUP = str(os.getgid())


def spec(path, content=None, **extra):
    item = {"path": str(path), "owner": ME, "group": MY_GROUP}
    if content is not None:
        item["content"] = content
        item["checksum"] = hashlib.sha1(content.encode("utf-8")).hexdigest()
    item.update(extra)
    return item


def run(capsys, specs, **args):
    with patch_module_args(dict(files=specs, **args)), pytest.raises(SystemExit):
        files.main()
    return json.loads(capsys.readouterr().out)


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_writes_then_reports_nothing_to_do(tmp_path, capsys):
    a, b = tmp_path / "a.conf", tmp_path / "b.sh"
    specs = [spec(a, "one\n"), spec(b, "#!/bin/sh\n", mode="0755")]
    first = run(capsys, specs)
    assert first["changed"] and first["changed_paths"] == [str(a), str(b)]
    assert a.read_text() == "one\n" and mode_of(a) == 0o644 and mode_of(b) == 0o755
    again = run(capsys, specs)
    assert not again["changed"] and again["changed_paths"] == []


def test_inspect_without_content_names_only_the_files_that_differ(tmp_path, capsys):
    same, other, loose = tmp_path / "same", tmp_path / "other", tmp_path / "loose"
    same.write_text("x\n")
    other.write_text("old\n")
    loose.write_text("y\n")
    os.chmod(same, 0o644)
    os.chmod(other, 0o644)
    os.chmod(loose, 0o666)
    specs = [spec(same, "x\n"), spec(other, "new\n"), spec(loose, "y\n")]
    for item in specs:
        del item["content"]
    result = run(capsys, specs, inspect=True)
    assert result["changed_paths"] == [str(other), str(loose)]
    assert other.read_text() == "old\n" and mode_of(loose) == 0o666


def test_a_failed_check_keeps_the_old_file_and_leaves_no_temporary(tmp_path, capsys):
    target = tmp_path / "site.conf"
    target.write_text("good\n")
    result = run(capsys, [spec(target, "bad\n", validate="/bin/sh -c 'grep -q good \"$0\" || { echo refused >&2; exit 3; }' %s")])
    assert result["stderr"] == "refused\n"
    assert result["failed"] and "failed to validate" in result["msg"] and str(target) in result["msg"]
    assert target.read_text() == "good\n"
    assert sorted(os.listdir(tmp_path)) == ["site.conf"]


def test_the_check_sees_the_new_content(tmp_path, capsys):
    target = tmp_path / "site.conf"
    result = run(capsys, [spec(target, "good\n", validate="/bin/grep -q good %s")])
    assert result["changed"] and target.read_text() == "good\n"


def test_files_are_written_in_order_and_the_first_failure_stops(tmp_path, capsys):
    first, broken, last = tmp_path / "first", tmp_path / "broken", tmp_path / "last"
    result = run(capsys, [spec(first, "1\n"), spec(broken, "2\n", validate="/bin/false %s"), spec(last, "3\n")])
    assert result["failed"]
    assert first.read_text() == "1\n" and not broken.exists() and not last.exists()


def test_only_the_mode_is_fixed_when_the_content_is_the_same(tmp_path, capsys):
    target = tmp_path / "unit"
    target.write_text("same\n")
    os.chmod(target, 0o600)
    inode = os.stat(target).st_ino
    result = run(capsys, [spec(target, "same\n", mode="0644")], _ansible_diff=True)
    assert result["changed"] and mode_of(target) == 0o644 and os.stat(target).st_ino == inode
    assert "0600" in result["diff"][0]["before"] and "0644" in result["diff"][0]["after"]


def test_check_mode_shows_the_diff_and_changes_nothing(tmp_path, capsys):
    target = tmp_path / "menu.ipxe"
    target.write_text("old line\n")
    result = run(capsys, [spec(target, "new line\n")], _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] and result["changed_paths"] == [str(target)]
    assert result["diff"] == [{"before_header": str(target), "after_header": str(target),
                               "before": "old line\n", "after": "new line\n"}]
    assert target.read_text() == "old line\n"


def test_refusals_name_the_path(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    assert "is not a regular file" in run(capsys, [spec(tmp_path / "dir", "x")])["msg"]
    assert "does not exist" in run(capsys, [spec(tmp_path / "missing" / "f", "x")])["msg"]
    assert "must be absolute" in run(capsys, [spec("relative/f", "x")])["msg"]
    unknown = run(capsys, [spec(tmp_path / "f", "x", owner="no-such-user-centra")])
    assert unknown["failed"] and "unknown owner or group" in unknown["msg"]
    tampered = spec(tmp_path / "g", "x")
    tampered["checksum"] = "0" * 40
    assert "does not match its checksum" in run(capsys, [tampered])["msg"]


def entry(path, state, **extra):
    item = {"path": str(path), "state": state, "owner": ME, "group": MY_GROUP}
    item.update(extra)
    return item


def test_directories_links_logs_and_removals_in_one_run_then_nothing_to_do(tmp_path, capsys):
    tree, link, log, gone, gone_dir = (tmp_path / "srv" / "http", tmp_path / "site", tmp_path / "access.log",
                                       tmp_path / "default", tmp_path / "tls")
    gone.write_text("stock site\n")
    gone_dir.mkdir()
    (gone_dir / "key.pem").write_text("k\n")
    specs = [entry(tmp_path / "srv", "directory"), entry(tree, "directory", mode="0750"),
             spec(tree / "menu.ipxe", "#!ipxe\n"), entry(link, "link", src=str(tree / "menu.ipxe")),
             entry(log, "touch", mode="0640"), entry(gone, "absent"), entry(gone_dir, "absent")]
    first = run(capsys, specs)
    assert first["changed_paths"] == [s["path"] for s in specs]
    assert mode_of(tree) == 0o750 and mode_of(tmp_path / "srv") == 0o755 and (tree / "menu.ipxe").read_text() == "#!ipxe\n"
    assert os.readlink(link) == str(tree / "menu.ipxe") and log.read_text() == "" and mode_of(log) == 0o640
    assert not gone.exists() and not gone_dir.exists()
    assert run(capsys, specs)["changed_paths"] == []


def test_a_touched_log_keeps_its_content_and_a_link_is_retargeted(tmp_path, capsys):
    log, link = tmp_path / "access.log", tmp_path / "site"
    log.write_text("GET /nodes/x.ipxe\n")
    os.chmod(log, 0o600)
    os.symlink("/elsewhere", link)
    result = run(capsys, [entry(log, "touch", mode="0640"), entry(link, "link", src="/srv/site")], _ansible_diff=True)
    assert result["changed_paths"] == [str(log), str(link)]
    assert log.read_text() == "GET /nodes/x.ipxe\n" and mode_of(log) == 0o640 and os.readlink(link) == "/srv/site"
    assert result["diff"][1]["before"] == "link to /elsewhere\n" and result["diff"][1]["after"] == "link to /srv/site\n"


def test_check_mode_reports_every_kind_and_changes_nothing(tmp_path, capsys):
    old = tmp_path / "old"
    old.write_text("x\n")
    specs = [entry(tmp_path / "d", "directory"), entry(tmp_path / "l", "link", src="/x"), entry(tmp_path / "t", "touch"),
             entry(old, "absent"), entry(tmp_path / "owned", "directory", owner="no-such-user-centra")]
    result = run(capsys, specs, _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed_paths"] == [s["path"] for s in specs]
    assert sorted(os.listdir(tmp_path)) == ["old"]


def test_apply_runs_after_a_change_and_before_the_next_entry(tmp_path, capsys):
    marker, accounts, after = tmp_path / "applied", tmp_path / "accounts.conf", tmp_path / "after"
    apply = "/bin/sh -c 'test ! -e %s && cp \"$0\" %s' %%s" % (after, marker)
    specs = [spec(accounts, "u example\n", apply=apply), spec(after, "2\n")]
    assert run(capsys, specs)["changed_paths"] == [str(accounts), str(after)]
    assert marker.read_text() == "u example\n"
    marker.unlink()
    assert run(capsys, specs)["changed_paths"] == [] and not marker.exists()
    failed = run(capsys, [spec(accounts, "u other\n", apply="/bin/false %s")])
    assert failed["failed"] and "failed to apply" in failed["msg"] and accounts.read_text() == "u other\n"


def test_a_copy_of_a_host_file_follows_its_source(tmp_path, capsys):
    source, copy = tmp_path / "ipxe.efi", tmp_path / "tftp" / "ipxe.efi"
    copy.parent.mkdir()
    source.write_bytes(b"MZ\x00\x01loader")
    specs = [entry(copy, "copy", src=str(source))]
    assert run(capsys, specs)["changed_paths"] == [str(copy)]
    assert copy.read_bytes() == b"MZ\x00\x01loader" and mode_of(copy) == 0o644
    assert run(capsys, specs)["changed_paths"] == []
    source.write_bytes(b"MZ\x00\x02newer")
    os.chmod(copy, 0o600)
    assert run(capsys, specs, _ansible_check_mode=True)["changed_paths"] == [str(copy)]
    assert copy.read_bytes() == b"MZ\x00\x01loader"
    assert run(capsys, specs)["changed_paths"] == [str(copy)]
    assert copy.read_bytes() == b"MZ\x00\x02newer" and mode_of(copy) == 0o644
    missing = [entry(tmp_path / "tftp" / "snp.efi", "copy", src=str(tmp_path / "none.efi"))]
    assert run(capsys, missing, _ansible_check_mode=True)["changed_paths"] == [missing[0]["path"]]
    failed = run(capsys, missing)
    assert failed["failed"] and "is not a file on the host" in failed["msg"] and "snp.efi" in failed["msg"]
    assert "must be an absolute path" in run(capsys, [entry(copy, "copy", src="ipxe.efi")])["msg"]


def test_a_directory_with_keep_holds_only_the_names_it_keeps(tmp_path, capsys):
    root = tmp_path / "tftp"
    (root / "grub").mkdir(parents=True)
    (root / "grub" / "grub.cfg").write_text("x\n")
    (root / "ipxe.efi").write_text("loader\n")
    (root / ".hidden").write_text("h\n")
    os.symlink("/etc", root / "link")
    os.chmod(root, 0o755)
    specs = [entry(root, "directory", keep=["ipxe.efi", "undionly.kpxe"])]
    check = run(capsys, specs, _ansible_check_mode=True, _ansible_diff=True)
    assert check["changed_paths"] == [str(root)] and "grub (removed)" in check["diff"][0]["after"]
    assert sorted(os.listdir(root)) == [".hidden", "grub", "ipxe.efi", "link"]
    assert run(capsys, specs)["changed_paths"] == [str(root)]
    assert os.listdir(root) == ["ipxe.efi"] and os.path.isdir("/etc")
    assert run(capsys, specs)["changed_paths"] == []
    assert "not paths" in run(capsys, [entry(root, "directory", keep=["../x"])])["msg"]
    assert "keep is for state=directory" in run(capsys, [entry(root / "f", "touch", keep=["a"])])["msg"]


def test_refusals_of_the_other_states_name_the_path(tmp_path, capsys):
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "dir").mkdir()
    assert "is not a directory" in run(capsys, [entry(tmp_path / "file", "directory")])["msg"]
    assert "is a directory, not a link" in run(capsys, [entry(tmp_path / "dir", "link", src="/x")])["msg"]
    assert "is not a regular file" in run(capsys, [entry(tmp_path / "dir", "touch")])["msg"]
    assert "a link needs src" in run(capsys, [entry(tmp_path / "l", "link")])["msg"]
    switched_off = run(capsys, [entry(tmp_path / "file", "absent", content="x\n", apply="/bin/false %s")])
    assert switched_off["changed_paths"] == [str(tmp_path / "file")] and not (tmp_path / "file").exists()
    refused = run(capsys, [entry(tmp_path / "d2", "directory", validate="/bin/true %s")])
    assert "are for state=file" in refused["msg"] and str(tmp_path / "d2") in refused["msg"]
    assert not (tmp_path / "d2").exists()


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write two files into a directory
      centra.pxe.files:
        files:
          - path: "{{ dir }}/logs"
            state: directory
            owner: "{{ me }}"
            group: "{{ my_group }}"
          - path: "{{ dir }}/a.conf"
            content: "{{ text }}"
            owner: "{{ me }}"
            group: "{{ my_group }}"
          - path: "{{ dir }}/b.sh"
            content: "#!/bin/sh\\n"
            owner: "{{ me }}"
            group: "{{ my_group }}"
            mode: "0755"
            validate: /bin/sh -n %s
      register: written
    - name: Show
      ansible.builtin.debug:
        var: written.changed_paths
"""


def _playbook(tmp_path, *extra):
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "centra", "pxe"))][0]
    book = tmp_path / "book.yml"
    book.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-e", "dir=%s me=%s my_group=%s" % (out, ME, MY_GROUP), *extra, str(book)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=120), out


def test_the_action_sends_only_what_differs_and_reruns_unchanged(tmp_path):
    first, out = _playbook(tmp_path, "-e", "text=one")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in first.stdout and (out / "a.conf").read_text() == "one" and (out / "logs").is_dir()
    again = _playbook(tmp_path, "-e", "text=one")[0]
    assert again.returncode == 0 and "changed=0" in again.stdout
    edit = _playbook(tmp_path, "-e", "text=two")[0]
    assert "changed=1" in edit.stdout and '"%s/a.conf"' % out in edit.stdout and "b.sh\"" not in edit.stdout.split("TASK [Show]")[1]
    assert (out / "a.conf").read_text() == "two"


def test_the_action_in_check_and_diff_mode_changes_nothing(tmp_path):
    _playbook(tmp_path, "-e", "text=one")
    check, out = _playbook(tmp_path, "-e", "text=two", "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "-one" in check.stdout and "+two" in check.stdout and "changed=1" in check.stdout
    assert (out / "a.conf").read_text() == "one"


TEMPLATE_BOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    names: [a, b]
  tasks:
    - name: Render through the action
      centra.pxe.files:
        files:
          - path: "{{ dir }}/rendered"
            template: site.j2
            owner: "{{ me }}"
            group: "{{ my_group }}"
    - name: Compare with the template lookup
      ansible.builtin.assert:
        that: lookup('ansible.builtin.file', dir ~ '/rendered', rstrip=false) == lookup('ansible.builtin.template', 'site.j2')
"""


def test_a_template_entry_renders_as_the_template_lookup_does(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "site.j2").write_text(
        "# {{ ansible_managed }}\n{% for name in names %}\nserver {{ name }};\n{% endfor %}\n"
        "{% include 'part.j2' %}\n  {% if names %}\nlast\\n line\n{% endif %}\n\n")
    (tmp_path / "templates" / "part.j2").write_text("part {{ names | length }}\n")
    book = tmp_path / "book.yml"
    book.write_text(TEMPLATE_BOOK)
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "centra", "pxe"))][0]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    out = tmp_path / "out"
    out.mkdir()
    run_ = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c",
                           "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
                           "-e", "dir=%s me=%s my_group=%s" % (out, ME, MY_GROUP), str(book)],
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    assert run_.returncode == 0, run_.stdout + run_.stderr
    text = (out / "rendered").read_text()
    assert "server a;\nserver b;\npart 2" in text and text.startswith("# Ansible managed")
