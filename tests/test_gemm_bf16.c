/* The bf16 products (simd/gemm_bf16.h) on a CPU with AVX512-BF16 (and AMX):
 *  - one VDPBF16PS lane step against cs_bf16_dp_step on random and special
 *    operands (denormals, infinities, NaN, cancellation): the reference's
 *    reading of the Intel SDM (order high-then-low, DAZ/FTZ, one rounding
 *    per step) checked against the silicon;
 *  - each kernel the CPU runs (AVX512-BF16: VDPBF16PS and its two-FMA form;
 *    AMX where the OS grants it)
 *    against its own reference (cs_gemm_bf16_ref, cs_gemm_bf16_amx_ref), bit
 *    for bit, at odd M/N/K, ragged edges, misaligned pointers, cont 0/1,
 *    NaN/Inf/denormal inputs (NaN where the reference has NaN), padding left
 *    untouched; the two references both near the float64 product; the
 *    pre-packed-A form of each kernel that has one, from row 0 and from
 *    later tiles, bit for bit against the kernel;
 *  - M splits: every row the same bits whether computed alone or in a call;
 *  - cs_linear in bf16 precision (weights packed once by wpack.c): the
 *    reference on the same rounded operands, bit-identical at 1 and 2
 *    threads, from F32 and BF16 weights, accumulate, and a forgotten weight
 *    repacked after its data changed; with N over one column chunk (A
 *    packed once per round of rows) at odd sizes and over several rounds.
 * Exit 77 (skip) where the CPU, the build or CASCADE_SIMD gives no native
 * bf16 kernel (e.g. Zen 3, or CASCADE_SIMD=avx2). */
#include "backend.h"
#include "check.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "ops.h"
#include "ops_dev.h"
#include "safetensors.h"
#include "tensor.h"
#include "wpack.h"
#ifdef CS_HAVE_AVX512
#include "amx_emul.h"
#endif

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef CS_HAVE_AVX512BF16
#include <immintrin.h>
#endif

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* same bits, or both NaN */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || f2u(a) == f2u(b); }

#ifdef CS_HAVE_AVX512BF16
/* lane 0 of one VDPBF16PS: acc + a.hi*b.hi + a.lo*b.lo as the silicon does it */
__attribute__((target("avx512f,avx512bf16"))) static float hw_pair(float acc, uint32_t a, uint32_t b)
{
    __m512 r = _mm512_dpbf16_ps(_mm512_set1_ps(acc), (__m512bh)_mm512_set1_epi32((int)a),
                                (__m512bh)_mm512_set1_epi32((int)b));
    return _mm512_cvtss_f32(r);
}

static uint16_t rnd_bf16(void)
{
    static const uint16_t sp[] = {0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0x8080, 0x7f7f, 0xff7f, 0x7f80, 0xff80,
                                  0x7fc0, 0xffc1, 0x7f81, 0x3f80, 0xbf80, 0x3f81, 0x0040, 0x00ff, 0x1f80, 0x5f80};
    uint64_t r = check_rnd64();
    if ((r & 7) == 0) return sp[(r >> 8) % (sizeof sp / sizeof *sp)];
    if ((r & 7) == 1) return (uint16_t)(r >> 16);   /* any pattern */
    /* exponents near 1 so that sums cancel and round */
    return (uint16_t)(((r >> 16) & 0x807f) | (uint16_t)((0x3f00 + (((r >> 24) % 48) << 7)) & 0x7f80));
}

