#!/bin/sh
# Every single-op golden case (op_* of the set's index) through
# `tests/golden/cascade-golden --strict`: within 8x of the recorded fp32-vs-fp64 error.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
golden_cases 'op_*'
for c in $CASES; do golden_run "$c" --strict; done
exit $fail
