#!/bin/sh
# `cascade run FILE`: ComfyUI workflows (API and UI format, PNG chunks) on the
# demo networks: text-to-image, img2img and image variation run; the UI form
# gives the API form's pixels; SaveImage's prefix names the files; our own
# PNGs (generate's and run's) carry a workflow that reproduces them bit for
# bit; per-stage seeds matter; --dry-run explains; every broken graph is one
# error line naming the node, exit 1, nothing written.
. "$TOP_SRCDIR/tests/cli_setup.sh"
D="$(dirname "$0")/data/workflows"
[ -x "$PNGINFO" ] || { echo "ERROR: $PNGINFO not built"; exit 99; }
pixels() { "$PNGINFO" "$1" --pixels; }
R="$BIN run --demo --quiet --input $tmp"
mkdir -p "$tmp/o" "$tmp/e"
"$BIN" generate --demo --quiet -p "a red fox" -n blurry --seed 3 -W 64 -H 64 --steps-c 3 --steps-b 2 \
    --sampler dpmpp_2m --scheduler karras -o "$tmp/input.png" >/dev/null || bad "generate input"

# text-to-image: API, then the UI form (primitive seed, reroute, note) -> same pixels
$R "$D/t2i_api.json" -o "$tmp/o" >/dev/null && [ -f "$tmp/o/lighthouse_00001_.png" ] && ok t2i-api || bad t2i-api
$R "$D/t2i_ui.json" -o "$tmp/o" >/dev/null && [ -f "$tmp/o/lighthouse_00002_.png" ] && ok t2i-ui-counter || bad t2i-ui-counter
[ "$(pixels "$tmp/o/lighthouse_00001_.png")" = "$(pixels "$tmp/o/lighthouse_00002_.png")" ] &&
    ok ui-equals-api || bad ui-equals-api
# Stage B's own seed is used: the same graph with seed_b = seed_c differs
sed 's/"seed": 12/"seed": 11/' "$D/t2i_api.json" >"$tmp/sameseed.json"
$R "$tmp/sameseed.json" -o "$tmp/o" >/dev/null
[ "$(pixels "$tmp/o/lighthouse_00003_.png")" != "$(pixels "$tmp/o/lighthouse_00001_.png")" ] &&
    ok seed-b-used || bad seed-b-used
# ConditioningZeroOut on Stage B's negative is not Stage C's negative prompt
sed 's/"negative": \["10", 0\]/"negative": ["6", 0]/' "$D/t2i_api.json" >"$tmp/negb.json"
$R "$tmp/negb.json" -o "$tmp/o" >/dev/null
[ "$(pixels "$tmp/o/lighthouse_00004_.png")" != "$(pixels "$tmp/o/lighthouse_00001_.png")" ] &&
    ok zero-out-used || bad zero-out-used

# round trips: run's PNG, generate's PNG (a ComfyUI sampler and an official one)
for f in lighthouse_00001_ ; do
    $R "$tmp/o/$f.png" -o "$tmp/o" >/dev/null
    [ "$(pixels "$tmp/o/lighthouse_00005_.png")" = "$(pixels "$tmp/o/$f.png")" ] && ok roundtrip-run || bad roundtrip-run
done
$R "$tmp/input.png" -o "$tmp/o" >/dev/null && [ "$(pixels "$tmp/o/cascade_00001_.png")" = "$(pixels "$tmp/input.png")" ] &&
    ok roundtrip-generate-comfy || bad roundtrip-generate-comfy
"$BIN" generate --demo --quiet -p "(a fox:1.2)" -n x --seed 9 -W 64 -H 72 --steps-c 3 --steps-b 2 --sampler ddim \
    --eta 0.5 --cfg-rho 0.5 --shift-c 1.5 --round --prompt-style official -o "$tmp/off.png" >/dev/null
$R "$tmp/off.png" -o "$tmp/o" >/dev/null && [ "$(pixels "$tmp/o/cascade_00002_.png")" = "$(pixels "$tmp/off.png")" ] &&
    ok roundtrip-generate-official || bad roundtrip-generate-official

