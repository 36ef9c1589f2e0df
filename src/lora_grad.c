/* A LoRA's term at run time, as kohya's LoRAModule adds it (lora_train.h,
 * doc/training.md §4): no merged W' = W0 + s B A exists during training
 * (it was a float32 array of every wrapped weight: 3.8 GiB for Stage C
 * lite). While the trainer's step runs, every Linear of a wrapped weight W
 * (a row range of the model's tensor: q/k/v thirds of in_proj, the k|v rows
 * on the conditioning, the whole packed in_proj) comes here:
 *   forward   y (+)= x W0^T + b,  then per module  y[:, its rows] += (s x A^T) B^T
 *   backward  dx (+)= dy W0,  then per module, dy its columns:
 *             xa = s x A^T [M, r],   dB += dy^T xa,
 *             dyb = s dy B [M, r],   dA += dyb^T x,   dx += dyb A
 * (G = dy^T x never formed). W0 is the file's tensor, widened per call into
 * one float32 scratch (the host's: the ops' scratch, as cs_weight_f32; a
 * device's: the size of the largest wrapped weight, filled by weight_to_f32,
 * so the device holds W0 in the file's dtype only: cuBLAS has no bf16 x
 * float32 product). The host and a device run the same ops in the
 * same order, so the fake plugin gives the CPU's bits. With gradient
 * accumulation the sums over micro-batches (and over the two products of
 * to_k / to_v: image and conditioning tokens) round differently from
 * products of a summed G. On the host the sums go to each module's gA / gB;
 * in device mode to the device's dA / dB array (lora_dev.c), with the
 * device's A and B. */
#include "lora_net.h"

#include "device.h"
#include "error.h"
#include "grad.h"
#include "grad_blocks.h"
#include "ops.h"

#include <stdint.h>
#include <string.h>

/* zeroes every dA / dB once a step, before the first product adds to them;
 * in device mode first makes the device's A and B current */
static int fresh_sums(cs_lora_net *n, const cs_dev_ops *d)
{
    int rc = d ? cs_lora_net_dev_ready(n, d) : 0;   /* A and B there, as the host's */
    if (rc || !n->gfresh) return rc;
    if (d)
        cs_fill(n->dev.grad, 0.0f, n->dev.ngrad);
    else
        cs_lora_net_zero_grads(n);
    n->gfresh = 0;
    return 0;
}

void cs_lora_net_zero_grads(cs_lora_net *n)
{
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        memset(m->gA, 0, (size_t)(m->rank * m->K) * sizeof(float));
        memset(m->gB, 0, (size_t)(m->rows * m->rank) * sizeof(float));
    }
}

/* *o: the module whose tensor W is a row range of (the first of that
 * tensor), *r0: W's first row in it. 1: W is not a wrapped weight; CS_EARG:
 * the range cuts a module. */
static int owner(const cs_lora_net *n, const cs_tensor *W, size_t K, const lmod **o, int64_t *r0)
{
    uintptr_t at = (uintptr_t)W->data;
    int64_t N = W->shape[0];
    *o = NULL;
    for (int i = 0; i < n->n; i++) {
        const lmod *m = &n->v[i];
        uintptr_t w = (uintptr_t)m->wp->data, end = w + (size_t)cs_tensor_numel(m->wp) * sizeof(float);
        if (at < w || at >= end) continue;
        if (!*o) *o = m, *r0 = (int64_t)((at - w) / sizeof(float)) / m->K;
        if (m->row0 + m->rows <= *r0 || m->row0 >= *r0 + N) continue;
        if ((int64_t)K != m->K || m->row0 < *r0 || m->row0 + m->rows > *r0 + N)
            return cs_error(CS_EARG, "%s: a Linear of rows [%lld, %lld) x %zu cuts LoRA module %s", m->wp->name,
                            (long long)*r0, (long long)(*r0 + N), K, m->name);
    }
    return *o ? 0 : 1;
}

/* W0's rows [r0, r0 + N) of o's tensor as float32 in the current mode */
static const float *w0_rows(cs_lora_net *n, const lmod *o, int64_t r0, size_t N, int *rc)
{
    const cs_dev_ops *d = cs_dev;
    size_t at = (size_t)(r0 * o->K), cnt = N * (size_t)o->K;
    char err[256] = "";
    *rc = 0;
    if (!d) {   /* the host: in place if float32, else widened into the ops' scratch (threads, SIMD) */
        cs_tensor rows = *o->w0;
        rows.ndim = 1;
        rows.shape[0] = (int64_t)cnt;
        rows.data = (const char *)o->w0->data + at * cs_dtype_size(o->w0->dtype);
        const float *w = cs_weight_f32(&rows, 0);
        if (!w) *rc = CS_ENOMEM;
        return w;
    }
    if (!d->weight_to_f32) {   /* an older plugin: its float32 copy of the file's tensor */
        const float *w = d->weight_f32(o->w0, err, sizeof err);
        if (!w) *rc = cs_error(CS_EDEVICE, "LoRA training: %s", err[0] ? err : "no device copy of a weight");
        return w ? w + at : NULL;
    }
    if (!n->dev.w0 && !(n->dev.w0 = d->alloc(n->wmax * sizeof(float)))) {
        *rc = cs_error(CS_ENOMEM, "LoRA training: out of device memory for a widened weight (%.1f MiB): %s",
                       (double)n->wmax * 4 / 1048576, d->errmsg());
        return NULL;
    }
    if ((*rc = d->weight_to_f32(o->w0, at, cnt, n->dev.w0, err, sizeof err)))
        *rc = cs_error(*rc, "LoRA training: %s", err[0] ? err : "no device copy of a weight");
    return *rc ? NULL : n->dev.w0;
}

