# SPDX-License-Identifier: GPL-3.0-or-later
"""The Kea DHCPv6 renderer: every row of the boot policy table answered through options 61 and 59,
the reservations, and kea-dhcp6's own checker on what it renders."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BOOT_RULES, KNOWN_ARCH_CODES
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import (
    Kea6Error,
    boot_file_url,
    decide6,
    kea_dhcp6_config,
    v6_boot_server,
)

SAMPLE_ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}

SERVER = {"name": "pxe01", "interface": "eth1", "address6": "2001:db8:0:1::2", "cidr6": "2001:db8:0:1::/64",
          "http_port": 80,
          "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "efi32": "", "arm32": None, "arm64": "arm64.efi"}}
DUID = "00:04:" + ":".join(["5a"] * 16)


@pytest.fixture(name="plan6", scope="module")
def fixture_plan6():
    subnets = [{"cidr": "192.0.2.0/24"},
               {"cidr": "2001:db8:0:1::/64", "pool": "2001:db8:0:1::1000-2001:db8:0:1::1fff", "dns": ["2001:db8:0:1::1"]},
               {"cidr": "2001:db8:0:2::/64", "pool": "2001:db8:0:2::1000-2001:db8:0:2::1fff"}]
    profiles = {"worker": {"kernel": SAMPLE_ASSET, "initrd": SAMPLE_ASSET}}
    nodes = {
        "node01": {"groups": ["worker"], "pxe_mac": "52:54:00:00:01:01", "pxe_ip6": "2001:db8:0:1::11", "pxe_duid": DUID},
        "node02": {"groups": ["worker"], "pxe_mac": ["52:54:00:00:02:01", "52:54:00:00:02:02"],
                   "pxe_ip6": "2001:db8:0:2::12"},
        "node03": {"groups": ["worker"], "pxe_mac": "52:54:00:00:03:01", "pxe_ip": "192.0.2.13"},
    }
    return build_plan(subnets, profiles, nodes)


def _matching(classes, arch=None, user_class=None):
    """The classes a client matches, read from their tests (the forms the renderer writes):
    Kea evaluates them in order, so member() sees the classes matched before."""
    matched = []
    for cls in classes:
        test = cls["test"]
        ok = False
        if "option[15]" in test:
            ok = user_class is not None and ("'%s'" % user_class.decode()) in test
        else:
            codes = [int(c, 16) for c in re.findall(r"option\[61\]\.hex,0,2\) == 0x([0-9a-f]{4})", test)]
            excluded = re.findall(r"not member\('([^']+)'\)", test)
            ok = arch in codes and not any(name in matched for name in excluded)
        if ok:
            matched.append(cls["name"])
    return matched


def _answer(classes, arch=None, user_class=None):
    """What the client gets: the option-data of the classes it matches, by option name."""
    by_name = {c["name"]: c for c in classes}
    out = {}
    for name in _matching(classes, arch, user_class):
        for option in by_name[name].get("option-data", []):
            out.setdefault(option["name"], option["data"])
    return out


@pytest.mark.parametrize("arch", sorted(set(KNOWN_ARCH_CODES) | {1, 2, 8, 15, 20, 0xFFFF}))
def test_every_architecture_gets_the_policy_answer(plan6, kea6_settings, arch):
    classes = kea_dhcp6_config(plan6, SERVER, kea6_settings)["Dhcp6"]["client-classes"]
    boot = v6_boot_server(SERVER)
    expected = boot_file_url(boot, decide6(boot, arch=arch))
    got = _answer(classes, arch=arch)
    assert got.get("bootfile-url") == expected
    http = decide6(boot, arch=arch).kind == "http"
    assert ("vendor-class" in got) == http


def test_the_rows_in_full(plan6, kea6_settings):
    classes = kea_dhcp6_config(plan6, SERVER, kea6_settings)["Dhcp6"]["client-classes"]
    assert _answer(classes, arch=7) == {"bootfile-url": "tftp://[2001:db8:0:1::2]/ipxe.efi"}
    assert _answer(classes, arch=9) == {"bootfile-url": "tftp://[2001:db8:0:1::2]/ipxe.efi"}
    assert _answer(classes, arch=11) == {"bootfile-url": "tftp://[2001:db8:0:1::2]/arm64.efi"}
    assert _answer(classes, arch=16) == {"bootfile-url": "http://[2001:db8:0:1::2]/loaders/ipxe.efi",
                                         "vendor-class": "343, 000a48545450436c69656e74"}
    assert _answer(classes, arch=19)["bootfile-url"] == "http://[2001:db8:0:1::2]/loaders/arm64.efi"
    assert _answer(classes, arch=6) == {}  # no efi32 loader: no boot file
    assert _answer(classes, arch=None) == {}  # option 61 absent: not a network-boot client
    # iPXE, whatever its architecture: its script (and not iPXE again, forever).
    for arch in (None, 7, 16):
        assert _answer(classes, arch=arch, user_class=b"iPXE") == {"bootfile-url": "http://[2001:db8:0:1::2]/boot.ipxe"}
    assert all(o["always-send"] for c in classes for o in c["option-data"])


def test_vendor_class_bytes_say_httpclient():
    from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import http_client_vendor_class
    enterprise, data = http_client_vendor_class()["data"].split(", ")
    raw = bytes.fromhex(data)
    assert int(enterprise) == 343 and int.from_bytes(raw[:2], "big") == len(raw) - 2 and raw[2:] == b"HTTPClient"


def test_a_port_other_than_80_is_in_the_urls(plan6, kea6_settings):
    classes = kea_dhcp6_config(plan6, dict(SERVER, http_port=8080), kea6_settings)["Dhcp6"]["client-classes"]
    assert _answer(classes, arch=16)["bootfile-url"] == "http://[2001:db8:0:1::2]:8080/loaders/ipxe.efi"
    assert _answer(classes, arch=7)["bootfile-url"] == "tftp://[2001:db8:0:1::2]/ipxe.efi"


def test_subnets_and_reservations(plan6, kea6_settings):
    dhcp6 = kea_dhcp6_config(plan6, SERVER, kea6_settings)["Dhcp6"]
    one, two = dhcp6["subnet6"]
    assert one["subnet"] == "2001:db8:0:1::/64" and one["interface"] == "eth1"
    assert "interface" not in two  # not on this server's link: relayed
    assert one["pools"] == [{"pool": "2001:db8:0:1::1000 - 2001:db8:0:1::1fff"}]
    assert one["option-data"] == [{"name": "dns-servers", "data": "2001:db8:0:1::1"}]
    # By DUID where the inventory gives one, else by each MAC (one address for every NIC).
    assert one["reservations"] == [{"duid": DUID, "ip-addresses": ["2001:db8:0:1::11"], "hostname": "node01"}]
    assert two["reservations"] == [
        {"hw-address": "52:54:00:00:02:01", "ip-addresses": ["2001:db8:0:2::12"], "hostname": "node02"},
        {"hw-address": "52:54:00:00:02:02", "ip-addresses": ["2001:db8:0:2::12"], "hostname": "node02"}]
    assert dhcp6["ip-reservations-unique"] is False
    assert dhcp6["host-reservation-identifiers"] == ["duid", "hw-address"]
    assert dhcp6["lease-database"]["name"].endswith("kea-leases6.csv")
    assert dhcp6["user-context"]["centra.pxe"]["plan"] == plan6["digest"]


def test_no_ipv6_means_no_config(plan, kea6_settings, plan6):
    with pytest.raises(Kea6Error, match="no IPv6 prefix"):
        kea_dhcp6_config(plan, SERVER, kea6_settings)
    with pytest.raises(Kea6Error, match="PXE server pxe01 has no IPv6 address"):
        kea_dhcp6_config(plan6, dict(SERVER, address6=None), kea6_settings)


def test_kea_dhcp6_accepts_the_config(plan6, kea6_settings, tmp_path):
    kea = shutil.which("kea-dhcp6") or shutil.which("kea-dhcp6", path="/usr/sbin:/sbin")
    assert kea, "kea-dhcp6 is not installed: scripts/setup.sh installs kea-dhcp6-server"
    config = kea_dhcp6_config(plan6, dict(SERVER, interface="lo"), dict(
        kea6_settings, interfaces=[], lease_file=str(tmp_path / "leases6.csv"), control_socket=str(tmp_path / "c.sock")))
    path = tmp_path / "kea-dhcp6.conf"
    path.write_text(json.dumps(config))
    run = subprocess.run([kea, "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # The checker is a real gate: a reservation outside its prefix fails it.
    config["Dhcp6"]["subnet6"][0]["reservations"][0]["ip-addresses"] = ["2001:db8:0:9::1"]
    path.write_text(json.dumps(config))
    assert subprocess.run([kea, "-t", str(path)], capture_output=True, text=True, check=False).returncode != 0


def test_every_rule_with_a_loader_has_its_class(plan6, kea6_settings):
    names = {c["name"] for c in kea_dhcp6_config(plan6, SERVER, kea6_settings)["Dhcp6"]["client-classes"]}
    boot = v6_boot_server(SERVER)
    for rule in BOOT_RULES:
        has_answer = decide6(boot, arch=rule.arch_codes[-1]).kind != "none"
        assert ("centra6_arch_" + rule.name in names) == has_answer, rule.name
