# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PXE host after site.yml: services up, configs valid by their own checkers,
TFTP and HTTP serving what they should, to real clients on the lab network."""

from __future__ import annotations

import json

import pytest
from labkit.client import lab_exec
from labkit.facts import lab_facts, node_script_path

LAB = lab_facts()
NODES = LAB.nodes
HTTP_BASE = LAB.http_base
SERVER_ADDRESS = LAB.server_address

DHCP_SERVICE = {"kea": "kea-dhcp4-server", "isc": "isc-dhcp-server"}


@pytest.mark.parametrize("service", ["tftpd-hpa", "nginx", "centra-pxe-firewall"])
def test_common_services_active_and_enabled(host, service):
    unit = host.service(service)
    assert unit.is_enabled
    if service != "centra-pxe-firewall":  # a oneshot unit: its rules are checked below
        assert unit.is_running


def test_dhcp_backend_active_and_the_other_stopped(host, backend):
    assert host.service(DHCP_SERVICE[backend]).is_running
    assert host.service(DHCP_SERVICE[backend]).is_enabled
    other = DHCP_SERVICE["isc" if backend == "kea" else "kea"]
    assert not host.service(other).is_running


def test_configs_pass_their_own_checkers(host, backend):
    if backend == "kea":
        check = host.run("kea-dhcp4 -t /etc/kea/kea-dhcp4.conf")
    else:
        check = host.run("dhcpd -t -cf /etc/dhcp/dhcpd.conf")
    assert check.rc == 0, check.stdout + check.stderr
    nginx = host.run("nginx -t")
    assert nginx.rc == 0, nginx.stderr


def test_firewall_opens_only_the_boot_ports(host):
    rules = host.run("nft list table inet centra_pxe")
    assert rules.rc == 0, rules.stderr
    for port in ("67", "69", "80"):
        assert port in rules.stdout


def test_tftp_serves_the_loaders_byte_for_byte(host):
    for loader in ("undionly.kpxe", "ipxe.efi"):
        fetched = lab_exec("sh", "-c", "cd /tmp && tftp %s -c get %s /tmp/centra-%s && sha256sum /tmp/centra-%s; rm -f /tmp/centra-%s"
                           % (SERVER_ADDRESS, loader, loader, loader, loader))
        packaged = host.file("/usr/lib/ipxe/%s" % loader).sha256sum
        assert fetched.stdout.split()[0] == packaged, loader


def test_tftp_refuses_writes_and_paths_outside_its_root():
    write = lab_exec("sh", "-c", "cd /tmp && echo x > centra-put && tftp %s -c put centra-put; echo rc=$?" % SERVER_ADDRESS)
    assert "Error" in write.stdout + write.stderr or "denied" in (write.stdout + write.stderr).lower()
    escape = lab_exec("sh", "-c", "cd /tmp && tftp %s -c get ../../../etc/passwd /tmp/centra-passwd; "
                      "test -s /tmp/centra-passwd && echo GOT || echo REFUSED; rm -f /tmp/centra-passwd" % SERVER_ADDRESS)
    assert "REFUSED" in escape.stdout


def curl(path: str) -> tuple[int, str]:
    run = lab_exec("curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "%s/%s" % (HTTP_BASE, path.lstrip("/")))
    body, _sep, code = run.stdout.rpartition("\n")
    return int(code), body


def test_http_serves_the_entry_script_and_healthz():
    code, body = curl("/boot.ipxe")
    assert code == 200 and body.startswith("#!ipxe") and "${mac:hexhyp}" in body
    code, body = curl("/healthz")
    assert code == 200
    health = json.loads(body)
    assert health["status"] == "ok" and len(health["config_version"]) == 64
    assert health["nodes"] == len(NODES)
    assert sorted(health["profiles"]) == ["all_in_one", "control_plane", "debian_installer", "worker"]


def test_healthz_checksums_match_the_served_assets():
    _code, body = curl("/healthz")
    for name, checksum in json.loads(body)["assets"].items():
        fetched = lab_exec("sh", "-c", "curl -sf %s/profiles/%s | sha256sum" % (HTTP_BASE, name))
        assert "sha256:" + fetched.stdout.split()[0] == checksum, name


@pytest.mark.parametrize("name", sorted(NODES))
def test_every_mac_of_a_node_has_its_script(name):
    node = NODES[name]
    for mac in node.macs:
        code, body = curl(node_script_path(mac))
        assert code == 200 and "Node %s " % name in body, body
        # An install node boots its profile until its installer reported installed (the
        # install tests ran before this file), then its disk; a netboot node its profile.
        assert "centra.profile=%s" % node.profile in body or (
            node.boot == "install" and "boots from local disk" in body), body


def test_an_unknown_mac_gets_the_menu():
    code, body = curl("/nodes/02-00-00-00-99-99.ipxe")
    assert code == 200 and "\nmenu " in body and "choose --timeout" in body


def test_no_directory_listing():
    code, body = curl("/profiles/")
    assert code in (403, 404) and "Index of" not in body
    _code, body = curl("/nodes/")  # nodes/ answers every unknown path with the menu
    assert "Index of" not in body
