# SPDX-License-Identifier: GPL-3.0-or-later
"""The GRUB configurations of the grub loader chain: same plan, same kernel command line as iPXE."""
from __future__ import annotations

import re

import pytest

from ansible_collections.centra.pxe.plugins.module_utils import _render_grub as grub
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    CALLBACK_PLACEHOLDER, TOKEN_PLACEHOLDER, install_script, node_script)
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


@pytest.fixture(name="grub_plan")
def fixture_grub_plan():
    profiles = {"worker": {"kernel": ASSET, "initrd": ASSET, "cmdline": "panic=-1 quiet msg='a b' x=$y",
                           "label": "Worker's image"},
                "control_plane": {"kernel": ASSET, "initrd": ASSET}}
    nodes = {
        "node01": {"groups": ["worker"], "pxe_mac": ["52:54:00:00:01:01", "52:54:00:00:01:02"], "pxe_loader": "grub"},
        "node02": {"groups": ["worker"], "pxe_mac": "52:54:00:00:02:01", "pxe_boot": "netboot", "pxe_loader": "grub"},
        "node03": {"groups": ["worker"], "pxe_mac": "52:54:00:00:03:01", "pxe_boot": "local", "pxe_loader": "grub"},
        "node04": {"groups": ["control_plane"], "pxe_mac": "52:54:00:00:04:01", "pxe_boot": "menu"},
        "node05": {"groups": ["control_plane"], "pxe_mac": "52:54:00:00:05:01", "pxe_loader": "ipxe"},
    }
    return build_plan([{"cidr": "192.0.2.0/24"}], profiles, nodes)


def _node(plan, name):
    return next(n for n in plan["nodes"] if n["name"] == name)


def _linux_words(config):
    line = next(l for l in config.splitlines() if l.strip().startswith("linux "))
    return line.split(None, 2)[2]


def _unquote(words):
    """GRUB's reading of single-quoted words (the only quoting grub_quote emits)."""
    out = []
    for token in re.findall(r"(?:'[^']*'|\\'|[^\s'\\])+", words):
        out.append(re.sub(r"'([^']*)'|\\(')", lambda m: m.group(1) if m.group(1) is not None else m.group(2), token))
    return out


def test_the_kernel_command_line_is_the_ipxe_one(grub_plan, ipxe_settings):
    node = _node(grub_plan, "node02")
    ipxe = node_script(grub_plan, node, "http://192.0.2.2", ipxe_settings)
    ipxe_line = next(l for l in ipxe.splitlines() if l.startswith("kernel "))
    ipxe_args = ipxe_line.split(None, 2)[2].split(" || ")[0].split()
    assert ipxe_args[0] == "initrd=initrd"  # iPXE's own, for Debian's EFI iPXE
    config = grub.node_config(grub_plan, node, ipxe_settings)
    assert _unquote(_linux_words(config)) == ipxe_args[1:]
    assert "centra.profile=worker" in _unquote(_linux_words(config))
    assert "'msg='\\''a'" in config  # a quote in the profile's line stays a quote


def test_install_config_carries_the_lifecycle_arguments_as_the_ipxe_one(grub_plan, ipxe_settings):
    node = _node(grub_plan, "node01")
    config = grub.install_config(grub_plan, node, ipxe_settings)
    words = _unquote(_linux_words(config))
    for word in ("centra.node=node01", "centra.callback=" + CALLBACK_PLACEHOLDER, "centra.token=" + TOKEN_PLACEHOLDER):
        assert word in words
    ipxe = install_script(grub_plan, node, "http://192.0.2.2", ipxe_settings)
    assert " ".join(words) in ipxe
    assert "initrd /profiles/worker/initrd" in config
    assert [line.strip() for line in config.splitlines()].count("boot") == 1 and config.rstrip().endswith("reboot")


def test_local_boot_chainloads_the_disk_then_exits(grub_plan, ipxe_settings):
    config = grub.node_config(grub_plan, _node(grub_plan, "node03"), ipxe_settings)
    assert "linux " not in config
    assert "set root=$centra_disk\n        chainloader $centra_loader" in config
    # Booted from the Secure Boot HTTP boot image, that image's RAM disk (it has a
    # /EFI/BOOT/BOOTX64.EFI) is not the machine's disk.
    assert '      if [ "$centra_disk" != "$centra_image_disk" ]; then\n        set root=$centra_disk' in config
    assert "/EFI/debian/shimx64.efi /EFI/BOOT/BOOTX64.EFI" in config
    assert config.rstrip().endswith("exit")
    assert grub.local_config(_node(grub_plan, "node01")) == grub.node_config(
        grub_plan, _node(grub_plan, "node01"), ipxe_settings).replace("boot install)", "boot install, installed)")


