#include "ops.h"

#include "gemm_bf16.h"
#include "kernels.h"
#include "backend.h"
#include "device.h"
#include "error.h"
#include "safetensors.h"
#include "ops_dev.h"
#include "wpack.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif


/* Per thread, like the scratch below: each thread that drives a forward (a
 * libcascade context in use) has its own thread count, precision and
 * scratch, so two contexts can run at once in one process. OpenMP's own
 * thread count (omp_set_num_threads) is per calling thread too. */
static _Thread_local int nthreads = 1;

void cs_threads_set(int n)
{
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    nthreads = n;
}

int cs_threads_get(void) { return nthreads; }

/* CPU precision of cs_linear's products (ops.h) */
static _Thread_local int cpu_prec = CS_PREC_FP32;

int cs_cpu_precision_set(int prec)
{
    if (prec == CS_PREC_FP32 || (prec == CS_PREC_BF16 && cs_gemm_bf16_native())) {
        cpu_prec = prec;
        return 0;
    }
    if (prec == CS_PREC_BF16)
        return cs_error(CS_EUNSUP, "bf16 products on the CPU need AVX512-BF16 (or AMX-BF16) at the avx512 SIMD level "
                                   "(this CPU or CASCADE_SIMD=%s has no native bf16 dot product)",
                        cs_simd_name(cs_simd_current()));
    return cs_error(CS_EUNSUP, "the CPU computes in fp32 or bf16 only");
}

int cs_cpu_precision_get(void) { return cpu_prec; }

static _Thread_local int bf16_panels = 1;

void cs_linear_bf16_panels(int on) { bf16_panels = on != 0; }

const char *cs_gemm_info(void)
{
    static _Thread_local char buf[256];
    static const char *const tile[CS_SIMD_LEVELS] = {"scalar", "6x16 AVX2+FMA", "12x32 AVX-512", "6x16 NEON"};
    cs_simd_level l = cs_simd_current();
    if (cpu_prec == CS_PREC_BF16 && cs_gemm_bf16_name())
        snprintf(buf, sizeof buf, "cascade's own packed GEMM, %s micro-kernel for linear layers in bf16 (weights packed once), "
                 "%s for the rest (same bits at any thread count)", cs_gemm_bf16_name(), l < CS_SIMD_LEVELS ? tile[l] : "?");
    else
        snprintf(buf, sizeof buf, "cascade's own packed GEMM, %s micro-kernel (fused multiply-add chains: same bits at any thread count or SIMD level)%s",
                 l < CS_SIMD_LEVELS ? tile[l] : "?",
                 bf16_panels ? "; BF16 linear weights packed once into bf16 panels, widened in registers" : "");
    return buf;
}

/* ---- matrix products ----
 * Our own packed GEMM (the kernel table's gemm_f32): every C element is one
 * fused multiply-add chain over k in order, so a result depends only on its
 * row of A, its column of B and K -- not on M, on how a Stage A decode is
 * tiled, on the thread count or on the SIMD level. OpenBLAS could not give
 * that: its kernels, blockings and edge code follow the call shape, and its
 * Haswell kernels round the rows of one register tile differently (measured:
 * a row's result changed with its position in the call). The split into
 * tasks (row groups x column chunks, ~4 per thread) is free to follow the
 * thread count because it cannot change a result. op(B) is packed once per
 * call (16-bit weights converted on the way), except a BF16 linear weight:
 * its bf16 panels are packed once per weight (cs_linear). */
#define GEMM_SUB 192   /* rows per kernel call: the C block stays in L2 */

#define SCRATCH_SLOTS 8
typedef struct { float *p; size_t cap; } scratch_slot;
static _Thread_local scratch_slot scratch[SCRATCH_SLOTS];

/* A thread's scratch goes when the thread ends (a pthread key destructor;
 * static TLS is still mapped while it runs); the main thread's lives as long
 * as the process, as before. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *p)
{
    scratch_slot *s = p;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        cs_free(s[i].p);
        s[i].p = NULL;
        s[i].cap = 0;
    }
}

static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_release); }

float *cs_ops_scratch(int slot, size_t n)
{
    if (scratch[slot].cap < n) {
        pthread_once(&scratch_once, scratch_key_make);
        pthread_setspecific(scratch_key, scratch);
        cs_free(scratch[slot].p);
        scratch[slot].p = cs_alloc(n * sizeof(float));
        scratch[slot].cap = scratch[slot].p ? n : 0;
    }
    return scratch[slot].p;
}

typedef void (*cvt_fn)(const uint16_t *, float *, size_t);

/* Packs panel p (columns 16p..16p+15) of op(B) (K x N) as K x 16 floats
 * (gemm_f32's layout), zero past N. B16 + cv: 16-bit rows [N, K] instead of
 * B. rows16: 16 * K floats of scratch. */
