#!/bin/sh
# Builds a fuzz target with clang's libFuzzer + ASan/UBSan and runs it for
# FUZZ_SECONDS (default 30) from a small seed corpus.
#   tests/fuzz.sh [seconds]          the safetensors reader (fuzz_safetensors.c)
#   tests/fuzz.sh [seconds] golden   the golden case parser and the op/block
#                                    handlers (fuzz_golden.c, corpus tests/corpus/golden)
# (from the repo root; needs clang)
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
target=${2:-safetensors}
command -v clang >/dev/null || { echo "SKIP: clang not found"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inc=$(pkg-config --cflags jansson libxxhash)
libs=$(pkg-config --libs jansson libxxhash)
printf '#define PACKAGE_VERSION "fuzz"\n#define CS_PLUGIN_DIR "/nowhere"\n#define CS_BUILD_OPTIONS "fuzz"\n' > "$work/config.h"
mkdir -p "$work/corpus"
if [ "$target" = golden ]; then
    # the whole library at the scalar level (no SIMD flags in this config.h)
    lib=$(ls "$top"/src/*.c | grep -v -e /cascade_ -e /main.c)
    clang -g -O1 -std=c11 -D_GNU_SOURCE -fopenmp -fsanitize=fuzzer,address,undefined -include "$work/config.h" \
        -I"$top/src" -I"$top/simd" $inc $(pkg-config --cflags openblas libpng 2>/dev/null) \
        "$top/tests/fuzz_golden.c" "$top"/src/cli/golden_*.c $lib "$top/simd/ref.c" "$top/simd/dispatch.c" \
        $libs $(pkg-config --libs openblas libpng 2>/dev/null || echo -lopenblas -lpng) -lpcre2-8 -lutf8proc -ldl -lm \
        -o "$work/fuzz"
    cp "$top"/tests/corpus/golden/* "$work/corpus/"
    "$work/fuzz" -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 "$work/corpus" 2>&1 | tail -n 5
    rm -f /tmp/cs_fuzz_golden_*.io.safetensors
    exit 0
fi
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -include "$work/config.h" \
    -I"$top/src" $inc "$top/tests/fuzz_safetensors.c" "$top/src/safetensors.c" "$top/src/tensor.c" \
    "$top/src/error.c" $libs -lm -o "$work/fuzz"
i=0
for f in "$top"/tests/data/safetensors/*.safetensors; do
    [ -f "$f" ] && cp "$f" "$work/corpus/$i" && i=$((i + 1))
done
printf '\x3c\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}    \x00\x00\x00\x00\x00\x00\x00\x00' > "$work/corpus/seed"
"$work/fuzz" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 "$work/corpus" 2>&1 | tail -n 5
