#!/bin/sh
# `cascade info` claims only what the build made: a plugin reported as built
# (cuda=yes) must exist as a file of the build; the CUDA plugin does not exist
# yet, so the build line says cuda=not-yet whatever toolkit configure saw.
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
    not-yet) [ -z "$(ls "$top"/cuda/*.cu 2>/dev/null)" ] && echo "ok cuda=not-yet (no plugin sources)" && exit 0
             echo "FAIL: cuda/*.cu exist: the build line should say whether the plugin was built"; exit 1 ;;
    yes) for f in "$top/.libs/libcascade-cuda.so" "$top/cuda/.libs/libcascade-cuda.so"; do
             [ -f "$f" ] && { echo "ok cuda=yes and $f exists"; exit 0; }
         done
         echo "FAIL: cuda=yes, but no libcascade-cuda.so was built"; exit 1 ;;
    no) echo "ok cuda=no"; exit 0 ;;
    *) echo "FAIL: cuda='$cuda' in the build line"; exit 1 ;;
esac