# a ComfyUI WebP (the graph in its EXIF, tests/ref/make_webp_case.py) runs as its API form does
mkdir -p "$tmp/webp"
$R "$D/t2i.webp" -o "$tmp/webp" >/dev/null && [ "$(pixels "$tmp/webp/lighthouse_00001_.png")" = "$(pixels "$tmp/o/lighthouse_00001_.png")" ] &&
    ok webp-exif || bad webp-exif

# dpmpp_2m_sde (Brownian-tree noise from the seed) round-trips too
"$BIN" generate --demo --quiet -p fox --seed 4 -W 64 -H 64 --steps-c 3 --steps-b 2 --sampler dpmpp_2m_sde \
    --scheduler karras -o "$tmp/sde.png" >/dev/null && mkdir -p "$tmp/sde" && $R "$tmp/sde.png" -o "$tmp/sde" >/dev/null &&
    [ "$(pixels "$tmp/sde/cascade_00001_.png")" = "$(pixels "$tmp/sde.png")" ] && ok roundtrip-sde || bad roundtrip-sde
# its _gpu variant is the same sampler on the CPU
"$PNGINFO" "$tmp/sde.png" prompt | sed 's/"dpmpp_2m_sde"/"dpmpp_2m_sde_gpu"/g' >"$tmp/sde_gpu.json"
grep -q dpmpp_2m_sde_gpu "$tmp/sde_gpu.json" && $R "$tmp/sde_gpu.json" -o "$tmp/sde" >/dev/null &&
    [ "$(pixels "$tmp/sde/cascade_00002_.png")" = "$(pixels "$tmp/sde.png")" ] && ok sde-gpu-alias || bad sde-gpu-alias

# two LoRAs on Stage C: the second LoraLoader takes the first one's CLIP
# (output 1), as ComfyUI's validate_prompt demands; the graph passes every
# check and only the demo's lack of LoRA files stops it
L="$TOP_SRCDIR/tests/data/lora"
"$BIN" generate --demo --quiet -p fox --seed 1 -W 64 -H 64 --steps-c 2 --steps-b 2 --lora "$L/peft.safetensors:0.8" \
    --lora-c "$L/stack_b.safetensors:-0.5" -o "$tmp/lora.png" >/dev/null || bad "generate with two LoRAs"
$R "$tmp/lora.png" --dry-run >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "(LoraLoader): LoRAs need real model files (not --demo)$" "$tmp/err" &&
    ok lora-chain-links || { bad lora-chain-links; cat "$tmp/err"; }

# img2img and image variation (LoadImage from --input), and their round trips
for w in img2img variation; do
    $R "$D/${w}_api.json" -o "$tmp/o" >/dev/null && [ -f "$tmp/o/${w}_00001_.png" ] && ok "$w" || bad "$w"
    $R "$tmp/o/${w}_00001_.png" -o "$tmp/o" >/dev/null
    [ "$(pixels "$tmp/o/${w}_00002_.png")" = "$(pixels "$tmp/o/${w}_00001_.png")" ] && ok "roundtrip-$w" || bad "roundtrip-$w"
done
[ "$(pixels "$tmp/o/variation_00001_.png")" != "$(pixels "$tmp/o/lighthouse_00001_.png")" ] && ok variation-differs ||
    bad variation-differs

# --dry-run: the plan, exit 0, nothing written
out=$($R "$D/img2img_api.json" --dry-run -o "$tmp/e") && [ -z "$(ls -A "$tmp/e")" ] &&
    printf '%s\n' "$out" | grep -q '^Stage C: node 8 (KSampler)$' &&
    printf '%s\n' "$out" | grep -q '^  steps 3, cfg 4, seed 11, denoise 0.7, shift 2$' &&
    printf '%s\n' "$out" | grep -q '^  steps 2, cfg 1.1, seed 12, denoise 1, shift 1$' &&
    printf '%s\n' "$out" | grep -q '^  negative  ConditioningZeroOut (zeros)$' &&
    printf '%s\n' "$out" | grep -q '^img2img: .*input.png' &&
    printf '%s\n' "$out" | grep -q '^size: 64x64, batch 1, compression 32' && ok dry-run || { bad dry-run; echo "$out"; }

# SaveLatent: Stage C's and Stage B's KSampler latents as ComfyUI .latent
# files (its default prefix makes latents/), the image unchanged by them
if command -v python3 >/dev/null; then
    python3 -c "import json,sys; g=json.load(open(sys.argv[1]))
