#!/bin/bash
# Runs on the GPU machine from a bundle made by bench/gpu_bundle.sh (cd into it first):
#   bash gpu_check.sh [quick|full]
# quick: plugin and devices, the op tests against the CPU in fp32/bf16/fp16, every golden case
#        under golden/ on the GPU in fp32 and bf16.
# mini:  the op tests, a few goldens in bf16 and fp32, the lite forwards (flash attention
#        on and off), their per-op profile and three lite images: a few minutes of device time
# compare: this tree against a baseline bundle in old/ (lite and full forwards alternately), the op
#        tests, a few goldens, the lite forwards against the CPU (bf16, fp16)
# torch: ours, then PyTorch eager and compiled with CUDA graphs (bench/torch_gpu.py, needs
#        wheels/), then ours again, on the same lite weights
# short: compare's checks, the lite forwards side by side, Stage A and the text encoder against
#        the CPU, two lite images: one short call
# images: after compare: a per-op profile of two lite images, then lite and full images
# cpu:   the host CPU (issue 10): Stage C and B lite forwards in fp32, bf16 with AMX and bf16
#        without it (CASCADE_AMX=0: AVX512-BF16) at 4, 8 and 16 threads (Stage B at 16 only);
#        CPU_THREADS picks the counts, CPU_OLD=1 runs the baseline (old/bin) beside
# seed:  issue 13 on the GPU: the seed tutorial's command (full fine-tune of a random full-size
#        Stage C in bf16, Adafactor, gradient checkpointing, a kohya TOML at 1024^2, sampling every
#        epoch) with --device cuda, one epoch, then a LoRA of Stage C lite: wall time, steps,
#        device memory peak, the files written
# trainprof: where a step of the seed's full fine-tune goes: test_train_dev on the device, the step
#        time with the baseline plugin (old/bin) and this tree's alternately, then an nsys timeline's
#        kernel and API sums (or, without nsys, the per-op profile)
# toggle VAR[=V1,V2,...] [lite]: the op tests, a few goldens in bf16, the device training step, then
#        Stage C and B forwards (lite, and full unless 'lite') with the switch VAR=0 and VAR=1
#        alternately (e.g. CASCADE_GELU_EPILOGUE) and the baseline (old/bin) beside them;
#        VAR=A,B: all at 0, each alone at 1, then all at 1; VAR=V1,V2 (one switch): each value, each
#        also with the lite forwards against the CPU (a switch of several forms: VAR=1,2,3); twice in turn;
#        lite against the CPU, Stage A's 1024^2 decode in the same settings and against the CPU,
#        and a lite image pair (old/bin, bin)
# kohya: issue 13's bench: kohya's sd-scripts (bench/kohya_gpu.sh put it in kohya/) and ours on the
#        seed files: the full fine-tune, then the LoRA of Stage C lite (bf16 autocast both), each
#        KOHYA_EPOCHS (2) epochs of 4 steps: s/step (median of the gaps between optimizer steps,
#        the first step left out) and the device peak side by side; logs in $OUT.
#        KOHYA_RUNS=full or KOHYA_RUNS=lora runs one half (two calls if one would pass 10 minutes);
#        KOHYA_RUNS=fused: ours only, the full fine-tune with --fused_backward_pass (the 24 GB path:
#        peak ~18 GiB expected), the unfused one beside it for the step time;
#        KOHYA_RUNS=gemm: ours only, the full fine-tune with its products' plans logged
#        ($CASCADE_GEMM_LOG=1: does each get a cuBLASLt algorithm, which one);
#        KOHYA_RUNS=ours_lora: ours only, the LoRA (no merged W': peak ~4.2 GiB expected), then the
#        same with a sample every epoch (the samples written);
#        KOHYA_RUNS=cpu_lora: ours only, the same LoRA on the host CPU (--device cpu, all cores):
#        issue 13's CPU step time and host RSS on the 16-core machine
# pair:  after compare (its weights): whole lite and full images with the baseline (old/bin) and
#        this tree alternately (two in one process: the second is the steady state), then Stage B
#        with GRN folded into fc2 and not ($CASCADE_GRN_FOLD=0)
# kernels: the lite forwards under Nsight Compute (graphs off): each kernel's GPU time, summed by
#        kernel name (bench/ncu_sum.py), against the forward's wall time; KERNEL_STAGES picks
#        the stages (default "c b"; a: Stage A's 1024^2 decode, batch 1)
# upload: the first (weight-uploading) lite forwards with the plugin in old/ (the baseline) and in
#        bin/, alternately, and the plugin's own tests
# cold:  a whole full-bf16 image in a fresh process, twice (an empty hash cache each time), every
#        stderr line stamped with the seconds since the start: where a cold start's time goes
# final: the closing run: op tests (both flash forms), lite forwards (both flash forms) and full
#        forwards against the CPU,
#        lite and full images (cold, and two in one process), and PyTorch eager on the same
#        Stage C lite weights as a golden case for our runner (needs wheels/: bench/README.md)
# perf:  full without the fp16 and profile runs (flash attention on and off instead)
# full:  also random full-size weights (written here from the manifests): Stage C and B
#        forwards on the GPU against the CPU (bf16, fp16, fp32), a per-op profile, and whole
#        1024^2 images (lite-bf16 and full-bf16) with their time and device memory peak.
# Logs go to $OUT (or /tmp), a summary to stdout.
set -u
mode=${1:-quick}
out=${OUT:-/tmp}
cub=$(dirname "$(find / -name 'libcublasLt.so.13' -not -path '/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$PWD/bin:$PWD/lib:$cub CASCADE_PLUGIN_DIR=$PWD/bin
B=$PWD/bin M=$PWD/manifests
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -f golden.tar.xz ] && [ ! -f golden/.unpacked ]; then   # GOLDEN=1 bench/gpu_bundle.sh
    mkdir -p golden && python3 -c "import tarfile; tarfile.open('golden.tar.xz').extractall('golden')" && touch golden/.unpacked
