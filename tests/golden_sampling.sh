#!/bin/sh
# `tests/golden/cascade-golden --strict` on the sampling cases of the set's index:
# Stage C and Stage B GDF loops with replayed noise (every step's x0 and x
# compared and gating) and the tiny C -> B -> A chain with its uint8 image.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
golden_cases 'sampling_*' 'pipeline_*'
for c in $CASES; do golden_run "$c" --strict; done
exit $fail
