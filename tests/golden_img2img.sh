#!/bin/sh
# The img2img golden case (tests/data/img2img, made by
# tests/ref/make_img2img_case.py with the official GDF code): EfficientNet
# latent, GDF.diffuse at t = strength with shift 1, then Stage C sampled
# int(20 * strength) steps from there, every step compared, our generator
# checked against every recorded draw. The case names the shared tiny
# weights, linked beside a copy of it. Then the same case altered must fail:
# another seed (the generator check), a strength whose step count differs,
# and a diffuse shift of 2 (the noising itself).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
case=$TOP_SRCDIR/tests/data/img2img/img2img_tiny.io.safetensors
[ -f "$case" ] || { echo "ERROR: $case missing"; exit 99; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden_img2img.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
gd=$(cd "$SHARED_DIR/golden" && pwd) || exit 99
for w in effnet_slim stage_c_tiny; do
    ln -s "$gd/$w.weights.safetensors" "$tmp/$w.weights.safetensors" || exit 99
done
cp "$case" "$tmp/img2img_tiny.io.safetensors" || exit 99
out=$("$GOLDEN_BIN" --strict "$tmp/img2img_tiny" 2>&1) && echo "ok img2img_tiny: $(echo "$out" | tail -n 1)" ||
    { echo "FAIL img2img_tiny:"; echo "$out"; fail=1; }
echo "$out" | grep -q "out.x_init" || { echo "FAIL: out.x_init not compared"; fail=1; }
echo "$out" | grep -q "out.x0_step_06" || { echo "FAIL: step 06 not compared"; fail=1; }

# altered copies: a same-length edit of the header text in place
alter() {   # NAME FROM TO: a copy with the first FROM (fixed text) replaced by TO
    cp "$tmp/img2img_tiny.io.safetensors" "$tmp/$1.io.safetensors" || exit 99
    at=$(LC_ALL=C grep -obUaF -- "$2" "$tmp/$1.io.safetensors" | head -n 1 | cut -d: -f1)
    [ -n "$at" ] && [ ${#2} -eq ${#3} ] || { echo "ERROR: '$2' not in the case header"; exit 99; }
    printf '%s' "$3" | dd of="$tmp/$1.io.safetensors" bs=1 seek="$at" conv=notrunc 2>/dev/null || exit 99
}
must_fail() {   # NAME WHY PATTERN
    if out=$("$GOLDEN_BIN" "$tmp/$1" 2>&1); then
        echo "FAIL $1: passed ($2)"; fail=1
    elif echo "$out" | grep -q "$3"; then
        echo "ok $1 fails: $(echo "$out" | grep "$3" | head -n 1)"
    else
        echo "FAIL $1: failed without '$3':"; echo "$out"; fail=1
    fi
}
alter seed '"seed":"42"' '"seed":"43"'
must_fail seed "another seed must not reproduce the draws" "our generator"
alter strength 'strength\": 0.35' 'strength\": 0.30'
must_fail strength "int(20 * 0.3) = 6 steps, the file has 7" "computed shape \[7\]"
alter shift 'diffuse_shift\": 1}' 'diffuse_shift\": 2}'
must_fail shift "x_init at shift 2 differs" "out.x_init"
exit $fail