fi
lite_weights() {
    W=/tmp/cascade-weights; mkdir -p $W
    for v in stage_c_lite stage_b_lite text_encoder; do timeout 100 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done
    timeout 100 $B/mkweights $M/stage_a.json $W/stage_a.safetensors f32 & wait
}
image() {   # variant: one image in a fresh process (cold start, stages loaded one at a time: the
            # device memory peak), then two in one process (the second shows the steady state)
    local v=$1 s; s=$([ "$v" = lite ] && echo _lite)
    mkdir -p $W/$v; for f in stage_a text_encoder_bf16; do ln -sf $W/$f.safetensors $W/$v/; done
    ln -sf $W/stage_c${s}_bf16.safetensors $W/stage_b${s}_bf16.safetensors $W/$v/
    /usr/bin/time -f "wall %e s" $B/cascade generate --models $W/$v --tokenizer tokenizer -p "a photo of a cat" \
        --seed 7 --device cuda -o "$out/${v}_cold.png" --force 2>&1 | sed "s/^/$v cold: /"
    /usr/bin/time -f "wall %e s" $B/cascade generate --models $W/$v --tokenizer tokenizer -p "a photo of a cat" \
        --seed 7 --device cuda --count 2 --keep-loaded -o "$out/${v}_gpu.png" --force 2>&1
}
checks() {   # the plugin's and op tests, the device training step, a few goldens in bf16 and fp32
    timeout 120 $B/test_cuda_sgemm $B/libcascade-cuda.so 2>&1 | tail -1
    for p in bf16 fp16 fp32; do
        echo "op tests $p:"; CASCADE_BACKEND=cuda CASCADE_PRECISION=$p timeout 90 $B/test_backend_ops 2>&1 | grep -v "^ok"
    done
    CASCADE_BACKEND=cuda CASCADE_PRECISION=bf16 timeout 60 $B/test_backend_ops 2>&1 | grep -E "attn_block|mlp_block|ts_block"
    echo "train steps:"; SHARED_DIR=$PWD CASCADE_BACKEND=cuda timeout 180 $B/test_train_dev 2>&1 |
        grep -E "FAIL|worst|weights|left out"
    for c in sampling_c sampling_b stage_c_tiny op_attnblock; do for p in bf16 fp32; do
        timeout 60 $B/cascade-golden --device cuda --precision $p golden/$c 2>&1 | tail -n 1 | sed "s/^/golden $c $p: /"
    done; done
}
side_by_side() {   # size runs: this tree (bin/) and the baseline (old/bin/) alternately, twice
    local size=$1 runs=$2 i d
    for i in 1 2; do for d in old/bin bin; do
        echo "$size, $d:"; LD_LIBRARY_PATH=$PWD/$d:$PWD/lib:$cub CASCADE_PLUGIN_DIR=$PWD/$d $PWD/$d/stage \
            --dir $W --manifests $M --threads $(nproc) --device cuda --size $size --stage c,b --dtype bf16 \
            --precision bf16 --warmup 2 --runs $runs 2>&1 | grep "^| stage"
    done; done
}
if [ "$mode" = compare ] || [ "$mode" = short ]; then
    # this tree against a baseline bundle in old/ (its bin/ only: bench/gpu_bundle.sh of the
    # baseline commit) in one call; short: no full-size forwards, no fp16 or fp32 checks
    {
    checks
    lite_weights
    [ "$mode" = compare ] && for v in stage_c stage_b; do timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done
    side_by_side lite 5
    wait
    [ "$mode" = compare ] && side_by_side full 3
    S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
    $S --size lite --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 1 --runs 1
    $S --stage a --dtype f32 --batch 1 --precision bf16 --check 1 --warmup 1 --runs 3
    $S --stage t --dtype bf16 --precision bf16 --check 1 --warmup 1 --runs 3
    if [ "$mode" = compare ]; then
        $S --size lite --stage c,b --dtype bf16 --precision fp16 --check 1 --warmup 1 --runs 1
        $S --stage t --dtype bf16 --precision fp32 --check 1 --warmup 1 --runs 3
    else
        mkdir -p $W/lite; for f in stage_a text_encoder_bf16 stage_c_lite_bf16 stage_b_lite_bf16; do ln -sf $W/$f.safetensors $W/lite/; done
        timeout 40 $B/cascade generate --models $W/lite --tokenizer tokenizer -p "a photo of a cat" \
            --seed 7 --device cuda --count 2 --keep-loaded -o "$out/lite_gpu.png" --force 2>&1
    fi
    } >"$out/$mode.txt" 2>&1
    grep -v '^{"engine' "$out/$mode.txt" | grep -E "PASS|FAIL|golden|_block|^\||rel_l2|steps in|done in|peak|wall|error|lite|full|tests|train|Stage" | cut -c1-220
    exit 0