static void test_lane_step(void)
{
    const int n = 2000000;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        uint32_t a = (uint32_t)rnd_bf16() | (uint32_t)rnd_bf16() << 16, b = (uint32_t)rnd_bf16() | (uint32_t)rnd_bf16() << 16;
        uint64_t r = check_rnd64();
        float acc = (r & 3) == 0 ? u2f((uint32_t)(r >> 32)) : (r & 3) == 1 ? u2f((uint32_t)(r >> 32) & 0x807fffffu)
                                                                           : check_uni(-4, 4);
        float want = cs_bf16_dp_step(cs_bf16_dp_step(acc, a >> 16, b >> 16), (uint16_t)a, (uint16_t)b);
        float got = hw_pair(acc, a, b);
        if (!same(got, want) && ++bad <= 10)
            CHECK(0, "vdpbf16ps(acc 0x%08x, a 0x%08x, b 0x%08x) = 0x%08x, reference 0x%08x", f2u(acc), a, b, f2u(got),
                  f2u(want));
    }
    /* the order of the two steps, on its own: 1 + 2^24 (hi) ties to 2^24, then + 1 ties again;
     * low first would give 2^24 + 2 */
    float o = hw_pair(1.0f, 0x3f80u | 0x4b80u << 16, 0x3f80u | 0x3f80u << 16);
    CHECK(o == 0x1p24f, "vdpbf16ps step order: got %a, want 0x1p24 (high pair first)", o);
    /* FTZ's tininess, after rounding: FLT_MIN - 2^-150 exactly is a tie on
     * the denormal grid (to FLT_MIN) but tiny for x86 (0); then random sums
     * of products of 2^-150 .. 2^-123 and acc near FLT_MIN, across the edge */
    float t = hw_pair(FLT_MIN, 0x0080u, 0xb380u);   /* 2^-126 + 2^-126 * -2^-24 */
    CHECK(f2u(t) == 0 && f2u(cs_bf16_dp_step(FLT_MIN, 0x0080u, 0xb380u)) == 0,
          "FLT_MIN - 2^-150: vdpbf16ps 0x%08x, reference 0x%08x (want 0: tiny after rounding)", f2u(t),
          f2u(cs_bf16_dp_step(FLT_MIN, 0x0080u, 0xb380u)));
    int tiny_bad = 0;
    for (int i = 0; i < n / 4; i++) {
        uint64_t r = check_rnd64();
        uint32_t a = 0x0080u | (uint32_t)(r & 0x807f), b = (uint32_t)(((r >> 8) & 0x807f) | ((0x67 + (r >> 16) % 28) << 7));
        uint32_t s = (uint32_t)(r >> 32) & 0x80000000u;
        float acc = u2f(s | (0x00800000u + (uint32_t)((r >> 40) % 64)));
        float want = cs_bf16_dp_step(acc, (uint16_t)a, (uint16_t)b), got = hw_pair(acc, a, b);
        if (!same(got, want) && ++tiny_bad <= 10)
            CHECK(0, "near FLT_MIN: vdpbf16ps(acc 0x%08x, a 0x%08x, b 0x%08x) = 0x%08x, reference 0x%08x", f2u(acc), a,
                  b, f2u(got), f2u(want));
    }
    printf("lane step: %d random operand sets, %d mismatches; %d near FLT_MIN, %d mismatches\n", n, bad, n / 4,
           tiny_bad);
}
#endif

/* packs B [K x N] (float, row-major ldb) into bf16 pairs as wpack.c does from [N, K] rows */
static void pack_b(const float *B, size_t ldb, size_t K, size_t N, uint32_t *bp, size_t ps)
{
    for (size_t p = 0; p < (N + 15) / 16; p++)
        for (size_t q = 0; q < (K + 1) / 2; q++)
            for (size_t c = 0; c < 16; c++) {
                size_t j = 16 * p + c;
                uint32_t lo = j < N ? cs_f32_to_bf16(B[2 * q * ldb + j]) : 0;
                uint32_t hi = j < N && 2 * q + 1 < K ? cs_f32_to_bf16(B[(2 * q + 1) * ldb + j]) : 0;
                bp[p * ps + q * 16 + c] = lo | hi << 16;
            }
}

/* kern's pre-packed-A form (if any) on the same operands: C from rows [r0, M) of A packed
 * at their tile, the bits of kern on those rows (cont as given) */
static void check_apacked(const char *what, cs_gemm_bf16_fn kern, const cs_gemm_bf16_apacked *ap, size_t M, size_t N,
                          size_t K, const float *a, size_t lda, const uint32_t *bp, size_t ps, const float *c0,
                          size_t ldc, int cont)
{
    if (!ap) return;
    size_t tw = cs_gemm_bf16_apacked_words(ap, K), nt = (M + ap->mr - 1) / ap->mr;
    uint32_t *Ap = malloc((nt * tw + 1) * 4);
    float *ck = malloc((M * ldc + 2) * 4), *cp = malloc((M * ldc + 2) * 4);
    for (size_t r0 = 0; r0 < M; r0 += ap->mr) {   /* row 0, then each tile as a call's first row */
        ap->pack(a + r0 * lda, lda, M - r0, K, Ap + 1 + r0 / ap->mr * tw);
        memcpy(ck, c0, (M * ldc + 2) * 4);
        memcpy(cp, c0, (M * ldc + 2) * 4);
        kern(M - r0, N, K, a + r0 * lda, lda, bp, ps, ck + 1 + r0 * ldc, ldc, cont);
        ap->run(M - r0, N, K, Ap + 1 + r0 / ap->mr * tw, bp, ps, cp + 1 + r0 * ldc, ldc, cont);
        if (memcmp(ck, cp, (M * ldc + 2) * 4)) {
            CHECK(0, "%s: A packed beforehand (rows from %zu) differs from the kernel", what, r0);
            break;
        }
        size_t last = (M - 1) / ap->mr * ap->mr;
        if (r0 >= 3 * ap->mr && r0 + 2 * ap->mr <= last) r0 = last - ap->mr;   /* then the last tile */
    }
    free(Ap), free(ck), free(cp);
}

