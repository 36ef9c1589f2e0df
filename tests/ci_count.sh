#!/bin/sh
# .ci/run's tally: a skipped test is a failure under CI unless it is in the
# printed allow list (neon-qemu), and skips are counted apart from passes.
# Runs `.ci/run --count` on made-up automake results. Also: a missing tool
# (tests/shared.sh need_tool) skips a test, and fails it under CI; so does
# missing ../shared in the C tests, with an empty CI not counted as CI.
TOP=${TOP_SRCDIR:-.}
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ -n "${CASCADE_BIN:-}" ] &&
   [ "$CASCADE_SIMD" != "$("$CASCADE_BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only)"; exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ci_count.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
mkdir -p "$tmp/t"
res() { printf ':test-result: %s\n' "$2" >"$tmp/t/$1.trs"; }
check() {  # check NAME CI-VALUE EXPECTED-SUMMARY EXPECTED-EXIT(0|1)
    out=$(CI=$2 sh "$TOP/.ci/run" --count "$tmp/t"); rc=$?
    [ $rc -ne 0 ] && rc=1
    if [ "$(echo "$out" | tail -n 1)" = "$3" ] && [ $rc -eq "$4" ]; then echo "ok $1"
    else echo "FAIL $1: exit $rc, expected $4; got:"; echo "$out"; fail=1; fi
}
res a PASS; res b XFAIL; res neon-qemu SKIP
check allowed-skip 1 "2 passed, 1 skipped, 0 failed" 0
res c SKIP
check skip-fails-under-ci 1 "2 passed, 1 skipped, 1 failed" 1
check skip-outside-ci "" "2 passed, 2 skipped, 0 failed" 0
res d FAIL; res e ERROR; res f XPASS
check failures "" "2 passed, 2 skipped, 3 failed" 1
# tests/shared.sh need_tool: a missing tool skips, but fails under CI
(CI=; . "$TOP/tests/shared.sh"; need_tool cascade-no-such-tool "a test") >/dev/null; rc=$?
[ $rc -eq 77 ] && echo "ok need-tool-skips" || { echo "FAIL need-tool-skips: exit $rc"; fail=1; }
(CI=1; . "$TOP/tests/shared.sh"; need_tool cascade-no-such-tool "a test") >/dev/null; rc=$?
[ $rc -eq 99 ] && echo "ok need-tool-fails-under-ci" || { echo "FAIL need-tool-fails-under-ci: exit $rc"; fail=1; }
# the C tests read CI as tests/shared.sh does: set and empty (what `CI= make
# distcheck` gives) is not CI, so missing ../shared skips (77); CI=1 fails (99)
B=$(dirname "${CASCADE_BIN:-./cascade}")/tests
for t in manifests lora png sampler pipeline_golden image_load tokenizer prompt stage_load safetensors; do
    [ -x "$B/test_$t" ] || { echo "FAIL no $B/test_$t"; fail=1; continue; }
    CI= SHARED_DIR=/nonexistent/shared "$B/test_$t" >/dev/null 2>&1; a=$?
    CI=1 SHARED_DIR=/nonexistent/shared "$B/test_$t" >/dev/null 2>&1; b=$?
    if [ $a -eq 77 ] && [ $b -eq 99 ]; then echo "ok test_$t: no data skips, under CI fails"
    else echo "FAIL test_$t without ../shared: exit $a with CI empty (want 77), $b with CI=1 (want 99)"; fail=1; fi
done
exit $fail
