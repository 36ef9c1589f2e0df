#!/bin/sh
# cascade train on the golden tiny Stage C with a tiny CLIP (tests/train_fixture)
# and four small PNGs: the log has one finite loss per step, the checkpoints
# exist and load back (training goes on from them, bf16 too), bad options
# exit 2 with one line, missing files exit 1 with one line and leave no
# output folder, an interrupted run (stopped mid-step through the real
# SIGINT path) resumed from its state ends with the same bytes as an
# uninterrupted one (also mid gradient accumulation), and the seed
# tutorial's kohya command (paths replaced) runs.
. "$TOP_SRCDIR/tests/cli_setup.sh"
G=$SHARED_DIR/golden
[ -f "$G/stage_c_tiny.weights.safetensors" ] && [ -d "$SHARED_DIR/tokenizer" ] || { echo "no golden files: skip"; exit 77; }
FX="$(dirname "$BIN")/tests/train_fixture"
[ -x "$FX" ] || { echo "ERROR: $FX not built (make check builds it)"; exit 99; }
"$FX" "$tmp/fx" || exit 99
SC=$G/stage_c_tiny.weights.safetensors EF=$G/effnet_slim.weights.safetensors PV=$G/previewer.weights.safetensors
M="--stage_c_checkpoint_path $SC --effnet_checkpoint_path $EF --text_model_checkpoint_path $tmp/fx/text_encoder.safetensors"
M="$M --tokenizer $SHARED_DIR/tokenizer --threads 1 -q"
D="--train_data_dir $tmp/fx/images --resolution 128 --train_batch_size 2"
T="$BIN train $M $D --seed 3 --adaptive_loss_weight --output_name t"
# the scalar kernels take ~10x longer a step: that level runs the run, the
# interrupt + resume and the refusals only
full=1
[ "$CASCADE_SIMD" = scalar ] && full=0
printf 'a red square --w 128 --h 128 --s 2 --d 5\n# a comment\n\nstripes --n blurry --w 96 --h 64 --s 1\n' >"$tmp/p.txt"

# 1. a run: 3 epochs of 2 batches, a checkpoint every epoch, samples at epoch 3
# (under umask 027: the checkpoints get mode 640, as open() would give them)
if (umask 027; exec $T --max_train_epochs 3 --save_every_n_epochs 1 --sample_every_n_epochs 3 --sample_prompts "$tmp/p.txt" \
    --previewer_checkpoint_path "$PV" --output_dir "$tmp/a" 2>"$tmp/err"); then
    n=$(wc -l <"$tmp/a/t.jsonl")
    fin=$(sed -n 's/.*"loss":\([^,]*\),.*/\1/p' "$tmp/a/t.jsonl" | awk '$1+0 == $1 && $1 > 0 && $1 < 1e30' | wc -l)
    [ "$n" -eq 6 ] && [ "$fin" -eq 6 ] && ok "log: 6 steps, finite losses" || bad "log: $n lines, $fin finite: $(cat "$tmp/a/t.jsonl")"
    for f in t-000001 t-000002 t; do [ -s "$tmp/a/$f.safetensors" ] || bad "no $f.safetensors"; done
    m=$(stat -c %a "$tmp/a/t.safetensors" "$tmp/a/t-000001.safetensors" | sort -u)
    [ "$m" = 640 ] && ok "checkpoints: mode 640 under umask 027" || bad "checkpoint modes under umask 027: $m"
    [ -e "$tmp/a/t-000003.safetensors" ] && bad "a numbered file for the last epoch (kohya writes t.safetensors)"
    for f in t_e000003_00 t_e000003_01; do [ -s "$tmp/a/sample/$f.png" ] || bad "no sample $f.png"; done
    [ -z "$(find "$tmp/a" -name '*.tmp*')" ] || bad "temporary files left: $(find "$tmp/a" -name '*.tmp*')"
else
    bad "training run: $(cat "$tmp/err")"
