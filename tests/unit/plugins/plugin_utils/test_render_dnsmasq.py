# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BOOT_RULES, boot_server, decide_proxy
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dnsmasq import dnsmasq_proxy_config

PLAN = {"digest": "d" * 64, "subnets": [
    {"id": 1, "cidr": "192.0.2.0/24", "network": "192.0.2.0", "netmask": "255.255.255.0", "pool": None},
    {"id": 2, "cidr": "198.51.100.0/25", "network": "198.51.100.0", "netmask": "255.255.255.128", "pool": None}]}
SERVER = {"address": "192.0.2.2", "http_base": "http://192.0.2.2",
          "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "arm64": "ipxe-arm64.efi"}}
SETTINGS = {"interfaces": ["eth1", "eth2"], "log_dhcp": False}


def _lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _dnsmasq_choice(text, arch, ipxe):
    """The dhcp-boot dnsmasq picks for a client: tags set by the dhcp-match/dhcp-userclass
    lines, then (as dnsmasq's find_boot does) the last dhcp-boot whose tags all match."""
    tags = {"centra_ipxe"} if ipxe else set()
    for line in _lines(text):
        key, _sep, value = line.partition("=")
        if key == "dhcp-match" and value.split(",")[1:3] == ["option:client-arch", str(arch)]:
            tags.add(value.split(",")[0][len("set:"):])
    chosen = None
    for line in _lines(text):
        key, _sep, value = line.partition("=")
        if key != "dhcp-boot":
            continue
        fields = value.split(",")
        wanted = [f[len("tag:"):] for f in fields if f.startswith("tag:")]
        rest = [f for f in fields if not f.startswith("tag:")]
        if all((w[1:] not in tags) if w.startswith("!") else (w in tags) for w in wanted):
            chosen = (rest[0], rest[2])
    return chosen


def test_proxy_only_no_dns_no_leases_no_tftp():
    text = dnsmasq_proxy_config(PLAN, SERVER, SETTINGS)
    lines = _lines(text)
    assert "port=0" in lines and "leasefile-ro" in lines
    assert not any(line.startswith(("enable-tftp", "dhcp-host", "dhcp-option")) for line in lines)
    assert [line for line in lines if line.startswith("dhcp-range")] == [
        "dhcp-range=192.0.2.0,proxy,255.255.255.0", "dhcp-range=198.51.100.0,proxy,255.255.255.128"]
    assert [line for line in lines if line.startswith("interface=")] == ["interface=eth1", "interface=eth2"]
    assert "dhcp-pxe-vendor=PXEClient,HTTPClient" in lines
    assert "log-dhcp" not in lines
    assert "log-dhcp" in _lines(dnsmasq_proxy_config(PLAN, SERVER, dict(SETTINGS, log_dhcp=True)))
    assert PLAN["digest"] in text


@pytest.mark.parametrize("arch", sorted({c for rule in BOOT_RULES for c in rule.arch_codes if c is not None} | {42}))
@pytest.mark.parametrize("ipxe", [False, True])
def test_every_row_of_the_table_is_what_dnsmasq_picks(arch, ipxe):
    text = dnsmasq_proxy_config(PLAN, SERVER, SETTINGS)
    expected = decide_proxy(boot_server(SERVER), arch=arch, user_class=b"iPXE" if ipxe else None)
    got = _dnsmasq_choice(text, arch, ipxe)
    if expected.kind == "none":
        assert got is None, (arch, got)
    else:
        assert got == (expected.filename, expected.next_server), (arch, got, expected)


@pytest.mark.parametrize("loaders, what", [({"bios": "undi only.kpxe"}, "boot file"),
                                           ({"bios": "a,b.kpxe"}, "boot file")])
def test_values_dnsmasq_would_split_are_refused(loaders, what):
    with pytest.raises(ValueError, match=what):
        dnsmasq_proxy_config(PLAN, dict(SERVER, loaders=loaders), SETTINGS)


def test_every_setting_is_required():
    with pytest.raises(ValueError, match="log_dhcp"):
        dnsmasq_proxy_config(PLAN, SERVER, {"interfaces": ["eth1"]})


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq is not installed here (the lab host checks it)")
def test_dnsmasq_itself_accepts_it(tmp_path):
    path = tmp_path / "proxydhcp.conf"
    path.write_text(dnsmasq_proxy_config(PLAN, SERVER, dict(SETTINGS, log_dhcp=True)))
    run = subprocess.run(["dnsmasq", "--test", "--conf-file=%s" % path], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
