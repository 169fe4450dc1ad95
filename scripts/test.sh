#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test, from
# unit tests to the lab (molecule: real PXE hosts, real BIOS and UEFI clients).
# Usage: scripts/test.sh [stage ...]   stages: unit lint sanity lab (default: all)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate
export ANSIBLE_NOCOLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

stages=("$@")
((${#stages[@]})) || stages=(unit lint sanity lab)
passed=0 failed=0 failed_names=()

run_stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name: $*"
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: passed in $((SECONDS - start)) s"
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED after $((SECONDS - start)) s"
  fi
}

collection_path() {
  # molecule and ansible-playbook find the collection through this path.
  local base=$here/.ansible/collections
  mkdir -p "$base/ansible_collections/centra"
  ln -sfn "$here" "$base/ansible_collections/centra/pxe"
  echo "$base"
}
export ANSIBLE_COLLECTIONS_PATH
ANSIBLE_COLLECTIONS_PATH=$(collection_path)

for stage in "${stages[@]}"; do
  case $stage in
    unit) run_stage unit python -m pytest -q -p no:cacheprovider tests/unit ;;
    lint) run_stage ansible-lint ansible-lint --profile production --offline ;;
    sanity) run_stage ansible-test-sanity bash scripts/sanity.sh ;;
    lab)
      for scenario in $(ls molecule 2>/dev/null); do
        [ -f "molecule/$scenario/molecule.yml" ] || continue
        run_stage "molecule-$scenario" molecule test -s "$scenario"
      done ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done

echo "failed stages: ${failed_names[*]:-none}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
