#!/bin/sh
# The whole text-to-image workflow against ComfyUI itself: `cascade run` of
# tests/data/workflows/t2i_lite_256.json on random-weight Stage C lite,
# Stage B lite, Stage A and CLIP-G files (bench/mkweights from the shared
# manifests, fixed seeds, the real layouts) must give the image ComfyUI gave
# for the same workflow and files (tests/data/comfy_ref/t2i_lite_256.png,
# made by tests/ref/comfy_workflow_run.py; see tests/data/comfy_ref/README.md).
# Tolerance: each 8-bit value within 1, at most 1 in 1000 values off at all.
# Then the img2img example workflow (tests/data/workflows/img2img_lite_256.json:
# LoadImage -> StableCascade_StageC_VAEEncode -> KSampler denoise 0.6 ->
# StageB_Conditioning -> KSampler -> VAEDecode -> SaveImage, with SaveLatent
# on the encoder and both KSamplers) against ComfyUI's image and .latent files
# (tests/data/comfy_ref/img2img_lite_256*): the image as above, the encoded
# image within rel_l2 1e-5 (measured 9e-7; --init-image's antialiased resize
# instead of ComfyUI's gives 1.1e-4), the KSampler latents within 1e-4
# (measured 4e-6 and 2e-6).
#
# Slow (3.7 GB of weights, minutes on two cores): it runs only with
# CASCADE_SLOW_TESTS=1, at the best SIMD level, and skips (77) otherwise.
. "$TOP_SRCDIR/tests/cli_setup.sh"
. "$TOP_SRCDIR/tests/shared.sh"
if [ -z "$CASCADE_SLOW_TESTS" ]; then
    echo "SKIP: the ComfyUI whole-workflow comparison needs CASCADE_SLOW_TESTS=1 (3.6 GB, minutes)"
    exit 77
fi
best=$("$BIN" info --levels | tail -n 1)
if [ -n "$CASCADE_SIMD" ] && [ "$CASCADE_SIMD" != "$best" ]; then
    echo "SKIP: runs at the best SIMD level ($best) only"
    exit 77
fi
need_shared spec/manifests
need_shared tokenizer
MK="$(dirname "$BIN")/bench/mkweights"
DIFF="$(dirname "$BIN")/tests/png_diff"
LDIFF="$(dirname "$BIN")/tests/latent_diff"
[ -x "$MK" ] || { echo "SKIP: bench/mkweights not built (make bench/mkweights)"; exit 77; }
[ -x "$DIFF" ] && [ -x "$LDIFF" ] || { echo "ERROR: $DIFF or $LDIFF not built"; exit 99; }
M="$SHARED_DIR/spec/manifests"
mkdir -p "$tmp/models/unet" "$tmp/models/clip" "$tmp/models/vae" "$tmp/o"
"$MK" "$M/stage_a.json" "$tmp/models/vae/stage_a.safetensors" f32 1 &&
    "$MK" "$M/stage_c_lite.json" "$tmp/models/unet/stage_c_lite_bf16.safetensors" bf16 2 &&
    "$MK" "$M/stage_b_lite.json" "$tmp/models/unet/stage_b_lite_bf16.safetensors" bf16 3 &&
    "$MK" "$M/text_encoder.json" "$tmp/models/clip/model.safetensors" bf16 4 &&
    "$MK" "$M/effnet_encoder.json" "$tmp/models/vae/effnet_encoder.safetensors" f32 5 || { echo "FAIL mkweights"; exit 1; }
"$BIN" run --quiet --models "$tmp" --tokenizer "$SHARED_DIR/tokenizer" "$TOP_SRCDIR/tests/data/workflows/t2i_lite_256.json" \
    -o "$tmp/o" >/dev/null || bad "cascade run"
same_image() {  # same_image OURS.png COMFY.png NAME
    name=$3
    out=$("$DIFF" "$1" "$2") || { bad "$name: png_diff"; return; }
    set -- $out   # max D, N of T values differ
    max=${2%,} n=$3 total=$5
    if [ -n "$total" ] && [ "$max" -le 1 ] && [ $((n * 1000)) -le "$total" ]; then
        ok "$name: same image as ComfyUI: $out"
    else
        bad "$name: image differs from ComfyUI's: $out"
    fi
}
same_image "$tmp/o/comfy_t2i_00001_.png" "$TOP_SRCDIR/tests/data/comfy_ref/t2i_lite_256.png" t2i

R="$TOP_SRCDIR/tests/data/comfy_ref"
"$BIN" run --quiet --models "$tmp" --tokenizer "$SHARED_DIR/tokenizer" --input "$R" \
    "$TOP_SRCDIR/tests/data/workflows/img2img_lite_256.json" -o "$tmp/o" >/dev/null || bad "cascade run img2img"
same_image "$tmp/o/comfy_img2img_00001_.png" "$R/img2img_lite_256.png" img2img
for st in enc:1e-5 c:1e-4 b:1e-4; do
    tol=${st#*:} st=${st%:*}
    out=$("$LDIFF" "$tmp/o/comfy_img2img_${st}_00001_.latent" "$R/img2img_lite_256_$st.latent") || { bad "latent_diff $st"; continue; }
    rel=$(printf '%s\n' "$out" | sed -n 's/.*rel_l2 \([^,]*\),.*/\1/p')
    if [ -n "$rel" ] && awk -v r="$rel" -v t="$tol" 'BEGIN { exit !(r <= t) }'; then
        ok "img2img latent $st as ComfyUI's: $out"
    else
        bad "img2img latent $st differs from ComfyUI's: $out"
    fi
done
exit $fail
