# SPDX-License-Identifier: GPL-3.0-or-later
"""The renderers know no defaults, so the roles must pass every setting a renderer reads,
each from the role variable of the same name (whose default is in the role's defaults)."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.centra.pxe.plugins.module_utils._render_ipxe import IPXE_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._render_dhcp import ISC_SETTINGS, KEA_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._render_kea6 import KEA6_SETTINGS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# (role, the variable in roles/<role>/vars/main.yml the role hands the renderer, keys, prefixes of the role
# variables that feed them); interfaces is the provisioning interface plus pxe_dhcp_extra_interfaces.
PASSED = [
    ("pxe_dhcp", "_pxe_dhcp_kea_settings", KEA_SETTINGS, ("pxe_dhcp_kea_", "pxe_dhcp_"),
     {"interfaces": "_pxe_dhcp_interfaces"}),
    ("pxe_dhcp", "_pxe_dhcp_isc_settings", ISC_SETTINGS, ("pxe_dhcp_",), {}),
    ("pxe_dhcp", "_pxe_dhcp_kea6_settings", KEA6_SETTINGS, ("pxe_dhcp_kea6_", "pxe_dhcp_kea_", "pxe_dhcp_"),
     {"interfaces": "_pxe_dhcp_interfaces"}),
    ("pxe_ipxe", "_pxe_ipxe_settings", IPXE_SETTINGS, ("pxe_ipxe_",), {}),
]


def _yaml(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("role, name, keys, prefixes, derived", PASSED, ids=[p[1] for p in PASSED])
def test_the_role_passes_every_setting_from_its_own_variable(role, name, keys, prefixes, derived):
    passed = _yaml("roles", role, "vars", "main.yml").get(name)
    assert isinstance(passed, dict), "roles/%s/vars/main.yml has no %s mapping" % (role, name)
    assert sorted(passed) == sorted(keys), "%s passes %s; the renderer reads %s" % (name, sorted(passed), sorted(keys))
    defaults = _yaml("roles", role, "defaults", "main.yml")
    for key in keys:
        variables = re.findall(r"\b[a-z0-9_]+\b", str(passed[key]).replace("{{", "").replace("}}", ""))
        expected = derived.get(key) or next((p + key for p in prefixes if p + key in defaults), None)
        assert expected, "no role default for setting %s (looked for %s)" % (key, [p + key for p in prefixes])
        assert expected in variables, "%s.%s is %r, not from %s" % (name, key, passed[key], expected)
