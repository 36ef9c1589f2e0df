/* Multi-head attention on the CPU (cs_attention, ops.h).
 *
 * Per image, every head's keys and values are packed once into the GEMM
 * kernel's panels, then one parallel loop runs tasks of (head, block of
 * query rows): S = scale * q K^T, (+ mask), softmax per row, o = S V, with
 * S in the thread's scratch (it stays in cache between the two products).
 * The first version ran two cs_sgemm calls and a softmax loop per head and
 * image, each its own parallel region that packed its operand again: ~3
 * regions x heads x images per block, whose barriers did not shrink with
 * the thread count, and ~18% of a Stage C lite forward at 1 thread for ~3%
 * of its FLOPs.
 *
 * Precision: in fp32 the products are the kernel table's gemm_f32 on fp32
 * panels -- the same chains, so the same bits, as the per-head cs_sgemm
 * calls. In bf16 (cs_cpu_precision_set) they are the native bf16 kernel
 * (AMX or AVX512-BF16, simd/gemm_bf16.h): q, k, the probabilities and v
 * rounded to bf16, sums in fp32, softmax in fp32 -- what PyTorch's CPU
 * autocast does for attention.
 *
 * Determinism: each output row is computed from its own query row and the
 * whole packed K and V, by chains over k in order; how rows are grouped
 * into tasks or threads does not change a bit. */
#include "ops.h"

#include "backend.h"
#include "error.h"
#include "fp16.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "ops_dev.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ATT_ROWS 64   /* query rows per task: S (64 x Lk) stays in L2 */

/* fp32 panels (gemm_f32's layout): K^T of one head, panel p = keys
 * [16p, 16p+16) as hd rows of 16 (zero past Lk); V of one head, panel p =
 * features [16p, 16p+16) as Lk rows of 16 (zero past hd) */
static void pack_kt_f32(const float *k, size_t ldk, size_t Lk, size_t hd, float *o)
{
    for (size_t p = 0; p < (Lk + 15) / 16; p++, o += 16 * hd)
        for (size_t j = 0; j < 16; j++) {
            const float *r = 16 * p + j < Lk ? k + (16 * p + j) * ldk : NULL;
            for (size_t d = 0; d < hd; d++) o[d * 16 + j] = r ? r[d] : 0.0f;
        }
}

static void pack_v_f32(const float *v, size_t ldv, size_t Lk, size_t hd, float *o)
{
    for (size_t p = 0; p < (hd + 15) / 16; p++, o += 16 * Lk) {
        size_t n = hd - 16 * p < 16 ? hd - 16 * p : 16;
        for (size_t t = 0; t < Lk; t++) {
            memcpy(o + t * 16, v + t * ldv + 16 * p, n * sizeof(float));
            memset(o + t * 16 + n, 0, (16 - n) * sizeof(float));
        }
    }
}

/* bf16 pair panels (gemm_bf16.h): the same operands as above, the k index
 * (hd for K^T, Lk for V) in pairs: low half 2q, high half 2q+1, zero past
 * the end */
static uint32_t pair(float lo, float hi) { return cs_f32_to_bf16(lo) | (uint32_t)cs_f32_to_bf16(hi) << 16; }

static void pack_kt_bf16(const float *k, size_t ldk, size_t Lk, size_t hd, uint32_t *o)
{
    size_t ps = cs_bf16_panel_size(hd);
    for (size_t p = 0; p < (Lk + 15) / 16; p++, o += ps)
        for (size_t j = 0; j < 16; j++) {
            const float *r = 16 * p + j < Lk ? k + (16 * p + j) * ldk : NULL;
            for (size_t q = 0; q < ps / 16; q++)
                o[q * 16 + j] = r ? pair(r[2 * q], 2 * q + 1 < hd ? r[2 * q + 1] : 0.0f) : 0;
        }
}

static void pack_v_bf16(const float *v, size_t ldv, size_t Lk, size_t hd, uint32_t *o)
{
    size_t ps = cs_bf16_panel_size(Lk);
    for (size_t p = 0; p < (hd + 15) / 16; p++, o += ps)
        for (size_t q = 0; q < ps / 16; q++) {
            const float *r0 = v + 2 * q * ldv, *r1 = 2 * q + 1 < Lk ? r0 + ldv : NULL;
            for (size_t j = 0; j < 16; j++) {
                size_t c = 16 * p + j;
                o[q * 16 + j] = c >= hd ? 0 : pair(r0[c], r1 ? r1[c] : 0.0f);
            }
        }
}

