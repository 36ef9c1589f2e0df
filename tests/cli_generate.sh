#!/bin/sh
# `cascade generate`: the demo end to end (valid PNG of the right size with
# its metadata, deterministic bytes for a seed), output rules (no overwrite
# without --force, folder auto-numbering, one file per batch image,
# previews), every bad input (non-zero exit, exactly one line on stderr, no
# file left behind) and Ctrl-C (exit 130, nothing written). Model-file cases
# use header-only sparse trees made by tests/test_models --make-tree.
# Needs CASCADE_BIN (set by make check).
BIN=$CASCADE_BIN
MK="$(dirname "$BIN")/tests/test_models"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cli_generate.XXXXXX") || exit 99
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

export XDG_CACHE_HOME="$tmp/cache" XDG_DATA_HOME="$tmp/data"
unset CASCADE_MODELS CASCADE_MEMORY CASCADE_TOKENIZER CASCADE_THREADS
G="$BIN generate --demo --quiet"
FAST="-W 64 -H 64 --steps-c 3 --steps-b 2"

# png FILE W H: a valid PNG (read whole by tests/png_info: every CRC, the
# image data) of that size, RGB 8-bit; text FILE KEY: a text chunk's value
PNGINFO="$(dirname "$BIN")/tests/png_info"
[ -x "$PNGINFO" ] || { echo "ERROR: $PNGINFO not built (make check builds it)"; exit 99; }
png() {
    got=$("$PNGINFO" "$1") || { echo "  $1: not a valid PNG"; return 1; }
    [ "$got" = "$2 $3 8 2" ] || { echo "  $1: '$got', expected '$2 $3 8 2' (W H depth RGB)"; return 1; }
}
text() { "$PNGINFO" "$1" "$2"; }
same_pixels() { pa=$("$PNGINFO" "$1" --pixels) && pb=$("$PNGINFO" "$2" --pixels) && [ "$pa" = "$pb" ]; }

# refuse NAME CMD...: non-zero exit, exactly one line on stderr, nothing new in $tmp/o
refuse() {
    name=$1; shift
    before=$(ls -A "$tmp/o" | wc -l)
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    after=$(ls -A "$tmp/o" | wc -l)
    if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && [ "$after" -eq "$before" ]; then
        ok "$name: $(cat "$tmp/err")"
    else
        bad "$name: exit $rc, $lines stderr lines, files $before -> $after:"; cat "$tmp/err"
    fi
}

mkdir -p "$tmp/o" "$tmp/empty" "$tmp/data"

# ---- the demo end to end, at its default size (256x256), twice ----
if $G -p "a lighthouse at dusk" --seed 42 -o "$tmp/o/a.png" >"$tmp/out" 2>"$tmp/err" &&
   png "$tmp/o/a.png" 256 256; then ok demo; else bad demo; cat "$tmp/err"; fi
[ "$(cat "$tmp/out")" = "$tmp/o/a.png" ] && ok demo-stdout-path || bad "demo-stdout-path: $(cat "$tmp/out")"
$G -p "a lighthouse at dusk" --seed 42 -o "$tmp/o/b.png" >/dev/null 2>&1
cmp -s "$tmp/o/a.png" "$tmp/o/b.png" && ok same-seed-same-bytes || bad same-seed-same-bytes
# another seed: both runs succeed, same size, different pixels (the files
# differ anyway: the seed is in the metadata)
if $G -p "a lighthouse at dusk" --seed 42 -o "$tmp/o/s42.png" $FAST >/dev/null 2>&1 && png "$tmp/o/s42.png" 64 64 &&
   $G -p "a lighthouse at dusk" --seed 43 -o "$tmp/o/s43.png" $FAST >/dev/null 2>&1 && png "$tmp/o/s43.png" 64 64 &&
   ! same_pixels "$tmp/o/s42.png" "$tmp/o/s43.png"; then ok other-seed-differs; else bad other-seed-differs; fi

# metadata: every key README documents (Output section), by exact name, each
# once, nothing else, with the values the options asked for
meta_keys="Software demo positive_prompt prompt workflow negative_prompt seed width height batch_size batch_index steps_c steps_b cfg_c
 cfg_b cfg_rho shift_c shift_b sampler prompt_style rng output_rounding tokenizer models parameters"
$G -p "a red fox" -n "blurry, dark" --seed 4242 -W 64 -H 72 --steps-c 3 --steps-b 2 --cfg-c 3.5 --cfg-b 1.5 \
    --cfg-rho 0.5 --shift-c 1.5 --shift-b 1.25 --sampler ddim --round --batch 2 -o "$tmp/o/meta.png" >/dev/null 2>"$tmp/err" ||
    { bad "metadata run"; cat "$tmp/err"; }
