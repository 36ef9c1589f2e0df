#!/bin/sh
# Builds the golden case-parser fuzz target (tests/fuzz_golden.c: case
# validation plus the op and block handlers, the whole library compiled at
# the scalar level) with clang's libFuzzer + ASan/UBSan and runs it for
# FUZZ_SECONDS (default 30) from the seed corpus tests/corpus/golden/
# (written by tests/golden_mkcase: a valid LayerNorm case and hostile ones).
# Usage: tests/fuzz_golden.sh [seconds]   (from the repo root; needs clang)
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
command -v clang >/dev/null || { echo "SKIP: clang not found"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work" /tmp/cs_fuzz_golden_*.io.safetensors' EXIT
trap 'exit 130' INT TERM
printf '#define PACKAGE_VERSION "fuzz"\n#define CS_PLUGIN_DIR "/nowhere"\n#define CS_BUILD_OPTIONS "fuzz"\n' > "$work/config.h"
lib=$(ls "$top"/src/*.c)
clang -g -O1 -std=c11 -D_GNU_SOURCE -fopenmp -fsanitize=fuzzer,address,undefined -include "$work/config.h" \
    -I"$top/src" -I"$top/simd" $(pkg-config --cflags jansson libxxhash libpng) \
    "$top/tests/fuzz_golden.c" "$top"/src/cli/golden_*.c $lib "$top/simd/ref.c" "$top/simd/dispatch.c" \
    $(pkg-config --libs jansson libxxhash libpng) -lopenblas -lpcre2-8 -lutf8proc -ldl -lm -o "$work/fuzz"
mkdir -p "$work/corpus"
cp "$top"/tests/corpus/golden/* "$work/corpus/"
"$work/fuzz" -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=20 "$work/corpus" 2>&1 | tail -n 5
