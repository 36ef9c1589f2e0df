/* Shared by the op files (ops.c, ops_conv.c, ops_layout.c, grad_*.c), not by their
 * callers: the device dispatch of every op, the threading thresholds and
 * the per-thread scratch. */
#ifndef CS_OPS_DEV_H
#define CS_OPS_DEV_H

#include "device.h"

#include <stddef.h>

/* In device mode (src/device.h) every op below runs on cs_dev: these queue
 * it and record its first failure for the forward's end. On the CPU they
 * open the op's profile scope (CS_PROF_CPU): statements, not blocks, so
 * each goes once at the top of a function body. */
#define ON_DEV(call, what)                                   \
    if (cs_dev) {                                            \
        double t_ = cs_dev_prof_start();                     \
        cs_dev_note(cs_dev->call, what);                     \
        cs_dev_prof_stop(t_, what);                          \
        return;                                              \
    }                                                        \
    CS_PROF_CPU(what)
#define ON_DEV_RC(call, what)                                \
    if (cs_dev) {                                            \
        double t_ = cs_dev_prof_start();                     \
        int rc_ = cs_dev->call;                              \
        cs_dev_note(rc_, what);                              \
        cs_dev_prof_stop(t_, what);                          \
        return rc_ ? cs_dev_error() : 0;                     \
    }                                                        \
    CS_PROF_CPU(what)

/* The optional ops of cs_dev (the backward of grad.h): field is the table
 * entry, args its parenthesised arguments; a device without it gives
 * CS_EUNSUP (the data is on the device: there is no CPU fallback). */
#define ON_DEV_OPT_RC(field, args, what)                                                           \
    if (cs_dev && !cs_dev->field) return cs_error(CS_EUNSUP, "%s: not in this device's op set", what); \
    ON_DEV_RC(field args, what)
/* The same for a void function: the failure is recorded for the forward's end. */
#define ON_DEV_OPT(field, args, what)                                  \
    if (cs_dev && !cs_dev->field) {                                    \
        cs_dev_note(CS_EUNSUP, what " (not in this device's op set)"); \
        return;                                                        \
    }                                                                  \
    ON_DEV(field args, what)

/* element-wise work is split into chunks of CHUNK floats over threads;
 * below PAR_MIN floats an op runs on the calling thread (a parallel region
 * costs more than the work, and on a loaded machine far more) */
#define CHUNK 4096
#define PAR_MIN 16384

/* slot's per-thread scratch of at least n floats (kept between calls, freed
 * when the thread ends); NULL when out of memory. Slots 0-3: cs_weight_f32's
 * (ops.h); 4: the GEMM's packing;
 * 5, 6: attention's packed keys/values and scores (ops_attn.c); 7: GRN's sums. */
float *cs_ops_scratch(int slot, size_t n);
/* y[M, N] = x[M, K] W on the CPU, W [K, N] as it lies (not a Linear's
 * [N, K]): packed once like a Linear's weight (wpack.h, cs_wpack_get_kn),
 * bf16 math at bf16 precision; at fp32 the bits of cs_sgemm on W as float32. */
int cs_matmul_kn(const float *x, size_t M, size_t K, const cs_tensor *W, float *y, size_t ldy);
/* cs_attention_cat on the CPU (ops_attn.c): the keys/values read in their two blocks */
int cs_attention_cat_cpu(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                         const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                         int nhead, float *o, size_t ldo);
/* y[r * ldy + j] += bias[j] for r < rows, j < N, over threads */
void cs_ops_bias_rows(float *y, size_t rows, size_t N, size_t ldy, const float *bias);

#endif