fi
if [ "$mode" = images ]; then   # after compare (its weights): a per-op profile of two lite images, then images
    W=/tmp/cascade-weights
    {
    mkdir -p $W/lite; for f in stage_a text_encoder_bf16 stage_c_lite_bf16 stage_b_lite_bf16; do ln -sf $W/$f.safetensors $W/lite/; done
    CASCADE_PROFILE=1 $B/cascade generate --models $W/lite --tokenizer tokenizer -p "a photo of a cat" \
        --seed 7 --device cuda --count 2 --keep-loaded -o "$out/lite_prof.png" --force 2>&1 | grep -v "^.*Stage . [0-9]*/" | tail -150
    image lite
    image full
    } >"$out/images.txt" 2>&1
    grep -E "steps in|done in|peak|wall|error|Stage|text" "$out/images.txt" | cut -c1-220
    exit 0
fi
if [ "$mode" = cpu ]; then   # CPU_THREADS (default "16 8 4"); CPU_OLD=1: the baseline (old/bin) beside;
                             # CPU_MODES (default "fp32 bf16 bf16-noamx"; bf16-apack: CASCADE_AMX_APACK=1);
                             # CPU_PROFILE=1: each run's op profile (CASCADE_PROFILE) too
    W=/tmp/cascade-weights
    [ -f $W/stage_c_lite_bf16.safetensors ] || lite_weights
    grep -m1 "model name" /proc/cpuinfo
    {
    for t in ${CPU_THREADS:-16 8 4}; do
        for p in ${CPU_MODES:-fp32 bf16 bf16-noamx}; do
            for d in bin $([ "${CPU_OLD:-0}" = 1 ] && echo old/bin); do
                echo "threads $t, $p, $d:"
                LD_LIBRARY_PATH=$PWD/$d:$PWD/lib:$cub CASCADE_AMX=$([ $p = bf16-noamx ] && echo 0 || echo 1) \
                    CASCADE_AMX_APACK=$([ $p = bf16-apack ] && echo 1 || echo 0) CASCADE_PROFILE=${CPU_PROFILE:-0} timeout 200 \
                    $PWD/$d/stage --dir $W --manifests $M --device cpu --size lite --dtype bf16 --warmup 1 --runs 2 \
                    --threads $t --stage $([ $t = 16 ] && echo c,b || echo c) --precision $(echo $p | cut -d- -f1) 2>&1 |
                    grep -E "^\| stage|^op profile|^  [a-zA-Z]"
            done
        done
    done
    } >"$out/cpu.txt" 2>&1
    cat "$out/cpu.txt" | cut -c1-220
    exit 0
