# SPDX-License-Identifier: GPL-3.0-or-later
"""The IPv6 part of the inventory: prefixes in pxe_subnets, pxe_ip6 and pxe_duid (docs/ipv6.md)."""
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._plan import plan_digest
from ansible_collections.centra.pxe.plugins.plugin_utils._plan6 import DuidError, parse_duid, subnet6_id
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import PlanError, build_plan

import ipaddress

V4 = {"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199"}
V6 = {"cidr": "2001:db8:0:1::/64", "pool": "2001:db8:0:1::1000-2001:db8:0:1::1fff", "dns": ["2001:db8:0:1::1"]}
DUID_UUID = "00:04:" + ":".join(["ab"] * 16)


@pytest.fixture
def profiles(tmp_path):
    path = tmp_path / "vmlinuz"
    path.write_bytes(b"kernel")
    return {"worker": {"kernel": {"src": str(path)}, "initrd": {"src": str(path)}}}


def node(mac="52:54:00:00:02:01", **extra):
    data = {"groups": ["all", "pxe_nodes", "worker"], "pxe_mac": mac}
    data.update(extra)
    return data


def problems_of(*args, **kwargs):
    with pytest.raises(PlanError) as info:
        build_plan(*args, **kwargs)
    return [str(p) for p in info.value.problems]


def test_a_dual_stack_inventory_lists_both_families(profiles):
    nodes = {"node01": node(pxe_ip="192.0.2.11", pxe_ip6="2001:db8:0:1::11", pxe_duid=DUID_UUID.upper()),
             "node02": node("52:54:00:00:02:02")}
    plan = build_plan([V4, V6], profiles, nodes)
    assert [s["cidr"] for s in plan["subnets"]] == ["192.0.2.0/24"]
    assert plan["subnets6"] == [{"id": subnet6_id(ipaddress.IPv6Network("2001:db8:0:1::/64")),
                                 "cidr": "2001:db8:0:1::/64", "network": "2001:db8:0:1::", "prefix": 64,
                                 "pool": {"start": "2001:db8:0:1::1000", "end": "2001:db8:0:1::1fff"},
                                 "dns": ["2001:db8:0:1::1"]}]
    n1, n2 = plan["nodes"]
    assert n1["ip"] == "192.0.2.11" and n1["ip6"] == "2001:db8:0:1::11" and n1["duids"] == [DUID_UUID]
    assert n1["subnet6_id"] == plan["subnets6"][0]["id"]
    assert "ip6" not in n2 and "duids" not in n2
    assert plan["digest"] == plan_digest(plan)


def test_an_ipv4_only_inventory_has_the_same_plan_as_before(profiles):
    plan = build_plan([V4], profiles, {"node01": node(pxe_ip="192.0.2.11")})
    assert "subnets6" not in plan
    assert set(plan["nodes"][0]) == {"name", "profile", "macs", "ip", "subnet_id", "boot"}


def test_the_subnet_id_is_stable_and_can_be_given(profiles):
    plan = build_plan([V4, dict(V6, id=7)], profiles, {})
    assert plan["subnets6"][0]["id"] == 7
    assert subnet6_id(ipaddress.IPv6Network("2001:db8:0:1::/64")) == subnet6_id(ipaddress.IPv6Network("2001:db8:0:1::/64"))
    assert 0 < subnet6_id(ipaddress.IPv6Network("2001:db8::/64")) < 2 ** 32 - 1


