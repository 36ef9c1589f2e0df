#!/bin/sh
# One include style: headers of src/ and simd/ by name ("ops.h"), found
# through the -I flags every build (automake, tests/fuzz.sh, neon-qemu.sh)
# passes; a relative "../" path only for a helper beside the includer's
# folder (bench/ -> tests/manifest_st.h).
cd "${TOP_SRCDIR:-.}" || exit 99
bad=$(grep -n '#include "\(\.\./\)*\(src\|simd\)/\|#include "\.\./[a-z_0-9]*\.h"' \
    src/*.[ch] src/cli/*.[ch] simd/*.[ch] simd/*/*.c tests/*.[ch] tests/golden/*.[ch] bench/*.c examples/*.c 2>/dev/null)
if [ -n "$bad" ]; then
    echo "FAIL: src/ or simd/ headers included by a relative path (use the bare name):"
    echo "$bad"
    exit 1
fi
# simd/ is a leaf: none of its files includes a header of src/
leaf=$(for f in simd/*.[ch] simd/*/*.[ch]; do
    sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while read -r h; do
        [ -e "src/$h" ] && echo "$f: $h"
    done
done)
if [ -n "$leaf" ]; then
    echo "FAIL: simd/ includes headers of src/ (it must stay a leaf):"
    echo "$leaf"
    exit 1
fi
# The CLI is a client of the public API (issue 9): every file of src/cli/
# includes cascade.h and the CLI's own headers (src/cli/*.h) only, so a
# new CLI file cannot reach into the engine either.
cli_api_files=$(ls src/cli/*.c src/cli/*.h)
inner=$(for f in $cli_api_files; do
    [ -f "$f" ] || { echo "$f: missing"; continue; }
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | while read -r h; do
        [ "$h" = cascade.h ] || [ -e "src/cli/$h" ] || echo "$f: $h"
    done
done)
if [ -n "$inner" ]; then
    echo "FAIL: CLI files include internal headers (the CLI uses only cascade.h):"
    echo "$inner"
    exit 1
fi
echo "ok: src/ and simd/ headers included by name; simd/ includes nothing of src/; $(echo $cli_api_files | wc -w) CLI files use only cascade.h"
