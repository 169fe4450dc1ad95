# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import copy
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.centra.pxe.plugins.module_utils._plan import plan_digest
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import PlanError, build_plan

SUBNETS = [
    {"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199", "gateway": "192.0.2.1", "dns": ["192.0.2.1"]},
    {"cidr": "198.51.100.0/24"},
]


@pytest.fixture
def asset(tmp_path):
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"kernel")
    return str(path)


@pytest.fixture
def profiles(asset):
    return {
        "control_plane": {"label": "Control plane", "kernel": {"src": asset}, "initrd": {"src": asset},
                          "cmdline": "quiet", "services": ["flaredb", "iam"]},
        "worker": {"kernel": {"url": "http://192.0.2.1/vmlinuz", "checksum": "sha256:" + "ab" * 32},
                   "initrd": {"src": asset}},
    }


def node(group, mac, ip=None, **extra):
    data = {"groups": ["all", "pxe_nodes", group], "pxe_mac": mac}
    if ip:
        data["pxe_ip"] = ip
    data.update(extra)
    return data


def problems_of(*args, **kwargs):
    with pytest.raises(PlanError) as info:
        build_plan(*args, **kwargs)
    return [str(p) for p in info.value.problems]


def test_a_valid_inventory_builds_the_plan(profiles, asset):
    nodes = {
        "node02": node("worker", ["52-54-00-00-02-01", "5254.0000.0202"]),
        "node01": node("control_plane", "52:54:00:00:01:01", "192.0.2.11"),
        "node03": node("worker", "52:54:00:00:03:01", "198.51.100.3", pxe_boot="local"),
    }
    plan = build_plan(SUBNETS, profiles, nodes)
    assert [n["name"] for n in plan["nodes"]] == ["node01", "node02", "node03"]
    n1, n2, n3 = plan["nodes"]
    assert n1 == {"name": "node01", "profile": "control_plane", "macs": ["52:54:00:00:01:01"], "ip": "192.0.2.11",
                  "subnet_id": int(ipaddress.IPv4Address("192.0.2.0")), "boot": "install"}
    assert n2["macs"] == ["52:54:00:00:02:01", "52:54:00:00:02:02"] and n2["ip"] is None and n2["subnet_id"] is None
    assert n3["boot"] == "local"
    cp = plan["profiles"]["control_plane"]
    assert cp["cmdline"] == "quiet centra.profile=control_plane centra.services=flaredb,iam"
    assert cp["kernel"]["source"] == "src" and cp["kernel"]["checksum"].startswith("sha256:")
    assert cp["kernel"]["filename"] == "control_plane/vmlinuz"
    assert plan["profiles"]["worker"]["cmdline"] == "centra.profile=worker"
    assert plan["profiles"]["worker"]["label"] == "worker"
    assert plan["subnets"][0]["pool"] == {"start": "192.0.2.100", "end": "192.0.2.199"}
    assert plan["subnets"][1]["pool"] is None
    assert plan["digest"] == plan_digest(plan)


def test_the_plan_is_deterministic_and_the_digest_follows_content(profiles):
    nodes = {"a": node("worker", "52:54:00:00:00:0a"), "b": node("worker", "52:54:00:00:00:0b")}
    one = build_plan(SUBNETS, profiles, nodes)
    two = build_plan(SUBNETS, profiles, dict(reversed(list(nodes.items()))))
    assert one == two
    nodes["b"]["pxe_mac"] = "52:54:00:00:00:0c"
    assert build_plan(SUBNETS, profiles, nodes)["digest"] != one["digest"]


def test_relative_asset_paths_start_at_base_dir(tmp_path, profiles):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "k").write_bytes(b"k")
    profiles["worker"]["kernel"] = {"src": "images/k"}
    plan = build_plan(SUBNETS, profiles, {}, base_dir=str(tmp_path))
    assert plan["profiles"]["worker"]["kernel"]["src"] == str(tmp_path / "images" / "k")


