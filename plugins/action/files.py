# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin behind centra.pxe.files: ask the host which entries differ, then send only those.

A rerun where nothing changed costs one module run for all the entries; a change costs two."""

from __future__ import annotations

import hashlib
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.centra.pxe.plugins.plugin_utils._action import checked_args

MODULE = "centra.pxe.files"
FILE_SPEC = {
    "path": {"type": "str", "required": True},
    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "link", "touch", "absent"]},
    "content": {"type": "str"},
    "src": {"type": "str"},
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
    "mode": {"type": "str"},
    "validate": {"type": "str"},
    "apply": {"type": "str"},
}
ARGUMENT_SPEC = {"files": {"type": "list", "elements": "dict", "required": True, "options": FILE_SPEC}}


def with_checksums(files: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The entries with the SHA-1 of each file's content, as the module compares them.

    Raises AnsibleActionFail for a file without content (the module sees only checksums)."""
    entries = []
    for spec in files:
        spec = {key: value for key, value in spec.items() if value is not None}
        if spec["state"] == "file":
            if "content" not in spec:
                raise AnsibleActionFail("%s: %s needs content" % (MODULE, spec["path"]))
            spec["checksum"] = hashlib.sha1(spec["content"].encode("utf-8")).hexdigest()
        entries.append(spec)
    return entries


def without_content(files: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [{k: v for k, v in spec.items() if k != "content"} for spec in files]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        checked = checked_args(MODULE, ARGUMENT_SPEC, self._task.args)
        files = with_checksums(checked["files"])
        paths = [spec["path"] for spec in files]
        if len(set(paths)) != len(paths):
            raise AnsibleActionFail("%s: a path is listed twice" % MODULE)

        if self._task.check_mode or self._task.diff:
            # The module needs the contents to show a diff; check and diff runs are rare.
            result.update(self._execute_module(module_name=MODULE, module_args={"files": files}, task_vars=task_vars))
            return result
        first = self._execute_module(module_name=MODULE, module_args={"files": without_content(files), "inspect": True},
                                     task_vars=task_vars)
        if first.get("failed") or not first.get("changed_paths"):
            result.update(first)
            return result
        stale = set(first["changed_paths"])
        second = self._execute_module(module_name=MODULE,
                                      module_args={"files": [spec for spec in files if spec["path"] in stale]},
                                      task_vars=task_vars)
        result.update(second)
        return result