g['20']={'class_type':'SaveLatent','inputs':{'samples':['8',0],'filename_prefix':'latents/ComfyUI'}}
g['21']={'class_type':'SaveLatent','inputs':{'samples':['11',0],'filename_prefix':'stage_b'}}
json.dump(g,open(sys.argv[2],'w'))" "$D/t2i_api.json" "$tmp/savelat.json"
    mkdir -p "$tmp/sl"
    hdr() { head -c 8000 "$tmp/sl/$1" | grep -a -q "$2"; }
    $R "$tmp/savelat.json" -o "$tmp/sl" >"$tmp/out" &&
        [ "$(pixels "$tmp/sl/lighthouse_00001_.png")" = "$(pixels "$tmp/o/lighthouse_00001_.png")" ] &&
        grep -q '/sl/latents/ComfyUI_00001_.latent$' "$tmp/out" && grep -q '/sl/stage_b_00001_.latent$' "$tmp/out" &&
        hdr latents/ComfyUI_00001_.latent '"latent_format_version_0":{"dtype":"F32","shape":\[0\]' &&
        hdr latents/ComfyUI_00001_.latent '"latent_tensor":{"dtype":"F32","shape":\[1,16,2,2\]' &&
        hdr stage_b_00001_.latent '"latent_tensor":{"dtype":"F32","shape":\[1,4,16,16\]' &&
        hdr stage_b_00001_.latent '"prompt":"{' && ok save-latent || { bad save-latent; cat "$tmp/out"; }
    # the same run again: the next numbers, the same latents; another seed: other latents
    $R "$tmp/savelat.json" -o "$tmp/sl" >/dev/null &&
        cmp -s "$tmp/sl/latents/ComfyUI_00001_.latent" "$tmp/sl/latents/ComfyUI_00002_.latent" &&
        cmp -s "$tmp/sl/stage_b_00001_.latent" "$tmp/sl/stage_b_00002_.latent" && ok save-latent-again ||
        bad save-latent-again
    sed 's/"seed": 11/"seed": 5/' "$tmp/savelat.json" >"$tmp/savelat5.json"
    $R "$tmp/savelat5.json" -o "$tmp/sl" >/dev/null &&
        ! cmp -s "$tmp/sl/latents/ComfyUI_00001_.latent" "$tmp/sl/latents/ComfyUI_00003_.latent" &&
        ok save-latent-seed || bad save-latent-seed
    $R "$tmp/savelat.json" --json -o "$tmp/sl" >"$tmp/out" && grep -q '"event":"latent","path":"[^"]*/sl/stage_b_00004_.latent"' "$tmp/out" &&
        [ "$(grep -c '"event":"image"' "$tmp/out")" -eq 1 ] && ok save-latent-json || { bad save-latent-json; cat "$tmp/out"; }
    # img2img: StageC_VAEEncode's output 0 (the encoded image), the same whatever the seed
    python3 -c "import json,sys; g=json.load(open(sys.argv[1]))
g['20']={'class_type':'SaveLatent','inputs':{'samples':['7',0],'filename_prefix':'enc'}}
json.dump(g,open(sys.argv[2],'w'))" "$D/img2img_api.json" "$tmp/enclat.json"
    sed 's/"seed": 11/"seed": 5/' "$tmp/enclat.json" >"$tmp/enclat5.json"
    $R "$tmp/enclat.json" -o "$tmp/sl" >/dev/null && $R "$tmp/enclat5.json" -o "$tmp/sl" >/dev/null &&
        hdr enc_00001_.latent '"latent_tensor":{"dtype":"F32","shape":\[1,16,2,2\]' &&
        "$(dirname "$BIN")/tests/latent_diff" "$tmp/sl/enc_00001_.latent" "$tmp/sl/enc_00002_.latent" | grep -q '^max 0, ' &&
        ok save-latent-encoded || bad save-latent-encoded
    out=$($R "$tmp/savelat.json" --dry-run -o "$tmp/e") && [ -z "$(ls -A "$tmp/e")" ] &&
        printf '%s\n' "$out" | grep -q '^latent: node 20 (SaveLatent): Stage C latent -> .*/e/latents/ComfyUI_NNNNN_.latent$' &&
        ok save-latent-dry-run || { bad save-latent-dry-run; echo "$out"; }
