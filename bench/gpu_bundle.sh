#!/bin/sh
# bench/gpu_bundle.sh DIR — puts what a GPU machine without a package registry needs into
# DIR (ignored by git, e.g. devrun/): the built cascade, libcascade, the CUDA plugin, the
# golden runner (tests/golden/cascade-golden), the op tests, bench/stage and bench/mkweights,
# the non-CUDA shared libraries they link (cuBLAS is found on the GPU machine), the spec
# manifests and the tokenizer. Golden cases are added by the caller (the whole set is over a
# device call's 64 MiB limit: see bench/RESULTS-cuda.md), or packed with GOLDEN=1 (below).
set -eu
[ $# -eq 1 ] || { echo "usage: bench/gpu_bundle.sh DIR" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED_DIR:-$top/../shared}
d=$1
mkdir -p "$d/bin" "$d/lib"
cd "$top"
make -s cascade tests/golden/cascade-golden bench/stage bench/mkweights tests/test_backend_ops tests/test_cuda_sgemm \
    tests/test_train_dev tests/train_fixture
# the programs themselves (libtool leaves a wrapper script where one links a shared library)
for p in cascade tests/golden/cascade-golden tests/test_backend_ops tests/test_cuda_sgemm tests/test_train_dev bench/stage \
    bench/mkweights tests/train_fixture; do
    b=$(dirname "$p")/.libs/$(basename "$p")
    if head -c 4 "$p" | grep -q ELF; then cp "$p" "$d/bin/"; else cp "$b" "$d/bin/"; fi
done
cp cuda/.libs/libcascade-cuda.so "$d/bin/"
cp -P .libs/libcascade.so.* "$d/bin/"   # the cascade program links it (the golden runner and tools do not)
for so in libxxhash.so.0 libjansson.so.4 libgomp.so.1 libpng16.so.16 libz.so.1 libpcre2-8.so.0 libutf8proc.so.2 libjpeg.so.62; do
    f=$(ldconfig -p | awk -v n="$so" '$1 == n && /x86-64/ {print $NF; exit}')
    [ -n "$f" ] && cp -L "$f" "$d/lib/"
done
cp -r "$shared/spec/manifests" "$shared/tokenizer" "$d/"
cp "$top/bench/gpu_check.sh" "$top/bench/ncu_sum.py" "$d/"
strip "$d"/bin/* 2>/dev/null || true   # symbols are half of the carry
# GOLDEN=1: every golden case but Stage A's full-size pair and the slim EffNet (their weights are
# 39 MB) and the host-only generator cases, xz-packed: 32 MB against 50 MB raw, so that with the
# tracked tree (11 MB) and the stripped programs the carry stays under a call's 64 MiB, which the
# raw set does not; gpu_check.sh unpacks it into golden/
if [ "${GOLDEN:-0}" = 1 ]; then
    (cd "$shared/golden" && tar cf - --exclude=stage_a.weights.safetensors --exclude='effnet_slim*' \
        --exclude='stage_a_encode*' --exclude='stage_a_decode*' --exclude=rng .) | xz -9 -T2 >"$d/golden.tar.xz"
fi
du -sh "$d"
