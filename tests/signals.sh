#!/bin/sh
# Signals and every other way a run can be cut short: SIGINT, SIGTERM and
# SIGHUP at each stage of `cascade generate --demo` (text encoder, Stage C,
# Stage B, Stage A) and while `cascade models` hashes a file, a second signal
# during the stop, a closed stdout (SIGPIPE), a file-size limit (SIGXFSZ) and
# a model file truncated while mapped (SIGBUS).
# Each row must end with an exit status below 128 (130 for the interrupts,
# 1 for the errors), exactly one line on stderr saying why, and nothing left
# in the output folder, the preview folder, its private $TMPDIR (the demo's
# networks) or the hash cache. The stage is entered for real: the signal is
# sent when the --json progress shows it (or /proc shows the hash reading),
# and the rows that name a stage check the run stopped inside it. Every run
# is under `timeout`, so a hang fails (exit 137) instead of blocking.
# Needs CASCADE_BIN (set by make check).
BIN=$CASCADE_BIN
command -v timeout >/dev/null || { echo "timeout (coreutils) is missing"; exit 99; }
[ -r "/proc/$$/task/$$/children" ] || { echo "needs /proc/PID/task/PID/children: skipped"; exit 77; }
# the handling does not depend on the SIMD level: run the table once, at the
# fastest level, and pass quietly at the others
best=$("$BIN" info --levels | tail -n 1)
if [ -n "$CASCADE_SIMD" ] && [ "$CASCADE_SIMD" != "$best" ]; then
    echo "signals: same at every level; run at CASCADE_SIMD=$best"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/signals.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
unset CASCADE_MODELS CASCADE_MEMORY CASCADE_TOKENIZER CASCADE_THREADS
LIMIT=120     # seconds a row may take before timeout kills it
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

now() { date +%s.%N; }
# seconds between two `now` values, as a whole number of tenths
tenths() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 10 }'; }

# fresh folders for one row: out/ (images), prev/ (previews), tmp/ ($TMPDIR),
# cache/ ($XDG_CACHE_HOME)
row_dirs() {
    d="$tmp/$1"
    mkdir -p "$d/out" "$d/prev" "$d/tmp" "$d/cache" || exit 99
}

# the pid of the command that `timeout` (pid $1) runs
child_of() {
    i=0
    while [ $i -lt 500 ]; do
        c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{print $1}')
        [ -n "$c" ] && { echo "$c"; return 0; }
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.01
        i=$((i + 1))
    done
    return 1
}

# wait_for FILE PATTERN PID: until a line of FILE matches, or PID has ended
wait_for() {
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.02
    done
}

# leftovers NAME: every row folder must be empty (the cache may keep its
# finished "hashes" file, never a temporary one)
leftovers() {
    left=$(cd "$d" && find out prev tmp cache -mindepth 1 ! -path cache/cascade ! -path cache/cascade/hashes)
    [ -z "$left" ] || { echo "  $1: left behind: $left"; return 1; }
}

# one_line NAME PATTERN: stderr is exactly one line and it matches
one_line() {
    n=$(wc -l <"$d/err")
    if [ "$n" -ne 1 ] || ! grep -q "$2" "$d/err"; then
        echo "  $1: stderr ($n lines), wanted one matching '$2':"
        sed 's/^/    /' "$d/err"
        return 1
    fi
}

# gen_row NAME SIGNAL STAGE PATTERN ARGS...: starts the demo with ARGS, sends
# SIGNAL once a --json line matches PATTERN, checks the stop
gen_row() {
    name=$1 sig=$2 stage=$3 pat=$4
    shift 4
    row_dirs "$name"
    TMPDIR="$d/tmp" XDG_CACHE_HOME="$d/cache" timeout -s KILL $LIMIT "$BIN" generate --demo --json -p x \
        -o "$d/out/img.png" --preview "$d/prev/p.png" "$@" >"$d/json" 2>"$d/err" &
    tpid=$!
    cpid=$(child_of $tpid) || { wait $tpid; bad "$name: cascade did not start"; return; }
    if ! wait_for "$d/json" "$pat" $cpid; then
        wait $tpid
        bad "$name: ended (exit $?) before reaching $stage"
        sed 's/^/    /' "$d/err"
        return
    fi
    t0=$(now)
    kill -s "$sig" $cpid
    wait $tpid
    rc=$?
    dt=$(tenths "$t0" "$(now)")
    r=0
    [ $rc -eq 130 ] || { echo "  $name: exit $rc, expected 130"; r=1; }
    one_line "$name" "^cascade generate: interrupted.*; nothing written$" || r=1
    leftovers "$name" || r=1
    # stopped inside the stage: no later stage started, and this one did not finish
    last=$(grep '"stage"' "$d/json" | tail -n 1 | sed 's/.*"stage":"\([a-z_]*\)".*/\1/')
    if [ "$stage" != text ]; then
        [ "$last" = "$stage" ] || { echo "  $name: stopped in $last, not $stage"; r=1; }
        steps=$(grep "\"stage\":\"$stage\"" "$d/json" | tail -n 1 | sed 's/.*"steps":\([0-9]*\).*/\1/')
        ! grep -q "\"stage\":\"$stage\",\"run\":1,\"step\":$steps," "$d/json" ||
            { echo "  $name: $stage ran to its end after the signal"; r=1; }
    fi
    [ "$dt" -le 50 ] || { echo "  $name: took $((dt / 10)).$((dt % 10)) s to stop"; r=1; }
    grep -q '"event":"interrupted"' "$d/json" || { echo "  $name: no interrupted event"; r=1; }
    [ $r -eq 0 ] && ok "$name (stopped in $((dt / 10)).$((dt % 10)) s)" || bad "$name"
}

