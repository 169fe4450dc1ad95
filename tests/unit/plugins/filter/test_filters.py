# SPDX-License-Identifier: GPL-3.0-or-later
"""The filters are thin: each adapts the core through plugin_utils/_filter.py (arguments checked
against its DOCUMENTATION, errors turned into AnsibleFilterError)."""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins.filter import (
    boot_answer, dhcpd_config, dnsmasq_config, file_states, healthz, ipxe_entry_script, ipxe_menu_script, kea_config,
    kea6_config, mac_format, server_endpoint,
)
from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

SERVER = {"address": "192.0.2.2", "http_base": "http://192.0.2.2", "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi"}}
ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
PLAN = dump_plan(build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                            {"n1": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:01", "pxe_ip": "192.0.2.10"}}))


def test_every_filter_is_registered_under_its_file_name():
    for module in (boot_answer, dhcpd_config, dnsmasq_config, file_states, healthz, ipxe_entry_script,
                   ipxe_menu_script, kea_config, kea6_config, mac_format, server_endpoint):
        name = module.__name__.rsplit(".", 1)[1]
        assert list(module.FilterModule().filters()) == [name]


def test_mac_format():
    assert mac_format.mac_format("5254.0000.0001", "pxelinux") == "01-52-54-00-00-00-01"
    with pytest.raises(AnsibleFilterError, match="centra.pxe.mac_format: 'nope' is not a MAC"):
        mac_format.mac_format("nope")


def test_boot_answer():
    assert boot_answer.boot_answer(SERVER, arch=7)["filename"] == "ipxe.efi"
    assert boot_answer.boot_answer(SERVER, arch="0")["filename"] == "undionly.kpxe"
    assert boot_answer.boot_answer(SERVER, user_class="iPXE")["kind"] == "script"
    with pytest.raises(AnsibleFilterError, match="centra.pxe.boot_answer: 'address'"):
        boot_answer.boot_answer({}, arch=7)
    with pytest.raises(AnsibleFilterError, match="centra.pxe.boot_answer: argument 'arch' is of type str"):
        boot_answer.boot_answer(SERVER, arch="seven")
    with pytest.raises(AnsibleFilterError, match="centra.pxe.boot_answer: unknown argument 'archh'"):
        boot_answer.boot_answer(SERVER, archh=7)


def test_boot_answer_of_the_proxy():
    answer = boot_answer.boot_answer(SERVER, arch=7, user_class="iPXE", proxy=True)
    assert (answer["kind"], answer["filename"], answer["next_server"]) == \
        ("script", "http://192.0.2.2/boot.ipxe", "192.0.2.2")
    assert boot_answer.boot_answer(SERVER, proxy=True)["kind"] == "none"  # no option 93: no PXE client
    assert boot_answer.boot_answer(SERVER, arch=7, vendor_class="MSFT 5.0", proxy=True)["kind"] == "none"
    assert boot_answer.boot_answer(SERVER, arch=7, proxy=True)["filename"] == "ipxe.efi"


def test_dnsmasq_config():
    text = dnsmasq_config.dnsmasq_config(PLAN, SERVER, {"interfaces": ["eth1"], "log_dhcp": False})
    assert "dhcp-range=192.0.2.0,proxy,255.255.255.0" in text.splitlines()
    with pytest.raises(AnsibleFilterError, match="centra.pxe.dnsmasq_config: .*log_dhcp"):
        dnsmasq_config.dnsmasq_config(PLAN, SERVER, {"interfaces": ["eth1"]})


def test_mac_format_forms_are_the_documented_choices():
    with pytest.raises(AnsibleFilterError, match="centra.pxe.mac_format: value of form must be one of: colon, hyphen"):
        mac_format.mac_format("52:54:00:00:00:01", "dotted")


def test_renderers(kea_settings, isc_settings, ipxe_settings):
    config = kea_config.kea_config(PLAN, SERVER, kea_settings)
    assert config["Dhcp4"]["subnet4"][0]["reservations"][0]["ip-address"] == "192.0.2.10"
    assert "fixed-address 192.0.2.10;" in dhcpd_config.dhcpd_config(PLAN, SERVER, isc_settings)
    assert json.loads(healthz.healthz(PLAN))["nodes"] == 1
    assert "${mac:hexhyp}" in ipxe_entry_script.ipxe_entry_script(PLAN, "http://192.0.2.2", ipxe_settings)
    menu = ipxe_menu_script.ipxe_menu_script(PLAN, "http://192.0.2.2", dict(ipxe_settings, menu_default="worker"))
    assert "--default profile_worker" in menu
    assert ipxe_menu_script.ipxe_menu_script(PLAN, http_base="http://192.0.2.2", settings=ipxe_settings).startswith("#!ipxe")
    with pytest.raises(AnsibleFilterError, match="centra.pxe.ipxe_menu_script: menu default 'nope' is neither a profile"):
        ipxe_menu_script.ipxe_menu_script(PLAN, "http://192.0.2.2", dict(ipxe_settings, menu_default="nope"))


def test_renderers_want_every_setting(kea_settings):
    with pytest.raises(AnsibleFilterError, match="centra.pxe.kea_config: missing required arguments: settings"):
        kea_config.kea_config(PLAN, SERVER)
    with pytest.raises(AnsibleFilterError, match="centra.pxe.kea_config: the Kea settings lack hooks_dir"):
        kea_config.kea_config(PLAN, SERVER, {k: v for k, v in kea_settings.items() if k != "hooks_dir"})
    with pytest.raises(AnsibleFilterError, match="centra.pxe.healthz: the boot plan does not match its digest"):
        healthz.healthz(PLAN.replace("192.0.2.10", "192.0.2.11"))


FACTS = {
    "interfaces": ["lo", "eth0", "host0"],
    "lo": {"ipv4": {"address": "127.0.0.1"}},
    "eth0": {"ipv4": {"address": "203.0.113.7"}},
    "host0": {"ipv4": {"address": "198.51.100.9"}, "ipv4_secondaries": [{"address": "192.0.2.2"}]},
}


def test_server_endpoint_finds_the_provisioning_interface():
    assert server_endpoint.server_endpoint(PLAN, FACTS) == {"interface": "host0", "address": "192.0.2.2", "cidr": "192.0.2.0/24"}
    assert server_endpoint.server_endpoint(PLAN, FACTS, "host0")["address"] == "192.0.2.2"


def test_server_endpoint_errors_name_the_fix():
    with pytest.raises(AnsibleFilterError, match="interface eth0 holds no IPv4 address inside pxe_subnets"):
        server_endpoint.server_endpoint(PLAN, FACTS, "eth0")
    with pytest.raises(AnsibleFilterError, match="no interface holds an IPv4 address"):
        server_endpoint.server_endpoint(PLAN, {"interfaces": ["lo"], "lo": {"ipv4": {"address": "127.0.0.1"}}})
    facts = dict(FACTS, eth0={"ipv4": {"address": "192.0.2.3"}})
    with pytest.raises(AnsibleFilterError, match="several interfaces .* set pxe_interface"):
        server_endpoint.server_endpoint(PLAN, facts)


def test_file_states_from_a_real_find_run(tmp_path):
    """The shape ansible.builtin.find returns, from the module itself."""
    asset = tmp_path / "vmlinuz"
    asset.write_bytes(b"kernel")
    asset.chmod(0o640)
    (tmp_path / "sub").mkdir()
    args = json.dumps({"ANSIBLE_MODULE_ARGS": {"paths": [str(tmp_path)], "file_type": "any", "get_checksum": True,
                                               "checksum_algorithm": "sha256"}})
    run = subprocess.run([sys.executable, "-m", "ansible.modules.find"], input=args, capture_output=True, text=True,
                         check=True)
    states = file_states.file_states(json.loads(run.stdout)["files"])
    me = "%s:%s" % (pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name)
    assert states[str(asset)] == "sha256:%s 0640 %s" % (hashlib.sha256(b"kernel").hexdigest(), me)
    assert states[str(tmp_path / "sub")].startswith("- 0")
    with pytest.raises(AnsibleFilterError, match="centra.pxe.file_states: not a list of find results"):
        file_states.file_states([{"path": "/x"}])


def test_kea6_config(kea6_settings):
    plan6 = dump_plan(build_plan([{"cidr": "192.0.2.0/24"}, {"cidr": "2001:db8:0:1::/64"}],
                                 {"worker": {"kernel": ASSET, "initrd": ASSET}},
                                 {"n1": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:01", "pxe_ip6": "2001:db8:0:1::10"}}))
    server = dict(SERVER, address6="2001:db8:0:1::2", cidr6="2001:db8:0:1::/64", interface="eth1")
    config = kea6_config.kea6_config(plan6, server, kea6_settings)
    assert config["Dhcp6"]["subnet6"][0]["reservations"][0]["ip-addresses"] == ["2001:db8:0:1::10"]
    with pytest.raises(AnsibleFilterError, match="centra.pxe.kea6_config: the boot plan has no IPv6 prefix"):
        kea6_config.kea6_config(PLAN, server, kea6_settings)
