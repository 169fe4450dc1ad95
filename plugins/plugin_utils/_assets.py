# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""Profile assets on the controller: their sha256, for the boot plan."""

from __future__ import annotations

import hashlib
import os
from typing import Dict, Tuple

_checksum_cache: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """sha256 of a file, remembered by (path, size, mtime) for the life of the process."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _checksum_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _checksum_cache[key] = "sha256:" + digest.hexdigest()
    return _checksum_cache[key]
