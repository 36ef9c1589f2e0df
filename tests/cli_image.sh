#!/bin/sh
# `cascade generate --image FILE[:S]` (image variation) and `--init-image
# FILE --strength S` (img2img) on the demo, whose tiny CLIP vision tower and
# reduced EfficientNet encoder are written for the run. Variation: the image changes the
# result, strength 0 gives exactly the text-only image (zero tokens are the
# unconditional default), the metadata names each image with its xxh64 and
# strength; bad images and strengths give one line, the right exit status
# and no file; without a vision model the message says what is missing.
# img2img: strength 1 is exactly text-to-image, below 1 Stage C runs
# int(20 S) steps from the encoded image, and the metadata names the init
# image. Both modes together: the image tokens change the img2img result and
# both inputs are in the metadata, one file with one hash in either role.
. "$TOP_SRCDIR/tests/cli_setup.sh"
G="$BIN generate --demo --quiet -W 64 -H 64 --steps-c 3 --steps-b 2 --seed 7"
[ -x "$PNGINFO" ] || { echo "ERROR: $PNGINFO not built (make check builds it)"; exit 99; }
same_pixels() { pa=$("$PNGINFO" "$1" --pixels) && pb=$("$PNGINFO" "$2" --pixels) && [ "$pa" = "$pb" ]; }
mkdir -p "$tmp/o" "$tmp/in"

# refuse NAME STATUS CMD...: that exit status, one stderr line, nothing new in $tmp/o
refuse() {
    name=$1; want=$2; shift 2
    before=$(ls -A "$tmp/o" | wc -l)
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    after=$(ls -A "$tmp/o" | wc -l)
    if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ] && [ "$after" -eq "$before" ]; then
        ok "$name: $(cat "$tmp/err")"
    else
        bad "$name: exit $rc (want $want), $lines stderr lines, files $before -> $after:"; cat "$tmp/err"
    fi
}

# input images: demo outputs are real PNGs (256x256 and 64x128)
$BIN generate --demo --quiet -p a --seed 1 -o "$tmp/in/big.png" >/dev/null 2>&1 || { echo "ERROR: demo failed"; exit 99; }
$BIN generate --demo --quiet -p b --seed 2 -W 64 -H 128 --steps-c 2 --steps-b 2 -o "$tmp/in/tall.png" >/dev/null 2>&1 ||
    exit 99

$G -p x -o "$tmp/o/none.png" >/dev/null 2>&1 || bad "text only"
if $G -p x --image "$tmp/in/big.png" -o "$tmp/o/img.png" >/dev/null 2>"$tmp/err"; then
    ok image
    same_pixels "$tmp/o/none.png" "$tmp/o/img.png" && bad "the image changed nothing" || ok image-changes-result
    m=$("$PNGINFO" "$tmp/o/img.png" images)
    h=$(echo "$m" | sed -n 's/.*"xxh64":"\([0-9a-f]*\)".*/\1/p')
    case $m in *'"file":"big.png"'*'"strength":1'*) ok "metadata: $m" ;; *) bad "metadata: $m" ;; esac
    [ ${#h} -eq 16 ] && ok image-hash || bad "image-hash: '$h'"
    "$PNGINFO" "$tmp/o/img.png" models | grep -q '"role":"clip_vision"' && ok vision-model-listed ||
        bad "vision-model-listed: $("$PNGINFO" "$tmp/o/img.png" models)"
else
    bad image; cat "$tmp/err"
fi
$G -p x --image "$tmp/in/big.png:0" -o "$tmp/o/zero.png" >/dev/null 2>&1 &&
    same_pixels "$tmp/o/none.png" "$tmp/o/zero.png" && ok strength-0-is-text-only || bad strength-0-is-text-only
if $G -p "" --image "$tmp/in/big.png:0.5" --image "$tmp/in/tall.png:-1.5" -o "$tmp/o/two.png" >/dev/null 2>&1; then
    m=$("$PNGINFO" "$tmp/o/two.png" images)
    case $m in *'"strength":0.5'*'"file":"tall.png"'*'"size":"64x128"'*'"strength":-1.5'*) ok "two images: $m" ;;
    *) bad "two images: $m" ;; esac
    same_pixels "$tmp/o/img.png" "$tmp/o/two.png" && bad two-images-differ || ok two-images-differ
else
    bad "two images"
fi
[ -z "$(ls "${TMPDIR:-/tmp}" 2>/dev/null | grep "^cascade-demo-" | while read d; do
    [ -e "${TMPDIR:-/tmp}/$d/clip_vision_demo.safetensors" ] && echo "$d"; done)" ] &&
    ok demo-vision-removed || bad "demo-vision-removed"

head -c 100 "$tmp/in/big.png" >"$tmp/in/trunc.png"

# img2img
if $G -p x --init-image "$tmp/in/tall.png" --strength 0.6 -o "$tmp/o/i2i.png" 2>"$tmp/err" >/dev/null; then
    ok img2img
    same_pixels "$tmp/o/none.png" "$tmp/o/i2i.png" && bad img2img-changes-result || ok img2img-changes-result
    m=$("$PNGINFO" "$tmp/o/i2i.png" init_image)
    case $m in *'"file":"tall.png"'*'"strength":0.6}') ok "init metadata: $m" ;; *) bad "init metadata: $m" ;; esac
else
    bad img2img; cat "$tmp/err"
fi
$BIN generate --demo -W 64 -H 64 --steps-c 20 --steps-b 2 --seed 7 -p x --init-image "$tmp/in/big.png" \
    --strength 0.35 -o "$tmp/o/steps.png" >/dev/null 2>"$tmp/err"
