# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: kea_json
short_description: A Kea configuration as the file Kea reads, include directives and all
version_added: 0.13.0
author: centra.pxe engineers (@centra)
description:
  - Writes the mapping M(centra.pxe.kea_config) returns as JSON, as C(to_nice_json(indent=2)) does, and turns
    each value that M(centra.pxe.kea_config) marks as an included file into Kea's C(<?include "path"?>).
  - The only such value is the password of a host database read over the network
    (C(pxe_dhcp_kea_host_database_server)), kept in a file of its own so that the configuration and its diffs
    hold no secret.
options:
  _input:
    description: The configuration, the mapping M(centra.pxe.kea_config) returns.
    type: dict
    required: true
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.kea_config(server, kea_settings) | centra.pxe.kea_json }}\n"
"""

RETURN = r"""
  _value:
    description: The configuration file's text.
    type: str
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import kea_json_text

kea_json = DocumentedFilter("kea_json", DOCUMENTATION, kea_json_text)


class FilterModule:
    def filters(self):
        return {"kea_json": kea_json}
