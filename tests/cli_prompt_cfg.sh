#!/bin/sh
# CFG halves of different chunk counts, end to end on the demo networks
# (--prompt-style comfyui; the demo tokenizer makes each "x " one token):
#  - 3-chunk prompt, 1-chunk negative: ComfyUI tiles the negative to 3 chunks,
#    so the image must equal the one whose negative is those 3 chunks written
#    out (225 x: three identical chunks), and differ from a 74-x negative;
#  - lengths further apart than 4x (5 chunks vs 1, and the other way round)
#    run the halves apart: both succeed, repeat exactly, and differ.
BIN=$CASCADE_BIN
PNGINFO="$(dirname "$BIN")/tests/png_info"
[ -x "$PNGINFO" ] || { echo "ERROR: $PNGINFO not built (make check builds it)"; exit 99; }
T=$(mktemp -d) || exit 99
trap 'rm -rf "$T"' EXIT
fail=0
rep() { i=0; while [ $i -lt "$1" ]; do printf '%s' "$2"; i=$((i + 1)); done; }
px() { "$PNGINFO" "$1" --pixels; }
G="$BIN generate --demo --quiet -W 64 -H 64 --steps-c 3 --steps-b 2 --seed 7"
gen() {  # gen OUT PROMPT NEGATIVE
    $G -p "$2" -n "$3" -o "$T/$1.png" >/dev/null 2>"$T/err" || { echo "FAIL: generate $1"; cat "$T/err"; fail=1; }
}
P3=$(rep 200 'y ')
gen n1 "$P3" "$(rep 75 'x ')"
gen n3 "$P3" "$(rep 225 'x ')"
gen n0 "$P3" "$(rep 74 'x ')"
[ "$(px "$T/n1.png")" = "$(px "$T/n3.png")" ] && echo "ok tiled negative" || { echo "FAIL: the 1-chunk negative is not tiled to 3 chunks"; fail=1; }
[ "$(px "$T/n1.png")" != "$(px "$T/n0.png")" ] && echo "ok negative matters" || { echo "FAIL: the negative changed nothing"; fail=1; }
P5=$(rep 375 'y ')
gen s1 "$P5" "$(rep 10 'x ')"
gen s2 "$P5" "$(rep 10 'x ')"
gen s3 "$(rep 10 'y ')" "$(rep 375 'x ')"
[ "$(px "$T/s1.png")" = "$(px "$T/s2.png")" ] && echo "ok apart repeats" || { echo "FAIL: halves run apart differ between runs"; fail=1; }
[ "$(px "$T/s1.png")" != "$(px "$T/s3.png")" ] && echo "ok apart differ" || { echo "FAIL: swapped lengths gave the same image"; fail=1; }
exit $fail
