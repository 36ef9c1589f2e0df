#!/bin/sh
# Test driver: runs one test once per SIMD level this CPU offers
# (CASCADE_SIMD forced), so the whole suite is checked at every level.
# Exit codes: 0 pass, 77 skip, 99 hard error, else fail (per level and in all).
test="$1"; shift
# Tests run side by side (make -j): OpenMP workers that spin-wait would steal
# the cores from each other, so they sleep instead (results are unaffected).
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}; export OMP_WAIT_POLICY
levels=$("$CASCADE_BIN" info --levels) || { echo "cannot list SIMD levels"; exit 99; }
[ -n "$CASCADE_TEST_LEVELS" ] && levels="$CASCADE_TEST_LEVELS"
# Result: a failure at any level fails; otherwise a pass at any level passes
# (a test may skip a level where it has nothing to check: test_kernels at
# scalar); a skip only when every level skipped.
# Each process that computed appends "NAME pid=PID CASCADE_SIMD=WANTED
# level=IN_USE" to $CASCADE_SIMD_REPORT at exit (simd/dispatch.c): every
# process that saw CASCADE_SIMD=$l must have run at $l, else this level's
# run tested the wrong kernels and fails (processes a test starts with
# another CASCADE_SIMD on purpose, or whose bad CASCADE_AMX refused the level
# -- lines ending "refused", an error the test itself checks -- are left to
# that test).
report=$(mktemp "${TMPDIR:-/tmp}/cs-levels.XXXXXX") || { echo "cannot make a temporary file"; exit 99; }
trap 'rm -f "$report"' EXIT
status=0 passed=0 skipped=0
for l in $levels; do
    echo "### CASCADE_SIMD=$l"
    : >"$report"
    case "$test" in
        *.sh) CASCADE_SIMD=$l CASCADE_SIMD_REPORT=$report sh "$test" "$@" ;;
        *) CASCADE_SIMD=$l CASCADE_SIMD_REPORT=$report "$test" "$@" ;;
    esac
    rc=$?
    wrong=$(grep " CASCADE_SIMD=$l " "$report" | grep -v -e " level=$l\$" -e " refused\$")
    if [ -n "$wrong" ]; then
        echo "### WRONG LEVEL at CASCADE_SIMD=$l: these processes computed at another level:"
        echo "$wrong"
        rc=1
    fi
    echo "### $(grep -c " CASCADE_SIMD=$l level=$l\$" "$report") process(es) computed at $l"
    case $rc in
        0) passed=$((passed + 1)) ;;
        77) echo "### SKIPPED at CASCADE_SIMD=$l"; skipped=$((skipped + 1)) ;;
        *) echo "### FAILED at CASCADE_SIMD=$l (exit $rc)"; status=1 ;;
    esac
done
[ $status -eq 0 ] && [ $passed -eq 0 ] && [ $skipped -gt 0 ] && status=77
exit $status
