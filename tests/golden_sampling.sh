#!/bin/sh
# `cascade dev golden` on the sampling cases: Stage C and Stage B GDF loops
# with replayed noise (every step's x0 and x compared) and the tiny
# C -> B -> A chain with its uint8 image.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
fail=0
for name in sampling_c sampling_b pipeline_tiny; do
    case="$SHARED_DIR/golden/$name"
    out=$("$CASCADE_BIN" dev golden "$case" 2>&1)
    rc=$?
    echo "$name: $(echo "$out" | tail -n 1)"
    [ $rc -eq 0 ] || { echo "$out"; fail=1; }
done
exit $fail