fi
cmp -s "$tmp/a/t-000001.safetensors" "$tmp/a/t.safetensors" && bad "the weights did not change between epochs"
cmp -s "$SC" "$tmp/a/t.safetensors" && bad "the weights did not change"
# the same tensors under the same names and shapes as the file trained from:
# what ComfyUI's detection reads (tests/ref/comfy_detect_ref.py ran ComfyUI's
# loader on full-size checkpoints saved so, doc/training.md §9)
names() {
    n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
    tail -c +9 "$1" | head -c "$n" | grep -o '"[^"]*":{"dtype":"[A-Z0-9]*","shape":\[[0-9,]*\]' |
        sed 's/"dtype":"[A-Z0-9]*",//' | sort
}
names "$SC" >"$tmp/names0" && names "$tmp/a/t.safetensors" >"$tmp/names1"
[ -s "$tmp/names0" ] && cmp -s "$tmp/names0" "$tmp/names1" && ok "checkpoint: the original's $(wc -l <"$tmp/names0") names and shapes" ||
    bad "checkpoint names/shapes differ from the original: $(diff "$tmp/names0" "$tmp/names1" | head -3)"

# 2. checkpoints load back: training continues from them (bf16 output is half the size)
if [ $full -eq 0 ]; then
    :
elif $BIN train $M $D --stage_c_checkpoint_path "$tmp/a/t.safetensors" --max_train_steps 1 --save_precision bf16 \
    --output_dir "$tmp/back" --output_name b 2>"$tmp/err"; then
    s32=$(wc -c <"$tmp/a/t.safetensors") s16=$(wc -c <"$tmp/back/b.safetensors")
    [ $((s16 * 2)) -lt $((s32 + 65536)) ] && [ $((s16 * 2)) -gt $((s32 - 65536)) ] && ok "fp32 checkpoint loads; bf16 saved" ||
        bad "sizes fp32 $s32, bf16 $s16"
    $BIN train $M $D --stage_c_checkpoint_path "$tmp/back/b.safetensors" --max_train_steps 1 --output_dir "$tmp/back2" \
        2>"$tmp/err" && ok "bf16 checkpoint loads" || bad "bf16 checkpoint: $(cat "$tmp/err")"
else
    bad "training from a checkpoint: $(cat "$tmp/err")"
fi

# 3. interrupted mid-step (CASCADE_TEST_TRAIN_STOP raises SIGINT before that
# micro-batch's forward), resumed: the same final bytes as run 1
CASCADE_TEST_TRAIN_STOP=3 $T --max_train_epochs 3 --save_every_n_epochs 1 --output_dir "$tmp/b" 2>"$tmp/err"
rc=$?
if [ $rc -eq 130 ] && [ -f "$tmp/b/state-000003/train.json" ] && grep -q 'state saved' "$tmp/err"; then
    ok "interrupted: exit 130, state-000003"
    um=$(umask)
    want=$(printf '%o %o' $((0777 & ~$um)) $((0666 & ~$um)))
    m="$(stat -c %a "$tmp/b/state-000003") $(stat -c %a "$tmp/b/state-000003/train.json")"
    [ "$m" = "$want" ] || bad "state folder/file modes $m, umask $um wants $want"
    [ -z "$(find "$tmp/b" -name '.state*' -o -name '*.tmp*')" ] || bad "temporary files left after the interrupt"
    if $T --max_train_epochs 3 --save_every_n_epochs 1 --output_dir "$tmp/b" --resume "$tmp/b/state-000003" 2>"$tmp/err"; then
        cmp "$tmp/a/t.safetensors" "$tmp/b/t.safetensors" && ok "resumed = uninterrupted (bit for bit)" ||
            bad "resumed run differs from the uninterrupted one"
        [ "$(wc -l <"$tmp/b/t.jsonl")" -eq 6 ] && ok "log: 3 + 3 steps" || bad "resumed log: $(wc -l <"$tmp/b/t.jsonl") lines"
    else
        bad "resume: $(cat "$tmp/err")"
    fi
    $T --max_train_epochs 3 --output_dir "$tmp/b" --resume "$tmp/b/state-000003" --learning_rate 1e-3 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q 'saved by another run' "$tmp/err" && ok "resume with other options refused" ||
        bad "resume with another lr: exit $rc: $(cat "$tmp/err")"
else
    bad "interrupt: exit $rc: $(cat "$tmp/err")"