/* the A and B of m in the current mode */
static void factors(const cs_lora_net *n, const lmod *m, const float **A, const float **B)
{
    *A = cs_dev ? n->dev.par + m->off : m->A;
    *B = cs_dev ? *A + (size_t)(m->rank * m->K) : m->B;
}

int cs_lora_net_linear(void *ctx, const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W,
                       const cs_tensor *b, float *y, size_t ldy, int acc)
{
    cs_lora_net *n = ctx;
    const lmod *o;
    int64_t r0;
    int rc = owner(n, W, K, &o, &r0);
    if (rc || (cs_dev && (rc = cs_lora_net_dev_ready(n, cs_dev)))) return rc;
    size_t N = (size_t)W->shape[0];
    const float *w = w0_rows(n, o, r0, N, &rc);
    if (!w) return rc;
    if ((rc = cs_sgemm(1, M, N, K, 1.0f, x, ldx, w, K, acc ? 1.0f : 0.0f, y, ldy))) return rc;
    if (b) {   /* y = y * 1 + b: the bias by an op every device has */
        /* one size a key: the device's copy of n->ones is made once */
        const float *bb = cs_weight_f32(b, 1), *one = cs_param(n->ones, n->nones);
        if (!bb || !one) return CS_ENOMEM;
        if (ldy == N) cs_channel_affine(y, y, M, N, one, bb);
        else
            for (size_t r = 0; r < M; r++) cs_channel_affine(y + r * ldy, y + r * ldy, 1, N, one, bb);
    }
    float *xa = NULL;
    for (const lmod *m = o; m < n->v + n->n && !rc; m++) {
        if (m->wp != o->wp || m->row0 < r0 || m->row0 + m->rows > r0 + (int64_t)N) continue;
        size_t r = (size_t)m->rank;
        const float *A, *B;
        factors(n, m, &A, &B);
        if (!xa && !(xa = cs_act_alloc(M * (size_t)n->rmax + 1))) return cs_oom("the LoRA term", M * r * sizeof(float));
        rc = cs_sgemm(1, M, r, K, m->scale, x, ldx, A, K, 0.0f, xa, r);
        if (!rc) rc = cs_sgemm(1, M, (size_t)m->rows, r, 1.0f, xa, r, B, r, 1.0f, y + (m->row0 - r0), ldy);
    }
    cs_act_free(xa);
    return rc == CS_ENOMEM ? cs_oom("the LoRA term", 0) : rc;
}

/* one module's part of the backward; dy: its columns (row stride ldy) */
static int thin(const cs_lora_net *n, const lmod *m, const float *x, size_t M, size_t ldx, const float *dy,
                size_t ldy, float *dx)
{
    size_t r = (size_t)m->rank, K = (size_t)m->K, rows = (size_t)m->rows;
    const float *A, *B;
    factors(n, m, &A, &B);
    float *gA = cs_dev ? n->dev.grad + m->goff : m->gA, *gB = cs_dev ? gA + r * K : m->gB;
    float *xa = cs_act_alloc(2 * M * r + 1), *dyb = xa + M * r;
    if (!xa) return cs_oom("the LoRA gradient scratch", 2 * M * r * sizeof(float));
    int rc = cs_sgemm(1, M, r, K, m->scale, x, ldx, A, K, 0.0f, xa, r);
    if (!rc) rc = cs_sgemm_tn(rows, r, M, dy, ldy, xa, r, 1.0f, gB, r);
    if (!rc) rc = cs_sgemm(0, M, r, rows, m->scale, dy, ldy, B, r, 0.0f, dyb, r);
    if (!rc) rc = cs_sgemm_tn(r, K, M, dyb, r, x, ldx, 1.0f, gA, K);
    if (!rc && dx) rc = cs_sgemm(0, M, K, r, 1.0f, dyb, r, A, K, 1.0f, dx, ldx);
    cs_act_free(xa);
    return rc;
}

int cs_lora_net_sink(void *ctx, const cs_tensor *W, const float *x, size_t M, size_t K, size_t ldx, const float *dy,
                     size_t ldy, float *dx, int acc)
{
    cs_lora_net *n = ctx;
    const lmod *o;
    int64_t r0;
    int rc = owner(n, W, K, &o, &r0);
    if (rc || (rc = fresh_sums(n, cs_dev))) return rc;
    size_t N = (size_t)W->shape[0];
    if (dx) {   /* dx[M,K] (+)= dy[M,N] W0[N,K] */
        const float *w = w0_rows(n, o, r0, N, &rc);
        if (!w || (rc = cs_sgemm(0, M, K, N, 1.0f, dy, ldy, w, K, acc ? 1.0f : 0.0f, dx, ldx))) return rc;
    }
    for (const lmod *m = o; m < n->v + n->n && !rc; m++)
        if (m->wp == o->wp && m->row0 >= r0 && m->row0 + m->rows <= r0 + (int64_t)N)
            rc = thin(n, m, x, M, ldx, dy + (m->row0 - r0), ldy, dx);
    return rc == CS_ENOMEM ? cs_oom("the LoRA gradients", 0) : rc;
}