def test_only_nodes_of_the_grub_chain_get_configs(grub_plan, ipxe_settings):
    assert sorted(grub.node_configs(grub_plan, ipxe_settings, "ipxe")) == [
        "52-54-00-00-01-01.cfg", "52-54-00-00-01-02.cfg", "52-54-00-00-02-01.cfg", "52-54-00-00-03-01.cfg"]
    with_default = grub.node_configs(grub_plan, ipxe_settings, "grub")
    assert "52-54-00-00-04-01.cfg" in with_default and "52-54-00-00-05-01.cfg" not in with_default
    assert with_default["52-54-00-00-04-01.cfg"].rstrip().endswith("configfile /grub/menu.cfg")
    lifecycle = grub.lifecycle_configs(grub_plan, ipxe_settings, "ipxe")
    assert sorted(lifecycle["install"]) == sorted(lifecycle["local"]) == ["52-54-00-00-01-01.cfg",
                                                                          "52-54-00-00-01-02.cfg"]


def test_entry_config_picks_lifecycle_then_node_then_menu(grub_plan):
    text = grub.entry_config(grub_plan)
    assert '"$net_default_mac"' in text
    assert 'set centra_mac="${centra_m1}-${centra_m2}-${centra_m3}-${centra_m4}-${centra_m5}-${centra_m6}"' in text
    order = [l.split()[1] for l in text.splitlines() if l.startswith("configfile ")]
    assert order == ["/grub/lifecycle/${centra_mac}.cfg", "/grub/nodes/${centra_mac}.cfg", "/grub/menu.cfg"]
    assert grub_plan["digest"][:12] in text


def test_entry_config_finds_the_card_when_booted_from_the_http_boot_image(grub_plan):
    """From the Secure Boot HTTP boot image GRUB has no interface, so no $net_default_mac: the
    entry config names one per card (no address asked for) until a node config matches, and
    remembers the image's disk; over TFTP (the MAC is known) none of that runs."""
    lines = grub.entry_config(grub_plan).splitlines()
    start = lines.index('if [ -z "$net_default_mac" ]; then')
    block = lines[start:lines.index("fi", start) + 1]
    assert "  set centra_image_disk=$root" in block and "  export centra_image_disk" in block
    assert "  for centra_card in %s; do" % " ".join("efinet%d" % i for i in range(grub.IMAGE_CARDS)) in block
    assert "    if net_add_addr centra_$centra_card $centra_card 0.0.0.0; then" in block
    assert not any("net_bootp" in line or "net_dhcp" in line for line in block)
    # The image's node configs have 8.3 names (IMAGE_NODE_RENAME, which centra.pxe.fat_image
    # applies to grub/): the lookup here and the path the rename gives are the same.
    image_node = "/grub/" + re.sub(grub.IMAGE_NODE_RENAME["pattern"], grub.IMAGE_NODE_RENAME["replacement"],
                                   "nodes/52-54-00-00-0b-01.cfg")
    assert image_node == "/grub/n/525400/000b01.cfg"
    pattern = "/grub/n/${centra_m1}${centra_m2}${centra_m3}/${centra_m4}${centra_m5}${centra_m6}.cfg"
    assert "      if [ -e %s ]; then break; fi" % pattern in block
    # Before the MAC is split for the lookups; the image's copy after the TFTP tree's, before the menu.
    assert start < next(i for i, l in enumerate(lines) if l.startswith("set centra_mac="))
    image_line = 'if [ -n "$centra_image_disk" ]; then configfile %s; fi' % pattern
    assert lines.index("configfile /grub/nodes/${centra_mac}.cfg") < lines.index(image_line) \
        < lines.index("configfile /grub/menu.cfg")


@pytest.mark.parametrize("default, expected", [("local", "set default=local"), ("worker", "set default=profile_worker"),
                                               ("shell", "set timeout=-1")])
def test_menu(grub_plan, ipxe_settings, default, expected):
    text = grub.menu_config(grub_plan, dict(ipxe_settings, menu_default=default))
    assert expected in text
    assert "menuentry 'Worker'\\''s image' --id profile_worker {" in text
    assert "menuentry control_plane --id profile_control_plane {" in text
    assert "menuentry 'Boot from local disk' --id local {" in text
    with pytest.raises(ValueError, match="menu default"):
        grub.menu_config(grub_plan, dict(ipxe_settings, menu_default="nope"))


