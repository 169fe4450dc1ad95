# SPDX-License-Identifier: GPL-3.0-or-later
"""Broken inventories, one operator mistake each: playbooks/validate.yml must fail at its first task
and report every problem the fixture's expected.txt lists, each naming where and which field.

Each fixture is tests/fixtures/broken/<NN-name>/ with a hosts.yml (its first comment says what is
wrong), the group_vars/ or host_vars/ files where the mistake lives there, and expected.txt: one
problem line per line, matched as a prefix of "<where>: <field>: <message>"; {dir} stands for the
fixture's directory. The run must report these problems and no others: an extra one means the
fixture holds a second mistake or the validation complains about something that is fine.
"""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BROKEN = os.path.join(ROOT, "tests", "fixtures", "broken")

WHERE = r"(?:host [^\s:]+|group [^\s:]+|profile [^\s:]+|subnet \d+\.\d+\.\d+\.\d+/\d+|subnet [0-9a-f:]+/\d+|pxe_subnets\[\d+\]|inventory)"
NAMES_WHERE = re.compile(r"^(?:%s:(?: |$)|ansible: )" % WHERE)
NAMES_WHERE_AND_FIELD = re.compile(r"^%s: [^\s:][^:]*: \S" % WHERE)

# Inventories the validation should reject but does not (or rejects without naming the field).
# Each stays here, strictly expected to fail, until plugins/ is fixed; then the mark goes.
KNOWN_BUGS: dict = {}  # fixture name -> why validation still misses it (each one an xfail)


def fixture_names():
    return sorted(name for name in os.listdir(BROKEN) if os.path.isdir(os.path.join(BROKEN, name)))


def expected_lines(name):
    with open(os.path.join(BROKEN, name, "expected.txt"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def cases():
    return [pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else [])
            for name in fixture_names()]


@pytest.mark.parametrize("name", cases())
def test_broken_inventory_fails_at_the_plan_naming_each_problem(run_validate, name):
    run, output = run_validate(os.path.join(BROKEN, name, "hosts.yml"))
    assert run.returncode != 0, "validate.yml passed a broken inventory:\n%s" % run.stdout[-2000:]
    ansible_errors = [line[len("ansible: "):] for line in expected_lines(name) if line.startswith("ansible: ")]
    if ansible_errors:
        # Caught by Ansible itself before any play (ansible.cfg: any_unparsed_is_failed).
        assert output == [], "a task ran although the inventory did not parse"
        for text in ansible_errors:
            assert text in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
        return
    # Exactly one task ran, the first one, and it failed: nothing after the plan was reached.
    assert re.search(r"^localhost\s+: ok=0 .*\bfailed=1\b", run.stdout, re.M), run.stdout[-2000:]
    assert len(output) == 1 and "Report the plan" not in run.stdout, run.stdout[-2000:]
    problems = output[0].get("problems")
    assert problems, "the plan failed without a list of problems: %r" % output[0].get("msg")
    unnamed = [p for p in problems if not NAMES_WHERE_AND_FIELD.match(p)]
    assert not unnamed, "problems that do not name where and field: %r" % unnamed
    expected = [line.replace("{dir}", os.path.join(BROKEN, name)) for line in expected_lines(name)]
    missing = [line for line in expected if not any(p.startswith(line) for p in problems)]
    assert not missing, "not reported: %r\nreported: %r" % (missing, problems)
    unexpected = [p for p in problems if not any(p.startswith(line) for line in expected)]
    assert not unexpected, "reported but not expected: %r" % unexpected


def test_fixtures_are_many_distinct_and_well_formed():
    names = fixture_names()
    assert len(names) >= 30, names
    seen = {}
    for name in names:
        assert re.match(r"^\d\d-[a-z0-9]+(-[a-z0-9]+)*$", name), name
        assert os.path.isfile(os.path.join(BROKEN, name, "hosts.yml")), name
        with open(os.path.join(BROKEN, name, "hosts.yml"), encoding="utf-8") as handle:
            assert handle.readline().startswith("# "), "%s/hosts.yml must open with a comment saying what is wrong" % name
        lines = expected_lines(name)
        assert lines, "%s/expected.txt lists no problem" % name
        for line in lines:
            assert NAMES_WHERE.match(line), "%s/expected.txt: %r does not start with where" % (name, line)
        key = frozenset(lines)
        assert key not in seen, "%s and %s expect the same problems" % (seen.get(key), name)
        seen[key] = name
    assert len({name[:2] for name in names}) == len(names), "fixture numbers repeat"
    assert set(KNOWN_BUGS) <= set(names), set(KNOWN_BUGS) - set(names)