static void pack_panel(int transB, const float *B, size_t ldb, const uint16_t *B16, cvt_fn cv, size_t N, size_t K,
                       size_t p, float *o, float *rows16)
{
    size_t j0 = p * 16, n = N - j0 < 16 ? N - j0 : 16;
    if (!transB && !B16) {
        for (size_t k = 0; k < K; k++) {
            memcpy(o + k * 16, B + k * ldb + j0, n * sizeof(float));
            memset(o + k * 16 + n, 0, (16 - n) * sizeof(float));
        }
        return;
    }
    const float *src[16];
    for (size_t jj = 0; jj < n; jj++) {
        if (B16) {
            cv(B16 + (j0 + jj) * K, rows16 + jj * K, K);
            src[jj] = rows16 + jj * K;
        } else src[jj] = B + (j0 + jj) * ldb;
    }
    for (size_t k = 0; k < K; k++) {   /* the rows read in step, the panel written in order */
        for (size_t jj = 0; jj < n; jj++) o[k * 16 + jj] = src[jj][k];
        for (size_t jj = n; jj < 16; jj++) o[k * 16 + jj] = 0.0f;
    }
}

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* A linear layer's epilogue on a finished block of C (rows x w, ldc), while
 * it is in cache: + bias[j], then GELU (gelu != 0). Element-wise, so the
 * bits of the separate passes over the whole output it replaces. */
static void epilogue(float *C, size_t ldc, size_t rows, size_t w, const float *bias, int gelu)
{
    for (size_t i = 0; i < rows; i++) {
        float *c = C + i * ldc;
        if (bias) cs_k.add_bias(c, c, 1, w, bias);
        if (gelu) cs_k.gelu(c, c, w);
    }
}

/* C[M,N] = alpha * A op(B) + beta * C; op(B) from B (ldb) or from 16-bit
 * weight rows B16 [N, K] converted by cv. op(B) is packed once per call
 * (scratch slot 4, with per-thread room for 16 converted rows and results to
 * scale or add); tasks are row groups x column chunks, ~4 per thread. */
static int gemm_run(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                    const float *B, size_t ldb, float beta, float *C, size_t ldc, const uint16_t *B16, cvt_fn cv,
                    const float *bias, int gelu)
{
    int T = nthreads;
    if ((double)M * (double)N * (double)K < 4e6) T = 1;
    size_t P = (N + 15) / 16, nc = N < 384 ? round_up(N, 16) : 384, nch = (N + nc - 1) / nc;
    size_t want = T > 1 ? (4 * (size_t)T + nch - 1) / nch : 1;
    size_t rg = round_up((M + want - 1) / want, 24), ngr = (M + rg - 1) / rg;
    int direct = alpha == 1.0f && beta == 0.0f;
    size_t per = 16 * K + (direct ? 0 : GEMM_SUB * nc);
    float *buf = cs_ops_scratch(4, P * 16 * K + (size_t)T * per);
    if (!buf)
        return cs_error(CS_ENOMEM, "matrix product %zux%zux%zu: out of memory for %zu MB of scratch", M, N, K,
                        (P * 16 * K + (size_t)T * per) * 4 >> 20);
    float *bp = buf, *thr = buf + P * 16 * K;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *rows16 = thr + (size_t)tid * per, *tmp = rows16 + 16 * K;
#pragma omp for schedule(static)
        for (size_t p = 0; p < P; p++) pack_panel(transB, B, ldb, B16, cv, N, K, p, bp + p * 16 * K, rows16);
#pragma omp for schedule(dynamic, 1)
        for (size_t t = 0; t < ngr * nch; t++) {
            size_t g = t / nch, c0 = t % nch * nc, w = N - c0 < nc ? N - c0 : nc;
            size_t r1 = (g + 1) * rg < M ? (g + 1) * rg : M;
            for (size_t r0 = g * rg; r0 < r1; r0 += GEMM_SUB) {
                size_t rows = r1 - r0 < GEMM_SUB ? r1 - r0 : GEMM_SUB;
                if (direct) {
                    cs_k.gemm_f32(rows, w, K, A + r0 * lda, lda, bp + c0 * K, 16 * K, C + r0 * ldc + c0, ldc, 0);
                    epilogue(C + r0 * ldc + c0, ldc, rows, w, bias ? bias + c0 : NULL, gelu);
                    continue;
                }
                cs_k.gemm_f32(rows, w, K, A + r0 * lda, lda, bp + c0 * K, 16 * K, tmp, nc, 0);
                for (size_t i = 0; i < rows; i++) {
                    float *cc = C + (r0 + i) * ldc + c0;
                    const float *s = tmp + i * nc;
                    if (beta == 0.0f)
                        for (size_t j = 0; j < w; j++) cc[j] = alpha * s[j];
                    else if (alpha == 1.0f && beta == 1.0f)
                        cs_k.add(cc, s, cc, w);
                    else
                        for (size_t j = 0; j < w; j++) cc[j] = beta * cc[j] + alpha * s[j];
                }
                epilogue(C + r0 * ldc + c0, ldc, rows, w, bias ? bias + c0 : NULL, gelu);
            }
        }
    }
    return 0;
}

