#!/bin/sh
# The training calls (tests/test_api_train): the key table and refusals; a
# run through the API gives the same checkpoint bytes as `cascade train`
# with the same options; a run stopped from the callback leaves its state and
# nothing else, and resumed gives the uninterrupted run's bytes.
. "$TOP_SRCDIR/tests/cli_setup.sh"
G=$SHARED_DIR/golden
T="$(dirname "$BIN")/tests/test_api_train"
FX="$(dirname "$BIN")/tests/train_fixture"
[ -x "$T" ] && [ -x "$FX" ] || { echo "ERROR: test_api_train / train_fixture not built"; exit 99; }
"$T" && ok "key table and refusals" || bad "key table and refusals"
[ -f "$G/stage_c_tiny.weights.safetensors" ] && [ -d "$SHARED_DIR/tokenizer" ] || { echo "no golden files: runs skipped"; exit $fail; }
"$FX" "$tmp/fx" || exit 99
SC=$G/stage_c_tiny.weights.safetensors EF=$G/effnet_slim.weights.safetensors TE=$tmp/fx/text_encoder.safetensors
if "$T" "$SC" "$EF" "$TE" "$SHARED_DIR/tokenizer" "$tmp/fx/images" "$tmp/api"; then
    ok "API runs: 4 steps; stopped from the callback, state only; resumed"
else
    bad "API runs"
fi
if $BIN train --stage_c_checkpoint_path "$SC" --effnet_checkpoint_path "$EF" --text_model_checkpoint_path "$TE" \
    --tokenizer "$SHARED_DIR/tokenizer" --threads 1 -q --train_data_dir "$tmp/fx/images" --resolution 128 \
    --train_batch_size 2 --seed 3 --adaptive_loss_weight --max_train_epochs 2 --output_name t \
    --output_dir "$tmp/cli" 2>"$tmp/err"; then
    cmp "$tmp/cli/t.safetensors" "$tmp/api/full/t.safetensors" && ok "the API's checkpoint = the CLI's" ||
        bad "the API's checkpoint differs from the CLI's"
    cmp "$tmp/api/full/t.safetensors" "$tmp/api/stop/t.safetensors" && ok "stopped + resumed = uninterrupted" ||
        bad "the resumed API run differs"
else
    bad "cascade train: $(cat "$tmp/err")"
fi
exit $fail
