# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory of the tests of several PXE servers (HA, a shared host database): two subnets,
one profile, two nodes, three servers; the plan of their variables, its problems, and a
server as the renderers take it."""
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import PlanError, build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
SUBNETS = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199"},
           {"cidr": "198.51.100.0/24", "pool": "198.51.100.100-198.51.100.200"}]
PROFILES = {"worker": {"kernel": ASSET, "initrd": ASSET}}
NODES = {"node01": {"groups": ["worker"], "pxe_mac": "52:54:00:00:01:01", "pxe_ip": "192.0.2.11"},
         "node02": {"groups": ["worker"], "pxe_mac": "52:54:00:00:02:01"}}
ADDRESSES = {"pxe01": "192.0.2.2", "pxe02": "192.0.2.3", "pxe03": "192.0.2.4"}
LOADERS = {"bios": "undionly.kpxe", "efi64": "ipxe.efi"}


def plan_of(server_vars):
    return build_plan(SUBNETS, PROFILES, NODES, servers=server_vars)


def problems_of(server_vars):
    with pytest.raises(PlanError) as info:
        plan_of(server_vars)
    return [str(p) for p in info.value.problems]


def server(name):
    address = ADDRESSES[name]
    return {"name": name, "address": address, "http_base": "http://%s" % address, "loaders": LOADERS}