#define APACK_BYTES (8u << 20)   /* A packed per round (gemm_run_bf16): stays in L3 */

/* GRN applied to A's rows while they are packed (cs_grn_linear): rows of
 * image n = row / HW get cs_k.grn_apply with nx + n * K */
typedef struct {
    size_t HW;
    const float *nx, *gamma, *beta;
} grn_fold;

/* C[M,N] = A[M,K] W^T (+ C when accumulate) with W packed in bf16 pairs
 * (wpack.h), kern the bf16 kernel or gemm_f32_bf16w: the same task split as
 * gemm_run; A is read as it is, so only the results to add need scratch.
 * Where A meets several column chunks and kern has a pre-packed form, A is
 * packed once per round of rows (in parallel, then the tasks of the round)
 * instead of once per chunk in each kernel call: the same bits. g != NULL:
 * GRN applied to A's rows on their way into the packing. */
static int gemm_run_bf16(cs_gemm_bf16_fn kern, size_t M, size_t N, size_t K, const float *A, size_t lda,
                         const cs_wpack *w, int accumulate, float *C, size_t ldc, const float *bias, int gelu,
                         const grn_fold *g)
{
    int T = nthreads;
    if ((double)M * (double)N * (double)K < 4e6) T = 1;
    size_t nc = N < 384 ? round_up(N, 16) : 384, nch = (N + nc - 1) / nc;
    /* a GRN to fold needs the pre-packed form even for one chunk (callers check it exists) */
    const cs_gemm_bf16_apacked *ap = nch > 1 || g ? cs_gemm_bf16_apacked_of(kern) : NULL;
    size_t mr = ap ? ap->mr : 1, tile_words = ap ? cs_gemm_bf16_apacked_words(ap, K) : 0;
    /* row groups start at multiples of mr: of 48 where mr is 16 (AMX), else of 24 */
    size_t rq = mr == 16 ? 48 : 24;
    /* rows a round: a multiple of GEMM_SUB (and so of mr and of the row groups' rq) */
    size_t mc = ap ? APACK_BYTES / (tile_words * 4 / mr + 1) / GEMM_SUB * GEMM_SUB : M;
    if (mc < GEMM_SUB) mc = GEMM_SUB;
    if (mc > M) mc = M;
    size_t tmp_n = accumulate ? (size_t)T * GEMM_SUB * nc : 0, ap_n = ap ? (mc + mr - 1) / mr * tile_words : 0;
    size_t gt_n = g ? (size_t)T * mr * K : 0;   /* a tile's rows after GRN, per thread */
    float *tmp_all = NULL;
    if ((tmp_n || ap_n || gt_n) && !(tmp_all = cs_ops_scratch(4, tmp_n + ap_n + gt_n)))
        return cs_error(CS_ENOMEM, "matrix product %zux%zux%zu: out of memory for scratch", M, N, K);
    uint32_t *Ap = ap ? (uint32_t *)(tmp_all + tmp_n) : NULL;
    float *gt_all = g ? tmp_all + tmp_n + ap_n : NULL;
    for (size_t m0 = 0; m0 < M; m0 += mc) {
        size_t mm = M - m0 < mc ? M - m0 : mc;
        size_t want = T > 1 ? (4 * (size_t)T + nch - 1) / nch : 1;
        size_t rg = round_up((mm + want - 1) / want, rq), ngr = (mm + rg - 1) / rg, ntl = (mm + mr - 1) / mr;
        const float *Am = A + m0 * lda;
        float *Cm = C + m0 * ldc;
#pragma omp parallel num_threads(T) if (T > 1)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *tmp = tmp_n ? tmp_all + (size_t)tid * GEMM_SUB * nc : NULL;
            if (ap) {
#pragma omp for schedule(static)
                for (size_t t = 0; t < ntl; t += 8) {   /* 8 tiles a piece */
                    size_t r = t * mr, rows = mm - r < 8 * mr ? mm - r : 8 * mr;
                    if (!g) {
                        ap->pack(Am + r * lda, lda, rows, K, Ap + t * tile_words);
                        continue;
                    }
                    float *gt = gt_all + (size_t)tid * mr * K;
                    for (size_t u = 0; u < rows; u += mr) {   /* a tile at a time: GRN's rows into gt, packed */
                        size_t nr = rows - u < mr ? rows - u : mr, row0 = m0 + r + u;
                        for (size_t i = 0; i < nr;) {   /* split where an image ends */
                            size_t gr = row0 + i, n = gr / g->HW, seg = (n + 1) * g->HW - gr;
                            if (seg > nr - i) seg = nr - i;
                            cs_k.grn_apply(A + gr * lda, gt + i * K, seg, K, g->nx + n * K, g->gamma, g->beta);
                            i += seg;
                        }
                        ap->pack(gt, K, nr, K, Ap + (t + u / mr) * tile_words);
                    }
                }
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t t = 0; t < ngr * nch; t++) {
                size_t g = t / nch, c0 = t % nch * nc, wd = N - c0 < nc ? N - c0 : nc;
                size_t r1 = (g + 1) * rg < mm ? (g + 1) * rg : mm;
                const uint32_t *bp = w->p + c0 / 16 * w->pstride;
                for (size_t r0 = g * rg; r0 < r1; r0 += GEMM_SUB) {
                    size_t rows = r1 - r0 < GEMM_SUB ? r1 - r0 : GEMM_SUB;
                    float *out = accumulate ? tmp : Cm + r0 * ldc + c0;
                    size_t ldo = accumulate ? nc : ldc;
                    if (ap) ap->run(rows, wd, K, Ap + r0 / mr * tile_words, bp, w->pstride, out, ldo, 0);
                    else kern(rows, wd, K, Am + r0 * lda, lda, bp, w->pstride, out, ldo, 0);
                    if (accumulate)
                        for (size_t i = 0; i < rows; i++)   /* the residual add, vectorised */
                            cs_k.add(Cm + (r0 + i) * ldc + c0, tmp + i * nc, Cm + (r0 + i) * ldc + c0, wd);
                    epilogue(Cm + r0 * ldc + c0, ldc, rows, wd, bias ? bias + c0 : NULL, gelu);
                }
            }
        }
    }
    return 0;
}

