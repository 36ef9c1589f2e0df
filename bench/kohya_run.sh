#!/bin/bash
# kohya_run.sh full|lora [EPOCHS] — kohya's sd-scripts trainers (bench/kohya_gpu.sh put them beside
# this file) on the files gpu_check.sh's seed mode makes, with the seed tutorial's settings
# (shared/context/seed-tutorial.txt); run from the bundle (devrun/), as gpu_check.sh kohya does.
#   full: stable_cascade_train_stage_c.py, the tutorial's command on the random full-size Stage C
#         (bf16 autocast, fp32 master weights as sd-scripts loads them, Adafactor with
#         scale_parameter/relative_step/warmup_init off, lr 1e-4, gradient checkpointing,
#         adaptive loss weight, a sample and a bf16 checkpoint every epoch)
#   lora: stable_cascade_train_c_network.py, networks.lora dim 16 alpha 8 on Stage C lite with
#         Adafactor, bf16 autocast, Stage C only (--network_train_unet_only: ours trains no text
#         encoder LoRA); the branch builds only the full Stage C, so the launcher sets its
#         defaults from manifests/stage_c_lite.json
# Each prints 'kohya full|lora: N steps, s/step median ... mean ..., max_memory_allocated ...,
# max_memory_reserved ...' (kohya_launch.py); kohya's own output goes to $OUT/kohya_MODE.txt.
# Settings a caller may set: W (weights), T (fixture, dataset TOML, prompts), KOHYA_ARGS (more
# arguments for both trainers, e.g. --cache_latents), KOHYA_FULL=stage_c_lite (full fine-tune of
# the lite Stage C instead: a check on a machine too small for the 3.6B one).
set -u
mode=${1:?usage: kohya_run.sh full|lora [EPOCHS]}
epochs=${2:-2}
k=$(dirname "$0")
W=${W:-/tmp/cascade-weights} T=${T:-/tmp/cascade-train} out=${OUT:-/tmp}
mkdir -p "$out"
for f in "$k/sd-scripts/stable_cascade_train_stage_c.py" "$T/ds.toml" "$W/stage_c_lite_bf16.safetensors"; do
    [ -f "$f" ] || { echo "kohya_run.sh: $f: missing (bench/kohya_gpu.sh, gpu_check.sh seed files)" >&2; exit 1; }
done
opt=(--optimizer_type adafactor --optimizer_args "scale_parameter=False" "relative_step=False" "warmup_init=False")
common=(--mixed_precision bf16 --learning_rate 1e-4 "${opt[@]}" --gradient_checkpointing
    --max_train_epochs "$epochs" --effnet_checkpoint_path "$W/effnet_encoder_bf16.safetensors"
    --dataset_config "$T/ds.toml" --text_model_checkpoint_path "$W/text_encoder_bf16.safetensors")
# accelerate launch --num_cpu_threads_per_process 8, as the tutorial starts it (one process)
export OMP_NUM_THREADS=8
L="python3 $k/kohya_launch.py --tokenizer tokenizer --label $mode"
common+=(--console_log_simple)
# KOHYA_FULL=stage_c_lite: the full fine-tune of Stage C lite (a check on a small machine)
full=${KOHYA_FULL:-stage_c}
fcfg=(); [ "$full" = stage_c ] || fcfg=(--stage-c-config "manifests/$full.json")
case $mode in
full)
    rm -rf "$T/kohya_seed"
    $L "${fcfg[@]}" "$k/sd-scripts/stable_cascade_train_stage_c.py" "${common[@]}" --save_precision bf16 \
        --max_data_loader_n_workers 2 --persistent_data_loader_workers --save_every_n_epochs 1 \
        --output_dir "$T/kohya_seed" --output_name testv1 --stage_c_checkpoint_path "$W/${full}_bf16.safetensors" \
        --previewer_checkpoint_path "$W/previewer_bf16.safetensors" --sample_every_n_epochs 1 \
        --sample_prompts "$T/p.txt" --adaptive_loss_weight ${KOHYA_ARGS:-} >"$out/kohya_full.txt" 2>&1
    rc=$?
    ls "$T/kohya_seed" 2>&1 | tr '\n' ' ' | sed 's/^/kohya full files: /'; echo
    rm -rf "$T/kohya_seed"   # GBs of checkpoints
    ;;
lora)
    rm -rf "$T/kohya_lora"
    $L --stage-c-config manifests/stage_c_lite.json "$k/sd-scripts/stable_cascade_train_c_network.py" "${common[@]}" \
        --network_module networks.lora --network_dim 16 --network_alpha 8 --network_train_unet_only --save_model_as safetensors \
        --output_dir "$T/kohya_lora" --output_name l --stage_c_checkpoint_path "$W/stage_c_lite_bf16.safetensors" \
        ${KOHYA_ARGS:-} >"$out/kohya_lora.txt" 2>&1
    rc=$?
    ls -l "$T/kohya_lora" 2>&1 | awk 'NR > 1 { printf "%s %s  ", $5, $NF } END { print "" }' | sed 's/^/kohya lora files: /'
    ;;
*) echo "kohya_run.sh: $mode: expected full or lora" >&2; exit 2 ;;
esac
grep "^kohya $mode:" "$out/kohya_$mode.txt" || { echo "kohya $mode: failed (rc $rc):"; grep -v "^ *[0-9]*%\|it/s\]$" "$out/kohya_$mode.txt" | tail -15 | cut -c1-220; }
exit $rc
