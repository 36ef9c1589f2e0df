#!/bin/sh
# Stage A (ResBlock, decode, encode), Previewer and EfficientNet golden cases
# through `cascade dev golden`.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
fail=0
n=0
for f in "$SHARED_DIR"/golden/op_stage_a_*.io.safetensors "$SHARED_DIR"/golden/stage_a_*.io.safetensors \
         "$SHARED_DIR"/golden/previewer*.io.safetensors "$SHARED_DIR"/golden/effnet*.io.safetensors; do
    [ -f "$f" ] || continue
    case=${f%.io.safetensors}
    out=$("$CASCADE_BIN" dev golden "$case" 2>&1)
    rc=$?
    n=$((n + 1))
    echo "$(basename "$case"): $(echo "$out" | tail -n 1)"
    [ $rc -eq 0 ] || { echo "$out"; fail=1; }
done
if [ $n -eq 0 ]; then
    echo "no Stage A / previewer / effnet cases in $SHARED_DIR/golden"
    [ -n "$CI" ] && exit 99
    exit 77
fi
exit $fail