/* kern against ref (its model, bit for bit) at odd sizes up to M*N*K <= cap,
 * with ap (kern's pre-packed form, or NULL) against kern */
static void test_kernel(const char *kname, cs_gemm_bf16_fn kern, const cs_gemm_bf16_apacked *ap, cs_gemm_bf16_fn ref,
                        size_t cap)
{
    static const size_t Ms[] = {1, 2, 3, 11, 12, 13, 17, 25, 63, 97, 193};
    static const size_t Ns[] = {1, 3, 15, 16, 17, 31, 32, 33, 47, 65};
    static const size_t Ks[] = {0, 1, 2, 3, 17, 63, 64, 255, 256, 257, 1025};
    char what[96];
    int cases = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                size_t M = Ms[mi], N = Ns[ni], K = Ks[ki];
                if (M * N * K > cap) continue;   /* the reference is slow; big K at small M*N */
                int spec = (mi + ni + ki) % 3 == 0, tiny = (mi + ni + ki) % 3 == 1;
                size_t lda = K + 3, ldc = N + 5, ldb = N + 1, P = (N + 15) / 16, ps = cs_bf16_panel_size(K) + 3;
                float *a = malloc((M * lda + 2) * 4), *b = malloc((K * ldb + 1) * 4), *c0 = malloc((M * ldc + 2) * 4);
                float *ck = malloc((M * ldc + 2) * 4), *cr = malloc((M * ldc + 2) * 4);
                uint32_t *bp = calloc(P * ps + 2, 4);
                for (size_t i = 0; i < M * lda + 2; i++) a[i] = check_uni(-1, 1);
                for (size_t i = 0; i < K * ldb + 1; i++) b[i] = check_uni(-1, 1);
                for (size_t i = 0; i < M * ldc + 2; i++) c0[i] = check_uni(-2, 2);
                if (tiny) {   /* sums that cross FLT_MIN: A ~2^-126, B 2^-24 .. 2^-1, C ~FLT_MIN */
                    for (size_t i = 0; i < M * lda + 2; i++) a[i] = check_uni(1, 2) * 0x1p-126f;
                    for (size_t i = 0; i < K * ldb + 1; i++)
                        b[i] = ldexpf(check_uni(-2, 2), -(int)(check_rnd64() % 24) - 1);
                    for (size_t i = 0; i < M * ldc + 2; i++) c0[i] = check_uni(-3, 3) * 0x1p-126f;
                    /* C[0][0] (cont): FLT_MIN + 2^-126 * -2^-24 at k = 0 and + 0 after: tiny, 0 */
                    for (size_t k = 0; k < K; k++) a[1 + k] = k ? 0.0f : 0x1p-126f;
                    b[0] = -0x1p-24f;
                    c0[1] = FLT_MIN;
                }
                if (spec && K) {   /* NaN, Inf, a denormal in A and B */
                    a[1 + (M / 2) * lda + K / 2] = NAN;
                    a[1 + (M - 1) * lda] = INFINITY;
                    a[1 + 0 * lda + (K - 1)] = 1e-40f;
                    c0[1 + (M - 1) * ldc] = -2e-39f;   /* a denormal C (cont) */
                    b[(K - 1) * ldb + (N - 1)] = -INFINITY;
                    b[0] = NAN;
                }
                pack_b(b, ldb, K, N, bp + 1, ps);
                for (int cont = 0; cont < 2; cont++) {
                    memcpy(ck, c0, (M * ldc + 2) * 4);
                    memcpy(cr, c0, (M * ldc + 2) * 4);
                    kern(M, N, K, a + 1, lda, bp + 1, ps, ck + 1, ldc, cont);
                    ref(M, N, K, a + 1, lda, bp + 1, ps, cr + 1, ldc, cont);
                    snprintf(what, sizeof what, "%s %zux%zux%zu cont=%d%s", kname, M, N, K, cont,
                             spec ? " specials" : tiny ? " near FLT_MIN" : "");
                    for (size_t i = 0; i < M * ldc + 2; i++)   /* padding untouched too */
                        if (!same(ck[i], cr[i])) {
                            CHECK(0, "%s: at %zu got %a (0x%08x) want %a (0x%08x)", what, i, ck[i], f2u(ck[i]), cr[i],
                                  f2u(cr[i]));
                            break;
                        }
                    check_apacked(what, kern, ap, M, N, K, a + 1, lda, bp + 1, ps, c0, ldc, cont);
                    /* M split: each row alone, the same bits */
                    if (M > 1 && !cont) {
                        float *row = malloc((N + 1) * 4);
                        for (size_t r = 0; r < M; r += 5) {
                            kern(1, N, K, a + 1 + r * lda, lda, bp + 1, ps, row, N, 0);
                            if (memcmp(row, ck + 1 + r * ldc, N * 4))
                                CHECK(0, "%s: row %zu alone differs from the same row in the call", what, r);
                        }
                        free(row);
                    }
                    /* the reference: a correct product of the rounded operands */
                    if (!spec)
                        for (size_t i = 0; i < M; i++)
                            for (size_t j = 0; j < N; j++) {
                                double d = cont ? c0[1 + i * ldc + j] : 0, mag = fabs(d);
                                for (size_t k = 0; k < K; k++) {
                                    double t = (double)cs_bf16_to_f32(cs_f32_to_bf16(a[1 + i * lda + k])) *
                                               cs_bf16_to_f32(cs_f32_to_bf16(b[k * ldb + j]));
                                    d += t, mag += fabs(t);
                                }
                                double got = cr[1 + i * ldc + j];
                                if (fabs(got - d) > (double)(K + 1) * 0x1p-24 * mag + 1e-30) {
                                    CHECK(0, "%s: reference vs float64 at %zu,%zu: %.9g vs %.9g", what, i, j, got, d);
                                    i = M;
                                    break;
                                }
                            }
                    cases++;
                }
                free(a), free(b), free(c0), free(ck), free(cr), free(bp);
            }
    printf("%s kernel vs its reference: %d cases\n", kname, cases);
}

