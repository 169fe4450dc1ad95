#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: directories
short_description: Make sure several directories exist, with one owner, group and mode, in one task
version_added: 0.3.0
description:
  - Creates every directory of O(paths) that is missing, in the order given, and sets the
    owner, group and mode of each one that differs.
  - What a loop of M(ansible.builtin.file) with C(state=directory) does, in one module run
    instead of one per directory. Each module run costs a round trip and a Python start on
    the host, and the boot tree has a dozen directories.
  - A path that exists but is not a directory is an error, and nothing is changed.
author:
  - centra.pxe engineers (@centra)
options:
  paths:
    description:
      - Absolute paths of the directories. A missing parent is created too, but only the
        listed directories get O(owner), O(group) and O(mode), so list parents first.
    type: list
    elements: path
    required: true
  owner:
    description: Owner of every listed directory (name or number).
    type: str
    default: root
  group:
    description: Group of every listed directory (name or number).
    type: str
    default: root
  mode:
    description: Permissions of every listed directory, in octal.
    type: str
    default: "0755"
attributes:
  check_mode:
    description: Reports which directories would be created or fixed, and changes nothing.
    support: full
  diff_mode:
    description: Lists the directories created and the ones whose owner, group or mode is fixed.
    support: full
"""

EXAMPLES = r"""
- name: Create the HTTP boot tree
  centra.pxe.directories:
    paths:
      - /srv/centra-pxe
      - /srv/centra-pxe/http
      - /srv/centra-pxe/http/nodes
"""

RETURN = r"""
created:
  description: Directories that did not exist.
  returned: always
  type: list
  elements: str
fixed:
  description: Existing directories whose owner, group or mode was set.
  returned: always
  type: list
  elements: str
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule


def _uid(owner):
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def _gid(group):
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def _describe(path):
    info = os.lstat(path)
    return "%d:%d %04o" % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))


def plan_directories(paths, uid, gid, mode):
    """Which of `paths` are missing and which exist with other attributes.

    Raises ValueError for a path that exists and is not a directory."""
    created, fixed = [], []
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            created.append(path)
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise ValueError("%s exists and is not a directory" % path)
        if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (uid, gid, mode):
            fixed.append(path)
    return created, fixed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
            mode=dict(type="str", default="0755"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    paths = params["paths"]
    relative = [p for p in paths if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg="paths must be absolute: %s" % ", ".join(relative))
    try:
        mode = int(params["mode"], 8)
    except ValueError:
        module.fail_json(msg="mode %r is not an octal number" % params["mode"])
    try:
        uid, gid = _uid(params["owner"]), _gid(params["group"])
    except KeyError as exc:
        module.fail_json(msg="unknown owner or group: %s" % exc)
    try:
        created, fixed = plan_directories(paths, uid, gid, mode)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    fixed_from = [(path, _describe(path)) for path in fixed]

    if not module.check_mode:
        try:
            for path in paths:
                if path in created:
                    os.makedirs(path, exist_ok=True)
                if path in created or path in fixed:
                    os.chown(path, uid, gid)
                    os.chmod(path, mode)  # after chown, which may clear set-id bits
        except OSError as exc:
            module.fail_json(msg="cannot set up directory %s: %s" % (exc.filename or path, exc.strerror or exc))

    changed = bool(created or fixed)
    result = dict(changed=changed, created=created, fixed=fixed)
    if module._diff and changed:
        wanted = "%s:%s %s" % (params["owner"], params["group"], params["mode"])
        result["diff"] = dict(
            before="".join("%s %s\n" % (path, before) for path, before in fixed_from),
            after="".join("%s %s\n" % (path, wanted) for path in created + fixed),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
