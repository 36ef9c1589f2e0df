/* The gradients of a LoRA's A and B taken inside the Stage C backward
 * (lora_train.h, doc/training.md §4). A wrapped module's weight gets no
 * gradient buffer (G = dL/dW' would be a full-size float32 array per
 * wrapped weight: 3.8 GiB for Stage C lite); each Linear backward of it
 * hands its input x [M, K] and output gradient dy [M, rows] to the sink,
 * which adds the thin products
 *   xa = s x A^T [M, r],   dB += dy^T xa,
 *   dyb = s dy B [M, r],   dA += dyb^T x,
 * that is s G A^T and s B^T G with G = dy^T x never formed (as torch's
 * autograd of kohya's lora_down / lora_up computes them). With gradient
 * accumulation the sums over micro-batches (and over the two products of
 * to_k / to_v: image and conditioning tokens) round differently from
 * products of a summed G.
 * On the host the sums go to each module's gA / gB; in device mode to the
 * device's dA / dB array (lora_dev.c), with the device's A and B. */
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

/* dy: this module's columns (row stride ldy) */
static int thin(const lmod *m, const float *x, size_t M, size_t ldx, const float *dy, size_t ldy, const float *A,
                const float *B, float *gA, float *gB)
{
    size_t r = (size_t)m->rank, K = (size_t)m->K, rows = (size_t)m->rows;
    float *xa = cs_act_alloc(2 * M * r + 1), *dyb = xa + M * r;
    if (!xa) return cs_oom("the LoRA gradient scratch", 2 * M * r * sizeof(float));
    int rc = cs_sgemm(1, M, r, K, m->scale, x, ldx, A, K, 0.0f, xa, r);
    if (!rc) rc = cs_sgemm_tn(rows, r, M, dy, ldy, xa, r, 1.0f, gB, r);
    if (!rc) rc = cs_sgemm(0, M, r, rows, m->scale, dy, ldy, B, r, 0.0f, dyb, r);
    if (!rc) rc = cs_sgemm_tn(r, K, M, dyb, r, x, ldx, 1.0f, gA, K);
    cs_act_free(xa);
    return rc;
}

int cs_lora_net_sink(void *ctx, const cs_tensor *W, const float *x, size_t M, size_t K, size_t ldx, const float *dy,
                     size_t ldy)
{
    cs_lora_net *n = ctx;
    const cs_dev_ops *d = cs_dev;
    uintptr_t at = (uintptr_t)W->data;
    int64_t N = W->shape[0];
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        uintptr_t w = (uintptr_t)m->wp->data, end = w + (size_t)cs_tensor_numel(m->wp) * sizeof(float);
        if (at < w || at >= end) continue;
        /* W may be a row range of W' (the k|v rows of in_proj on the conditioning) */
        int64_t r0 = (int64_t)((at - w) / sizeof(float)) / m->K;
        if (m->row0 + m->rows <= r0 || m->row0 >= r0 + N) continue;
        if ((int64_t)K != m->K || m->row0 < r0 || m->row0 + m->rows > r0 + N)
            return cs_error(CS_EARG, "%s: a Linear backward of rows [%lld, %lld) x %zu cuts LoRA module %s", m->wp->name,
                            (long long)r0, (long long)(r0 + N), K, m->name);
        int rc = fresh_sums(n, d);
        if (rc) return rc;
        const float *A = m->A, *B = m->B;
        float *gA = m->gA, *gB = m->gB;
        if (d) {   /* the device's copies (uploaded by cs_lora_net_dev_ready) */
            A = n->dev.par + m->off, B = A + (size_t)(m->rank * m->K);
            gA = n->dev.grad + m->goff, gB = gA + (size_t)(m->rank * m->K);
        }
        rc = thin(m, x, M, ldx, dy + (m->row0 - r0), ldy, A, B, gA, gB);
        if (rc) return rc == CS_ENOMEM ? cs_oom("the LoRA gradients", 0) : rc;
    }
    return 0;
}
