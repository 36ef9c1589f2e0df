#!/bin/sh
# `cascade models` on trees of header-only sparse files (made by
# tests/test_models --make-tree): listing, auto pick under forced memory,
# explicit variants, overrides, hashes and their cache, JSON, missing parts,
# --recommend, bad usage. Needs CASCADE_BIN (set by make check).
BIN=$CASCADE_BIN
MK="$(dirname "$BIN")/tests/test_models"
[ -x "$MK" ] || { echo "ERROR: $MK not built"; exit 99; }
. "${TOP_SRCDIR:-.}/tests/shared.sh"
need_tool python3 "used to read the JSON output"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cli_models.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

# run NAME WANT_RC -- command...: output in $tmp/out, $tmp/err
run() {
    name=$1 want=$2; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" != "$want" ]; then bad "$name: exit $rc, expected $want"; cat "$tmp/err"; return 1; fi
    return 0
}
has() {  # has NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: no '$3' in:"; cat "$2"; fi
}
# json NAME PYTHON-EXPRESSION over d (the parsed output)
json() {
    if python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$tmp/out"; then
        ok "$1"
    else
        bad "$1: JSON check failed: $2"; head -c 3000 "$tmp/out"
    fi
}

export XDG_CACHE_HOME="$tmp/cache" XDG_DATA_HOME="$tmp/data"
unset CASCADE_MODELS CASCADE_MEMORY
"$MK" --make-tree "$tmp/flat" flat || exit 99
"$MK" --make-tree "$tmp/small" small || exit 99

# plenty of memory: the full F32 stages; listing, tokenizer, no missing required part
run list 0 -- env CASCADE_MEMORY=64G "$BIN" models --models "$tmp/flat" --no-hash &&
{
    has list-stage-c "$tmp/out" "stage_c         stage_c               full      F32     14.36 GB  -                 $tmp/flat/stage_c.safetensors"
    has list-tokenizer "$tmp/out" "tokenizer: $tmp/flat/tokenizer"
    has list-fits "$tmp/out" "largest stage: Stage C needs"
    has list-pick "$tmp/out" "Stage C F32: the best present that fits"
    has list-looked "$tmp/out" "$tmp/data/cascade/models (does not exist)"
}

# 7 GiB: Stage C full F32 (14.4 GB) and BF16 (7.2 GB + scratch) do not fit; lite F32 does
run small-memory 0 -- env CASCADE_MEMORY=7G "$BIN" models --models "$tmp/flat" --no-hash --json &&
json small-memory-c "d['auto']['picks']['stage_c']['network']=='stage_c_lite' and d['auto']['picks']['stage_c']['dtype']=='F32' and d['auto']['fits']" &&
json small-memory-why "'Stage C BF16 needs' in d['auto']['picks']['stage_c']['why'] and d['auto']['have']==7*2**30 and d['auto']['need'] < d['auto']['have']-d['auto']['margin']"

# 2 GiB: nothing fits; the smallest is picked, exit status still 0 (the set is complete), flagged
run tiny-memory 0 -- env CASCADE_MEMORY=2G "$BIN" models --models "$tmp/flat" --no-hash &&
has tiny-memory "$tmp/out" "DOES NOT FIT"

# explicit variants per stage
run variants 0 -- env CASCADE_MEMORY=64G "$BIN" models --models "$tmp/flat" --no-hash --json \
    --stage-c-variant lite-bf16 --stage-b-variant bf16 &&
json variants "d['auto']['picks']['stage_c']['network']=='stage_c_lite' and d['auto']['picks']['stage_c']['dtype']=='BF16' and d['auto']['picks']['stage_b']['network']=='stage_b' and d['auto']['picks']['stage_b']['dtype']=='BF16'"

# an override must hold the right network
run override-wrong 1 -- "$BIN" models --models "$tmp/flat" --no-hash --stage-c "$tmp/flat/stage_b.safetensors" &&
has override-wrong "$tmp/err" "stage_b.safetensors: holds Stage B, not a Stage C"
run override 1 -- env CASCADE_MEMORY=64G "$BIN" models --models "$tmp/small" --no-hash --json \
    --stage-c "$tmp/flat/stage_c_lite.safetensors" --stage-b "$tmp/flat/stage_b_lite_bf16.safetensors" \
    --text-encoder "$tmp/flat/text_encoder/model.safetensors" &&
json override "d['auto']['picks']['stage_c']['why']=='given on the command line' and d['auto']['picks']['stage_a']['path'].startswith('$tmp/small/') and [m['part'] for m in d['missing']]==['effnet_encoder','clip_vision','tokenizer'] and [m['required'] for m in d['missing']]==[False,False,True]"

