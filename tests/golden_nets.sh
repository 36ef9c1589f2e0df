#!/bin/sh
# Stage C / Stage B blocks and networks against the golden cases: every
# op_resblock*, op_attnblock*, op_feedforward*, op_timestepblock* and
# stage_c_* / stage_b_* case of the set's index through
# `tests/golden/cascade-golden --strict`, once with the default threads and the
# networks again with one thread (different GEMM and reduction splits must
# stay inside the same limits).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
golden_cases 'op_resblock*' 'op_attnblock*' 'op_feedforward*' 'op_timestepblock*' 'stage_c_*' 'stage_b_*'
for c in $CASES; do golden_run "$c" --strict; done
golden_cases 'stage_c_*' 'stage_b_*'
for c in $CASES; do golden_run "$c" --strict --threads 1; done
exit $fail
