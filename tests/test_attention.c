/* cs_attention on the CPU (src/ops_attn.c) against references built from
 * other ops, bit for bit, at odd sizes (head widths 1, 5, 20, 64; keys and
 * queries not multiples of 16 or of a task's rows; row strides wider than
 * C; with and without a -inf mask) and at 1, 2 and 3 threads:
 *   fp32: the per-head form it replaced -- cs_sgemm for scale * q K^T, the
 *         kernel table's softmax, cs_sgemm for P V;
 *   bf16 (where the CPU has a native bf16 kernel): the same steps with
 *         cs_linear in bf16 precision on K and V^T as weights, i.e. q, k,
 *         P and v rounded to bf16 with fp32 sums by the native kernel; the
 *         result must also differ from fp32 (the products really are bf16)
 *         and stay near it.
 * And cs_attention_cat: the bits of cs_attention on its rows gathered.
 * Runs at every SIMD level (tests/levels.sh); bf16 only at avx512. */
#include "check.h"
#include "cpu.h"
#include "error.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "ops.h"
#include "backend.h"
#include "tensor.h"
#include "wpack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t N, Lq, Lk, C, ldq, ldk;
    int nhead, masked;
} shape;

/* the reference: per image and head, products by prod(), then scale, mask, softmax */
static int reference(int bf16, const shape *s, const float *q, const float *k, const float *v, const float *mask,
                     float *o)
{
    size_t hd = s->C / (size_t)s->nhead, Lq = s->Lq, Lk = s->Lk;
    float scale = 1.0f / sqrtf((float)hd);
    float *S = malloc(Lq * Lk * 4), *kh = malloc(Lk * hd * 4), *vt = malloc(Lk * hd * 4);
    int rc = 0;
    for (size_t n = 0; n < s->N && !rc; n++)
        for (size_t h = 0; h < (size_t)s->nhead && !rc; h++) {
            const float *qh = q + n * Lq * s->ldq + h * hd, *kn = k + n * Lk * s->ldk + h * hd,
                        *vn = v + n * Lk * s->ldk + h * hd;
            float *oh = o + n * Lq * s->C + h * hd;
            if (!bf16) {
                rc = cs_sgemm(1, Lq, Lk, hd, scale, qh, s->ldq, kn, s->ldk, 0.0f, S, Lk);
            } else {   /* K_h as a [Lk, hd] weight */
                for (size_t t = 0; t < Lk; t++) memcpy(kh + t * hd, kn + t * s->ldk, hd * 4);
                cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)Lk, (int64_t)hd}, .data = kh, .name = "k"};
                rc = cs_linear(qh, Lq, hd, s->ldq, &W, NULL, S, 0, 0);
                cs_wpack_clear();   /* kh is refilled at the same address */
                for (size_t i = 0; i < Lq * Lk; i++) S[i] *= scale;
            }
            for (size_t i = 0; i < Lq && !rc; i++) {
                if (mask) cs_k.add(S + i * Lk, mask + (n * Lq + i) * Lk, S + i * Lk, Lk);
                cs_k.softmax(S + i * Lk, Lk);
            }
            if (rc) break;
            if (!bf16) {
                rc = cs_sgemm(0, Lq, hd, Lk, 1.0f, S, Lk, vn, s->ldk, 0.0f, oh, s->C);
            } else {   /* V_h^T as a [hd, Lk] weight */
                for (size_t t = 0; t < Lk; t++)
                    for (size_t d = 0; d < hd; d++) vt[d * Lk + t] = vn[t * s->ldk + d];
                cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)hd, (int64_t)Lk}, .data = vt, .name = "v"};
                rc = cs_linear(S, Lq, Lk, 0, &W, NULL, oh, s->C, 0);
                cs_wpack_clear();
            }
        }
    free(S), free(kh), free(vt);
    return rc;
}

static void one(const shape *s, int bf16_ok)
{
    size_t nq = s->N * s->Lq * s->ldq, nk = s->N * s->Lk * s->ldk, no = s->N * s->Lq * s->C;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *ref = malloc(no * 4), *y = malloc(no * 4),
          *y32 = malloc(no * 4), *mask = NULL;
    for (size_t i = 0; i < nq; i++) q[i] = check_uni(-2, 2);
    for (size_t i = 0; i < nk; i++) k[i] = check_uni(-2, 2), v[i] = check_uni(-1, 1);
    if (s->masked) {   /* causal, as CLIP's: row i sees keys <= i (at least key 0) */
        mask = malloc(s->N * s->Lq * s->Lk * 4);
        for (size_t n = 0; n < s->N; n++)
            for (size_t i = 0; i < s->Lq; i++)
                for (size_t j = 0; j < s->Lk; j++) mask[(n * s->Lq + i) * s->Lk + j] = j <= i ? 0.0f : -INFINITY;
    }
    for (int bf16 = 0; bf16 <= bf16_ok; bf16++) {
        cs_threads_set(2);
        CHECK(cs_cpu_precision_set(bf16 ? CS_PREC_BF16 : CS_PREC_FP32) == 0, "%s", cs_last_error());
        int rc = reference(bf16, s, q, k, v, mask, ref);
        CHECK(rc == 0, "reference: %s", cs_last_error());
        for (int t = 1; t <= 3; t++) {
            cs_threads_set(t);
            memset(y, 0x7f, no * 4);
            rc = cs_attention(q, s->ldq, k, s->ldk, v, s->ldk, s->N, s->Lq, s->Lk, s->C, s->nhead, mask, y, s->C);
            CHECK(rc == 0, "cs_attention: %s", cs_last_error());
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < no; i++)
                if (memcmp(y + i, ref + i, 4) && !bad++) first = i;
            CHECK(!bad, "%s attention N=%zu Lq=%zu Lk=%zu C=%zu heads=%d mask=%d threads=%d: %zu of %zu differ from "
                  "the reference (first %zu: %.9g vs %.9g)", bf16 ? "bf16" : "fp32", s->N, s->Lq, s->Lk, s->C,
                  s->nhead, s->masked, t, bad, no, first, bad ? y[first] : 0, bad ? ref[first] : 0);
        }
        if (!bf16) memcpy(y32, y, no * 4);
        else {   /* bf16 products: not the fp32 bits, but near them */
            double e = check_rel_l2(y, y32, no);
            CHECK(memcmp(y, y32, no * 4), "bf16 attention N=%zu Lq=%zu Lk=%zu C=%zu: the fp32 bits (not bf16 products)",
                  s->N, s->Lq, s->Lk, s->C);
            CHECK(e < 2e-2, "bf16 attention N=%zu Lq=%zu Lk=%zu C=%zu: rel_l2 %.3g to fp32", s->N, s->Lq, s->Lk, s->C, e);
        }
    }
    cs_cpu_precision_set(CS_PREC_FP32);
    free(q), free(k), free(v), free(ref), free(y), free(y32), free(mask);
}

