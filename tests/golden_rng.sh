#!/bin/sh
# `tests/golden/cascade-golden` on the torch-CPU randn golden set (every draw of every
# seed; its checked_outputs lists them all, so a lost draw fails the case).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/rng
. "$TOP_SRCDIR/tests/golden_index.sh"
golden_run rng/torch_cpu_randn
exit $fail