fi
# LoadLatent -> SaveLatent alone: ComfyUI's files copied in the current
# format (a file without the marker is scaled once, as LoadLatent does)
L2="$TOP_SRCDIR/tests/data/comfy_latent"
printf '%s\n' '{"1": {"class_type": "LoadLatent", "inputs": {"latent": "legacy.latent"}},' \
    ' "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "conv/legacy"}}}' >"$tmp/copy.json"
mkdir -p "$tmp/cp" "$tmp/cp2"
"$BIN" run --quiet --input "$L2" "$tmp/copy.json" -o "$tmp/cp" >/dev/null &&
    cp "$tmp/cp/conv/legacy_00001_.latent" "$tmp/legacy.latent" &&
    "$BIN" run --quiet --input "$tmp" "$tmp/copy.json" -o "$tmp/cp2" >/dev/null &&
    cmp -s "$tmp/cp/conv/legacy_00001_.latent" "$tmp/cp2/conv/legacy_00001_.latent" &&
    head -c 300 "$tmp/legacy.latent" | grep -a -q latent_format_version_0 && ok load-latent-copy || bad load-latent-copy
printf 'not a latent' >"$tmp/bad.latent"
sed 's/legacy.latent/bad.latent/' "$tmp/copy.json" >"$tmp/badcopy.json"
"$BIN" run --quiet --input "$tmp" "$tmp/badcopy.json" -o "$tmp/e" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "$tmp/bad.latent" "$tmp/err" && [ -z "$(ls -A "$tmp/e")" ] &&
    ok "bad-latent: $(cat "$tmp/err")" || { bad "bad-latent: exit $rc"; cat "$tmp/err"; }
sed 's/legacy.latent/nope.latent/' "$tmp/copy.json" >"$tmp/nolat.json"
"$BIN" run --quiet --input "$tmp" "$tmp/nolat.json" -o "$tmp/e" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "node 1 (LoadLatent): latent 'nope.latent' not found" "$tmp/err" && [ -z "$(ls -A "$tmp/e")" ] &&
    ok missing-latent || { bad "missing-latent: exit $rc"; cat "$tmp/err"; }