/* cs_linear in bf16: the reference on the same rounded operands, bits equal at 1 and 2 threads */
/* cs_matmul_kn (a weight [K, N] as it lies: the transposed convolution's
 * product) on a square weight whose [N, K] form cs_linear packed first: the
 * two orientations of one pointer are two cache entries. bf16: the reference
 * on B = W; fp32 (its bf16 panels widened): cs_sgemm on W as float32. */
static void test_matmul_kn(cs_gemm_bf16_fn ref)
{
    const size_t M = 131, K = 80, N = 80;
    float *x = malloc(M * K * 4), *wf = malloc(K * N * 4), *y = malloc(M * N * 4), *yr = malloc(M * N * 4);
    uint16_t *wb = malloc(K * N * 2);
    size_t ps = cs_bf16_panel_size(K);
    uint32_t *bp = calloc((N + 15) / 16 * ps, 4);
    for (size_t i = 0; i < M * K; i++) x[i] = check_uni(-2, 2);
    for (size_t i = 0; i < K * N; i++) wb[i] = cs_f32_to_bf16(check_uni(-0.3f, 0.3f)), wf[i] = cs_bf16_to_f32(wb[i]);
    cs_tensor W = {.dtype = CS_BF16, .ndim = 2, .shape = {(int64_t)K, (int64_t)N}, .data = wb, .name = "w.kn"};
    cs_threads_set(2);
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y, 0, 0) == 0, "cs_linear: %s", cs_last_error());
    CHECK(cs_matmul_kn(x, M, K, &W, y, N) == 0, "cs_matmul_kn: %s", cs_last_error());
    pack_b(wf, N, K, N, bp, ps);
    ref(M, N, K, x, K, bp, ps, yr, N, 0);
    CHECK(!memcmp(y, yr, M * N * 4), "cs_matmul_kn bf16: differs from the reference on B = W");
    cs_cpu_precision_set(CS_PREC_FP32);
    CHECK(cs_matmul_kn(x, M, K, &W, y, N) == 0, "cs_matmul_kn fp32: %s", cs_last_error());
    CHECK(cs_sgemm(0, M, N, K, 1.0f, x, K, wf, N, 0.0f, yr, N) == 0, "cs_sgemm: %s", cs_last_error());
    CHECK(!memcmp(y, yr, M * N * 4), "cs_matmul_kn fp32: differs from cs_sgemm on the weight as float32");
    cs_cpu_precision_set(CS_PREC_BF16);
    printf("cs_matmul_kn %zux%zux%zu, a [K, N] weight beside its [N, K] packing: as the reference\n", M, K, N);
    cs_wpack_forget(wb, K * N * 2);
    free(x), free(wf), free(y), free(yr), free(wb), free(bp);
}

/* cs_grn_linear (GRN folded into the product's packing) against cs_grn then
 * cs_linear (accumulate), bit for bit: images whose rows end inside a packed
 * tile, one column chunk and several, 1 and 2 threads; at fp32 CS_EUNSUP */
