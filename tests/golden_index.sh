# Sourced by the golden_*.sh tests (not a test itself): the case list of the
# shared golden set comes from the set's own index, cases.json, so a case
# file that goes missing fails the test instead of silently shrinking a glob.
#   golden_cases PATTERN...   sets CASES to the indexed names matching any
#                             shell pattern; a missing index is a hard error
#   golden_run NAME [ARGS]    runs one case (missing file = failure); keeps
#                             fail / n up to date
golden_cases() {
    _idx=$SHARED_DIR/golden/cases.json
    if [ ! -f "$_idx" ]; then
        echo "ERROR: $_idx is missing: cannot tell which golden cases the set has"
        exit 99
    fi
    _all=$(grep -o '"[A-Za-z0-9_.-]*\.io\.safetensors"' "$_idx" | tr -d '"' | sed 's/\.io\.safetensors$//' | sort -u)
    # the README states the set's size: the index must agree with it
    _said=$(sed -n 's/.* \([0-9][0-9]*\) cases\..*/\1/p' "$SHARED_DIR/golden/README.md" 2>/dev/null | head -n 1)
    _have=$(echo "$_all" | grep -c .)
    if [ -n "$_said" ] && [ "$_said" != "$_have" ]; then
        echo "ERROR: README.md says $_said cases, cases.json indexes $_have"
        exit 99
    fi
    CASES=
    for _n in $_all; do
        for _p in "$@"; do
            case $_n in $_p) CASES="$CASES $_n"; break ;; esac
        done
    done
    if [ -z "$CASES" ]; then
        echo "ERROR: no case matching $* in $_idx"
        exit 99
    fi
}

fail=${fail:-0}
n=${n:-0}
golden_run() {
    _case=$SHARED_DIR/golden/$1
    shift
    n=$((n + 1))
    if [ ! -f "$_case.io.safetensors" ]; then
        echo "$(basename "$_case"): MISSING (listed in the set's index)"
        fail=1
        return
    fi
    _out=$("$GOLDEN_BIN" "$@" "$_case" 2>&1)
    _rc=$?
    echo "$(basename "$_case") $*: $(echo "$_out" | tail -n 1)"
    [ $_rc -eq 0 ] || { echo "$_out"; fail=1; }
}
