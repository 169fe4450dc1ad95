# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: status_report
short_description: playbooks/status.yml's report from the read-only API of every PXE server
version_added: 0.1.0
author: centra.pxe engineers (@centra)
description:
  - Merges the answers of C(/api/v1/nodes) and C(/api/v1/discovered) of every PXE server
    (docs/status.md) - one row per node, the newest state winning, so an HA pair shows one row -
    and writes the machines in no inventory as an inventory snippet.
  - With O(trace=true), the input is instead each server's C(/api/v1/nodes/<node>/events) answer,
    and the result one node's trace, oldest first.
options:
  _input:
    description:
      - Server name to C({nodes, discovered}) (the decoded JSON answers), or to C({error}) for a server
        that did not answer; with O(trace=true), server name to the events answer.
    type: dict
    required: true
  known_macs:
    description: The MACs of the inventory's nodes (discovered machines with one of them are left out).
    type: list
    elements: str
    default: []
  trace:
    description: Report one node's trace instead of the table.
    type: bool
    default: false
"""

EXAMPLES = r"""
report: "{{ answers | centra.pxe.status_report(known_macs=macs) }}"
trace: "{{ events | centra.pxe.status_report(trace=true) }}"
"""

RETURN = r"""
  _value:
    description:
      - C({nodes, discovered, unreachable}), each a list of lines (the node table, the inventory
        snippet, the servers that did not answer); with O(trace=true), the trace as a list of lines.
    type: raw
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._status import node_trace, status_report as _report


def _status_report(answers, known_macs, trace):
    try:
        if trace:
            return node_trace(answers)
        return _report(answers, known_macs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError("not the answers of the status API (%s)" % exc) from None


status_report = DocumentedFilter("status_report", DOCUMENTATION, _status_report)


class FilterModule:
    def filters(self):
        return {"status_report": status_report}
