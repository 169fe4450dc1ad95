# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's first run, as an operator on a fresh machine types it: no HOME with an
installed collection, no ANSIBLE_COLLECTIONS_PATH, only what scripts/setup.sh made."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_validate_resolves_the_collection_with_a_clean_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    setup = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=False, timeout=1800)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    run = subprocess.run([os.path.join(venv_bin, "ansible-playbook"), "-i", "inventories/example",
                          "playbooks/validate.yml"], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Inventory valid" in run.stdout
    # Nothing was installed into the clean HOME: the checkout itself resolved.
    assert not os.path.exists(os.path.join(tmp_path, ".ansible", "collections", "ansible_collections"))
