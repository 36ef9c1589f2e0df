#!/usr/bin/env bash
# bench/pipeline.sh — one whole text-to-image generation with the C engine, timed per
# stage (text encoder, Stage C, Stage B, Stage A), total wall/CPU time and peak RSS.
#
# usage: bench/pipeline.sh WEIGHTS_DIR [SIZE [extra `cascade generate` options...]]
#   WEIGHTS_DIR  random (or real) weights in the official file names, e.g. the files
#                bench/torch_random_weights.py writes:
#                  lite-bf16: stage_c_lite_bf16, stage_b_lite_bf16, text_encoder_bf16
#                  lite:      stage_c_lite, stage_b_lite, text_encoder
#                  both:      stage_a (F32)        (all .safetensors)
#   SIZE         square image side, default 1024 (e.g. 512)
#   extra        passed on, e.g. --steps-c 3 --steps-b 2
# environment:
#   VARIANT=lite-bf16 (default) | lite   which files to use
#   THREADS=2        --threads
#   CASCADE=PATH     the cascade program (default: ./cascade of this checkout)
#   COMMIT=ID        the commit it was built from, for the header (default: git HEAD of
#                    the checkout that holds CASCADE)
#   TOKENIZER=DIR    vocab.json + merges.txt (default: ../shared/tokenizer of the repo)
#   OUT=DIR          where the log, the PNG and the summary go (default: a new temp dir)
#   NICE=10          niceness of the run (0: none)
#   OMP_WAIT_POLICY  passed through; unset = libgomp's default (spinning)
# Prints the JSON progress lines with a wall-clock stamp ("t"), then a summary (text and
# one JSON object, also in OUT/summary.json). Per-step times are differences of the
# "elapsed" of consecutive progress events; a stage's load time is from its "load"
# event to its step-0 event (weights are mmapped: pages come in during the first
# step). Needs bash >= 5 (EPOCHREALTIME), jq and GNU time.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    sed -n '4,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
dir=$1
size=${2:-1024}
shift $(($# >= 2 ? 2 : 1))

variant=${VARIANT:-lite-bf16}
case $variant in
lite-bf16) sfx=_bf16 ;;
lite) sfx= ;;
*) echo "pipeline.sh: VARIANT must be lite-bf16 or lite" >&2; exit 2 ;;
esac
sc=$dir/stage_c_lite$sfx.safetensors
sb=$dir/stage_b_lite$sfx.safetensors
te=$dir/text_encoder$sfx.safetensors
sa=$dir/stage_a.safetensors
for f in "$sc" "$sb" "$te" "$sa"; do
    [ -f "$f" ] || { echo "pipeline.sh: missing $f" >&2; exit 1; }
done

cascade=${CASCADE:-$here/cascade}
tok=${TOKENIZER:-$here/../shared/tokenizer}
threads=${THREADS:-2}
nice_n=${NICE:-10}
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/cascade-pipeline.XXXXXX")}
mkdir -p "$out"
log=$out/progress.jsonl
png=$out/image_${size}.png
rm -f "$png"

{
    echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) online"
    echo "# commit: ${COMMIT:-$(git -C "$(dirname "$cascade")" rev-parse --short HEAD 2>/dev/null || echo '?')}"
    "$cascade" info 2>/dev/null | sed -n 's/^\(simd\|blas\|threads\): */# \1: /p'
    echo "# OMP_WAIT_POLICY=${OMP_WAIT_POLICY-(unset)} nice=$nice_n load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/header.txt"

cmd=("$cascade" generate -p "a photograph of an astronaut riding a horse" --seed 1
     -W "$size" -H "$size" --threads "$threads" --json -o "$png"
     --stage-c "$sc" --stage-b "$sb" --stage-a "$sa" --text-encoder "$te" --tokenizer "$tok" "$@")
echo "# command: ${cmd[*]}" | tee -a "$out/header.txt"

t0=$EPOCHREALTIME
set +e
nice -n "$nice_n" /usr/bin/time -v -o "$out/time.txt" "${cmd[@]}" |
    while IFS= read -r line; do
        case $line in
        \{*) printf '{"t":%s,%s\n' "$EPOCHREALTIME" "${line#\{}" ;;
        *) printf '%s\n' "$line" >&2 ;;
        esac
    done | tee "$log"
rc=${PIPESTATUS[0]}
set -e
t1=$EPOCHREALTIME
echo "# end load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/header.txt"
if [ "$rc" -ne 0 ]; then
    echo "pipeline.sh: cascade exited with $rc" >&2
    exit "$rc"
fi

rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$out/time.txt")
user=$(sed -n 's/.*User time (seconds): *//p' "$out/time.txt")
sys=$(sed -n 's/.*System time (seconds): *//p' "$out/time.txt")

jq -s --argjson t0 "$t0" --argjson t1 "$t1" --argjson rss "$rss_kb" \
    --argjson user "$user" --argjson sys "$sys" --arg size "$size" '
  def r3: . * 1000 | round / 1000;
  def stage($s):
    [ .[] | select(.stage == $s) ] as $ev
    | ($ev | map(select(.event == "load")) | first) as $ld
    | ($ev | map(select(.event == "progress" and .step == 0)) | first) as $st
    | ($ev | map(select(.event == "progress" and .step > 0)) | sort_by(.step)) as $pr
    | ($pr | map(.elapsed)) as $el
    | { load_s: (if $ld and $st then ($st.t - $ld.t) | r3 else null end),
        run_s: ($el | last),
        steps: ($pr | length),
        step_s: ([range(0; $el | length)] | map(if . == 0 then $el[0] else $el[.] - $el[. - 1] end | r3)) };
  (map(select(.event == "load" and .stage == "text")) | first | .t) as $first
  | (map(select(.event == "progress" and .stage == "stage_a")) | last | .t) as $adone
  | (map(select(.event == "done")) | last | .t) as $done
  | { size: ($size | tonumber),
    wall_s: ($t1 - $t0) | r3,
    cpu_s: ($user + $sys) | r3,
    peak_rss_mib: ($rss / 1024) | r3,
    before_text_s: ($first - $t0) | r3,
    png_s: ($done - $adone) | r3,
    exit_s: ($t1 - $done) | r3,
    text: stage("text"), stage_c: stage("stage_c"), stage_b: stage("stage_b"),
    stage_a: stage("stage_a") }' "$log" > "$out/summary.json"

jq -r '
  def med: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def row($n; $s): "\($n): load \($s.load_s) s, run \($s.run_s) s"
      + (if $s.steps > 1 then ", \($s.steps) steps, median step \($s.step_s | med) s" else "" end);
  "== \(.size)x\(.size): wall \(.wall_s) s, CPU \(.cpu_s) s, peak RSS \(.peak_rss_mib) MiB",
  row("text encoder"; .text), row("Stage C"; .stage_c), row("Stage B"; .stage_b),
  row("Stage A"; .stage_a),
  "start to text encoder \(.before_text_s) s, Stage A to PNG written \(.png_s) s, to exit \(.exit_s) s"' "$out/summary.json"
jq -c . "$out/summary.json"
echo "# files in $out"
