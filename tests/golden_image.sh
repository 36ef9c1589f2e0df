#!/bin/sh
# Stage A (ResBlock, decode, encode), Previewer and EfficientNet golden cases
# of the set's index through `tests/golden/cascade-golden --strict`.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
golden_cases 'op_stage_a_*' 'stage_a_*' 'previewer*' 'effnet*'
for c in $CASES; do golden_run "$c" --strict; done
exit $fail
