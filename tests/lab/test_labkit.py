# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The parts of labkit that need no lab: reading the inventories and ansible-playbook's output.

Runs in scripts/test.sh's `harness` stage (PYTHONPATH: tests/lab and the collection path),
no root needed.
"""

from __future__ import annotations

import os

import pytest
from labkit.common import LabError
from labkit.facts import LAB_INVENTORY, PROJECT, inventory_facts, node_script_path
from labkit.playbook import recap, task_results

RELAY_INVENTORY = os.path.join(PROJECT, "molecule", "relay", "inventory")


def test_the_lab_inventory_nodes_are_read_with_profiles_and_canonical_macs():
    nodes = inventory_facts([LAB_INVENTORY]).nodes
    assert sorted(nodes) == ["node01", "node02", "node03", "node04", "node07", "node08", "node10", "node11",
                             "node20"]
    assert nodes["node07"].boot == "netboot" and nodes["node01"].boot == "install"
    assert nodes["node08"].loader == "grub" and nodes["node01"].loader == "ipxe"
    assert nodes["node11"].loader == "grub" and nodes["node11"].boot == "install"
    assert nodes["node20"].arch == "arm64" and nodes["node01"].arch == "amd64"
    assert (nodes["node10"].profile, nodes["node10"].ip, nodes["node10"].loader) == \
        ("debian_installer", "192.0.2.22", "grub")
    assert (nodes["node01"].profile, nodes["node01"].macs, nodes["node01"].ip) == \
        ("control_plane", ("52:54:00:00:01:01",), "192.0.2.11")
    assert nodes["node04"].profile == "worker" and nodes["node04"].macs == ("52:54:00:00:04:01", "52:54:00:00:04:02")


def test_servers_subnets_and_menu_come_from_the_generated_and_scenario_inventories(tmp_path):
    generated = tmp_path / "inventory.yml"
    generated.write_text("all:\n  children:\n    pxe_servers:\n      hosts:\n"
                         "        pxe01: {ansible_host: 192.0.2.2}\n        pxe02: {ansible_host: 192.0.2.3}\n")
    facts = inventory_facts([str(generated), LAB_INVENTORY, RELAY_INVENTORY])
    assert facts.servers == {"pxe01": "192.0.2.2", "pxe02": "192.0.2.3"}
    assert facts.server_address == "192.0.2.2" and facts.http_base == "http://192.0.2.2"
    assert facts.menu_default == "worker" and facts.backend == "kea"
    far = facts.subnet("198.51.100.0/24")
    assert far.gateway == "198.51.100.1" and far.in_pool("198.51.100.150") and not far.in_pool("198.51.100.15")
    assert facts.nodes["node06"].ip is None and facts.nodes["node05"].ip == "198.51.100.15"


def test_a_nodes_loader_is_its_own_its_profiles_or_the_servers_default(tmp_path):
    inventory = tmp_path / "loaders.yml"
    inventory.write_text(
        "all:\n  vars:\n    pxe_profiles: {a: {}, b: {}}\n  children:\n"
        "    pxe_servers:\n      hosts: {pxe01: {ansible_host: 192.0.2.2}}\n      vars: {pxe_loader: grub}\n"
        "    pxe_nodes:\n      children:\n"
        "        a:\n          hosts:\n            n1: {pxe_mac: '52:54:00:00:0a:01'}\n"
        "            n2: {pxe_mac: '52:54:00:00:0a:02', pxe_loader: ipxe}\n"
        "        b:\n          vars: {pxe_loader: ipxe}\n          hosts:\n"
        "            n3: {pxe_mac: '52:54:00:00:0a:03'}\n")
    nodes = inventory_facts([str(inventory)]).nodes
    assert {name: node.loader for name, node in nodes.items()} == {"n1": "grub", "n2": "ipxe", "n3": "ipxe"}


def test_no_server_is_a_clear_error():
    with pytest.raises(LabError, match="no host in group pxe_servers"):
        assert inventory_facts([LAB_INVENTORY]).server_address


@pytest.mark.parametrize("mac", ["52:54:00:00:01:01", "52-54-00-00-01-01", "5254.0000.0101", "525400000101"])
def test_node_script_path_is_the_hyphen_form(mac):
    assert node_script_path(mac) == "/nodes/52-54-00-00-01-01.ipxe"


RUN = """
TASK [centra.pxe.pxe_server : Build the boot plan] ******************************
fatal: [pxe01]: FAILED! => {"changed": false, "msg": "bad inventory", "problems": ["host n1: pxe_mac"]}

