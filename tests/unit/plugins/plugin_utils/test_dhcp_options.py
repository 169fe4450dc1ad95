# SPDX-License-Identifier: GPL-3.0-or-later
"""The DHCPv4 option table: values checked against their types, errors naming host or
subnet and field, node over group over subnet, and Kea and dhcpd rendering the same bytes."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.plugin_utils._dhcp_options import (
    V4,
    V6,
    check_options,
    isc_declarations,
    isc_option_statements,
    kea_option_data,
    kea_option_defs,
    wire,
)
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import PlanError, build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import dhcpd_config, kea_dhcp4_config

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
PROFILES = {"worker": {"kernel": ASSET, "initrd": ASSET}, "storage": {"kernel": ASSET, "initrd": ASSET}}
SERVER = {"address": "192.0.2.2", "http_base": "http://192.0.2.2",
          "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "efi32": "", "arm32": "", "arm64": ""}}
# One option of every type, by name where the table has one and by code otherwise.
EVERY_TYPE = {
    "time-offset": -3600,
    "ntp-servers": ["192.0.2.1", "192.0.2.3"],
    "domain-name": "example.net",
    "domain-search": ["example.net", "lab.example.net"],
    "interface-mtu": 9000,
    "ip-forwarding": False,
    "default-ip-ttl": 64,
    "arp-cache-timeout": 600,
    "broadcast-address": "192.0.2.255",
    "nis-domain": "nis, with a comma",
    "classless-static-routes": [{"network": "0.0.0.0/0", "router": "192.0.2.1"},
                                {"network": "198.51.100.0/24", "router": "192.0.2.254"}],
    "wpad-url": "http://192.0.2.2/wpad.dat",
    224: {"type": "hex", "value": "de:ad:be:ef"},
    "225": {"type": "text", "value": "rack 7"},
    "option-226": {"type": "ip", "value": "192.0.2.9"},
    227: {"type": "uint16", "value": 300},
    228: {"type": "bool", "value": True},
    229: {"type": "domain-list", "value": ["a.example"]},
    230: {"type": "routes", "value": [{"network": "203.0.113.128/25", "router": "192.0.2.1"}]},
    231: {"type": "uint32", "value": 7},
}


def checked(raw):
    problems = []
    entries = check_options(raw, "options", lambda field, message: problems.append((field, message)))
    return entries, problems


def problem_text(raw):
    entries, problems = checked(raw)
    assert not entries and len(problems) == 1, problems
    return "%s: %s" % problems[0]


def plan_problems(subnets, nodes):
    with pytest.raises(PlanError) as info:
        build_plan(subnets, PROFILES, nodes)
    return [str(p) for p in info.value.problems]


def node(group, mac, ip=None, **extra):
    data = {"groups": ["all", "pxe_nodes", group], "pxe_mac": mac, **extra}
    if ip:
        data["pxe_ip"] = ip
    return data


# -- the table ------------------------------------------------------------------------
@pytest.mark.parametrize("table", [V4, V6], ids=["v4", "v6"])
def test_the_table_is_consistent(table):
    assert len({o.name for o in table.options}) == len(table.options) == len(table.by_code)
    for option in table.options:
        assert 1 <= option.code <= table.max_code and option.type in table.types
        assert option.code not in table.owned and option.code not in table.protocol
        # A name for Kea exactly where Kea 2.2 defines the code (an option-def otherwise).
        assert (option.kea is not None) == (option.code in table.kea_defined), option


def test_every_type_is_accepted_and_normalised():
    entries, problems = checked(EVERY_TYPE)
    assert not problems
    by_code = {e["code"]: e for e in entries}
    assert [e["code"] for e in entries] == sorted(by_code)
    assert by_code[26] == {"code": 26, "name": "interface-mtu", "type": "uint16", "value": 9000}
    assert by_code[224] == {"code": 224, "name": None, "type": "hex", "value": "deadbeef"}
    assert by_code[226]["value"] == "192.0.2.9"


def test_names_codes_and_forms_normalise():
    entries, problems = checked({"42": "192.0.2.1", "domain-search": "Example.NET.", "interface-mtu": "1500",
                                 "log-servers": " 192.0.2.7"})
    assert not problems
    assert {e["code"]: e["value"] for e in entries} == {7: ["192.0.2.7"], 26: 1500, 42: ["192.0.2.1"],
                                                        119: ["example.net"]}


@pytest.mark.parametrize("raw, expected", [
    ({"interface-mtu": 70000}, "options.interface-mtu: 70000 is outside 68-65535"),
    ({"interface-mtu": 67}, "options.interface-mtu: 67 is outside 68-65535"),
    ({"interface-mtu": "big"}, "options.interface-mtu: must be a whole number"),
    ({"interface-mtu": True}, "options.interface-mtu: must be a whole number"),
    ({"classless-static-routes": [{"network": "10.0.0.1/8", "router": "192.0.2.1"}]},
     "options.classless-static-routes: route network '10.0.0.1/8' is not an IPv4 network (10.0.0.1/8 has host bits set)"),
    ({"classless-static-routes": [{"network": "10.0.0.0/8"}]},
     "options.classless-static-routes: each route must be {network: CIDR, router: ADDRESS}"),
    ({"classless-static-routes": [{"network": "10.0.0.0/8", "router": "gw"}]},
     "options.classless-static-routes: 'gw' is not an IPv4 address"),
    ({"classless-static-routes": "10.0.0.0/8 via 192.0.2.1"}, "options.classless-static-routes: each route must be"),
    ({"ntp-server": ["192.0.2.1"]}, "options.ntp-server: unknown option name (known DHCPv4 options: "),
    ({"ntp-servers": ["192.0.2.1", "2001:db8::1"]}, "options.ntp-servers: '2001:db8::1' is not an IPv4 address"),
    ({"ntp-servers": []}, "options.ntp-servers: is an empty list"),
    ({"domain-name": "bad_name.example"}, "options.domain-name: 'bad_name.example' is not a domain name"),
    ({"nis-domain": 'say "hi"'}, "options.nis-domain: 'say \"hi\"' must be printable ASCII"),
    ({"ip-forwarding": "yes"}, "options.ip-forwarding: must be true or false"),
    ({"time-offset": 2 ** 31}, "options.time-offset: 2147483648 is outside -2147483648-2147483647"),
    ({0: {"type": "text", "value": "x"}}, "options.0: code 0 is outside 1-254"),
    ({255: {"type": "text", "value": "x"}}, "options.255: code 255 is outside 1-254"),
    ({"300": {"type": "text", "value": "x"}}, "options.300: code 300 is outside 1-254"),
    ({224: "rack 7"}, "options.224: an option by code needs its type"),
    ({224: {"type": "string", "value": "x"}}, "options.224: type 'string' is not one of ip, ip-list"),
    ({224: {"type": "text", "value": "x", "array": True}}, "options.224: give {type: TYPE, value: VALUE}"),
    ({224: {"type": "uint8", "value": 256}}, "options.224: 256 is outside 0-255"),
    ({224: {"type": "hex", "value": "abc"}}, "options.224: 'abc' is not hex bytes"),
    ({42: {"type": "text", "value": "x"}}, "options.42: code 42 is ntp-servers, of type ip-list, not text"),
    ({72: {"type": "ip-list", "value": ["192.0.2.1"]}}, "options.72: code 72 has a standard definition in Kea"),
    ({3: "192.0.2.1"}, "options.3: option 3 is set by centra.pxe: routers: set the subnet's gateway field"),
    ({6: "192.0.2.1"}, "options.6: option 6 is set by centra.pxe: domain-name-servers: set the subnet's dns field"),
    ({67: {"type": "text", "value": "x"}}, "options.67: option 67 is set by centra.pxe: boot-file-name belongs"),
    ({60: {"type": "text", "value": "PXEClient"}}, "options.60: option 60 is set by centra.pxe"),
    ({175: {"type": "hex", "value": "01"}}, "options.175: option 175 is set by centra.pxe"),
    ({53: {"type": "uint8", "value": 5}}, "options.53: option 53 belongs to the DHCP exchange"),
    ({"wpad-url": "x" * 256}, "options.wpad-url: is 256 bytes long: one option holds at most 255"),
    ({224: {"type": "hex", "value": "00" * 256}}, "options.224: is 256 bytes long"),
])
def test_a_bad_value_names_the_field(raw, expected):
    assert problem_text(raw).startswith(expected)


def test_the_same_option_twice_is_refused():
    entries, problems = checked({"ntp-servers": ["192.0.2.1"], 42: ["192.0.2.3"]})
    assert entries == [{"code": 42, "name": "ntp-servers", "type": "ip-list", "value": ["192.0.2.1"]}]
    assert problems == [("options.42", "option 42 is given twice (by name and by code)")]


def test_not_a_mapping():
    assert problem_text(["interface-mtu", 9000]).startswith("options: must be a mapping of option name")


# -- wire form: what both servers send ------------------------------------------------
def test_rfc3442_encoding():
    routes = [{"network": "0.0.0.0/0", "router": "192.0.2.1"}, {"network": "10.0.0.0/8", "router": "10.0.0.1"},
              {"network": "198.51.100.0/23", "router": "192.0.2.254"}, {"network": "203.0.113.7/32", "router": "192.0.2.1"}]
    assert wire("routes", routes).hex() == ("00c0000201" "080a0a000001" "17c63364c00002fe" "20cb007107c0000201")


def test_domain_list_encoding():
    assert wire("domain-list", ["a.example", "b"]) == b"\x01a\x07example\x00\x01b\x00"


# -- the plan: subnet, group, node ----------------------------------------------------
def test_subnet_group_and_node_options_reach_the_plan():
    subnets = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199",
                "options": {"domain-name": "example.net", "interface-mtu": 1500}}]
    group = {"interface-mtu": 9000, "ntp-servers": ["192.0.2.1"]}
    nodes = {"n1": node("worker", "52:54:00:00:00:01", group_dhcp_options=group),
             "n2": node("worker", "52:54:00:00:00:02", group_dhcp_options=group,
                        pxe_dhcp_options={"interface-mtu": 1400}),
             "n3": node("storage", "52:54:00:00:00:03")}
    plan = build_plan(subnets, PROFILES, nodes)
    subnet_options = [(e["name"], e["value"]) for e in plan["subnets"][0]["options"]]
    assert subnet_options == [("domain-name", "example.net"), ("interface-mtu", 1500)]
    n1, n2, n3 = plan["nodes"]
    assert {e["name"]: e["value"] for e in n1["options"]} == {"interface-mtu": 9000, "ntp-servers": ["192.0.2.1"]}
    # The node wins, option by option: its own MTU, its group's NTP servers.
    assert {e["name"]: e["value"] for e in n2["options"]} == {"interface-mtu": 1400, "ntp-servers": ["192.0.2.1"]}
    assert "options" not in n3  # none set: the node's entry is as before options existed


def test_problems_name_the_subnet_or_host_and_the_field():
    subnets = [{"cidr": "192.0.2.0/24", "options": {"interface-mtu": 70000}}]
    group = {"domain-search": ["ok.example", "-bad.example"]}
    nodes = {"n1": node("worker", "52:54:00:00:00:01", group_dhcp_options=group),
             "n2": node("worker", "52:54:00:00:00:02", group_dhcp_options=group,
                        pxe_dhcp_options={"classless-static-routes": [{"network": "198.51.100.0/33", "router": "192.0.2.1"}]})}
    problems = plan_problems(subnets, nodes)
    assert problems[0] == "subnet 192.0.2.0/24: options.interface-mtu: 70000 is outside 68-65535"
    # The groups' value is shared by both hosts: reported once.
    assert problems[1] == ("host n1: pxe_dhcp_options (from its groups).domain-search: "
                           "'-bad.example' is not a domain name")
    assert problems[2].startswith("host n2: pxe_dhcp_options.classless-static-routes: route network "
                                  "'198.51.100.0/33' is not an IPv4 network")
    assert len(problems) == 3


def test_one_code_has_one_type_everywhere():
    subnets = [{"cidr": "192.0.2.0/24", "options": {224: {"type": "text", "value": "x"}}}]
    nodes = {"n1": node("worker", "52:54:00:00:00:01", pxe_dhcp_options={224: {"type": "uint8", "value": 1}})}
    assert plan_problems(subnets, nodes) == [
        "host n1: options.224: is of type uint8 here but text in subnet 192.0.2.0/24: an option code has one type"]


def test_an_unknown_node_variable_is_still_refused_and_options_are_not():
    nodes = {"n1": node("worker", "52:54:00:00:00:01", pxe_dhcp_options={"interface-mtu": 1500},
                        pxe_dhcp_option={"interface-mtu": 1500}, host_vars=["pxe_dhcp_options", "pxe_dhcp_option"])}
    problems = plan_problems([{"cidr": "192.0.2.0/24"}], nodes)
    assert len(problems) == 1 and problems[0].startswith("host n1: pxe_dhcp_option: unknown node variable")


# -- rendering: both backends from the same entries -----------------------------------
@pytest.fixture(name="options_plan")
def fixture_options_plan():
    subnets = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199", "gateway": "192.0.2.1",
                "options": EVERY_TYPE}]
    nodes = {"fixed": node("worker", "52:54:00:00:00:01", "192.0.2.11", pxe_dhcp_options={"interface-mtu": 1400}),
             "roaming": node("worker", ["52:54:00:00:00:02", "52:54:00:00:00:03"],
                             pxe_dhcp_options={"classless-static-routes": [{"network": "0.0.0.0/0",
                                                                            "router": "192.0.2.1"}]})}
    return build_plan(subnets, PROFILES, nodes)


def test_kea_and_dhcpd_render_the_same_options(options_plan):
    subnet = options_plan["subnets"][0]["options"]
    kea = {item["name"]: item for item in kea_option_data(subnet)}
    isc = isc_option_statements(subnet)
    assert kea["interface-mtu"] == {"name": "interface-mtu", "data": "9000"}
    assert "option interface-mtu 9000;" in isc
    assert kea["centra-121"] == {"name": "centra-121", "csv-format": False,
                                 "data": "00c000020118c63364c00002fe"}
    assert "option centra-121 00:c0:00:02:01:18:c6:33:64:c0:00:02:fe;" in isc
    assert kea["nis-domain"]["data"] == "nis\\, with a comma"
    assert 'option nis-domain "nis, with a comma";' in isc
    assert kea["domain-search"]["data"] == "example.net, lab.example.net"
    assert 'option domain-search "example.net", "lab.example.net";' in isc
    assert kea["centra-224"] == {"name": "centra-224", "data": "deadbeef", "csv-format": False}
    assert "option centra-224 de:ad:be:ef;" in isc
    assert kea["ip-forwarding"]["data"] == "false" and "option ip-forwarding false;" in isc
    assert kea["time-offset"]["data"] == "-3600" and "option time-offset -3600;" in isc
    assert len(kea) == len(isc) == len(EVERY_TYPE)
    defs = {d["code"]: (d["name"], d["type"], d["array"]) for d in kea_option_defs(options_plan)}
    assert defs == {121: ("centra-121", "binary", False), 224: ("centra-224", "binary", False),
                    225: ("centra-225", "string", False), 226: ("centra-226", "ipv4-address", False),
                    227: ("centra-227", "uint16", False), 228: ("centra-228", "boolean", False),
                    229: ("centra-229", "fqdn", True), 230: ("centra-230", "binary", False),
                    231: ("centra-231", "uint32", False), 252: ("centra-252", "string", False)}
    assert isc_declarations(options_plan) == [
        "option centra-121 code 121 = string;", "option centra-224 code 224 = string;",
        "option centra-225 code 225 = text;", "option centra-226 code 226 = ip-address;",
        "option centra-227 code 227 = unsigned integer 16;", "option centra-228 code 228 = boolean;",
        "option centra-229 code 229 = domain-list;", "option centra-230 code 230 = string;",
        "option centra-231 code 231 = unsigned integer 32;", "option centra-252 code 252 = text;"]


def test_node_options_go_into_its_reservations_and_host_blocks(options_plan, kea_settings, isc_settings):
    dhcp4 = kea_dhcp4_config(options_plan, SERVER, kea_settings)["Dhcp4"]
    fixed = dhcp4["subnet4"][0]["reservations"]
    assert fixed[0]["option-data"] == [{"name": "interface-mtu", "data": "1400"}]
    assert [r["option-data"] for r in dhcp4["reservations"]] == [
        [{"name": "centra-121", "data": "00c0000201", "csv-format": False}]] * 2
    assert {d["code"] for d in dhcp4["option-def"]} >= {121, 224}
    text = dhcpd_config(options_plan, SERVER, isc_settings)
    assert "host fixed-0 { hardware ethernet 52:54:00:00:00:01; fixed-address 192.0.2.11; option interface-mtu 1400;" in text
    assert text.count("option centra-121 00:c0:00:02:01;") == 2
    assert text.index("option centra-121 code 121 = string;") < text.index("subnet 192.0.2.0")


def test_a_plan_without_options_renders_as_before(plan, kea_settings, isc_settings):
    dhcp4 = kea_dhcp4_config(plan, SERVER, kea_settings)["Dhcp4"]
    assert "option-def" not in dhcp4
    assert all("option-data" not in r for r in dhcp4.get("reservations", []))
    assert "centra-" not in dhcpd_config(plan, SERVER, isc_settings).replace("centra-pxe", "")


def _checker(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, "%s is not installed: scripts/setup.sh installs it" % name
    return path


def test_kea_accepts_every_option_type(options_plan, kea_settings, tmp_path):
    config = kea_dhcp4_config(options_plan, SERVER, dict(kea_settings, interfaces=["lo"],
                                                         lease_file=str(tmp_path / "leases.csv"),
                                                         control_socket=str(tmp_path / "ctrl.sock")))
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dhcpd_accepts_every_option_type(options_plan, isc_settings, tmp_path):
    path = tmp_path / "dhcpd.conf"
    path.write_text(dhcpd_config(options_plan, SERVER, isc_settings))
    run = subprocess.run([_checker("dhcpd"), "-t", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
