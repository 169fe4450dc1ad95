# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ansible-playbook on the lab, as an operator runs it, and reading what it printed.

The one reader of a run's output: the PLAY RECAP (recap()) and the task results
(task_results()) of the default callback. The tests and the benchmarks use it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping

from .common import NETNS
from .facts import LAB_INVENTORY, PROJECT, ansible_command, scenario_inventory

PLAYBOOKS = os.path.join(PROJECT, "playbooks")
RECAP_KEYS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
# A host's line of the PLAY RECAP: "pxe01   : ok=12   changed=0    unreachable=0 ...".
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+" + r"\s+".join(r"%s=(\d+)" % key for key in RECAP_KEYS), re.M)
TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?:[^\]:]+ : )?(.*?)\] \**$", re.M)
HOST_RESULT = re.compile(r"^(ok|changed|skipping|fatal|failed|unreachable): \[([^\]]+)\](?:: (?:FAILED|UNREACHABLE)!)?"
                         r"(?: => )?", re.M)


def ansible_playbook(playbook: str, *args: str, inventories: tuple[str, ...] | None = None,
                     extra_vars: Mapping[str, object] | None = None,
                     timeout: float = 900) -> subprocess.CompletedProcess:
    """ansible-playbook from the repository, with its ansible.cfg, as the README runs it.

    playbook: a file of playbooks/. inventories: by default what converge uses (the
    scenario's inventory, then inventories/lab). extra_vars: passed as one -e @file. The
    default callback, with results as JSON (task_results() reads them)."""
    if inventories is None:
        inventories = (scenario_inventory(), LAB_INVENTORY)
    command = [ansible_command("ansible-playbook")]
    for inventory in inventories:
        command += ["-i", inventory]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_PYTHON_INTERPRETER="auto_silent", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               # Labs side by side all have a pxe01 at the same address: ssh masters of this lab only.
               ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.expanduser("~/.ansible/cp/%s" % NETNS))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="centra-extra-vars-") as handle:
        if extra_vars:
            json.dump(extra_vars, handle)
            handle.flush()
            command += ["-e", "@" + handle.name]
        command += [*args, os.path.join(PLAYBOOKS, playbook)]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=timeout,
                              check=False)


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a default-callback run: host -> ok, changed, unreachable, failed, ..."""
    return {m.group(1): dict(zip(RECAP_KEYS, map(int, m.groups()[1:]))) for m in RECAP_LINE.finditer(stdout)}


def task_results(stdout: str) -> list[tuple[str, str, str, dict]]:
    """(task name, status, host, result) of each task a default-callback run printed, in
    order; result is the JSON the callback printed after "=>" ({} when none)."""
    found = []
    headers = list(TASK_HEADER.finditer(stdout))
    decoder = json.JSONDecoder()
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(stdout)
        for match in HOST_RESULT.finditer(stdout, header.end(), end):
            result = {}
            if match.group(0).endswith("=> "):
                try:
                    result = decoder.raw_decode(stdout[match.end():end])[0]
                except ValueError:
                    pass
            found.append((header.group(1), match.group(1), match.group(2), result))
    return found
