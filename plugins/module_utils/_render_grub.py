# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The GRUB configurations of the grub loader chain (pxe_loader: grub; docs/secure-boot.md),
from the same boot plan and the same kernel command line as the iPXE scripts
(_render_ipxe.kernel_cmdline). Runs on the controller and on the PXE host (the
node_scripts module): standard library only.

The chain: the firmware loads shim (Microsoft-signed) over TFTP or HTTP, shim loads
Debian's signed netboot GRUB beside it (grubx64.efi), and GRUB, whose prefix is /grub on
the TFTP server, sources /grub/grub.cfg. Debian's signed netboot GRUB has no HTTP module
(and under Secure Boot loads no module that is not built in), so everything GRUB reads
comes over TFTP, relative to the TFTP root:

    grub/grub.cfg               entry: the config of the MAC that booted, else the menu
    grub/lifecycle/<mac>.cfg    the lifecycle service's file for an install node (its
                                boot directory, mounted there for tftpd: the install
                                config with the node's token, or the local-boot one)
    grub/nodes/<mac>.cfg        one per MAC of every node of the grub chain
    grub/menu.cfg               the profiles menu (unknown machines, pxe_boot: menu)
    profiles/<p>/vmlinuz|initrd the profile assets (hard links to the HTTP tree's)
    profiles/<p>/arm64/...      the profile's arm64 assets, when it has some: the configs pick
                                the assets by $grub_cpu
    debian-installer/arm64/grub/grub.cfg  the prefix of the arm64 GRUB (GRUB_PREFIX): it
                                sources grub/grub.cfg (centra.pxe.pxe_tftp writes it)

The Secure Boot HTTP boot image (pxe_server_secure_boot_http_image, GRUB_HTTP_IMAGE) holds
the same tree (grub/ and profiles/, with shim and GRUB under EFI/BOOT): the firmware makes a
RAM disk of it and GRUB reads the same files from there, with no network. GRUB then has no
network interface, so the entry config names one on each card to learn the MAC (IMAGE_CARDS).
In the image the node configs have 8.3 names, grub/n/<first 3 octets>/<last 3 octets>.cfg
(IMAGE_NODE_RENAME): mtools gives a long name that starts like hundreds of others a short
name by trying ~1, ~2, ... against the whole directory, and 1,000 MACs of one vendor took
38 s (2,000: 6 minutes).

For the node lifecycle, lifecycle_configs() renders the two variants per MAC the service
picks from, install/<mac>.cfg and local/<mac>.cfg, with the same placeholders as the
iPXE variants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import GRUB_REMOVABLE
from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac
from ansible_collections.centra.pxe.plugins.module_utils._plan import ARCHES, profile_assets
from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import (
    CALLBACK_PLACEHOLDER, INSTALL_DIR, IPXE_SETTINGS, LOCAL_DIR, TOKEN_PLACEHOLDER, kernel_cmdline)
from ansible_collections.centra.pxe.plugins.module_utils._render_preseed import installer_args
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings

GRUB_DIR = "grub"
ENTRY_CONFIG = GRUB_DIR + "/grub.cfg"
MENU_CONFIG = GRUB_DIR + "/menu.cfg"
NODE_DIR = GRUB_DIR + "/nodes"
LIFECYCLE_DIR = GRUB_DIR + "/lifecycle"
SUFFIX = ".cfg"
# The firmware's removable-media loader per GRUB cpu: what a disk installed for UEFI boots.
REMOVABLE_LOADERS = {"x86_64": "/" + GRUB_REMOVABLE["efi64"], "arm64": "/" + GRUB_REMOVABLE["arm64"]}
# A plan architecture (pxe_arch, a profile's assets) -> GRUB's $grub_cpu on such a machine.
GRUB_CPU = {"amd64": "x86_64", "arm64": "arm64"}
# The cards GRUB's efinet driver names (efinet0, efinet1, ...) that the entry config tries
# when it was booted from the Secure Boot HTTP boot image: the first with a node config wins.
IMAGE_CARDS = 8
# Where the image holds grub/nodes/<mac>.cfg (a path under grub/, as a regular expression
# and its replacement for centra.pxe.fat_image): 8.3 names, see the module docstring.
IMAGE_NODE_DIR = GRUB_DIR + "/n"
IMAGE_NODE_RENAME = {"pattern": r"^%s/(..)-(..)-(..)-(..)-(..)-(..)\%s$" % (NODE_DIR[len(GRUB_DIR) + 1:], SUFFIX),
                     "replacement": r"%s/\1\2\3/\4\5\6%s" % (IMAGE_NODE_DIR[len(GRUB_DIR) + 1:], SUFFIX)}
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,:/=+@%-]+$")


