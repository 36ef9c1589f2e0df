#!/bin/sh
# The CUDA plugin as built (configure found nvcc): it loads from the build
# tree through CASCADE_PLUGIN_DIR, its ABI is this cascade's, `cascade info`
# lists its GPUs or one line saying why there are none, selecting it on a
# machine without a usable GPU fails with that one line (exit 1, no crash),
# and only the plugin links CUDA: libcascade and cascade need none of
# libcuda, libcudart, libcublas, and the plugin itself carries the runtime
# (no libcudart.so) and leaves the driver to be found at run time.
. "$TOP_SRCDIR/tests/shared.sh"
BIN=$CASCADE_BIN
top=$(dirname "$BIN")
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ "$CASCADE_SIMD" != "$("$BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only)"; exit 0
fi
need_tool readelf "reads the libraries' dependencies"
need_tool ldd "lists the libraries' dependencies"
plugin=$top/cuda/.libs/libcascade-cuda.so
[ -f "$plugin" ] || { echo "FAIL: $plugin was not built"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuda_plugin.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

# 1. who links what (the CLI links the engine statically, so libtool leaves
# no wrapper script: the binary is $top/cascade itself)
cli=$top/.libs/cascade
[ -f "$cli" ] || cli=$top/cascade
for f in "$top/.libs/libcascade.so" "$cli"; do
    [ -f "$f" ] || { bad "no $f"; continue; }
    deps=$(ldd "$f" 2>&1)
    if echo "$deps" | grep -Eq 'libcuda|libcudart|libcublas|libnv'; then
        bad "$(basename "$f") links CUDA:"; echo "$deps" | grep -E 'libcuda|libcudart|libcublas|libnv'
    else ok "$(basename "$f") links no CUDA library"; fi
done
needed=$(readelf -d "$plugin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
case " $needed" in
    *" libcudart"*|*" libcuda.so"*) bad "the plugin needs $needed (the runtime is linked statically, the driver is found at run time)" ;;
    *" libcublas.so"*) ok "plugin needs: $needed" ;;
    *) bad "the plugin does not link cuBLAS: $needed" ;;
esac
exported=$(nm -D --defined-only "$plugin" 2>/dev/null | awk '$2 ~ /^[TDB]$/ {print $3}' | tr '\n' ' ')
[ "$exported" = "cascade_backend_entry " ] && ok "exports only cascade_backend_entry" ||
    bad "the plugin exports more than its entry: $(echo "$exported" | cut -c1-200)"

# 2. cascade info lists the plugin and its GPUs, or why there are none
abi=$(sed -n 's/^#define CS_BACKEND_ABI \([0-9]*\).*/\1/p' "$TOP_SRCDIR/src/backend.h")
CASCADE_PLUGIN_DIR=$top/cuda/.libs "$BIN" info >"$tmp/info" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && ok "info exits 0 with the plugin" || { bad "info: exit $rc"; cat "$tmp/err"; }
grep -qx "plugin: *$top/cuda/.libs/libcascade-cuda.so (ABI $abi; CUDA runtime [0-9.]* (static), cuBLAS, .*)" "$tmp/info" &&
    ok "plugin line: path, ABI $abi, version" || { bad "plugin line:"; grep '^plugin' "$tmp/info"; }
reasons='no CUDA device|CUDA driver not found|driver too old: |CUDA driver not usable|CUDA: |no usable CUDA device'
gpus=$(sed -n 's/^gpus: *//p' "$tmp/info")
case $gpus in
    "none (libcascade-cuda.so loaded; "*)
        reason=${gpus#none (libcascade-cuda.so loaded; }; reason=${reason%)}
        echo "$reason" | grep -Eq "^($reasons)" && ok "no GPU here, and info says why: $reason" ||
            bad "gpus line gives no known reason: $gpus" ;;
    [1-9]*) grep -Eq '^  gpu 0: +.+, compute [0-9]+\.[0-9]+, [0-9.]+ GiB total, [0-9.]+ GiB free, driver [0-9]+\.[0-9]+' \
                "$tmp/info" && ok "gpus: $gpus" || { bad "gpu lines:"; grep '^  gpu' "$tmp/info"; }
            reason= ;;
    *) bad "gpus line: '$gpus'" ;;
esac

# 3. selecting it: works on a GPU; else one line with the same reason, exit 1
CASCADE_PLUGIN_DIR=$top/cuda/.libs CASCADE_BACKEND=cuda "$BIN" info >"$tmp/info2" 2>"$tmp/err"; rc=$?
if [ -z "$reason" ]; then
    [ $rc -eq 0 ] && grep -q '^backend: *cuda ' "$tmp/info2" && ok "CASCADE_BACKEND=cuda is active" ||
        { bad "CASCADE_BACKEND=cuda: exit $rc"; cat "$tmp/err"; }
else
    [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        [ "$(cat "$tmp/err")" = "cascade: backend 'cuda': not usable here: $reason" ] &&
        ok "CASCADE_BACKEND=cuda: exit 1, one line" || { bad "CASCADE_BACKEND=cuda: exit $rc:"; cat "$tmp/err"; }
fi

# 4. a driver that is present but cannot run (the toolkit's stub libcuda):
#    a clean reason, no crash, whatever GPU the machine has
stub=$CUDA_LIBDIR/stubs/libcuda.so
if [ -f "$stub" ]; then
    ln -s "$stub" "$tmp/libcuda.so.1"
    LD_LIBRARY_PATH=$tmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} CASCADE_PLUGIN_DIR=$top/cuda/.libs CASCADE_BACKEND=cuda \
        "$BIN" info >/dev/null 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "not usable here: CUDA: .*stub" "$tmp/err" &&
        ok "stub driver: $(cat "$tmp/err")" || { bad "stub driver: exit $rc:"; cat "$tmp/err"; }
else
    echo "note: no $stub; the stub-driver case is not run"
fi
exit $fail
