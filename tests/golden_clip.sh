#!/bin/sh
# Every CLIP text encoder golden case (golden/text/clip_*) through `cascade dev golden`.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/text
fail=0 n=0
for f in "$SHARED_DIR"/golden/text/clip_*.io.safetensors; do
    case=${f%.io.safetensors}
    out=$("$CASCADE_BIN" dev golden "$case" 2>&1)
    rc=$?
    n=$((n + 1))
    echo "$(basename "$case"): $(echo "$out" | tail -n 1)"
    [ $rc -eq 0 ] || { echo "$out"; fail=1; }
done
[ $n -ge 4 ] || { echo "expected at least 4 clip cases, found $n"; fail=1; }
exit $fail
