# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's wire format: one JSON string, checked for schema and digest on the way back."""
from __future__ import annotations

import json

import pytest

from ansible_collections.centra.pxe.plugins.module_utils import _plan as _plan_module
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


def test_any_encoding_of_the_plan_is_checked_the_same(plan):
    """A string dump_plan() wrote is checked by hashing its text; any other encoding of the same
    plan by re-encoding it; both refuse an edit."""
    canonical = dump_plan(plan)
    pretty = json.dumps(plan, indent=2)
    assert load_plan(canonical) == load_plan(pretty) == plan
    for text in (canonical, pretty):
        with pytest.raises(ValueError, match="does not match its digest"):
            load_plan(text.replace('"menu"', '"local"'))
    # The digest itself edited (to that of another plan) is refused as well.
    other = dict(plan, nodes=[])
    other["digest"] = plan_digest(other)
    with pytest.raises(ValueError, match="does not match its digest"):
        load_plan(canonical.replace(plan["digest"], other["digest"]))


def test_a_dumped_plan_is_not_encoded_again(plan, monkeypatch):
    def encode_again(_plan):
        raise AssertionError("plan_digest() ran")
    monkeypatch.setattr(_plan_module, "plan_digest", encode_again)
    assert _plan_module.load_plan(dump_plan(plan)) == plan
    assert _plan_module.load_plan(dump_plan(plan).encode()) == plan
    with pytest.raises(AssertionError, match="plan_digest"):
        _plan_module.load_plan(json.dumps(plan, indent=1))