int cs_sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
             size_t ldb, float beta, float *C, size_t ldc)
{
    if (!M || !N) return 0;
    ON_DEV_RC(sgemm(transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), "a matrix product");
    return gemm_run(transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL, NULL, 0);
}

/* ---- weights as float32 ---- */

static void convert_f32(const cs_tensor *t, float *out, size_t n)
{
    const unsigned char *src = t->data;
    if (t->dtype == CS_F32) {
        memcpy(out, src, n * 4);
        return;
    }
    if (((uintptr_t)src & 1) == 0 && (t->dtype == CS_BF16 || t->dtype == CS_F16)) {
        void (*cv)(const uint16_t *, float *, size_t) = t->dtype == CS_BF16 ? cs_k.bf16_to_f32 : cs_k.f16_to_f32;
        const size_t chunk = 1 << 16;
        long nb = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
        for (long b = 0; b < nb; b++) {
            size_t o = (size_t)b * chunk, m = n - o < chunk ? n - o : chunk;
            cv((const uint16_t *)src + o, out + o, m);
        }
        return;
    }
    cs_tensor_to_f32(t, out);
}

const float *cs_weight_f32(const cs_tensor *t, int slot)
{
    size_t n = (size_t)cs_tensor_numel(t);
    if (cs_dev) {
        char err[200] = "";
        const float *p = cs_dev->weight_f32(t, err, sizeof err);
        if (!p) cs_error(CS_ENOMEM, "%s: %s", t->name ? t->name : "weight", err[0] ? err : "no device copy");
        return p;
    }
    if (t->dtype == CS_F32 && ((uintptr_t)t->data & 3) == 0) return t->data;
    if (t->dtype != CS_F32 && t->dtype != CS_BF16 && t->dtype != CS_F16) {
        cs_error(CS_EUNSUP, "%s: weight dtype %s is not a float type", t->name ? t->name : "weight",
                 cs_dtype_name(t->dtype));
        return NULL;
    }
    float *o = cs_ops_scratch(slot, n);
    if (!o) {
        cs_error(CS_ENOMEM, "%s: out of memory converting %zu weights", t->name ? t->name : "weight", n);
        return NULL;
    }
    convert_f32(t, o, n);
    return o;
}

