#!/bin/sh
# Every CLIP text encoder golden case through `tests/golden/cascade-golden`. The text
# set has no cases.json: its README lists the cases as
# clip_tiny_{gelu,quick_gelu}[_nomask], i.e. these four, and each must exist.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/text
. "$TOP_SRCDIR/tests/golden_index.sh"
for c in clip_tiny_gelu clip_tiny_gelu_nomask clip_tiny_quick_gelu clip_tiny_quick_gelu_nomask; do
    golden_run "text/$c"
done
have=$(ls "$SHARED_DIR"/golden/text/clip_*.io.safetensors 2>/dev/null | grep -c .)
[ "$have" -eq 4 ] || { echo "golden/text has $have clip cases, its README lists 4"; fail=1; }
exit $fail