int cs_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                 size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo)
{
    if (nhead <= 0 || C % (size_t)nhead) return cs_error(CS_EARG, "attention: %zu channels do not split into %d heads", C, nhead);
    ON_DEV_RC(attention(q, ldq, k, ldk, v, ldv, N, Lq, Lk, C, nhead, mask, o, ldo), "attention");
    if (!N || !Lq) return 0;
    size_t H = (size_t)nhead, hd = C / H;
    float scale = 1.0f / sqrtf((float)hd);
    cs_gemm_bf16_fn kern = cs_cpu_precision_get() == CS_PREC_BF16 ? cs_gemm_bf16_native() : NULL;
    /* one head's K^T and V panels, in floats (a uint32 pair is one float's room) */
    size_t kp = kern ? (Lk + 15) / 16 * cs_bf16_panel_size(hd) : (Lk + 15) / 16 * 16 * hd;
    size_t vp = kern ? (hd + 15) / 16 * cs_bf16_panel_size(Lk) : (hd + 15) / 16 * 16 * Lk;
    int T = cs_threads_get();
    size_t nrb = (Lq + ATT_ROWS - 1) / ATT_ROWS, ntask = H * nrb;
    if ((double)Lq * (double)Lk * (double)C < 2e6) T = 1;   /* a region costs more than the work */
    float *packs = cs_ops_scratch(5, H * (kp + vp)), *S = cs_ops_scratch(6, (size_t)T * ATT_ROWS * Lk);
    if (!packs || !S)
        return cs_error(CS_ENOMEM, "attention: out of memory for %zu MB of scratch (%zu keys, %zu channels)",
                        (H * (kp + vp) + (size_t)T * ATT_ROWS * Lk) * 4 >> 20, Lk, C);
    for (size_t n = 0; n < N; n++) {
        const float *qn = q + n * Lq * ldq, *kn = k + n * Lk * ldk, *vn = v + n * Lk * ldv;
        const float *mn = mask ? mask + n * Lq * Lk : NULL;
        float *on = o + n * Lq * ldo;
#pragma omp parallel num_threads(T) if (T > 1)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *s = S + (size_t)tid * ATT_ROWS * Lk;
#pragma omp for schedule(static)
            for (size_t i = 0; i < 2 * H; i++) {
                size_t h = i / 2;
                float *kpk = packs + h * (kp + vp), *vpk = kpk + kp;
                if (i % 2 == 0 && kern) pack_kt_bf16(kn + h * hd, ldk, Lk, hd, (uint32_t *)kpk);
                else if (i % 2 == 0) pack_kt_f32(kn + h * hd, ldk, Lk, hd, kpk);
                else if (kern) pack_v_bf16(vn + h * hd, ldv, Lk, hd, (uint32_t *)vpk);
                else pack_v_f32(vn + h * hd, ldv, Lk, hd, vpk);
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ntask; t++) {
                size_t h = t / nrb, r0 = t % nrb * ATT_ROWS, rows = Lq - r0 < ATT_ROWS ? Lq - r0 : ATT_ROWS;
                const float *kpk = packs + h * (kp + vp), *vpk = kpk + kp, *qh = qn + r0 * ldq + h * hd;
                float *oh = on + r0 * ldo + h * hd;
                if (kern) kern(rows, Lk, hd, qh, ldq, (const uint32_t *)kpk, cs_bf16_panel_size(hd), s, Lk, 0);
                else cs_k.gemm_f32(rows, Lk, hd, qh, ldq, kpk, 16 * hd, s, Lk, 0);
                for (size_t i = 0; i < rows; i++) {
                    float *si = s + i * Lk;
                    cs_k.scale(si, scale, si, Lk);
                    if (mn) cs_k.add(si, mn + (r0 + i) * Lk, si, Lk);
                    cs_k.softmax(si, Lk);
                }
                if (kern) kern(rows, hd, Lk, s, Lk, (const uint32_t *)vpk, cs_bf16_panel_size(Lk), oh, ldo, 0);
                else cs_k.gemm_f32(rows, hd, Lk, s, Lk, vpk, 16 * Lk, oh, ldo, 0);
            }
        }
    }
    return 0;
}
