# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot plan as data: its schema and its wire format, what the PXE host needs.

The plan is built and validated on the controller (plugin_utils/_plan_build.py, behind
the centra.pxe.boot_plan action). It is plain JSON data and travels through Ansible as
ONE JSON string (the fact centra_pxe_plan): Ansible pays per object for every task
result and every templating of a nested structure, which for 10,000 nodes costs seconds
per use; a single string costs next to nothing. load_plan() turns it back into this:

    {"schema": 1, "digest": "<sha256 of the rest>",
     "subnets": [{"id", "cidr", "network", "prefix", "netmask", "broadcast",
                  "pool": {"start", "end"} | None, "gateway", "dns": [...], "options"?: OPTIONS}],
     "profiles": {name: {"name", "label", "cmdline", "services": [...],
                         "kernel": ASSET, "initrd": ASSET, "arm64"?: {"kernel": ASSET, "initrd": ASSET},
                         "installer"?: {"type": "debian", "arch", "preseed": [lines]}}},
     "nodes": [{"name", "profile", "macs": [canonical...], "ip", "subnet_id", "boot", "options"?: OPTIONS,
                "loader"?: "ipxe"|"grub", "arch"?: "amd64"|"arm64", "preseed"?: [lines]}],
     "ha": [{"backend": "kea"|"isc", "mode": "hot-standby"|"load-balancing", "port",
             "peers": [{"name", "role", "address"}], <the backend's timing settings>}]}
    ASSET = {"source": "src"|"url", "src", "url", "checksum": "sha256:<hex>", "filename"}, or for an
            installer profile {"source": "package", "package", "path" (in the package), "checksum": None,
            "filename"}: the file comes from the installer's package on the PXE server
            (_render_preseed.py; "installer" and a node's "preseed" are there only when set).
    OPTIONS = [{"code", "name" | None, "type", "value"}] sorted by code: DHCPv4 options,
              checked (plugin_utils/_dhcp_options.py); a node's already merge its groups'
              and its own. "options" is there only when not empty.
    "loader": the node's pxe_loader (its own or its groups'), only when set: a node
              without one follows the default loader of the server that answers it.
    "arm64" (profile): the assets an arm64 machine boots (filenames <profile>/arm64/vmlinuz
              and .../initrd); kernel and initrd are the amd64 ones. Only when set.
    "arch" (node): the node's pxe_arch, only when set (unset: amd64).
    "installer" (profile): the profile's installer (installer: debian), only when set; its
              kernel and initrd are the package ASSETs above. An installer profile carries no
              "arm64" (refused: the installer is wired for amd64 only).
    "preseed" (node): the node's pxe_preseed lines, only when set (an installer profile's
              nodes only; served in preseed/<mac>.cfg).

IPv6 (plugin_utils/_plan6.py; each key only when the inventory sets it, so an IPv4-only
plan is unchanged): "subnets6": [{"id", "cidr", "network", "prefix", "pool", "dns"}], and on
a node "ip6", "subnet6_id" (pxe_ip6) and "duids" (pxe_duid, canonical).

"ha" lists the high-availability relationships (usually one pair) of the PXE servers
that set pxe_dhcp_ha; each server renders its side of the one it belongs to.

"host_databases" (only when a Kea server reads another's PostgreSQL host database,
pxe_dhcp_kea_host_database_server; plugin_utils/_shared_host_db.py):
[{"server": the server whose PostgreSQL holds the reservations, "address": its ansible_host,
  "clients": [{"name", "address"}]: the servers that read it over the network}].

Modules ship this file to the PXE host (node_scripts): standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Dict, Optional

PLAN_SCHEMA = 1
# What a node boots (pxe_boot): its profile's installer, its local disk, or the menu.
# install: boot the profile until its installer reports "installed", then the local disk
# (the lifecycle service decides); netboot: the profile on every boot (diskless);
# local: the local disk; menu: the menu.
BOOT_MODES = ("install", "netboot", "local", "menu")
# A node's architecture (pxe_arch; unset means amd64), and the architectures a profile can
# carry assets for beside its amd64 kernel and initrd (a profile key each).
ARCHES = ("amd64", "arm64")
DEFAULT_ARCH = "amd64"
EXTRA_ARCHES = ("arm64",)


def profile_assets(profile: Mapping[str, Any], arch: str) -> Optional[Mapping[str, Any]]:
    """{"kernel", "initrd"} of a profile for an architecture, None when it has none."""
    if arch == DEFAULT_ARCH:
        return {"kernel": profile["kernel"], "initrd": profile["initrd"]}
    return profile.get(arch)


def dump_plan(plan: Mapping[str, Any]) -> str:
    """The plan as the one JSON string that travels through Ansible."""
    return json.dumps(plan, sort_keys=True, separators=(",", ":"))


def load_plan(value: Any) -> Dict[str, Any]:
    """The plan from its JSON string (or an already decoded mapping), checked for schema and digest."""
    if isinstance(value, (str, bytes)):
        try:
            plan = json.loads(value)
        except ValueError as exc:
            raise ValueError("the boot plan is not valid JSON (%s): build it with centra.pxe.boot_plan" % exc) from None
    elif isinstance(value, Mapping):
        plan = dict(value)
    else:
        raise ValueError("the boot plan must be the JSON string centra.pxe.boot_plan returns, got %s"
                         % type(value).__name__)
    if plan.get("schema") != PLAN_SCHEMA or not all(k in plan for k in ("subnets", "profiles", "nodes", "digest")):
        raise ValueError("this is not a boot plan of schema %d: build it with centra.pxe.boot_plan" % PLAN_SCHEMA)
    if not _dumped_digest_matches(value, plan["digest"]) and plan_digest(plan) != plan["digest"]:
        raise ValueError("the boot plan does not match its digest: it was edited after centra.pxe.boot_plan built it")
    return plan


def _dumped_digest_matches(value: Any, digest: Any) -> bool:
    """Whether a plan string as dump_plan() wrote it hashes to its digest, without re-encoding it.

    dump_plan() sorts the keys, so the string is '{"digest":"<hex>",' followed by the rest
    exactly as plan_digest() encodes it after its "{". Hashing that text skips encoding
    the whole plan again (most of load_plan's time for 10,000 nodes). Any other string,
    or a mismatch, is left to the full check.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(value, str) or not isinstance(digest, str):
        return False
    prefix = '{"digest":"%s",' % digest
    if not value.startswith(prefix):
        return False
    return hashlib.sha256(("{" + value[len(prefix):]).encode()).hexdigest() == digest


def plan_digest(plan: Mapping[str, Any]) -> str:
    body = {k: v for k, v in plan.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
