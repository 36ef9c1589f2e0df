#!/bin/sh
# `cascade generate` with ComfyUI's samplers (--sampler NAME --scheduler S
# --denoise D): the demo runs with each sampler, records sampler /
# scheduler / denoise in the PNG, is deterministic, leaves the official
# samplers as they were, and every bad combination is one line, exit 2, no
# file. The latents themselves are checked against ComfyUI by tests/test_ksampler.
. "$TOP_SRCDIR/tests/cli_setup.sh"
G="$BIN generate --demo --quiet -p x --seed 5 -W 64 -H 64 --steps-c 3 --steps-b 2"
[ -x "$PNGINFO" ] || { echo "ERROR: $PNGINFO not built"; exit 99; }
text() { "$PNGINFO" "$1" "$2"; }
pixels() { "$PNGINFO" "$1" --pixels; }
mkdir -p "$tmp/o"

# refuse NAME CMD...: exit 2, one stderr line, nothing written
refuse() {
    name=$1; shift
    "$@" >/dev/null 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ -z "$(ls -A "$tmp/o")" ]; then
        ok "$name: $(cat "$tmp/err")"
    else
        bad "$name: exit $rc:"; cat "$tmp/err"; rm -f "$tmp"/o/*
    fi
}
refuse unknown-sampler $G --sampler euler_a -o "$tmp/o/x.png"
refuse unknown-scheduler $G --sampler euler --scheduler beta -o "$tmp/o/x.png"
refuse scheduler-official $G --scheduler karras -o "$tmp/o/x.png"
refuse scheduler-ddim $G --sampler ddim --scheduler karras -o "$tmp/o/x.png"
refuse denoise-official $G --denoise 0.5 -o "$tmp/o/x.png"
refuse denoise-zero $G --sampler euler --denoise 0 -o "$tmp/o/x.png"
refuse denoise-above-1 $G --sampler euler --denoise 1.5 -o "$tmp/o/x.png"
refuse cfg-rho-comfy $G --sampler euler --cfg-rho 0.5 -o "$tmp/o/x.png"

# every sampler x a scheduler runs and records itself
for run in "euler simple" "euler_ancestral simple" "dpmpp_2m karras" "lcm normal" "ddpm exponential" \
           "euler sgm_uniform" "dpmpp_2m_sde normal"; do
    set -- $run
    f="$tmp/o/$1_$2.png"
    if $G --sampler "$1" --scheduler "$2" -o "$f" 2>"$tmp/err" >/dev/null && [ "$(text "$f" sampler)" = "$1" ] &&
       [ "$(text "$f" scheduler)" = "$2" ] && [ "$(text "$f" denoise)" = 1 ]; then
        ok "run $1 $2"
    else
        bad "run $1 $2"; cat "$tmp/err"
    fi
done
# the default scheduler is simple; the same seed gives the same bytes
$G --sampler euler_ancestral -o "$tmp/o/ea.png" >/dev/null 2>&1
cmp -s "$tmp/o/ea.png" "$tmp/o/euler_ancestral_simple.png" && ok default-scheduler-simple || bad default-scheduler-simple
# denoise < 1 changes the image and is recorded
$G --sampler euler --denoise 0.5 -o "$tmp/o/d05.png" >/dev/null 2>&1
[ "$(text "$tmp/o/d05.png" denoise)" = 0.5 ] && [ "$(pixels "$tmp/o/d05.png")" != "$(pixels "$tmp/o/euler_simple.png")" ] &&
    ok denoise || bad denoise
# official ddpm is untouched (no scheduler key, same pixels as the default);
# ComfyUI's ddpm is another sampler
$G -o "$tmp/o/default.png" >/dev/null 2>&1
$G --sampler ddpm -o "$tmp/o/official.png" >/dev/null 2>&1
[ "$(pixels "$tmp/o/default.png")" = "$(pixels "$tmp/o/official.png")" ] && [ -z "$(text "$tmp/o/official.png" scheduler)" ] &&
    ok official-ddpm || bad official-ddpm
$G --sampler ddpm --scheduler simple -o "$tmp/o/comfy_ddpm.png" >/dev/null 2>&1
[ "$(text "$tmp/o/comfy_ddpm.png" sampler)" = ddpm ] &&
    [ "$(pixels "$tmp/o/comfy_ddpm.png")" != "$(pixels "$tmp/o/official.png")" ] && ok comfy-ddpm || bad comfy-ddpm
exit $fail
