#!/bin/sh
# Hostile options and environment for `cascade generate --demo`, as a table:
# each row is NAME | EXIT | MESSAGE FRAGMENT | ENVIRONMENT | ARGUMENTS, and
# passes when the exit status is EXIT (never a signal), stderr is one line
# holding the fragment, and the output folder ($O, fresh per row) is empty
# afterwards. Exit rule (README "Exit status"): 2 when an option or CASCADE_*
# value is malformed or out of its range on its own, 1 when it fails against
# the files, the models or the run (sizes the networks cannot take, names
# that clash, NaN results). Then: size checks come before any loading, a
# full disk names the cause, auto-numbering past 999999999, the largest seed
# in --json. Needs CASCADE_BIN (set by make check).
. "$TOP_SRCDIR/tests/cli_setup.sh"
O="$tmp/o"
FAST="-W 64 -H 64 --steps-c 3 --steps-b 2"
LONG=$(printf '%0236d' 0)   # 240 bytes with .png: fits; with "_1" and the temporary name it does not

# row NAME EXIT FRAGMENT ENV ARGS (ENV and ARGS are shell words, expanded with eval)
row() {
    name=$1 want=$2 frag=$3 envs=$4 args=$5
    rm -rf "$O" && mkdir "$O" || exit 99
    eval "env $envs $BIN generate --demo --quiet -p x $args" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
    left=$(ls -A "$O")
    if [ "$rc" -ge 128 ]; then
        bad "$name: killed by signal $((rc - 128))"
    elif [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$frag" "$tmp/err" || [ -n "$left" ]; then
        bad "$name: exit $rc (want $want), $lines stderr lines, left: '$left'"
        sed 's/^/  /' "$tmp/err" | head -n 5
        echo "  wanted: $frag"
    else
        ok "$name"
    fi
}

while IFS='|' read -r name want frag envs args; do
    case "$name" in ''|\#*) continue ;; esac
    # trim the blanks around the fields
    name=$(echo $name) want=$(echo $want) frag=$(echo "$frag" | sed 's/^ *//; s/ *$//')
    row "$name" "$want" "$frag" "$envs" "$args"
done <<EOF
# threads: one rule (1 .. 4 x processors, at most 1024) for --threads and CASCADE_THREADS
threads-huge        |2| --threads: '100000' is not a whole number in 1..  | | --threads 100000 -o \$O/a.png
threads-zero        |2| --threads: '0' is not a whole number              | | --threads 0 -o \$O/a.png
threads-garbage     |2| --threads: '4x'                                   | | --threads 4x -o \$O/a.png
threads-huge-env    |2| CASCADE_THREADS: '100000' is not a whole number   | CASCADE_THREADS=100000 | -o \$O/a.png
threads-garbage-env |2| CASCADE_THREADS: 'abc'                            | CASCADE_THREADS=abc | -o \$O/a.png
threads-float-env   |2| CASCADE_THREADS: '1e3'                            | CASCADE_THREADS=1e3 | -o \$O/a.png
threads-negative-env|2| CASCADE_THREADS: '-1'                             | CASCADE_THREADS=-1 | -o \$O/a.png
# numbers: NaN, Inf, overflow, float overflow/underflow, empty, trailing garbage
cfg-c-nan           |2| --cfg-c: 'nan' is not a finite number   | | --cfg-c nan -o \$O/a.png
cfg-c-inf           |2| --cfg-c: 'inf' is not a finite number   | | --cfg-c inf -o \$O/a.png
cfg-c-minus-inf     |2| --cfg-c: '-inf' is not a finite number  | | --cfg-c -inf -o \$O/a.png
cfg-b-1e999         |2| --cfg-b: '1e999' is not a finite number | | --cfg-b 1e999 -o \$O/a.png
cfg-b-1e39          |2| --cfg-b: '1e39' is not a finite number  | | --cfg-b 1e39 -o \$O/a.png
cfg-c-empty         |2| --cfg-c: '' is not a finite number      | | --cfg-c '' -o \$O/a.png
cfg-c-4x            |2| --cfg-c: '4x' is not a finite number    | | --cfg-c 4x -o \$O/a.png
cfg-rho-nan         |2| --cfg-rho: 'nan' is not a number in [0..1]  | | --cfg-rho nan -o \$O/a.png
cfg-rho-above-1     |2| --cfg-rho: '1.5' is not a number in [0..1]  | | --cfg-rho 1.5 -o \$O/a.png
shift-c-inf         |2| --shift-c: 'inf' is not a number in (0..10000]   | | --shift-c inf -o \$O/a.png
shift-b-underflow   |2| --shift-b: '1e-50' is not a number in (0..10000] | | --shift-b 1e-50 -o \$O/a.png
shift-c-zero        |2| --shift-c: '0' is not a number in (0..10000]     | | --shift-c 0 -o \$O/a.png
eta-nan             |2| --eta: 'nan' is not a number in [0..1]  | | --sampler ddim --eta nan -o \$O/a.png
eta-above-1         |2| --eta: '2' is not a number in [0..1]    | | --sampler ddim --eta 2 -o \$O/a.png
steps-garbage       |2| --steps-c: '3x' is not a whole number   | | --steps-c 3x -o \$O/a.png
width-not-8         |2| --width: 20 is not a multiple of 8      | | -W 20 -o \$O/a.png
width-tiny          |2| --width: '4' is not a whole number in 8..8192 | | -W 4 -o \$O/a.png
preview-every-empty |2| --preview-every: '' is not a whole number | | --preview-every '' -o \$O/a.png
memory-inf-env      |2| CASCADE_MEMORY='inf': expected a size    | CASCADE_MEMORY=inf | -o \$O/a.png
memory-nan-env      |2| CASCADE_MEMORY='nan': expected a size    | CASCADE_MEMORY=nan | -o \$O/a.png
memory-huge-env     |2| CASCADE_MEMORY='1e30G': expected a size  | CASCADE_MEMORY=1e30G | -o \$O/a.png
memory-garbage-env  |2| CASCADE_MEMORY='4x': expected a size     | CASCADE_MEMORY=4x | -o \$O/a.png
simd-unknown-env    |2| CASCADE_SIMD=bogus: unknown level        | CASCADE_SIMD=bogus | -o \$O/a.png
# seeds: JSON integers are signed 64-bit, so the seeds of all runs must stay below 2^63
seed-2^63           |2| --seed: '9223372036854775808' is not a whole number in 0..9223372036854775807 | | --seed 9223372036854775808 -o \$O/a.png
seed-negative       |2| --seed: '-1' is not a whole number       | | --seed -1 -o \$O/a.png
seed-count-overflow |2| the last seed would pass 9223372036854775807 | | --seed 9223372036854775807 --count 2 -o \$O/a.png
# sizes the options accept but the networks cannot take (demo Stage B: latent sides >= 16)
size-8x8            |1| size 8x8 is too small for this Stage B     | | -W 8 -H 8 -o \$O/a.png
size-16x8           |1| size 16x8 is too small for this Stage B    | | -W 16 -H 8 -o \$O/a.png
size-8192x8         |1| size 8192x8 is too small for this Stage B  | | -W 8192 -H 8 -o \$O/a.png
size-56x64          |1| (width and height at least 64)             | | -W 56 -H 64 -o \$O/a.png
# output names
preview-is-output       |1| --preview $O/a.png would also be an output image   | | -o \$O/a.png --preview \$O/a.png
preview-is-output-dot   |1| would also be an output image   | | -o \$O/a.png --preview \$O/./a.png
preview-is-batch-output |1| --preview $O/a_1.png would also be an output image | | --batch 2 -o \$O/a.png --preview \$O/a.png
preview-missing-folder  |1| folder $O/nodir does not exist   | | -o \$O/a.png --preview \$O/nodir/p.png
name-too-long-numbered  |1| _1.png: the file name is too long | | --batch 2 -o \$O/$LONG.png
# results that are not finite: an error, not a black PNG
nan-stage-c         |1| the Stage C result has 64 of 64 values that are NaN or Inf | | $FAST --cfg-c 3e38 -o \$O/a.png
nan-stage-b         |1| the Stage B result has 1024 of 1024 values that are NaN or Inf | | $FAST --cfg-b 3e38 -o \$O/a.png
nan-stage-c-preview |1| the Stage C result has | | $FAST --cfg-c 3e38 --preview \$O/p.png --preview-every 1 -o \$O/a.png
nan-stage-c-json    |1| the Stage C result has | | $FAST --cfg-c 3e38 --json -o \$O/a.png
EOF

# ---- the checks above come before any work: no stage is loaded ----
for s in "-W 8 -H 8" "-W 8192 -H 8" "--threads 0" "-o $O/a.png --preview $O/a.png"; do
    rm -rf "$O" && mkdir "$O"
    $BIN generate --demo -p x --json $s -o "$O/a.png" >"$tmp/out" 2>"$tmp/err"
    if grep -q '"event":"load"' "$tmp/out"; then bad "early: $s: refused only after loading"; else ok "early: $s"; fi
done

# ---- a full disk names the cause and the file, and leaves nothing ----
disk_full() {
    # a 256x256 noise PNG (~200 KB) into an 8 KiB tmpfs, mounted in a user
    # and mount namespace (root not needed). A file size limit is no
    # substitute: the demo writes its networks to $TMPDIR first.
    command -v unshare >/dev/null && unshare -rm sh -c "mount -t tmpfs -o size=8k tmpfs '$O' && \
        $BIN generate --demo --quiet -p x --steps-c 3 --steps-b 2 -o '$O/full.png' 2>'$tmp/err'; \
        echo \$? >'$tmp/rc'; ls -A '$O' >'$tmp/left'" 2>/dev/null
    [ -s "$tmp/rc" ] || { echo "note: disk-full case skipped (cannot mount a tmpfs here)"; return; }
    rc=$(cat "$tmp/rc")
    if [ "$rc" = 1 ] && grep -qF "$O/full.png" "$tmp/err" && grep -qF "No space left on device" "$tmp/err" &&
       [ ! -s "$tmp/left" ]; then
        ok disk-full
    else
        bad "disk-full: exit $rc, left '$(cat "$tmp/left")'"; cat "$tmp/err"
    fi
}
rm -rf "$O" && mkdir "$O"
disk_full

# ---- a read-only output folder is refused up front, with the reason ----
read_only() {
    command -v unshare >/dev/null && unshare -rm sh -c "mount -t tmpfs -o ro,size=8k tmpfs '$O' && \
        $BIN generate --demo --quiet -p x --json --steps-c 3 --steps-b 2 -o '$O/ro.png' >'$tmp/out' 2>'$tmp/err'; \
        echo \$? >'$tmp/rc'; ls -A '$O' >'$tmp/left'" 2>/dev/null
    [ -s "$tmp/rc" ] || { echo "note: read-only case skipped (cannot mount a tmpfs here)"; return; }
    rc=$(cat "$tmp/rc")
    if [ "$rc" = 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF "$O" "$tmp/err" &&
       grep -qF "Read-only file system" "$tmp/err" && ! grep -q '"event":"load"' "$tmp/out" && [ ! -s "$tmp/left" ]; then
        ok read-only
    else
        bad "read-only: exit $rc, left '$(cat "$tmp/left")'"; cat "$tmp/err"
    fi
}
rm -rf "$O" && mkdir "$O"
read_only

# ---- auto-numbering goes on past 999999999, and says when no number is left ----
rm -rf "$O" && mkdir "$O" && : >"$O/cascade_999999999.png"
out=$($BIN generate --demo --quiet -p x $FAST -o "$O" 2>"$tmp/err" &&
      $BIN generate --demo --quiet -p x $FAST -o "$O" 2>>"$tmp/err")
[ $? -eq 0 ] && [ "$(echo $out)" = "$O/cascade_1000000000.png $O/cascade_1000000001.png" ] &&
    [ -s "$O/cascade_1000000001.png" ] && ok numbering-widens || { bad "numbering-widens: '$out'"; cat "$tmp/err"; }
rm -rf "$O" && mkdir "$O" && : >"$O/cascade_999999999999999999.png"
$BIN generate --demo --quiet -p x $FAST -o "$O" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "no number left" "$tmp/err" && [ "$(ls -A "$O")" = cascade_999999999999999999.png ] &&
    ok numbering-exhausted || { bad "numbering-exhausted: exit $rc"; cat "$tmp/err"; ls -A "$O"; }

# ---- the largest seed is printed as it was given ----
rm -rf "$O" && mkdir "$O"
$BIN generate --demo --quiet --json -p x $FAST --seed 9223372036854775807 -o "$O/s.png" >"$tmp/out" 2>"$tmp/err"
grep -q '"event":"start","seed":9223372036854775807,' "$tmp/out" &&
    grep -q '"event":"done".*"seed":9223372036854775807' "$tmp/out" && ok seed-max-json ||
    { bad seed-max-json; cat "$tmp/out" "$tmp/err" | grep -v progress; }
exit $fail