/* ---- element-wise, split into chunks over threads ---- */


void cs_gelu(const float *x, float *y, size_t n)
{
    ON_DEV(unary(0, x, y, n), "GELU");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.gelu(x + i, y + i, n - i < CHUNK ? n - i : CHUNK);
}

void cs_quick_gelu(const float *x, float *y, size_t n)
{
    ON_DEV(unary(1, x, y, n), "quick GELU");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.quick_gelu(x + i, y + i, n - i < CHUNK ? n - i : CHUNK);
}

void cs_silu(const float *x, float *y, size_t n)
{
    ON_DEV(unary(2, x, y, n), "SiLU");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.silu(x + i, y + i, n - i < CHUNK ? n - i : CHUNK);
}

void cs_sigmoid(const float *x, float *y, size_t n)
{
    ON_DEV(unary(3, x, y, n), "sigmoid");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.sigmoid(x + i, y + i, n - i < CHUNK ? n - i : CHUNK);
}

void cs_add(const float *a, const float *b, float *y, size_t n)
{
    ON_DEV(add(a, b, y, n), "an addition");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.add(a + i, b + i, y + i, n - i < CHUNK ? n - i : CHUNK);
}

void cs_scale(const float *x, float s, float *y, size_t n)
{
    ON_DEV(scale(x, s, y, n), "a scaling");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) cs_k.scale(x + i, s, y + i, n - i < CHUNK ? n - i : CHUNK);
}

/* rows per task so that each task touches ~CHUNK floats */
static size_t row_block(size_t C) { return C >= CHUNK ? 1 : CHUNK / C; }

void cs_layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    ON_DEV(layernorm(x, y, rows, C, eps, w, b), "a layer norm");
    size_t rb = row_block(C);
#pragma omp parallel for schedule(static) if (rows * C >= PAR_MIN)
    for (size_t r = 0; r < rows; r += rb)
        cs_k.layernorm(x + r * C, y + r * C, rows - r < rb ? rows - r : rb, C, eps, w, b);
}

void cs_modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                 size_t ldab)
{
    ON_DEV(modulate(x, y, N, HW, C, a, b, ldab), "a modulation");
    size_t rb = row_block(C), nr = (HW + rb - 1) / rb;
#pragma omp parallel for schedule(static) if (N * HW * C >= PAR_MIN)
    for (size_t i = 0; i < N * nr; i++) {   /* all images in one region */
        size_t n = i / nr, r = i % nr * rb, o = (n * HW + r) * C;
        cs_k.modulate(x + o, y + o, HW - r < rb ? HW - r : rb, C, a + n * ldab, b + n * ldab);
    }
}

void cs_channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t)
{
    ON_DEV(channel_affine(x, y, rows, C, s, t), "a channel affine");
#pragma omp parallel for schedule(static) if (rows * C >= PAR_MIN)
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * s[c] + t[c];
}

