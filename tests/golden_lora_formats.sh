#!/bin/sh
# Our own LoRA golden cases (tests/data/lora/golden, made by
# tests/ref/make_lora_golden.py): one per key format on small random Stage C,
# Stage B and CLIP text encoders, each against the network run in PyTorch
# with the LoRAs merged in float64 beforehand. Every case through
# `tests/golden/cascade-golden --strict` (tolerances from the measured fp32-vs-fp64
# error), also with one thread. The list is fixed so a lost file fails.
D=$TOP_SRCDIR/tests/data/lora/golden
CASES="sc_onetrainer_bf16 sc_peft_f16 sc_dotted_neg sc_dora sc_locon sc_diff sc_stack sb_kohya_locon
clip_onetrainer_stack"
fail=0
n=0
for t in "" 1; do
    for c in $CASES; do
        n=$((n + 1))
        out=$("$GOLDEN_BIN" --strict ${t:+--threads $t} "$D/$c" 2>&1)
        rc=$?
        echo "$c${t:+ --threads $t}: $(echo "$out" | tail -n 1)"
        [ $rc -eq 0 ] || { echo "$out"; fail=1; }
    done
done
[ $(ls "$D"/*.io.safetensors | wc -l) -eq 9 ] || { echo "FAIL: $D holds cases not in the list"; fail=1; }
echo "golden_lora_formats: $n runs, $([ $fail -eq 0 ] && echo all passed || echo FAILURES)"
exit $fail
