# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's wire format: one JSON string, checked for schema and digest on the way back."""
from __future__ import annotations

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._plan import BOOT_MODES, PLAN_SCHEMA, dump_plan, load_plan, plan_digest
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}


@pytest.fixture(name="plan")
def fixture_plan():
    return build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                      {"a": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:0a", "pxe_boot": "menu"}})


def test_the_plan_travels_as_one_json_string_and_comes_back_checked(plan):
    text = dump_plan(plan)
    assert isinstance(text, str) and load_plan(text) == plan and load_plan(plan) == plan
    assert load_plan(text.encode()) == plan
    assert plan["schema"] == PLAN_SCHEMA and plan["digest"] == plan_digest(plan)
    tampered = text.replace("52:54:00:00:00:0a", "52:54:00:00:00:0b")
    with pytest.raises(ValueError, match="does not match its digest"):
        load_plan(tampered)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_plan("{nope")
    with pytest.raises(ValueError, match="not a boot plan"):
        load_plan({"schema": 99})
    with pytest.raises(ValueError, match="must be the JSON string"):
        load_plan(42)


def test_the_boot_modes_are_what_the_plan_accepts(plan):
    assert plan["nodes"][0]["boot"] in BOOT_MODES
    for mode in BOOT_MODES:
        build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                   {"a": {"groups": ["worker"], "pxe_mac": "52:54:00:00:00:0a", "pxe_boot": mode}})