static void test_grn_linear(void)
{
    const size_t N = 3, HW = 37, C = 80, M = N * HW;
    const size_t Nouts[] = {50, 400};
    float *h = malloc(M * C * 4), *g = malloc(C * 4), *be = malloc(C * 4), *gr = malloc(M * C * 4);
    float *w = malloc(400 * C * 4), *bias = malloc(400 * 4), *x0 = malloc(M * 400 * 4), *x1 = malloc(M * 400 * 4),
          *x2 = malloc(M * 400 * 4);
    for (size_t i = 0; i < M * C; i++) h[i] = check_uni(-2, 2);
    for (size_t i = 0; i < C; i++) g[i] = check_uni(-1, 1), be[i] = check_uni(-0.5f, 0.5f);
    for (size_t i = 0; i < 400 * C; i++) w[i] = check_uni(-0.2f, 0.2f);
    for (size_t i = 0; i < 400; i++) bias[i] = check_uni(-1, 1);
    for (size_t i = 0; i < M * 400; i++) x0[i] = check_uni(-1, 1);
    for (size_t o = 0; o < 2; o++) {
        size_t No = Nouts[o];
        cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)No, (int64_t)C}, .data = w, .name = "fc2.w"};
        cs_tensor B = {.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)No}, .data = bias, .name = "fc2.b"};
        cs_threads_set(2);
        memcpy(x1, x0, M * No * 4);
        CHECK(cs_grn(h, gr, N, HW, C, g, be) == 0 && cs_linear(gr, M, C, 0, &W, &B, x1, 0, 1) == 0, "unfused: %s",
              cs_last_error());
        for (int t = 1; t <= 2; t++) {
            cs_threads_set(t);
            memcpy(x2, x0, M * No * 4);
            CHECK(cs_grn_linear(h, N, HW, C, g, be, &W, &B, x2) == 0, "cs_grn_linear: %s", cs_last_error());
            CHECK(!memcmp(x1, x2, M * No * 4), "cs_grn_linear %zux%zu->%zu, %d thread(s): differs from cs_grn + cs_linear",
                  M, C, No, t);
        }
    }
    cs_cpu_precision_set(CS_PREC_FP32);
    cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {50, (int64_t)C}, .data = w, .name = "fc2.w"};
    CHECK(cs_grn_linear(h, N, HW, C, g, be, &W, NULL, x2) == CS_EUNSUP, "cs_grn_linear ran with fp32 products");
    cs_cpu_precision_set(CS_PREC_BF16);
    printf("cs_grn_linear %zu images of %zu rows, %zu channels: the bits of cs_grn + cs_linear\n", N, HW, C);
    cs_wpack_forget(w, 400 * C * 4);
    free(h), free(g), free(be), free(gr), free(w), free(bias), free(x0), free(x1), free(x2);
}