fi
# the same in the middle of a gradient accumulation cycle (AdamW, 2 micro-batches a step)
A="$T --max_train_epochs 3 --gradient_accumulation_steps 2 --optimizer_type AdamW --seed 5"
[ $full -eq 1 ] && { $A --output_dir "$tmp/c" 2>"$tmp/err" || bad "accumulation run: $(cat "$tmp/err")"; }
[ $full -eq 1 ] && CASCADE_TEST_TRAIN_STOP=3 $A --output_dir "$tmp/d" 2>"$tmp/err"
rc=$?
if [ $full -eq 0 ]; then
    :
elif [ $rc -eq 130 ] && $A --output_dir "$tmp/d" --resume "$tmp/d/state-000001" 2>"$tmp/err"; then
    cmp "$tmp/c/t.safetensors" "$tmp/d/t.safetensors" && ok "mid-accumulation resume = uninterrupted" ||
        bad "mid-accumulation resume differs"
else
    bad "mid-accumulation interrupt/resume: exit $rc: $(cat "$tmp/err")"
fi

# 3b. a schedule (cosine, 2 warmup steps of 6): the log's lr of step k is
# lr * f(k - 1) (diffusers' cosine factor; test_lr_sched checks the values
# against diffusers itself), and an interrupted run resumed at step 3 ends
# with the same bytes (the step count, not the steps of this process, drives
# the rate after a resume)
S="$T --max_train_epochs 3 --lr_scheduler cosine --lr_warmup_steps 2 --learning_rate 1e-3"
if $S --output_dir "$tmp/s1" 2>"$tmp/err"; then
    sed -n 's/.*"step":\([0-9]*\),.*"lr":\([^,]*\),.*/\1 \2/p' "$tmp/s1/t.jsonl" | awk -v W=2 -v T=6 '
        { s = $1 - 1; f = s < W ? s / W : 0.5 * (1 + cos(3.14159265358979 * (s - W) / (T - W)))
          want = 1e-3 * f; if ((want == 0 && $2 != 0) || (want != 0 && ($2 - want) / want > 1e-6 || (want - $2) / want > 1e-6)) bad++; n++ }
        END { exit !(n == 6 && !bad) }' && ok "cosine: the logged lr follows the schedule" ||
        bad "cosine lr: $(cat "$tmp/s1/t.jsonl")"
else
    bad "cosine run: $(cat "$tmp/err")"
fi
CASCADE_TEST_TRAIN_STOP=3 $S --output_dir "$tmp/s2" 2>"$tmp/err"
rc=$?
if [ $rc -eq 130 ] && $S --output_dir "$tmp/s2" --resume "$tmp/s2/state-000003" 2>"$tmp/err"; then
    cmp "$tmp/s1/t.safetensors" "$tmp/s2/t.safetensors" && ok "cosine: resumed = uninterrupted (bit for bit)" ||
        bad "cosine: the resumed run differs from the uninterrupted one"
    $T --max_train_epochs 3 --output_dir "$tmp/s2" --resume "$tmp/s2/state-000003" --learning_rate 1e-3 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q 'saved by another run' "$tmp/err" && ok "resume without the schedule refused" ||
        bad "resume without the schedule: exit $rc: $(cat "$tmp/err")"
else
    bad "cosine interrupt/resume: exit $rc: $(cat "$tmp/err")"
fi