void cs_ops_bias_rows(float *y, size_t rows, size_t N, size_t ldy, const float *bias)
{
    if (ldy == N) {
        size_t rb = row_block(N);
#pragma omp parallel for schedule(static) if (rows * N >= PAR_MIN)
        for (size_t r = 0; r < rows; r += rb) cs_k.add_bias(y + r * N, y + r * N, rows - r < rb ? rows - r : rb, N, bias);
    } else {
#pragma omp parallel for schedule(static) if (rows * N >= PAR_MIN)
        for (size_t r = 0; r < rows; r++) cs_k.add_bias(y + r * ldy, y + r * ldy, 1, N, bias);
    }
}

_Thread_local const cs_lowrank *cs_lowrank_on;

/* cs_linear, and GELU on y when gelu (not with accumulate): the bias and
 * the GELU are the products' epilogue (one pass over y, in cache, in the
 * products' parallel region) rather than two more passes, each its own
 * region. The same bits as cs_linear, then cs_ops_bias_rows, then cs_gelu. */
static int linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                  size_t ldy, int accumulate, int gelu)
{
    if (W->ndim < 2 || (size_t)W->shape[1] != K || cs_tensor_numel(W) != W->shape[0] * (int64_t)K)
        return cs_error(CS_EMODEL, "%s: expected a [N, %zu] weight", W->name ? W->name : "linear", K);
    size_t N = (size_t)W->shape[0];
    if (!ldx) ldx = K;
    if (!ldy) ldy = N;
    if (b && cs_tensor_numel(b) != (int64_t)N)
        return cs_error(CS_EMODEL, "%s: expected %zu bias values", b->name ? b->name : "bias", N);
    int rc;
    if (cs_lowrank_on &&
        (rc = cs_lowrank_on->linear(cs_lowrank_on->ctx, x, M, K, ldx, W, b, y, ldy, accumulate)) != 1) {
        if (rc || !gelu) return rc;
        if (ldy == N) cs_gelu(y, y, M * N);   /* the term went in before the GELU */
        else
            for (size_t r = 0; r < M; r++) cs_gelu(y + r * ldy, y + r * ldy, N);
        return 0;
    }
    ON_DEV_RC(linear(x, M, K, ldx, W, b, y, ldy, accumulate), "a linear layer");
    const float *bb = NULL;
    if (b && !(bb = cs_weight_f32(b, 1))) return CS_ENOMEM;
    cs_gemm_bf16_fn kern = cpu_prec == CS_PREC_BF16 ? cs_gemm_bf16_native() : NULL;
    /* fp32 products on a BF16 weight: its bf16 panels (packed once) widened
     * in the kernel, exactly, instead of float32 panels converted per call,
     * which cost more than the arithmetic at small M. F16 weights stay on
     * the path below: the panels would round them to bf16. */
    if (!kern && bf16_panels && W->dtype == CS_BF16) kern = cs_k.gemm_f32_bf16w;
    if (kern && M && N) {
        /* the weight packed once (wpack.h); for the bf16 kernel the activations are rounded per call */
        cs_wpack wp;
        if ((rc = cs_wpack_get(W, N, K, &wp))) return rc;
        rc = gemm_run_bf16(kern, M, N, K, x, ldx, &wp, accumulate, y, ldy, bb, gelu, NULL);
    } else if ((W->dtype == CS_BF16 || W->dtype == CS_F16) && ((uintptr_t)W->data & 1) == 0) {
        /* 16-bit weights are converted while op(B) is packed, panel by
         * panel in cache (converting the whole matrix first cost ~10% of a
         * BF16 Stage C forward in memory traffic) */
        rc = gemm_run(1, M, N, K, 1.0f, x, ldx, NULL, K, accumulate ? 1.0f : 0.0f, y, ldy, W->data,
                      W->dtype == CS_BF16 ? cs_k.bf16_to_f32 : cs_k.f16_to_f32, bb, gelu);
    } else {
        const float *w = cs_weight_f32(W, 0);
        if (!w) return CS_ENOMEM;
        rc = M && N ? gemm_run(1, M, N, K, 1.0f, x, ldx, w, K, accumulate ? 1.0f : 0.0f, y, ldy, NULL, NULL, bb, gelu)
                    : 0;
    }
    return rc;
}

