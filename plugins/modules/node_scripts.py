#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: node_scripts
short_description: Write the per-MAC iPXE scripts of every node in one task
version_added: 0.1.0
description:
  - Renders one iPXE script per MAC of every node of the boot plan into O(dest), named
    C(<mac with hyphens>.ipxe) (iPXE's C(${mac:hexhyp})), and removes the scripts of MACs
    no longer in the plan.
  - One task for all nodes. A template loop would cost a task iteration per node, minutes
    for ten thousand.
  - Each file is written to a temporary file and renamed into place, so a client never
    reads half a script.
author:
  - centra.pxe engineers (@centra)
options:
  plan:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  http_base:
    description: The URL the boot tree is served at, such as C(http://192.0.2.2).
    type: str
    required: true
  settings:
    description: iPXE settings (C(console), C(retry_seconds), ...), as for the C(centra.pxe.ipxe_menu_script) filter.
    type: dict
    default: {}
  override:
    description: Boot mode per node name overriding the plan's.
    type: dict
    default: {}
  boot:
    description:
      - Boot mode for every node, overriding the plan's and O(override).
      - The reinstall playbook serves the C(install) scripts written with this.
    type: str
    choices: [install, local, menu]
  dest:
    description: The directory of the node scripts; created if missing.
    type: path
    required: true
  mode:
    description: Permissions of the scripts.
    type: str
    default: "0644"
attributes:
  check_mode:
    description: Reports which scripts would be added, updated or removed, and writes nothing.
    support: full
  diff_mode:
    description: Lists the scripts added, updated and removed (the first 20 of each).
    support: full
"""

EXAMPLES = r"""
- name: Write the node scripts
  centra.pxe.node_scripts:
    plan: "{{ centra_pxe_plan }}"
    http_base: http://192.0.2.2
    dest: /srv/centra-pxe/http/nodes
"""

RETURN = r"""
added:
  description: Scripts written for MACs that had none.
  returned: always
  type: list
  elements: str
updated:
  description: Scripts whose content changed.
  returned: always
  type: list
  elements: str
removed:
  description: Scripts removed because their MAC left the plan.
  returned: always
  type: list
  elements: str
count:
  description: How many scripts the directory holds afterwards.
  returned: always
  type: int
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import node_scripts

DIFF_LIMIT = 20  # file names listed in the diff; beyond that, counts only


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _write_atomic(directory, name, text, mode):
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _summary(names, label):
    shown = ["%s %s" % (label, n) for n in names[:DIFF_LIMIT]]
    if len(names) > DIFF_LIMIT:
        shown.append("... and %d more %s" % (len(names) - DIFF_LIMIT, label))
    return shown


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="raw", required=True),
            http_base=dict(type="str", required=True),
            settings=dict(type="dict", default={}),
            override=dict(type="dict", default={}),
            boot=dict(type="str", choices=["install", "local", "menu"]),
            dest=dict(type="path", required=True),
            mode=dict(type="str", default="0644"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        plan = load_plan(params["plan"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    override = params["override"] or {}
    if override or params["boot"]:
        plan["nodes"] = [dict(n, boot=params["boot"] or override.get(n["name"], n["boot"])) for n in plan["nodes"]]
    try:
        mode = int(params["mode"], 8)
        wanted = node_scripts(plan, params["http_base"], params["settings"])
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="cannot render the node scripts: %s" % exc)
    dest = params["dest"]
    existing = set()
    if os.path.isdir(dest):
        existing = {n for n in os.listdir(dest) if n.endswith(".ipxe")}
    elif os.path.exists(dest):
        module.fail_json(msg="%s exists and is not a directory" % dest)

    added, updated = [], []
    for name in sorted(wanted):
        if name not in existing:
            added.append(name)
        elif _read(os.path.join(dest, name)) != wanted[name]:
            updated.append(name)
    removed = sorted(existing - set(wanted))
    mode_fixes = [n for n in sorted(existing & set(wanted))
                  if n not in updated and (os.stat(os.path.join(dest, n)).st_mode & 0o7777) != mode]
    changed = bool(added or updated or removed or mode_fixes or not os.path.isdir(dest))

    if changed and not module.check_mode:
        try:
            os.makedirs(dest, mode=0o755, exist_ok=True)
            for name in added + updated:
                _write_atomic(dest, name, wanted[name], mode)
            for name in mode_fixes:
                os.chmod(os.path.join(dest, name), mode)
            for name in removed:
                os.unlink(os.path.join(dest, name))
        except OSError as exc:
            module.fail_json(msg="cannot write the node scripts in %s: %s" % (dest, exc))

    result = dict(changed=changed, added=added, updated=updated, removed=removed, count=len(wanted))
    if module._diff and changed:
        result["diff"] = dict(
            before_header=dest, after_header=dest,
            before="\n".join(_summary(removed, "remove") + _summary(updated, "old")) + "\n",
            after="\n".join(_summary(added, "add") + _summary(updated, "new")) + "\n",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
