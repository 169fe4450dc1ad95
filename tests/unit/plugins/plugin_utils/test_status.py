# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/status.yml's report: the merge over servers, the snippet, a node's trace."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins.filter.status_report import status_report as report_filter
from ansible_collections.centra.pxe.plugins.plugin_utils._status import (
    discovered_snippet, merge_discovered, merge_nodes, node_trace, status_report)

NOW = 1_800_000_000.0


def at(seconds_ago):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW - seconds_ago)) + ".000Z"


def node(name, state, generation=1, state_at=100, seen=None, kind=None, **extra):
    return dict({"name": name, "profile": "worker", "state": state, "display_state": state, "generation": generation,
                 "state_at": at(state_at), "last_seen_at": at(seen) if seen is not None else None, "last_seen": kind,
                 "last_event": None, "macs": ["52:54:00:00:01:01"]}, **extra)


def test_an_ha_pair_shows_one_row_per_node_and_the_newest_state_wins():
    merged = merge_nodes({
        "pxe01": [node("n1", "installed", state_at=50, seen=400, kind="kernel"), node("n2", "install")],
        "pxe02": [node("n1", "installing", state_at=10, seen=30, kind="initrd"), node("n2", "install", generation=2)],
    })
    assert [n["name"] for n in merged] == ["n1", "n2"]
    # installed outranks installing in one generation (the service's merge order), whatever the clocks say
    assert merged[0]["state"] == "installed" and merged[0]["servers"] == ["pxe01", "pxe02"]
    assert merged[0]["last_seen"] == "initrd"  # the latest trace event over both servers
    assert merged[1]["generation"] == 2  # a rearm one server missed


def test_discovered_merge_drops_inventory_macs_and_sums_counts():
    found = merge_discovered({
        "pxe01": [{"mac": "52:54:00:FF:00:01", "arch": 7, "firmware": "efi64", "first_seen": at(100),
                   "last_seen": at(50), "count": 2, "ip": "192.0.2.150", "vendor": "PXEClient"},
                  {"mac": "52:54:00:00:01:01", "first_seen": at(5), "last_seen": at(5), "count": 1}],
        "pxe02": [{"mac": "52:54:00:ff:00:01", "arch": 7, "firmware": "efi64", "first_seen": at(200),
                   "last_seen": at(20), "count": 3, "ip": "192.0.2.151"}],
    }, ["52:54:00:00:01:01"])
    assert len(found) == 1
    assert found[0]["count"] == 5 and found[0]["ip"] == "192.0.2.151" and found[0]["first_seen"] == at(200)


def test_the_snippet_is_inventory_yaml_with_the_architecture_as_a_comment():
    import yaml
    lines = discovered_snippet([{"mac": "52:54:00:ff:00:01", "arch": 7, "firmware": "efi64", "vendor": "PXEClient",
                                 "ip": "192.0.2.150", "count": 2, "last_seen": at(5)}])
    parsed = yaml.safe_load("\n".join(lines))
    assert parsed == {"hosts": {"new-525400ff0001": {"pxe_mac": "52:54:00:ff:00:01"}}}
    assert "arch (option 93): 7 (efi64)" in lines[-1]
    assert discovered_snippet([]) == ["# No machine in no inventory has asked for DHCP."]


def test_report_table_and_an_unreachable_server():
    report = status_report({"pxe01": {"nodes": [node("n1", "install", seen=30, kind="kernel",
                                                     display_state="stalled")], "discovered": []},
                            "pxe02": {"error": "Status code was -1: Request failed: <urlopen error timed out>"}},
                           [], moment=NOW)
    assert report["nodes"][0].split() == ["NODE", "PROFILE", "STATE", "GEN", "LAST", "SEEN", "WHEN", "INSTALLER", "SERVERS"]
    assert report["nodes"][1].split() == ["n1", "worker", "stalled", "1", "kernel", "30s", "ago", "-", "pxe01"]
    assert report["unreachable"] == ["pxe02: Status code was -1: Request failed: <urlopen error timed out>"]


def test_a_trace_over_two_servers_is_in_time_order():
    lines = node_trace({
        "pxe02": {"events": [{"at": at(5), "ts": NOW - 5, "src": "http", "kind": "kernel", "ip": "192.0.2.11",
                              "uri": "/profiles/worker/vmlinuz", "bytes": 10}]},
        "pxe01": {"events": [{"at": at(9), "ts": NOW - 9, "src": "dhcp", "kind": "dhcp_ack", "ip": "192.0.2.11",
                              "arch": 0},
                             {"at": at(1), "ts": NOW - 1, "src": "lifecycle", "kind": "installer", "event": "installed"}]},
    })
    assert [line.split()[3] for line in lines[1:]] == ["dhcp_ack", "kernel", "installer"]
    assert "uri=/profiles/worker/vmlinuz bytes=10" in lines[2]


def test_the_filter_reads_the_uri_results():
    nodes = [{"item": "pxe01", "json": {"nodes": [node("n1", "installed", seen=10, kind="kernel")]}, "status": 200},
             {"item": "pxe02", "failed": True, "msg": "Status code was -1: timed out"}]
    discovered = [{"item": "pxe01", "json": {"discovered": []}, "status": 200},
                  {"item": "pxe02", "failed": True, "msg": "Status code was -1: timed out"}]
    report = report_filter(nodes, discovered=discovered, known_macs=[])
    assert report["nodes"][1].split()[:3] == ["n1", "worker", "installed"]
    assert report["unreachable"] == ["pxe02: Status code was -1: timed out"]
    kernel = {"at": at(5), "ts": NOW - 5, "src": "http", "kind": "kernel", "ip": "192.0.2.11"}
    initrd = {"at": at(5), "ts": NOW - 5, "src": "http", "kind": "initrd", "ip": "192.0.2.12"}
    events = [{"item": ["pxe01", "n1"], "status": 200, "json": {"node": "n1", "events": [kernel]}},
              {"item": ["pxe02", "n1"], "status": 404, "json": {"error": "no such node"}},
              {"item": ["pxe01", "n2"], "status": 200, "json": {"node": "n2", "events": [initrd]}}]
    lines = report_filter(events, trace="n1")
    assert len(lines) == 2 and lines[1].split()[1:4] == ["pxe01", "http", "kernel"]
    with pytest.raises(AnsibleFilterError):
        report_filter([], colour=True)
    with pytest.raises(AnsibleFilterError):
        report_filter([{"item": "pxe01", "json": {"nodes": [{"no": "name"}]}}], discovered=[])
