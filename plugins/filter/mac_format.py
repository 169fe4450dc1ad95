# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: mac_format
short_description: Canonical or loader-specific form of a MAC address
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Parses a MAC in any common notation (colon, hyphen, Cisco dotted, bare hex, any case) and returns it in the form asked for.
  - Fails, quoting the value, on anything that is not a 48-bit unicast MAC.
options:
  _input:
    description: The MAC address, in any common notation.
    type: str
    required: true
  form:
    description: The output form.
    type: str
    default: colon
    choices: [colon, hyphen, bare, cisco, pxelinux, ipxe]
"""

EXAMPLES = r"""
# "52:54:00:00:01:01"
canonical: "{{ '5254.0000.0101' | centra.pxe.mac_format }}"
# "01-52-54-00-00-01-01"
pxelinux_name: "{{ '52-54-00-00-01-01' | centra.pxe.mac_format('pxelinux') }}"
"""

RETURN = r"""
  _value:
    description: The MAC in the form asked for.
    type: str
"""

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac, parse_mac
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter


def _format(value, form):
    return format_mac(parse_mac(value), form)


mac_format = DocumentedFilter("mac_format", DOCUMENTATION, _format)


class FilterModule:
    def filters(self):
        return {"mac_format": mac_format}
