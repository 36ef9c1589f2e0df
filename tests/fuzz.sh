#!/bin/sh
# Builds the safetensors fuzz target with clang's libFuzzer + ASan/UBSan and
# runs it for FUZZ_SECONDS (default 30) from a small seed corpus.
# Usage: tests/fuzz.sh [seconds]   (from the repo root; needs clang)
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
command -v clang >/dev/null || { echo "SKIP: clang not found"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inc=$(pkg-config --cflags jansson libxxhash)
libs=$(pkg-config --libs jansson libxxhash)
printf '#define PACKAGE_VERSION "fuzz"\n' > "$work/config.h"
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -include "$work/config.h" \
    -I"$top/src" $inc "$top/tests/fuzz_safetensors.c" "$top/src/safetensors.c" "$top/src/tensor.c" \
    "$top/src/error.c" $libs -lm -o "$work/fuzz"
mkdir -p "$work/corpus"
i=0
for f in "$top"/tests/data/safetensors/*.safetensors; do
    [ -f "$f" ] && cp "$f" "$work/corpus/$i" && i=$((i + 1))
done
printf '\x3c\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}    \x00\x00\x00\x00\x00\x00\x00\x00' > "$work/corpus/seed"
"$work/fuzz" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 "$work/corpus" 2>&1 | tail -n 5
