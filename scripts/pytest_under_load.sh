#!/usr/bin/env bash
# The README's test command with a CPU-bound process on every core beside it: the tests
# must hold on a loaded machine (a Pi, a busy CI box), so none may depend on idle cores.
#
#   bash scripts/pytest_under_load.sh [HOGS] [-- PYTEST ARGS...]
#
# HOGS defaults to the number of cores. The hogs are stopped by pid on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."

hogs=$(nproc)
if [[ $# -gt 0 && "$1" != "--" ]]; then hogs=$1; shift; fi
[[ "${1:-}" == "--" ]] && shift

pids=()
stop_hogs() { [[ ${#pids[@]} -gt 0 ]] && kill "${pids[@]}" 2>/dev/null || true; }
trap stop_hogs EXIT
for _ in $(seq "$hogs"); do
  python3 -c 'while True: pass' &
  pids+=($!)
done
echo "pytest_under_load: $hogs CPU-bound processes beside the tests (pids ${pids[*]})"
start=$(date +%s)
status=0
.venv/bin/python -m pytest "$@" || status=$?
echo "pytest_under_load: exit $status after $(( $(date +%s) - start )) s with $hogs hogs"
exit "$status"
