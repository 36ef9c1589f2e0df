#!/bin/sh
# The version has one source, AC_INIT in configure.ac (PACKAGE_VERSION):
# `cascade --version`, cascade.pc's Version (what pkg-config reports),
# libcascade's cascade_version() and the upstream part of the Debian
# changelog's top entry (packaging/debian/changelog) must all say it.
. "${TOP_SRCDIR:-.}/tests/shared.sh"
need_tool pkg-config "reads cascade.pc"
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ "$CASCADE_SIMD" != "$("$CASCADE_BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only)"; exit 0
fi
B=$(dirname "$CASCADE_BIN")
want=$PACKAGE_VERSION
[ -n "$want" ] || { echo "no PACKAGE_VERSION in the environment (run through make check)"; exit 99; }
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cascade-version.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

v=$("$CASCADE_BIN" --version) || fail "cascade --version failed"
[ "$v" = "cascade $want" ] || fail "cascade --version says '$v', configure.ac says $want"
pc=$(PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=$B pkg-config --modversion cascade) || fail "pkg-config cannot read $B/cascade.pc"
[ "$pc" = "$want" ] || fail "cascade.pc says $pc, configure.ac says $want"
printf '#include <stdio.h>\n#include "cascade.h"\nint main(void) { puts(cascade_version()); return 0; }\n' >"$tmp/v.c"
${CASCADE_CC:-cc} -I"$TOP_SRCDIR/src" -o "$tmp/v" "$tmp/v.c" -L"$B/.libs" -lcascade -Wl,-rpath,"$B/.libs" 2>"$tmp/cc.log" ||
    { cat "$tmp/cc.log"; fail "a program calling cascade_version() does not build"; }
lv=$("$tmp/v") || fail "cascade_version() program failed"
[ "$lv" = "$want" ] || fail "libcascade's cascade_version() says $lv, configure.ac says $want"
ch=$TOP_SRCDIR/packaging/debian/changelog
if [ -f "$ch" ]; then
    # "cascade (0.1.0-1) unstable; urgency=medium": the upstream version is before the last '-'
    dv=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$ch")
    [ "${dv%-*}" = "$want" ] || fail "packaging/debian/changelog's top entry is $dv, configure.ac says $want"
    echo "ok: $want everywhere (--version, cascade.pc, cascade_version(), debian/changelog $dv)"
else
    echo "ok: $want everywhere (--version, cascade.pc, cascade_version()); no packaging/debian/changelog"
fi