for i in 1 2; do
    f="$tmp/o/meta_$i.png"
    png "$f" 64 72 || { bad "metadata-$i: no image"; continue; }
    keys=$("$PNGINFO" "$f" --keys | sort | tr '\n' ' ')
    want=$(echo $meta_keys | tr ' ' '\n' | sort | tr '\n' ' ')
    [ "$keys" = "$want" ] && ok "metadata-$i-keys" || bad "metadata-$i-keys: have '$keys', want '$want'"
    m=0
    chk() {  # chk KEY VALUE-REGEX (whole value)
        v=$(text "$f" "$1") && printf '%s\n' "$v" | grep -qx -- "$2" ||
            { echo "  meta_$i.png: $1 = '$(text "$f" "$1")', expected /$2/"; m=1; }
    }
    chk positive_prompt 'a red fox'; chk negative_prompt 'blurry, dark'; chk seed 4242
    chk width 64; chk height 72; chk batch_size 2; chk batch_index $((i - 1))
    chk steps_c 3; chk steps_b 2; chk cfg_c 3.5; chk cfg_b 1.5; chk cfg_rho 0.5; chk shift_c 1.5; chk shift_b 1.25
    chk sampler '[Dd][Dd][Ii][Mm]'; chk rng torch-cpu; chk prompt_style comfyui; chk output_rounding round
    chk tokenizer 'byte-level fallback.*'; chk Software "cascade $("$BIN" --version | sed 's/^cascade //')"
    chk demo 'DEMO: .*'
    chk models '\[\({"role":"[a-z_]*","file":"[^"]*","variant":"demo","xxh64":"[0-9a-f]\{16\}"},\)\{3\}{"role":"[a-z_]*","file":"[^"]*","variant":"demo","xxh64":"[0-9a-f]\{16\}"}\]'
    for r in text_encoder stage_c stage_b stage_a; do text "$f" models | grep -q "\"role\":\"$r\"" || { echo "  no $r in models"; m=1; }; done
    text "$f" parameters | sed -n 1p | grep -qx '\[cascade demo: random-weight networks\] a red fox' &&
    text "$f" parameters | sed -n 2p | grep -qx 'Negative prompt: blurry, dark' &&
    text "$f" parameters | sed -n 3p | grep -q "^Steps: 3, Sampler: DDIM, CFG scale: 3.5, Seed: 4242, Size: 64x72, .*Batch size: 2, Batch pos: $((i - 1))," ||
        { echo "  meta_$i.png: parameters:"; text "$f" parameters; m=1; }
    [ $m -eq 0 ] && ok "metadata-$i-values" || bad "metadata-$i-values"
done
[ "$(text "$tmp/o/a.png" seed)" = 42 ] && text "$tmp/o/a.png" parameters | grep -q 'Steps: 20, Sampler: DDPM, CFG scale: 4, Seed: 42, Size: 256x256' &&
    [ "$(text "$tmp/o/a.png" output_rounding)" = truncate ] && ok metadata-defaults || bad metadata-defaults

# the demo's tokenizer: the vocabulary files when given, else the byte-level fallback (and it says so)
$BIN generate --demo -p x $FAST -o "$tmp/o/tok_a.png" 2>"$tmp/err" >/dev/null
grep -q "tokenizer: byte-level fallback" "$tmp/err" && ok demo-byte-tokenizer || { bad demo-byte-tokenizer; cat "$tmp/err"; }
if [ -f "$SHARED_DIR/tokenizer/vocab.json" ]; then
    $BIN generate --demo -p x $FAST -o "$tmp/o/tok_b.png" --tokenizer "$SHARED_DIR/tokenizer" 2>"$tmp/err" >/dev/null
    grep -q "tokenizer: $SHARED_DIR/tokenizer" "$tmp/err" && ! cmp -s "$tmp/o/tok_a.png" "$tmp/o/tok_b.png" &&
        ok demo-vocab-tokenizer || { bad demo-vocab-tokenizer; cat "$tmp/err"; }
fi

# ---- output rules ----
cp "$tmp/o/a.png" "$tmp/a.keep"
refuse no-overwrite $G -p x --seed 1 -o "$tmp/o/a.png" $FAST
cmp -s "$tmp/o/a.png" "$tmp/a.keep" && ok no-overwrite-unchanged || bad no-overwrite-unchanged
if $G -p x --seed 1 -o "$tmp/o/a.png" --force $FAST >/dev/null 2>&1 && png "$tmp/o/a.png" 64 64 &&
   ! cmp -s "$tmp/o/a.png" "$tmp/a.keep"; then ok force; else bad force; fi
mkdir "$tmp/o/d"
$G -p x --seed 1 -o "$tmp/o/d" $FAST >/dev/null 2>&1
$G -p x --seed 2 -o "$tmp/o/d/" $FAST --batch 2 >"$tmp/out" 2>&1
[ "$(ls "$tmp/o/d" | tr '\n' ' ')" = "cascade_00001.png cascade_00002.png cascade_00003.png " ] &&
    [ "$(wc -l <"$tmp/out")" -eq 2 ] && png "$tmp/o/d/cascade_00003.png" 64 64 && ok dir-numbering ||
    { bad dir-numbering; ls "$tmp/o/d"; cat "$tmp/out"; }
$G -p x --seed 3 -o "$tmp/o/batch.png" $FAST --batch 2 >/dev/null 2>&1
[ -f "$tmp/o/batch_1.png" ] && [ -f "$tmp/o/batch_2.png" ] && [ ! -e "$tmp/o/batch.png" ] &&
    ! same_pixels "$tmp/o/batch_1.png" "$tmp/o/batch_2.png" && ok batch-files || bad batch-files
