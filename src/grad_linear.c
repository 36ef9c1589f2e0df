/* Backward of the products: Linear / 1x1 conv and the attention core
 * (grad.h). The transposed operands are copied once into scratch so that
 * everything runs through cs_sgemm, whose results do not depend on the
 * thread count. In device mode each function is the device's op (ops_dev.h). */
#include "grad.h"

#include "kernels.h"
#include "device.h"
#include "error.h"
#include "ops.h"
#include "ops_dev.h"

#include <math.h>
#include <string.h>

/* t[cols, rows] = a[rows, cols]^T (a has row stride lda) */
static void transpose(const float *a, size_t lda, size_t rows, size_t cols, float *t)
{
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (size_t j = 0; j < cols; j++)
        for (size_t i = 0; i < rows; i++) t[j * rows + i] = a[i * lda + j];
}

int cs_sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                float *C, size_t ldc)
{
    ON_DEV_OPT_RC(sgemm_tn, (M, N, K, A, lda, B, ldb, beta, C, ldc), "a transposed product");
    if (!M || !N) return 0;
    float *at = cs_alloc(M * K * sizeof(float) + 1);
    if (!at) return cs_oom("a transposed operand", M * K * sizeof(float));
    transpose(A, lda, K, M, at);
    int rc = cs_sgemm(0, M, N, K, 1.0f, at, K, B, ldb, beta, C, ldc);
    cs_free(at);
    return rc;
}

int cs_linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                       size_t ldy, float *dx, int acc, float *dW, float *db)
{
    size_t N = (size_t)W->shape[0];
    if (cs_tensor_numel(W) != (int64_t)(N * K))
        return cs_error(CS_EARG, "%s: Linear backward with %zu inputs for a weight of %lld values",
                        W->name ? W->name : "weight", K, (long long)cs_tensor_numel(W));
    ON_DEV_OPT_RC(linear_backward, (x, M, K, ldx, W, dy, ldy, dx, acc, dW, db), "Linear backward");
    if (!ldx) ldx = K;
    if (!ldy) ldy = N;
    int rc = 0;
    if (dx) {   /* dx[M,K] = dy[M,N] W[N,K] */
        const float *w = cs_weight_f32(W, 0);
        if (!w) return CS_ENOMEM;
        rc = cs_sgemm(0, M, K, N, 1.0f, dy, ldy, w, K, acc ? 1.0f : 0.0f, dx, ldx);
    }
    if (!rc && dW) rc = cs_sgemm_tn(N, K, M, dy, ldy, x, ldx, 1.0f, dW, K);   /* dW[N,K] += dy^T x */
    if (!rc && db) {
#pragma omp parallel for schedule(static) if (M * N >= 65536)
        for (size_t j = 0; j < N; j++) {
            float s = 0;
            for (size_t i = 0; i < M; i++) s += dy[i * ldy + j];
            db[j] += s;
        }
    }
    return rc;
}

/* One head of one image, with S scratch [Lq, Lk] and T [Lk, max(Lq, hd)]:
 *   P = softmax(scale q k^T)      recomputed
 *   dv (+)= P^T do,  dP = do v^T,  dS = P * (dP - rowsum(dP * P))
 *   dq (+)= scale dS k,  dk (+)= scale dS^T q */
static int head_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                         const float *dO, size_t ldo, size_t Lq, size_t Lk, size_t hd, float scale, float *dq,
                         float *dk, float *dv, float beta, float *P, float *dP)
{
    int rc = cs_sgemm(1, Lq, Lk, hd, scale, q, ldq, k, ldk, 0.0f, P, Lk);
    if (rc) return rc;
    for (size_t i = 0; i < Lq; i++) cs_k.softmax(P + i * Lk, Lk);
    if (dv && (rc = cs_sgemm_tn(Lk, hd, Lq, P, Lk, dO, ldo, beta, dv, ldv))) return rc;
    if ((rc = cs_sgemm(1, Lq, Lk, hd, 1.0f, dO, ldo, v, ldv, 0.0f, dP, Lk))) return rc;
    for (size_t i = 0; i < Lq; i++) {
        float *p = P + i * Lk, *d = dP + i * Lk, s = 0;
        for (size_t j = 0; j < Lk; j++) s += p[j] * d[j];
        for (size_t j = 0; j < Lk; j++) d[j] = p[j] * (d[j] - s);   /* dS, in place of dP */
    }
    if (dq && (rc = cs_sgemm(0, Lq, hd, Lk, scale, dP, Lk, k, ldk, beta, dq, ldq))) return rc;
    if (dk) {
        /* dk = scale dS^T q: scale folded into the transposed copy */
        for (size_t i = 0; i < Lq * Lk; i++) dP[i] *= scale;
        rc = cs_sgemm_tn(Lk, hd, Lq, dP, Lk, q, ldq, beta, dk, ldk);
    }
    return rc;
}

int cs_attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                          const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead, float *dq,
                          float *dk, float *dv, int acc)
{
    if (nhead <= 0 || C % (size_t)nhead)
        return cs_error(CS_EARG, "attention backward: %zu channels do not split into %d heads", C, nhead);
    ON_DEV_OPT_RC(attention_backward, (q, ldq, k, ldk, v, ldv, do_, ldo, N, Lq, Lk, C, nhead, dq, dk, dv, acc),
                  "attention backward");
    size_t hd = C / (size_t)nhead;
    float scale = 1.0f / sqrtf((float)hd);
    float *P = cs_alloc(2 * Lq * Lk * sizeof(float) + 1);
    if (!P) return cs_oom("attention backward scores", 2 * Lq * Lk * sizeof(float));
    int rc = 0;
    for (size_t n = 0; n < N && !rc; n++)
        for (int h = 0; h < nhead && !rc; h++) {
            size_t o = (size_t)h * hd;
            rc = head_backward(q + n * Lq * ldq + o, ldq, k + n * Lk * ldk + o, ldk, v + n * Lk * ldv + o, ldv,
                               do_ + n * Lq * ldo + o, ldo, Lq, Lk, hd, scale, dq ? dq + n * Lq * ldq + o : NULL,
                               dk ? dk + n * Lk * ldk + o : NULL, dv ? dv + n * Lk * ldv + o : NULL, acc ? 1.0f : 0.0f,
                               P, P + Lq * Lk);
        }
    cs_free(P);
    return rc;
}