grep -q "Stage C: 7 steps" "$tmp/err" && ok "img2img-steps: int(20 * 0.35) = 7 as in Python (not 6 as in float)" || bad "img2img-steps: $(grep 'Stage C:' "$tmp/err")"
$G -p x --init-image "$tmp/in/big.png" --strength 1 -o "$tmp/o/s1.png" >/dev/null 2>&1 &&
    same_pixels "$tmp/o/none.png" "$tmp/o/s1.png" && ok strength-1-is-text-to-image || bad strength-1-is-text-to-image
# both modes together: the variation token changes the img2img result, both inputs are in the
# metadata, and the same file has the same xxh64 in either role (its bytes' hash)
$G -p "" --init-image "$tmp/in/big.png" --strength 0.5 --image "$tmp/in/tall.png:0" --image "$tmp/in/big.png:0" \
    -o "$tmp/o/i2i-only.png" >/dev/null 2>&1 || bad img2img-only   # the same tokens at strength 0
if $G -p "" --init-image "$tmp/in/big.png" --strength 0.5 --image "$tmp/in/tall.png" --image "$tmp/in/big.png:0.7" \
    -o "$tmp/o/both.png" >/dev/null 2>"$tmp/err"; then
    ok img2img-with-variation
    same_pixels "$tmp/o/i2i-only.png" "$tmp/o/both.png" && bad "both: the image tokens changed nothing" ||
        ok both-variation-changes-img2img
    mi=$("$PNGINFO" "$tmp/o/both.png" init_image)
    mv=$("$PNGINFO" "$tmp/o/both.png" images)
    hi=$(echo "$mi" | sed -n 's/.*"xxh64":"\([0-9a-f]*\)".*/\1/p')
    hv=$(echo "$mv" | sed -n 's/.*"file":"big.png","xxh64":"\([0-9a-f]*\)".*/\1/p')
    case $mi in *'"file":"big.png"'*'"strength":0.5}') ok "both: init_image $mi" ;; *) bad "both: init_image $mi" ;; esac
    case $mv in *'"file":"tall.png"'*'"strength":1'*'"file":"big.png"'*'"strength":0.7'*) ok "both: images $mv" ;;
    *) bad "both: images $mv" ;; esac
    [ ${#hi} -eq 16 ] && [ "$hi" = "$hv" ] && ok "both: big.png has xxh64 $hi in either role" ||
        bad "both: init xxh64 '$hi', variation xxh64 '$hv'"
    if command -v xxhsum >/dev/null; then   # an independent hash of the file's bytes
        [ "$(xxhsum -H64 "$tmp/in/big.png" | cut -d' ' -f1)" = "$hi" ] && ok xxh64-is-the-files ||
            bad "xxh64-is-the-files: $(xxhsum -H64 "$tmp/in/big.png")"
    fi
else
    bad img2img-with-variation; cat "$tmp/err"
fi
refuse strength-0 2 $G -p x --init-image "$tmp/in/big.png" --strength 0 -o "$tmp/o/bad.png"
refuse strength-above-1 2 $G -p x --init-image "$tmp/in/big.png" --strength 1.5 -o "$tmp/o/bad.png"
refuse strength-alone 2 $G -p x --strength 0.5 -o "$tmp/o/bad.png"
refuse bad-init-image 1 $G -p x --init-image "$tmp/in/trunc.png" -o "$tmp/o/bad.png"

# bad inputs
echo "not an image" >"$tmp/in/text.png"
: >"$tmp/in/empty.jpg"
refuse missing-image 1 $G -p x --image "$tmp/in/nope.png" -o "$tmp/o/bad.png"
refuse truncated-png 1 $G -p x --image "$tmp/in/trunc.png" -o "$tmp/o/bad.png"
grep -q "trunc.png: bad PNG" "$tmp/err" || bad "truncated-png message: $(cat "$tmp/err")"
refuse not-an-image 1 $G -p x --image "$tmp/in/text.png" -o "$tmp/o/bad.png"
grep -q "not a PNG or JPEG" "$tmp/err" || bad "not-an-image message: $(cat "$tmp/err")"
refuse empty-image 1 $G -p x --image "$tmp/in/empty.jpg" -o "$tmp/o/bad.png"
refuse a-folder 1 $G -p x --image "$tmp/in" -o "$tmp/o/bad.png"
refuse strength-range 2 $G -p x --image "$tmp/in/big.png:11" -o "$tmp/o/bad.png"
refuse strength-not-a-number 2 $G -p x --image "$tmp/in/big.png:1e" -o "$tmp/o/bad.png"
refuse no-file-name 2 $G -p x --image ":1" -o "$tmp/o/bad.png"
set --
i=0
while [ $i -le 16 ]; do set -- "$@" --image "$tmp/in/big.png"; i=$((i + 1)); done
refuse too-many-images 2 $G -p x "$@" -o "$tmp/o/bad.png"
# real models without a vision tower: the header-only tree of tests/test_models
MK="$(dirname "$BIN")/tests/test_models"
if [ -x "$MK" ] && [ -d "${SHARED_DIR:-/nonexistent}/tokenizer" ]; then
    "$MK" --make-tree "$tmp/m" flat-min >/dev/null || exit 99
    refuse no-vision-model 1 env CASCADE_MEMORY=64G "$BIN" generate --quiet -p x --models "$tmp/m" \
        --tokenizer "$SHARED_DIR/tokenizer" --image "$tmp/in/big.png" -o "$tmp/o/bad.png"
    grep -q "needs a CLIP vision model" "$tmp/err" || bad "no-vision-model message: $(cat "$tmp/err")"
else
    echo "note: no test_models or shared tokenizer: the no-vision-model case is skipped"
fi
exit $fail
