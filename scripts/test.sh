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

scenarios() {
  local dir
  for dir in molecule/*/; do
    [ -f "$dir/molecule.yml" ] && basename "$dir"
  done
}

run_lab_stage() {
  # Every molecule scenario, in CENTRA_TEST_LANES parallel lanes (default 1). Each
  # lane has a lab of its own (CENTRA_LAB_NAME=l1, l2, ...: a namespace each, so
  # both use 192.0.2.0/24 without meeting); a lane runs its scenarios one after the
  # other and its output is printed when the lane ends.
  local lanes=${CENTRA_TEST_LANES:-1} all lane i pids=() logs
  mapfile -t all < <(scenarios)
  if [ "$lanes" -le 1 ]; then
    for scenario in "${all[@]}"; do
      run_stage "molecule-$scenario" molecule test -s "$scenario"
    done
    return
  fi
  logs=$(mktemp -d)
  for ((lane = 1; lane <= lanes; lane++)); do
    (
      export CENTRA_LAB_NAME=l$lane
      for ((i = lane - 1; i < ${#all[@]}; i += lanes)); do
        scenario=${all[$i]}
        start=$SECONDS
        if molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1; then
          echo "passed $((SECONDS - start))" >"$logs/$scenario.rc"
        else
          echo "FAILED $((SECONDS - start))" >"$logs/$scenario.rc"
        fi
      done
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  for scenario in "${all[@]}"; do
    echo "=== molecule-$scenario (lane output)"
    cat "$logs/$scenario.log"
    read -r verdict seconds <"$logs/$scenario.rc"
    if [ "$verdict" = passed ]; then
      passed=$((passed + 1)); echo "=== molecule-$scenario: passed in $seconds s"
    else
      failed=$((failed + 1)); failed_names+=("molecule-$scenario")
      echo "=== molecule-$scenario: FAILED after $seconds s"
    fi
  done
  rm -rf "$logs"
}

for stage in "${stages[@]}"; do
  case $stage in
    unit) run_stage unit python -m pytest -q -p no:cacheprovider tests/unit ;;
    lint) run_stage ansible-lint ansible-lint --profile production --offline ;;
    sanity) run_stage ansible-test-sanity bash scripts/sanity.sh ;;
    lab) run_lab_stage ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done

echo "failed stages: ${failed_names[*]:-none}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
