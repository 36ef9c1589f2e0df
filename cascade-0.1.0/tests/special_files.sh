#!/bin/sh
# Special files at the CLI: FIFOs and links to /dev/zero given as a model
# file, tokenizer files or a plugin are refused at once with one line naming
# them (exit 1), never waited on or read forever; `generate --force` (-o and
# --preview) never replaces a FIFO, a device or a link, and writes nothing.
# Every command runs under timeout(1), so a regression fails instead of hanging.
BIN=$CASCADE_BIN
[ -x "$BIN" ] || { echo "ERROR: CASCADE_BIN not set"; exit 99; }
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ "$CASCADE_SIMD" != "$("$BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only)"; exit 0
fi
command -v timeout >/dev/null || { echo "SKIP: timeout(1) not found"; exit 77; }
command -v mkfifo >/dev/null || { echo "SKIP: mkfifo not found"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/special_files.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

# expect NAME RC 'one line of stderr' -- command...: exit status and the exact one-line message
expect() {
    name=$1 want=$2 line=$3; shift 4
    timeout 30 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; rc=$?
    if [ $rc = 124 ]; then bad "$name: hung (killed after 30 s)"; return; fi
    if [ $rc != "$want" ]; then bad "$name: exit $rc, expected $want"; cat "$tmp/err"; return; fi
    if [ "$(cat "$tmp/err")" = "$line" ]; then ok "$name"; else bad "$name: stderr is not '$line' but:"; cat "$tmp/err"; fi
}

cd "$tmp" || exit 99
mkfifo fifo
ln -s /dev/zero zero
mkdir tok-fifo tok-zero tok-merges
mkfifo tok-fifo/vocab.json; printf '#version: 0.2\n' >tok-fifo/merges.txt
ln -s /dev/zero tok-zero/vocab.json; printf '#version: 0.2\n' >tok-zero/merges.txt
# a valid vocabulary (CLIP's byte symbols, with and without </w>) so that merges.txt is reached
have_py=0
python3 - >tok-merges/vocab.json <<'PY' && have_py=1
import json
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
syms = [chr(c) for c in cs]
toks = syms + [s + "</w>" for s in syms] + ["<|startoftext|>", "<|endoftext|>"]
print(json.dumps({t: i for i, t in enumerate(toks)}))
PY
mkfifo tok-merges/merges.txt

# inputs
expect model-fifo 1 "cascade models: fifo: not a regular file (a FIFO)" -- "$BIN" models --no-hash --stage-c fifo
expect model-zero 1 "cascade models: zero: not a regular file (a character device)" -- "$BIN" models --no-hash --stage-c zero
expect vocab-fifo 1 "cascade tokenize: tok-fifo/vocab.json: not a regular file (a FIFO)" -- "$BIN" tokenize --tokenizer tok-fifo -- "a cat"
expect vocab-zero 1 "cascade tokenize: tok-zero/vocab.json: not a regular file (a character device)" -- "$BIN" tokenize --tokenizer tok-zero -- "a cat"
[ $have_py = 1 ] &&
expect merges-fifo 1 "cascade tokenize: tok-merges/merges.txt: not a regular file (a FIFO)" -- "$BIN" tokenize --tokenizer tok-merges -- "a cat"
expect plugin-fifo 1 "cascade: backend '$tmp/fifo': cannot load $tmp/fifo: not a regular file (a FIFO)" -- env CASCADE_BACKEND="$tmp/fifo" "$BIN" info

# outputs: -o / --preview never replace a FIFO, a device or a link, even with --force
ln -s /dev/null null.png
mkfifo out.png prev.png
gen="$BIN generate --demo -q -p cat --steps-c 1 --steps-b 1"
expect out-fifo 1 "cascade generate: cannot write out.png: it is a FIFO, not a regular file (--force replaces only regular files)" -- $gen -o out.png
expect out-fifo-force 1 "cascade generate: cannot write out.png: it is a FIFO, not a regular file (--force replaces only regular files)" -- $gen -o out.png --force
expect out-link-force 1 "cascade generate: cannot write null.png: it is a symbolic link, not a regular file (--force replaces only regular files)" -- $gen -o null.png --force
# a device node of our own (root only): never /dev/null itself, which a regression would replace
if mknod dev.png c 1 3 2>/dev/null; then
    expect out-dev-force 1 "cascade generate: cannot write dev.png: it is a character device, not a regular file (--force replaces only regular files)" -- $gen -o dev.png --force
    [ -c dev.png ] && ok out-dev-untouched || bad out-dev-untouched
else
    echo "ok out-dev-force # SKIP: mknod needs root"
fi
expect preview-fifo-force 1 "cascade generate: cannot write prev.png: it is a FIFO, not a regular file (--force replaces only regular files)" -- $gen -o new.png --preview prev.png --force
[ -p out.png ] && [ -p prev.png ] && [ -L null.png ] && ok outputs-untouched || bad outputs-untouched
if ls -a | grep -q 'png\.[0-9a-f]*\.tmp\|^new\.png$'; then bad "outputs: files left: $(ls -a | tr '\n' ' ')"; else ok outputs-nothing-written; fi
# and a regular file is still replaced with --force
printf 'old\n' >reg.png
if timeout 60 "$BIN" generate --demo -q -p "a cat" --steps-c 1 --steps-b 1 -o reg.png --force >/dev/null 2>"$tmp/err" &&
   [ "$(head -c 4 reg.png | tail -c 3)" = PNG ]; then ok out-regular-force; else bad out-regular-force; cat "$tmp/err"; fi
exit $fail
