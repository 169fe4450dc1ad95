# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP boot tree from the boot plan: boot.ipxe, the menu, one script per MAC,
and /healthz. Runs on the controller (filters) and on the PXE host (the
node_scripts module), so it needs nothing beyond the standard library. The scripts
take resolved settings (IPXE_SETTINGS) and know no defaults: a setting left out is
an error.

Layout under the HTTP root:
    boot.ipxe               entry: chains nodes/${mac:hexhyp}.ipxe
    menu.ipxe               profiles menu; nginx serves it for any unknown nodes/ path
    nodes/<mac>.ipxe        one per MAC of every node (for an install node: the
                            local-boot script, served only when the lifecycle
                            service has no file of its own for the MAC)
    profiles/<p>/vmlinuz|initrd
    loaders/                the EFI loaders, for UEFI HTTP boot
    healthz                 JSON: status, config version, asset checksums

For the node lifecycle (pxe_boot: install), lifecycle_scripts() renders two variants per
MAC, which the lifecycle service picks from: install/<mac>.ipxe (the profile, with
centra.node=, and the placeholders @CENTRA_CALLBACK@ and @CENTRA_TOKEN@ the service
fills in) and local/<mac>.ipxe (boot the local disk).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac
from ansible_collections.centra.pxe.plugins.module_utils._render_preseed import installer_args
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings

NODE_DIR = "nodes"
INSTALL_DIR = "install"
LOCAL_DIR = "local"
# Filled in by the lifecycle service when it serves an install script.
CALLBACK_PLACEHOLDER = "@CENTRA_CALLBACK@"
TOKEN_PLACEHOLDER = "@CENTRA_TOKEN@"
MENU_SCRIPT = "menu.ipxe"
ENTRY_SCRIPT = "boot.ipxe"
# The settings the scripts read; the pxe_ipxe role passes all of them from its variables
# (its defaults are the one place their defaults are written):
#   menu_timeout (seconds), menu_default (a profile name, "local" or "shell"),
#   console (list; the last one is /dev/console), retry_seconds, title.
IPXE_SETTINGS = ("menu_timeout", "menu_default", "console", "retry_seconds", "title")


def _header(plan: Optional[Mapping[str, Any]], base: str, what: str) -> List[str]:
    # Node scripts carry no plan digest: onboarding one node must not rewrite 10,000 files.
    version = ", plan %s" % plan["digest"][:12] if plan else ""
    # An empty base (a dual-stack server: docs/ipv6.md): the URLs below are host-relative,
    # and iPXE resolves them against the URL this script came from, IPv4 or IPv6 alike.
    base_line = "set centra-base %s" % base.rstrip("/") if base else "clear centra-base"
    return [
        "#!ipxe",
        "# %s. Managed by centra.pxe%s." % (what, version),
        base_line,
    ]


def kernel_cmdline(profile: Mapping[str, Any], opts: Mapping[str, Any], extra: Sequence[str] = ()) -> str:
    """The kernel command line of a profile boot, whichever loader chain boots it (iPXE or
    GRUB: _render_grub.py): the profile's line (with centra.profile=), the lifecycle
    arguments of an install boot, the consoles."""
    words = [profile["cmdline"]] + list(extra)
    words.extend("console=%s" % c for c in opts["console"])
    return " ".join(w for w in words if w)


def _kernel_args(profile: Mapping[str, Any], opts: Mapping[str, Any], extra: Sequence[str] = ()) -> str:
    # initrd=<name>: Debian's 2019 iPXE under EFI does not pass the initrd without it.
    return "initrd=initrd " + kernel_cmdline(profile, opts, extra)


def _boot_lines(profile: Mapping[str, Any], opts: Mapping[str, Any], label: str, who: str,
                extra: Sequence[str] = ()) -> List[str]:
    name = profile["name"]
    return [
        ":%s" % label,
        "imgfree",
        "echo centra.pxe: %s boots profile %s" % (who, name),
        "kernel ${centra-base}/profiles/%s/vmlinuz %s || goto %s_failed" % (name, _kernel_args(profile, opts, extra),
                                                                            label),
        "initrd ${centra-base}/profiles/%s/initrd || goto %s_failed" % (name, label),
        "boot || goto %s_failed" % label,
        ":%s_failed" % label,
        "echo centra.pxe: could not load profile %s from ${centra-base} (${errno}); retrying in %d s"
        % (name, int(opts["retry_seconds"])),
        "prompt --timeout %d Press any key to retry now ||" % (int(opts["retry_seconds"]) * 1000),
        "goto %s" % label,
    ]