def grub_quote(word: str) -> str:
    """One word for GRUB's script parser: as is when plain, else single-quoted (no
    expansion inside; a quote itself is closed, escaped and reopened)."""
    if _SAFE_WORD.match(word):
        return word
    return "'%s'" % word.replace("'", "'\\''")


def _words(text: str) -> str:
    return " ".join(grub_quote(w) for w in text.split())


def _header(plan: Optional[Mapping[str, Any]], what: str) -> List[str]:
    # Node configs carry no plan digest: onboarding one node must not rewrite 10,000 files.
    version = ", plan %s" % plan["digest"][:12] if plan else ""
    return ["# %s. Managed by centra.pxe%s." % (what, version)]


def _boot_lines(profile: Mapping[str, Any], opts: Mapping[str, Any], who: str, extra: Sequence[str] = (),
                indent: str = "") -> List[str]:
    """Boot the profile with the assets of the machine's architecture ($grub_cpu); a machine
    whose architecture the profile has no assets for is told so on its console, then reboots."""
    name = profile["name"]
    args = _words(kernel_cmdline(profile, opts, extra))
    lines = ["echo %s" % grub_quote("centra.pxe: %s boots profile %s" % (who, name))]
    keyword = "if"
    for arch in ARCHES:
        assets = profile_assets(profile, arch)
        if assets is None:
            continue
        lines += [
            '%s [ "$grub_cpu" = %s ]; then' % (keyword, GRUB_CPU[arch]),
            # Under Secure Boot, GRUB has shim verify the kernel: an unsigned or foreign-signed
            # one fails here ("bad shim signature"), before anything runs.
            "  linux /profiles/%s %s" % (assets["kernel"]["filename"], args),
            "  initrd /profiles/%s" % assets["initrd"]["filename"],
            "  boot",
            # Only reached when a load failed: say so on the console, then start over.
            "  echo %s" % grub_quote("centra.pxe: could not boot profile %s; rebooting in %d s"
                                     % (name, int(opts["retry_seconds"]))),
        ]
        keyword = "elif"
    lines += [
        "else",
        "  echo %s" % grub_quote("centra.pxe: profile %s has no kernel for this machine's architecture" % name),
        '  echo "(GRUB cpu $grub_cpu); rebooting in %d s"' % int(opts["retry_seconds"]),
        "fi",
        "sleep --interruptible %d" % int(opts["retry_seconds"]),
        "reboot",
    ]
    return [indent + line for line in lines]


def _local_lines(who: str) -> List[str]:
    """Boot the local disk: chainload its own EFI loader (the shim a Debian install put
    there, else the firmware's removable-media path), and where there is none, exit to the
    firmware, which goes on to its next boot entry."""
    lines = ["echo %s" % grub_quote("centra.pxe: %s boots from local disk" % who)]
    for cpu, removable in sorted(REMOVABLE_LOADERS.items()):
        loader = "/EFI/debian/shim%s.efi" % ("x64" if cpu == "x86_64" else "aa64")
        lines += [
            'if [ "$grub_cpu" = %s ]; then' % cpu,
            "  for centra_loader in %s %s; do" % (loader, removable),
            # Not the HTTP boot image itself (a RAM disk with /EFI/BOOT/BOOTX64.EFI): that
            # would boot the image again, forever.
            "    if search --no-floppy --file --set=centra_disk $centra_loader; then",
            '      if [ "$centra_disk" != "$centra_image_disk" ]; then',
            # With root on the disk: `chainloader ($centra_disk)...` alone started the disk's
            # shim, which then failed ("unknown error") under Secure Boot (measured in the lab).
            "        set root=$centra_disk",
            "        chainloader $centra_loader",
            "        boot",
            "      fi",
            "    fi",
            "  done",
            "fi",
        ]
    lines.append("exit")
    return lines


