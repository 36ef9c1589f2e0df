#!/bin/sh
# The CLI's start-up and --device/--precision (src/cli/init.c, device.c on
# cascade_setup): the exact line and exit status of each refusal, and the
# "device:" line saying what was chosen and why, for generate, models and
# the golden runner; the fake device plugin (tests/.libs) stands in for a
# GPU, as $CASCADE_BACKEND and as the "cuda" plugin of $CASCADE_PLUGIN_DIR.
. "${TOP_SRCDIR:-.}/tests/cli_setup.sh"
unset CASCADE_BACKEND CASCADE_DEVICE CASCADE_PRECISION CASCADE_PLUGIN_DIR
FAKE=$(cd "$(dirname "$BIN")/tests/.libs" 2>/dev/null && pwd)/libcascade-fake.so
[ -f "$FAKE" ] || { echo "ERROR: the fake plugin is not built: $FAKE"; exit 99; }
mkdir "$tmp/pd" && ln -s "$FAKE" "$tmp/pd/libcascade-cuda.so" || exit 99
GOLD=${GOLDEN_BIN:-$(dirname "$BIN")/tests/golden/cascade-golden}
G="generate --demo --steps-c 1 --steps-b 1 -p x --force -o $tmp/o.png"

# expect NAME RC LINE -- command: exit RC and LINE as the first line of
# stderr (the only one when RC != 0); no image left by a refusal
expect() {
    name=$1 want=$2 line=$3; shift 4
    rm -f "$tmp/o.png"
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    first=$(head -n 1 "$tmp/err")
    if [ "$rc" != "$want" ] || [ "$first" != "$line" ]; then
        bad "$name: exit $rc (want $want), first line:"; echo "  got:  $first"; echo "  want: $line"; return
    fi
    if [ "$want" != 0 ]; then
        [ "$(wc -l <"$tmp/err")" -eq 1 ] || { bad "$name: more than one line"; cat "$tmp/err"; return; }
        [ ! -e "$tmp/o.png" ] || { bad "$name: an image was written"; return; }
    fi
    ok "$name"
}

# start-up: 2 for a value malformed on its own, 1 for one that cannot be had
expect simd-bogus 2 "cascade: CASCADE_SIMD=bogus: unknown level (use scalar, avx2, avx512 or neon)" -- \
    env CASCADE_SIMD=bogus "$BIN" $G
expect memory-nan 2 "cascade: CASCADE_MEMORY='nan': expected a size such as 12G or 800M" -- \
    env CASCADE_MEMORY=nan "$BIN" $G
expect backend-name 1 "cascade: backend 'Bad-Name': not a backend name (use cpu, cuda, or a path to a plugin)" -- \
    env CASCADE_BACKEND=Bad-Name "$BIN" $G
expect backend-missing 1 "cascade: backend '$tmp/none.so': cannot load $tmp/none.so: cannot open: No such file or directory" -- \
    env CASCADE_BACKEND="$tmp/none.so" "$BIN" $G
expect info-simd 2 "cascade: CASCADE_SIMD=bogus: unknown level (use scalar, avx2, avx512 or neon)" -- \
    env CASCADE_SIMD=bogus "$BIN" info
expect golden-simd 2 "cascade: CASCADE_SIMD=bogus: unknown level (use scalar, avx2, avx512 or neon)" -- \
    env CASCADE_SIMD=bogus "$GOLD" x

# the words: bad usage (2)
expect device-word 2 "cascade generate: --device: 'gpu' is not auto, cpu, cuda or cuda:N" -- "$BIN" $G --device gpu
expect device-index 2 "cascade generate: --device cuda:N: 'x' is not a whole number in 0..255" -- "$BIN" $G --device cuda:x
expect precision-word 2 "cascade generate: --precision: 'q8' is not auto, fp32, bf16 or fp16" -- "$BIN" $G --precision q8
expect models-device 2 "cascade models: --device: 'bogus' is not auto, cpu, cuda or cuda:N" -- \
    "$BIN" models --recommend --device bogus

