#!/bin/sh
# The NEON kernels without ARM hardware: cross-compiles tests/test_kernels.c
# with the scalar reference, dispatch and simd/arm/neon.c (no BLAS needed)
# for aarch64 and runs it under qemu-aarch64. Run from anywhere:
#   sh tests/neon-qemu.sh
# Exit: the test's status; 77 when the cross compiler or qemu is missing
# (99 instead when CI is set, unless CASCADE_CROSS=0). CROSS_CC / QEMU_AARCH64 override the tools.
top=${TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
sysroot=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}

missing() {   # under CI a failure, unless CASCADE_CROSS=0 says this machine has no cross tools
    if [ -n "$CI" ] && [ "${CASCADE_CROSS:-1}" != 0 ]; then echo "ERROR: $1"; exit 99; fi
    echo "SKIP: $1"; exit 77
}
command -v "$cc" >/dev/null 2>&1 || missing "$cc not found (Debian: apt-get install gcc-aarch64-linux-gnu)"
command -v "$qemu" >/dev/null 2>&1 || missing "$qemu not found (Debian: apt-get install qemu-user)"

out=$(mktemp -d "${TMPDIR:-/tmp}/neon-qemu.XXXXXX") || exit 99
trap 'rm -rf "$out"' EXIT
printf '#define CS_HAVE_NEON 1\n' >"$out/config.h"
# -ffp-contract=off as for the native build: exact kernels must round like the reference
flags="-std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -ffp-contract=off -D_GNU_SOURCE -include $out/config.h -I$top/src -I$top/simd"
srcs="$top/tests/test_kernels.c $top/simd/ref.c $top/simd/dispatch.c $top/simd/table.c $top/simd/arm/neon.c $top/simd/fp16.c $top/src/error.c $top/src/tensor.c $top/src/cpu.c"
echo "building with $cc"
# static if the cross libc allows it, else dynamic with the cross sysroot for qemu
if $cc $flags -static $srcs -o "$out/test_kernels" -lm 2>"$out/static.err"; then
    run="$qemu"
elif $cc $flags $srcs -o "$out/test_kernels" -lm; then
    run="$qemu -L $sysroot"
else
    cat "$out/static.err"
    echo "FAIL: cross build"
    exit 1
fi
echo "running under $run"
# all levels the emulated CPU has (NEON), whatever CASCADE_SIMD the caller set
env -u CASCADE_SIMD $run "$out/test_kernels"