# 4. bad options: exit 2, one line naming the option, nothing written
refuse() {
    want=$1 name=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ $rc -eq "$want" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$name" "$tmp/err" && [ ! -e "$tmp/no" ]; then
        ok "refused ($rc): $(cat "$tmp/err")"
    else
        bad "$name: exit $rc (want $want), $(wc -l <"$tmp/err") lines, output dir $(ls -d "$tmp/no" 2>/dev/null):"
        cat "$tmp/err"
    fi
    rm -rf "$tmp/no"
}
O="--output_dir $tmp/no"
refuse 2 "--optimizer_type" $T $O --optimizer_type lion
refuse 2 "fused_backward_pass" $T $O --fused_backward_pass --optimizer_type adamw
refuse 2 "fused_backward_pass" $T $O --fused_backward_pass --gradient_accumulation_steps 2
refuse 2 "fused_backward_pass" $T $O --fused_backward_pass --network_module networks.lora
refuse 2 "networks.dylora" $T $O --network_module networks.dylora
refuse 2 "--network_dim" $T $O --network_dim 4
refuse 2 "--network_dim" $T $O --network_module networks.lora --network_dim 0
refuse 2 "--network_alpha" $T $O --network_module networks.lora --network_alpha -1
refuse 2 "--network_dropout" $T $O --network_module networks.lora --network_dropout 0.1
refuse 2 "rank_dropout" $T $O --network_module networks.lora --network_args rank_dropout=0.1
refuse 2 "use_tucker" $T $O --network_module networks.lora --network_args conv_dim=4 use_tucker=True
refuse 2 "conv_dim" $T $O --network_module networks.lora --network_args conv_dim=x
refuse 2 "--save_model_as" $T $O --save_model_as ckpt
refuse 1 "nolora.safetensors" $T $O --network_module networks.lora --network_weights "$tmp/nolora.safetensors"
refuse 2 "--no_such_option" $T $O --no_such_option 1
refuse 2 "--learning_rate" $T $O --learning_rate x
refuse 2 "relative_step" $T $O --optimizer_type adafactor --optimizer_args relative_step=True
refuse 2 "--save_precision" $T $O --save_precision fp8
refuse 2 "--mixed_precision" $T $O --mixed_precision fp16
refuse 2 "--lr_scheduler" $T $O --lr_scheduler adafactor
refuse 2 "--lr_warmup_steps" $T $O --lr_warmup_steps 3
refuse 2 "--lr_warmup_steps" $T $O --lr_scheduler linear --lr_warmup_steps 1.5
refuse 2 "--lr_warmup_steps" $T $O --lr_scheduler linear --lr_warmup_steps -1
refuse 2 "--lr_scheduler" $T $O --lr_scheduler polynomial --learning_rate 1e-8
refuse 2 "--lr_scheduler_power" $T $O --lr_scheduler polynomial --lr_scheduler_power x
refuse 2 "--effnet_checkpoint_path" $BIN train --stage_c_checkpoint_path "$SC" $D $O
refuse 2 "--sample_prompts" $T $O --sample_prompts "$tmp/p.txt"
# missing or bad files: exit 1, one line naming the file, no output folder
refuse 1 "nope.safetensors" $T $O --stage_c_checkpoint_path "$tmp/nope.safetensors"
refuse 1 "effnope" $T $O --effnet_checkpoint_path "$tmp/effnope.safetensors"
refuse 1 "$tmp/noimages" $BIN train $M --train_data_dir "$tmp/noimages" $O
refuse 1 "noprompts.txt" $T $O --previewer_checkpoint_path "$PV" --sample_prompts "$tmp/noprompts.txt"
refuse 1 "text width" $T $O --effnet_checkpoint_path "$EF" --text_model_checkpoint_path "$G/text/clip_tiny_gelu.weights.safetensors"

# 6. LoRA (--network_module networks.lora): LoRA files in kohya's format
# checked through the library (train_fixture --check-lora: every module reads
# back, every lora_up trained, src/lora.c's merge = the training weights, bit
# for bit); kohya's metadata; a resumed run ends with the same bytes
# (Adafactor, and AdamW mid-accumulation); --network_weights starts from a
# saved LoRA, one of another rank is refused naming a key
L="$T --network_module networks.lora --network_dim 2 --network_alpha 1 --save_model_as safetensors"
if $L --max_train_epochs 3 --save_every_n_epochs 1 --output_dir "$tmp/la" 2>"$tmp/err"; then
    for f in t-000001 t-000002 t; do
        "$FX" --check-lora "$SC" "$tmp/la/$f.safetensors" >"$tmp/chk" 2>&1 && ok "LoRA $f: $(tr '\n' ' ' <"$tmp/chk")" ||
            bad "LoRA $f: $(cat "$tmp/chk")"
    done
    for k in '"ss_network_module":"networks.lora"' '"ss_network_dim":"2"' '"ss_network_alpha":"1.0"' \
        '"ss_base_model_version":"stable_cascade"' '"ss_epoch":"1"' '"ss_steps":"2"' '"modelspec.architecture":"stable-cascade/lora"'; do
        head -c 20000 "$tmp/la/t-000001.safetensors" | tr -d ' ' | grep -q -- "$k" || bad "t-000001: no metadata $k"
    done
    [ "$(wc -c <"$tmp/la/t.safetensors")" -lt "$(($(wc -c <"$SC") / 4))" ] && ok "a LoRA file, not the model" ||
        bad "t.safetensors is as large as the model"
    cmp -s "$tmp/la/t-000001.safetensors" "$tmp/la/t.safetensors" && bad "the LoRA did not change between epochs"
