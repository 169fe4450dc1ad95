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
  - With O(trace), the result is instead that node's trace over all servers, oldest first.
options:
  _input:
    description:
      - The registered C(results) of an M(ansible.builtin.uri) loop over the servers reading
        C(/api/v1/nodes) (each result's C(item) is the server); with O(trace), those of a loop over
        C([server, node]) pairs reading C(/api/v1/nodes/<node>/events).
    type: list
    elements: dict
    required: true
  discovered:
    description: The registered C(results) of the loop over the servers reading C(/api/v1/discovered).
    type: list
    elements: dict
    default: []
  known_macs:
    description: The MACs of the inventory's nodes (discovered machines with one of them are left out).
    type: list
    elements: str
    default: []
  trace:
    description: Report the trace of this node instead of the table.
    type: str
"""

EXAMPLES = r"""
report: "{{ nodes_read.results | centra.pxe.status_report(discovered=discovered_read.results, known_macs=macs) }}"
trace: "{{ events_read.results | centra.pxe.status_report(trace='node07') }}"
"""

RETURN = r"""
  _value:
    description:
      - C({nodes, discovered, unreachable}), each a list of lines (the node table, the inventory
        snippet, the servers that did not answer); with O(trace), the node's trace as a list of lines.
    type: raw
"""

from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter
from ansible_collections.centra.pxe.plugins.plugin_utils._status import (
    answers_from_results, node_trace, status_report as _report, trace_from_results)


def _status_report(results, discovered, known_macs, trace):
    try:
        if trace:
            return node_trace(trace_from_results(results, trace))
        return _report(answers_from_results(results, discovered), known_macs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError("not the answers of the status API (%s)" % exc) from None


status_report = DocumentedFilter("status_report", DOCUMENTATION, _status_report)


class FilterModule:
    def filters(self):
        return {"status_report": status_report}
