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

/* query rows per task: a multiple of every kernel's register tile (12 or
 * 6 rows: a 64-row task computed 72), S (rows x Lk floats) within ~512 KB
 * of L2 */
static size_t task_rows(size_t Lk)
{
    size_t r = 131072 / (Lk ? Lk : 1) / 12 * 12;
    return r < 12 ? 12 : r > 96 ? 96 : r;
}

/* one image's keys (or values): L1 rows of p1 (stride ld1), then rows of
 * p2 (ld2) -- an AttnBlock's own tokens and its conditioning, read where
 * they are instead of gathered first */
typedef struct {
    const float *p1, *p2;
    size_t ld1, ld2, L1;
} rows2;

static const float *row_at(const rows2 *r, size_t t) { return t < r->L1 ? r->p1 + t * r->ld1 : r->p2 + (t - r->L1) * r->ld2; }

/* fp32 panels (gemm_f32's layout): K^T of one head, panel p = keys
 * [16p, 16p+16) as hd rows of 16 (zero past Lk); V of one head, panel p =
 * features [16p, 16p+16) as Lk rows of 16 (zero past hd) */
static void pack_kt_f32(const rows2 *k, size_t Lk, size_t hd, float *o)
{
    for (size_t p = 0; p < (Lk + 15) / 16; p++, o += 16 * hd)
        for (size_t j = 0; j < 16; j++) {
            const float *r = 16 * p + j < Lk ? row_at(k, 16 * p + j) : NULL;
            for (size_t d = 0; d < hd; d++) o[d * 16 + j] = r ? r[d] : 0.0f;
        }
}

static void pack_v_f32(const rows2 *v, size_t Lk, size_t hd, float *o)
{
    for (size_t p = 0; p < (hd + 15) / 16; p++, o += 16 * Lk) {
        size_t n = hd - 16 * p < 16 ? hd - 16 * p : 16;
        for (size_t t = 0; t < Lk; t++) {
            memcpy(o + t * 16, row_at(v, t) + 16 * p, n * sizeof(float));
            memset(o + t * 16 + n, 0, (16 - n) * sizeof(float));
        }
    }
}

/* bf16 pair panels (gemm_bf16.h): the same operands as above, the k index
 * (hd for K^T, Lk for V) in pairs: low half 2q, high half 2q+1, zero past
 * the end. Rows are rounded by the kernel table's f32_to_bf16 (vectorised;
 * round to nearest even, as the bf16 kernels round their A) into tmp; a
 * bf16 key row read as uint32 is already its pairs, so K^T is a transpose
 * of 16 such rows; V pairs two consecutive rows. tmp: 16 rows of hd + 1
 * (K) or 2 rows of hd rounded up to 16 (V) uint16. */
static void pack_kt_bf16(const rows2 *k, size_t Lk, size_t hd, uint32_t *o, uint16_t *tmp)
{
    size_t KP = (hd + 1) / 2, ps = cs_bf16_panel_size(hd);
    for (size_t p = 0; p < (Lk + 15) / 16; p++, o += ps) {
        size_t n = Lk - 16 * p < 16 ? Lk - 16 * p : 16;
        for (size_t j = 0; j < n; j++) {
            uint16_t *t = tmp + j * 2 * KP;
            cs_k.f32_to_bf16(row_at(k, 16 * p + j), t, hd);
            if (hd & 1) t[hd] = 0;
        }
        for (size_t q = 0; q < KP; q++) {
            for (size_t j = 0; j < n; j++) {
                const uint16_t *t = tmp + j * 2 * KP + 2 * q;
                o[q * 16 + j] = t[0] | (uint32_t)t[1] << 16;
            }
            for (size_t j = n; j < 16; j++) o[q * 16 + j] = 0;
        }
    }
}

static void pack_v_bf16(const rows2 *v, size_t Lk, size_t hd, uint32_t *o, uint16_t *tmp)
{
    size_t ps = cs_bf16_panel_size(Lk), P = (hd + 15) / 16;
    uint16_t *lo = tmp, *hi = tmp + 16 * P;
    memset(tmp, 0, 2 * 16 * P * sizeof *tmp);   /* features past hd stay zero */
    for (size_t q = 0; q < ps / 16; q++) {
        cs_k.f32_to_bf16(row_at(v, 2 * q), lo, hd);
        if (2 * q + 1 < Lk) cs_k.f32_to_bf16(row_at(v, 2 * q + 1), hi, hd);
        else memset(hi, 0, hd * sizeof *hi);
        for (size_t p = 0; p < P; p++)
            for (size_t j = 0; j < 16; j++) o[p * ps + q * 16 + j] = lo[16 * p + j] | (uint32_t)hi[16 * p + j] << 16;
    }
}

