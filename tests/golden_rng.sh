#!/bin/sh
# `cascade dev golden` on the torch-CPU randn golden set (every draw of every seed).
. "$TOP_SRCDIR/tests/shared.sh"
need_shared golden/rng
out=$("$CASCADE_BIN" dev golden "$SHARED_DIR/golden/rng/torch_cpu_randn" 2>&1)
rc=$?
echo "$out"
exit $rc