def entry_script(plan: Mapping[str, Any], http_base: str, settings: Mapping[str, Any]) -> str:
    """boot.ipxe: every iPXE client lands here (the DHCP answer for user class iPXE)."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "iPXE", "pxe_ipxe")
    lines = _header(plan, http_base, "Entry script")
    lines += [
        # ${mac} is the interface that booted (not ${net0/mac}): multi-NIC machines.
        # nginx answers an unknown MAC with the menu, so a failure here is a real
        # failure and is retried, never mistaken for "unknown node".
        ":start",
        "chain --autofree ${centra-base}/%s/${mac:hexhyp}.ipxe || goto failed" % NODE_DIR,
        # The chained script returns only to boot from local disk: hand back to the
        # firmware with a failure status. A UEFI boot manager shows its menu when a boot
        # option succeeds and goes on to the next one (the disk) only when it fails;
        # SeaBIOS goes on either way (measured in the lab: tests/lab/README.md).
        "exit 1",
        ":failed",
        "echo centra.pxe: could not fetch the boot script for ${mac} from ${centra-base} (${errno})",
        "echo centra.pxe: retrying in %d s (press a key to retry now)" % int(opts["retry_seconds"]),
        "prompt --timeout %d ||" % (int(opts["retry_seconds"]) * 1000),
        "goto start",
    ]
    return "\n".join(lines) + "\n"


def menu_script(plan: Mapping[str, Any], http_base: str, settings: Mapping[str, Any]) -> str:
    """The menu for machines not in the inventory (and nodes with pxe_boot: menu)."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "iPXE", "pxe_ipxe")
    profiles = plan["profiles"]
    default = str(opts["menu_default"])
    if default not in profiles and default not in ("local", "shell"):
        raise ValueError("menu default %r is neither a profile (%s) nor local or shell"
                         % (default, ", ".join(sorted(profiles))))
    lines = _header(plan, http_base, "Menu")
    lines += [
        ":menu",
        "menu %s (${mac})" % opts["title"],
        "item --gap Profiles",
    ]
    for name in sorted(profiles):
        lines.append("item profile_%s %s" % (name, profiles[name]["label"]))
    lines += [
        "item --gap Other",
        "item local Boot from local disk",
        "item shell iPXE shell",
        "choose --timeout %d --default %s target || goto menu_cancelled"
        % (int(opts["menu_timeout"]) * 1000, default if default in ("local", "shell") else "profile_" + default),
        "goto ${target}",
        ":menu_cancelled",
        "echo centra.pxe: menu cancelled",
        "goto shell",
        ":local",
        "echo centra.pxe: booting from local disk",
        "exit",
        ":shell",
        "echo centra.pxe: type 'exit' to return to the menu",
        "shell",
        "goto menu",
    ]
    for name in sorted(profiles):
        lines += _boot_lines(profiles[name], opts, "profile_" + name, "${mac}")
    return "\n".join(lines) + "\n"


def _local_lines(node: Mapping[str, Any]) -> List[str]:
    # BIOS: sanboot the first disk (some BIOSes do not go on to the next boot device when
    # the PXE ROM returns); if that fails, and on UEFI, return to the firmware, which
    # boots its next entry (the entry script exits with a failure status for that).
    return [
        "echo centra.pxe: %s boots from local disk" % node["name"],
        "iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||",
        "exit",
    ]


def _node_header(node: Mapping[str, Any], http_base: str, what: str = "") -> List[str]:
    return _header(None, http_base, "Node %s (profile %s, boot %s%s)" % (node["name"], node["profile"], node["boot"], what))