# broken graphs: exit 1, one line naming the node, nothing written
refuse() {  # refuse NAME REGEX FILE [options]
    name=$1 re=$2; shift 2
    $R "$@" -o "$tmp/e" >/dev/null 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$re" "$tmp/err" && [ -z "$(ls -A "$tmp/e")" ]; then
        ok "$name: $(cat "$tmp/err")"
    else
        bad "$name: exit $rc:"; cat "$tmp/err"; rm -f "$tmp"/e/*
    fi
}
edit() { python3 -c "import json,sys; g=json.load(open(sys.argv[1])); exec(sys.argv[2]); json.dump(g, open(sys.argv[3],'w'))" "$D/t2i_api.json" "$1" "$2"; }
if command -v python3 >/dev/null; then
    edit 'g["20"]={"class_type":"UpscaleModelLoader","inputs":{"model_name":"x"}}' "$tmp/unsup.json"
    refuse unsupported-node 'node 20 (UpscaleModelLoader): node type not supported' "$tmp/unsup.json"
    edit 'g["9"]["inputs"]["conditioning"]=["11",0]' "$tmp/cycle.json"
    refuse cycle 'is part of a cycle' "$tmp/cycle.json"
    edit 'g["12"]["inputs"]["vae"]=["44",0]' "$tmp/link.json"
    refuse bad-link "node 12 (VAEDecode): input 'vae' links to node 44, which does not exist" "$tmp/link.json"
    edit 'g["12"]["inputs"]["vae"]=["4",3]' "$tmp/slot.json"
    refuse bad-slot "node 12 (VAEDecode): input 'vae' links to output 3 of node 4" "$tmp/slot.json"
    edit 'g["5"]["inputs"]["clip"]=["1",0]' "$tmp/type.json"
    refuse type-mismatch "node 5 (CLIPTextEncode): input 'clip' takes CLIP, but output 0 of node 1 (UNETLoader) is MODEL" \
        "$tmp/type.json"
    edit 'g["8"]["inputs"]["sampler_name"]="dpmpp_3m_sde"' "$tmp/sde.json"
    refuse sde-3m "node 8 (KSampler): sampler 'dpmpp_3m_sde' is not supported" "$tmp/sde.json"
    edit 'g["3"]["inputs"]["type"]="sdxl"' "$tmp/cliptype.json"
    refuse clip-type 'node 3 (CLIPLoader): type .sdxl.' "$tmp/cliptype.json"
    edit 'del g["13"]' "$tmp/nosave.json"
    refuse no-output 'no SaveImage or PreviewImage' "$tmp/nosave.json"
    edit 'g["7"]["inputs"]["compression"]=42' "$tmp/comp.json"
    refuse compression 'node 7 (StableCascade_EmptyLatentImage): size 64x64 with compression 42' "$tmp/comp.json"
    edit 'g["14"]={"class_type":"LoadImage","inputs":{"image":"nope.png"}}; g["7"]={"class_type":"StableCascade_StageC_VAEEncode","inputs":{"compression":32,"image":["14",0],"vae":["4",0]}}' "$tmp/noimg.json"
    refuse missing-image "node 14 (LoadImage): image 'nope.png' not found" "$tmp/noimg.json"
    edit 'g["20"]={"class_type":"SaveLatent","inputs":{"samples":["8",0],"filename_prefix":"../up"}}' "$tmp/uplat.json"
    refuse latent-prefix-up "node 20 (SaveLatent): filename_prefix '../up': an empty, '.' or '..' part" "$tmp/uplat.json"
    edit 'g["20"]={"class_type":"SaveLatent","inputs":{"samples":["5",0],"filename_prefix":"x"}}' "$tmp/condlat.json"
    refuse latent-type "node 20 (SaveLatent): input 'samples' takes LATENT, but output 0 of node 5 (CLIPTextEncode) is CONDITIONING" \
        "$tmp/condlat.json"
    edit 'g["20"]={"class_type":"SaveLatent","inputs":{"samples":["7",0],"filename_prefix":"x"}}' "$tmp/emptylat.json"
    refuse latent-source "node 20 (SaveLatent): input 'samples' must come from Stage C's or Stage B's KSampler" \
        "$tmp/emptylat.json"
    : >"$tmp/e/latents"
    edit 'g["20"]={"class_type":"SaveLatent","inputs":{"samples":["8",0],"filename_prefix":"latents/x"}}' "$tmp/filelat.json"
    $R "$tmp/filelat.json" -o "$tmp/e" >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "SaveLatent prefix 'latents/x': .*/e/latents is not a folder" "$tmp/err" &&
        [ "$(ls -A "$tmp/e")" = latents ] && ok "latent-folder-is-file: $(cat "$tmp/err")" ||
        { bad "latent-folder-is-file: exit $rc"; cat "$tmp/err"; }
    rm -f "$tmp/e/latents"
fi
# a missing model (real models: an empty models folder)
mkdir -p "$tmp/models"
"$BIN" run --quiet --models "$tmp/models" "$D/t2i_api.json" -o "$tmp/e" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "node 4 (VAELoader): model 'stage_a.safetensors' not found" "$tmp/err" &&
    [ -z "$(ls -A "$tmp/e")" ] && ok "missing-model: $(cat "$tmp/err")" || { bad missing-model; cat "$tmp/err"; }
printf 'not json' >"$tmp/bad.json"
refuse not-json 'not valid JSON' "$tmp/bad.json"
printf 'RIFF\024\000\000\000WEBPVP8L\010\000\000\000\057\000\000\000\000\000\000\000' >"$tmp/plain.webp"
refuse webp-no-exif 'this WebP holds no ComfyUI workflow' "$tmp/plain.webp"
head -c 200 "$D/t2i.webp" >"$tmp/cut.webp"
refuse webp-cut "WebP chunk 'EXIF' runs past the end of the file" "$tmp/cut.webp"
"$BIN" run "$D/t2i_api.json" --bogus >/dev/null 2>&1; [ $? -eq 2 ] && ok usage-exit-2 || bad usage-exit-2
exit $fail
