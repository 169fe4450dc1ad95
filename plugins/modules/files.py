#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Set up a role's small files, directories, links and system accounts in one round trip
version_added: 0.4.0
description:
  - Makes each entry of O(files) what it asks for, in the order given (a file with the
    given content, owner, group and mode (the default), a directory, a symbolic link, an
    empty file that only has to exist, such as a log, or nothing at the path). The content is
    rendered on the controller (a template of the role named by O(files[].template), a file lookup, or a
    string); the host is asked once which entries differ, and only those are sent and
    applied, in a second round trip.
  - What a sequence of M(ansible.builtin.copy), M(ansible.builtin.template),
    M(ansible.builtin.file), M(ansible.builtin.user) and M(ansible.builtin.group) tasks
    does, in one or two module runs instead of one or two per task. Each module run costs
    a round trip and a Python start on the host; at 10,000 nodes a rerun is made of such
    runs.
  - Each file is written to a temporary file in its directory, checked with its
    O(files[].validate) command when it has one, and renamed over the old file only when
    the check passes. Entries are applied in the order given and the first failure stops
    the run, so list a directory before its files, a file before the files whose check
    needs it, and a sysusers.d file (with O(files[].apply)) before what its accounts own.
author:
  - centra.pxe engineers (@centra)
options:
  files:
    description: The entries, in the order they are applied.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - V(file), a regular file with O(files[].content); V(directory) (a missing
            parent is made too, owned by root); V(link), a symbolic link to
            O(files[].src) (replacing a file at the path); V(touch), a regular file that
            exists with the owner, group and mode, its content and times left alone (a
            log); V(copy), a copy of the file O(files[].src) of the host (a loader from a
            package); V(absent), nothing at the path (a directory goes with its content; the
            entry's O(files[].content), O(files[].validate) and O(files[].apply) are
            ignored, so that a task can switch a file off with a templated V(state)).
        type: str
        choices: [file, directory, link, touch, absent, copy]
        default: file
      content:
        description:
          - The whole content of the file (text), for V(file). The action plugin sends it only for files that differ.
        type: str
      template:
        description:
          - A template of the role, rendered on the controller into O(files[].content) by
            the action plugin, as M(ansible.builtin.template) renders it (the template
            lookup copies every variable of the host first, which is slow with a large boot plan).
        type: str
      checksum:
        description:
          - SHA-1 of the content encoded as UTF-8. The action plugin computes it from
            O(files[].content); a task does not set it.
        type: str
      src:
        description: Target of a V(link); for V(copy), the absolute path of the file on the host.
        type: str
      owner:
        description: Owner (name or number), for V(file), V(directory), V(touch) and V(copy).
        type: str
        default: root
      group:
        description: Group (name or number), for V(file), V(directory), V(touch) and V(copy).
        type: str
        default: root
      mode:
        description: Permissions, in octal. Default C(0644), for a directory C(0755).
        type: str
      keep:
        description:
          - For a V(directory), the names it may hold; anything else in it is removed
            (a directory with its content). Without it, the content is left alone.
        type: list
        elements: str
      validate:
        description:
          - Command that checks the new file before it replaces the old one; C(%s) is the
            temporary file's path. Split like a shell command line, but run without a shell.
        type: str
      apply:
        description:
          - Command run right after the file changed, before the next entry; C(%s) is the
            file's path. For files whose content takes effect through a command, such as
            C(/usr/bin/systemd-sysusers %s) for a sysusers.d file that creates the accounts
            later entries are owned by. Not run in check mode.
        type: str
  inspect:
    description:
      - Only report which entries differ, and change nothing. The action plugin sets it for
        its first round trip; a task does not.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reports which entries would change (with their diff), and changes nothing.
    support: full
  diff_mode:
    description: Shows the old and new content of each changed text file (up to 256 KiB), or the owner, group, mode, link target or presence that change.
    support: full