else
    bad "LoRA run: $(cat "$tmp/err")"
fi
CASCADE_TEST_TRAIN_STOP=3 $L --max_train_epochs 3 --save_every_n_epochs 1 --output_dir "$tmp/lb" 2>"$tmp/err"
rc=$?
if [ $rc -eq 130 ] && [ -f "$tmp/lb/state-000003/train.json" ] &&
    $L --max_train_epochs 3 --save_every_n_epochs 1 --output_dir "$tmp/lb" --resume "$tmp/lb/state-000003" 2>"$tmp/err"; then
    cmp "$tmp/la/t.safetensors" "$tmp/lb/t.safetensors" && ok "LoRA: resumed = uninterrupted (bit for bit)" ||
        bad "LoRA: the resumed run differs from the uninterrupted one"
else
    bad "LoRA interrupt/resume: exit $rc: $(cat "$tmp/err")"
fi
LA="$L --max_train_epochs 3 --gradient_accumulation_steps 2 --optimizer_type AdamW --seed 5"
if [ $full -eq 1 ]; then
    $LA --output_dir "$tmp/lc" 2>"$tmp/err" || bad "LoRA accumulation run: $(cat "$tmp/err")"
    CASCADE_TEST_TRAIN_STOP=3 $LA --output_dir "$tmp/ld" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 130 ] && $LA --output_dir "$tmp/ld" --resume "$tmp/ld/state-000001" 2>"$tmp/err"; then
        cmp "$tmp/lc/t.safetensors" "$tmp/ld/t.safetensors" && ok "LoRA mid-accumulation resume = uninterrupted" ||
            bad "LoRA mid-accumulation resume differs"
    else
        bad "LoRA mid-accumulation interrupt/resume: exit $rc: $(cat "$tmp/err")"
    fi
    if $L --network_weights "$tmp/la/t.safetensors" --max_train_steps 1 --output_dir "$tmp/le" 2>"$tmp/err"; then
        "$FX" --check-lora "$SC" "$tmp/le/t.safetensors" >"$tmp/chk" 2>&1 && ok "--network_weights: training goes on" ||
            bad "--network_weights: $(cat "$tmp/chk")"
    else
        bad "--network_weights: $(cat "$tmp/err")"
    fi
    refuse 1 "lora_down" $T $O --network_module networks.lora --network_dim 3 --network_weights "$tmp/la/t.safetensors"
    # the schedule in kohya's record: str(args.lr_warmup_steps), a ratio as int_or_float's float
    if $L --max_train_steps 1 --lr_scheduler linear --lr_warmup_steps 50% --output_dir "$tmp/lf" 2>"$tmp/err"; then
        for k in '"ss_lr_scheduler":"linear"' '"ss_lr_warmup_steps":"0.5"'; do
            head -c 20000 "$tmp/lf/t.safetensors" | tr -d ' ' | grep -q -- "$k" || bad "LoRA metadata: no $k"
        done
    else
        bad "LoRA with a schedule: $(cat "$tmp/err")"
    fi
fi