# the stages, each made long enough to be hit: many steps of a small image
# for the text encoder and the samplers, a large image for Stage A
SMALL="-W 64 -H 64 --preview-every 1"
for sig in INT TERM HUP; do
    gen_row "$sig-text" $sig text '"event":"load","stage":"text"' $SMALL --steps-c 10000
    gen_row "$sig-stage_c" $sig stage_c '"event":"progress","stage":"stage_c","run":1,"step":1,' $SMALL \
        --steps-c 10000
    gen_row "$sig-stage_b" $sig stage_b '"event":"progress","stage":"stage_b","run":1,"step":1,' $SMALL \
        --steps-c 1 --steps-b 10000
    gen_row "$sig-stage_a" $sig stage_a '"event":"progress","stage":"stage_a","run":1,"step":0,' \
        -W 1280 -H 1280 --steps-c 1 --steps-b 1 --cfg-c off --cfg-b off
done

# ---- a model file truncated while in use (SIGBUS on its memory map) ----
# Stage C's weights are read from the mapped demo file at every step; cutting
# the file to nothing makes the next read fault. One line, exit 1, and the
# demo folder, previews and outputs removed by the handler.
row_dirs bus
TMPDIR="$d/tmp" XDG_CACHE_HOME="$d/cache" timeout -s KILL $LIMIT "$BIN" generate --demo --json -p x \
    -o "$d/out/img.png" --preview "$d/prev/p.png" $SMALL --steps-c 10000 >"$d/json" 2>"$d/err" &