notes:
  - Meant for configuration files, units and scripts of up to a few hundred KiB; for large
    or binary files use M(ansible.builtin.copy).
  - An owner or group that does not exist yet counts as a difference when the host is
    inspected (check mode on a fresh host), and is an error when the entry is applied.
"""

EXAMPLES = r"""
- name: Install the program, its account, its configuration and its unit
  centra.pxe.files:
    files:
      - path: /etc/sysusers.d/example.conf
        content: "u example - \"example service\" /nonexistent /usr/sbin/nologin\n"
        validate: /usr/bin/systemd-sysusers --dry-run %s
        apply: /usr/bin/systemd-sysusers %s
      - path: /var/lib/example
        state: directory
        owner: example
      - path: /usr/local/lib/example/example.py
        content: "{{ lookup('ansible.builtin.file', 'example.py') }}"
        validate: /usr/bin/python3 -m py_compile %s
      - path: /etc/example/config.json
        content: "{{ example_config | ansible.builtin.to_nice_json }}\n"
      - path: /etc/systemd/system/example.service
        template: example.service.j2
        validate: /usr/bin/systemd-analyze verify --man=no %s
      - path: /etc/example/old.conf
        state: absent
  notify: Restart example
"""

RETURN = r"""
changed_paths:
  description: Paths of the entries that changed (or would change, in check mode), in order.
  returned: always
  type: list
  elements: str
"""

import grp
import hashlib
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DIFF_LIMIT = 256 * 1024
STATES = ("file", "directory", "link", "touch", "absent", "copy")
DEFAULT_MODES = {"directory": "0755"}


def _uid(owner):
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group):
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _sha1(path):
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def file_state(path):
    """(sha1 hex, uid, gid, mode) of a regular file, or None when it is missing.

    Raises ValueError when the path exists and is not a regular file."""
    info = _lstat(path)
    if info is None:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("%s exists and is not a regular file" % path)
    return _sha1(path), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def wanted_state(spec):
    """(checksum, uid, gid, mode) the spec asks for. KeyError for an unknown owner or group."""
    return spec["checksum"], _uid(spec["owner"]), _gid(spec["group"]), int(spec["mode"], 8)


def _attributes_differ(info, spec):
    """Whether an existing path's owner, group or mode differ from the spec's (an
    unknown owner or group differs)."""
    try:
        wanted = (_uid(spec["owner"]), _gid(spec["group"]), int(spec["mode"], 8))
    except KeyError:
        return True
    return (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != wanted


def is_stale(spec):
    """Whether the path differs from what the spec asks for.

    Raises ValueError when the path holds something the entry must not replace (a
    directory where a file or link belongs, a file where a directory belongs)."""
    path, state = spec["path"], spec["state"]
    if state in ("file", "copy"):
        if state == "copy":
            # A missing source (check mode before its package is installed) is a
            # difference; applying the entry then fails and names it.
            if not os.path.isfile(spec["src"]):
                return True
            spec = dict(spec, checksum=_sha1(spec["src"]))
        try:
            return file_state(path) != wanted_state(spec)
        except KeyError:
            return True
    info = _lstat(path)
    if state == "absent":
        return info is not None
    if state == "link":
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise ValueError("%s is a directory, not a link" % path)
        return info is None or not stat.S_ISLNK(info.st_mode) or os.readlink(path) != spec["src"]
    if info is None:
        return True
    if state == "directory" and not stat.S_ISDIR(info.st_mode):
        raise ValueError("%s exists and is not a directory" % path)
    if state == "directory" and unkept(spec):
        return True
    if state == "touch" and not stat.S_ISREG(info.st_mode):
        raise ValueError("%s exists and is not a regular file" % path)
    return _attributes_differ(info, spec)


def unkept(spec):
    """The names in a directory entry's directory that its `keep` list does not name."""
    if spec.get("keep") is None or not os.path.isdir(spec["path"]):
        return []
    return sorted(set(os.listdir(spec["path"])) - set(spec["keep"]))


