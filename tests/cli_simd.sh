#!/bin/sh
# CASCADE_SIMD: an unknown level and a level this CPU or build lacks must give
# a clear message and a non-zero exit from `cascade info` (never SIGILL); a
# level it has must be the one reported. Needs CASCADE_BIN (set by make check).
BIN=${CASCADE_BIN:-./cascade}
fail=0
tmp=${TMPDIR:-/tmp}/cli_simd.$$
trap 'rm -f "$tmp".*' EXIT

have=$("$BIN" info --levels) || { echo "FAIL: cascade info --levels (exit $?)"; exit 1; }
echo "levels here: $(echo $have)"
case " $(echo $have) " in *" scalar "*) ;; *) echo "FAIL: scalar missing from --levels"; fail=1 ;; esac

# run NAME WANT-RC STDERR-TEXT STDOUT-TEXT CASCADE_SIMD-value
run() {
    CASCADE_SIMD=$5 "$BIN" info >"$tmp.out" 2>"$tmp.err"
    rc=$?
    if [ $rc -ge 128 ]; then
        echo "FAIL $1: killed by signal $((rc - 128))"; fail=1; return
    fi
    if [ "$2" = 0 ] && [ $rc -ne 0 ] || [ "$2" != 0 ] && [ $rc -eq 0 ]; then
        echo "FAIL $1: exit $rc"; cat "$tmp.err"; fail=1; return
    fi
    if [ -n "$3" ] && ! grep -qF -- "$3" "$tmp.err"; then
        echo "FAIL $1: stderr lacks '$3':"; cat "$tmp.err"; fail=1; return
    fi
    if [ -n "$4" ] && ! grep -qF -- "$4" "$tmp.out"; then
        echo "FAIL $1: stdout lacks '$4':"; cat "$tmp.out"; fail=1; return
    fi
    echo "ok $1"
}

run "unknown level" 1 "CASCADE_SIMD=bogus: unknown level" "" bogus
run "empty level picks the best" 0 "" "simd:" ""
run "gemm line names the BF16 weight panels" 0 "" "BF16 linear weights packed once into bf16 panels" ""
for l in scalar avx2 avx512 neon; do
    case " $(echo $have) " in
        *" $l "*) run "$l available" 0 "" "simd:      $l " "$l" ;;
        *) run "$l unavailable" 1 "SIMD level '$l' is not available" "" "$l" ;;
    esac
done

# CASCADE_AMX: 0 or 1, anything else refused; 0 picks AVX512-BF16 over AMX
CASCADE_AMX=yes "$BIN" info >"$tmp.out" 2>"$tmp.err"
rc=$?
if [ $rc -ne 2 ] || ! grep -qF "CASCADE_AMX=yes: use 0" "$tmp.err"; then
    echo "FAIL CASCADE_AMX=yes: exit $rc"; cat "$tmp.err"; fail=1
else echo "ok CASCADE_AMX=yes refused"; fi
if [ -z "${CASCADE_SIMD:-}" ] && "$BIN" info | grep -q '^features: .*amx-bf16'; then
    if ! "$BIN" info | grep -q '^cpu bf16: .*tdpbf16ps' && ! "$BIN" info | grep -q '^cpu bf16: .*vdpbf16ps'; then
        echo "FAIL: AMX-BF16 in the features, yet no native bf16 kernel"; fail=1
    fi
    if ! CASCADE_AMX=0 "$BIN" info | grep -q '^cpu bf16: .*vdpbf16ps'; then
        echo "FAIL: CASCADE_AMX=0 does not pick AVX512-BF16"; fail=1
    else echo "ok CASCADE_AMX=0 picks AVX512-BF16"; fi
    "$BIN" info | grep '^cpu bf16:'
fi
# CASCADE_BF16_FMA: 0 or 1, anything else refused; each picks its AVX512-BF16 form
CASCADE_BF16_FMA=2 "$BIN" info >"$tmp.out" 2>"$tmp.err"
rc=$?
if [ $rc -ne 2 ] || ! grep -qF "CASCADE_BF16_FMA=2: use 0" "$tmp.err"; then
    echo "FAIL CASCADE_BF16_FMA=2: exit $rc"; cat "$tmp.err"; fail=1
else echo "ok CASCADE_BF16_FMA=2 refused"; fi
if [ "${CASCADE_SIMD:-avx512}" = avx512 ] && "$BIN" info | grep -q "^features: .*avx512bf16"; then
    if ! CASCADE_AMX=0 CASCADE_BF16_FMA=1 "$BIN" info | grep -q '^cpu bf16: .*two fp32 FMAs' ||
       ! CASCADE_AMX=0 CASCADE_BF16_FMA=0 "$BIN" info | grep -qF 'AVX512-BF16 (vdpbf16ps)'; then
        echo "FAIL: CASCADE_BF16_FMA=1/0 do not pick the FMA form / vdpbf16ps"; fail=1
    else echo "ok CASCADE_BF16_FMA=1/0 pick the FMA form / vdpbf16ps"; fi
fi
# CASCADE_AMX_APACK: 0 or 1, anything else refused
CASCADE_AMX_APACK=on "$BIN" info >"$tmp.out" 2>"$tmp.err"
rc=$?
if [ $rc -ne 2 ] || ! grep -qF "CASCADE_AMX_APACK=on: use 0" "$tmp.err"; then
    echo "FAIL CASCADE_AMX_APACK=on: exit $rc"; cat "$tmp.err"; fail=1
else echo "ok CASCADE_AMX_APACK=on refused"; fi
CASCADE_AMX_APACK=1 "$BIN" info >/dev/null 2>"$tmp.err" || { echo "FAIL CASCADE_AMX_APACK=1 refused"; cat "$tmp.err"; fail=1; }
exit $fail
