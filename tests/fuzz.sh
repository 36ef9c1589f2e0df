#!/bin/sh
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS
# (default 30) from its seed corpus tests/corpus/<target>/. Every seed is run
# first, so a regression input committed there fails at once.
# Usage: tests/fuzz.sh [SECONDS [TARGET...]]   targets: safetensors tokenizer config golden image toml
# SECONDS 0 runs the seeds only (regression check).
# Exit: 0 no finding, 1 a crash, leak, timeout or out-of-memory (the input is
# kept in FUZZ_ARTIFACTS, default ./fuzz-artifacts, and its path printed),
# 77 clang missing (a failure when CI is set), 2 bad usage.
# FUZZ_KEEP=DIR keeps the built targets and the grown corpus there (a later run
# recompiles the sources newer than their objects; header changes are not seen).
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
targets=${*:-safetensors tokenizer config golden image toml}
case $secs in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number, not '$secs'" >&2; exit 2 ;; esac
for t in $targets; do
    [ -f "$top/tests/fuzz_$t.c" ] || { echo "fuzz.sh: no target '$t' (tests/fuzz_$t.c)" >&2; exit 2; }
done
if ! command -v clang >/dev/null; then
    [ -n "$CI" ] && { echo "ERROR: clang not found (CI must fuzz; scripts/install-deps installs it)"; exit 1; }
    echo "SKIP: clang not found"; exit 77
fi
work=${FUZZ_KEEP:-$(mktemp -d)}
mkdir -p "$work/obj" || exit 1
[ -n "$FUZZ_KEEP" ] || trap 'rm -rf "$work"' EXIT
art=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}

# the library, once, instrumented for coverage (the CPU kernels at scalar level only)
printf '#define PACKAGE_VERSION "fuzz"\n#define CS_PLUGIN_DIR "/nowhere"\n#define CS_BUILD_OPTIONS "fuzz"\n' \
    > "$work/config.h"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -std=c11 -D_GNU_SOURCE -include $work/config.h -I$top/src -I$top/simd
 $(pkg-config --cflags jansson libxxhash libpcre2-8 libutf8proc libpng) $san"
libs="$(pkg-config --libs jansson libxxhash libpcre2-8 libutf8proc libpng) $(pkg-config --libs libjpeg 2>/dev/null || echo -ljpeg) -ldl -lpthread -lm"
objs=
# the golden runner's case parser and handlers, for the golden target only
gobjs=
for s in "$top"/src/*.c "$top/simd/ref.c" "$top/simd/dispatch.c" "$top/simd/table.c" "$top/simd/fp16.c" "$top"/tests/golden/golden_*.c; do
    o="$work/obj/$(basename "$s" .c).o"
    case $s in */tests/golden/golden_*) gobjs="$gobjs $o" ;; *) objs="$objs $o" ;; esac
    [ "$o" -nt "$s" ] && continue
    clang $cflags -fsanitize=fuzzer-no-link -c "$s" -o "$o" 2>"$work/cc.log" ||
        { cat "$work/cc.log"; echo "fuzz.sh: cannot compile $s"; exit 1; }
done

status=0
for t in $targets; do
    echo "=== fuzz_$t: $secs s"
    extra=; [ "$t" = golden ] && extra=$gobjs
    clang $cflags -fsanitize=fuzzer "$top/tests/fuzz_$t.c" $extra $objs $libs -o "$work/fuzz_$t" ||
        { echo "fuzz.sh: cannot build fuzz_$t"; status=1; continue; }
    rm -rf "$work/corpus_$t" && mkdir -p "$work/corpus_$t" "$art"
    # libFuzzer reads every seed before mutating; the grown corpus stays in $work
    if [ "$secs" -eq 0 ]; then run="-runs=0"; else run="-max_total_time=$secs"; fi
    "$work/fuzz_$t" $run -max_len=8192 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$art/$t-" \
        "$work/corpus_$t" "$top/tests/corpus/$t" >"$work/log_$t" 2>&1
    rc=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::number_of_executed_units|^stat::peak_rss' "$work/log_$t"
    if [ $rc -ne 0 ]; then
        tail -n 40 "$work/log_$t"
        echo "=== fuzz_$t: FAILED (exit $rc); inputs: $(ls "$art"/"$t"-* 2>/dev/null | tr '\n' ' ')"
        status=1
    else
        echo "=== fuzz_$t: ok"
        rmdir "$art" 2>/dev/null
    fi
done
exit $status