fi
seed_files() {   # seed and kohya: random weights, the fixture's images, a prompt, the dataset TOML
    W=/tmp/cascade-weights T=/tmp/cascade-train; mkdir -p $W $T
    for v in stage_c stage_c_lite text_encoder effnet_encoder previewer; do
        [ -f $W/${v}_bf16.safetensors ] || timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 &
    done; wait
    [ -d $T/fx/images ] || $B/train_fixture $T/fx >/dev/null
    printf 'a photo of a cat --w 1024 --h 1024 --s 20\n' >$T/p.txt
    printf '[general]\nenable_bucket = true\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 1024\nbatch_size = 2\n  [[datasets.subsets]]\n  image_dir = "%s"\n  num_repeats = 2\n' \
        "$T/fx/images" >$T/ds.toml
}
seed_full() {   # EPOCHS [ARGS]: the seed command, full Stage C (bf16 file), --device cuda
    local e=$1; shift
    rm -rf $T/seed
    /usr/bin/time -f "wall %e s, peak host RSS %M KiB" $B/cascade train --device cuda --tokenizer tokenizer \
        --mixed_precision bf16 --save_precision bf16 --max_data_loader_n_workers 2 --persistent_data_loader_workers \
        --gradient_checkpointing --learning_rate 1e-4 \
        --optimizer_type adafactor --optimizer_args "scale_parameter=False" "relative_step=False" "warmup_init=False" \
        --max_train_epochs 10 --save_every_n_epochs 1 --save_precision bf16 \
        --output_dir $T/seed --output_name testv1 \
        --stage_c_checkpoint_path $W/stage_c_bf16.safetensors --effnet_checkpoint_path $W/effnet_encoder_bf16.safetensors \
        --previewer_checkpoint_path $W/previewer_bf16.safetensors --dataset_config $T/ds.toml \
        --sample_every_n_epochs 1 --sample_prompts $T/p.txt --adaptive_loss_weight \
        --text_model_checkpoint_path $W/text_encoder_bf16.safetensors --max_train_epochs $e "$@" 2>&1
}
seed_lora() {   # EPOCHS [ARGS]: a LoRA of Stage C lite, --device cuda
    local e=$1; shift
    rm -rf $T/lora
    /usr/bin/time -f "wall %e s, peak host RSS %M KiB" $B/cascade train --device cuda --tokenizer tokenizer \
        --network_module networks.lora --network_dim 16 --network_alpha 8 --learning_rate 1e-4 \
        --optimizer_type adafactor --optimizer_args "scale_parameter=False" "relative_step=False" "warmup_init=False" \
        --gradient_checkpointing --max_train_epochs $e --output_dir $T/lora --output_name l \
        --stage_c_checkpoint_path $W/stage_c_lite_bf16.safetensors --effnet_checkpoint_path $W/effnet_encoder_bf16.safetensors \
        --dataset_config $T/ds.toml --text_model_checkpoint_path $W/text_encoder_bf16.safetensors "$@" 2>&1
}
ours_line() {   # LABEL LOG JSONL: our run as kohya_launch.py reports kohya's (seconds between steps, first left out)
    python3 - "$@" <<'PY'
import json, re, statistics, sys
label, log, jl = sys.argv[1:4]
try:
    d = [json.loads(l)["seconds"] for l in open(jl) if l.strip()][1:]
except OSError:
    d = []
t = open(log).read()
peak = re.findall(r"device memory peak ([0-9.]+ GiB)", t)
wall = re.findall(r"^wall ([0-9.]+ s)", t, re.M)
f = lambda g: f"{g(d):.3f}" if d else "-"
print(f"ours  {label}: {len(d) + 1 if d else 0} steps, s/step median {f(statistics.median)} mean {f(statistics.mean)} "
      f"(after the first), device memory peak {peak[-1] if peak else '-'}, wall {wall[-1] if wall else '-'}")
PY
}
if [ "$mode" = trainprof ]; then   # where a full fine-tune step goes (issue 13: ours 1.07 s/step, kohya 0.83)
    seed_files
    {
    echo "train steps:"; SHARED_DIR=$PWD CASCADE_BACKEND=cuda timeout 120 $B/test_train_dev 2>&1 | grep -E "SKIP|FAIL|worst|left out"
    for d in old/bin bin old/bin bin; do   # the baseline plugin (old/bin, if there) and this tree's, alternately
        [ -f $PWD/$d/libcascade-cuda.so ] || continue
        CASCADE_PLUGIN_DIR=$PWD/$d seed_full 1 --sample_every_n_epochs 1000 >"$out/trainprof.txt"
        ours_line "full, plugin $d" "$out/trainprof.txt" $T/seed/testv1.jsonl; rm -rf $T/seed
    done
    nsys=$(command -v nsys || timeout 20 find /usr /opt -name nsys -type f 2>/dev/null | head -1)
    if [ -n "$nsys" ]; then   # a timeline: GPU kernel time by kernel, CUDA API time (launches, syncs, copies)
        timeout 240 "$nsys" profile -t cuda -s none --cpuctxsw=none -o /tmp/tr -f true \
            bash -c "$(declare -f seed_full); B=$B W=$W T=$T seed_full 1 --sample_every_n_epochs 1000" >/dev/null 2>&1
        timeout 120 "$nsys" stats -q -r cuda_gpu_kern_sum,cuda_api_sum,cuda_gpu_mem_time_sum /tmp/tr.nsys-rep 2>&1 |
            head -90 | cut -c1-200
    else
        echo "no nsys here: the per-op profile (each op waited for)"
        CASCADE_PROFILE=1 seed_full 1 --sample_every_n_epochs 1000 | grep -A40 "op profile" | head -45
    fi
    rm -rf $T/seed
    } 2>&1 | tee "$out/trainprof_all.txt" | cut -c1-220
    exit 0