def entry_config(plan: Mapping[str, Any]) -> str:
    """grub/grub.cfg: GRUB sources it from its prefix; it picks the config of the MAC that
    booted ($net_default_mac: the interface the firmware booted from, on a multi-NIC machine)."""
    lines = _header(plan, "Entry configuration of the grub chain")
    octets = ["centra_m%d" % i for i in range(1, 7)]
    split_mac = ("regexp %s '^(..):(..):(..):(..):(..):(..)$' \"$net_default_mac\""
                 % " ".join("--set=%d:%s" % (i, name) for i, name in enumerate(octets, 1)))
    mac = "-".join("${%s}" % name for name in octets)
    image_node = "/%s/%s/%s%s" % (IMAGE_NODE_DIR, "".join("${%s}" % name for name in octets[:3]),
                                  "".join("${%s}" % name for name in octets[3:]), SUFFIX)
    lines += [
        # Booted from the Secure Boot HTTP boot image, GRUB has no network interface, hence
        # no $net_default_mac: name one (no address, no packet sent) on each card in turn,
        # until one's MAC has a node config. The image's disk is remembered: the local-boot
        # config must not take it for the machine's disk.
        'if [ -z "$net_default_mac" ]; then',
        "  set centra_image_disk=$root",
        # configfile starts a new context: only exported variables reach the node's config.
        "  export centra_image_disk",
        "  for centra_card in %s; do" % " ".join("efinet%d" % i for i in range(IMAGE_CARDS)),
        "    if net_add_addr centra_$centra_card $centra_card 0.0.0.0; then",
        "      set net_default_interface=centra_$centra_card",
        "      " + split_mac,
        "      if [ -e %s ]; then break; fi" % image_node,
        "    fi",
        "  done",
        "  export net_default_interface",
        "fi",
        split_mac,
        'set centra_mac="%s"' % mac,
        # The lifecycle service's file first (an install node: install or local), then the
        # node's own, then the menu. configfile returns only when the file is missing.
        "configfile /%s/${centra_mac}%s" % (LIFECYCLE_DIR, SUFFIX),
        "configfile /%s/${centra_mac}%s" % (NODE_DIR, SUFFIX),
        # The HTTP boot image's copy of it (IMAGE_NODE_RENAME).
        'if [ -n "$centra_image_disk" ]; then configfile %s; fi' % image_node,
        "configfile /%s" % MENU_CONFIG,
    ]
    return "\n".join(lines) + "\n"


