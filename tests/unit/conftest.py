# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ansible_collections.centra.pxe from a plain checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ensure_collection_path() -> None:
    if os.path.basename(os.path.dirname(os.path.dirname(ROOT))) == "ansible_collections":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(ROOT))))
        return
    # The one link scripts/setup.sh makes (ansible.cfg's collections_path points there too).
    base = os.path.join(ROOT, ".ansible", "collections")
    if not os.path.isdir(os.path.join(base, "ansible_collections", "centra", "pxe")):
        pytest.exit("%s has no centra.pxe: run bash scripts/setup.sh first" % base, returncode=2)
    sys.path.insert(0, base)


_ensure_collection_path()


def _task_results(stdout: str) -> list:
    """The JSON result of each task, in order, from the default callback's -v output."""
    found = []
    decoder = json.JSONDecoder()
    for marker in re.finditer(r"^(?:ok|fatal|changed): \[localhost\]: (?:FAILED! )?=> |^(?:ok|changed): \[localhost\] => ",
                              stdout, re.M):
        found.append(decoder.raw_decode(stdout[marker.end():])[0])
    return found


def _run_validate(inventory: str, *extra: str):
    """Run the real playbooks/validate.yml on an inventory: (CompletedProcess, task results)."""
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "centra", "pxe"))]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections[0], ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    run = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-v", "-i", inventory,
         os.path.join(ROOT, "playbooks", "validate.yml"), *extra],
        capture_output=True, text=True, env=env, check=False, timeout=300)
    return run, _task_results(run.stdout)


@pytest.fixture(name="run_validate")
def fixture_run_validate():
    """playbooks/validate.yml, for the playbook tests (a fixture: test modules cannot import each other
    under ansible-test's collection loader)."""
    return _run_validate