# 7. kohya's caption options (captions of several tags, a TOML config): they
# change the training (the weights differ from the same run without them);
# dropout every epoch = the same run on empty captions, bit for bit; an
# interrupted run resumed = the uninterrupted one (the draws follow the seed
# and the micro-batch, not the process)
mkdir -p "$tmp/capimg"
for n in a b c d; do cp "$tmp/fx/images/$n.png" "$tmp/capimg/"; done
printf 'red, square, small, flat, bright\n' >"$tmp/capimg/a.txt"
printf 'blue, circle, round, dark\n' >"$tmp/capimg/b.txt"
printf 'green, stripes, lines, pattern, soft, thin\n' >"$tmp/capimg/c.txt"
printf 'landscape, wide, sky, grass\n' >"$tmp/capimg/d.txt"
captoml() {
    printf '[general]\ncaption_extension = "%s"\n[[datasets]]\nresolution = 128\nbatch_size = 2\n' "$1" >"$tmp/cap.toml"
    printf '  [[datasets.subsets]]\n  image_dir = "%s"\n%s\n' "$tmp/capimg" "$2" >>"$tmp/cap.toml"
}
C="$BIN train $M --seed 3 --output_name t --max_train_epochs 2 --dataset_config $tmp/cap.toml"
OPTS='shuffle_caption = true
keep_tokens = 1
caption_tag_dropout_rate = 0.3
caption_dropout_rate = 0.25'
if [ $full -eq 1 ]; then
    captoml .txt "" && $C --output_dir "$tmp/k0" 2>"$tmp/err" || bad "captions, no options: $(cat "$tmp/err")"
    captoml .txt "$OPTS"
    if $C --output_dir "$tmp/k1" 2>"$tmp/err"; then
        ! grep -q 'not applied' "$tmp/err" && ! cmp -s "$tmp/k0/t.safetensors" "$tmp/k1/t.safetensors" && ok "caption options change the training" ||
            bad "caption options: not applied: $(cat "$tmp/err")"
    else
        bad "caption options: $(cat "$tmp/err")"
    fi
    CASCADE_TEST_TRAIN_STOP=2 $C --output_dir "$tmp/k2" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 130 ] && $C --output_dir "$tmp/k2" --resume "$tmp/k2/state-000002" 2>"$tmp/err"; then
        cmp "$tmp/k1/t.safetensors" "$tmp/k2/t.safetensors" && ok "caption options: resumed = uninterrupted (bit for bit)" ||
            bad "caption options: the resumed run differs"
    else
        bad "caption options interrupt/resume: exit $rc: $(cat "$tmp/err")"
    fi
    captoml .txt "caption_dropout_every_n_epochs = 1"
    $C --output_dir "$tmp/k3" 2>"$tmp/err" || bad "caption_dropout_every_n_epochs: $(cat "$tmp/err")"
    captoml .none ""   # no caption files: every caption is "" (with a note each)
    $C --output_dir "$tmp/k4" 2>"$tmp/err" || bad "empty captions: $(cat "$tmp/err")"
    cmp "$tmp/k3/t.safetensors" "$tmp/k4/t.safetensors" && ok "dropout every epoch = empty captions (bit for bit)" ||
        bad "caption_dropout_every_n_epochs = 1 differs from empty captions"
fi

# 7b. flip_aug: the mirrored latents are encoded (and cached: a latent whose
# key says flip=1), the training differs from the run without it, and an
# interrupted run resumed = the uninterrupted one
if [ $full -eq 1 ]; then
    captoml .txt "flip_aug = true"
    if $C --output_dir "$tmp/f1" --cache_latents_to_disk 2>"$tmp/err"; then
        ! grep -q 'not applied' "$tmp/err" && ! cmp -s "$tmp/k0/t.safetensors" "$tmp/f1/t.safetensors" &&
            ok "flip_aug changes the training" || bad "flip_aug: not applied: $(cat "$tmp/err")"
        [ "$(grep -l 'flip=1' "$tmp"/f1/cache/latent-*.safetensors 2>/dev/null | wc -l)" -eq 4 ] &&
            [ "$(grep -l 'flip=0' "$tmp"/f1/cache/latent-*.safetensors 2>/dev/null | wc -l)" -eq 4 ] &&
            ok "flip_aug: both latents of the 4 images cached" || bad "flip_aug: not 4 + 4 cached latents"
    else
        bad "flip_aug: $(cat "$tmp/err")"
    fi
    CASCADE_TEST_TRAIN_STOP=2 $C --output_dir "$tmp/f2" --cache_latents_to_disk 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 130 ] && $C --output_dir "$tmp/f2" --cache_latents_to_disk --resume "$tmp/f2/state-000002" 2>"$tmp/err"; then
        cmp "$tmp/f1/t.safetensors" "$tmp/f2/t.safetensors" && ok "flip_aug: resumed = uninterrupted (bit for bit)" ||
            bad "flip_aug: the resumed run differs"
    else
        bad "flip_aug interrupt/resume: exit $rc: $(cat "$tmp/err")"
    fi
