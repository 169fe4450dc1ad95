# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ansible_collections.centra.pxe from a plain checkout."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ensure_collection_path() -> None:
    if os.path.basename(os.path.dirname(os.path.dirname(ROOT))) == "ansible_collections":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(ROOT))))
        return
    base = os.path.join(ROOT, ".ansible", "unit")
    link = os.path.join(base, "ansible_collections", "centra", "pxe")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    sys.path.insert(0, base)


_ensure_collection_path()