def stale_paths(specs):
    """Paths of the specs that differ (content, owner, group, mode, target, presence).

    An owner or group that does not exist yet (check mode on a fresh host) counts as a
    difference, not an error."""
    return [spec["path"] for spec in specs if is_stale(spec)]


class ValidationFailed(RuntimeError):
    """The validate command refused a new file (the old one stays), or the apply command
    of a written file failed."""

    def __init__(self, path, what, command, returncode, stdout, stderr):
        self.stdout, self.stderr = stdout[-4000:], stderr[-4000:]
        super().__init__("%s: failed to %s: %s exited %d: %s"
                         % (path, what, command, returncode, (stderr or stdout).strip()[-2000:]))


def _run_command(path, command, argument, what):
    """Run `command` with %s replaced by `argument`; ValidationFailed when it fails."""
    if "%s" not in command:
        raise RuntimeError("%s: %s must contain %%s: %s" % (path, what, command))
    argv = [argument if word == "%s" else word.replace("%s", argument) for word in shlex.split(command)]
    check = subprocess.run(argv, capture_output=True, check=False)
    if check.returncode != 0:
        raise ValidationFailed(path, what, command, check.returncode,
                               check.stdout.decode("utf-8", "replace"), check.stderr.decode("utf-8", "replace"))


def write_file(spec, content, source=None):
    """Write one file atomically: temporary file, validate, rename. The content is the
    text `content`, or the bytes of the file `source` when given. Returns nothing;
    raises RuntimeError with the reason when the check fails or the write is refused."""
    path = spec["path"]
    checksum, uid, gid, mode = wanted_state(spec)
    current = file_state(path)
    if current is not None and current[0] == checksum:
        # Same content: fix owner, group and mode in place.
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return
    if source is None:
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
            if source is None:
                stream.write(data)
            else:
                with open(source, "rb") as original:
                    shutil.copyfileobj(original, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chown(temporary, uid, gid)
        os.chmod(temporary, mode)  # after chown, which may clear set-id bits
        if spec.get("validate"):
            _run_command(path, spec["validate"], temporary, "validate")
        os.rename(temporary, path)
        temporary = None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass


def _remove(path):
    """Remove whatever is at a path (a directory with its content; a link, not its target)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def apply_entry(spec):
    """Make one stale entry what it asks for. Raises KeyError (unknown owner or group),
    ValidationFailed, RuntimeError or OSError."""
    path, state = spec["path"], spec["state"]
    if state == "file":
        current = file_state(path)
        if spec.get("content") is None and (current is None or current[0] != spec["checksum"]):
            raise RuntimeError("%s: differs and no content was sent" % path)
        write_file(spec, spec.get("content") or "")
        if spec.get("apply"):
            _run_command(path, spec["apply"], path, "apply")
        return
    if state == "copy":
        if not os.path.isfile(spec["src"]):
            raise RuntimeError("%s: the source %s is not a file on the host" % (path, spec["src"]))
        write_file(dict(spec, checksum=_sha1(spec["src"])), "", source=spec["src"])
        return
    if state == "absent":
        _remove(path)
        return
    if state == "link":
        _remove(path)  # is_stale refused a directory here
        os.symlink(spec["src"], path)
        return
    info = _lstat(path)
    uid, gid, mode = _uid(spec["owner"]), _gid(spec["group"]), int(spec["mode"], 8)
    if state == "directory":
        for name in unkept(spec):
            _remove(os.path.join(path, name))
    if info is None and state == "directory":
        os.makedirs(path)
    elif info is None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown, which may clear set-id bits


def _text(path):
    try:
        if os.path.getsize(path) > DIFF_LIMIT:
            return None
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _describe(path):
    """What is at a path, as the diff of a directory, link, touched file or removal shows it."""
    info = _lstat(path)
    if info is None:
        return "(absent)\n"
    if stat.S_ISLNK(info.st_mode):
        return "link to %s\n" % os.readlink(path)
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    return "%s %d:%d %04o\n" % (kind, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))


def _wanted(spec):
    state = spec["state"]
    if state == "absent":
        return "(absent)\n"
    if state == "link":
        return "link to %s\n" % spec["src"]
    if state == "copy":
        return "copy of %s, %s:%s %s\n" % (spec["src"], spec["owner"], spec["group"], spec["mode"])
    return "%s %s:%s %s\n" % ("directory" if state == "directory" else "file", spec["owner"], spec["group"], spec["mode"])


def file_diff(spec):
    """The diff Ansible shows for one stale entry."""
    path = spec["path"]
    header = dict(before_header=path, after_header=path)
    if spec["state"] != "file":
        extra = "".join("%s/%s (removed)\n" % (path, name) for name in unkept(spec))
        return dict(header, before=_describe(path), after=_wanted(spec) + extra)
    content = spec.get("content")
    before = _text(path) if os.path.exists(path) else ""
    current = file_state(path)
    if current is not None and current[0] == spec["checksum"]:
        return dict(header, before=_describe(path), after=_wanted(spec))
    if content is None or before is None or len(content) > DIFF_LIMIT:
        return dict(header, before="", after="(content not shown)\n")
    return dict(header, before=before, after=content)


def check_spec(spec):
    """Fill in the defaults of one entry; the reason it is refused, or None."""
    path, state = spec["path"], spec["state"]
    if not os.path.isabs(path):
        return "path must be absolute: %s" % path
    if spec["mode"] is None:
        spec["mode"] = DEFAULT_MODES.get(state, "0644")
    try:
        int(spec["mode"], 8)
    except ValueError:
        return "%s: mode %r is not an octal number" % (path, spec["mode"])
    if state in ("link", "copy") and not spec.get("src"):
        return "%s: a %s needs src" % (path, state)
    if state == "copy" and not os.path.isabs(spec["src"]):
        return "%s: src must be an absolute path on the host: %s" % (path, spec["src"])
    if state == "file" and spec["checksum"] is None:
        if spec["content"] is None:
            return "%s: give content or checksum" % path
        spec["checksum"] = hashlib.sha1(spec["content"].encode("utf-8")).hexdigest()
    if spec.get("keep") is not None and state != "directory":
        return "%s: keep is for state=directory" % path
    if any("/" in name or name in ("", ".", "..") for name in spec.get("keep") or []):
        return "%s: keep names entries of the directory, not paths: %s" % (path, spec["keep"])
    file_only = spec.get("content") is not None or spec.get("validate") or spec.get("apply")
    if state in ("directory", "link", "touch", "copy") and file_only:
        return "%s: content, validate and apply are for state=file" % path
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                state=dict(type="str", default="file", choices=list(STATES)),
                content=dict(type="str"),
                template=dict(type="str"),
                checksum=dict(type="str"),
                src=dict(type="str"),
                keep=dict(type="list", elements="str"),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="str"),
                validate=dict(type="str"),
                apply=dict(type="str"),
            )),
            inspect=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    specs = module.params["files"]
    for spec in specs:
        refused = check_spec(spec)
        if refused:
            module.fail_json(msg=refused)
    try:
        stale = stale_paths(specs)
    except (ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    stale_specs = [spec for spec in specs if spec["path"] in stale]
    result = dict(changed=bool(stale), changed_paths=stale)
    if module._diff and stale:
        result["diff"] = [file_diff(spec) for spec in stale_specs]
    if module.params["inspect"] or module.check_mode or not stale:
        module.exit_json(**result)
    for spec in stale_specs:
        try:
            apply_entry(spec)
        except KeyError as exc:
            module.fail_json(msg="%s: unknown owner or group: %s" % (spec["path"], exc), **result)
        except ValidationFailed as exc:
            module.fail_json(msg=str(exc), stdout=exc.stdout, stderr=exc.stderr, **result)
        except (RuntimeError, OSError) as exc:
            module.fail_json(msg="%s: %s" % (spec["path"], exc) if spec["path"] not in str(exc) else str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