/* keys/values in two row blocks (an AttnBlock's tokens in its qkv rows,
 * then the conditioning's k|v rows): cs_attention_cat must give the bits
 * of cs_attention on the rows gathered */
static void cat(size_t N, size_t Lq, size_t L1, size_t L2, size_t C, int nhead, int bf16)
{
    size_t ldq = 3 * C + 1, ld2 = 2 * C + 3, Lk = L1 + L2, nq = N * Lq * ldq, n2 = N * L2 * ld2 + 1, no = N * Lq * C;
    float *q = malloc(nq * 4), *kv2 = malloc(n2 * 4), *kvb = malloc(N * Lk * 2 * C * 4 + 4), *ref = malloc(no * 4),
          *y = malloc(no * 4);
    for (size_t i = 0; i < nq; i++) q[i] = check_uni(-3, 3);
    for (size_t i = 0; i < n2; i++) kv2[i] = check_uni(-2, 2);
    for (size_t n = 0; n < N; n++) {
        for (size_t t = 0; t < L1; t++) memcpy(kvb + (n * Lk + t) * 2 * C, q + (n * L1 + t) * ldq + C, 2 * C * 4);
        for (size_t t = 0; t < L2; t++) memcpy(kvb + (n * Lk + L1 + t) * 2 * C, kv2 + (n * L2 + t) * ld2, 2 * C * 4);
    }
    cs_cpu_precision_set(bf16 ? CS_PREC_BF16 : CS_PREC_FP32);
    cs_threads_set(1);
    CHECK(cs_attention(q, ldq, kvb, 2 * C, kvb + C, 2 * C, N, Lq, Lk, C, nhead, NULL, ref, C) == 0, "%s", cs_last_error());
    for (int t = 1; t <= 3; t++) {
        cs_threads_set(t);
        memset(y, 0x7f, no * 4);
        int rc = cs_attention_cat(q, ldq, L1 ? q + C : NULL, L1 ? q + 2 * C : NULL, ldq, L1, L2 ? kv2 : NULL,
                                  L2 ? kv2 + C : NULL, ld2, L2, N, Lq, C, nhead, y, C);
        CHECK(rc == 0, "cs_attention_cat: %s", cs_last_error());
        CHECK(!memcmp(y, ref, no * 4), "%s cs_attention_cat N=%zu Lq=%zu L1=%zu L2=%zu C=%zu threads=%d: not the bits of "
              "the gathered rows", bf16 ? "bf16" : "fp32", N, Lq, L1, L2, C, t);
    }
    cs_cpu_precision_set(CS_PREC_FP32);
    free(q), free(kv2), free(kvb), free(ref), free(y);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "test_attention: %s\n", cs_last_error());
        return 99;
    }
    check_seed64(0xa77e17ull);
    int bf16_ok = cs_cpu_precision_set(CS_PREC_BF16) == 0;
    cs_cpu_precision_set(CS_PREC_FP32);
    printf("level %s, bf16 kernel %s\n", cs_simd_name(cs_simd_current()), bf16_ok ? cs_gemm_bf16_name() : "none");
    static const shape shapes[] = {
        {1, 1, 1, 3, 3, 3, 3, 0},         /* head width 1 */
        {2, 17, 5, 15, 16, 31, 3, 0},     /* width 5, strides wider than C */
        {1, 77, 77, 40, 40, 40, 2, 1},    /* CLIP-like, causal mask */
        {2, 130, 93, 64, 67, 192, 1, 0},  /* 2 tasks of query rows (96 + 34); k|v rows as in qkv */
        {1, 250, 40, 24, 24, 24, 3, 0},   /* 3 tasks (96, 96, 58) */
        {1, 100, 3001, 8, 8, 8, 1, 0},    /* long keys: 36-row tasks (36, 36, 28) */
        {1, 65, 661, 128, 384, 256, 2, 0},/* Stage C-like keys (image + conditioning tokens) */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) one(&shapes[i], bf16_ok);
    for (int b = 0; b <= bf16_ok; b++) {
        cat(2, 37, 37, 9, 40, 2, b);   /* self + cross */
        cat(1, 70, 70, 0, 64, 1, b);   /* self only */
        cat(2, 19, 0, 77, 48, 3, b);   /* cross only */
    }
    printf("%s\n", failures ? "FAILED" : "ok");
    return check_exit();
}
