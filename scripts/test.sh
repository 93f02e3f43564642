#!/usr/bin/env bash
# `make test`: the whole suite as two pytest processes at once.
#
# * the tests that use the session's lab (marked `lab_session` by tests/conftest.py): one process,
#   one lab per machine, brought up and converged once;
# * everything else (unit, program, policy, the roles' local runs): a second process beside it.
#
# Why not `pytest -n auto --dist loadgroup`: xdist 3.8 groups tests by rewriting `item._nodeid`,
# which pytest 9 no longer reads; the lab tests were spread over both workers, and the second
# one waited on the lab's lock for the first one's whole session before bringing up a lab of its
# own. Arguments go to both processes (a path, -k, --durations=N; not -m, which selects the split).
# The lab process's report is printed after the other's; it is also kept in $OUT/test-lab-session.log.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
out=${OUT:-out}
mkdir -p "$out"
log="$out/test-lab-session.log"

"$PY" -m pytest -p no:xdist -m lab_session "$@" >"$log" 2>&1 &
lab=$!
echo "the lab session's tests run beside these, in process $lab (report below, and in $log)"
"$PY" -m pytest -p no:xdist -m "not lab_session" "$@"
rest=$?
wait "$lab"
labrc=$?
echo
echo "=============================== the lab session's tests ==============================="
cat "$log"
# exit 5: nothing selected (a path or -k that holds no lab test, or only lab tests): not a failure
[ "$rest" -eq 5 ] && rest=0
[ "$labrc" -eq 5 ] && labrc=0
echo "not-lab tests: exit $rest; lab session tests: exit $labrc"
if [ "$rest" -ne 0 ]; then exit "$rest"; fi
exit "$labrc"
