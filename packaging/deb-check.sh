#!/bin/sh
# The Debian packages as a distribution builds them, from the release
# tarball: unpack cascade-VERSION.tar.gz, copy packaging/debian to debian/,
# dpkg-buildpackage -us -uc -b, then lintian (errors and warnings fail;
# the overrides in packaging/debian/*.lintian-overrides say why), then
# install the .debs, run /usr/bin/cascade and a program built against
# libcascade-dev, and purge them.
#   packaging/deb-check.sh [--twice] [--no-install] TARBALL
# --twice: a second build from the same tarball in another folder, another
#   time zone, locale and umask; the .debs must be byte-identical (sha256;
#   diffoscope shows the difference where installed).
# --no-install: build and lint only (installing needs root or sudo -n).
# SOURCE_DATE_EPOCH: dpkg-buildpackage takes it from debian/changelog unless
# set. DEB_BUILD_OPTIONS (e.g. nocheck) and DEB_BUILD_PROFILES (nocuda) pass
# through. Exit 0 all good, 1 a check failed, 2 bad usage, 77 no
# dpkg-buildpackage here.
twice=; install=1
while [ $# -gt 1 ]; do
    case $1 in --twice) twice=1 ;; --no-install) install= ;; *) break ;; esac
    shift
done
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: $0 [--twice] [--no-install] cascade-VERSION.tar.gz" >&2; exit 2; }
command -v dpkg-buildpackage >/dev/null 2>&1 ||
    { echo "SKIP: dpkg-buildpackage not found (Debian: apt-get install dpkg-dev debhelper lintian)"; exit 77; }
tarball=$(readlink -f "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cascade-deb.XXXXXX") || exit 1
installed=
cleanup() {
    [ -n "$installed" ] && $SUDO apt-get purge -y -q cascade cascade-cuda libcascade-dev libcascade1 >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
fail() { echo "FAIL: $*"; exit 1; }
t0=$(date +%s)

# build DIR [ENV...]: unpack, copy debian/, build; the .debs land in $tmp/DIR
build() {
    name=$1; d=$tmp/$1; shift
    mkdir -p "$d" && tar -xzf "$tarball" -C "$d" || fail "cannot unpack $tarball"
    src=$(echo "$d"/cascade-*)
    [ -d "$src/packaging/debian" ] || fail "the tarball has no packaging/debian"
    cp -r "$src/packaging/debian" "$src/debian"
    echo "--- dpkg-buildpackage -us -uc -b in $src"
    (cd "$src" && env "$@" dpkg-buildpackage -us -uc -b >"$d/build.log" 2>&1) ||
        { tail -n 40 "$d/build.log"; fail "dpkg-buildpackage failed (build $name)"; }
    ls "$d"/*.deb >/dev/null 2>&1 || fail "no .deb built"
}
build a
echo "built in $(($(date +%s) - t0)) s:"; (cd "$tmp/a" && ls *.deb *.ddeb 2>/dev/null)

if command -v lintian >/dev/null 2>&1; then
    echo "--- lintian"
    lintian --fail-on error,warning --display-level '>=warning' "$tmp"/a/*.changes ||
        fail "lintian found errors or warnings (above)"
    lintian --display-level '>=warning' --show-overrides "$tmp"/a/*.changes | grep '^O:' |
        sed 's/^/overridden: /'
else
    fail "lintian not found (apt-get install lintian)"
fi

if [ -n "$twice" ]; then
    t1=$(date +%s)
    build b TZ=Asia/Kathmandu LC_ALL=C.UTF-8 LANG=C.UTF-8 sh -c 'umask 077; exec "$@"' sh
    echo "second build in $(($(date +%s) - t1)) s"
    differ=
    for f in "$tmp"/a/*.deb "$tmp"/a/*.ddeb; do
        [ -f "$f" ] || continue
        g=$tmp/b/${f##*/}
        [ -f "$g" ] || { echo "only in the first build: ${f##*/}"; differ=1; continue; }
        if [ "$(sha256sum <"$f")" = "$(sha256sum <"$g")" ]; then
            echo "identical: ${f##*/} $(sha256sum <"$f" | cut -c1-16)"
        else
            echo "DIFFERENT: ${f##*/}"; differ=1
            command -v diffoscope >/dev/null 2>&1 && diffoscope --text - "$f" "$g" | head -n 60
        fi
    done
    [ -z "$differ" ] || fail "the two builds differ"
fi

[ -n "$install" ] || { echo "ok: built and lint-clean (not installed: --no-install)"; exit 0; }
if [ "$(id -u)" -eq 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    fail "installing the packages needs root or sudo -n (or pass --no-install)"; fi
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
plugdir=/usr/lib/$ma/cascade
cuda_deb=$(ls "$tmp"/a/cascade-cuda_*.deb 2>/dev/null)
echo "--- apt-get install (without cascade-cuda first)"
installed=1
$SUDO apt-get install -y -q "$tmp"/a/libcascade1_*.deb "$tmp"/a/libcascade-dev_*.deb "$tmp"/a/cascade_*.deb \
    >"$tmp/apt.log" 2>&1 || { tail -n 20 "$tmp/apt.log"; fail "apt-get install failed"; }
[ -x /usr/bin/cascade ] || fail "no /usr/bin/cascade after installing"
cd "$tmp" || exit 1
info=$(env -i PATH=/usr/bin:/bin HOME="$tmp" /usr/bin/cascade info) || fail "cascade info failed"
printf '%s\n' "$info" | sed 's/^/  /'
printf '%s\n' "$info" | grep -q "^plugin: .*$plugdir/libcascade-cuda.so" ||
    fail "cascade info does not look for the plugin in $plugdir"
env -i PATH=/usr/bin:/bin HOME="$tmp" XDG_DATA_HOME="$tmp" /usr/bin/cascade generate --demo -q -p "a lighthouse at dawn" -o "$tmp/x.png" >/dev/null ||
    fail "cascade generate --demo failed"
[ -s "$tmp/x.png" ] || fail "cascade generate --demo wrote no image"
echo "ok: /usr/bin/cascade info, generate --demo -> x.png ($(stat -c %s "$tmp/x.png") bytes)"
# the library, through libcascade-dev alone: pkg-config, cascade.h, libcascade.so
cflags=$(pkg-config --cflags cascade) && libs=$(pkg-config --libs cascade) || fail "pkg-config cascade failed"
cc -std=c11 -Wall -Werror $cflags -o "$tmp/txt2img" "$src/examples/txt2img.c" $libs || fail "the example does not build"
# (/lib is /usr/lib on merged-/usr systems, and ldd may name either)
ldd "$tmp/txt2img" | grep -Eq "libcascade\.so\.1 => (/usr)?/lib/$ma/libcascade\.so\.1 " ||
    fail "the example does not use the installed library: $(ldd "$tmp/txt2img" | grep libcascade)"
"$tmp/txt2img" --demo -o "$tmp/y.png" "a lighthouse" >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; fail "the example failed"; }
# the installed library looks for the plugin in its folder
msg=$(env -u CASCADE_PLUGIN_DIR CASCADE_DEVICE=cuda "$tmp/txt2img" --demo -o "$tmp/z.png" "x" 2>&1)
case $msg in *"$plugdir/libcascade-cuda.so"*) echo "ok: libcascade looks in $plugdir: $msg" ;;
    *) fail "libcascade with CASCADE_DEVICE=cuda and no plugin: '$msg' (expected it to name $plugdir)" ;; esac