@pytest.mark.parametrize("subnet, expected", [
    ({"cidr": "2001:db8:1::/48"}, "subnet 2001:db8:1::/48: cidr: is a /48: an IPv6 provisioning prefix must be a /64"),
    ({"cidr": "2001:db8:0:1::/80"}, "subnet 2001:db8:0:1::/80: cidr: is a /80: an IPv6 provisioning prefix must be a /64"),
    ({"cidr": "2001:db8:0:1::/56"}, "pxe_subnets[1]: cidr: '2001:db8:0:1::/56' is not an IPv6 prefix"),
    ({"cidr": "2001:db8:0:1::5/64"}, "pxe_subnets[1]: cidr: '2001:db8:0:1::5/64' is not an IPv6 prefix"),
    ({"cidr": "fe80::/64"}, "subnet fe80::/64: cidr: is link-local or multicast"),
    (dict(V6, gateway="2001:db8:0:1::1"), "subnet 2001:db8:0:1::/64: gateway: DHCPv6 has no router option"),
    (dict(V6, options={"interface-mtu": 1400}), "subnet 2001:db8:0:1::/64: options.interface-mtu: is a DHCPv4 option"),
    (dict(V6, options={"ntp-servers": ["192.0.2.1"]}),
     "subnet 2001:db8:0:1::/64: options.ntp-servers: '192.0.2.1' is not an IPv6 address"),
    (dict(V6, options={"dns-servers": ["2001:db8::1"]}), "subnet 2001:db8:0:1::/64: options.dns-servers: unknown option"),
    (dict(V6, options={23: ["2001:db8::1"]}), "subnet 2001:db8:0:1::/64: options.23: option 23 is set by centra.pxe: "
     "dns-servers: set the IPv6 subnet's dns field"),
    (dict(V6, options={"information-refresh-time": 60}),
     "subnet 2001:db8:0:1::/64: options.information-refresh-time: 60 is outside 600-4294967295"),
    (dict(V6, lease=5), "subnet 2001:db8:0:1::/64: lease: unknown field of an IPv6 subnet"),
    (dict(V6, pool="2001:db8:0:2::1-2001:db8:0:2::9"), "subnet 2001:db8:0:1::/64: pool: 2001:db8:0:2::1 is outside"),
    (dict(V6, pool="2001:db8:0:1::9-2001:db8:0:1::1"), "subnet 2001:db8:0:1::/64: pool: 2001:db8:0:1::9 comes after"),
    (dict(V6, pool="2001:db8:0:1::/100"), "subnet 2001:db8:0:1::/64: pool: '2001:db8:0:1::/100' is not a range"),
    (dict(V6, dns=["192.0.2.1"]), "subnet 2001:db8:0:1::/64: dns: '192.0.2.1' is not an IPv6 address"),
    (dict(V6, id=0), "subnet 2001:db8:0:1::/64: id: must be a whole number"),
])
def test_bad_ipv6_subnets_are_named(profiles, subnet, expected):
    problems = problems_of([V4, subnet], profiles, {})
    assert any(p.startswith(expected) for p in problems), problems


def test_overlapping_prefixes_and_shared_ids_are_refused(profiles):
    problems = problems_of([V4, V6, {"cidr": "2001:db8:0:1::/64"}, {"cidr": "2001:db8:0:2::/64", "id": 9},
                            {"cidr": "2001:db8:0:3::/64", "id": 9}], profiles, {})
    assert "subnet 2001:db8:0:1::/64: cidr: overlaps subnet 2001:db8:0:1::/64" in problems
    assert "subnet 2001:db8:0:3::/64: id: 9 is also the id of subnet 2001:db8:0:2::/64" in problems


def test_a_server_address_inside_the_pool_is_refused(profiles):
    problems = problems_of([V4, V6], profiles, {}, reserved_ips={"2001:db8:0:1::1001": "PXE server pxe01"})
    assert problems == ["subnet 2001:db8:0:1::/64: pool: 2001:db8:0:1::1000-2001:db8:0:1::1fff contains "
                        "2001:db8:0:1::1001, the address of PXE server pxe01"]