static void test_linear(cs_gemm_bf16_fn ref)
{
    const size_t M = 301, N = 200, K = 97;
    float *x = malloc(M * K * 4), *wf = malloc(N * K * 4), *y1 = malloc(M * N * 4), *y2 = malloc(M * N * 4);
    float *yr = malloc(M * N * 4), *yf = malloc(M * N * 4);
    uint16_t *wb = malloc((N * K + 1) * 2);
    size_t ps = cs_bf16_panel_size(K);
    uint32_t *bp = calloc((N + 15) / 16 * ps, 4);
    for (size_t i = 0; i < M * K; i++) x[i] = check_uni(-2, 2);
    for (size_t i = 0; i < N * K; i++) wf[i] = check_uni(-0.3f, 0.3f);
    for (size_t i = 0; i < N * K; i++) wb[1 + i - 1] = cs_f32_to_bf16(wf[i]);
    /* B = W^T as [K, N] for pack_b */
    float *wt = malloc(K * N * 4);
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < K; k++) wt[k * N + n] = wf[n * K + k];
    pack_b(wt, N, K, N, bp, ps);
    ref(M, N, K, x, K, bp, ps, yr, N, 0);
    for (int dt = 0; dt < 2; dt++) {
        cs_tensor W = {.dtype = dt ? CS_BF16 : CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K},
                       .data = dt ? (const void *)wb : (const void *)wf, .name = dt ? "w.bf16" : "w.f32"};
        const char *dn = dt ? "BF16" : "F32";
        cs_threads_set(1);
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y1, 0, 0) == 0, "cs_linear %s: %s", dn, cs_last_error());
        cs_threads_set(2);
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 0) == 0, "cs_linear %s: %s", dn, cs_last_error());
        CHECK(!memcmp(y1, y2, M * N * 4), "cs_linear bf16 %s: 1 and 2 threads differ", dn);
        CHECK(!memcmp(y1, yr, M * N * 4), "cs_linear bf16 %s: differs from the reference", dn);
        /* rows split over two calls: the same bits */
        CHECK(cs_linear(x, 77, K, 0, &W, NULL, y2, 0, 0) == 0 &&
                  cs_linear(x + 77 * K, M - 77, K, 0, &W, NULL, y2 + 77 * N, 0, 0) == 0, "split: %s", cs_last_error());
        CHECK(!memcmp(y1, y2, M * N * 4), "cs_linear bf16 %s: a split M gives other bits", dn);
        /* accumulate: y + product */
        for (size_t i = 0; i < M * N; i++) y2[i] = 1.0f;
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 1) == 0, "accumulate: %s", cs_last_error());
        for (size_t i = 0; i < M * N; i++)
            if (y2[i] != 1.0f + yr[i]) {
                CHECK(0, "cs_linear bf16 %s accumulate at %zu: %a, want %a", dn, i, y2[i], 1.0f + yr[i]);
                break;
            }
    }
    /* near the fp32 result: bf16 rounding of both operands, ~2^-8 relative each */
    cs_cpu_precision_set(CS_PREC_FP32);
    cs_tensor Wf = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = wf, .name = "w"};
    CHECK(cs_linear(x, M, K, 0, &Wf, NULL, yf, 0, 0) == 0, "fp32: %s", cs_last_error());
    double e2 = 0, r2 = 0;
    for (size_t i = 0; i < M * N; i++) e2 += (double)(y1[i] - yf[i]) * (y1[i] - yf[i]), r2 += (double)yf[i] * yf[i];
    printf("cs_linear bf16 vs fp32: rel_l2 %.3g\n", sqrt(e2 / r2));
    CHECK(sqrt(e2 / r2) < 1e-2, "cs_linear bf16 vs fp32: rel_l2 %.3g", sqrt(e2 / r2));
    cs_cpu_precision_set(CS_PREC_BF16);
    /* the cache: a changed weight is stale until forgotten, then repacked */
    cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = wf, .name = "w"};
    size_t cnt = 0, bytes = cs_wpack_bytes(&cnt);
    CHECK(cnt >= 2 && bytes >= 2 * (N + 15) / 16 * ps * 4, "cache: %zu entries, %zu bytes", cnt, bytes);
    for (size_t i = 0; i < N * K; i++) wf[i] = -wf[i];
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 0) == 0, "%s", cs_last_error());
    CHECK(!memcmp(y1, y2, M * N * 4), "cache: a weight was repacked without being forgotten");
    cs_param_forget(wf, N * K * 4);
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 0) == 0, "%s", cs_last_error());
    for (size_t i = 0; i < M * N; i++)
        if (y2[i] != -y1[i]) {
            CHECK(0, "cache: forgotten weight not repacked (at %zu: %a, want %a)", i, y2[i], -y1[i]);
            break;
        }
    cs_wpack_bytes(&cnt);
    CHECK(cnt == 2, "cache after forget + repack: %zu entries, want 2", cnt);
    /* views: rows [32, 32+70) of a packed weight use its panels (no new entry), and a view
     * packed before its whole weight is replaced by it; results equal a separate copy's */
    cs_wpack_clear();
    float *wc = malloc(70 * K * 4), *yv = malloc(M * 70 * 4), *yc = malloc(M * 70 * 4);
    memcpy(wc, wf + 32 * K, 70 * K * 4);
    cs_tensor Wc = {.dtype = CS_F32, .ndim = 2, .shape = {70, (int64_t)K}, .data = wc, .name = "copy"};
    cs_tensor Wv = {.dtype = CS_F32, .ndim = 2, .shape = {70, (int64_t)K}, .data = wf + 32 * K, .name = "view"};
    CHECK(cs_linear(x, M, K, 0, &Wc, NULL, yc, 0, 0) == 0, "%s", cs_last_error());
    for (int order = 0; order < 2; order++) {
        cs_param_forget(wf, N * K * 4);
        if (order) CHECK(cs_linear(x, M, K, 0, &Wv, NULL, yv, 0, 0) == 0, "%s", cs_last_error());
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 0) == 0, "%s", cs_last_error());
        if (!order) CHECK(cs_linear(x, M, K, 0, &Wv, NULL, yv, 0, 0) == 0, "%s", cs_last_error());
        cs_wpack_bytes(&cnt);
        CHECK(cnt == 2, "view %s its weight: %zu entries, want 2 (the copy and the whole)", order ? "before" : "after", cnt);
        CHECK(!memcmp(yv, yc, M * 70 * 4), "view %s its weight: results differ from a copy's", order ? "before" : "after");
    }
    free(wc), free(yv), free(yc);
    cs_wpack_clear();
    free(x), free(wf), free(y1), free(y2), free(yr), free(yf), free(wb), free(bp), free(wt);
}

