# SPDX-License-Identifier: GPL-3.0-or-later
"""The iPXE renderer: entry script, menu, node scripts, healthz."""
from __future__ import annotations

import json

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    IPXE_SETTINGS, entry_script, healthz, lifecycle_scripts, menu_script, node_scripts,
)

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


def test_entry_script_picks_the_booting_interface(plan, ipxe_settings):
    text = entry_script(plan, "http://192.0.2.2/", ipxe_settings)
    assert text.startswith("#!ipxe\n")
    assert "set centra-base http://192.0.2.2\n" in text
    assert "chain --autofree ${centra-base}/nodes/${mac:hexhyp}.ipxe || goto failed" in text
    assert "net0/mac" not in text
    # A node script that returns (boot from local disk) hands back to the firmware with a
    # failure status, so that a UEFI boot manager goes on to its next entry (the disk).
    assert "|| goto failed\nexit 1\n:failed" in text
    assert "goto start" in text  # a failed download is retried


def test_node_scripts_one_per_mac(plan, ipxe_settings):
    scripts = node_scripts(plan, "http://192.0.2.2", ipxe_settings)
    assert sorted(scripts) == ["52-54-00-00-01-01.ipxe", "52-54-00-00-02-01.ipxe", "52-54-00-00-02-02.ipxe",
                               "52-54-00-00-03-01.ipxe", "52-54-00-00-04-01.ipxe", "52-54-00-00-05-01.ipxe"]
    assert scripts["52-54-00-00-02-01.ipxe"] == scripts["52-54-00-00-02-02.ipxe"]
    netboot = scripts["52-54-00-00-03-01.ipxe"]
    assert ("kernel ${centra-base}/profiles/worker/vmlinuz initrd=initrd panic=-1 centra.profile=worker "
            "centra.services=k8shost console=tty0 console=ttyS0,115200 || goto netboot_failed") in netboot
    assert "initrd ${centra-base}/profiles/worker/initrd || goto netboot_failed" in netboot
    assert "centra.token" not in netboot
    # An install node's static script boots the disk: the lifecycle service serves its install script.
    for name in ("52-54-00-00-01-01.ipxe", "52-54-00-00-02-01.ipxe", "52-54-00-00-04-01.ipxe"):
        assert "kernel" not in scripts[name] and scripts[name].endswith(
            "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||\nexit\n"), name
    assert "chain --autofree ${centra-base}/menu.ipxe" in scripts["52-54-00-00-05-01.ipxe"]


def test_lifecycle_scripts_only_for_install_nodes(plan, ipxe_settings):
    variants = lifecycle_scripts(plan, "http://192.0.2.2", ipxe_settings)
    macs = ["52-54-00-00-01-01.ipxe", "52-54-00-00-02-01.ipxe", "52-54-00-00-02-02.ipxe"]
    assert sorted(variants) == ["install", "local"]
    assert sorted(variants["install"]) == sorted(variants["local"]) == macs
    worker = variants["install"]["52-54-00-00-02-01.ipxe"]
    assert ("kernel ${centra-base}/profiles/worker/vmlinuz initrd=initrd panic=-1 centra.profile=worker "
            "centra.services=k8shost centra.node=node02 centra.callback=@CENTRA_CALLBACK@ "
            "centra.token=@CENTRA_TOKEN@ console=tty0 console=ttyS0,115200 || goto install_failed") in worker
    assert "centra.node=node01" in variants["install"]["52-54-00-00-01-01.ipxe"]
    local = variants["local"]["52-54-00-00-02-01.ipxe"]
    assert "kernel" not in local and "echo centra.pxe: node02 boots from local disk" in local


def test_node_script_console_is_configurable(plan, ipxe_settings):
    scripts = node_scripts(plan, "http://192.0.2.2", dict(ipxe_settings, console=["ttyS1,9600"]))
    assert "console=ttyS1,9600 ||" in scripts["52-54-00-00-03-01.ipxe"]


def test_menu(plan, ipxe_settings):
    text = menu_script(plan, "http://192.0.2.2", dict(ipxe_settings, menu_default="worker", menu_timeout=5))
    assert "item profile_control_plane Control plane" in text
    assert "item profile_worker worker" in text
    assert "choose --timeout 5000 --default profile_worker target" in text
    assert "item shell iPXE shell" in text and ":shell" in text
    assert text.count("\nkernel ") == 2
    assert "--default local" in menu_script(plan, "http://192.0.2.2", ipxe_settings)


def test_menu_default_must_exist(plan, ipxe_settings):
    with pytest.raises(ValueError, match="neither a profile"):
        menu_script(plan, "http://192.0.2.2", dict(ipxe_settings, menu_default="wroker"))


def test_healthz(plan):
    body = json.loads(healthz(plan))
    assert body["status"] == "ok" and body["config_version"] == plan["digest"]
    assert body["nodes"] == 5 and body["profiles"] == ["control_plane", "worker"]
    assert body["assets"]["worker/vmlinuz"] == ASSET["checksum"]


@pytest.mark.parametrize("missing", IPXE_SETTINGS)
def test_a_missing_setting_is_an_error_not_a_default(plan, ipxe_settings, missing):
    """The role's defaults are the only defaults: the renderer names what it was not given."""
    settings = {k: v for k, v in ipxe_settings.items() if k != missing}
    for render in (lambda: entry_script(plan, "http://192.0.2.2", settings),
                   lambda: menu_script(plan, "http://192.0.2.2", settings),
                   lambda: node_scripts(plan, "http://192.0.2.2", settings)):
        with pytest.raises(ValueError, match="the iPXE settings lack %s: pass every one of" % missing):
            render()
    with pytest.raises(ValueError, match="lack %s" % missing):
        entry_script(plan, "http://192.0.2.2", dict(ipxe_settings, **{missing: None}))
    with pytest.raises(ValueError, match="must be a mapping"):
        entry_script(plan, "http://192.0.2.2", None)


def test_a_dual_stack_server_renders_host_relative_urls(plan, ipxe_settings):
    """No base (docs/ipv6.md): iPXE resolves /nodes/... against the script's own URL, so an
    IPv6 client fetches over IPv6 what an IPv4 client fetches over IPv4."""
    entry = entry_script(plan, "", ipxe_settings)
    assert "\nclear centra-base\n" in entry and "set centra-base" not in entry
    assert "chain --autofree ${centra-base}/nodes/${mac:hexhyp}.ipxe" in entry
    for text in list(node_scripts(plan, "", ipxe_settings).values()) + [menu_script(plan, "", ipxe_settings)]:
        assert "clear centra-base" in text and "http://" not in text
