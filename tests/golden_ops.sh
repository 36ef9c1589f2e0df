#!/bin/sh
# Every single-op golden case (op_*) through `cascade dev golden`.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
fail=0
for f in "$SHARED_DIR"/golden/op_*.io.safetensors; do
    case=${f%.io.safetensors}
    out=$("$CASCADE_BIN" dev golden "$case" 2>&1)
    rc=$?
    echo "$(basename "$case"): $(echo "$out" | tail -n 1)"
    [ $rc -eq 0 ] || { echo "$out"; fail=1; }
done
exit $fail
