#!/bin/sh
# The networks' device path without a GPU: golden cases of the blocks, the
# tiny networks and the samplers through the fake device plugin
# (tests/fake_backend.c: shadow memory, the CPU's ops, so the golden limits
# hold unchanged). Catches a network body that touches device memory, an
# op the dispatch gets wrong, and the fused-block path.
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden
. "$TOP_SRCDIR/tests/golden_index.sh"
CASCADE_BACKEND=$PWD/tests/.libs/libcascade-fake.so
export CASCADE_BACKEND
[ -f "$CASCADE_BACKEND" ] || { echo "the fake plugin is not built: $CASCADE_BACKEND"; exit 1; }
golden_cases 'op_resblock*' 'op_attnblock*' 'op_feedforward*' 'op_timestepblock*' 'op_stage_a_*' 'stage_c_*' 'stage_b_*' \
    'stage_a_*decode' 'sampling_*' 'previewer*'
for c in $CASES; do golden_run "$c" --strict; done
# Stage A on a device without its fused op (the single ops, scratch taken per block)
CASCADE_BACKEND=$PWD/tests/.libs/libcascade-fakenobw.so
golden_cases 'op_stage_a_*' 'stage_a_*decode'
for c in $CASES; do golden_run "$c" --strict; done
exit $fail