int cs_matmul_kn(const float *x, size_t M, size_t K, const cs_tensor *W, float *y, size_t ldy)
{
    size_t N = W->ndim == 2 ? (size_t)W->shape[1] : 0;
    if (W->ndim != 2 || (size_t)W->shape[0] != K)
        return cs_error(CS_EMODEL, "%s: expected a [%zu, N] weight", W->name ? W->name : "matmul", K);
    if (!M || !N) return 0;
    cs_gemm_bf16_fn kern = cpu_prec == CS_PREC_BF16 ? cs_gemm_bf16_native() : NULL;
    if (!kern && bf16_panels && W->dtype == CS_BF16) kern = cs_k.gemm_f32_bf16w;   /* as linear() */
    if (kern) {
        cs_wpack wp;
        int rc = cs_wpack_get_kn(W, K, N, &wp);
        return rc ? rc : gemm_run_bf16(kern, M, N, K, x, K, &wp, 0, y, ldy, NULL, 0, NULL);
    }
    const float *w = cs_weight_f32(W, 0);
    if (!w) return CS_ENOMEM;
    return gemm_run(0, M, N, K, 1.0f, x, K, w, N, 0.0f, y, ldy, NULL, NULL, NULL, 0);
}

int cs_linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
              size_t ldy, int accumulate)
{
    return linear(x, M, K, ldx, W, b, y, ldy, accumulate, 0);
}

int cs_linear_gelu(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                   size_t ldy)
{
    int rc = linear(x, M, K, ldx, W, b, y, ldy, 0, !cs_dev);
    if (!rc && cs_dev) {   /* the device's own ops, one after the other */
        size_t N = (size_t)W->shape[0];
        if (!ldy || ldy == N) cs_gelu(y, y, M * N);
        else
            for (size_t r = 0; r < M; r++) cs_gelu(y + r * ldy, y + r * ldy, N);
    }
    return rc;
}

/* ---- GRN ---- */

/* GRN's per-image norms nx [N, C] (Nx = ||x||_2 over HW / its mean over C),
 * free of the thread count: sums of squares over fixed blocks of 256 rows,
 * added in block order. The partial sums and nx live in the calling thread's
 * scratch (slot 7); NULL when out of memory. */
static float *grn_norms(const float *x, size_t N, size_t HW, size_t C)
{
    const size_t rows_per = 256;
    size_t nb = (HW + rows_per - 1) / rows_per;
    float *part = cs_ops_scratch(7, N * (nb + 1) * C);
    if (!part) return cs_oom("GRN partial sums", N * (nb + 1) * C * sizeof(float)), NULL;
    float *nx = part + N * nb * C;   /* [N, C] */
    int T = HW * C * N >= PAR_MIN ? cs_threads_get() : 1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
#pragma omp for schedule(static)
        for (size_t i = 0; i < N * nb; i++) {
            size_t n = i / nb, b = i % nb, r0 = b * rows_per, r1 = r0 + rows_per < HW ? r0 + rows_per : HW;
            memset(part + i * C, 0, C * sizeof(float));
            cs_k.sumsq_cols(x + (n * HW + r0) * C, r1 - r0, C, part + i * C);
        }
#pragma omp for schedule(static)
        for (size_t n = 0; n < N; n++) {
            double mean = 0;
            float *xn = nx + n * C;
            for (size_t c = 0; c < C; c++) {
                float s = 0;
                for (size_t b = 0; b < nb; b++) s += part[(n * nb + b) * C + c];
                xn[c] = sqrtf(s);
                mean += xn[c];
            }
            float m = (float)(mean / (double)C) + 1e-6f;
            for (size_t c = 0; c < C; c++) xn[c] = xn[c] / m;
        }
    }
    return nx;
}

int cs_grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta)
{
    ON_DEV_RC(grn(x, y, N, HW, C, gamma, beta), "GRN");
    const float *nx = grn_norms(x, N, HW, C);
    if (!nx) return CS_ENOMEM;
    size_t rb = row_block(C), nr = (HW + rb - 1) / rb;
#pragma omp parallel for schedule(static) if (HW * C * N >= PAR_MIN)
    for (size_t i = 0; i < N * nr; i++) {
        size_t n = i / nr, r = i % nr * rb, o = (n * HW + r) * C;
        cs_k.grn_apply(x + o, y + o, HW - r < rb ? HW - r : rb, C, nx + n * C, gamma, beta);
    }
    return 0;
}