/* cs_linear where A meets several column chunks (N > 384: A packed once per
 * round of rows where the kernel has that form): the reference at odd sizes,
 * 1 and 2 threads, bias + GELU and accumulate; then rows enough for several
 * rounds (8 MB of packed A each) against the kernel called on the whole product */
static void test_linear_wide(cs_gemm_bf16_fn kern, cs_gemm_bf16_fn ref)
{
    static const size_t shape[][3] = {{301, 803, 97}, {37, 769, 256}, {5000, 400, 1023}};
    for (int si = 0; si < 3; si++) {
        size_t M = shape[si][0], N = shape[si][1], K = shape[si][2], ps = cs_bf16_panel_size(K);
        float *x = malloc(M * K * 4), *wf = malloc(N * K * 4), *wt = malloc(K * N * 4), *bias = malloc(N * 4);
        float *y1 = malloc(M * N * 4), *y2 = malloc(M * N * 4), *yr = malloc(M * N * 4);
        uint32_t *bp = calloc((N + 15) / 16 * ps, 4);
        for (size_t i = 0; i < M * K; i++) x[i] = check_uni(-2, 2);
        for (size_t i = 0; i < N * K; i++) wf[i] = check_uni(-0.3f, 0.3f);
        for (size_t i = 0; i < N; i++) bias[i] = check_uni(-1, 1);
        for (size_t n = 0; n < N; n++)
            for (size_t k = 0; k < K; k++) wt[k * N + n] = wf[n * K + k];
        pack_b(wt, N, K, N, bp, ps);
        (si < 2 ? ref : kern)(M, N, K, x, K, bp, ps, yr, N, 0);
        /* BF16 weights on the middle shape (even K, ragged N): the same panels as from F32 */
        uint16_t *wb = malloc(N * K * 2 + 2);
        for (size_t i = 0; i < N * K; i++) wb[i] = cs_f32_to_bf16(wf[i]);
        cs_tensor W = {.dtype = si == 1 ? CS_BF16 : CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K},
                       .data = si == 1 ? (const void *)wb : (const void *)wf, .name = "w.wide"};
        cs_threads_set(1);
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y1, 0, 0) == 0, "wide: %s", cs_last_error());
        cs_threads_set(2);
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 0) == 0, "wide: %s", cs_last_error());
        CHECK(!memcmp(y1, yr, M * N * 4), "cs_linear bf16 %zux%zux%zu: differs from the %s", M, N, K,
              si < 2 ? "reference" : "kernel on the whole product");
        CHECK(!memcmp(y1, y2, M * N * 4), "cs_linear bf16 %zux%zux%zu: 1 and 2 threads differ", M, N, K);
        /* bias + GELU in the epilogue, and accumulate, from the same products */
        cs_tensor B = {.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)N}, .data = bias, .name = "b.wide"};
        CHECK(cs_linear_gelu(x, M, K, 0, &W, &B, y2, 0) == 0, "wide gelu: %s", cs_last_error());
        for (size_t i = 0; i < M * N; i++) y1[i] = yr[i] + bias[i % N];
        cs_k.gelu(y1, y1, M * N);
        CHECK(!memcmp(y1, y2, M * N * 4), "cs_linear_gelu bf16 %zux%zux%zu: not GELU(product + bias)", M, N, K);
        for (size_t i = 0; i < M * N; i++) y2[i] = 0.5f;
        CHECK(cs_linear(x, M, K, 0, &W, NULL, y2, 0, 1) == 0, "wide accumulate: %s", cs_last_error());
        for (size_t i = 0; i < M * N; i++)
            if (y2[i] != 0.5f + yr[i]) {
                CHECK(0, "cs_linear bf16 %zux%zux%zu accumulate at %zu: %a, want %a", M, N, K, i, y2[i], 0.5f + yr[i]);
                break;
            }
        printf("cs_linear bf16 %zux%zux%zu, %s weight (column chunks%s): as the %s\n", M, N, K,
               si == 1 ? "BF16" : "F32", cs_gemm_bf16_apacked_of(kern) ? ", A packed once" : "",
               si < 2 ? "reference" : "kernel");
        free(wb), free(x), free(wf), free(wt), free(bias), free(y1), free(y2), free(yr), free(bp);
    }
    cs_wpack_clear();
}

/* kB of this process's resident pages in the mapping that holds p (/proc/self/smaps), -1 if unknown */
static long mapped_rss_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ') && line[0] != 'R')
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* a weight in a safetensors mapping: its pages leave RSS once packed, and
 * still read back intact (the fp32 product on it equals one on a copy) */
