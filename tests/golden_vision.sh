#!/bin/sh
# Image-variation golden cases (golden/vision): the CLIP vision tower and its
# preprocessing. The set has no cases.json: its README lists clip_vision_tiny
# and clip_preprocess_0..3, so each must exist and the folder must hold no
# other case this test would miss.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/vision
. "$TOP_SRCDIR/tests/golden_index.sh"
for c in clip_vision_tiny clip_preprocess_0 clip_preprocess_1 clip_preprocess_2 clip_preprocess_3; do
    golden_run "vision/$c"
done
have=$(ls "$SHARED_DIR"/golden/vision/*.io.safetensors 2>/dev/null | grep -c .)
[ "$have" -eq 5 ] || { echo "golden/vision has $have cases, its README lists 5"; fail=1; }
exit $fail
