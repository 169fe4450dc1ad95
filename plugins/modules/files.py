#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Write several small files, each checked before it replaces the old one, in one round trip
version_added: 0.4.0
description:
  - Makes each file of O(files) hold the given content, owner, group and mode. The content
    is rendered on the controller (a M(ansible.builtin.template) lookup, a file lookup, or
    a string); the host is asked once which files differ, and only those are sent and
    written, in a second round trip.
  - What a sequence of M(ansible.builtin.copy) and M(ansible.builtin.template) tasks does,
    in one or two module runs instead of two per file. Each module run costs a round trip
    and a Python start on the host; at 10,000 nodes a rerun is made of such runs.
  - Each file is written to a temporary file in its directory, checked with its
    O(files[].validate) command when it has one, and renamed over the old file only when
    the check passes. Files are written in the order given and the first failure stops
    the run, so list a file before the files whose check needs it.
  - The parent directories must exist (create them with M(centra.pxe.directories)).
author:
  - centra.pxe engineers (@centra)
options:
  files:
    description: The files, in the order they are written.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description:
          - The whole content of the file (text). The action plugin sends it only for files that differ.
        type: str
      checksum:
        description:
          - SHA-1 of the content encoded as UTF-8. The action plugin computes it from
            O(files[].content); a task does not set it.
        type: str
      owner:
        description: Owner (name or number).
        type: str
        default: root
      group:
        description: Group (name or number).
        type: str
        default: root
      mode:
        description: Permissions, in octal.
        type: str
        default: "0644"
      validate:
        description:
          - Command that checks the new file before it replaces the old one; C(%s) is the
            temporary file's path. Split like a shell command line, but run without a shell.
        type: str
  inspect:
    description:
      - Only report which files differ, and write nothing. The action plugin sets it for
        its first round trip; a task does not.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reports which files would change (with their diff), and changes nothing.
    support: full
  diff_mode:
    description: Shows the old and new content of each changed text file (up to 256 KiB), or the owner, group and mode that change.
    support: full
notes:
  - Meant for configuration files, units and scripts of up to a few hundred KiB; for large
    or binary files use M(ansible.builtin.copy).
"""

EXAMPLES = r"""
- name: Install the program, its configuration and its unit
  centra.pxe.files:
    files:
      - path: /usr/local/lib/example/example.py
        content: "{{ lookup('ansible.builtin.file', 'example.py') }}"
        validate: /usr/bin/python3 -m py_compile %s
      - path: /etc/example/config.json
        content: "{{ example_config | ansible.builtin.to_nice_json }}\n"
      - path: /etc/systemd/system/example.service
        content: "{{ lookup('ansible.builtin.template', 'example.service.j2') }}"
        validate: /usr/bin/systemd-analyze verify --man=no %s
  notify: Restart example
"""

RETURN = r"""
changed_paths:
  description: Paths of the files that changed (or would change, in check mode), in order.
  returned: always
  type: list
  elements: str
"""

import grp
import hashlib
import os
import pwd
import shlex
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DIFF_LIMIT = 256 * 1024


def _uid(owner):
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group):
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def file_state(path):
    """(sha1 hex, uid, gid, mode) of a regular file, or None when it is missing.

    Raises ValueError when the path exists and is not a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("%s exists and is not a regular file" % path)
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest(), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def wanted_state(spec):
    """(checksum, uid, gid, mode) the spec asks for. KeyError for an unknown owner or group."""
    return spec["checksum"], _uid(spec["owner"]), _gid(spec["group"]), int(spec["mode"], 8)


def stale_paths(specs):
    """Paths of the specs whose file differs in content, owner, group or mode.

    An owner or group that does not exist yet (check mode on a fresh host) counts as a
    difference, not an error."""
    stale = []
    for spec in specs:
        current = file_state(spec["path"])
        try:
            wanted = wanted_state(spec)
        except KeyError:
            stale.append(spec["path"])
            continue
        if current != wanted:
            stale.append(spec["path"])
    return stale


class ValidationFailed(RuntimeError):
    """The validate command refused a new file (the old one stays)."""

    def __init__(self, path, command, returncode, stdout, stderr):
        self.stdout, self.stderr = stdout[-4000:], stderr[-4000:]
        super().__init__("%s: failed to validate: %s exited %d: %s"
                         % (path, command, returncode, (stderr or stdout).strip()[-2000:]))