static void test_mapped(void)
{
    const size_t N = 256, K = 1024, M = 40;
    char path[512];
    snprintf(path, sizeof path, "%s/test_gemm_bf16.%d.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    float *w = malloc(N * K * 4), *x = malloc(M * K * 4), *y1 = malloc(M * N * 4), *y2 = malloc(M * N * 4);
    for (size_t i = 0; i < N * K; i++) w[i] = check_uni(-0.1f, 0.1f);
    for (size_t i = 0; i < M * K; i++) x[i] = check_uni(-1, 1);
    cs_tensor t = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w"};
    cs_st_file *f = NULL;
    if (cs_st_write(path, &t, 1, NULL, 0) || cs_st_open(path, &f)) {
        CHECK(0, "mapped weight: %s", cs_last_error());
        unlink(path);
        return;
    }
    unlink(path);   /* the mapping keeps the data */
    const cs_tensor *W = cs_st_find(f, "w");
    volatile float sum = 0;
    for (size_t i = 0; i < N * K; i += 1024) sum += ((const float *)W->data)[i];   /* fault every page in */
    long before = mapped_rss_kb(W->data);
    CHECK(cs_linear(x, M, K, 0, W, NULL, y1, 0, 0) == 0, "%s", cs_last_error());
    long after = mapped_rss_kb(W->data);
    printf("mapped weight of %zu kB: RSS %ld kB before packing, %ld kB after\n", N * K * 4 / 1024, before, after);
    if (before >= 0) CHECK(before >= (long)(N * K * 4 / 1024) && after >= 0 && after <= 16,
                           "mapped weight: RSS %ld kB before packing, %ld kB after (want its pages dropped)", before, after);
    cs_cpu_precision_set(CS_PREC_FP32);
    CHECK(cs_linear(x, M, K, 0, W, NULL, y1, 0, 0) == 0, "%s", cs_last_error());
    CHECK(cs_linear(x, M, K, 0, &t, NULL, y2, 0, 0) == 0, "%s", cs_last_error());
    CHECK(!memcmp(y1, y2, M * N * 4), "mapped weight: data read back after the drop differs");
    cs_cpu_precision_set(CS_PREC_BF16);
    cs_st_close(f);
    size_t cnt = 0;
    cs_wpack_bytes(&cnt);
    CHECK(cnt == 0, "closing the file left %zu packed entries", cnt);
    free(w), free(x), free(y1), free(y2);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "test_gemm_bf16: %s\n", cs_last_error());
        return 99;
    }
    cs_gemm_bf16_fn kern = cs_gemm_bf16_native();
    if (!kern) {
        printf("SKIP: no native bf16 kernel at SIMD level %s (needs AVX512-BF16; CPU features: %s)\n",
               cs_simd_name(cs_simd_current()), cs_cpu_features());
        CHECK(cs_cpu_precision_set(CS_PREC_BF16) != 0, "bf16 precision accepted without a native kernel");
        return failures ? 1 : 77;
    }
    printf("native bf16 kernel: %s\n", cs_gemm_bf16_name());
#ifdef CS_HAVE_AVX512BF16
    test_lane_step();
    test_kernel("avx512-bf16", cs_gemm_bf16_avx512, &cs_gemm_bf16_avx512_apacked, cs_gemm_bf16_ref, 2000000);
    test_kernel("avx512-bf16 as FMAs", cs_gemm_bf16_avx512_fma, &cs_gemm_bf16_avx512_fma_apacked, cs_gemm_bf16_ref,
                2000000);
#endif
#ifdef CS_HAVE_AVX512
    /* the AMX kernel's walk over its tiles, on a model of the tile instructions (any AVX-512 CPU) */
    test_kernel("amx (modelled tiles)", cs_gemm_bf16_amx_emul, &cs_gemm_bf16_amx_emul_apacked, cs_gemm_bf16_amx_ref,
                300000);   /* the model is slow */
#endif
#ifdef CS_HAVE_AMX
    if (cs_amx_usable()) test_kernel("amx", cs_gemm_bf16_amx, &cs_gemm_bf16_amx_apacked, cs_gemm_bf16_amx_ref,
                                     2000000);
    else printf("SKIP (part): no AMX kernel: CPU features %s, or the OS refused the tile state\n", cs_cpu_features());
#else
    printf("SKIP (part): AMX kernel not built\n");
#endif
    CHECK(cs_cpu_precision_set(CS_PREC_BF16) == 0, "bf16 precision: %s", cs_last_error());
    test_linear(cs_gemm_bf16_native_ref());
    test_matmul_kn(cs_gemm_bf16_native_ref());
    test_grn_linear();
    test_linear_wide(kern, cs_gemm_bf16_native_ref());
    test_mapped();
    cs_cpu_precision_set(CS_PREC_FP32);
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("ok\n");
    return check_exit();
}
