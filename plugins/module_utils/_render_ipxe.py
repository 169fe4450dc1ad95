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
    nodes/<mac>.ipxe        one per MAC of every node
    profiles/<p>/vmlinuz|initrd
    loaders/                the EFI loaders, for UEFI HTTP boot
    healthz                 JSON: status, config version, asset checksums
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Dict, List, Optional

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac
from ansible_collections.centra.pxe.plugins.module_utils._settings import resolved_settings

NODE_DIR = "nodes"
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
    return [
        "#!ipxe",
        "# %s. Managed by centra.pxe%s." % (what, version),
        "set centra-base %s" % base.rstrip("/"),
    ]


def _kernel_args(profile: Mapping[str, Any], opts: Mapping[str, Any]) -> str:
    # initrd=<name>: Debian's 2019 iPXE under EFI does not pass the initrd without it.
    words = ["initrd=initrd", profile["cmdline"]]
    words.extend("console=%s" % c for c in opts["console"])
    return " ".join(w for w in words if w)


def _boot_lines(profile: Mapping[str, Any], opts: Mapping[str, Any], label: str, who: str) -> List[str]:
    name = profile["name"]
    return [
        ":%s" % label,
        "imgfree",
        "echo centra.pxe: %s boots profile %s" % (who, name),
        "kernel ${centra-base}/profiles/%s/vmlinuz %s || goto %s_failed" % (name, _kernel_args(profile, opts), label),
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
        # The chained script returns only to boot from local disk: hand back to the firmware.
        "exit",
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


def node_script(plan: Mapping[str, Any], node: Mapping[str, Any], http_base: str,
                settings: Mapping[str, Any]) -> str:
    opts = resolved_settings(settings, IPXE_SETTINGS, "iPXE", "pxe_ipxe")
    lines = _header(None, http_base, "Node %s (profile %s, boot %s)" % (node["name"], node["profile"], node["boot"]))
    if node["boot"] == "local":
        lines += ["echo centra.pxe: %s boots from local disk" % node["name"], "exit"]
    elif node["boot"] == "menu":
        lines += ["chain --autofree ${centra-base}/%s" % MENU_SCRIPT]
    else:
        lines += _boot_lines(plan["profiles"][node["profile"]], opts, "install", node["name"])
    return "\n".join(lines) + "\n"


def node_scripts(plan: Mapping[str, Any], http_base: str,
                 settings: Mapping[str, Any]) -> Dict[str, str]:
    """File name (relative to the nodes/ directory) -> script, one per MAC."""
    out = {}
    for node in plan["nodes"]:
        text = node_script(plan, node, http_base, settings)
        for mac in node["macs"]:
            out["%s.ipxe" % format_mac(mac, "hyphen")] = text
    return out


def healthz(plan: Mapping[str, Any]) -> str:
    """/healthz: what this server believes it serves, for monitoring and for tests."""
    assets = {}
    for profile in plan["profiles"].values():
        for kind in ("kernel", "initrd"):
            asset = profile[kind]
            assets[asset["filename"]] = asset["checksum"]
    body = {
        "status": "ok",
        "config_version": plan["digest"],
        "profiles": sorted(plan["profiles"]),
        "nodes": len(plan["nodes"]),
        "assets": assets,
    }
    return json.dumps(body, sort_keys=True, indent=1) + "\n"
