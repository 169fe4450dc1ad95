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
  - The script of a node whose C(pxe_boot) is C(install) boots the local disk. The node
    lifecycle service serves the install script (see O(lifecycle_dest)) until the node's
    installer reports that it is installed; nginx falls back on this one only without it.
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
    description:
      - The iPXE settings, every one of them, as for the C(centra.pxe.ipxe_menu_script) filter (the role
        M(centra.pxe.pxe_ipxe) passes its variables; the module knows no defaults).
    type: dict
    required: true
  dest:
    description: The directory of the node scripts; created if missing.
    type: path
    required: true
  lifecycle_dest:
    description:
      - Also write, in the same module run, the two scripts per MAC of every node whose C(pxe_boot) is
        C(install), which the node lifecycle service picks from by the node's state,
        C(install/<mac>.ipxe) (the profile, with C(centra.node=) and the placeholders for the callback
        URL and the token the service fills in) and C(local/<mac>.ipxe) (the local disk).
      - The role M(centra.pxe.pxe_ipxe) writes C(nodes/) and these this way, so a run carries the
        plan to the host once.
    type: path
  grub_dest:
    description:
      - Also write the GRUB configurations of the C(grub) loader chain (docs/secure-boot.md) under this
        directory (the C(grub/) directory of the TFTP root) - C(grub.cfg) (the entry GRUB sources from its
        prefix), C(menu.cfg), and C(nodes/<mac>.cfg) for every MAC of every node of the C(grub) chain; with
        O(lifecycle_dest), also C(install/<mac>.cfg) and C(local/<mac>.cfg) there for its install nodes.
      - Configurations of MACs no longer of the C(grub) chain are removed; without O(grub_dest), the GRUB
        variants in O(lifecycle_dest) are removed.
    type: path
  preseed_base:
    description:
      - The server's HTTP base (IPv4), for the preseed URL on the kernel command line of the nodes of
        installer profiles (docs/debian-installer.md); default O(http_base).
    type: str
    default: ""
  preseed_dest:
    description:
      - Also write C(<mac>.cfg), the preseed of every MAC of every node of an installer profile, in this
        directory (C(preseed/) of the HTTP root); preseeds of MACs no longer of one are removed.
    type: path
  default_loader:
    description: The server's default loader, for the nodes that set no C(pxe_loader) (with O(grub_dest)).
    type: str
    choices: [ipxe, grub]
    default: ipxe
  mode:
    description: Permissions of the scripts.
    type: str
    default: "0644"
attributes:
  check_mode:
    description: Reports which scripts would be added, updated or removed, and writes nothing.
    support: full
  diff_mode:
    description: Lists the scripts added, updated and removed (the first 20 of each), per directory.
    support: full
"""

EXAMPLES = r"""
- name: Write the node scripts
  centra.pxe.node_scripts:
    plan: "{{ centra_pxe_plan }}"
    http_base: http://192.0.2.2
    settings: {menu_timeout: 30, menu_default: local, console: [tty0], retry_seconds: 10, title: centra.pxe}
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
grub:
  description:
    - The same for the GRUB configurations, C(configs) (grub.cfg and menu.cfg), C(nodes), and with
      O(lifecycle_dest) C(install) and C(local).
  returned: when O(grub_dest) is set
  type: dict
lifecycle:
  description: The same for the C(install/) and C(local/) directories of O(lifecycle_dest).
  returned: when O(lifecycle_dest) is set
  type: dict
  contains:
    install:
      description: C(added), C(updated), C(removed) and C(count) of the install scripts.
      type: dict
    local:
      description: C(added), C(updated), C(removed) and C(count) of the local-boot scripts.
      type: dict
preseed:
  description: C(added), C(updated), C(removed) and C(count) of the preseeds.
  returned: when O(preseed_dest) is set
  type: dict
