# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the plugin tests: the renderers' settings as the roles resolve them (read
from the roles' defaults, the one place they are written, never re-typed here) and a sample plan."""
from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import IPXE_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import ISC_SETTINGS, KEA_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import KEA6_SETTINGS

SAMPLE_ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def role_defaults(role: str) -> dict:
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def settings_from_defaults(role: str, keys, prefixes) -> dict:
    """Each setting from the role variable <prefix><key>, the first prefix that has it
    (pxe_dhcp_kea_lease_file, pxe_dhcp_valid_lifetime): the names roles/*/vars/main.yml
    passes (tests/unit/roles/test_renderer_settings.py checks that)."""
    defaults = role_defaults(role)
    out = {}
    for key in keys:
        names = [prefix + key for prefix in prefixes if prefix + key in defaults]
        assert names, "no variable %s in roles/%s/defaults/main.yml" % (" or ".join(p + key for p in prefixes), role)
        out[key] = defaults[names[0]]
    return out


@pytest.fixture(name="kea_settings", scope="session")
def fixture_kea_settings() -> dict:
    # interfaces: the provisioning interface plus pxe_dhcp_extra_interfaces, the role's own sum.
    keys = [k for k in KEA_SETTINGS if k != "interfaces"]
    return dict(settings_from_defaults("pxe_dhcp", keys, ("pxe_dhcp_kea_", "pxe_dhcp_")), interfaces=["eth1"])


@pytest.fixture(name="kea6_settings", scope="session")
def fixture_kea6_settings() -> dict:
    keys = [k for k in KEA6_SETTINGS if k != "interfaces"]
    return dict(settings_from_defaults("pxe_dhcp", keys, ("pxe_dhcp_kea6_", "pxe_dhcp_kea_", "pxe_dhcp_")),
                interfaces=["eth1"])


@pytest.fixture(name="isc_settings", scope="session")
def fixture_isc_settings() -> dict:
    return settings_from_defaults("pxe_dhcp", ISC_SETTINGS, ("pxe_dhcp_",))


@pytest.fixture(name="ipxe_settings", scope="session")
def fixture_ipxe_settings() -> dict:
    return settings_from_defaults("pxe_ipxe", IPXE_SETTINGS, ("pxe_ipxe_",))


@pytest.fixture(name="plan", scope="session")
def fixture_plan() -> dict:
    """A plan with two subnets, two profiles and a node of each kind (install with multi-NIC, netboot without address, local, menu)."""
    subnets = [{"cidr": "192.0.2.0/24", "pool": "192.0.2.100-192.0.2.199", "gateway": "192.0.2.1", "dns": ["192.0.2.1"]},
               {"cidr": "198.51.100.0/24", "pool": "198.51.100.100-198.51.100.200"}]
    profiles = {"worker": {"kernel": SAMPLE_ASSET, "initrd": SAMPLE_ASSET, "cmdline": "panic=-1", "services": ["k8shost"]},
                "control_plane": {"label": "Control plane", "kernel": SAMPLE_ASSET, "initrd": SAMPLE_ASSET}}
    nodes = {
        "node01": {"groups": ["control_plane"], "pxe_mac": "52:54:00:00:01:01", "pxe_ip": "192.0.2.11"},
        "node02": {"groups": ["worker"], "pxe_mac": ["52:54:00:00:02:01", "52:54:00:00:02:02"], "pxe_ip": "198.51.100.12"},
        "node03": {"groups": ["worker"], "pxe_mac": "52:54:00:00:03:01", "pxe_boot": "netboot"},
        "node04": {"groups": ["worker"], "pxe_mac": "52:54:00:00:04:01", "pxe_boot": "local"},
        "node05.rack1.example": {"groups": ["worker"], "pxe_mac": "52:54:00:00:05:01", "pxe_boot": "menu"},
    }
    return build_plan(subnets, profiles, nodes)
