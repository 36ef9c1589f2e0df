#!/bin/sh
# libcascade.so exports the public API only: every defined dynamic symbol
# is cascade_* (the engine's cs_* functions stay inside).
. "${TOP_SRCDIR:-.}/tests/shared.sh"
need_tool nm "lists the exported symbols"
lib=$(dirname "$CASCADE_BIN")/.libs/libcascade.so
[ -f "$lib" ] || { echo "no $lib"; exit 99; }
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 {print $3}')
[ -n "$syms" ] || { echo "FAIL: $lib exports nothing"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^cascade_')
if [ -n "$bad" ]; then
    echo "FAIL: $lib exports $(printf '%s\n' "$bad" | wc -l) symbols outside cascade_*, e.g.:"
    printf '%s\n' "$bad" | head -5
    exit 1
fi
# and every function cascade.h declares
decl=$(grep -A1 'CASCADE_API' "$TOP_SRCDIR/src/cascade.h" | grep -o '\bcascade_[a-z0-9_]*(' | tr -d '(' | sort -u)
[ -n "$decl" ] || { echo "no functions found in cascade.h"; exit 99; }
for f in $decl; do
    printf '%s\n' "$syms" | grep -qx "$f" || { echo "FAIL: $lib lacks $f (declared in cascade.h)"; exit 1; }
done
# and the Debian symbols file lists each (a missing one gets the package's
# Debian revision as its version: a lintian error in the package build)
symfile="$TOP_SRCDIR/packaging/debian/libcascade1.symbols"
for f in $syms; do
    grep -q "^ $f@Base " "$symfile" || { echo "FAIL: $f is not in packaging/debian/libcascade1.symbols"; exit 1; }
done
echo "ok: $(printf '%s\n' "$syms" | wc -l) symbols, all cascade_*, all in the symbols file"
