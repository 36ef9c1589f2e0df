#!/bin/sh
# Hostile golden cases (written by tests/golden_mkcase: truncated data, wrong,
# zero, huge and negative shapes and config values, missing keys, short
# parameters, an empty checked_outputs, a weights path outside the folder):
# `tests/golden/cascade-golden` must answer each with exactly one stderr line naming
# the case file, FAIL as its last stdout line and exit 1 - never a crash.
# Memory errors: the ASan/UBSan build (--enable-sanitizers) checks every run;
# otherwise valgrind, where installed, checks them at one SIMD level
# (CASCADE_HOSTILE_VALGRIND=0 turns it off).
mk="$(dirname "$CASCADE_BIN")/tests/golden_mkcase"
dir=$(mktemp -d) || exit 99
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
"$mk" "$dir" || { echo "golden_mkcase failed"; exit 99; }
vg=
if [ "${CASCADE_HOSTILE_VALGRIND:-1}" = 1 ] && command -v valgrind >/dev/null 2>&1 &&
   ! "$CASCADE_BIN" info 2>/dev/null | grep -q 'sanitizers=yes' &&
   { [ "$CASCADE_SIMD" = scalar ] || [ -z "$CASCADE_SIMD" ]; }; then
    lt="$(dirname "$CASCADE_BIN")/libtool"
    [ -x "$lt" ] && vg="$lt --mode=execute valgrind -q --error-exitcode=98 --leak-check=no"
fi
fail=0
# the generator's valid case passes, strict mode included: the hostile ones
# are that case with one thing broken
for s in "" --strict; do
    out=$("$GOLDEN_BIN" --threads 1 $s "$dir/good" 2>&1)
    [ $? -eq 0 ] || { echo "good case $s failed:"; echo "$out"; fail=1; }
done
n=0
for f in "$dir"/hostile_*.io.safetensors; do
    [ -f "$f" ] || continue
    case=${f%.io.safetensors}
    name=$(basename "$case")
    n=$((n + 1))
    $vg "$GOLDEN_BIN" --threads 1 "$case" >"$dir/out" 2>"$dir/err"
    rc=$?
    last=$(tail -n 1 "$dir/out")
    lines=$(grep -c . "$dir/err")
    if [ $rc -ne 1 ] || [ "$last" != FAIL ] || [ "$lines" -ne 1 ] || ! grep -qF "$case" "$dir/err"; then
        echo "$name: exit $rc, last line '$last', $lines stderr lines:"
        cat "$dir/out" "$dir/err"
        fail=1
    else
        echo "$name: $(cat "$dir/err")"
    fi
done
[ $n -ge 30 ] || { echo "only $n hostile cases written"; fail=1; }
# the runner's stable options: --device and --precision
opt() {   # opt EXIT ARGS...: exit status, and one stderr line when it is not 0
    want=$1; shift
    "$GOLDEN_BIN" "$@" >"$dir/out" 2>"$dir/err"
    rc=$?
    if [ $rc -ne "$want" ] || { [ "$want" -ne 0 ] && [ "$(grep -c . "$dir/err")" -ne 1 ]; }; then
        echo "cascade-golden $*: exit $rc (wanted $want)"; cat "$dir/err"; fail=1
    fi
}
opt 0 --device cpu --precision fp32 --threads 1 "$dir/good"
opt 0 --device auto --precision auto --strict "$dir/good"
opt 1 --device cuda "$dir/good"
opt 1 --device cuda:0 "$dir/good"
# bf16 on the CPU: only with a native bf16 kernel (AVX512-BF16 or AMX at the avx512 level); fp16 never
if "$CASCADE_BIN" info 2>/dev/null | grep -q '^cpu bf16: .*dpbf16ps'; then
    opt 0 --device cpu --precision bf16 "$dir/good"
else
    opt 1 --device cpu --precision bf16 "$dir/good"
fi
opt 1 --device cpu --precision fp16 "$dir/good"
opt 2 --device gpu "$dir/good"
opt 2 --device cuda:x "$dir/good"
opt 2 --precision q8 "$dir/good"
[ -n "$vg" ] && echo "(checked under valgrind)"
exit $fail
