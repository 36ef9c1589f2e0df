/* A fake device plugin for tests (like hwloc's fake component), with
 * "shadow memory" the host cannot touch, so that CI without a GPU catches
 * what a GPU would punish:
 *   - alloc reserves an address range with PROT_NONE and keeps the bytes in
 *     a second, read/write mapping: a network body that reads or writes
 *     device memory itself dies with SIGSEGV, as it would on a GPU.
 *   - every op looks each device pointer up in the table of allocations
 *     (the range it touches must lie inside one allocation), and refuses a
 *     host pointer with an error instead of running.
 *   - the op itself is libcascade's CPU op, run on the real addresses with
 *     cs_dev set to NULL for the call, so results equal the CPU path bit
 *     for bit; fresh device memory is filled with NaN, as a GPU's is not
 *     zeroed either.
 *   - weights: weight_f32 makes a device copy keyed by the host pointer and
 *     checks on each use that the host bytes did not change since (a cached
 *     copy of freed or rewritten host memory means a missing forget()).
 * It counts op calls (fake_backend_calls, fake_backend_last_op) so tests can
 * tell the device path was taken, and the bytes moved
 * (fake_backend_upload_bytes, _download_bytes, _weight_bytes, _forget_bytes). Two made-up devices are listed (none, with
 * a reason, under FAKE_BACKEND_NODEV); FAKE_BACKEND_FAIL makes init fail;
 * FAKE_ABI overrides the ABI number and FAKE_NO_EMBED leaves an op out, to
 * test the loader's refusals; FAKE_NO_BACKWARD leaves out the optional
 * backward and optimizer ops (the plugin loads, grad.h's functions give
 * CS_EUNSUP). weight_rw marks a copy writable: views inside its host range
 * are then served from it (as the CUDA plugin does). It links its own static copy of libcascade's
 * engine (libcascade_internal.la) for the CPU ops, since libcascade.so
 * exports only the public API; init() sets up that copy's kernel table.
 * This file: the op table and the plugin's entry; the parts are listed in
 * tests/fake_backend.h. */
#include "fake_backend.h"

#include "cpu.h"
#include "error.h"
#include "kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI
#define FAKE_ABI CS_BACKEND_ABI
#endif

FAKE_VISIBLE unsigned long fake_backend_calls;        /* ops run (memory management not counted) */
FAKE_VISIBLE const char *fake_backend_last_op = "";   /* the op table's field name of the last op */
/* bytes across the bus, so a test can tell what a step moves: upload(),
 * download(), weight copies made (weight_f32), and weights forgotten (a
 * real device copies them again at their next use; the fake's ops read
 * most weights from host memory, so this counts what those copies would be) */
FAKE_VISIBLE unsigned long long fake_backend_upload_bytes, fake_backend_download_bytes, fake_backend_weight_bytes,
    fake_backend_forget_bytes;
int fake_backend_precision;              /* as set; the fake always computes in fp32 */
/* the SIMD level its copy of the engine runs (cs_simd_level; -1 before
 * init): a test comparing bits checks that its own copy runs the same one */
FAKE_VISIBLE int fake_backend_simd = -1;

static int set_precision(int prec)
{
    if (prec != CS_PREC_FP32 && prec != CS_PREC_BF16 && prec != CS_PREC_FP16 && prec != CS_PREC_TF32)
        return fake_fail(CS_EUNSUP, "fake device: no precision %d", prec);
    fake_backend_precision = prec;
    return 0;
}

/* filled once, by the parts, before the loader first reads it */
static cs_dev_ops ops;
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

static void fill_ops(void)
{
    fake_mem_ops(&ops);
    fake_weight_ops(&ops);
    fake_forward_ops(&ops);
    fake_block_ops(&ops);
    fake_train_ops(&ops);
    ops.set_precision = set_precision;
}

/* ---- the plugin ---- */

int fake_backend_started;

static int init(char *err, size_t n)
{
    if (getenv("FAKE_BACKEND_FAIL")) {
        snprintf(err, n, "fake failure (FAKE_BACKEND_FAIL)");
        return -1;
    }
    /* the CPU ops run in this plugin's copy of the engine: same SIMD level
     * as the host (both follow CASCADE_SIMD, else the best level) */
    if (cs_simd_init()) {
        snprintf(err, n, "fake: %s", cs_last_error());
        return -1;
    }
    fake_backend_simd = (int)cs_simd_current();
    fake_backend_started = 1;
    return 0;
}

/* drops every device copy and allocation */
static void shutdown_(void)
{
    fake_weights_release();
    fake_mem_release();
    fake_backend_started = 0;
}

static int devices(cs_device_info *out, int max, char *err, size_t n)
{
    if (getenv("FAKE_BACKEND_NODEV")) {
        snprintf(err, n, "no fake device");
        return -6;
    }
    for (int i = 0; i < 2 && i < max; i++) {
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "Fake GPU %d", i);
        out[i].cc_major = 8 + i, out[i].cc_minor = 6 - 6 * i;
        out[i].total_bytes = (size_t)(24 + 56 * i) << 30, out[i].free_bytes = (size_t)(20 + 50 * i) << 30;
        out[i].driver_version = 13000;
        out[i].usable = i == 0;
        if (i) snprintf(out[i].why, sizeof out[i].why, "no kernel image for sm_90");
    }
    return 2;
}

static const cs_backend fake = {.abi = FAKE_ABI, .name = "fake", .version = "fake 1.0", .init = init,
                                .shutdown = shutdown_, .devices = devices, .ops = &ops};

FAKE_VISIBLE const cs_backend *cascade_backend_entry(void)
{
    pthread_once(&ops_once, fill_ops);
    return &fake;
}
