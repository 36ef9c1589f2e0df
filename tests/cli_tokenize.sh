#!/bin/sh
# `cascade tokenize`: exact output for a few prompts, and its error paths.
# Needs CASCADE_BIN and SHARED_DIR (set by make check).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared tokenizer
BIN=$CASCADE_BIN
TOK=$SHARED_DIR/tokenizer
fail=0
tmp=${TMPDIR:-/tmp}/cli_tokenize.$$
trap 'rm -f "$tmp".*' EXIT

expect() {  # expect NAME STATUS FILE-WITH-EXPECTED-OUTPUT -- command...
    name=$1 want_rc=$2 want=$3; shift 4
    "$@" >"$tmp.out" 2>"$tmp.err"; rc=$?
    if [ "$rc" != "$want_rc" ]; then
        echo "FAIL $name: exit $rc, expected $want_rc"; cat "$tmp.err"; fail=1
    elif ! cmp -s "$want" "$tmp.out"; then
        echo "FAIL $name: output differs"; diff "$want" "$tmp.out"; fail=1
    else
        echo "ok $name"
    fi
}
expect_err() {  # expect_err NAME STATUS TEXT-IN-STDERR -- command...
    name=$1 want_rc=$2 want=$3; shift 4
    "$@" >"$tmp.out" 2>"$tmp.err"; rc=$?
    if [ "$rc" != "$want_rc" ] || ! grep -qF -- "$want" "$tmp.err"; then
        echo "FAIL $name: exit $rc (expected $want_rc), stderr:"; cat "$tmp.err"; fail=1
    else
        echo "ok $name"
    fi
}

printf '%s\n' '{"ids":[49406,320,1125,539,320,2368,269,49407],"tokens":["<|startoftext|>","a</w>","photo</w>","of</w>","a</w>","cat</w>",".</w>","<|endoftext|>"]}' >"$tmp.j1"
expect json 0 "$tmp.j1" -- "$BIN" tokenize --tokenizer "$TOK" --json -- "A photo of a Cat."

printf '%s\n' '{"ids":[49406,49407],"tokens":["<|startoftext|>","<|endoftext|>"]}' >"$tmp.j2"
expect empty 0 "$tmp.j2" -- "$BIN" tokenize --tokenizer "$TOK" --json -- ""

cat >"$tmp.t1" <<'END'
    0  49406  <|startoftext|>
    1   3306  hello</w>
    2    267  ,</w>
    3   1002  world</w>
    4    748  !!</w>
    5    272  1</w>
    6    568  's</w>
    7  15304  cafÃ©</w>
    8  49407  <|endoftext|>
END
expect table 0 "$tmp.t1" -- env CASCADE_TOKENIZER="$TOK" "$BIN" tokenize -- "Hello,  World!!" "1's" "Café"

# --prompt-style comfyui: one chunk, weights per token (1.2 and the x1.1 of (b))
printf '%s\n' '{"prompt_style":"comfyui","chunks":[{"ids":[49406,320,2368,321,263,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407,49407],"tokens":["<|startoftext|>","a</w>","cat</w>","b</w>","(</w>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>","<|endoftext|>"],"weights":[1.0,1.2,1.2,1.1000000000000001,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]}]}' >"$tmp.j2"
expect comfyui-json 0 "$tmp.j2" -- "$BIN" tokenize --tokenizer "$TOK" --prompt-style comfyui --json -- '(a cat:1.2)(b)\('
# 100 tokens: two chunks (75 + BOS/EOS, then 25 + EOS padding), the weight on the first
rep() { i=0; while [ $i -lt "$1" ]; do printf '%s' "$2"; i=$((i + 1)); done; }
chunk() {  # chunk N-CATS FIRST-WEIGHT: one chunk object
    printf '{"ids":[49406,'; rep "$1" '2368,'; rep $((76 - $1 - 1)) '49407,'; printf '49407],"tokens":["<|startoftext|>",'
    rep "$1" '"cat</w>",'; rep $((76 - $1 - 1)) '"<|endoftext|>",'; printf '"<|endoftext|>"],"weights":[1.0,%s,' "$2"
    rep $((76 - 2)) '1.0,'; printf '1.0]}'
}
{ printf '{"prompt_style":"comfyui","chunks":['; chunk 75 1.5; printf ','; chunk 25 1.0; printf ']}\n'; } >"$tmp.j3"
expect comfyui-json-2chunks 0 "$tmp.j3" -- "$BIN" tokenize --tokenizer "$TOK" --prompt-style comfyui --json -- \
    "(cat:1.5) $(rep 99 'cat ')"
expect_err bad-style 2 "--prompt-style x: use official or comfyui" -- "$BIN" tokenize --tokenizer "$TOK" --prompt-style x -- "a"
expect_err inf-weight 1 "weight 'inf' is not a finite number" -- "$BIN" tokenize --tokenizer "$TOK" --prompt-style comfyui -- "(a:inf)"
expect_err no-dir 2 "pass --tokenizer DIR or set CASCADE_TOKENIZER" -- env -u CASCADE_TOKENIZER "$BIN" tokenize -- "a cat"
expect_err missing 1 "/nonexistent/vocab.json: cannot open" -- "$BIN" tokenize --tokenizer /nonexistent -- "a cat"
expect_err bad-utf8 1 "invalid UTF-8 at byte 4" -- "$BIN" tokenize --tokenizer "$TOK" -- "$(printf 'cat \377')"
expect_err no-text 2 "no TEXT given" -- "$BIN" tokenize --tokenizer "$TOK"
exit $fail