if [ -n "$cuda_deb" ]; then
    echo "--- apt-get install cascade-cuda"
    $SUDO apt-get install -y -q "$cuda_deb" >"$tmp/apt.log" 2>&1 || { tail -n 20 "$tmp/apt.log"; fail "installing cascade-cuda failed"; }
    /usr/bin/cascade info | grep "^plugin: *$plugdir/libcascade-cuda.so (ABI" ||
        fail "cascade info does not load $plugdir/libcascade-cuda.so"
    # with no GPU the loaded plugin says why it cannot run; with one, the image is made
    rm -f "$tmp/z.png"
    msg=$(env -u CASCADE_PLUGIN_DIR CASCADE_DEVICE=cuda "$tmp/txt2img" --demo -o "$tmp/z.png" "x" 2>&1)
    case $msg in *"plugin not found"*) fail "libcascade does not find the installed plugin: $msg" ;; esac
    echo "ok: libcascade loads $plugdir/libcascade-cuda.so: ${msg:-an image on the GPU}"
else
    echo "no cascade-cuda package was built (no nvcc, or DEB_BUILD_PROFILES=nocuda)"
fi
echo "--- apt-get purge"
$SUDO apt-get purge -y -q cascade cascade-cuda libcascade-dev libcascade1 >/dev/null 2>&1 || fail "apt-get purge failed"
installed=
[ ! -e /usr/bin/cascade ] && [ ! -e "$plugdir" ] && [ ! -e /usr/lib/$ma/libcascade.so.1 ] ||
    fail "files left after apt-get purge"
echo "ok: packages built, lint-clean${twice:+, reproducible}, installed, run and purged in $(($(date +%s) - t0)) s"
