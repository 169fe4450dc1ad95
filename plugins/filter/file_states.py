# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: file_states
short_description: What a host holds at each path, from an ansible.builtin.find result, as one comparable string
version_added: 0.3.0
author: centra.pxe engineers (@centra)
description:
  - Turns the RV(ansible.builtin.find#module:files) of a find run with C(get_checksum) into a
    dictionary from each path to the string C(<algorithm>:<checksum> <mode> <owner>:<group>).
  - The roles compare that string with what a file should be, and copy only the files that
    differ. One find replaces a copy task per file, each of which reads the file on both
    sides and costs a module run on the host even when nothing changes.
options:
  _input:
    description: The C(files) list of an M(ansible.builtin.find) result.
    type: list
    elements: dict
    required: true
  algorithm:
    description: The C(checksum_algorithm) the find ran with; it prefixes the checksum, as in the boot plan's C(sha256:<hex>).
    type: str
    default: sha256
"""

EXAMPLES = r"""
# {"/srv/centra-pxe/http/profiles/worker/vmlinuz": "sha256:9f86... 0644 root:root"}
states: "{{ found.files | centra.pxe.file_states }}"
"""

RETURN = r"""
  _value:
    description: One string per path; a path without a checksum (a directory, a link) gets C(-) in its place.
    type: dict
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter


def _states(files, algorithm):
    try:
        return {str(f["path"]): "%s %s %s:%s" % ("%s:%s" % (algorithm, f["checksum"]) if f.get("checksum") else "-",
                                                 f["mode"], f["pw_name"], f["gr_name"])
                for f in files}
    except (KeyError, TypeError) as exc:
        raise ValueError("not a list of find results (%s)" % exc) from None


file_states = DocumentedFilter("file_states", DOCUMENTATION, _states)


class FilterModule:
    def filters(self):
        return {"file_states": file_states}