"""

import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.module_utils import _render_grub as grub
from ansible_collections.centra.pxe.plugins.module_utils._render_preseed import preseeds
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    INSTALL_DIR, LOCAL_DIR, lifecycle_scripts, node_scripts)

DIFF_LIMIT = 20  # file names listed in the diff; beyond that, counts only
_WRITER_THREADS = 4  # directories written at once (there are 3 to 8)


def _content_and_mode(dir_fd, name, size):
    """(the first `size` + 1 bytes of `name` in the directory, its permission bits), or
    (None, None) when it cannot be read. One open, one fstat, one read: a rerun at 100,000
    nodes compares 300,000 files."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None, None
    try:
        mode = os.fstat(fd).st_mode & 0o7777
        chunks, left = [], size + 1  # a byte more tells a longer file from the right one
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), mode
    except OSError:
        return None, None
    finally:
        os.close(fd)


def _write_atomic(dir_fd, name, data, mode):
    """`name` in the directory holds `data` whole or not at all (nginx and the lifecycle
    service read these files while they are written): a temporary name of this process,
    then a rename. No mkstemp or file object: a converge at 100,000 nodes writes 300,000."""
    tmp = ".%s.%d.tmp" % (name, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode,
                 dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _summary(names, label):
    shown = ["%s %s" % (label, n) for n in names[:DIFF_LIMIT]]
    if len(names) > DIFF_LIMIT:
        shown.append("... and %d more %s" % (len(names) - DIFF_LIMIT, label))
    return shown


class _Failure(Exception):
    pass


def _compare(dest, wanted, mode, suffix=".ipxe"):
    """What writing `wanted` ({file name: text}) into `dest` would add, update, remove and re-mode
    (of the files ending in `suffix`: the iPXE scripts and the GRUB configs share directories)."""
    is_dir = os.path.isdir(dest)
    if not is_dir and os.path.exists(dest):
        raise _Failure("%s exists and is not a directory" % dest)
    added, updated, mode_fixes, existing = [], [], [], set()
    dir_fd = None
    try:
        if is_dir:
            dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            existing = {n for n in os.listdir(dir_fd) if n.endswith(suffix)}
        for name in sorted(wanted):
            if name not in existing:
                added.append(name)
                continue
            data = wanted[name].encode("utf-8")
            content, current_mode = _content_and_mode(dir_fd, name, len(data))
            if content != data:
                updated.append(name)
            elif current_mode != mode:
                mode_fixes.append(name)
    except OSError as exc:
        raise _Failure("cannot read %s: %s" % (dest, exc)) from None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    removed = sorted(existing - set(wanted))
    changed = bool(added or updated or removed or mode_fixes or not is_dir)
    return dict(changed=changed, added=added, updated=updated, removed=removed, mode_fixes=mode_fixes)


def _apply(dest, wanted, mode, delta):
    try:
        os.makedirs(dest, mode=0o755, exist_ok=True)
        dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in delta["added"] + delta["updated"]:
                _write_atomic(dir_fd, name, wanted[name].encode("utf-8"), mode)
            for name in delta["mode_fixes"]:
                os.chmod(name, mode, dir_fd=dir_fd)
            for name in delta["removed"]:
                os.unlink(name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _Failure("cannot write the node scripts in %s: %s" % (dest, exc)) from None


def _apply_all(trees, deltas, mode):
    """Each changed directory in a thread of its own: the work is system calls (the GIL is
    released in them), and creating files in different directories takes no common lock."""
    jobs = [(dest, wanted, delta) for (dest, wanted), delta in zip(trees, deltas) if delta["changed"]]
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=min(len(jobs), _WRITER_THREADS)) as pool:
        for future in [pool.submit(_apply, dest, wanted, mode, delta) for dest, wanted, delta in jobs]:
            future.result()


def _diff(dest, delta):
    return dict(
        before_header=dest, after_header=dest,
        before="\n".join(_summary(delta["removed"], "remove") + _summary(delta["updated"], "old")) + "\n",
        after="\n".join(_summary(delta["added"], "add") + _summary(delta["updated"], "new")) + "\n",
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="raw", required=True),
            http_base=dict(type="str", required=True),
            settings=dict(type="dict", required=True),
            dest=dict(type="path", required=True),
            lifecycle_dest=dict(type="path"),
            grub_dest=dict(type="path"),
            default_loader=dict(type="str", choices=["ipxe", "grub"], default="ipxe"),
            preseed_base=dict(type="str", default=""),
            preseed_dest=dict(type="path"),
            mode=dict(type="str", default="0644"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        plan = load_plan(params["plan"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    trees = []
    try:
        mode = int(params["mode"], 8)
        base = params["preseed_base"]
        trees.append((params["dest"], node_scripts(plan, params["http_base"], params["settings"], base)))
        if params["lifecycle_dest"]:
            variants = lifecycle_scripts(plan, params["http_base"], params["settings"], base)
            for kind in (INSTALL_DIR, LOCAL_DIR):
                trees.append((os.path.join(params["lifecycle_dest"], kind), variants[kind]))
        # The GRUB configs after the iPXE trees (their results keep their places).
        grub_trees = []
        if params["grub_dest"]:
            default = params["default_loader"]
            grub_trees.append((params["grub_dest"], {"grub.cfg": grub.entry_config(plan),
                                                     "menu.cfg": grub.menu_config(plan, params["settings"])}))
            grub_trees.append((os.path.join(params["grub_dest"], "nodes"),
                               grub.node_configs(plan, params["settings"], default, base)))
            if params["lifecycle_dest"]:
                configs = grub.lifecycle_configs(plan, params["settings"], default, base)
                for kind in (INSTALL_DIR, LOCAL_DIR):
                    grub_trees.append((os.path.join(params["lifecycle_dest"], kind), configs[kind]))
        stale_grub = []
        if params["lifecycle_dest"] and not params["grub_dest"]:
            # The grub chain out of use: its lifecycle variants go (the service would serve them).
            stale_grub = [(os.path.join(params["lifecycle_dest"], kind), {}) for kind in (INSTALL_DIR, LOCAL_DIR)]
        preseed_trees = [(params["preseed_dest"], preseeds(plan))] if params["preseed_dest"] else []
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="cannot render the node scripts: %s" % exc)
    try:
        deltas = [_compare(dest, wanted, mode) for dest, wanted in trees]
        deltas += [_compare(dest, wanted, mode, grub.SUFFIX) for dest, wanted in grub_trees + stale_grub]
        deltas += [_compare(dest, wanted, mode, ".cfg") for dest, wanted in preseed_trees]
        trees += grub_trees + stale_grub + preseed_trees
        if not module.check_mode:
            _apply_all(trees, deltas, mode)
    except _Failure as exc:
        module.fail_json(msg=str(exc))

    def counts(index):
        delta = deltas[index]
        return dict(added=delta["added"], updated=delta["updated"], removed=delta["removed"],
                    count=len(trees[index][1]))

    result = dict(changed=any(d["changed"] for d in deltas), **counts(0))
    if params["lifecycle_dest"]:
        result["lifecycle"] = {INSTALL_DIR: counts(1), LOCAL_DIR: counts(2)}
    if grub_trees:
        first = len(trees) - len(grub_trees) - len(stale_grub) - len(preseed_trees)
        result["grub"] = {"configs": counts(first), "nodes": counts(first + 1)}
        if len(grub_trees) == 4:
            result["grub"].update({INSTALL_DIR: counts(first + 2), LOCAL_DIR: counts(first + 3)})
    if preseed_trees:
        result["preseed"] = counts(len(trees) - 1)
    changed_trees = [(dest, delta) for (dest, _wanted), delta in zip(trees, deltas) if delta["changed"]]
    if module._diff and changed_trees:
        result["diff"] = [_diff(dest, delta) for dest, delta in changed_trees]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