$G -p x --seed 3 -o "$tmp/o/prev_img.png" $FAST -W 128 -H 128 --preview "$tmp/o/prev.png" >/dev/null 2>&1
png "$tmp/o/prev.png" 24 24 && ok preview || bad preview   # Stage C latent 3x3 -> 8x
$G -p "" --seed 4 -o "$tmp/o/empty_prompt.png" $FAST >/dev/null 2>&1 && png "$tmp/o/empty_prompt.png" 64 64 &&
    ok empty-prompt || bad empty-prompt
$G -p x --seed 5 $FAST --json -o "$tmp/o/j.png" >"$tmp/out" 2>"$tmp/err"
grep -q '"event":"progress","stage":"stage_c"' "$tmp/out" && grep -q "\"event\":\"done\",\"files\":\[\"$tmp/o/j.png\"\]" "$tmp/out" &&
    [ ! -s "$tmp/err" ] && ok json || { bad json; cat "$tmp/out" "$tmp/err"; }

# ---- bad input: one line, non-zero exit, no file ----
refuse width-not-8 $G -p x -W 1020 -o "$tmp/o/bad.png"
refuse height-not-8 $G -p x -H 60 -o "$tmp/o/bad.png"
refuse size-absurd $G -p x -W 65536 -H 65536 -o "$tmp/o/bad.png"
refuse steps-zero $G -p x --steps-c 0 -o "$tmp/o/bad.png"
refuse steps-negative $G -p x --steps-b -2 -o "$tmp/o/bad.png"
refuse cfg-rho-range $G -p x --cfg-rho 1.5 -o "$tmp/o/bad.png"
refuse no-prompt $G -o "$tmp/o/bad.png"
refuse bad-number $G -p x --seed 12abc -o "$tmp/o/bad.png"
refuse bad-sampler $G -p x --sampler eulerx -o "$tmp/o/bad.png"
refuse out-folder-missing $G -p x -o "$tmp/o/nowhere/bad.png"
refuse out-under-file $G -p x -o "$tmp/o/a.png/bad.png"
refuse out-dir-missing-slash $G -p x -o "$tmp/o/nodir/"
refuse preview-exists $G -p x -o "$tmp/o/bad.png" --preview "$tmp/o/a.png"
if [ "$(id -u)" != 0 ]; then   # root writes anywhere
    mkdir "$tmp/ro" && chmod 555 "$tmp/ro"
    refuse out-not-writable $G -p x -o "$tmp/ro/bad.png"
fi
refuse missing-models "$BIN" generate --quiet -p x --models "$tmp/empty" -o "$tmp/o/bad.png"
grep -q "no .* found" "$tmp/err" && grep -q "$tmp/empty" "$tmp/err" && ok missing-says-where ||
    bad "missing-says-where: $(cat "$tmp/err")"
if [ -x "$MK" ]; then
    "$MK" --make-tree "$tmp/m" flat-min >/dev/null || exit 99
    refuse wrong-network env CASCADE_MEMORY=64G "$BIN" generate --quiet -p x --models "$tmp/m" \
        --stage-c "$tmp/m/stage_b_bf16.safetensors" -o "$tmp/o/bad.png"
    grep -q "Stage B" "$tmp/err" && ok wrong-network-says-what || bad "wrong-network-says-what: $(cat "$tmp/err")"
    refuse not-enough-memory env CASCADE_MEMORY=2G "$BIN" generate --quiet -p x --models "$tmp/m" -o "$tmp/o/bad.png"
    grep -q "needs .* GiB.*have 2.0 GiB" "$tmp/err" && ok memory-need-vs-have || bad "memory-need-vs-have: $(cat "$tmp/err")"
    refuse missing-part env CASCADE_MEMORY=64G "$BIN" generate --quiet -p x --models "$tmp/m" \
        --stage-a "$tmp/empty/stage_a.safetensors" -o "$tmp/o/bad.png"
else
    echo "note: $MK not built: model-file cases skipped"
fi
[ -z "$(ls -A "$tmp/o" | grep -v '\.png$\|^d$')" ] && ok no-temp-files || { bad no-temp-files; ls -A "$tmp/o"; }

# ---- Ctrl-C: exit 130, no image, the preview it made removed ----
$BIN generate --demo -p x --steps-c 10000 -W 64 -H 64 -o "$tmp/o/int.png" --preview "$tmp/o/int_prev.png" \
    --preview-every 1 >"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while [ $i -lt 100 ] && ! grep -q "Stage C" "$tmp/err"; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
kill -INT "$pid"
wait "$pid"; rc=$?
pid=
if [ "$rc" -eq 130 ] && [ ! -e "$tmp/o/int.png" ] && [ ! -e "$tmp/o/int_prev.png" ] &&
   tail -n 1 "$tmp/err" | grep -q "interrupted; nothing written"; then ok sigint
else bad "sigint: exit $rc"; tail -n 3 "$tmp/err"; ls "$tmp/o"; fi

$BIN generate --help >/dev/null && ok help || bad help
exit $fail