fi

# 5. the seed tutorial's command (docs: ../shared/context/seed-tutorial.txt), paths replaced,
# with a kohya dataset TOML; epochs cut to 1 by a later option
cat >"$tmp/ds.toml" <<EOF
[general]
enable_bucket = true
caption_extension = ".txt"
[[datasets]]
resolution = 128
batch_size = 2
min_bucket_reso = 64
max_bucket_reso = 192
bucket_reso_steps = 64
  [[datasets.subsets]]
  image_dir = "$tmp/fx/images"
  num_repeats = 1
EOF
if [ $full -eq 0 ]; then
    :
elif CASCADE_TOKENIZER=$SHARED_DIR/tokenizer $BIN train \
    --mixed_precision bf16 --save_precision bf16 --max_data_loader_n_workers 2 --persistent_data_loader_workers \
    --gradient_checkpointing --learning_rate 1e-4 \
    --optimizer_type adafactor --optimizer_args "scale_parameter=False" "relative_step=False" "warmup_init=False" \
    --max_train_epochs 10 --save_every_n_epochs 1 --save_precision bf16 \
    --output_dir "$tmp/seed" --output_name "testv1" \
    --stage_c_checkpoint_path "$SC" \
    --effnet_checkpoint_path "$EF" \
    --previewer_checkpoint_path "$PV" \
    --dataset_config "$tmp/ds.toml" \
    --sample_every_n_epochs 1 --sample_prompts "$tmp/p.txt" \
    --adaptive_loss_weight \
    --text_model_checkpoint_path "$tmp/fx/text_encoder.safetensors" --threads 1 --max_train_epochs 1 \
    >"$tmp/out" 2>"$tmp/err"; then
    [ -s "$tmp/seed/testv1.safetensors" ] && [ -s "$tmp/seed/testv1.jsonl" ] && [ -s "$tmp/seed/sample/testv1_e000001_00.png" ] &&
        grep -q 'math stays float32' "$tmp/err" && ok "the seed's command trains, saves and samples" ||
        bad "seed command: $(ls -R "$tmp/seed"; cat "$tmp/err")"
else
    bad "seed command: $(cat "$tmp/err")"
fi
# --device: the whole step on a device, the fake plugin standing in for the
# CUDA one (CASCADE_PLUGIN_DIR). At the scalar level the final weights equal
# the CPU's byte for byte (at the vector levels the fake's data lies at other
# alignments, which moves last bits); full fine-tune and LoRA. A device that
# is not there: exit 1 with one line, nothing written.
fk="$(dirname "$BIN")/tests/.libs/libcascade-fake.so"
mkdir -p "$tmp/plug" && ln -sf "$fk" "$tmp/plug/libcascade-cuda.so"
if [ "$CASCADE_SIMD" = scalar ] && [ -f "$fk" ]; then
    for mode in full lora fused; do
        a=""
        [ $mode = lora ] && a="--network_module networks.lora --network_dim 2"
        [ $mode = fused ] && a="--fused_backward_pass"
        if $T $a --max_train_steps 2 --output_dir "$tmp/dc$mode" 2>"$tmp/err" &&
            CASCADE_PLUGIN_DIR=$tmp/plug $T $a --device cuda --max_train_steps 2 --output_dir "$tmp/dd$mode" 2>"$tmp/err"; then
            cmp -s "$tmp/dc$mode/t.safetensors" "$tmp/dd$mode/t.safetensors" && ok "--device ($mode): the CPU's bytes" ||
                bad "--device ($mode): the weights differ from the CPU run"
        else
            bad "--device ($mode): $(cat "$tmp/err")"
        fi
    done
