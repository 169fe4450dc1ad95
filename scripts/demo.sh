#!/usr/bin/env bash
# The README's demo command: set up, build the lab, converge a lab PXE host with
# site.yml, boot a machine of each profile (BIOS and UEFI), print the table.
# Usage: scripts/demo.sh [--backend kea|isc] [--keep]   (--keep leaves the lab up)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
exec python scripts/demo.py "$@"
