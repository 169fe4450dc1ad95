# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap its venvs.

ansible-test fetches get-pip.py from a host outside the package registries, which
this network does not reach. This does the same job with what is reachable:
Python's own ensurepip, then pip from PyPI with the arguments ansible-test passes.
scripts/sanity.sh puts it where ansible-test looks for its cached copy.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args])


if __name__ == "__main__":
    sys.exit(main())
