# Sourced by the CLI tests: BIN (the cascade under test), a private $tmp
# removed on exit, ok/bad and $fail, no user settings leaking in, and
# PNGINFO (tests/png_info, which make check builds).
BIN=$CASCADE_BIN
tmp=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }
export XDG_CACHE_HOME="$tmp/cache" XDG_DATA_HOME="$tmp/data"
unset CASCADE_MODELS CASCADE_MEMORY CASCADE_TOKENIZER CASCADE_THREADS
PNGINFO="$(dirname "$BIN")/tests/png_info"