def node_script(plan: Mapping[str, Any], node: Mapping[str, Any], http_base: str,
                settings: Mapping[str, Any], preseed_base: str = "") -> str:
    """nodes/<mac>.ipxe. An install node's is the local-boot script: nginx serves it only when
    the lifecycle service has no file for the MAC, and then a node boots its disk rather
    than installing again."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "iPXE", "pxe_ipxe")
    lines = _node_header(node, http_base)
    if node["boot"] in ("local", "install"):
        lines += _local_lines(node)
    elif node["boot"] == "menu":
        lines += ["chain --autofree ${centra-base}/%s" % MENU_SCRIPT]
    else:
        lines += _boot_lines(plan["profiles"][node["profile"]], opts, "netboot", node["name"],
                             installer_args(plan, node, preseed_base or http_base))
    return "\n".join(lines) + "\n"


def install_script(plan: Mapping[str, Any], node: Mapping[str, Any], http_base: str,
                   settings: Mapping[str, Any], preseed_base: str = "") -> str:
    """The install boot of a node: its profile, with the lifecycle arguments the installer
    reports with (the service fills in the callback URL and the token)."""
    opts = resolved_settings(settings, IPXE_SETTINGS, "iPXE", "pxe_ipxe")
    extra = ["centra.node=%s" % node["name"], "centra.callback=%s" % CALLBACK_PLACEHOLDER,
             "centra.token=%s" % TOKEN_PLACEHOLDER] + installer_args(plan, node, preseed_base or http_base)
    lines = _node_header(node, http_base, ", installing")
    lines += _boot_lines(plan["profiles"][node["profile"]], opts, "install", node["name"], extra)
    return "\n".join(lines) + "\n"


def local_script(node: Mapping[str, Any], http_base: str) -> str:
    """The local-boot script of an install node once its installer reported installed."""
    return "\n".join(_node_header(node, http_base, ", installed") + _local_lines(node)) + "\n"


def _per_mac(node: Mapping[str, Any], text: str) -> Dict[str, str]:
    return {"%s.ipxe" % format_mac(mac, "hyphen"): text for mac in node["macs"]}


def node_scripts(plan: Mapping[str, Any], http_base: str,
                 settings: Mapping[str, Any], preseed_base: str = "") -> Dict[str, str]:
    """File name (relative to the nodes/ directory) -> script, one per MAC. preseed_base: the
    server's HTTP base for the preseed URL of installer profiles (default: http_base)."""
    out: Dict[str, str] = {}
    for node in plan["nodes"]:
        out.update(_per_mac(node, node_script(plan, node, http_base, settings, preseed_base)))
    return out


def lifecycle_scripts(plan: Mapping[str, Any], http_base: str,
                      settings: Mapping[str, Any], preseed_base: str = "") -> Dict[str, Dict[str, str]]:
    """{"install": {file: script}, "local": {file: script}}: the two variants per MAC of every
    install node, which the lifecycle service picks from by the node's state."""
    out: Dict[str, Dict[str, str]] = {INSTALL_DIR: {}, LOCAL_DIR: {}}
    for node in plan["nodes"]:
        if node["boot"] == "install":
            out[INSTALL_DIR].update(_per_mac(node, install_script(plan, node, http_base, settings, preseed_base)))
            out[LOCAL_DIR].update(_per_mac(node, local_script(node, http_base)))
    return out


def healthz(plan: Mapping[str, Any]) -> str:
    """/healthz: what this server believes it serves, for monitoring and for tests."""
    assets, installer_assets = {}, {}
    for profile in plan["profiles"].values():
        for kind in ("kernel", "initrd"):
            asset = profile[kind]
            if asset["source"] == "package":  # no checksum on the controller: its package's
                installer_assets[asset["filename"]] = asset["package"]
            else:
                assets[asset["filename"]] = asset["checksum"]
    body = {
        "status": "ok",
        "config_version": plan["digest"],
        "profiles": sorted(plan["profiles"]),
        "nodes": len(plan["nodes"]),
        "assets": assets,
    }
    if installer_assets:  # only when there: the /healthz of other plans stays as it was
        body["installer_assets"] = installer_assets
    return json.dumps(body, sort_keys=True, indent=1) + "\n"