# One broken inventory per problem: each must be reported naming where and the field.
CASES = [
    ("short MAC", {"n1": node("worker", "52:54:00:00:01")}, "host n1: pxe_mac: '52:54:00:00:01' is not a MAC"),
    ("MAC read as a number", {"n1": node("worker", 41135040061)}, "host n1: pxe_mac: 41135040061 is a number"),
    ("missing MAC", {"n1": {"groups": ["worker"]}}, "host n1: pxe_mac: is missing"),
    ("empty MAC list", {"n1": node("worker", [])}, "host n1: pxe_mac: is an empty list"),
    ("same MAC on two nodes", {"n1": node("worker", "52:54:00:00:01:01"), "n2": node("worker", "52-54-00-00-01-01")},
     "host n2: pxe_mac: 52:54:00:00:01:01 (written '52-54-00-00-01-01') is also the MAC of host n1"),
    ("same MAC twice in one list", {"n1": node("worker", ["52:54:00:00:01:01", "5254.0000.0101"])},
     "host n1: pxe_mac: 52:54:00:00:01:01 is listed twice"),
    ("invalid IP", {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.300")}, "host n1: pxe_ip: '192.0.2.300' is not an IPv4"),
    ("IP outside every subnet", {"n1": node("worker", "52:54:00:00:01:01", "203.0.113.5")},
     "host n1: pxe_ip: 203.0.113.5 is in none of pxe_subnets"),
    ("IP inside the pool", {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.150")},
     "host n1: pxe_ip: 192.0.2.150 lies inside the dynamic pool"),
    ("network address", {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.0")},
     "host n1: pxe_ip: 192.0.2.0 is the network or broadcast address"),
    ("broadcast address", {"n1": node("worker", "52:54:00:00:01:01", "198.51.100.255")},
     "host n1: pxe_ip: 198.51.100.255 is the network or broadcast address"),
    ("gateway address", {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.1")}, "host n1: pxe_ip: 192.0.2.1 is the gateway"),
    ("IP used twice", {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.10"), "n2": node("worker", "52:54:00:00:01:02", "192.0.2.10")},
     "host n2: pxe_ip: 192.0.2.10 is also the address of host n1"),
    ("no profile group", {"n1": {"groups": ["all", "pxe_nodes"], "pxe_mac": "52:54:00:00:01:01"}},
     "host n1: profile: is in no profile group"),
    ("two profile groups", {"n1": {"groups": ["worker", "control_plane"], "pxe_mac": "52:54:00:00:01:01"}},
     "host n1: profile: is in 2 profile groups (control_plane, worker)"),
    ("unknown pxe_boot", {"n1": node("worker", "52:54:00:00:01:01", pxe_boot="reinstall")},
     "host n1: pxe_boot: 'reinstall' is not one of install, netboot, local, menu"),
    ("typo in a node variable", {"n1": node("worker", "52:54:00:00:01:01", host_vars=["pxe_mac", "pxe_ipaddr"])},
     "host n1: pxe_ipaddr: unknown node variable"),
    ("host name DHCP cannot carry", {"n_1": node("worker", "52:54:00:00:01:01")}, "host n_1: name: 'n_1' is not a valid host name"),
]


@pytest.mark.parametrize("label, nodes, expected", CASES, ids=[c[0] for c in CASES])
def test_each_node_problem_is_named(label, nodes, expected, profiles):
    found = problems_of(SUBNETS, profiles, nodes)
    assert any(p.startswith(expected) for p in found), found


def test_a_pxe_server_address_is_not_given_to_a_node(profiles):
    found = problems_of(SUBNETS, profiles, {"n1": node("worker", "52:54:00:00:01:01", "192.0.2.2")},
                        reserved_ips={"192.0.2.2": "PXE server pxe01"})
    assert found == ["host n1: pxe_ip: 192.0.2.2 is also the address of PXE server pxe01"]


PROFILE_CASES = [
    ("no kernel", {"initrd": {"src": "ASSET"}}, "profile worker: kernel: is missing"),
    ("no initrd", {"kernel": {"src": "ASSET"}}, "profile worker: initrd: is missing"),
    ("src does not exist", {"kernel": {"src": "/nonexistent/vmlinuz"}, "initrd": {"src": "ASSET"}},
     "profile worker: kernel.src: /nonexistent/vmlinuz does not exist"),
    ("url without checksum", {"kernel": {"url": "http://192.0.2.1/k"}, "initrd": {"src": "ASSET"}},
     "profile worker: kernel.checksum: a url asset needs"),
    ("bad checksum", {"kernel": {"url": "http://192.0.2.1/k", "checksum": "md5:abc"}, "initrd": {"src": "ASSET"}},
     "profile worker: kernel.checksum: 'md5:abc' is not sha256"),
    ("src and url", {"kernel": {"src": "ASSET", "url": "http://192.0.2.1/k"}, "initrd": {"src": "ASSET"}},
     "profile worker: kernel: give exactly one of src or url"),
    ("checksum mismatch", {"kernel": {"src": "ASSET", "checksum": "sha256:" + "0" * 64}, "initrd": {"src": "ASSET"}},
     "profile worker: kernel.checksum:"),
    ("typo in a field", {"kernal": {"src": "ASSET"}, "kernel": {"src": "ASSET"}, "initrd": {"src": "ASSET"}},
     "profile worker: kernal: unknown field"),
    ("cmdline sets the profile", {"kernel": {"src": "ASSET"}, "initrd": {"src": "ASSET"}, "cmdline": "centra.profile=x"},
     "profile worker: cmdline: must not set centra.profile="),
    ("services not a list", {"kernel": {"src": "ASSET"}, "initrd": {"src": "ASSET"}, "services": "iam"},
     "profile worker: services: must be a list"),
]


@pytest.mark.parametrize("label, raw, expected", PROFILE_CASES, ids=[c[0] for c in PROFILE_CASES])
def test_each_profile_problem_is_named(label, raw, expected, asset):
    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return asset if value == "ASSET" else value
    found = problems_of(SUBNETS, {"worker": fill(raw)}, {})
    assert any(p.startswith(expected) for p in found), found


SUBNET_CASES = [
    ("not a network", [{"cidr": "192.0.2.5/24"}], "pxe_subnets[0]: cidr: '192.0.2.5/24' is not an IPv4 network"),
    ("missing cidr", [{"pool": "192.0.2.1-192.0.2.9"}], "pxe_subnets[0]: cidr: is missing"),
    ("overlap", [{"cidr": "192.0.2.0/24"}, {"cidr": "192.0.2.128/25"}], "subnet 192.0.2.128/25: cidr: overlaps subnet 192.0.2.0/24"),
    ("pool outside", [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.3.5"}], "subnet 192.0.2.0/24: pool: 192.0.3.5 is outside"),
    ("pool reversed", [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.50"}], "subnet 192.0.2.0/24: pool: 192.0.2.100 comes after"),
    ("pool not a range", [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100"}], "subnet 192.0.2.0/24: pool: '192.0.2.100' is not a range"),
    ("gateway outside", [{"cidr": "192.0.2.0/24", "gateway": "198.51.100.1"}], "subnet 192.0.2.0/24: gateway: 198.51.100.1 is outside"),
    ("bad dns", [{"cidr": "192.0.2.0/24", "dns": ["resolver"]}], "subnet 192.0.2.0/24: dns: 'resolver' is not an IPv4"),
    ("unknown field", [{"cidr": "192.0.2.0/24", "range": "x"}], "subnet 192.0.2.0/24: range: unknown field"),
    ("no subnets", None, "inventory: pxe_subnets: is not set"),
    ("empty list", [], "inventory: pxe_subnets: must be a non-empty list"),
]


@pytest.mark.parametrize("label, subnets, expected", SUBNET_CASES, ids=[c[0] for c in SUBNET_CASES])
def test_each_subnet_problem_is_named(label, subnets, expected, profiles):
    found = problems_of(subnets, profiles, {})
    assert any(p.startswith(expected) for p in found), found


def test_profiles_missing_entirely(asset):
    assert problems_of(SUBNETS, None, {}) == ["inventory: pxe_profiles: must be a non-empty mapping of profile (group) names, got None"]


def test_all_problems_are_collected_in_one_pass(profiles):
    nodes = {}
    for index, (_label, case_nodes, _expected) in enumerate(CASES[:12]):
        for name, data in case_nodes.items():
            nodes["c%02d-%s" % (index, name)] = copy.deepcopy(data)
    found = problems_of(SUBNETS, profiles, nodes)
    assert len(found) >= 11
    assert "problem(s) in the PXE inventory" in str(PlanError([]))


macs = st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1 and any(b)).map(
    lambda b: ":".join("%02x" % x for x in b))


URL_ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
URL_PROFILES = {p: {"kernel": URL_ASSET, "initrd": URL_ASSET} for p in ("worker", "control_plane")}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(macs, st.booleans(), st.sampled_from(["worker", "control_plane"])), max_size=40))
def test_random_inventories_either_build_or_name_each_problem(entries):
    profiles = URL_PROFILES
    nodes = {}
    for index, (mac, with_ip, group) in enumerate(entries):
        ip = "198.51.100.%d" % (index + 1) if with_ip else None
        nodes["n%d" % index] = node(group, mac, ip)
    unique = len({entry[0] for entry in entries}) == len(entries)
    try:
        plan = build_plan(SUBNETS, profiles, nodes)
    except PlanError as exc:
        assert not unique
        assert all(p.field == "pxe_mac" and "is also the MAC of" in p.message for p in exc.problems)
        return
    assert unique
    assert sorted(m for n in plan["nodes"] for m in n["macs"]) == sorted(entry[0] for entry in entries)
    assert all(n["subnet_id"] == int(ipaddress.IPv4Address("198.51.100.0")) for n in plan["nodes"] if n["ip"])


# pxe_dhcp_backend: proxy: what needs the DHCP server's addresses is refused, host/subnet and field named.
def test_proxy_backend_refuses_fixed_addresses_pools_gateway_and_dns(profiles):
    nodes = {"node01": node("control_plane", "52:54:00:00:01:01", "192.0.2.11"),
             "node02": node("worker", "52:54:00:00:02:01")}
    servers = {"pxe01": {"address": "192.0.2.2", "pxe_dhcp_backend": "proxy"}}
    problems = problems_of(SUBNETS, profiles, nodes, servers=servers)
    assert len(problems) == 4, problems
    assert problems[0].startswith("subnet 192.0.2.0/24: pool: cannot be served (pxe_dhcp_backend is proxy on pxe01")
    assert problems[1].startswith("subnet 192.0.2.0/24: gateway: ")
    assert problems[2].startswith("subnet 192.0.2.0/24: dns: ")
    assert problems[3].startswith("host node01: pxe_ip: 192.0.2.11 cannot be given out (pxe_dhcp_backend is proxy")


def test_proxy_backend_refuses_an_ha_pair(profiles):
    servers = {"pxe01": {"address": "192.0.2.2", "pxe_dhcp_backend": "proxy", "pxe_dhcp_ha": {"mode": "hot-standby"}}}
    problems = problems_of([{"cidr": "192.0.2.0/24"}], profiles, {"node02": node("worker", "52:54:00:00:02:01")},
                           servers=servers)
    assert problems == ["host pxe01: pxe_dhcp_ha: a proxyDHCP server has no HA pair: every proxy answers alone "
                        "with its own address; remove it"]


def test_proxy_backend_builds_a_plan_of_macs_only(profiles):
    plan = build_plan([{"cidr": "192.0.2.0/24"}], profiles, {"node02": node("worker", "52:54:00:00:02:01")},
                      servers={"pxe01": {"address": "192.0.2.2", "pxe_dhcp_backend": "proxy"}})
    assert plan["nodes"][0]["ip"] is None and plan["subnets"][0]["pool"] is None


def test_kea_and_isc_keep_pools_and_fixed_addresses(profiles):
    nodes = {"node01": node("control_plane", "52:54:00:00:01:01", "192.0.2.11")}
    for backend in ("kea", "isc"):
        plan = build_plan(SUBNETS, profiles, nodes, servers={"pxe01": {"address": "192.0.2.2",
                                                                       "pxe_dhcp_backend": backend}})
        assert plan["nodes"][0]["ip"] == "192.0.2.11"


def test_a_profile_carries_arm64_assets_and_a_node_its_arch(profiles, asset):
    arm64_initrd = {"url": "http://192.0.2.1/i", "checksum": "sha256:" + "ef" * 32}
    profiles["worker"]["arm64"] = {"kernel": {"src": asset}, "initrd": arm64_initrd}
    plan = build_plan(SUBNETS, profiles, {"node09": dict(node("worker", "52:54:00:00:09:01"), pxe_arch="arm64"),
                                          "node01": node("control_plane", "52:54:00:00:01:01")})
    worker = plan["profiles"]["worker"]
    assert worker["arm64"]["kernel"]["filename"] == "worker/arm64/vmlinuz"
    assert worker["arm64"]["initrd"]["filename"] == "worker/arm64/initrd"
    assert worker["kernel"]["filename"] == "worker/vmlinuz"
    assert "arm64" not in plan["profiles"]["control_plane"]
    nodes = {n["name"]: n for n in plan["nodes"]}
    assert nodes["node09"]["arch"] == "arm64" and "arch" not in nodes["node01"]


def test_an_arm64_node_needs_a_profile_with_arm64_assets(profiles):
    profiles["worker"]["arm64"] = {"kernel": {"src": "/nonexistent/vmlinuz"}, "initrd": {"url": "ftp://x"},
                                   "extra": 1}
    with pytest.raises(PlanError) as error:
        build_plan(SUBNETS, profiles, {"node09": dict(node("control_plane", "52:54:00:00:09:01"), pxe_arch="arm64"),
                                       "node10": dict(node("worker", "52:54:00:00:10:01"), pxe_arch="riscv64")})
    problems = [str(p) for p in error.value.problems]
    assert any(p.startswith("host node09: pxe_arch: is arm64, but its profile control_plane has no arm64 assets")
               for p in problems), problems
    assert any(p.startswith("host node10: pxe_arch: 'riscv64' is not one of amd64, arm64") for p in problems), problems
    assert any(p.startswith("profile worker: arm64.kernel.src: /nonexistent/vmlinuz does not exist") for p in problems)
    assert any(p.startswith("profile worker: arm64.initrd.url: 'ftp://x' is not an http(s) URL") for p in problems)
    assert any(p.startswith("profile worker: arm64.extra: unknown field") for p in problems), problems
