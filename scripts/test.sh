#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test, from
# unit tests to the lab (molecule: real PXE hosts, real BIOS and UEFI clients).
# Usage: scripts/test.sh [stage ...]   stages: unit lint sanity harness lab (default: all)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
bash scripts/setup.sh || exit 1
# shellcheck disable=SC1091
. .venv/bin/activate
export ANSIBLE_NOCOLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

stages=("$@")
((${#stages[@]})) || stages=(unit lint sanity harness lab)
passed=0 failed=0 failed_names=()

stage_logs=$(mktemp -d)
trap 'rm -rf "$stage_logs"' EXIT

run_stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name: $*"
  # pipefail (above): the stage's own exit status, not tee's.
  if "$@" 2>&1 | tee "$stage_logs/$name.log"; then
    passed=$((passed + 1)); echo "=== $name: passed in $((SECONDS - start)) s"
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED after $((SECONDS - start)) s"
  fi
}

# CI shows only the end of a long output: what went wrong in a failed stage (its
# failed tests, assertion and error lines) is repeated at the very end.
what_failed() {
  local log=$1
  sed 's/\x1b\[[0-9;]*m//g' "$log" |
    grep -E -A8 'fatal:|FAILED|^E  |(^|│ )E  |Error|failed=[1-9]|short test summary' | tail -n 80 || true
}

# scripts/setup.sh made the collection link; molecule's config and ansible.cfg look there too.
export ANSIBLE_COLLECTIONS_PATH=$here/.ansible/collections

scenarios() {
  # The two full single-host suites first: they take longest, so with several lanes
  # the short scenarios fill in beside them.
  local dir name
  for name in default isc; do
    [ -f "molecule/$name/molecule.yml" ] && echo "$name"
  done
  for dir in molecule/*/; do
    name=$(basename "$dir")
    [ "$name" = default ] || [ "$name" = isc ] && continue
    [ -f "$dir/molecule.yml" ] && echo "$name"
  done
}

run_lab_stage() {
  # Every molecule scenario, in CENTRA_TEST_LANES parallel lanes (default: 2 on a
  # machine with 2 or more cores). Each lane has a lab of its own
  # (CENTRA_LAB_NAME=l1, l2, ...: a network namespace each, so both use
  # 192.0.2.0/24 without meeting) and takes the next scenario from a shared queue
  # when it is free; a scenario's output is printed when the stage ends.
  local lanes=${CENTRA_TEST_LANES:-$(($(nproc) >= 2 ? 2 : 1))} all lane pids=() logs scenario verdict seconds
  mapfile -t all < <(scenarios)
  echo "=== lab: ${#all[@]} molecule scenarios (${all[*]}) in $lanes lane(s)"
  if [ "$lanes" -le 1 ]; then
    for scenario in "${all[@]}"; do
      run_stage "molecule-$scenario" molecule test -s "$scenario"
    done
    return
  fi
  logs=$(mktemp -d)
  printf '%s\n' "${all[@]}" >"$logs/queue"
  for ((lane = 1; lane <= lanes; lane++)); do
    (
      export CENTRA_LAB_NAME=l$lane
      while :; do
        # shellcheck disable=SC2016  # $0 is the inner sh's: the queue file
        scenario=$(flock "$logs/queue.lock" sh -c 'head -n 1 "$0"; sed -i 1d "$0"' "$logs/queue")
        [ -n "$scenario" ] || break
        echo "=== molecule-$scenario: started in lane $lane"
        start=$SECONDS
        if molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1; then
          echo "passed $((SECONDS - start))" >"$logs/$scenario.rc"
        else
          echo "FAILED $((SECONDS - start))" >"$logs/$scenario.rc"
        fi
        echo "=== molecule-$scenario: $(cat "$logs/$scenario.rc") s"
      done
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  for scenario in "${all[@]}"; do
    echo "=== molecule-$scenario (its output)"
    cat "$logs/$scenario.log"
    verdict=FAILED seconds='?'
    [ -f "$logs/$scenario.rc" ] && read -r verdict seconds <"$logs/$scenario.rc"
    if [ "$verdict" = passed ]; then
      passed=$((passed + 1)); echo "=== molecule-$scenario: passed in $seconds s"
    else
      failed=$((failed + 1)); failed_names+=("molecule-$scenario")
      echo "=== molecule-$scenario: FAILED after $seconds s"
      cp "$logs/$scenario.log" "$stage_logs/molecule-$scenario.log"  # for what_failed, at the end
    fi
  done
  rm -rf "$logs"
}

for stage in "${stages[@]}"; do
  case $stage in
    unit) run_stage unit python -m pytest -q -p no:cacheprovider tests/unit ;;
    lint) run_stage ansible-lint ansible-lint --profile production --offline ;;
    sanity) run_stage ansible-test-sanity bash scripts/sanity.sh ;;
    # The lab harness's own tests (tests/lab: its self-test on a lab of its own, "st",
    # and the labkit helpers), before the scenarios rely on it.
    harness) run_stage lab-harness env CENTRA_LAB=1 CENTRA_LAB_NAME=st \
      PYTHONPATH="$here/tests/lab:$ANSIBLE_COLLECTIONS_PATH" python -m pytest -q -p no:cacheprovider tests/lab ;;
    lab) run_lab_stage ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done

for name in "${failed_names[@]}"; do
  [ -f "$stage_logs/$name.log" ] || continue
  echo "=== $name: what failed"
  what_failed "$stage_logs/$name.log"
done
echo "failed stages: ${failed_names[*]:-none}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