fi
# a LoRA that samples between its steps (W' merged for the sampler, its
# device copies dropped after it, W0/A/B made again) trains as one that does
# not, on the CPU and on the device, byte for byte; the samples are written
if [ "$CASCADE_SIMD" = scalar ] && [ -f "$fk" ]; then
    a="--network_module networks.lora --network_dim 2 --max_train_steps 4"
    sm="--sample_every_n_epochs 1 --sample_prompts $tmp/p.txt --previewer_checkpoint_path $PV"
    if $T $a --output_dir "$tmp/ls0" 2>"$tmp/err" && $T $a $sm --output_dir "$tmp/ls1" 2>"$tmp/err" &&
        CASCADE_PLUGIN_DIR=$tmp/plug $T $a $sm --device cuda --output_dir "$tmp/ls2" 2>"$tmp/err"; then
        cmp -s "$tmp/ls0/t.safetensors" "$tmp/ls1/t.safetensors" && cmp -s "$tmp/ls0/t.safetensors" "$tmp/ls2/t.safetensors" &&
            [ -s "$tmp/ls1/sample/t_e000001_00.png" ] && [ -s "$tmp/ls2/sample/t_e000001_01.png" ] &&
            ok "LoRA with samples between steps: the same bytes (CPU, --device), samples written" ||
            bad "LoRA with samples: $(ls "$tmp/ls1/sample" "$tmp/ls2/sample" 2>&1 | tr '\n' ' '), or the LoRA differs"
    else
        bad "LoRA with samples: $(cat "$tmp/err")"
    fi
fi
# fused_backward_pass by itself where the unfused step does not fit: the
# fake's device made smaller than the tiny Stage C's weights and gradients
if [ "$CASCADE_SIMD" = scalar ] && [ -f "$fk" ] && [ -s "$tmp/ddfused/t.safetensors" ]; then
    FAKE_MEM_TOTAL=20000000 CASCADE_PLUGIN_DIR=$tmp/plug $T --device cuda --max_train_steps 2 --output_dir "$tmp/da" 2>"$tmp/err"
    grep -q "note: fused_backward_pass on: .*GiB free" "$tmp/err" && cmp -s "$tmp/ddfused/t.safetensors" "$tmp/da/t.safetensors" &&
        ok "fused_backward_pass on by itself on a small device: $(cat "$tmp/err")" ||
        bad "fused_backward_pass by itself: $(cat "$tmp/err"), $(cmp "$tmp/ddfused/t.safetensors" "$tmp/da/t.safetensors" 2>&1)"
    CASCADE_PLUGIN_DIR=$tmp/plug $T --device cuda --max_train_steps 2 --output_dir "$tmp/db" 2>"$tmp/err"
    ! grep -q "fused" "$tmp/err" && cmp -s "$tmp/ddfull/t.safetensors" "$tmp/db/t.safetensors" &&
        ok "fused_backward_pass off where the unfused step fits" || bad "fused_backward_pass on a 24 GiB device: $(cat "$tmp/err")"
fi
# a fused run's state resumes fused without the option (automatic follows the
# state) to the same bytes; an unfused state does not resume fused
if [ "$CASCADE_SIMD" = scalar ]; then
    if $T --fused_backward_pass --max_train_epochs 2 --save_every_n_epochs 1 --save_state --output_dir "$tmp/fa" 2>"$tmp/err" &&
        cp "$tmp/fa/t.safetensors" "$tmp/fa.safetensors" &&
        $T --max_train_epochs 2 --output_dir "$tmp/fa" --resume "$tmp/fa/state-000002" 2>"$tmp/err"; then
        cmp -s "$tmp/fa.safetensors" "$tmp/fa/t.safetensors" && ok "fused: resumed without the option = uninterrupted" ||
            bad "fused: the resumed run differs"
    else
        bad "fused resume: $(cat "$tmp/err")"
    fi
    $T --max_train_epochs 3 --output_dir "$tmp/b" --resume "$tmp/b/state-000003" --fused_backward_pass 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q 'saved by another run' "$tmp/err" && ok "an unfused state resumed fused: refused" ||
        bad "an unfused state resumed fused: exit $rc: $(cat "$tmp/err")"
fi
CASCADE_PLUGIN_DIR=$tmp/none $T --device cuda --max_train_steps 1 --output_dir "$tmp/dn" 2>"$tmp/err"
s=$?
[ $s -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/dn" ] && ok "--device cuda without the plugin: exit 1" ||
    bad "--device cuda without the plugin: exit $s, $(cat "$tmp/err"), $(ls "$tmp/dn" 2>&1)"
exit $fail
