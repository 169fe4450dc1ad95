# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: dhcpd_config
short_description: The ISC dhcpd configuration of a PXE server, from the boot plan
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Renders dhcpd.conf with the subnets and pools, a host per MAC, and the option-93 boot policy as one if/elsif chain.
  - For sites that still run ISC DHCP (end-of-life since 2022); Kea is the default backend.
options:
  _input:
    description: The boot plan, the JSON string M(centra.pxe.boot_plan) returns as a fact.
    type: raw
    required: true
  server:
    description:
      - The server, a mapping with C(address), C(http_base) and C(loaders).
      - With C(name) (its inventory name), the server's side of the plan's HA relationship is rendered
        (a C(failover peer) declaration; the dynamic pools join it).
    type: dict
    required: true
  settings:
    description: Settings overriding the defaults (C(valid_lifetime), C(authoritative)).
    type: dict
    default: {}
"""

EXAMPLES = r"""
content: "{{ centra_pxe_plan | centra.pxe.dhcpd_config(server) }}"
"""

RETURN = r"""
  _value:
    description: The text of dhcpd.conf.
    type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan
from ansible_collections.centra.pxe.plugins.module_utils._render_dhcp import dhcpd_config as render


def dhcpd_config(plan, server, settings=None):
    try:
        return render(load_plan(plan), server, settings or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("centra.pxe.dhcpd_config: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"dhcpd_config": dhcpd_config}
