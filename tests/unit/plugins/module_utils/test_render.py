# SPDX-License-Identifier: GPL-3.0-or-later
"""Renderers: structure, and the real daemons' own checkers on what they render."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BOOT_RULES
from ansible_collections.centra.pxe.plugins.module_utils._plan import build_plan
from ansible_collections.centra.pxe.plugins.module_utils._render_dhcp import dhcpd_config, kea_dhcp4_config
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    entry_script, healthz, menu_script, node_scripts,
)

SERVER = {"address": "192.0.2.2", "http_base": "http://192.0.2.2",
          "loaders": {"bios": "undionly.kpxe", "efi64": "ipxe.efi", "efi32": "", "arm32": None, "arm64": "arm64.efi"}}
ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


@pytest.fixture(scope="module")
def plan():
    subnets = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199", "gateway": "192.0.2.1", "dns": ["192.0.2.1"]},
               {"cidr": "198.51.100.0/24", "pool": "198.51.100.100-198.51.100.200"}]
    profiles = {"worker": {"kernel": ASSET, "initrd": ASSET, "cmdline": "panic=-1", "services": ["k8shost"]},
                "control_plane": {"label": "Control plane", "kernel": ASSET, "initrd": ASSET}}
    nodes = {
        "node01": {"groups": ["control_plane"], "pxe_mac": "52:54:00:00:01:01", "pxe_ip": "192.0.2.11"},
        "node02": {"groups": ["worker"], "pxe_mac": ["52:54:00:00:02:01", "52:54:00:00:02:02"], "pxe_ip": "198.51.100.12"},
        "node03": {"groups": ["worker"], "pxe_mac": "52:54:00:00:03:01"},
        "node04": {"groups": ["worker"], "pxe_mac": "52:54:00:00:04:01", "pxe_boot": "local"},
        "node05.rack1.example": {"groups": ["worker"], "pxe_mac": "52:54:00:00:05:01", "pxe_boot": "menu"},
    }
    return build_plan(subnets, profiles, nodes)


def _checker(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, "%s is not installed: scripts/setup.sh installs it" % name
    return path


def test_kea_config_is_accepted_by_kea(plan, tmp_path):
    config = kea_dhcp4_config(plan, SERVER, {"interfaces": ["lo"], "lease_file": str(tmp_path / "leases.csv"),
                                             "control_socket": str(tmp_path / "ctrl.sock")})
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_kea_rejects_what_it_should(tmp_path):
    """The checker is a real gate: a broken config fails it."""
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps({"Dhcp4": {"subnet4": [{"id": 1, "subnet": "192.0.2.0/24",
                                                       "pools": [{"pool": "198.51.100.1 - 198.51.100.9"}]}]}}))
    run = subprocess.run([_checker("kea-dhcp4"), "-t", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode != 0


def test_kea_config_structure(plan):
    dhcp4 = kea_dhcp4_config(plan, SERVER, {"interfaces": ["eth1"]})["Dhcp4"]
    assert dhcp4["interfaces-config"]["interfaces"] == ["eth1"]
    assert dhcp4["interfaces-config"]["service-sockets-max-retries"] > 0
    assert dhcp4["lease-database"]["persist"] is True
    assert dhcp4["control-socket"]["socket-name"]
    classes = {c["name"]: c for c in dhcp4["client-classes"]}
    assert list(classes)[0] == "centra_ipxe"
    assert classes["centra_ipxe"]["boot-file-name"] == "http://192.0.2.2/boot.ipxe"
    assert classes["centra_arch_bios"]["boot-file-name"] == "undionly.kpxe"
    assert classes["centra_arch_bios"]["next-server"] == "192.0.2.2"
    assert "not option[93].exists" in classes["centra_arch_bios"]["test"]
    assert classes["centra_arch_efi64"]["test"].count("substring(option[93].hex,0,2)") == 2
    assert classes["centra_arch_http_efi64"]["boot-file-name"] == "http://192.0.2.2/loaders/ipxe.efi"
    assert classes["centra_arch_http_efi64"]["option-data"][0]["data"] == "HTTPClient"
    # Below DEBUG, only the classes that answer: the others would only show in DEBUG logs.
    assert all("boot-file-name" in c for c in classes.values())
    assert {"centra_arch_efi32", "centra_arch_arm32", "centra_arch_unknown"}.isdisjoint(classes)
    loggers = {logger["name"]: logger["severity"] for logger in dhcp4["loggers"]}
    assert loggers == {"kea-dhcp4": "INFO", "kea-dhcp4.eval": "WARN", "kea-dhcp4.options": "WARN"}

    debug = kea_dhcp4_config(plan, SERVER, {"log_severity": "DEBUG"})["Dhcp4"]
    assert {logger["severity"] for logger in debug["loggers"]} == {"DEBUG"}
    classes = {c["name"]: c for c in debug["client-classes"]}
    assert len(classes) == len(BOOT_RULES) + 2
    assert "boot-file-name" not in classes["centra_arch_efi32"]
    assert "boot-file-name" not in classes["centra_arch_arm32"]
    assert "boot-file-name" not in classes["centra_arch_unknown"]
    # Unknown = none of the arch classes above, by membership (no test evaluated twice).
    for rule in BOOT_RULES:
        assert "member('centra_arch_%s')" % rule.name in classes["centra_arch_unknown"]["test"]
    assert "substring" not in classes["centra_arch_unknown"]["test"]
    assert {k: v for k, v in classes.items() if "boot-file-name" in v} == {
        c["name"]: c for c in dhcp4["client-classes"]}, "DEBUG adds classes, it changes no answer"
    first, second = dhcp4["subnet4"]
    assert first["reservations"] == [{"hw-address": "52:54:00:00:01:01", "hostname": "node01", "ip-address": "192.0.2.11"}]
    assert [r["hw-address"] for r in second["reservations"]] == ["52:54:00:00:02:01", "52:54:00:00:02:02"]
    assert first["option-data"] == [{"name": "routers", "data": "192.0.2.1"}, {"name": "domain-name-servers", "data": "192.0.2.1"}]
    assert {r["hw-address"] for r in dhcp4["reservations"]} == {"52:54:00:00:03:01", "52:54:00:00:04:01", "52:54:00:00:05:01"}
    assert dhcp4["reservations-global"] is True
    assert dhcp4["ip-reservations-unique"] is False  # node02's two NICs share its address


def test_dhcpd_config_is_accepted_by_dhcpd(plan, tmp_path):
    path = tmp_path / "dhcpd.conf"
    path.write_text(dhcpd_config(plan, SERVER))
    run = subprocess.run([_checker("dhcpd"), "-t", "-cf", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dhcpd_config_structure(plan):
    text = dhcpd_config(plan, SERVER)
    assert 'if ((exists user-class and option user-class = "iPXE") or exists ipxe-encap-opts) {' in text
    assert "substring(option arch, 0, 2) = 00:07" in text and "substring(option arch, 0, 2) = 00:09" in text
    assert 'option vendor-class-identifier "HTTPClient";' in text
    assert "host node02-1 { hardware ethernet 52:54:00:00:02:02; fixed-address 198.51.100.12;" in text
    assert "host node03-0 { hardware ethernet 52:54:00:00:03:01; option host-name \"node03\"; }" in text
    assert "range 192.0.2.100 192.0.2.199;" in text
    assert text.count("} elsif") == len(BOOT_RULES)


def test_entry_script_picks_the_booting_interface(plan):
    text = entry_script(plan, "http://192.0.2.2/")
    assert text.startswith("#!ipxe\n")
    assert "set centra-base http://192.0.2.2\n" in text
    assert "chain --autofree ${centra-base}/nodes/${mac:hexhyp}.ipxe || goto failed" in text
    assert "net0/mac" not in text
    # A node script that returns (boot from local disk) hands back to the firmware.
    assert "|| goto failed\nexit\n:failed" in text
    assert "goto start" in text  # a failed download is retried


def test_node_scripts_one_per_mac(plan):
    scripts = node_scripts(plan, "http://192.0.2.2")
    assert sorted(scripts) == ["52-54-00-00-01-01.ipxe", "52-54-00-00-02-01.ipxe", "52-54-00-00-02-02.ipxe",
                               "52-54-00-00-03-01.ipxe", "52-54-00-00-04-01.ipxe", "52-54-00-00-05-01.ipxe"]
    assert scripts["52-54-00-00-02-01.ipxe"] == scripts["52-54-00-00-02-02.ipxe"]
    worker = scripts["52-54-00-00-02-01.ipxe"]
    assert ("kernel ${centra-base}/profiles/worker/vmlinuz initrd=initrd panic=-1 centra.profile=worker "
            "centra.services=k8shost console=tty0 console=ttyS0,115200 || goto install_failed") in worker
    assert "initrd ${centra-base}/profiles/worker/initrd || goto install_failed" in worker
    assert "centra.profile=control_plane" in scripts["52-54-00-00-01-01.ipxe"]
    local = scripts["52-54-00-00-04-01.ipxe"]
    assert "\nexit\n" in local and "kernel" not in local
    assert "chain --autofree ${centra-base}/menu.ipxe" in scripts["52-54-00-00-05-01.ipxe"]


def test_node_script_console_is_configurable(plan):
    scripts = node_scripts(plan, "http://192.0.2.2", {"console": ["ttyS1,9600"]})
    assert "console=ttyS1,9600 ||" in scripts["52-54-00-00-03-01.ipxe"]


def test_menu(plan):
    text = menu_script(plan, "http://192.0.2.2", {"menu_default": "worker", "menu_timeout": 5})
    assert "item profile_control_plane Control plane" in text
    assert "item profile_worker worker" in text
    assert "choose --timeout 5000 --default profile_worker target" in text
    assert "item shell iPXE shell" in text and ":shell" in text
    assert text.count("\nkernel ") == 2
    assert "--default local" in menu_script(plan, "http://192.0.2.2")


def test_menu_default_must_exist(plan):
    with pytest.raises(ValueError, match="neither a profile"):
        menu_script(plan, "http://192.0.2.2", {"menu_default": "wroker"})


def test_healthz(plan):
    body = json.loads(healthz(plan))
    assert body["status"] == "ok" and body["config_version"] == plan["digest"]
    assert body["nodes"] == 5 and body["profiles"] == ["control_plane", "worker"]
    assert body["assets"]["worker/vmlinuz"] == ASSET["checksum"]
