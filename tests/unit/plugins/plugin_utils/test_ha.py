# SPDX-License-Identifier: GPL-3.0-or-later
"""High availability: pxe_dhcp_ha checked by the plan (host and field of every problem),
and each server's side rendered and accepted by the daemons' own checkers."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import (
    ISC_FAILOVER_PEER, dhcpd_config, kea_dhcp4_config, kea_pools)
from servers_inventory import ADDRESSES, plan_of, problems_of, server


def servers(ha, backend="kea", names=("pxe01", "pxe02"), **per_host):
    out = {}
    for name in names:
        entry = {"address": ADDRESSES[name], "pxe_dhcp_backend": backend}
        if ha is not None:
            entry["pxe_dhcp_ha"] = ha
        entry.update(per_host.get(name, {}))
        out[name] = entry
    return out


def _checker(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, "%s is not installed: scripts/setup.sh installs it" % name
    return path


def kea_check(config, tmp_path):
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    return subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)


def dhcpd_check(text, tmp_path):
    path = tmp_path / "dhcpd.conf"
    path.write_text(text)
    return subprocess.run([_checker("dhcpd"), "-t", "-4", "-cf", str(path)], capture_output=True, text=True,
                          check=False)


# -- the plan -------------------------------------------------------------------

def test_without_pxe_dhcp_ha_there_is_no_relationship():
    assert plan_of(servers(None))["ha"] == []
    assert plan_of(servers({}))["ha"] == []


def test_roles_follow_the_order_of_the_servers_and_defaults_fill_in():
    plan = plan_of(servers({"mode": "hot-standby"}))
    assert plan["ha"] == [{
        "backend": "kea", "mode": "hot-standby", "port": 8001, "heartbeat_delay_ms": 10000,
        "max_response_delay_ms": 60000, "max_ack_delay_ms": 10000, "max_unacked_clients": 10,
        "peers": [{"name": "pxe01", "role": "primary", "address": "192.0.2.2"},
                  {"name": "pxe02", "role": "standby", "address": "192.0.2.3"}]}]
    lb = plan_of(servers({"mode": "load-balancing", "peers": ["pxe02", "pxe01"]}))["ha"][0]
    assert [(p["name"], p["role"]) for p in lb["peers"]] == [("pxe02", "primary"), ("pxe01", "secondary")]


def test_isc_failover_roles_and_split():
    standby = plan_of(servers({"mode": "hot-standby"}, backend="isc"))["ha"][0]
    assert [p["role"] for p in standby["peers"]] == ["primary", "secondary"]
    assert standby["split"] == 256 and standby["port"] == 647 and standby["mclt"] == 3600
    balanced = plan_of(servers({"mode": "load-balancing", "split": 64}, backend="isc"))["ha"][0]
    assert balanced["split"] == 64


def test_kea_takes_backups_after_the_pair():
    plan = plan_of(servers({"mode": "load-balancing"}, names=("pxe01", "pxe02", "pxe03")))
    assert [p["role"] for p in plan["ha"][0]["peers"]] == ["primary", "secondary", "backup"]


def test_the_ha_address_overrides_ansible_host_and_is_reserved_from_nodes():
    plan = plan_of(servers({"mode": "hot-standby"}, pxe02={"pxe_dhcp_ha_address": "198.51.100.3"}))
    assert plan["ha"][0]["peers"][1]["address"] == "198.51.100.3"


def test_two_pairs_side_by_side():
    names = ("pxe01", "pxe02", "pxe03")
    ADDRESSES["pxe04"] = "192.0.2.5"
    try:
        inventory = servers({"mode": "hot-standby", "peers": ["pxe01", "pxe02"]}, names=names + ("pxe04",),
                            pxe03={"pxe_dhcp_ha": {"mode": "load-balancing", "peers": ["pxe03", "pxe04"]}},
                            pxe04={"pxe_dhcp_ha": {"mode": "load-balancing", "peers": ["pxe03", "pxe04"]}})
        plan = plan_of(inventory)
    finally:
        del ADDRESSES["pxe04"]
    assert [[p["name"] for p in r["peers"]] for r in plan["ha"]] == [["pxe01", "pxe02"], ["pxe03", "pxe04"]]
    assert [r["mode"] for r in plan["ha"]] == ["hot-standby", "load-balancing"]


@pytest.mark.parametrize("server_vars, expected", [
    (servers({"mode": "active-active"}),
     ["host pxe01: pxe_dhcp_ha.mode: 'active-active' is not one of hot-standby, load-balancing",
      "host pxe02: pxe_dhcp_ha.mode: 'active-active' is not one of hot-standby, load-balancing"]),
    (servers("hot-standby", names=("pxe01",)),
     ["host pxe01: pxe_dhcp_ha: must be a mapping such as {mode: hot-standby}, got 'hot-standby'"]),
    (servers({"mode": "hot-standby"}, names=("pxe01",)),
     ["host pxe01: pxe_dhcp_ha.peers: a Kea HA relationship needs 2 (primary and standby) plus optional backups "
      "servers, got 1 (pxe01); list them in pxe_dhcp_ha.peers"]),
    (servers({"mode": "hot-standby"}, backend="isc", names=("pxe01", "pxe02", "pxe03")),
     ["host %s: pxe_dhcp_ha.peers: ISC failover needs exactly 2 servers, got 3 (pxe01, pxe02, pxe03); list them "
      "in pxe_dhcp_ha.peers" % n for n in ("pxe01", "pxe02", "pxe03")]),
    (servers({"mode": "hot-standby", "peers": ["pxe01", "pxe09"]}),
     ["host pxe01: pxe_dhcp_ha.peers: pxe09 is not a host of pxe_servers",
      "host pxe02: pxe_dhcp_ha.peers: pxe09 is not a host of pxe_servers",
      "host pxe02: pxe_dhcp_ha.peers: does not list pxe02 itself (pxe01, pxe09)"]),
    (servers({"mode": "hot-standby", "peers": ["pxe01", "pxe01"]}),
     ["host %s: pxe_dhcp_ha.peers: lists a server twice: pxe01, pxe01" % n for n in ("pxe01", "pxe02")]),
    (servers({"mode": "hot-standby"}, pxe02={"pxe_dhcp_ha": {"mode": "load-balancing"}}),
     ["host pxe02: pxe_dhcp_ha: must match that of its HA peer pxe01: mode 'load-balancing', not 'hot-standby'"]),
    (servers({"mode": "hot-standby", "peers": ["pxe01", "pxe02"]}, pxe02={"pxe_dhcp_ha": None}),
     ["host pxe02: pxe_dhcp_ha: is not set, but pxe01 names it as its HA peer"]),
    (servers({"mode": "hot-standby"}, pxe02={"pxe_dhcp_ha_address": "192.0.2.2"}),
     ["host pxe02: pxe_dhcp_ha_address: 192.0.2.2 is also the HA address of pxe01"]),
    (servers({"mode": "hot-standby"}, pxe02={"address": "pxe02.example.net"}),
     ["host pxe02: ansible_host: 'pxe02.example.net' is not an IPv4 address: the HA peers reach each other "
      "there (set pxe_dhcp_ha_address)"]),
    (servers({"mode": "hot-standby", "mclt": 600}),
     ["host %s: pxe_dhcp_ha.mclt: applies to the isc backend only, this server runs kea" % n
      for n in ("pxe01", "pxe02")]),
    (servers({"mode": "hot-standby", "split": 128}, backend="isc"),
     ["host %s: pxe_dhcp_ha.split: applies to load-balancing only: in hot-standby the primary answers every "
      "client (split 256)" % n for n in ("pxe01", "pxe02")]),
    (servers({"mode": "load-balancing", "split": 256}, backend="isc"),
     ["host %s: pxe_dhcp_ha.split: must be from 1 to 255 in load-balancing (256 is hot-standby)" % n
      for n in ("pxe01", "pxe02")]),
    (servers({"mode": "hot-standby", "heartbeat_delay_ms": 5000, "max_response_delay_ms": 5000}),
     ["host %s: pxe_dhcp_ha.max_response_delay_ms: 5000 must exceed heartbeat_delay_ms (5000): the partner "
      "would be declared down between two heartbeats" % n for n in ("pxe01", "pxe02")]),
    (servers({"mode": "hot-standby", "port": 70000, "max_unacked_clients": -1}),
     ["host %s: pxe_dhcp_ha.%s" % (n, f) for n in ("pxe01", "pxe02") for f in (
         "port: must be a whole number from 1 to 65535, got 70000",
         "max_unacked_clients: must be a whole number of at least 0, got -1")]),
    (servers({"mode": "hot-standby", "sync": True}),
     ["host %s: pxe_dhcp_ha.sync: unknown field (known with kea: mode, peers, port, heartbeat_delay_ms, "
      "max_response_delay_ms, max_ack_delay_ms, max_unacked_clients)" % n for n in ("pxe01", "pxe02")]),
    (servers(None, pxe01={"pxe_dhcp_ha_address": "192.0.2.20"}),
     ["host pxe01: pxe_dhcp_ha_address: is set but pxe_dhcp_ha is not: this server has no HA peer"]),
], ids=["bad-mode", "not-a-mapping", "one-server", "isc-three", "unknown-peer", "peer-twice", "peers-disagree",
        "peer-without-ha", "same-address", "hostname-address", "isc-field-on-kea", "split-in-hot-standby",
        "split-256", "response-delay", "out-of-range", "unknown-field", "address-without-ha"])
def test_bad_ha_settings_name_host_and_field(server_vars, expected):
    assert problems_of(server_vars) == expected


def test_a_different_backend_on_the_peer_is_a_mismatch():
    inventory = servers({"mode": "hot-standby"})
    inventory["pxe02"]["pxe_dhcp_backend"] = "isc"
    assert problems_of(inventory) == [
        "host pxe02: pxe_dhcp_backend: isc, not kea like its HA peer pxe01: a pair runs one DHCP server"]


# -- rendering --------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["hot-standby", "load-balancing"])
@pytest.mark.parametrize("name", ["pxe01", "pxe02"])
def test_each_kea_side_passes_kea_dhcp4_t(mode, name, tmp_path, kea_settings):
    plan = plan_of(servers({"mode": mode, "heartbeat_delay_ms": 1000, "max_response_delay_ms": 3000}))
    # With the boot trace on (the default): it adds loggers, no hook (test_render_dhcp).
    config = kea_dhcp4_config(plan, server(name), dict(kea_settings, interfaces=["lo"], lease_file=str(tmp_path / "l.csv"),
                                                       control_socket=str(tmp_path / "ctrl.sock"), trace=True))
    dhcp4 = config["Dhcp4"]
    assert dhcp4["multi-threading"] == {"enable-multi-threading": True}
    libraries = [h["library"].rsplit("/", 1)[1] for h in dhcp4["hooks-libraries"]]
    assert libraries == ["libdhcp_lease_cmds.so", "libdhcp_ha.so"]
    ha = dhcp4["hooks-libraries"][1]["parameters"]["high-availability"][0]
    assert ha["this-server-name"] == name and ha["mode"] == mode
    assert ha["heartbeat-delay"] == 1000 and ha["max-response-delay"] == 3000
    assert ha["multi-threading"]["http-dedicated-listener"] is True
    # The peer channel is mutual TLS, the files the role keeps in ha_tls_dir.
    tls_dir = kea_settings["ha_tls_dir"]
    assert {k: ha[k] for k in ("trust-anchor", "cert-file", "key-file", "require-client-certs")} == {
        "trust-anchor": tls_dir + "/ca.crt", "cert-file": tls_dir + "/server.crt", "key-file": tls_dir + "/server.key",
        "require-client-certs": True}
    second = "standby" if mode == "hot-standby" else "secondary"
    assert [(p["name"], p["url"], p["role"]) for p in ha["peers"]] == [
        ("pxe01", "http://192.0.2.2:8001/", "primary"), ("pxe02", "http://192.0.2.3:8001/", second)]
    # Each side's boot answers name that server itself: the standby works alone.
    next_servers = {c["next-server"] for c in dhcp4["client-classes"] if "next-server" in c}
    assert next_servers == {ADDRESSES[name]}
    run = kea_check(config, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["pxe01", "pxe02", "pxe03"])
def test_kea_load_balancing_splits_each_pool_between_the_scopes(name, tmp_path, kea_settings):
    """Both servers allocate at once in load-balancing: each from its own half of a pool,
    for the class the HA hook gives the queries of its scope; same halves on every peer
    (the survivor in partner-down serves both scopes, so both halves). Hot-standby keeps
    one pool (one server allocates at a time)."""
    names = ("pxe01", "pxe02", "pxe03")
    plan = plan_of(servers({"mode": "load-balancing"}, names=names))
    config = kea_dhcp4_config(plan, server(name), dict(kea_settings, interfaces=["lo"], lease_file=str(tmp_path / "l.csv"),
                                                       control_socket=str(tmp_path / "ctrl.sock"), trace=False))
    assert [s["pools"] for s in config["Dhcp4"]["subnet4"]] == [
        [{"pool": "192.0.2.100 - 192.0.2.149", "client-class": "HA_pxe01"},
         {"pool": "192.0.2.150 - 192.0.2.199", "client-class": "HA_pxe02"}],
        [{"pool": "198.51.100.100 - 198.51.100.150", "client-class": "HA_pxe01"},
         {"pool": "198.51.100.151 - 198.51.100.200", "client-class": "HA_pxe02"}]]
    run = kea_check(config, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    standby = kea_dhcp4_config(plan_of(servers({"mode": "hot-standby"}, names=names)), server(name),
                               dict(kea_settings, trace=False))
    assert [s["pools"] for s in standby["Dhcp4"]["subnet4"]] == [
        [{"pool": "192.0.2.100 - 192.0.2.199"}], [{"pool": "198.51.100.100 - 198.51.100.200"}]]


def test_kea_pools_of_one_address_and_without_ha():
    balanced = {"mode": "load-balancing", "peers": [{"name": "a", "role": "primary"}, {"name": "b", "role": "secondary"}]}
    assert kea_pools({"start": "192.0.2.7", "end": "192.0.2.7"}, balanced) == [
        {"pool": "192.0.2.7 - 192.0.2.7", "client-class": "HA_a"}]
    assert kea_pools({"start": "192.0.2.7", "end": "192.0.2.8"}, balanced) == [
        {"pool": "192.0.2.7 - 192.0.2.7", "client-class": "HA_a"}, {"pool": "192.0.2.8 - 192.0.2.8", "client-class": "HA_b"}]
    assert kea_pools({"start": "192.0.2.7", "end": "192.0.2.8"}, None) == [{"pool": "192.0.2.7 - 192.0.2.8"}]


def test_kea_with_a_backup_passes_kea_dhcp4_t(tmp_path, kea_settings):
    plan = plan_of(servers({"mode": "hot-standby"}, names=("pxe01", "pxe02", "pxe03")))
    config = kea_dhcp4_config(plan, server("pxe03"), dict(kea_settings, interfaces=["lo"], lease_file=str(tmp_path / "l.csv"),
                                                          control_socket=str(tmp_path / "ctrl.sock")))
    ha = config["Dhcp4"]["hooks-libraries"][1]["parameters"]["high-availability"][0]
    assert ha["this-server-name"] == "pxe03" and ha["peers"][2]["role"] == "backup"
    run = kea_check(config, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_server_outside_the_relationship_renders_without_ha(kea_settings, isc_settings):
    plan = plan_of(servers({"mode": "hot-standby", "peers": ["pxe01", "pxe02"]}, names=("pxe01", "pxe02", "pxe03"),
                           pxe03={"pxe_dhcp_ha": None}))
    traced = dict(kea_settings, trace=True)  # the boot trace adds no hook library
    dhcp4 = kea_dhcp4_config(plan, server("pxe03"), traced)["Dhcp4"]
    assert "hooks-libraries" not in dhcp4 and "multi-threading" not in dhcp4
    assert "failover" not in dhcpd_config(plan, server("pxe03"), isc_settings)
    # A server mapping without a name (the filter used on its own) gets no HA either.
    assert "hooks-libraries" not in kea_dhcp4_config(plan, {k: v for k, v in server("pxe01").items()
                                                            if k != "name"}, traced)["Dhcp4"]


@pytest.mark.parametrize("mode", ["hot-standby", "load-balancing"])
@pytest.mark.parametrize("name", ["pxe01", "pxe02"])
def test_each_isc_side_passes_dhcpd_t(mode, name, tmp_path, isc_settings):
    plan = plan_of(servers({"mode": mode, "mclt": 600, "auto_partner_down": 300}, backend="isc"))
    text = dhcpd_config(plan, server(name), isc_settings)
    me, partner = (ADDRESSES[name], ADDRESSES["pxe02" if name == "pxe01" else "pxe01"])
    block = text[text.index('failover peer "%s" {' % ISC_FAILOVER_PEER):]
    block = block[:block.index("}\n") + 2]
    assert ("  primary;" if name == "pxe01" else "  secondary;") in block
    assert "  address %s;" % me in block and "  peer address %s;" % partner in block
    assert "  auto-partner-down 300;" in block
    if name == "pxe01":
        assert "  mclt 600;" in block and ("  split %d;" % (256 if mode == "hot-standby" else 128)) in block
    else:
        assert "mclt" not in block and "split" not in block  # the primary states them
    # Failover covers the dynamic pools; the fixed address of node01 stays outside any pool.
    assert text.count('pool { failover peer "%s"; range ' % ISC_FAILOVER_PEER) == 2
    assert "fixed-address 192.0.2.11;" in text
    run = dhcpd_check(text, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dhcpd_t_is_a_real_gate_for_failover(tmp_path, isc_settings):
    """A pool naming a failover peer that is not declared fails the checker."""
    plan = plan_of(servers({"mode": "hot-standby"}, backend="isc"))
    text = dhcpd_config(plan, server("pxe01"), isc_settings)
    broken = text.replace('failover peer "%s" {' % ISC_FAILOVER_PEER, 'failover peer "other" {', 1)
    assert dhcpd_check(broken, tmp_path).returncode != 0
