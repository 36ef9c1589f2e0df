#!/bin/sh
# The golden cases with bf16 products on the CPU (--device cpu --precision
# bf16): every op, network and Stage A case of the set's index inside the
# runner's documented bf16 limits (src/cli/golden.h GOLDEN_BF16_RTOL) with the
# native kernel (AMX where the CPU has it; CASCADE_AMX=0 for AVX512-BF16), with
# the default threads and the networks again with one thread. Skips where
# the CPU (or the forced SIMD level) has no native bf16 kernel: there
# --precision bf16 must be refused with exit 1 and one line.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
if ! "$CASCADE_BIN" info 2>/dev/null | grep -q '^cpu bf16: .*dpbf16ps'; then
    golden_cases 'op_feedforward*'
    set -- $CASES
    "$GOLDEN_BIN" --device cpu --precision bf16 "$SHARED_DIR/golden/$1.io.safetensors" >/dev/null 2>"${TMPDIR:-/tmp}/golden_bf16.$$"
    rc=$?
    lines=$(grep -c . "${TMPDIR:-/tmp}/golden_bf16.$$")
    rm -f "${TMPDIR:-/tmp}/golden_bf16.$$"
    [ $rc -eq 1 ] && [ "$lines" -eq 1 ] || { echo "no native bf16, yet --precision bf16 gave exit $rc, $lines lines"; exit 1; }
    echo "SKIP: no native bf16 kernel at CASCADE_SIMD=${CASCADE_SIMD:-auto}"
    exit 77
fi
golden_cases 'op_*' 'stage_c_*' 'stage_b_*' 'stage_a_tiny*' 'previewer' 'effnet_slim'
for c in $CASES; do golden_run "$c" --device cpu --precision bf16; done
golden_cases 'stage_c_*' 'stage_b_*'
for c in $CASES; do golden_run "$c" --device cpu --precision bf16 --threads 1; done
# the products really were bf16: their rounding shows (fp32 gives ~1e-7 here)
rel=$("$GOLDEN_BIN" --device cpu --precision bf16 "$SHARED_DIR/golden/op_feedforward.io.safetensors" 2>&1 |
    sed -n 's/.*rel_l2=\([0-9.e+-]*\).*/\1/p' | head -n 1)
if ! awk -v r="${rel:-0}" 'BEGIN { exit !(r > 1e-4) }'; then
    echo "op_feedforward in bf16: rel_l2 '${rel}' is fp32-small: were the products bf16?"; fail=1
fi
exit $fail