/* the CPU's attention on keys/values in two row blocks per image (L2 may be 0) */
static int attn_run(const float *q, size_t ldq, const float *k1, const float *v1, size_t ldk1, size_t ldv1, size_t L1,
                    const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C, int nhead,
                    const float *mask, float *o, size_t ldo)
{
    size_t Lk = L1 + L2;
    if (!N || !Lq) return 0;
    size_t H = (size_t)nhead, hd = C / H;
    float scale = 1.0f / sqrtf((float)hd);
    cs_gemm_bf16_fn kern = cs_cpu_precision_get() == CS_PREC_BF16 ? cs_gemm_bf16_native() : NULL;
    /* one head's K^T and V panels, in floats (a uint32 pair is one float's room) */
    size_t kp = kern ? (Lk + 15) / 16 * cs_bf16_panel_size(hd) : (Lk + 15) / 16 * 16 * hd;
    size_t vp = kern ? (hd + 15) / 16 * cs_bf16_panel_size(Lk) : (hd + 15) / 16 * 16 * Lk;
    int T = cs_threads_get();
    size_t rows_t = task_rows(Lk), nrb = (Lq + rows_t - 1) / rows_t, ntask = H * nrb;
    if ((double)Lq * (double)Lk * (double)C < 2e6) T = 1;   /* a region costs more than the work */
    /* per thread: the scores, or while packing bf16 rows (pack_*_bf16's tmp) */
    size_t per = rows_t * Lk > 8 * (hd + 1) + 16 * ((hd + 15) / 16) ? rows_t * Lk : 8 * (hd + 1) + 16 * ((hd + 15) / 16);
    float *packs = cs_ops_scratch(5, H * (kp + vp)), *S = cs_ops_scratch(6, (size_t)T * per);
    if (!packs || !S)
        return cs_error(CS_ENOMEM, "attention: out of memory for %zu MB of scratch (%zu keys, %zu channels)",
                        (H * (kp + vp) + (size_t)T * per) * 4 >> 20, Lk, C);
    for (size_t n = 0; n < N; n++) {
        const float *qn = q + n * Lq * ldq;
        rows2 kn = {L1 ? k1 + n * L1 * ldk1 : NULL, L2 ? k2 + n * L2 * ld2 : NULL, ldk1, ld2, L1};
        rows2 vn = {L1 ? v1 + n * L1 * ldv1 : NULL, L2 ? v2 + n * L2 * ld2 : NULL, ldv1, ld2, L1};
        const float *mn = mask ? mask + n * Lq * Lk : NULL;
        float *on = o + n * Lq * ldo;
#pragma omp parallel num_threads(T) if (T > 1)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *s = S + (size_t)tid * per;
#pragma omp for schedule(static)
            for (size_t i = 0; i < 2 * H; i++) {
                size_t h = i / 2;
                float *kpk = packs + h * (kp + vp), *vpk = kpk + kp;
                rows2 kh = kn, vh = vn;   /* head h's columns */
                kh.p1 = kh.p1 ? kh.p1 + h * hd : NULL, kh.p2 = kh.p2 ? kh.p2 + h * hd : NULL;
                vh.p1 = vh.p1 ? vh.p1 + h * hd : NULL, vh.p2 = vh.p2 ? vh.p2 + h * hd : NULL;
                if (i % 2 == 0 && kern) pack_kt_bf16(&kh, Lk, hd, (uint32_t *)kpk, (uint16_t *)s);
                else if (i % 2 == 0) pack_kt_f32(&kh, Lk, hd, kpk);
                else if (kern) pack_v_bf16(&vh, Lk, hd, (uint32_t *)vpk, (uint16_t *)s);
                else pack_v_f32(&vh, Lk, hd, vpk);
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ntask; t++) {
                size_t h = t / nrb, r0 = t % nrb * rows_t, rows = Lq - r0 < rows_t ? Lq - r0 : rows_t;
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

int cs_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                 size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo)
{
    if (nhead <= 0 || C % (size_t)nhead) return cs_error(CS_EARG, "attention: %zu channels do not split into %d heads", C, nhead);
    ON_DEV_RC(attention(q, ldq, k, ldk, v, ldv, N, Lq, Lk, C, nhead, mask, o, ldo), "attention");
    return attn_run(q, ldq, k, v, ldk, ldv, Lk, NULL, NULL, 0, 0, N, Lq, C, nhead, mask, o, ldo);
}

int cs_attention_cat_cpu(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                         const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                         int nhead, float *o, size_t ldo)
{
    if (nhead <= 0 || C % (size_t)nhead) return cs_error(CS_EARG, "attention: %zu channels do not split into %d heads", C, nhead);
    if (!L1 + !L2 == 2) return cs_error(CS_EARG, "attention without keys");
    return attn_run(q, ldq, k1, v1, ld1, ld1, L1, k2, v2, ld2, L2, N, Lq, C, nhead, NULL, o, ldo);
}
