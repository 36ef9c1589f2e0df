#!/bin/sh
# LoRA golden cases (../shared/golden/lora/, an io file's __metadata__["lora"]
# list applied to the case's module): every case of that folder through
# `tests/golden/cascade-golden --strict`, also with one thread. The kohya case must be
# there (it is the one the set documents), so an emptied folder fails.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/lora
. "$TOP_SRCDIR/tests/golden_index.sh"
CASES=$(cd "$SHARED_DIR/golden" && ls lora/*.io.safetensors 2>/dev/null | sed 's/\.io\.safetensors$//')
case " $(echo $CASES) " in
*" lora/stage_c_tiny_lora_kohya_all_bf16 "*) ;;
*) echo "ERROR: lora/stage_c_tiny_lora_kohya_all_bf16 missing from $SHARED_DIR/golden"; exit 99 ;;
esac
for c in $CASES; do golden_run "$c" --strict; done
for c in $CASES; do golden_run "$c" --strict --threads 1; done
exit $fail