int cs_grn_linear(const float *h, size_t N, size_t HW, size_t C, const float *gamma, const float *beta,
                  const cs_tensor *W, const cs_tensor *b, float *x)
{
    cs_gemm_bf16_fn kern = cpu_prec == CS_PREC_BF16 ? cs_gemm_bf16_native() : NULL;
    if (cs_dev || cs_lowrank_on || !kern || !cs_gemm_bf16_apacked_of(kern) || W->ndim != 2 ||
        (size_t)W->shape[1] != C || !N || !HW)
        return CS_EUNSUP;
    CS_PROF_CPU("GRN + a linear layer");
    size_t M = N * HW, Nout = (size_t)W->shape[0];
    if (b && cs_tensor_numel(b) != (int64_t)Nout)
        return cs_error(CS_EMODEL, "%s: expected %zu bias values", b->name ? b->name : "bias", Nout);
    const float *bb = NULL;
    if (b && !(bb = cs_weight_f32(b, 1))) return CS_ENOMEM;
    cs_wpack wp;
    int rc = cs_wpack_get(W, Nout, C, &wp);
    if (rc) return rc;
    const float *nx = grn_norms(h, N, HW, C);
    if (!nx) return CS_ENOMEM;
    grn_fold g = {HW, nx, gamma, beta};
    return gemm_run_bf16(kern, M, Nout, C, h, C, &wp, 1, x, Nout, bb, 0, &g);
}

/* the end of a fused op: CS_EUNSUP passes through untouched (nothing was
 * done; the caller runs the single ops), anything else is recorded */
static int fused_end(int rc, double t0, const char *what, const char *kind)
{
    if (rc == CS_EUNSUP) return rc;
    cs_dev_note(rc, what);
    cs_dev_prof_stop(t0, kind);
    return rc ? cs_dev_error() : 0;
}

int cs_mlp_block_fused(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                       const cs_mlp_block *w)
{
    if (!cs_dev || cs_lowrank_on) return CS_EUNSUP;   /* a low-rank term: the single ops add it */
    double t = cs_dev_prof_start();
    return fused_end(cs_dev->mlp_block(x, N, H, W, c, skip, cs, w), t, "a fused ResBlock",
                     w->dw_w ? "ResBlock (fused)" : "FeedForwardBlock (fused)");
}

int cs_ts_block_fused(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                      const cs_tensor *w, const cs_tensor *b)
{
    if (!cs_dev || cs_lowrank_on) return CS_EUNSUP;
    double t0 = cs_dev_prof_start();
    return fused_end(cs_dev->ts_block(x, N, HW, c, t, ldt, c_r, nconds, w, b), t0, "a fused TimestepBlock",
                     "TimestepBlock (fused)");
}

int cs_sa_block_fused(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w)
{
    if (!cs_dev || !cs_dev->sa_block || cs_lowrank_on) return CS_EUNSUP;
    double t = cs_dev_prof_start();
    return fused_end(cs_dev->sa_block(x, N, H, W, c, g, w), t, "a fused Stage A ResBlock", "Stage A ResBlock (fused)");
}

int cs_attn_block_fused(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond,
                        size_t Lc, size_t cc, const cs_attn_block *w)
{
    if (!cs_dev || cs_lowrank_on) return CS_EUNSUP;
    double t = cs_dev_prof_start();
    return fused_end(cs_dev->attn_block(x, N, HW, c, nhead, self_attn, cond, Lc, cc, w), t, "a fused AttnBlock",
                     "AttnBlock (fused)");
}

int cs_attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                     const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                     int nhead, float *o, size_t ldo)
{
    if (!cs_dev) {
        CS_PROF_CPU("attention");
        return cs_attention_cat_cpu(q, ldq, k1, v1, ld1, L1, k2, v2, ld2, L2, N, Lq, C, nhead, o, ldo);
    }
    double t = cs_dev_prof_start();
    return fused_end(cs_dev->attention_cat(q, ldq, k1, v1, ld1, L1, k2, v2, ld2, L2, N, Lq, C, nhead, o, ldo), t,
                     "attention", "attention (fused)");
}

void cs_axpy(float *y, const float *x, float g, size_t n)
{
    ON_DEV(axpy(y, x, g, n), "a scaled addition");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i] * g;
}
