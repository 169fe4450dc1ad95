# SPDX-License-Identifier: GPL-3.0-or-later
"""Task timings of one ansible-playbook run, for benchmarks/scale.py (not part of the collection)."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_profile
type: aggregate
short_description: Write the wall time of every task to the file named by BENCH_PROFILE_OUT
description:
  - Used by benchmarks/scale.py only. One host per run: a task lasts from its start to the next task's start.
  - A task that changed something carries C(changed: true).
options: {}
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._tasks: list = []
        self._started = time.monotonic()

    def _close(self) -> None:
        if self._tasks and "seconds" not in self._tasks[-1]:
            self._tasks[-1]["seconds"] = time.monotonic() - self._tasks[-1]["start"]

    def _open(self, task, handler: bool) -> None:
        self._close()
        path = task.get_path() or ""
        self._tasks.append({"name": task.get_name(), "path": path, "handler": handler, "start": time.monotonic()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task, False)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task, True)

    def v2_runner_on_ok(self, result):
        # Which tasks changed: a rerun that should change nothing says where it did.
        if result.is_changed() and self._tasks:
            self._tasks[-1]["changed"] = True

    def v2_playbook_on_stats(self, stats):
        self._close()
        out = os.environ.get("BENCH_PROFILE_OUT")
        if out:
            for entry in self._tasks:
                entry["start"] -= self._started
            with open(out, "w", encoding="utf-8") as handle:
                json.dump({"total": time.monotonic() - self._started, "tasks": self._tasks}, handle, indent=1)
