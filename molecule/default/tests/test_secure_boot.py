# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secure Boot through the real converge (issue 14): a node with pxe_loader: grub boots
under OVMF with Secure Boot enforced (Microsoft keys enrolled) through Debian's signed
chain, shim -> GRUB -> the profile's Debian-signed kernel, and its kernel command line
is the one the iPXE chain gives the same node. A grub node with the lifecycle installs
once under Secure Boot, then boots from its disk: GRUB's local-boot configuration
chainloads the disk's signed shim. A profile with an unsigned kernel is refused at
converge by the signature check, before anything on the server changes. With UEFI HTTP
boot, the same node boots the same kernel from the Secure Boot disk image, without TFTP
(pxe_server_secure_boot_http_image, set in inventories/lab; docs/secure-boot.md).

The lab machines: `lab.py boot --firmware uefi-secureboot` (tests/lab/README.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from labkit.client import boot, booted_profile, host_state, lab_exec, pxe_shell, state_changes
from labkit.facts import LAB_INVENTORY, lab_facts, node_script_path
from labkit.playbook import ansible_playbook, recap, task_results

LAB = lab_facts()
NODES = LAB.nodes
SERVER = LAB.server_address
with open(os.path.join(LAB_INVENTORY, "group_vars", "all.yml"), encoding="utf-8") as _handle:
    PROFILES = yaml.safe_load(_handle)["pxe_profiles"]
# A node of an installer profile (node10: installer: debian) boots d-i, not the lab's test
# image: test_debian_installer.py boots it.
GRUB_NODES = sorted(name for name, node in NODES.items()
                    if node.loader == "grub" and "installer" not in PROFILES[node.profile])
# The grub nodes with the lifecycle (pxe_boot: install): node11 in inventories/lab.
GRUB_INSTALL_NODES = [name for name in GRUB_NODES if NODES[name].boot == "install"]
# The isc scenario runs these tests too. The DHCP server matters for the PXE part only, so
# there the install cycle is enough; the Kea scenario also powers the machine on again.
KEA = os.environ.get("MOLECULE_SCENARIO_NAME", "default") != "isc"


def serial(result: dict) -> str:
    with open(result["log"], encoding="utf-8", errors="replace") as handle:
        return handle.read()


def ipxe_kernel_args(mac: str) -> list[str]:
    """The kernel arguments of the node's iPXE script (what the iPXE chain would boot)."""
    script = lab_exec("curl", "-sS", "--max-time", "10", "http://%s%s" % (SERVER, node_script_path(mac))).stdout
    line = next(line for line in script.splitlines() if line.startswith("kernel "))
    words = line.split(" || ", 1)[0].split()[2:]     # "kernel URL ARGS || goto ..."
    return [word for word in words if not word.startswith("initrd=")]


def grub_kernel_args(cmdline: str) -> list[str]:
    """The booted command line without what GRUB adds itself (BOOT_IMAGE=<path>)."""
    return [word for word in cmdline.split() if not word.startswith("BOOT_IMAGE=")]


def assert_signed_chain(text: str) -> None:
    """The serial log shows shim fetching GRUB and a kernel that runs with Secure Boot on."""
    assert "Fetching Netboot Image grubx64.efi" in text, "shim did not load GRUB"
    assert "secureboot: Secure boot enabled" in text, "the kernel did not run under Secure Boot"


@pytest.fixture(name="grub_node")
def fixture_grub_node():
    if not GRUB_NODES:
        pytest.fail("inventories/lab has no node with pxe_loader: grub")
    return NODES[GRUB_NODES[0]]


def test_a_grub_node_boots_its_profile_under_secure_boot_over_tftp(grub_node):
    mac = grub_node.macs[0]
    result = boot(mac, "uefi-secureboot", timeout=400)
    assert booted_profile(result["line"]) == grub_node.profile
    text = serial(result)
    assert "Start PXE over IPv4" in text and "NBP filename is shimx64.efi" in text
    assert_signed_chain(text)
    # The same command line as the iPXE chain renders for this node (one renderer).
    assert grub_kernel_args(result["cmdline"]) == ipxe_kernel_args(mac)


def test_a_grub_node_boots_its_profile_under_secure_boot_over_http_without_tftp(grub_node):
    """Option 93 = 16 under Secure Boot: DHCP answers the disk image, the firmware boots shim
    from its RAM disk, GRUB finds the node by its card's MAC (its own config, not the menu)
    and boots the profile's signed kernel, with the iPXE chain's command line; tftpd hears
    nothing from the machine."""
    mac = grub_node.macs[0]
    start = clock()
    result = boot(mac, "uefi-secureboot", "--http-boot", timeout=400)
    assert booted_profile(result["line"]) == grub_node.profile
    text = serial(result)
    assert "URI: http://%s/loaders/secureboot-x64.img" % SERVER in text, "the firmware did not fetch the image"
    assert "centra.pxe: %s boots profile %s" % (grub_node.name, grub_node.profile) in text, "GRUB did not find the node"
    assert "secureboot: Secure boot enabled" in text, "the kernel did not run under Secure Boot"
    assert grub_kernel_args(result["cmdline"]) == ipxe_kernel_args(mac)
    assert grub_node.ip, "the grub node needs a fixed address here (inventories/lab)"
    assert tftp_reads_since(start, grub_node.ip, ".*") == 0, "the machine read over TFTP"


@pytest.fixture(name="grub_install_node")
def fixture_grub_install_node():
    if not GRUB_INSTALL_NODES:
        pytest.fail("inventories/lab has no node with pxe_loader: grub and the lifecycle (pxe_boot: install)")
    return NODES[GRUB_INSTALL_NODES[0]]


def clock() -> float:
    return float(pxe_shell("date +%s.%N").stdout)


def tftp_reads_since(start: float, address: str, path: str) -> int:
    """How many TFTP read requests for path (relative to the TFTP root) the machine at
    address sent since start: tftpd-hpa --verbose logs "RRQ from <ip> filename <file>"."""
    out = pxe_shell("journalctl -q -o cat -t in.tftpd --since @%d | grep -c -E '^RRQ from (::ffff:)?%s filename /?%s$' || true"
                    % (int(start), address.replace(".", "[.]"), path)).stdout
    return int(out.strip() or 0)


def node_state(mac: str) -> dict:
    run = lab_exec("curl", "-sS", "--max-time", "10", "http://%s/api/v1/nodes/%s" % (SERVER, mac))
    return json.loads(run.stdout)


def markers(result: dict) -> list[tuple[int, str]]:
    return [(m["boot"], m["line"]) for m in result["markers"]]


def test_a_grub_node_installs_once_under_secure_boot_then_boots_from_its_disk(grub_install_node):
    """Secure Boot on, a fresh disk, the network first: shim -> GRUB -> the profile's signed
    kernel (the lab's installer: it reports installed and reboots), then PXE again, where the
    lifecycle's GRUB configuration chainloads the disk's shim, which boots the disk's signed
    GRUB and kernel (LOCAL-BOOT-OK). As test_install_once.py does for the iPXE chain."""
    node = grub_install_node
    name, mac = node.name, node.macs[0]
    assert node.ip, "%s: the test counts its TFTP reads by pxe_ip" % name
    kernel = "profiles/%s/vmlinuz" % node.profile
    start = clock()
    first = boot(mac, "uefi-secureboot", "--disk", name, "--fresh-disk", "--until", "LOCAL-BOOT-OK %s" % name,
                 timeout=1200)
    seen = markers(first)
    words = [line.split()[0] for _boot, line in seen]
    assert words.count("INSTALL-OK") == 1 and words[-1] == "LOCAL-BOOT-OK", seen
    assert seen[-1][1] == "LOCAL-BOOT-OK %s" % name, seen
    install_boot = next(b for b, line in seen if line.startswith("INSTALL-OK"))
    assert seen[-1][0] > install_boot, "the local boot came after a reboot: %r" % (seen,)
    # The disk was booted by its own signed chain (shim -> Debian's disk GRUB), not syslinux.
    assert (seen[-1][0], "LOCAL-BOOT-INFO loader=grub-efi") in seen, seen
    assert "centra.node=%s" % name in first["cmdline"] and "centra.token=" in first["cmdline"]
    text = serial(first)
    assert_signed_chain(text)
    assert text.count("secureboot: Secure boot enabled") >= 2, "both kernels (installer, disk) under Secure Boot"
    assert "centra.pxe: %s boots from local disk" % name in text
    assert "Access Denied" not in text
    assert tftp_reads_since(start, node.ip, kernel) == 1, "the profile's kernel was fetched once"
    state = node_state(mac)
    assert state["name"] == name and state["profile"] == node.profile and state["state"] == "installed", state
    assert state["installed_at"]
    if not KEA:
        return
    # The next power-on: GRUB from the network, straight to the disk, no kernel of the profile.
    again_start = clock()
    again = boot(mac, "uefi-secureboot", "--disk", name, "--until", "LOCAL-BOOT-OK %s" % name, timeout=600)
    assert [line.split()[0] for _b, line in markers(again)] == ["LOCAL-BOOT-INFO", "LOCAL-BOOT-OK"], markers(again)
    assert {b for b, _line in markers(again)} == {1}, "no reboot, no install: %r" % markers(again)
    assert markers(again)[0][1] == "LOCAL-BOOT-INFO loader=grub-efi", markers(again)
    assert "centra.pxe: %s boots from local disk" % name in serial(again)
    assert tftp_reads_since(again_start, node.ip, kernel) == 0
    assert tftp_reads_since(again_start, node.ip, "grub/lifecycle/%s.cfg" % mac.replace(":", "-")) >= 1, \
        "it asked the PXE server first"
    assert node_state(mac)["state"] == "installed"


def unsigned_copy(kernel: str, into: str) -> str:
    """The kernel with its signature table removed (sbattach --remove, on a copy)."""
    if shutil.which("sbattach") is None:
        pytest.fail("sbattach is missing: apt-get install sbsigntool (scripts/setup.sh does)")
    path = os.path.join(into, "vmlinuz-unsigned")
    shutil.copyfile(kernel, path)
    subprocess.run(["sbattach", "--remove", path], check=True, capture_output=True)
    return path


def test_a_profile_with_an_unsigned_kernel_is_refused_at_converge(grub_install_node, tmp_path):
    """site.yml as an operator runs it, with the grub node's profile booting an unsigned
    copy of its kernel: the signature check fails the play, naming the profile and the
    file, before any configuration change (boot trees, DHCP, nginx, TFTP, services)."""
    with open(os.path.join(LAB_INVENTORY, "group_vars", "all.yml"), encoding="utf-8") as handle:
        profiles = yaml.safe_load(handle)["pxe_profiles"]
    profile = grub_install_node.profile
    unsigned = unsigned_copy(profiles[profile]["kernel"]["src"], str(tmp_path))
    profiles[profile] = dict(profiles[profile], kernel={"src": unsigned})
    before = host_state()
    run = ansible_playbook("site.yml", extra_vars={"pxe_profiles": profiles})
    assert run.returncode != 0, run.stdout[-3000:]
    failed = [(task, result) for task, status, _host, result in task_results(run.stdout) if status in ("fatal", "failed")]
    assert [task for task, _result in failed] == ["Refuse a kernel signed by none of the certificates"], \
        run.stdout[-4000:]
    message = failed[0][1].get("msg", "")
    assert "profile %s: kernel %s is not signed" % (profile, unsigned) in message, message
    # The signed profiles pass: no other profile is named.
    assert all("profile %s:" % other not in message for other in profiles if other != profile), message
    assert recap(run.stdout)["pxe01"]["failed"] == 1
    assert state_changes(before, host_state()) == []
