#!/bin/sh
# The manual pages format without a warning (man-db's --warnings: groff's
# own checks; mandoc -T lint instead where it is installed).
. "${TOP_SRCDIR:-.}/tests/shared.sh"
status=0
for page in "$TOP_SRCDIR/man/cascade.1" "$TOP_SRCDIR/man/libcascade.3"; do
    if command -v mandoc >/dev/null 2>&1; then
        out=$(mandoc -T lint -W warning "$page" 2>&1)
    else
        need_tool man "formats the manual pages"
        need_tool groff "formats the manual pages"
        out=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
    fi
    if [ -n "$out" ]; then
        echo "FAIL: $page:"
        printf '%s\n' "$out" | head -20
        status=1
    else
        echo "ok: $page"
    fi
done
exit $status
