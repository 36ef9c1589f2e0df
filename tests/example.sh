#!/bin/sh
# examples/txt2img.c against an installed tree: make install DESTDIR=tmp,
# then only what pkg-config says about that tree (cascade.pc, cascade.h,
# libcascade.so) builds it; it runs with the demo networks and writes a
# 256x256 RGB PNG with the prompt in its text. Then the same image through
# `cascade generate --demo` with the same seed: the library and the CLI
# agree pixel for pixel.
. "${TOP_SRCDIR:-.}/tests/shared.sh"
need_tool pkg-config "reads the installed cascade.pc"
B=$(dirname "$CASCADE_BIN")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cascade-example.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

${MAKE:-make} -s -C "$B" install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install DESTDIR failed"; }
libdir=$(sed -n 's/^libdir=//p' "$B/cascade.pc")
prefix=$(sed -n 's/^prefix=//p' "$B/cascade.pc")
exec_prefix=$(sed -n 's/^exec_prefix=//p' "$B/cascade.pc")
libdir=$(echo "$libdir" | sed "s|\${exec_prefix}|$exec_prefix|; s|\${prefix}|$prefix|")
[ -f "$tmp/root$libdir/pkgconfig/cascade.pc" ] || fail "no cascade.pc installed in $libdir/pkgconfig"
# only the installed tree: no source folder on the include path
PKG_CONFIG_SYSROOT_DIR=$tmp/root PKG_CONFIG_LIBDIR=$tmp/root$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
cflags=$(pkg-config --cflags cascade) && libs=$(pkg-config --libs cascade) || fail "pkg-config cascade failed"
case "$cflags $libs" in *"$tmp/root"*) ;; *) fail "pkg-config flags do not point into the installed tree: $cflags $libs" ;; esac
# a sanitizer build's library needs its runtime first: the example is built with it too
san=
ldd "$tmp/root$libdir/libcascade.so" 2>/dev/null | grep -q libasan && san="-fsanitize=address,undefined"
${CASCADE_CC:-cc} -std=c11 -Wall -Werror $san $cflags -o "$tmp/txt2img" "$TOP_SRCDIR/examples/txt2img.c" $libs \
    -Wl,-rpath,"$tmp/root$libdir" 2>"$tmp/cc.log" || { cat "$tmp/cc.log"; fail "the example does not build"; }
out=$("$tmp/txt2img" --demo -o "$tmp/out.png" "a lighthouse at dawn" 2>"$tmp/err") ||
    { cat "$tmp/err"; fail "txt2img --demo failed"; }
[ "$out" = "$tmp/out.png" ] || fail "txt2img printed '$out'"
info=$("$B/tests/png_info" "$tmp/out.png") || fail "out.png is not a valid PNG"
[ "$info" = "256 256 8 2" ] || fail "out.png: '$info', expected 256x256 8-bit RGB"
[ "$("$B/tests/png_info" "$tmp/out.png" prompt)" = "a lighthouse at dawn" ] || fail "out.png: prompt text"
[ "$("$B/tests/png_info" "$tmp/out.png" seed)" = 42 ] || fail "out.png: seed text"
env -u CASCADE_TOKENIZER CASCADE_MODELS= XDG_DATA_HOME="$tmp" "$CASCADE_BIN" generate --demo -q --seed 42 -p "a lighthouse at dawn" -o "$tmp/cli.png" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "cascade generate --demo failed"; }
[ "$("$B/tests/png_info" "$tmp/out.png" --pixels)" = "$("$B/tests/png_info" "$tmp/cli.png" --pixels)" ] ||
    fail "the example's image differs from cascade generate --demo --seed 42"
echo "ok: installed, built with pkg-config, ran: 256x256, same pixels as the CLI"