@pytest.mark.parametrize("extra, expected", [
    ({"pxe_ip6": "2001:db8:0:2::11"}, "host node01: pxe_ip6: 2001:db8:0:2::11 is in none of the IPv6 prefixes"),
    ({"pxe_ip6": "192.0.2.11"}, "host node01: pxe_ip6: '192.0.2.11' is not an IPv6 address"),
    ({"pxe_ip6": "2001:db8:0:1::1002"}, "host node01: pxe_ip6: 2001:db8:0:1::1002 lies inside the dynamic pool"),
    ({"pxe_ip6": "2001:db8:0:1::"}, "host node01: pxe_ip6: 2001:db8:0:1:: is the subnet-router anycast address"),
    ({"pxe_duid": "52:54:00:00:02:01"}, "host node01: pxe_duid: '52:54:00:00:02:01' is a MAC address, not a DUID"),
    ({"pxe_duid": "5254.0000.0201"}, "host node01: pxe_duid: '5254.0000.0201' is a MAC address, not a DUID"),
    ({"pxe_duid": "00:09:01:02:03"}, "host node01: pxe_duid: '00:09:01:02:03' starts with type 9"),
    ({"pxe_duid": "zz:01"}, "host node01: pxe_duid: 'zz:01' is not a DUID"),
    ({"pxe_duid": []}, "host node01: pxe_duid: is an empty list"),
    ({"pxe_duid": [DUID_UUID, DUID_UUID]}, "host node01: pxe_duid: %s is listed twice" % DUID_UUID),
])
def test_bad_node_ipv6_input_is_named(profiles, extra, expected):
    problems = problems_of([V4, V6], profiles, {"node01": node(**extra)})
    assert any(p.startswith(expected) for p in problems), problems


def test_a_mac_as_duid_names_its_duid_ll():
    with pytest.raises(DuidError, match="00:03:00:01:52:54:00:00:02:01"):
        parse_duid("52-54-00-00-02-01")


@pytest.mark.parametrize("raw, canonical", [
    ("00:03:00:01:52:54:00:00:02:01", "00:03:00:01:52:54:00:00:02:01"),
    ("00-03-00-01-52-54-00-00-02-01", "00:03:00:01:52:54:00:00:02:01"),
    ("0x000300015254000002AB", "00:03:00:01:52:54:00:00:02:ab"),
    ("0:1:0:1:2a:3b:4c:5d:52:54:0:0:2:1", "00:01:00:01:2a:3b:4c:5d:52:54:00:00:02:01"),
])
def test_duid_notations(raw, canonical):
    assert parse_duid(raw) == canonical


def test_addresses_and_duids_are_unique_across_nodes(profiles):
    nodes = {"node01": node(pxe_ip6="2001:db8:0:1::11", pxe_duid=DUID_UUID),
             "node02": node("52:54:00:00:02:02", pxe_ip6="2001:db8:0:1::11", pxe_duid=DUID_UUID.replace(":", "-"))}
    problems = problems_of([V4, V6], profiles, nodes)
    assert "host node02: pxe_ip6: 2001:db8:0:1::11 is also the address of host node01" in problems
    assert "host node02: pxe_duid: %s is also the DUID of host node01" % DUID_UUID in problems


@pytest.mark.parametrize("server, expected", [
    ({"pxe_dhcp_backend": "isc"}, "host pxe01: pxe_dhcp_backend: isc answers DHCPv4 only: the IPv6 prefixes"),
    ({"pxe_dhcp_backend": "proxy"}, "host pxe01: pxe_dhcp_backend: proxy answers DHCPv4 only"),
    ({"pxe_dhcp_ha": {"mode": "hot-standby"}}, "host pxe01: pxe_dhcp_ha: high availability covers DHCPv4 only"),
])
def test_servers_that_cannot_answer_dhcpv6_are_named(profiles, server, expected):
    v6 = dict(V6)
    del v6["pool"]  # a proxy refuses pools of its own: keep to the IPv6 problem
    problems = problems_of([{"cidr": "192.0.2.0/24"}, v6], profiles, {}, servers={"pxe01": dict(server, address="192.0.2.2")})
    assert any(p.startswith(expected) for p in problems), problems


def test_ipv4_backends_are_fine_without_ipv6(profiles):
    plan = build_plan([{"cidr": "192.0.2.0/24"}], profiles, {}, servers={"pxe01": {"pxe_dhcp_backend": "isc"}})
    assert "subnets6" not in plan