# what was chosen and why
expect cpu 0 "cascade generate: device: cpu, fp32" -- "$BIN" $G --device cpu
expect cpu-env 0 "cascade generate: device: cpu, fp32" -- env CASCADE_DEVICE=cpu "$BIN" $G
expect cpu-fp16 1 "cascade generate: --precision fp16: the CPU computes in fp32 or bf16 only" -- \
    "$BIN" $G --device cpu --precision fp16
"$BIN" info 2>/dev/null | grep -q '^simd:.*available:.* avx2' &&
expect cpu-bf16-avx2 1 "cascade generate: --precision bf16: bf16 products on the CPU need AVX512-BF16 (or AMX-BF16) at the avx512 SIMD level (this CPU or CASCADE_SIMD=avx2 has no native bf16 dot product)" -- \
    env CASCADE_SIMD=avx2 "$BIN" $G --device cpu --precision bf16
# auto without a plugin: the CPU and why (the install's plugin folder follows ours in the list)
rm -f "$tmp/o.png"
env CASCADE_PLUGIN_DIR="$tmp/none" "$BIN" $G >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 0 ] && head -n 1 "$tmp/err" | grep -qF "cascade generate: device: cpu, fp32 (backend 'cuda': plugin not found (looked for $tmp/none/libcascade-cuda.so, " &&
    ok auto-no-plugin || { bad "auto-no-plugin: exit $rc"; head -n 1 "$tmp/err"; }
expect fake-env 0 "cascade generate: device: fake, bf16" -- env CASCADE_BACKEND="$FAKE" "$BIN" $G
expect fake-env-cpu 0 "cascade generate: device: cpu, fp32" -- env CASCADE_BACKEND="$FAKE" "$BIN" $G --device cpu
expect fake-fp16 0 "cascade generate: device: fake, fp16" -- env CASCADE_PLUGIN_DIR="$tmp/pd" CASCADE_PRECISION=fp16 "$BIN" $G
expect fake-cuda0 0 "cascade generate: device: fake, fp32" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" "$BIN" $G --device cuda:0 --precision fp32
expect fake-cuda2 1 "cascade generate: --device cuda:2: backend 'cuda': it runs on one device only (device 2 asked for)" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" "$BIN" $G --device cuda:2
expect fake-cuda-plus 1 "cascade generate: --device cuda:+2: backend 'cuda': it runs on one device only (device 2 asked for)" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" "$BIN" $G --device cuda:+2
expect fake-fail-auto 0 "cascade generate: device: cpu, fp32 (backend 'cuda': not usable here: fake failure (FAKE_BACKEND_FAIL))" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" FAKE_BACKEND_FAIL=1 "$BIN" $G
expect fake-fail-cuda 1 "cascade generate: --device cuda: backend 'cuda': not usable here: fake failure (FAKE_BACKEND_FAIL)" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" FAKE_BACKEND_FAIL=1 "$BIN" $G --device cuda
expect models-fake-cuda2 1 "cascade models: --device cuda:2: backend 'cuda': it runs on one device only (device 2 asked for)" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" "$BIN" models --recommend --device cuda:2
expect golden-fake-cuda1 1 "cascade-golden: --device cuda:1: backend 'cuda': it runs on one device only (device 1 asked for)" -- \
    env CASCADE_PLUGIN_DIR="$tmp/pd" "$GOLD" --device cuda:1 x
expect info-fake 0 "" -- env CASCADE_BACKEND="$FAKE" "$BIN" info
grep -q '^backend: *fake' "$tmp/out" && ok info-fake-backend || { bad info-fake-backend; cat "$tmp/out"; }
# $CASCADE_PROFILE on the CPU: each op timed where it runs, the outermost op only
expect profile-cpu 0 "cascade generate: device: cpu, fp32" -- env CASCADE_PROFILE=1 "$BIN" $G --device cpu
awk '/^op profile/ {h = 1} h && $1 == "a" && $2 == "linear" && $4 > 0 {l = 1} h && $1 == "total" {t = $2} \
     END {exit !(h && l && t > 0)}' "$tmp/err" && ok profile-cpu-table || { bad profile-cpu-table; cat "$tmp/err"; }
expect profile-off 0 "cascade generate: device: cpu, fp32" -- "$BIN" $G --device cpu
grep -q "op profile" "$tmp/err" && { bad profile-off-table; cat "$tmp/err"; } || ok profile-off-table
exit $fail
