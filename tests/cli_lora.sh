#!/bin/sh
# cascade generate --lora on the demo networks: the LoRA is recorded in the
# PNG (loras JSON, <lora:NAME:S> and its xxh64 in parameters); unmatched keys
# fail with the listing and exit 1 leaving no file; a bad strength exits 2.
D=$TOP_SRCDIR/tests/data/lora
T=$(mktemp -d) || exit 99
trap 'rm -rf "$T"' EXIT
fail=0
XDG_CACHE_HOME=$T/cache "$CASCADE_BIN" generate --demo -q -p cat --seed 1 --lora "$D/peft.safetensors:0.8" \
    --lora-c "$D/stack_b.safetensors:-0.5" -o "$T/a.png" 2>"$T/err" || { echo "FAIL: generate with --lora"; cat "$T/err"; fail=1; }
# the LoRA files are hashed beside the run (threads) and the hashes cached: the
# PNG's value and the cache's agree, and a second run reads the same value
h=$(grep -ao '"file":"peft.safetensors","strength":0.8,"xxh64":"[0-9a-f]*"' "$T/a.png" | sed 's/.*"xxh64":"//; s/"//')
grep -q "^$h [0-9]* [0-9.]* .*/peft.safetensors\$" "$T/cache/cascade/hashes" 2>/dev/null \
    || { echo "FAIL: peft.safetensors's hash $h not in the hash cache"; cat "$T/cache/cascade/hashes"; fail=1; }
XDG_CACHE_HOME=$T/cache "$CASCADE_BIN" generate --demo -q -p cat --seed 1 --lora "$D/peft.safetensors:0.8" \
    --lora-c "$D/stack_b.safetensors:-0.5" -o "$T/a2.png" 2>/dev/null && cmp -s "$T/a.png" "$T/a2.png" \
    || { echo "FAIL: a second run (hashes from the cache) differs"; fail=1; }
grep -aq 'cat <lora:peft:0.8> <lora:stack_b:-0.5>' "$T/a.png" || { echo "FAIL: no <lora:...> tags in parameters"; fail=1; }
grep -aq '"file":"peft.safetensors","strength":0.8,"xxh64":"[0-9a-f]\{16\}"' "$T/a.png" || { echo "FAIL: no loras metadata"; fail=1; }
grep -aq 'Lora hashes: "peft: [0-9a-f]\{16\}, stack_b: [0-9a-f]\{16\}".*Prompt style: comfyui, Version' "$T/a.png" \
    || { echo "FAIL: no Lora hashes / Prompt style in parameters"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --seed 1 --prompt-style official -o "$T/o.png" 2>"$T/err" &&
    grep -aq 'RNG: torch-cpu, Prompt style: official, Version' "$T/o.png" || { echo "FAIL: Prompt style: official"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --seed 1 -o "$T/b.png" 2>/dev/null
cmp -s "$T/a.png" "$T/b.png" && { echo "FAIL: the LoRA changed nothing"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --lora "$D/unmatched.safetensors" -o "$T/u.png" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -q 'unmatched.safetensors: 24 LoRA keys match no Stage C weight: lora_unet_no_such_block_00' "$T/err" \
    && [ ! -e "$T/u.png" ] || { echo "FAIL: unmatched keys: rc $rc"; cat "$T/err"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --lora-lenient --lora "$D/unmatched.safetensors" -o "$T/l.png" 2>"$T/err" \
    || { echo "FAIL: --lora-lenient"; cat "$T/err"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --lora "$D/peft.safetensors:x" -o "$T/s.png" 2>"$T/err"
rc=$?
[ $rc -eq 2 ] && grep -q -- "--lora: 'x' is not a number" "$T/err" || { echo "FAIL: bad strength: rc $rc"; cat "$T/err"; fail=1; }
"$CASCADE_BIN" generate --demo -q -p cat --lora "$T/missing.safetensors" -o "$T/m.png" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -q 'missing.safetensors' "$T/err" || { echo "FAIL: missing file: rc $rc"; cat "$T/err"; fail=1; }
# the memory need counts the float32 copies a merge makes: a (sparse, never read)
# 4 GiB .diff raises Stage C's need by 4.0 GiB
MK="$(dirname "$CASCADE_BIN")/tests/test_models"
if [ -x "$MK" ] && "$MK" --make-tree "$T/m" flat-min >/dev/null; then
    h='{"stage_c_fake.diff":{"dtype":"F32","shape":[32768,32768],"data_offsets":[0,4294967296]}}'
    { printf '\140\000\000\000\000\000\000\000'; printf '%-96s' "$h"; } >"$T/big.safetensors"
    truncate -s $((8 + 96 + 4294967296)) "$T/big.safetensors"
    need() { CASCADE_MEMORY=2G "$CASCADE_BIN" generate --quiet -p x --models "$T/m" "$@" -o "$T/n.png" 2>&1 |
        sed -n 's/.*Stage C .* needs \([0-9.]*\) GiB.*/\1/p'; }
    n0=$(need) n1=$(need --lora "$T/big.safetensors")
    [ -n "$n0" ] && [ "$(awk "BEGIN { print $n1 - $n0 }")" = 4 ] || { echo "FAIL: LoRA memory: need $n0 -> $n1 GiB"; fail=1; }
else
    echo "note: $MK not built: the memory-need check is skipped"
fi
[ $fail -eq 0 ] && echo "cli_lora: all checks passed"
exit $fail
