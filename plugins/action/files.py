# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin behind centra.pxe.files: ask the host which entries differ, then send only those.

A rerun where nothing changed costs one module run for all the entries; a change costs two.
Templates named by an entry's `template` are rendered here, as the template module does."""

from __future__ import annotations

import hashlib
import os
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader

try:  # ansible-core 2.19 and later: the engine the template lookup uses, without its cost
    from ansible._internal._templating import _template_vars
    from ansible._internal._templating._engine import TemplateOptions, TemplateOverrides
    from ansible.template import trust_as_template
except ImportError:  # earlier ansible-core: the template lookup itself
    _template_vars = None

from ansible_collections.centra.pxe.plugins.plugin_utils._action import checked_args

MODULE = "centra.pxe.files"
FILE_SPEC = {
    "path": {"type": "str", "required": True},
    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "link", "touch", "absent", "copy"]},
    "content": {"type": "str"},
    "template": {"type": "str"},
    "src": {"type": "str"},
    "keep": {"type": "list", "elements": "str"},
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
        if spec["state"] == "absent":
            # What a file switched off by a templated state had is not sent.
            spec = {key: value for key, value in spec.items() if key not in ("content", "validate", "apply")}
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

    def _render(self, name: str, task_vars: dict[str, t.Any]) -> str:
        """A role template, rendered as lookup('ansible.builtin.template', name) renders it.

        The lookup deep-copies every variable of the host for each template; with the boot
        plan of 10,000 nodes among them that is about half a second per template, on every
        run. Templates only read their variables, so a shallow copy gives the same text."""
        if _template_vars is None:
            lookup = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
            return lookup.run([name], variables=task_vars)[0]
        try:
            source = self._find_needle("templates", name)
        except Exception as exc:  # AnsibleError from the search: name the entry
            raise AnsibleActionFail("%s: template %s: %s" % (MODULE, name, exc)) from exc
        searchpath = []
        for path in list(task_vars.get("ansible_search_path", [])):
            searchpath.extend([os.path.join(path, "templates"), path])
        searchpath.insert(0, os.path.dirname(source))
        variables = dict(task_vars)
        variables.update(_template_vars.generate_ansible_template_vars(
            path=name, fullpath=source, include_ansible_managed="ansible_managed" not in variables))
        templar = self._templar.copy_with_new_env(available_variables=variables, searchpath=searchpath)
        text = trust_as_template(self._loader.get_text_file_contents(source))
        return templar._engine.template(text, options=TemplateOptions(
            escape_backslashes=False, overrides=TemplateOverrides.from_kwargs(dict(trim_blocks=True))))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        checked = checked_args(MODULE, ARGUMENT_SPEC, self._task.args)
        for spec in checked["files"]:
            name = spec.pop("template", None)
            if name is None:
                continue
            if spec.get("content") is not None:
                raise AnsibleActionFail("%s: %s: give content or template, not both" % (MODULE, spec["path"]))
            if spec["state"] == "file":
                spec["content"] = self._render(name, task_vars)
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