tpid=$!
if cpid=$(child_of $tpid) && wait_for "$d/json" '"event":"progress","stage":"stage_c","run":1,"step":1,' $cpid; then
    for f in "$d"/tmp/*/stage_c_demo.safetensors; do : >"$f"; done
    wait $tpid
    rc=$?
    r=0
    [ $rc -eq 1 ] || { echo "  bus: exit $rc, expected 1"; r=1; }
    one_line bus "^cascade: a model file was truncated or changed while in use" || r=1
    leftovers bus || r=1
    [ $r -eq 0 ] && ok "bus (model truncated in use)" || bad "bus"
else
    wait $tpid
    bad "bus: ended (exit $?) before Stage C"
fi

# ---- a second signal during the stop: ends at once, still removes everything ----
# Stopped, the process gets INT and TERM pending together; on SIGCONT the
# first starts the stop and the second (while the first one's stop is pending)
# ends it at once.
# second_signal ROW PATTERN CHECK ARGS...: generate with ARGS until its JSON
# shows PATTERN, then INT and TERM together; CHECK (a function) says what
# must be gone afterwards
second_signal() {
    row=$1 pat=$2 check=$3
    shift 3
    row_dirs $row
    TMPDIR="$d/tmp" timeout -s KILL $LIMIT "$BIN" generate --demo --json -p x -o "$d/out/img.png" \
        --preview "$d/prev/p.png" "$@" >"$d/json" 2>"$d/err" &
    tpid=$!
    if cpid=$(child_of $tpid) && wait_for "$d/json" "$pat" $cpid; then
        kill -s STOP $cpid
        kill -s INT $cpid
        kill -s TERM $cpid
        kill -s CONT $cpid
        wait $tpid
        rc=$?
        r=0
        [ $rc -eq 130 ] || { echo "  $row: exit $rc, expected 130"; r=1; }
        one_line $row "^cascade: stopped at once (second signal); temporary files removed$" || r=1
        $check $row || r=1
        [ $r -eq 0 ] && ok $row || bad $row
    else
        wait $tpid
        bad "$row: never reached $pat"
    fi
}
# run 1's images are finished and kept; its previews and run 2's are not
no_previews() {
    left=$(find "$d/prev" "$d/tmp" -mindepth 1)
    [ -z "$left" ] || { echo "  $1: left behind: $(echo $left | head -c 300)"; return 1; }
}
second_signal second '"event":"preview"' leftovers $SMALL --steps-c 10000
# the same with more previews than one block of the CLI's cleanup list (64):
# run 1's 64 stay on it until the whole generation ends, run 2's come after
# them; every one is removed by the handler too
second_signal second-many '/prev/p_70.png"' no_previews -W 64 -H 64 --batch 64 --count 2 --steps-c 1 --steps-b 40

# ---- stdout closed (SIGPIPE): stop, exit 1, nothing left ----
row_dirs pipe
{ TMPDIR="$d/tmp" timeout -s KILL $LIMIT "$BIN" generate --demo --json -p x -o "$d/out/img.png" \
      --preview "$d/prev/p.png" $SMALL --steps-c 10000 2>"$d/err"; echo $? >"$d/rc"; } | head -n 1 >"$d/first"
rc=$(cat "$d/rc")
r=0
[ "$rc" -eq 1 ] || { echo "  pipe: exit $rc, expected 1"; r=1; }
grep -q '"event":"start"' "$d/first" || { echo "  pipe: first line: $(cat "$d/first")"; r=1; }
one_line pipe "^cascade generate: standard output was closed (broken pipe); stopped; nothing written$" || r=1
leftovers pipe || r=1
[ $r -eq 0 ] && ok pipe || bad pipe

# ---- a file-size limit (SIGXFSZ): the demo's networks do not fit ----
row_dirs ulimit
(
    ulimit -f 2000 || exit 77   # blocks of 512 or 1024 bytes: below the 6.5 MB text encoder
    TMPDIR="$d/tmp" exec timeout -s KILL $LIMIT "$BIN" generate --demo -q -p x -o "$d/out/img.png" \
        --preview "$d/prev/p.png" $SMALL --steps-c 2 --steps-b 2 >"$d/json" 2>"$d/err"
)
rc=$?
r=0
if [ $rc -eq 77 ]; then
    echo "note: ulimit -f not available: row skipped"
else
    [ $rc -eq 1 ] || { echo "  ulimit: exit $rc, expected 1"; r=1; }
    one_line ulimit "^cascade generate: .*text_encoder.safetensors: write failed: file size limit exceeded (ulimit -f)$" ||
        r=1
    leftovers ulimit || r=1
    [ $r -eq 0 ] && ok ulimit || bad ulimit
fi

# ---- hashing: `cascade models` reading a large (sparse) file for its xxh64 ----
# The signal is sent once /proc shows the file read past 16 MiB (the hashing,
# not the identification, which reads the header only).
for sig in INT TERM HUP; do
    row_dirs "$sig-hash"
    mkdir -p "$d/m"
    truncate -s 8G "$d/m/stage_c.safetensors" || { echo "note: no sparse files: hash rows skipped"; break; }
    TMPDIR="$d/tmp" XDG_CACHE_HOME="$d/cache" timeout -s KILL $LIMIT "$BIN" models --models "$d/m" \
        >"$d/json" 2>"$d/err" &
    tpid=$!
    cpid=$(child_of $tpid)
    hashing=0
    while [ -n "$cpid" ] && kill -0 $cpid 2>/dev/null; do
        for fd in /proc/$cpid/fd/*; do
            case $(readlink "$fd" 2>/dev/null) in
                */stage_c.safetensors)
                    pos=$(awk '/^pos:/ {print $2}' "/proc/$cpid/fdinfo/${fd##*/}" 2>/dev/null)
                    [ "${pos:-0}" -gt 16777216 ] && hashing=1 ;;
            esac
        done
        [ $hashing -eq 1 ] && break
        sleep 0.02
    done
    if [ $hashing -eq 0 ]; then
        wait $tpid
        bad "$sig-hash: never saw the hashing (exit $?)"
        continue
    fi
    t0=$(now)
    kill -s $sig $cpid
    wait $tpid
    rc=$?
    dt=$(tenths "$t0" "$(now)")
    rm -f "$d/m/stage_c.safetensors"
    rmdir "$d/m"
    r=0
    [ $rc -eq 130 ] || { echo "  $sig-hash: exit $rc, expected 130"; r=1; }
    one_line "$sig-hash" "^cascade models: interrupted.* while hashing; nothing listed$" || r=1
    leftovers "$sig-hash" || r=1
    [ "$dt" -le 50 ] || { echo "  $sig-hash: took $((dt / 10)).$((dt % 10)) s to stop"; r=1; }
    [ $r -eq 0 ] && ok "$sig-hash (stopped in $((dt / 10)).$((dt % 10)) s)" || bad "$sig-hash"
done

exit $fail
