#!/bin/sh
# Stage C / Stage B blocks and networks against the golden cases: every
# op_resblock*, op_attnblock*, op_feedforward*, op_timestepblock* and
# stage_c_* / stage_b_* case through `cascade dev golden`, once with the
# default threads and the networks again with one thread (different GEMM
# and reduction splits must stay inside the same tolerances).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
fail=0
n=0
run() {
    case=${1%.io.safetensors}
    shift
    out=$("$CASCADE_BIN" dev golden "$@" "$case" 2>&1)
    rc=$?
    n=$((n + 1))
    echo "$(basename "$case") $*: $(echo "$out" | tail -n 1)"
    [ $rc -eq 0 ] || { echo "$out"; fail=1; }
}
for f in "$SHARED_DIR"/golden/op_resblock*.io.safetensors "$SHARED_DIR"/golden/op_attnblock*.io.safetensors \
         "$SHARED_DIR"/golden/op_feedforward*.io.safetensors "$SHARED_DIR"/golden/op_timestepblock*.io.safetensors \
         "$SHARED_DIR"/golden/stage_c_*.io.safetensors "$SHARED_DIR"/golden/stage_b_*.io.safetensors; do
    [ -f "$f" ] || continue
    run "$f"
done
for f in "$SHARED_DIR"/golden/stage_c_*.io.safetensors "$SHARED_DIR"/golden/stage_b_*.io.safetensors; do
    [ -f "$f" ] || continue
    run "$f" --threads 1
done
# the set has 5 block cases and 5 network cases: fewer means a broken glob
[ $n -ge 15 ] || { echo "only $n golden runs (expected >= 15)"; fail=1; }
exit $fail
