# SPDX-License-Identifier: GPL-3.0-or-later
"""Each default is written once: every role's meta/argument_specs.yml agrees with its
defaults/main.yml, and the loader slots of pxe_server's spec are the boot policy's."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from ansible_collections.centra.pxe.plugins.module_utils._boot_policy import BOOT_RULES, GRUB_SLOTS, LOADER_SLOTS
from ansible_collections.centra.pxe.plugins.plugin_utils._ha import HA_SETTINGS
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import ROLE_VAR_PREFIXES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isfile(os.path.join(ROOT, "roles", r, "meta", "argument_specs.yml")))
# The inventory contract's variables (no role prefix) belong to the entry role.
CONTRACT_OWNER = "pxe_server"


def _load(*parts: str):
    path = os.path.join(ROOT, *parts)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def defaults_of(role: str) -> dict:
    return _load("roles", role, "defaults", "main.yml") or {}


def specs_of(role: str) -> dict:
    return _load("roles", role, "meta", "argument_specs.yml")["argument_specs"]


def owner_of(variable: str) -> str:
    """The role whose defaults/main.yml holds a variable: pxe_dhcp_backend -> pxe_dhcp."""
    owners = [r for r in ROLES if variable.startswith(r + "_")]
    return max(owners, key=len) if owners else CONTRACT_OWNER


def test_there_are_roles_to_check():
    assert {"pxe_server", "pxe_dhcp", "pxe_ipxe"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_spec_default_is_the_value_in_defaults(role):
    wrong = []
    for entry, spec in specs_of(role).items():
        for name, option in (spec.get("options") or {}).items():
            if "default" not in option:
                continue
            owner = owner_of(name)
            owner_defaults = defaults_of(owner)
            if name not in owner_defaults:
                wrong.append("%s %s: default %r in the spec, none in roles/%s/defaults/main.yml"
                             % (entry, name, option["default"], owner))
            elif owner_defaults[name] != option["default"]:
                wrong.append("%s %s: %r in the spec, %r in roles/%s/defaults/main.yml"
                             % (entry, name, option["default"], owner_defaults[name], owner))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_a_documented_option_with_that_default(role):
    options = specs_of(role)["main"].get("options") or {}
    missing = [name for name in defaults_of(role) if "default" not in options.get(name, {})]
    assert not missing, "in roles/%s/defaults/main.yml but not an option with a default of its spec: %s" % (
        role, ", ".join(missing))


@pytest.mark.parametrize("role", ROLES)
def test_suboption_defaults_agree_with_their_option(role):
    wrong = []
    for entry, spec in specs_of(role).items():
        for name, option in (spec.get("options") or {}).items():
            for sub, suboption in (option.get("options") or {}).items():
                if "default" not in suboption:
                    continue
                parent = option.get("default")
                if not isinstance(parent, dict) or parent.get(sub) != suboption["default"]:
                    wrong.append("%s %s.%s: default %r, but %s defaults to %r"
                                 % (entry, name, sub, suboption["default"], name, parent))
    assert not wrong, "\n".join(wrong)


def test_the_loader_slots_are_the_boot_policy_table():
    assert LOADER_SLOTS == tuple(dict.fromkeys(rule.loader_slot for rule in BOOT_RULES))
    option = specs_of("pxe_server")["main"]["options"]["pxe_server_loaders"]
    assert tuple(option["options"]) == LOADER_SLOTS, "the spec's slots are not the boot policy's"
    assert tuple(option["default"]) == LOADER_SLOTS
    assert tuple(defaults_of("pxe_server")["pxe_server_loaders"]) == LOADER_SLOTS


def test_the_shim_slots_are_the_boot_policy_table():
    option = specs_of("pxe_server")["main"]["options"]["pxe_server_shim_loaders"]
    assert tuple(option["options"]) == tuple(option["default"]) == GRUB_SLOTS
    assert tuple(defaults_of("pxe_server")["pxe_server_shim_loaders"]) == GRUB_SLOTS
    for slot, sub in option["options"].items():
        codes = {c for rule in BOOT_RULES if rule.grub_slot == slot for c in rule.arch_codes if c is not None}
        text = re.sub(r"option[ -]93", "", " ".join(sub["description"]) if isinstance(sub["description"], list)
                      else sub["description"])
        assert {int(n) for n in re.findall(r"(?<![\w-])\d+(?![\w-])", text)} == codes, slot


def test_each_slot_documents_the_option_93_codes_the_table_gives_it():
    options = specs_of("pxe_server")["main"]["options"]["pxe_server_loaders"]["options"]
    for slot in LOADER_SLOTS:
        codes = {c for rule in BOOT_RULES if rule.loader_slot == slot for c in rule.arch_codes if c is not None}
        text = re.sub(r"option[ -]93", "", options[slot]["description"])
        described = {int(n) for n in re.findall(r"(?<![\w-])\d+(?![\w-])", text)}
        assert described == codes, "%s: the description names option-93 codes %s, the table %s" % (
            slot, sorted(described), sorted(codes))


def test_ha_settings_are_documented_without_repeating_their_defaults():
    """HA defaults live in plugin_utils/_ha.py (HA_SETTINGS); the spec names every field, no value."""
    option = specs_of("pxe_dhcp")["main"]["options"]["pxe_dhcp_ha"]
    fields = set(option["options"])
    assert fields == {"mode", "peers"} | {k for settings in HA_SETTINGS.values() for k in settings}
    for name, sub in option["options"].items():
        assert "default" not in sub, "pxe_dhcp_ha.%s: a default in the spec" % name
        if name in ("mode", "peers"):
            continue  # no value to repeat: mode is required, peers default to a rule
        text = " ".join(sub["description"]) if isinstance(sub["description"], list) else sub["description"]
        assert not re.search(r"\bdefault\b", text, re.I), "pxe_dhcp_ha.%s: %s" % (name, text)


def test_the_inventory_check_knows_every_roles_variables():
    """A role variable set on a group of nodes (all, a profile group) passes the plan's
    group check: its prefix is one of ROLE_VAR_PREFIXES, for every option of every role."""
    for role in ROLES:
        for entry in specs_of(role).values():
            for option in entry.get("options") or {}:
                if option.startswith(role + "_"):
                    assert option.startswith(ROLE_VAR_PREFIXES), (role, option)
