# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian installer as a profile (docs/debian-installer.md): where its kernel and
initrd come from, the installer's arguments on a node's kernel command line, and the
node's preseed, served as preseed/<mac>.cfg.

The preseed holds no secret: its early_command and late_command read centra.callback=
and centra.token= from /proc/cmdline of the install boot (docs/lifecycle.md) and report
started and installed. The `wget` of d-i's initrd is GNU Wget (/usr/bin/wget, checked in
Debian 12's; BusyBox's applet has no --header): a POST with the Bearer header.

Runs on the controller (validation) and on the PXE host (the node_scripts module):
standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.centra.pxe.plugins.module_utils._mac import format_mac

PRESEED_DIR = "preseed"
# installer type -> architecture -> the package on the PXE server and the files in it.
# arm64 is the same package layout with arm64 in the names: one entry more.
_DI_IMAGES = "usr/lib/debian-installer/images/12/%s/text/debian-installer/%s/"
INSTALLERS: Dict[str, Dict[str, Dict[str, str]]] = {
    "debian": {
        arch: {"package": "debian-installer-12-netboot-%s" % arch,
               "kernel": _DI_IMAGES % (arch, arch) + "linux",
               "initrd": _DI_IMAGES % (arch, arch) + "initrd.gz"}
        for arch in ("amd64",)
    },
}
# The collection's own: the lifecycle reports and the host name from the inventory.
RESERVED_QUESTIONS = ("preseed/early_command", "preseed/late_command", "netcfg/hostname", "netcfg/get_hostname")


def installer_assets(profile: str, installer: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The kernel and initrd ASSETs of an installer profile: from the package, on the PXE
    server (no checksum known on the controller: the package's own signature vouches)."""
    source = INSTALLERS[installer["type"]][installer["arch"]]
    return tuple(  # type: ignore[return-value]
        {"source": "package", "src": None, "url": None, "checksum": None,
         "package": source["package"], "path": source[kind],
         "filename": "%s/%s" % (profile, "vmlinuz" if kind == "kernel" else "initrd")}
        for kind in ("kernel", "initrd"))


def preseed_problem(line: Any) -> Optional[str]:
    """Why an operator's preseed line is refused, or None."""
    if not isinstance(line, str) or any(c in line for c in "\n\r"):
        return "must be one line of text, got %r" % (line,)
    words = line.split()
    if len(words) < 3 or words[0].startswith("#"):
        return "%r is not a preseed line 'owner question type [value]' (such as 'd-i mirror/country string manual')" % line
    if words[1] in RESERVED_QUESTIONS:
        return ("%s is set by the collection (the lifecycle reports, and the host name from the inventory); "
                "run your own commands with preseed/include_command or pkgsel" % words[1])
    return None


def _key(line: str) -> Tuple[str, str]:
    words = line.split()
    return words[0], words[1]


def report_command(event: str) -> str:
    """A shell line reporting an event to the lifecycle callback with the token of the boot,
    retried (1, 2, 4, 8, 16 s); it does nothing, successfully, on a boot without centra.callback=."""
    return ("c=$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^centra\\.callback=//p'); "
            "t=$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^centra\\.token=//p'); "
            "[ -z \"$c\" ] || { r=1; for s in 1 2 4 8 16 0; do wget -q -T 30 -O /dev/null "
            "--header=\"Authorization: Bearer $t\" --header='Content-Type: application/json' "
            "--post-data='{\"event\":\"%s\"}' \"$c\" && { r=0; break; }; sleep $s; done; [ $r = 0 ]; }" % event)


def preseed(plan: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    """preseed/<mac>.cfg of a node of an installer profile: the collection's lines, then the
    profile's installer.preseed and the node's pxe_preseed; a later line for the same
    owner and question replaces an earlier one."""
    profile = plan["profiles"][node["profile"]]
    own = [
        "d-i debian-installer/locale string en_US.UTF-8",
        "d-i keyboard-configuration/xkb-keymap select us",
        "d-i netcfg/choose_interface select auto",
        "d-i netcfg/get_hostname string %s" % node["name"],
        "d-i netcfg/hostname string %s" % node["name"],
        # started does not stop the installation when it cannot be reported; installed does
        # (d-i shows the failure): a lost installed would reinstall the node at its next boot.
        "d-i preseed/early_command string %s; true" % report_command("started"),
        "d-i preseed/late_command string %s" % report_command("installed"),
    ]
    merged: Dict[Tuple[str, str], str] = {}
    for line in own + list(profile["installer"].get("preseed", ())) + list(node.get("preseed", ())):
        merged.pop(_key(line), None)  # the later line takes the place at the end
        merged[_key(line)] = line
    head = ["# Preseed of node %s (profile %s). Managed by centra.pxe." % (node["name"], node["profile"])]
    return "\n".join(head + list(merged.values())) + "\n"


def preseed_url(node: Mapping[str, Any], base: str) -> str:
    return "%s/%s/%s.cfg" % (base.rstrip("/"), PRESEED_DIR, format_mac(node["macs"][0], "hyphen"))


def installer_args(plan: Mapping[str, Any], node: Mapping[str, Any], base: str) -> List[str]:
    """The installer's words on the kernel command line of a node's profile boot: unattended
    (auto, priority=critical: d-i configures the network by DHCP, then fetches the preseed),
    the host name from the inventory. None for a profile without an installer."""
    if "installer" not in plan["profiles"][node["profile"]]:
        return []
    if not base:
        raise ValueError("node %s: the preseed URL needs the server's HTTP base (preseed_base)" % node["name"])
    # Every MAC of the node has the same preseed: the URL names the first.
    # "---" last: d-i copies only the words after it (the consoles) to the installed system's
    # boot loader; without it, every word it does not know, the token too.
    return ["auto=true", "priority=critical", "url=%s" % preseed_url(node, base), "interface=auto",
            "hostname=%s" % node["name"], "netcfg/hostname=%s" % node["name"], "---"]


def preseeds(plan: Mapping[str, Any]) -> Dict[str, str]:
    """File name (relative to the preseed/ directory) -> preseed, one per MAC of every node of
    an installer profile."""
    out: Dict[str, str] = {}
    for node in plan["nodes"]:
        if node["boot"] != "local" and "installer" in plan["profiles"][node["profile"]]:
            text = preseed(plan, node)
            out.update({"%s.cfg" % format_mac(mac, "hyphen"): text for mac in node["macs"]})
    return out
