# SPDX-License-Identifier: GPL-3.0-or-later
"""Kea's host database: the rows kept equal to the plan with the fewest writes."""
from __future__ import annotations

import json

import pytest

from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (
    CONTEXT_KEY, ROWS_HEADER, copy_line, copy_unescape, parse_current, parse_rows_text, plan_changes, row_digest,
    rows_text, sync_script, wanted_rows)

ROWS = [
    {"identifier": "525400000101", "subnet_id": 3221225984, "ipv4": "192.0.2.11", "hostname": "node01",
     "classes": [], "options": []},
    {"identifier": "525400000102", "subnet_id": 0, "ipv4": None, "hostname": "node02",
     "classes": ["centra_loader_grub"], "options": [{"code": 42, "space": "dhcp4", "value": "c0000201"}]},
]


def current_text(rows, digests=None, extra=()):
    """COPY output of CURRENT_QUERY for rows stored with their digests (or the ones given)."""
    lines = []
    for host_id, row in enumerate(rows, start=1):
        digest = (digests or {}).get(row["hostname"], row_digest(row))
        lines.append(copy_line([host_id, row["identifier"], row["subnet_id"], row["hostname"],
                                json.dumps({CONTEXT_KEY: digest})]))
    lines.extend(extra)
    return "".join(lines)


def test_an_empty_database_gets_every_row():
    delete, insert, removed, added = plan_changes({}, wanted_rows(ROWS))
    assert delete == [] and removed == []
    assert [r["hostname"] for r in insert] == ["node01", "node02"] and added == ["node01", "node02"]
    assert all(r["digest"] == row_digest(r) for r in insert)


def test_a_database_equal_to_the_plan_gets_no_write():
    assert plan_changes(parse_current(current_text(ROWS)), wanted_rows(ROWS)) == ([], [], [], [])


def test_a_changed_row_is_deleted_and_written_again_and_the_others_are_left():
    changed = [ROWS[0], dict(ROWS[1], ipv4="192.0.2.12", subnet_id=0)]
    delete, insert, removed, added = plan_changes(parse_current(current_text(ROWS)), wanted_rows(changed))
    assert delete == [2] and [r["hostname"] for r in insert] == ["node02"]
    assert removed == ["node02"] and added == ["node02"]


def test_a_row_gone_from_the_plan_is_deleted_and_a_foreign_or_duplicate_row_replaced():
    foreign = copy_line([7, "525400000101", 3221225984, "hand-made", "\\N"])
    delete, insert, removed, _added = plan_changes(parse_current(current_text(ROWS, extra=[foreign])), wanted_rows(ROWS[:1]))
    # node02 left the plan; node01 has a second row (written by hand): the first stays.
    assert delete == [2, 7] and insert == [] and removed == ["node02"]


def test_two_rows_for_one_mac_in_one_subnet_are_refused():
    with pytest.raises(ValueError, match="525400000101 in subnet 3221225984 .node01, twin."):
        wanted_rows([ROWS[0], dict(ROWS[0], hostname="twin")])


def test_the_digest_covers_every_field_kea_serves():
    for field, value in (("ipv4", "192.0.2.99"), ("hostname", "other"), ("classes", ["x"]), ("subnet_id", 1),
                         ("options", [{"code": 42, "space": "dhcp4", "value": "00"}])):
        assert row_digest(dict(ROWS[0], **{field: value})) != row_digest(ROWS[0]), field


@pytest.mark.parametrize("value", ["plain", "tab\there", "new\nline", "back\\slash", "cr\rx", ""])
def test_copy_fields_round_trip(value):
    assert copy_unescape(copy_line([value]).rstrip("\n")) == value
    assert copy_unescape(copy_line([None]).rstrip("\n")) is None


def test_the_sync_script_is_one_transaction_with_addresses_as_integers_and_options_by_identifier():
    _delete, insert, _removed, _added = plan_changes({}, wanted_rows(ROWS))
    script = sync_script([5, 6], insert)
    assert script.index("BEGIN;") < script.index("DELETE FROM hosts") < script.index("INSERT INTO hosts") \
        < script.index("INSERT INTO dhcp4_options") < script.index("COMMIT;")
    assert "\n5\n6\n\\.\n" in script
    assert "525400000101\t3221225984\t3221225995\tnode01\t\\N\t" in script  # 192.0.2.11
    assert "525400000102\t0\t\\N\tnode02\tcentra_loader_grub\t" in script
    assert "525400000102\t0\t42\tc0000201\tdhcp4\n" in script


def test_rows_travel_as_text_and_come_back_equal():
    text = rows_text(ROWS)
    assert text.startswith(ROWS_HEADER + "\n") and text.count("\n") == len(ROWS) + 1
    assert parse_rows_text(text) == ROWS
    assert parse_rows_text(rows_text([])) == []


@pytest.mark.parametrize("text, error", [
    ("", "do not start with"),
    ('{"identifier": "x"}\n', "do not start with"),
    (ROWS_HEADER + "\n{not json}\n", "line 2 of the rows"),
    (ROWS_HEADER + "\n[1, 2]\n", "line 2 of the rows is not an object"),
])
def test_rows_text_other_than_the_filters_is_refused(text, error):
    with pytest.raises(ValueError, match=error):
        parse_rows_text(text)
