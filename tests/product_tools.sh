#!/bin/sh
# Developer tools stay out of the product (issue 9): the golden runner is
# tests/golden/cascade-golden, built by make and never installed, so neither
# the cascade program nor libcascade.so holds its code, and `cascade dev` is
# an unknown command (exit 2, one usage message). (The demo networks, image
# inputs' included, are a library feature: cascade_use_demo writes them.)
. "${TOP_SRCDIR:-.}/tests/shared.sh"
need_tool nm "lists the symbols of the programs"
top=$(dirname "$CASCADE_BIN")
lib=$top/.libs/libcascade.so
bin=$CASCADE_BIN
[ -f "$top/.libs/cascade" ] && bin=$top/.libs/cascade   # a libtool wrapper script
fail=0
for f in "$bin" "$lib"; do
    [ -f "$f" ] || { echo "no $f"; exit 99; }
    g=$(nm "$f" 2>/dev/null | awk 'NF >= 3 {print $3}' | grep -c '^golden_')
    if [ "$g" -ne 0 ]; then echo "FAIL: $f holds $g golden_* symbols (the golden runner)"; fail=1; fi
done
"$CASCADE_BIN" dev golden x >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || { echo "FAIL: 'cascade dev golden' exits $rc, wanted 2 (unknown command)"; fail=1; }
"$GOLDEN_BIN" --help >/dev/null || { echo "FAIL: $GOLDEN_BIN --help"; fail=1; }
[ $fail -eq 0 ] && echo "ok: no golden runner in $bin or $lib; cascade dev is gone; $GOLDEN_BIN runs"
exit $fail