# hashes: 16 hex digits, the same on the second (cached) run, the cache file written
run hash1 1 -- "$BIN" models --models "$tmp/small" --json && cp "$tmp/out" "$tmp/h1" &&
json hash1 "all(len(f['xxh64'])==16 and int(f['xxh64'],16)>=0 for f in d['files']) and len(d['files'])==2"
run hash2 1 -- "$BIN" models --models "$tmp/small" --json &&
if python3 -c "import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); sys.exit(0 if [f['xxh64'] for f in a['files']]==[f['xxh64'] for f in b['files']] else 1)" "$tmp/h1" "$tmp/out"
then ok hash-repeat; else bad hash-repeat; fi
[ "$(wc -l <"$tmp/cache/cascade/hashes")" -eq 2 ] && ok hash-cache || bad "hash-cache: $(cat "$tmp/cache/cascade/hashes")"
# changing a file changes its hash (same size, new content)
printf 'X' | dd of="$tmp/small/stage_a.safetensors" bs=1 seek=1000000 conv=notrunc 2>/dev/null
run hash3 1 -- "$BIN" models --models "$tmp/small" --json &&
if python3 -c "import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); h=lambda d:{f['network']:f['xxh64'] for f in d['files']}; x,y=h(a),h(b); sys.exit(0 if x['stage_a']!=y['stage_a'] and x['previewer']==y['previewer'] else 1)" "$tmp/h1" "$tmp/out"
then ok hash-changed; else bad hash-changed; fi

# missing parts: exit 1, the message lists where it looked
run missing 1 -- "$BIN" models --models "$tmp/small" --no-hash &&
{
    has missing-err "$tmp/err" "no Stage C found (looked in: $tmp/small, $tmp/data/cascade/models (does not exist))"
    has missing-list "$tmp/out" "stage_c         (required)"
}
# $CASCADE_MODELS is searched after --models
run env-roots 0 -- env CASCADE_MEMORY=64G CASCADE_MODELS="$tmp/flat" "$BIN" models --models "$tmp/small" --no-hash --json &&
json env-roots "[r['why'] for r in d['roots']]==['--models','\$CASCADE_MODELS','default'] and d['auto']['picks']['stage_a']['path'].startswith('$tmp/small/') and d['auto']['picks']['stage_c']['path'].startswith('$tmp/flat/')"

# --recommend: from memory alone
run rec-big 0 -- env CASCADE_MEMORY=100G "$BIN" models --recommend && [ "$(cat "$tmp/out")" = full ] && ok rec-big || bad "rec-big: $(cat "$tmp/out")"
run rec-small 0 -- env CASCADE_MEMORY=3G "$BIN" models --recommend && [ "$(cat "$tmp/out")" = lite-bf16 ] && ok rec-small || bad "rec-small: $(cat "$tmp/out")"

# usage errors
run bad-opt 2 -- "$BIN" models --frobnicate && has bad-opt "$tmp/err" "unknown option '--frobnicate'"
run bad-variant 2 -- "$BIN" models --variant huge && has bad-variant "$tmp/err" "unknown variant 'huge'"
# one set of limits (the library's parameter table): what generate refuses,
# models refuses with the same words (only the command's name differs)
same_refusal() {  # same_refusal NAME TEXT OPTION VALUE
    run "$1-models" 2 -- "$BIN" models --no-hash "$3" "$4" && has "$1-models" "$tmp/err" "cascade models: $3: $2"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || bad "$1-models: more than one line"
    sed 's/^cascade models: //' "$tmp/err" >"$tmp/err.models"
    run "$1-generate" 2 -- "$BIN" generate --demo -p x -o "$tmp/never.png" "$3" "$4" &&
        has "$1-generate" "$tmp/err" "cascade generate: $3: $2"
    sed 's/^cascade generate: //' "$tmp/err" >"$tmp/err.generate"
    cmp -s "$tmp/err.models" "$tmp/err.generate" && ok "$1-same" || bad "$1-same: $(cat "$tmp/err.models") / $(cat "$tmp/err.generate")"
    [ ! -e "$tmp/never.png" ] || bad "$1: generate wrote a file"
}
same_refusal bad-width "12 is not a multiple of 8" --width 12
same_refusal big-width "'16384' is not a whole number in 8..8192" --width 16384
same_refusal small-height "'0' is not a whole number in 8..8192" --height 0
same_refusal big-batch "'65' is not a whole number in 1..64" --batch 65
# the smallest size the table takes is taken by both (models plans for it)
run small-ok 0 -- env CASCADE_MEMORY=3G "$BIN" models --recommend --width 8 --height 8 --batch 64 && ok small-ok
run missing-value 2 -- "$BIN" models --models && has missing-value "$tmp/err" "missing value for '--models'"
run help 0 -- "$BIN" models --help && has help "$tmp/out" "usage: cascade models"
exit $fail