@pytest.mark.parametrize("word, quoted", [("plain=1", "plain=1"), ("a b", "'a b'"), ("x=$y", "'x=$y'"),
                                          ("it's", "'it'\\''s'"), ("a;b", "'a;b'")])
def test_grub_quote(word, quoted):
    assert grub.grub_quote(word) == quoted
    assert _unquote(quoted) == [word]


def _run_for_cpu(config, cpu):
    """The commands GRUB runs of a boot config on a machine whose $grub_cpu is cpu (the
    if/elif/else on $grub_cpu that _boot_lines emits; everything else runs as is)."""
    ran, taking, taken = [], [True], False
    for raw in config.splitlines():
        line = raw.strip()
        test = re.fullmatch(r'(if|elif) \[ "\$grub_cpu" = (\w+) \]; then', line)
        if test:
            if test.group(1) == "if":
                taken = False
            taking[-1] = not taken and test.group(2) == cpu
            taken = taken or taking[-1]
        elif line == "else":
            taking[-1] = not taken
        elif line == "fi":
            taking[-1] = True
        elif taking[-1] and line and not line.startswith("#"):
            ran.append(line)
    return ran


ARM64_ASSET = {"url": "http://192.0.2.1/arm64", "checksum": "sha256:" + "ef" * 32}


@pytest.fixture(name="arm64_plan")
def fixture_arm64_plan():
    profiles = {"worker": {"kernel": ASSET, "initrd": ASSET, "cmdline": "panic=-1",
                           "arm64": {"kernel": ARM64_ASSET, "initrd": ARM64_ASSET}},
                "control_plane": {"kernel": ASSET, "initrd": ASSET}}
    nodes = {
        "node09": {"groups": ["worker"], "pxe_mac": "52:54:00:00:09:01", "pxe_boot": "netboot", "pxe_arch": "arm64"},
        "node02": {"groups": ["control_plane"], "pxe_mac": "52:54:00:00:02:01", "pxe_boot": "netboot",
                   "pxe_loader": "grub"},
    }
    return build_plan([{"cidr": "192.0.2.0/24"}], profiles, nodes)


def test_a_machine_boots_the_assets_of_its_architecture(arm64_plan, ipxe_settings):
    config = grub.node_config(arm64_plan, _node(arm64_plan, "node09"), ipxe_settings)
    arm64 = _run_for_cpu(config, "arm64")
    assert [l.split()[:2] for l in arm64 if l.split()[0] in ("linux", "initrd")] == [
        ["linux", "/profiles/worker/arm64/vmlinuz"], ["initrd", "/profiles/worker/arm64/initrd"]]
    assert arm64.index("boot") < arm64.index("reboot")
    amd64 = _run_for_cpu(config, "x86_64")
    assert [l.split()[:2] for l in amd64 if l.split()[0] in ("linux", "initrd")] == [
        ["linux", "/profiles/worker/vmlinuz"], ["initrd", "/profiles/worker/initrd"]]
    # The same command line for both.
    assert [l.split(None, 2)[2] for l in arm64 if l.startswith("linux ")] == [
        l.split(None, 2)[2] for l in amd64 if l.startswith("linux ")]
    # A cpu the profile has nothing for: told on the console, no boot.
    other = _run_for_cpu(config, "riscv64")
    assert "boot" not in other and other[-1] == "reboot"
    assert any("profile worker has no kernel for this machine" in l for l in other)


def test_an_amd64_only_profile_tells_an_arm64_machine(arm64_plan, ipxe_settings):
    config = grub.node_config(arm64_plan, _node(arm64_plan, "node02"), ipxe_settings)
    ran = _run_for_cpu(config, "arm64")
    assert "boot" not in ran and not any(l.startswith("linux ") for l in ran)
    assert any("profile control_plane has no kernel for this machine" in l for l in ran)
    assert ran[-2].startswith("sleep --interruptible") and ran[-1] == "reboot"
    assert "boot" in _run_for_cpu(config, "x86_64")
    # The menu picks the same way.
    menu = grub.menu_config(arm64_plan, ipxe_settings)
    assert "linux /profiles/worker/arm64/vmlinuz" in menu and "linux /profiles/control_plane/arm64" not in menu


def test_an_arm64_node_gets_grub_configs_whatever_its_loader(arm64_plan, ipxe_settings):
    configs = grub.node_configs(arm64_plan, ipxe_settings, "ipxe")
    assert set(configs) == {"52-54-00-00-09-01.cfg", "52-54-00-00-02-01.cfg"}