fi
if [ "$mode" = seed ]; then
    seed_files
    {
    echo "seed command, full Stage C (bf16 file), --device cuda:"
    seed_full 1 | tail -25
    ls -la $T/seed $T/seed/sample 2>&1 | tail -8
    echo "LoRA of Stage C lite, --device cuda:"
    seed_lora 2 | tail -12
    ls -la $T/lora 2>&1 | tail -4
    } >"$out/seed.txt" 2>&1
    cut -c1-220 "$out/seed.txt"
    exit 0
fi
if [ "$mode" = toggle ]; then
    var=${2:?toggle VAR[=V1,V2,...] [lite]} vals= listed=0
    [[ "$var" == *=* ]] && listed=1 && vals=${var#*=} && vals=${vals//,/ } && var=${var%%=*}
    {
    for p in bf16 fp16 fp32; do
        echo "op tests $p:"; CASCADE_BACKEND=cuda CASCADE_PRECISION=$p timeout 90 $B/test_backend_ops 2>&1 | grep -v "^ok"
    done
    for c in sampling_c sampling_b stage_c_tiny stage_b_tiny op_resblock_skip op_feedforward op_stage_a_resblock \
        stage_a_tiny_decode; do
        timeout 60 $B/cascade-golden --device cuda --precision bf16 golden/$c 2>&1 | tail -n 1 | sed "s/^/golden $c bf16: /"
    done
    echo "train steps:"; SHARED_DIR=$PWD CASCADE_BACKEND=cuda timeout 210 $B/test_train_dev 2>&1 |
        grep -E "FAIL|worst|weights|left out"
    W=/tmp/cascade-weights
    [ -f $W/stage_c_lite_bf16.safetensors ] || lite_weights
    sizes="lite full"; [ "${3:-}" = lite ] && sizes=lite   # toggle VAR lite: no full-size weights (a short call)
    [ "$sizes" = lite ] || for v in stage_c stage_b; do
        [ -f $W/${v}_bf16.safetensors ] || timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 &
    done; wait
    sets=()   # each an env assignment list: VAR=V1,V2: each value; A,B: all at 0, each alone at 1, all at 1
    if [ $listed = 1 ]; then
        for f in ${vals}; do sets+=("$var=$f"); done
        for f in ${vals}; do   # each value: the lite forwards against the CPU
            echo "$var=$f, check:"; env $var=$f $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda \
                --dtype bf16 --precision bf16 --size lite --stage c,b --check 1 --warmup 1 --runs 1 2>&1 | grep -E "rel_l2"
        done
    else
        vars=${var//,/ } s0=
        for v in $vars; do s0="$s0 $v=0"; done; sets+=("${s0# }")
        for v in $vars; do e=; for u in $vars; do e="$e $u=$([ $u = $v ] && echo 1 || echo 0)"; done; sets+=("${e# }"); done
        [ "$vars" = "$var" ] || { e=; for v in $vars; do e="$e $v=1"; done; sets+=("${e# }"); }
    fi
    for size in $sizes; do for round in 1 2; do for envs in "${sets[@]}"; do
        echo "$envs, $size:"; env $envs $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda --dtype bf16 \
            --precision bf16 --size $size --stage c,b --warmup 2 --runs 5 2>&1 | grep "^| stage"
    done; done; side_by_side $size 5; done
    $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda --dtype bf16 --precision bf16 --size lite \
        --stage c,b --check 1 --warmup 1 --runs 1 2>&1 | grep -E "rel_l2"
    for round in 1 2; do for envs in "${sets[@]}"; do   # Stage A's 1024^2 decode (batch 1)
        echo "$envs, stage a:"; env $envs $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda \
            --dtype f32 --precision bf16 --stage a --batch 1 --warmup 2 --runs 5 2>&1 | grep "^| stage"
    done; done
    $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda --dtype f32 --precision bf16 --stage a \
        --batch 1 --check 1 --warmup 1 --runs 1 2>&1 | grep -E "rel_l2"
    mkdir -p $W/lite; for f in stage_a text_encoder_bf16 stage_c_lite_bf16 stage_b_lite_bf16; do ln -sf $W/$f.safetensors $W/lite/; done
    for d in old/bin bin old/bin bin; do
        echo "lite image, $d:"
        LD_LIBRARY_PATH=$PWD/$d:$PWD/lib:$cub CASCADE_PLUGIN_DIR=$PWD/$d $PWD/$d/cascade generate --models $W/lite \
            --tokenizer tokenizer -p "a photo of a cat" --seed 7 --device cuda --count 2 --keep-loaded \
            -o "$out/lite_toggle.png" --force 2>&1 | grep -v "Stage . [0-9]*/"
    done
    } >"$out/toggle.txt" 2>&1
    grep -E "FAIL|PASS|worst|left out|golden|=[^ ]*,|^[a-z]*, |^\||rel_l2|image|steps in|peak|error" "$out/toggle.txt" |
        grep -v "^ok" | cut -c1-200
    exit 0
fi
if [ "$mode" = kohya ]; then   # kohya's sd-scripts (kohya/, bench/kohya_gpu.sh) and ours on the seed files
    seed_files
    e=${KOHYA_EPOCHS:-2} runs=${KOHYA_RUNS:-full lora}   # KOHYA_RUNS=full or lora: one half a call
    {
    if [[ " $runs " == *" full "* ]]; then
        bash kohya/kohya_run.sh full $e
        seed_full $e >"$out/ours_full.txt"; ours_line full "$out/ours_full.txt" $T/seed/testv1.jsonl
        grep -E "error|Error" "$out/ours_full.txt" | head -3
        rm -rf $T/seed   # GBs of checkpoints
    fi
    if [[ " $runs " == *" fused "* ]]; then   # ours fused and unfused alternately (no kohya)
        for a in --fused_backward_pass ""; do
            seed_full $e $a >"$out/ours_fused.txt"; ours_line "full ${a:-unfused}" "$out/ours_fused.txt" $T/seed/testv1.jsonl
            grep -E "error|Error|note: fused" "$out/ours_fused.txt" | head -3
            rm -rf $T/seed
        done
    fi
    if [[ " $runs " == *" cpu_lora "* ]]; then   # ours only: the LoRA on the host's cores
        seed_lora $e --device cpu --threads $(nproc) >"$out/ours_cpu_lora.txt"
        ours_line "LoRA on the CPU, $(nproc) threads" "$out/ours_cpu_lora.txt" $T/lora/l.jsonl
        grep -E "error|Error|wall" "$out/ours_cpu_lora.txt" | head -3
    fi
    if [[ " $runs " == *" gemm "* ]]; then   # ours only: the full fine-tune with its products' plans logged
        (export CASCADE_GEMM_LOG=1; seed_full $e) >"$out/ours_gemm.txt"
        ours_line "full, plans logged" "$out/ours_gemm.txt" $T/seed/testv1.jsonl
        grep -E "error|Error" "$out/ours_gemm.txt" | head -3; rm -rf $T/seed
        echo "plans: $(grep -c '^gemm plan' "$out/ours_gemm.txt"), without an algorithm:" \
            "$(grep '^gemm plan' "$out/ours_gemm.txt" | grep -c 'none')"
        grep '^gemm plan' "$out/ours_gemm.txt" | sed 's/^gemm plan: M [0-9]* N [0-9]* K [0-9]* ldb [0-9]* ldy [0-9]*, //; s/, align.*: / /' |
            sort | uniq -c | sort -rn | head -8
    fi
    if [[ " $runs " == *" ours_lora "* ]]; then   # ours only: the LoRA (no W' since 2026-12-07), then with sampling
        seed_lora $e --mixed_precision bf16 --network_train_unet_only >"$out/ours_lora.txt"
        ours_line lora "$out/ours_lora.txt" $T/lora/l.jsonl
        grep -E "error|Error|LoRA:" "$out/ours_lora.txt" | head -3
        seed_lora $e --mixed_precision bf16 --network_train_unet_only --sample_every_n_epochs 1 --sample_prompts $T/p.txt \
            --previewer_checkpoint_path $W/previewer_bf16.safetensors >"$out/ours_lora_sample.txt"
        ours_line "lora, sampling" "$out/ours_lora_sample.txt" $T/lora/l.jsonl
        grep -E "error|Error" "$out/ours_lora_sample.txt" | head -3; ls -la $T/lora/sample 2>&1 | tail -3
    fi
    if [[ " $runs " == *" lora "* ]]; then
        bash kohya/kohya_run.sh lora $e
        seed_lora $e --mixed_precision bf16 --network_train_unet_only >"$out/ours_lora.txt"
        ours_line lora "$out/ours_lora.txt" $T/lora/l.jsonl
        grep -E "error|Error|LoRA:" "$out/ours_lora.txt" | head -3
    fi
    } 2>&1 | tee "$out/kohya.txt" | cut -c1-300
    exit 0
fi
if [ "$mode" = pair ]; then
    W=/tmp/cascade-weights
    {
    for v in lite full; do
        s=$([ "$v" = lite ] && echo _lite); mkdir -p $W/$v
        for f in stage_a text_encoder_bf16 stage_c${s}_bf16 stage_b${s}_bf16; do ln -sf $W/$f.safetensors $W/$v/; done
        for d in old/bin bin old/bin bin; do
            echo "$v image, $d:"
            LD_LIBRARY_PATH=$PWD/$d:$PWD/lib:$cub CASCADE_PLUGIN_DIR=$PWD/$d /usr/bin/time -f "wall %e s" $PWD/$d/cascade \
                generate --models $W/$v --tokenizer tokenizer -p "a photo of a cat" --seed 7 --device cuda --count 2 \
                --keep-loaded -o "$out/${v}_pair.png" --force 2>&1 | grep -v "Stage . [0-9]*/"
        done
    done
    S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
    for f in 0 1 0 1; do for size in lite full; do
        echo "GRN fold $f, $size:"; CASCADE_GRN_FOLD=$f $S --size $size --stage b --dtype bf16 --precision bf16 \
            --warmup 2 --runs 5 2>&1 | grep "^| stage"
    done; done
    } >"$out/pair.txt" 2>&1
    grep -E "image|steps in|done in|peak|wall|error|fold|^\|" "$out/pair.txt" | cut -c1-220
    exit 0
fi
if [ "$mode" = torch ]; then   # compiled PyTorch (CUDA graphs) and eager beside ours, lite, one call
    lite_weights
    S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
    $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 5 2>&1 | grep "^| stage"
    (cd .. && timeout 400 python3 bench/torch_gpu.py --wheels devrun/wheels --weights-dir $W \
        --models ${TORCH_MODELS:-stage_c_lite,stage_b_lite} --dtypes bf16 --modes ${TORCH_MODES:-eager,graphs} 2>&1 | grep -v '^{' | tail -12)
    $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 5 2>&1 | grep "^| stage"
    exit 0
fi
if [ "$mode" = kernels ]; then
    lite_weights
    S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
    ncu=$(command -v ncu || find / -name ncu -type f -not -path '/proc/*' 2>/dev/null | head -1)
    for st in ${KERNEL_STAGES:-c b}; do
        a="--size lite --stage $st --dtype bf16"; [ "$st" = a ] && a="--stage a --dtype f32 --batch 1"
        $S $a --precision bf16 --warmup 2 --runs 5 2>&1 | grep "^| stage"
        CASCADE_GRAPHS=0 timeout 250 "$ncu" --clock-control none --cache-control none --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size --csv --page raw \
            $S $a --precision bf16 --warmup 0 --runs 1 >"$out/ncu_$st.csv" 2>"$out/ncu_$st.err"
        echo "ncu stage $st: rc $?, $(wc -l <"$out/ncu_$st.csv") lines"
        python3 ncu_sum.py "$out/ncu_$st.csv" 1 | head -40
    done
    exit 0
fi
if [ "$mode" = upload ]; then
    timeout 120 $B/test_cuda_sgemm $B/libcascade-cuda.so 2>&1 | grep -E "FAIL|staged|comparisons" | head -20
    lite_weights
    for i in 1 2; do for p in old bin; do
        echo "plugin $p:"
        CASCADE_PLUGIN_DIR=$PWD/$p CASCADE_FLASH=1 $B/stage --dir $W --manifests $M --threads $(nproc) --device cuda \
            --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 0 --runs 2 2>&1 | grep "^| stage"
    done; done
    exit 0
fi
if [ "$mode" = cold ]; then
    lite_weights
    for v in stage_c stage_b; do timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done; wait
    mkdir -p $W/full; for f in stage_a text_encoder_bf16 stage_c_bf16 stage_b_bf16; do ln -sf $W/$f.safetensors $W/full/; done
    for i in 1 2; do
        t0=$(date +%s.%N)
        XDG_CACHE_HOME=$(mktemp -d) $B/cascade generate --models $W/full --tokenizer tokenizer -p "a photo of a cat" \
            --seed 7 --device cuda -o "$out/cold$i.png" --force 2>&1 | while IFS= read -r l; do
            awk -v a="$(date +%s.%N)" -v b="$t0" -v l="$l" 'BEGIN { printf "%6.2f %s\n", a - b, l }'
        done | grep -v " Stage . [0-9]*/"
        awk -v a="$(date +%s.%N)" -v b="$t0" -v i=$i 'BEGIN { printf "cold %d: %.2f s\n", i, a - b }'
    done
    exit 0
fi
if [ "$mode" = final ]; then
    {
    timeout 120 $B/test_cuda_sgemm $B/libcascade-cuda.so 2>&1 | tail -1
    for f in 2 1; do for p in bf16 fp16 fp32; do
        echo "flash form $f, $p:"; CASCADE_FLASH=$f CASCADE_BACKEND=cuda CASCADE_PRECISION=$p timeout 60 $B/test_backend_ops 2>&1 | grep -v "^ok"
    done; done
    for c in sampling_c stage_c_tiny op_attnblock; do
        timeout 60 $B/cascade-golden --device cuda --precision bf16 golden/$c 2>&1 | tail -n 1 | sed "s/^/golden $c bf16: /"
    done
    lite_weights
    for v in stage_c stage_b; do timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done; wait
    S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
    $S --size lite --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 2 --runs 5
    echo "flash form 1 (keys converted by every query block):"
    CASCADE_FLASH=1 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 5
    $S --size full --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 2 --runs 5
    image lite
    image full
    (cd .. && timeout 200 python3 bench/torch_gpu.py --wheels devrun/wheels --weights-dir $W --models stage_c_lite \
        --dtypes bf16 --modes eager --save $W 2>&1 | tail -4)
    timeout 60 $B/cascade-golden --device cuda --precision bf16 $W/stage_c_lite_torch 2>&1 | tail -3
    } >"$out/final.txt" 2>&1
    grep -v '^{"engine' "$out/final.txt" | grep -E "PASS|FAIL|flash|golden|^\||rel_l2|steps in|done in|peak|wall|error|cold|torch" | cut -c1-220
    exit 0
fi
if [ "$mode" = mini ]; then
    S="$B/stage --dir /tmp/cascade-weights --manifests $M --threads $(nproc) --device cuda"
    {
    for f in 1 0; do for p in bf16 fp16 fp32; do
        CASCADE_FLASH=$f CASCADE_BACKEND=cuda CASCADE_PRECISION=$p timeout 60 $B/test_backend_ops 2>&1 | grep -v "^ok"
    done; done
    CASCADE_BACKEND=cuda CASCADE_PRECISION=bf16 timeout 60 $B/test_backend_ops 2>&1 | grep "attention"
    for c in sampling_c sampling_b stage_c_tiny op_attnblock; do
        for p in bf16 fp32; do
            timeout 60 $B/cascade-golden --device cuda --precision $p golden/$c 2>&1 | tail -n 1 | sed "s/^/golden $c $p: /"
        done
    done
    lite_weights
    $S --size lite --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 2 --runs 5
    CASCADE_FLASH=0 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 5
    CASCADE_PROFILE=1 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 1 --runs 1
    mkdir -p $W/lite; for f in stage_a text_encoder_bf16 stage_c_lite_bf16 stage_b_lite_bf16; do ln -sf $W/$f.safetensors $W/lite/; done
    /usr/bin/time -f "wall %e s" $B/cascade generate --models $W/lite --tokenizer tokenizer -p "a photo of a cat" \
        --seed 7 --device cuda --count 3 --keep-loaded -o "$out/lite_gpu.png" --force 2>&1 | grep -v "^.*Stage . [0-9]*/"
    } >"$out/mini.txt" 2>&1
    grep -v '^{"engine' "$out/mini.txt" | grep -E "PASS|FAIL|golden|attention|^\||rel_l2|steps in|done in|peak|wall|error|%" | cut -c1-220
    exit 0
fi
{
$B/cascade info | grep -E "plugin|gpus"
timeout 120 $B/test_cuda_sgemm $B/libcascade-cuda.so 2>&1 | tail -2
for p in fp32 bf16 fp16; do CASCADE_BACKEND=cuda CASCADE_PRECISION=$p timeout 120 $B/test_backend_ops 2>&1 | grep -v "^ok"; done
for p in fp32 bf16; do
    for c in $(find golden -name '*.io.safetensors' | sort); do
        n=${c%.io.safetensors}
        timeout 120 $B/cascade-golden --device cuda --precision $p "$n" >/tmp/g.out 2>&1
        echo "golden $p $? $(basename "$n"): $(tr '\n' ' ' </tmp/g.out | cut -c1-240)"
    done
done
} >"$out/quick.txt" 2>&1
grep -E "PASS|FAIL|gpus|plugin" "$out/quick.txt" | grep -v "^golden .* 0 " | cut -c1-200
echo "golden cases passed: $(grep -c '^golden .* 0 ' "$out/quick.txt") of $(grep -c '^golden ' "$out/quick.txt")"
[ "$mode" = full ] || [ "$mode" = perf ] || exit 0
W=/tmp/cascade-weights; mkdir -p $W
S="$B/stage --dir $W --manifests $M --threads $(nproc) --device cuda"
{
for v in stage_c_lite stage_b_lite text_encoder; do timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done
timeout 100 $B/mkweights $M/stage_a.json $W/stage_a.safetensors f32 & wait
$S --size lite --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 2 --runs 5
if [ "$mode" = full ]; then
    CASCADE_GRAPHS=0 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 3
    CASCADE_PROFILE=1 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 1 --runs 1
else
    CASCADE_FLASH=0 $S --size lite --stage c,b --dtype bf16 --precision bf16 --warmup 2 --runs 5
fi
image lite
for v in stage_c stage_b; do timeout 300 $B/mkweights $M/$v.json $W/${v}_bf16.safetensors bf16 & done; wait
$S --size full --stage c,b --dtype bf16 --precision bf16 --check 1 --warmup 2 --runs 3
image full
if [ "$mode" = full ]; then
    $S --size full --stage c,b --dtype bf16 --precision fp16 --check 1 --warmup 1 --runs 1
    CASCADE_PROFILE=1 $S --size full --stage c,b --dtype bf16 --precision bf16 --warmup 1 --runs 1
fi
} >"$out/full.txt" 2>&1
grep -v '^{"engine' "$out/full.txt" | grep -E "^\||rel_l2|steps in|done in|peak|wall|error|%" | cut -c1-200
