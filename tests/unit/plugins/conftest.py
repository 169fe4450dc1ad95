# SPDX-License-Identifier: GPL-3.0-or-later
"""The renderers' settings as the roles resolve them: read from the roles' defaults, the
one place they are written, never re-typed here."""
from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import IPXE_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import ISC_SETTINGS, KEA_SETTINGS

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


@pytest.fixture(name="isc_settings", scope="session")
def fixture_isc_settings() -> dict:
    return settings_from_defaults("pxe_dhcp", ISC_SETTINGS, ("pxe_dhcp_",))


@pytest.fixture(name="ipxe_settings", scope="session")
def fixture_ipxe_settings() -> dict:
    return settings_from_defaults("pxe_ipxe", IPXE_SETTINGS, ("pxe_ipxe_",))
