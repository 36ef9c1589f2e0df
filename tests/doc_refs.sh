#!/bin/sh
# Comments and manuals cite what a reader can open: every doc/*.md they name
# exists in the tree, and none cites spec/*.md (the shared specification is
# not part of this repository: cite the upstream file or doc/reference.md).
cd "${TOP_SRCDIR:-.}" || exit 99
fail=0
files=$(ls src/*.[ch] src/cli/*.[ch] simd/*.[ch] simd/*/*.c tests/*.c tests/*.h tests/golden/*.[ch] man/*.[0-9] README.md 2>/dev/null)
spec=$(grep -n 'spec/[a-z_]*\.md' $files)
[ -z "$spec" ] || { echo "FAIL: citations of spec/*.md, which is not in this repository:"; echo "$spec"; fail=1; }
for d in $(grep -oh 'doc/[A-Za-z0-9_-]*\.md' $files | sort -u); do
    [ -f "$d" ] || { echo "FAIL: $d is cited but does not exist"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: no spec/*.md citations; every cited doc/*.md exists"
exit $fail