def write_file(spec, content):
    """Write one file atomically: temporary file, validate, rename. Returns nothing;
    raises RuntimeError with the reason when the check fails or the write is refused."""
    path = spec["path"]
    checksum, uid, gid, mode = wanted_state(spec)
    current = file_state(path)
    if current is not None and current[0] == checksum:
        # Same content: fix owner, group and mode in place.
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return
    data = content.encode("utf-8")
    if hashlib.sha1(data).hexdigest() != checksum:
        raise RuntimeError("%s: the content does not match its checksum" % path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise RuntimeError("%s: the directory %s does not exist" % (path, directory))
    # The temporary name ends with the file's own name: checks such as
    # `systemd-analyze verify` judge a file by its suffix.
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".centra-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chown(temporary, uid, gid)
        os.chmod(temporary, mode)  # after chown, which may clear set-id bits
        command = spec.get("validate")
        if command:
            if "%s" not in command:
                raise RuntimeError("%s: validate must contain %%s: %s" % (path, command))
            argv = [temporary if word == "%s" else word.replace("%s", temporary) for word in shlex.split(command)]
            check = subprocess.run(argv, capture_output=True, check=False)
            if check.returncode != 0:
                raise ValidationFailed(path, command, check.returncode,
                                       check.stdout.decode("utf-8", "replace"), check.stderr.decode("utf-8", "replace"))
        os.rename(temporary, path)
        temporary = None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass


def _text(path):
    try:
        if os.path.getsize(path) > DIFF_LIMIT:
            return None
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _describe_meta(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ""
    return "%d:%d %04o\n" % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))


def file_diff(spec):
    """The diff Ansible shows for one stale file, or None when there is nothing to show."""
    path = spec["path"]
    content = spec.get("content")
    before = _text(path) if os.path.exists(path) else ""
    current = file_state(path)
    if current is not None and current[0] == spec["checksum"]:
        return dict(before_header=path, after_header=path, before=_describe_meta(path),
                    after="%s:%s %s\n" % (spec["owner"], spec["group"], spec["mode"]))
    if content is None or before is None or len(content) > DIFF_LIMIT:
        return dict(before_header=path, after_header=path, before="", after="(content not shown)\n")
    return dict(before_header=path, after_header=path, before=before, after=content)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str"),
                checksum=dict(type="str"),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="str", default="0644"),
                validate=dict(type="str"),
            )),
            inspect=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    specs = module.params["files"]
    for spec in specs:
        if spec["checksum"] is None:
            if spec["content"] is None:
                module.fail_json(msg="%s: give content or checksum" % spec["path"])
            spec["checksum"] = hashlib.sha1(spec["content"].encode("utf-8")).hexdigest()
        if not os.path.isabs(spec["path"]):
            module.fail_json(msg="path must be absolute: %s" % spec["path"])
        try:
            int(spec["mode"], 8)
        except ValueError:
            module.fail_json(msg="%s: mode %r is not an octal number" % (spec["path"], spec["mode"]))
    try:
        stale = stale_paths(specs)
    except (ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    stale_specs = [spec for spec in specs if spec["path"] in stale]
    result = dict(changed=bool(stale), changed_paths=stale)
    if module._diff and stale:
        result["diff"] = [d for d in (file_diff(spec) for spec in stale_specs) if d]
    if module.params["inspect"] or module.check_mode or not stale:
        module.exit_json(**result)
    for spec in stale_specs:
        current = file_state(spec["path"])
        if spec.get("content") is None and (current is None or current[0] != spec["checksum"]):
            module.fail_json(msg="%s: differs and no content was sent" % spec["path"], **result)
        try:
            write_file(spec, spec.get("content") or "")
        except KeyError as exc:
            module.fail_json(msg="%s: unknown owner or group: %s" % (spec["path"], exc), **result)
        except ValidationFailed as exc:
            module.fail_json(msg=str(exc), stdout=exc.stdout, stderr=exc.stderr, **result)
        except (RuntimeError, OSError) as exc:
            module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
