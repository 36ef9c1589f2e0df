#!/bin/sh
# One Stage C training step (src/train_step.c) against the official training
# code: the cases of tests/data/train (made by tests/ref/train_step_ref.py:
# gdf + StageC + Adafactor / AdamW in PyTorch, float64 reference, tolerances
# from the measured fp32-vs-fp64 error) through `tests/golden/cascade-golden`
# and its `train_step` module, normal and --strict, also with one thread.
# The weights are the shared golden tiny Stage C, linked beside the cases in
# a temporary folder. The list is fixed so a lost file fails.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
D=$TOP_SRCDIR/tests/data/train
CASES="adafactor_adaptive adamw_p2"
T=$(mktemp -d "${TMPDIR:-/tmp}/golden_train.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
ln -s "$SHARED_DIR/golden/stage_c_tiny.weights.safetensors" "$T/" || exit 99
for c in $CASES; do ln -s "$D/$c.io.safetensors" "$T/" || exit 99; done
fail=0
n=0
for t in "" 1; do
    for s in "" --strict; do
        for c in $CASES; do
            n=$((n + 1))
            out=$("$GOLDEN_BIN" $s ${t:+--threads $t} "$T/$c" 2>&1)
            rc=$?
            echo "$c $s${t:+ --threads $t}: $(echo "$out" | tail -n 1)"
            [ $rc -eq 0 ] || { echo "$out"; fail=1; }
        done
    done
done
[ $(ls "$D"/*.io.safetensors | wc -l) -eq 2 ] || { echo "FAIL: $D holds cases not in the list"; fail=1; }
echo "golden_train: $n runs, $([ $fail -eq 0 ] && echo all passed || echo FAILURES)"
exit $fail
