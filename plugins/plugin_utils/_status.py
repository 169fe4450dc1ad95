# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""PRIVATE: playbooks/status.yml's report from the read-only API of every PXE server
(docs/status.md): one table of nodes merged over the servers (the newest state of a node
wins: an HA pair shows one row per node), the machines in no inventory as an inventory
snippet, or one node's trace."""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional

# The lifecycle service's progress order within a generation (docs/lifecycle.md, HA).
_PROGRESS = {"install": 0, "installing": 1, "failed": 1, "installed": 2}


def _epoch(text: Any) -> float:
    """Seconds of an ISO 8601 UTC time the API gives ("2026-12-03T12:00:00.123Z"); 0 if none."""
    if not isinstance(text, str) or len(text) < 19:
        return 0.0
    try:
        whole = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    fraction = text[19:].rstrip("Z")
    return whole + (float(fraction) if fraction.startswith(".") and fraction[1:].isdigit() else 0.0)


def _ago(moment: float, text: Any) -> str:
    then = _epoch(text)
    if not then:
        return "-"
    seconds = max(0, int(moment - then))
    if seconds < 120:
        return "%ds ago" % seconds
    if seconds < 7200:
        return "%dm ago" % (seconds // 60)
    if seconds < 172800:
        return "%dh ago" % (seconds // 3600)
    return "%dd ago" % (seconds // 86400)


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    def key(node: Mapping[str, Any]):
        return (int(node.get("generation") or 0), _PROGRESS.get(str(node.get("state")), -1),
                _epoch(node.get("state_at")), _epoch(node.get("last_seen_at")))
    return key(candidate) > key(current)


def merge_nodes(answers: Mapping[str, Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """One record per node over the servers' /api/v1/nodes answers, the newest state winning;
    the latest trace event over all servers; "servers": who knows the node."""
    merged: Dict[str, Dict[str, Any]] = {}
    for server in sorted(answers):
        for node in answers[server]:
            name = str(node["name"])
            current = merged.get(name)
            if current is None:
                merged[name] = dict(node, servers=[server])
                continue
            servers = current["servers"] + [server]
            seen = max((current, node), key=lambda n: _epoch(n.get("last_seen_at")))
            if _newer(node, current):
                current = dict(node)
            current.update(servers=servers, last_seen_at=seen.get("last_seen_at"), last_seen=seen.get("last_seen"))
            merged[name] = current
    return [merged[name] for name in sorted(merged)]


def merge_discovered(answers: Mapping[str, Sequence[Mapping[str, Any]]], known_macs: Sequence[str]) -> List[Dict[str, Any]]:
    """The discovered machines of every server by MAC, minus the MACs of the inventory."""
    known = {str(m).lower() for m in known_macs}
    merged: Dict[str, Dict[str, Any]] = {}
    for server in sorted(answers):
        for entry in answers[server]:
            mac = str(entry["mac"]).lower()
            if mac in known:
                continue
            current = merged.get(mac)
            if current is None:
                merged[mac] = dict(entry, mac=mac)
                continue
            latest = entry if _epoch(entry.get("last_seen")) > _epoch(current.get("last_seen")) else current
            first = min((current, entry), key=lambda e: _epoch(e.get("first_seen")) or float("inf"))
            merged[mac] = dict(latest, mac=mac, first_seen=first.get("first_seen"),
                               count=int(current.get("count") or 0) + int(entry.get("count") or 0))
    return sorted(merged.values(), key=lambda e: (-_epoch(e.get("last_seen")), e["mac"]))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [list(header)] + [list(r) for r in rows]]


def node_table(nodes: Sequence[Mapping[str, Any]], moment: float) -> List[str]:
    rows = []
    for node in nodes:
        last_event = node.get("last_event") or {}
        rows.append([
            str(node["name"]), str(node.get("profile") or "-"), str(node.get("display_state") or node.get("state")),
            str(node.get("generation", "-")), str(node.get("last_seen") or "-"), _ago(moment, node.get("last_seen_at")),
            ("%s %s" % (last_event.get("event"), _ago(moment, last_event.get("at")))) if last_event else "-",
            ",".join(node.get("servers") or []),
        ])
    return _table(["NODE", "PROFILE", "STATE", "GEN", "LAST SEEN", "WHEN", "INSTALLER", "SERVERS"], rows)


def discovered_snippet(machines: Sequence[Mapping[str, Any]]) -> List[str]:
    """The machines as inventory YAML to paste under a profile group (`hosts:`); the name
    is a placeholder to change, the architecture a comment (the inventory has no such variable)."""
    if not machines:
        return ["# No machine in no inventory has asked for DHCP."]
    lines = ["# %d machine(s) in no inventory. Paste under the profile group's hosts: and rename them." % len(machines),
             "hosts:"]
    for entry in machines:
        mac = str(entry["mac"])
        lines.append("  new-%s:" % mac.replace(":", ""))
        lines.append('    pxe_mac: "%s"' % mac)
        arch = entry.get("arch")
        lines.append("    # arch (option 93): %s (%s), vendor: %s, address: %s, seen %s times, last %s" % (
            "-" if arch is None else arch, entry.get("firmware") or "-", entry.get("vendor") or "-",
            entry.get("ip") or "-", entry.get("count") or 0, entry.get("last_seen") or "-"))
    return lines


def node_trace(server_events: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """One node's trace merged over the servers (an event both servers saw is listed by each)."""
    rows = []
    for server in sorted(server_events):
        for event in (server_events[server] or {}).get("events", []):
            keys = ("type", "event", "file", "uri", "status", "bytes", "seconds", "arch", "firmware", "boot_file", "message")
            detail = " ".join("%s=%s" % (k, event[k]) for k in keys if event.get(k) not in (None, ""))
            row = [str(event.get("at")), server, str(event.get("src")), str(event.get("kind")),
                   str(event.get("ip") or "-"), detail]
            rows.append((float(event.get("ts") or 0), row))
    rows.sort(key=lambda item: item[0])
    return _table(["AT", "SERVER", "SOURCE", "KIND", "ADDRESS", "DETAIL"], [r for _t, r in rows])


def answers_from_results(nodes: Sequence[Mapping[str, Any]], discovered: Sequence[Mapping[str, Any]],
                         ) -> Dict[str, Dict[str, Any]]:
    """server -> {"nodes", "discovered"} or {"error"}, from the registered results of the
    playbook's two ansible.builtin.uri loops over the servers (each result's item is the server)."""
    answers: Dict[str, Dict[str, Any]] = {}
    for kind, results in (("nodes", nodes), ("discovered", discovered)):
        for result in results:
            server = str(result["item"])
            entry = answers.setdefault(server, {})
            if "error" in entry:
                continue
            if result.get("failed") or not isinstance(result.get("json"), Mapping):
                answers[server] = {"error": str(result.get("msg") or "no JSON answer")}
                continue
            entry[kind] = result["json"][kind]
    return answers


def trace_from_results(results: Sequence[Mapping[str, Any]], node: str) -> Dict[str, Mapping[str, Any]]:
    """server -> the events answer for `node`, from the registered results of the playbook's
    uri loop over (server, node) pairs; a server that does not know the node is left out."""
    return {str(r["item"][0]): r["json"] for r in results
            if r["item"][1] == node and not r.get("failed") and r.get("status") == 200 and isinstance(r.get("json"), Mapping)}


def status_report(servers: Mapping[str, Mapping[str, Any]], known_macs: Sequence[str], moment: Optional[float] = None,
                  ) -> Dict[str, List[str]]:
    """servers: name -> {"nodes": [...] (/api/v1/nodes), "discovered": [...] (/api/v1/discovered)}
    (a server that did not answer: {"error": "..."})."""
    moment = time.time() if moment is None else moment
    reachable = {s: v for s, v in servers.items() if "error" not in v}
    nodes = merge_nodes({s: v.get("nodes") or [] for s, v in reachable.items()})
    machines = merge_discovered({s: v.get("discovered") or [] for s, v in reachable.items()}, known_macs)
    problems = ["%s: %s" % (s, v["error"]) for s, v in sorted(servers.items()) if "error" in v]
    return {"nodes": node_table(nodes, moment), "discovered": discovered_snippet(machines), "unreachable": problems}