PLAY RECAP *********************************************************************
pxe01                      : ok=3    changed=0    unreachable=0    failed=1    skipped=2    rescued=0    ignored=0
pxe02                      : ok=12   changed=4    unreachable=0    failed=0    skipped=0    rescued=1    ignored=2
"""


def test_recap_reads_every_host_line():
    assert recap(RUN) == {
        "pxe01": {"ok": 3, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 2, "rescued": 0, "ignored": 0},
        "pxe02": {"ok": 12, "changed": 4, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 1, "ignored": 2},
    }


def test_task_results_reads_the_json_of_each_result():
    assert task_results(RUN) == [("Build the boot plan", "fatal", "pxe01",
                                  {"changed": False, "msg": "bad inventory", "problems": ["host n1: pxe_mac"]})]


# --- boot: the QEMU command line (no QEMU is started) ------------------------------------


def _request(**overrides):
    from labkit.boot import BootRequest
    values = dict(macs=["52:54:00:00:01:01"], firmware="uefi", timeout=180.0, boot_nic=1,
                  attach_all=True, http_boot=False, nic_model="virtio")
    values.update(overrides)
    return BootRequest(**values)


def _argv(request, vars_file=None):
    from pathlib import Path

    from labkit.boot import Nic, qemu_argv
    nics = [Nic(index=1, mac=request.macs[0], tap="cpxettest", boot=True)]
    return qemu_argv(request, nics, Path("/tmp/serial.log"), None, vars_file)


def test_bios_and_uefi_command_lines_are_unchanged():
    """The contract's machines: exactly the command lines the lab has always run."""
    common = ["-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults", "-nographic",
              "-monitor", "none", "-serial", "file:/tmp/serial.log", "-no-reboot", "-boot", "strict=on"]
    netdev = ["-netdev", "tap,id=net1,ifname=cpxettest,script=no,downscript=no"]
    assert _argv(_request(firmware="bios", nic_model="e1000")) == [
        "qemu-system-x86_64", "-name", "cpxe-boot-52:54:00:00:01:01", *common, *netdev,
        "-device", "e1000,mac=52:54:00:00:01:01,romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom,netdev=net1,bootindex=1"]
    assert _argv(_request(http_boot=True)) == [
        "qemu-system-x86_64", "-name", "cpxe-boot-52:54:00:00:01:01", *common,
        "-bios", "/usr/share/ovmf/OVMF.fd", "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no",
        "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
        "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no", *netdev,
        "-device", "virtio-net-pci,mac=52:54:00:00:01:01,romfile=,netdev=net1,bootindex=1"]


def test_uefi_secureboot_is_ovmf_secboot_with_smm_and_a_copy_of_the_microsoft_vars():
    from pathlib import Path

    from labkit.boot import OVMF_MS_VARS
    request = _request(firmware="uefi-secureboot")
    assert request.uefi and request.secure_boot and request.vars_template == OVMF_MS_VARS
    argv = _argv(request, Path("/state/boots/boot-1.vars.fd"))
    assert argv[:7] == ["qemu-system-x86_64", "-name", "cpxe-boot-52:54:00:00:01:01",
                        "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"]
    assert "-bios" not in argv
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives == ["if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                      "if=pflash,format=raw,unit=1,file=/state/boots/boot-1.vars.fd"]
    # Everything else as --firmware uefi: OVMF's own PXE client on a virtio NIC, IPv4 only.
    assert "virtio-net-pci,mac=52:54:00:00:01:01,romfile=,netdev=net1,bootindex=1" in argv
    assert "name=opt/org.tianocore/IPv6Support,string=no" in argv
    http = _argv(_request(firmware="uefi-secureboot", http_boot=True), Path("/v.fd"))
    assert "name=opt/org.tianocore/IPv4PXESupport,string=no" in http


def test_arm64_is_aarch64_virt_with_aavmf_and_the_vars_of_the_firmware_choice():
    from pathlib import Path

    from labkit.boot import AAVMF_MS_VARS, AAVMF_VARS
    plain, secure = _request(arch="arm64"), _request(arch="arm64", firmware="uefi-secureboot")
    assert plain.vars_template == AAVMF_VARS and secure.vars_template == AAVMF_MS_VARS
    argv = _argv(secure, Path("/v.fd"))
    assert argv[:7] == ["qemu-system-aarch64", "-name", "cpxe-boot-52:54:00:00:01:01",
                        "-M", "virt", "-cpu", "cortex-a57"]
    assert "q35,smm=on" not in argv and "-bios" not in argv
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd" in argv
    assert "if=pflash,format=raw,unit=1,file=/v.fd" in argv
    assert "virtio-net-pci,mac=52:54:00:00:01:01,romfile=,netdev=net1,bootindex=1" in argv


def test_a_firmware_that_needs_a_vars_copy_refuses_to_run_without_one():
    from labkit.common import LabError
    with pytest.raises(LabError, match="variable store"):
        _argv(_request(firmware="uefi-secureboot"))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"arch": "arm64", "firmware": "bios", "nic_model": "e1000"}, "arm64 has no BIOS"),
    ({"firmware": "uefi-secureboot", "nic_model": "e1000"}, "virtio NICs only"),
    ({"firmware": "bios", "nic_model": "e1000", "http_boot": True}, "BIOS has no HTTP boot"),
    ({"arch": "riscv64"}, "--arch must be one of amd64, arm64"),
    ({"firmware": "uefi-sb"}, "--firmware must be one of bios, uefi, uefi-secureboot"),
])
def test_impossible_machines_are_refused_before_anything_is_made(overrides, message):
    from labkit.boot import validate
    from labkit.common import LabError
    with pytest.raises(LabError, match=message):
        validate(_request(**overrides))


def test_boot_json_names_the_arch_only_for_arm64():
    import json
    from pathlib import Path

    from labkit.boot import BootResult, result_json
    result = BootResult(ok=True, seconds=1.0, line="PXE-BOOT-OK cmdline=x", log_path=Path("/l"),
                        tail=[], reason="ok")
    assert "arch" not in json.loads(result_json(_request(), result))
    assert json.loads(result_json(_request(arch="arm64"), result))["arch"] == "arm64"