def menu_config(plan: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """grub/menu.cfg: the profiles, and the local disk; the same default and timeout as the iPXE menu."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "GRUB", "pxe_ipxe")
    profiles = plan["profiles"]
    default = str(opts["menu_default"])
    if default not in profiles and default not in ("local", "shell"):
        raise ValueError("menu default %r is neither a profile (%s) nor local or shell"
                         % (default, ", ".join(sorted(profiles))))
    lines = _header(plan, "Menu of the grub chain")
    # "shell": no default, no timeout; GRUB's own command line is one key (c) away.
    if default == "shell":
        lines.append("set timeout=-1")
    else:
        lines.append("set timeout=%d" % int(opts["menu_timeout"]))
        lines.append("set default=%s" % ("local" if default == "local" else "profile_" + default))
    for name in sorted(profiles):
        lines.append("menuentry %s --id profile_%s {" % (grub_quote(profiles[name]["label"]), name))
        lines += _boot_lines(profiles[name], opts, "$net_default_mac", indent="  ")
        lines.append("}")
    lines.append("menuentry 'Boot from local disk' --id local {")
    lines += ["  " + line for line in _local_lines("$net_default_mac")]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_header(node: Mapping[str, Any], what: str = "") -> List[str]:
    return _header(None, "Node %s (profile %s, boot %s%s), grub chain" % (node["name"], node["profile"], node["boot"],
                                                                          what))


def node_config(plan: Mapping[str, Any], node: Mapping[str, Any], settings: Mapping[str, Any],
                preseed_base: str = "") -> str:
    """grub/nodes/<mac>.cfg. An install node's is the local-boot one: tftpd finds it only when
    the lifecycle service has no file for the MAC, as with the iPXE scripts."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "GRUB", "pxe_ipxe")
    lines = _node_header(node)
    if node["boot"] in ("local", "install"):
        lines += _local_lines(node["name"])
    elif node["boot"] == "menu":
        lines.append("configfile /%s" % MENU_CONFIG)
    else:
        lines += _boot_lines(plan["profiles"][node["profile"]], opts, node["name"],
                             installer_args(plan, node, preseed_base))
    return "\n".join(lines) + "\n"


def install_config(plan: Mapping[str, Any], node: Mapping[str, Any], settings: Mapping[str, Any],
                   preseed_base: str = "") -> str:
    """The install boot: the profile with the lifecycle arguments (placeholders the service fills in)."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "GRUB", "pxe_ipxe")
    extra = ["centra.node=%s" % node["name"], "centra.callback=%s" % CALLBACK_PLACEHOLDER,
             "centra.token=%s" % TOKEN_PLACEHOLDER] + installer_args(plan, node, preseed_base)
    lines = _node_header(node, ", installing") + _boot_lines(plan["profiles"][node["profile"]], opts, node["name"],
                                                             extra)
    return "\n".join(lines) + "\n"


def local_config(node: Mapping[str, Any]) -> str:
    return "\n".join(_node_header(node, ", installed") + _local_lines(node["name"])) + "\n"


def uses_grub(node: Mapping[str, Any], default_loader: str) -> bool:
    """Whether the node boots the grub chain: its loader, or its architecture (an arm64 node
    boots it whatever its loader: the validation makes sure its server serves arm64)."""
    return (node.get("loader") or default_loader) == "grub" or node.get("arch") == "arm64"


def _per_mac(node: Mapping[str, Any], text: str) -> Dict[str, str]:
    return {"%s%s" % (format_mac(mac, "hyphen"), SUFFIX): text for mac in node["macs"]}


def node_configs(plan: Mapping[str, Any], settings: Mapping[str, Any], default_loader: str,
                 preseed_base: str = "") -> Dict[str, str]:
    """File name (in grub/nodes/) -> config, one per MAC of every node of the grub chain.
    preseed_base: the server's HTTP base, for the preseed URL of installer profiles."""
    out: Dict[str, str] = {}
    for node in plan["nodes"]:
        if uses_grub(node, default_loader):
            out.update(_per_mac(node, node_config(plan, node, settings, preseed_base)))
    return out


def lifecycle_configs(plan: Mapping[str, Any], settings: Mapping[str, Any],
                      default_loader: str, preseed_base: str = "") -> Dict[str, Dict[str, str]]:
    """{"install": {file: config}, "local": {file: config}} of every install node of the grub chain."""
    out: Dict[str, Dict[str, str]] = {INSTALL_DIR: {}, LOCAL_DIR: {}}
    for node in plan["nodes"]:
        if node["boot"] == "install" and uses_grub(node, default_loader):
            out[INSTALL_DIR].update(_per_mac(node, install_config(plan, node, settings, preseed_base)))
            out[LOCAL_DIR].update(_per_mac(node, local_config(node)))
    return out
