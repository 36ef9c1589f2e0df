#!/bin/sh
# `cascade info` claims only what the build made: cuda=yes only when the
# plugin libcascade-cuda.so was built (configure found nvcc), cuda=no with
# no plugin in the build tree; any other value is a lie or a stale build.
BIN=$CASCADE_BIN
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ "$CASCADE_SIMD" != "$("$BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only)"; exit 0
fi
line=$("$BIN" info | sed -n 's/^build: *//p')
[ -n "$line" ] || { echo "FAIL: no build line in cascade info"; exit 1; }
echo "build: $line"
cuda=$(echo "$line" | tr ' ' '\n' | sed -n 's/^cuda=//p')
top=$(dirname "$BIN")
case $cuda in
    yes) [ -f "$top/cuda/.libs/libcascade-cuda.so" ] && { echo "ok cuda=yes and the plugin exists"; exit 0; }
         echo "FAIL: cuda=yes, but no cuda/.libs/libcascade-cuda.so was built"; exit 1 ;;
    no) [ -f "$top/cuda/.libs/libcascade-cuda.so" ] && { echo "FAIL: cuda=no, but the plugin was built"; exit 1; }
        # "not built", or the path of a plugin installed by another build
        p=$("$BIN" info | sed -n 's/^plugin: *//p')
        case $p in "not built"*|/*) echo "ok cuda=no, no plugin built (plugin: $p)"; exit 0 ;; esac
        echo "FAIL: cuda=no, but the plugin line says: $p"; exit 1 ;;
    *) echo "FAIL: cuda='$cuda' in the build line"; exit 1 ;;
esac
