/* Every kernel of the table at every SIMD level this CPU runs, against the
 * scalar reference (simd/ref.c) or, for reductions, a float64 evaluation:
 * odd sizes, pointers misaligned by one element, in-place calls, NaN/Inf
 * inputs, and dense sweeps of the vector exp and erf (simd/vmath.h); and
 * that the order-sensitive kernels give the same bits wherever the data
 * lies and however rows are split between calls (issue 10).
 *
 * CASCADE_SIMD=level tests that level only (tests/levels.sh sets it), unset
 * tests all. CASCADE_TEST_EXHAUSTIVE=1 checks f32->bf16/f16 on all 2^32
 * inputs (default: a strided sweep). Needs only simd/ and src/{error,tensor}.c
 * so that tests/neon-qemu.sh can cross-build it without BLAS. */
#include "check.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "tensor.h"
#include "vmath.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U 0x1p-24   /* unit roundoff of float */

static const char *lvl = "?";
static char lvl_tag[40];   /* check_tag: "[level] " */

/* report at most a few mismatches per check */
static int report(const char *what, size_t i, double got, double want, double tol)
{
    failures++;
    if (failures <= 40)
        fprintf(stderr, "FAIL [%s] %s: at %zu got %.9g want %.9g (tol %.3g)\n", lvl, what, i, got, want, tol);
    return 1;
}

/* ---- random numbers and buffers ---- */


static float bits2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f2bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* inputs that must pass through element-wise kernels unchanged in kind */
static const float specials[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MIN, -FLT_MIN, 1e-40f, -1e-40f,
                                 FLT_MAX, -FLT_MAX, 88.7f, -88.7f, 89.0f, -89.0f, 104.0f, -104.0f, 1e-8f, 3.9f};
#define NSPEC (sizeof specials / sizeof specials[0])

/* n floats in [a, b], one in 16 replaced by a special value if spec */
static void fill(float *x, size_t n, float a, float b, int spec)
{
    for (size_t i = 0; i < n; i++) x[i] = check_uni(a, b);
    if (spec)
        for (size_t i = 0; i < n; i++)
            if ((check_rnd64() & 15) == 0) x[i] = specials[check_rnd64() % NSPEC];
}

/* buffers with one extra leading element so that p + 1 is misaligned */
static float *falloc(size_t n) { return cs_alloc((n + 17) * sizeof(float)); }

static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 1025, 4099};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ---- comparisons ---- */

static double ulp_of(double v)   /* spacing of floats at |v| */
{
    v = fabs(v);
    if (v < 0x1p-126) return 0x1p-149;
    int e;
    frexp(v, &e);   /* v = m 2^e, m in [0.5, 1) */
    return ldexp(1.0, e - 24);
}

/* NaN where the reference has NaN, the same infinity where either has one;
 * otherwise |got - want| <= tol[i] (tol NULL: bit-exact). */
static int compare(const char *what, const float *got, const float *want, size_t n, const double *tol)
{
    int bad = 0;
    for (size_t i = 0; i < n && bad < 3; i++) {
        float g = got[i], w = want[i];
        if (isnan(w) || isnan(g)) {
            if (!(isnan(w) && isnan(g))) bad += report(what, i, g, w, 0);
        } else if (!tol || isinf(w) || isinf(g)) {
            if (f2bits(g) != f2bits(w)) bad += report(what, i, g, w, 0);
        } else if (!(fabs((double)g - (double)w) <= tol[i])) {
            bad += report(what, i, g, w, tol[i]);
        }
    }
    return bad;
}

static int compare_u16(const char *what, const uint16_t *got, const uint16_t *want, size_t n, const float *in)
{
    int bad = 0;
    for (size_t i = 0; i < n && bad < 3; i++)
        if (got[i] != want[i]) {
            failures++, bad++;
            fprintf(stderr, "FAIL [%s] %s: at %zu input 0x%08x got 0x%04x want 0x%04x\n", lvl, what, i,
                    in ? f2bits(in[i]) : 0, got[i], want[i]);
        }
    return bad;
}

/* ---- conversions: bit-exact ---- */

static void test_conversions(const cs_kernels *k, const cs_kernels *r)
{
    /* 16 -> 32: all 65536 patterns, at offsets 0 and 1 */
    uint16_t *h = malloc((65536 + 8) * 2);
    float *a = falloc(65536), *b = falloc(65536);
    for (int off = 0; off < 2; off++) {
        for (uint32_t i = 0; i < 65536; i++) h[off + i] = (uint16_t)i;
        r->bf16_to_f32(h + off, b, 65536);
        k->bf16_to_f32(h + off, a + off, 65536);
        if (memcmp(a + off, b, 65536 * 4)) CHECK(0, "bf16_to_f32: all patterns, offset %d", off);
        r->f16_to_f32(h + off, b, 65536);
        k->f16_to_f32(h + off, a + off, 65536);
        for (uint32_t i = 0; i < 65536; i++)
            if (f2bits(a[off + i]) != f2bits(b[i])) {
                CHECK(0, "f16_to_f32(0x%04x) = 0x%08x, want 0x%08x (offset %d)", i, f2bits(a[off + i]), f2bits(b[i]), off);
                break;
            }
    }
    /* odd sizes: nothing past n is written */
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = sizes[s];
        for (size_t i = 0; i < n; i++) h[1 + i] = (uint16_t)check_rnd64();
        a[1 + n] = 1234.5f;
        k->bf16_to_f32(h + 1, a + 1, n);
        r->bf16_to_f32(h + 1, b, n);
        CHECK(!memcmp(a + 1, b, n * 4) && a[1 + n] == 1234.5f, "bf16_to_f32 n=%zu", n);
        k->f16_to_f32(h + 1, a + 1, n);
        r->f16_to_f32(h + 1, b, n);
        CHECK(!memcmp(a + 1, b, n * 4) && a[1 + n] == 1234.5f, "f16_to_f32 n=%zu", n);
    }
    free(h);

    /* 32 -> 16: strided sweep over all patterns (or all of them), plus halfway
     * and boundary cases of both formats */
    const size_t B = 1 << 16;
    float *x = falloc(B);
    uint16_t *y = malloc((B + 8) * 2), *z = malloc((B + 8) * 2);
    const char *ex = getenv("CASCADE_TEST_EXHAUSTIVE");
    uint64_t step = ex && *ex == '1' ? 1 : 4099;
    size_t m = 0;
    for (uint64_t u = 0;; u += step) {
        int last = u > 0xffffffffull;
        if (!last) x[1 + m++] = bits2f((uint32_t)u);
        if (m == B || (last && m)) {
            k->f32_to_bf16(x + 1, y + 1, m);
            r->f32_to_bf16(x + 1, z, m);
            compare_u16("f32_to_bf16 sweep", y + 1, z, m, x + 1);
            k->f32_to_f16(x + 1, y + 1, m);
            r->f32_to_f16(x + 1, z, m);
            compare_u16("f32_to_f16 sweep", y + 1, z, m, x + 1);
            m = 0;
        }
        if (last) break;
    }
    static const uint32_t edge[] = {
        0x00000001, 0x007fffff, 0x00800000, 0x80400000, 0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0x7f800000, 0xff800000,
        0x7f800001, 0x7fa00000, 0x7fc00000, 0x7fffffff, 0xffc00001, 0xff800001, 0x3f808000, 0x3f818000, 0x3f80ffff,
        0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001, 0x33000000, 0x33000001, 0x33800000, 0x38800000, 0x387fe000,
        0x387ff000, 0x387fffff, 0x3f801000, 0x3f803000, 0x3f802fff, 0x80000000, 0x00000000, 0xc7800000};
    size_t ne = sizeof edge / sizeof edge[0];
    for (size_t i = 0; i < ne; i++) x[1 + i] = bits2f(edge[i]);
    k->f32_to_bf16(x + 1, y + 1, ne);
    r->f32_to_bf16(x + 1, z, ne);
    compare_u16("f32_to_bf16 edges", y + 1, z, ne, x + 1);
    k->f32_to_f16(x + 1, y + 1, ne);
    r->f32_to_f16(x + 1, z, ne);
    compare_u16("f32_to_f16 edges", y + 1, z, ne, x + 1);
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = sizes[s];
        fill(x + 1, n, -70000.0f, 70000.0f, 1);
        y[1 + n] = 0xabcd;
        k->f32_to_bf16(x + 1, y + 1, n);
        r->f32_to_bf16(x + 1, z, n);
        compare_u16("f32_to_bf16 sizes", y + 1, z, n, x + 1);
        CHECK(y[1 + n] == 0xabcd, "f32_to_bf16 n=%zu wrote past the end", n);
        k->f32_to_f16(x + 1, y + 1, n);
        r->f32_to_f16(x + 1, z, n);
        compare_u16("f32_to_f16 sizes", y + 1, z, n, x + 1);
        CHECK(y[1 + n] == 0xabcd, "f32_to_f16 n=%zu wrote past the end", n);
    }
    cs_free(a), cs_free(b), cs_free(x);
    free(y), free(z);
}

/* ---- exp and erf sweeps against float64 libm ---- */

/* Design bound of simd/vmath.h (error analysis there): exp <= 1 ulp of
 * rounding plus 0.03 ulp of fit, erf <= ~1.4 ulp; both checked at 2 ulp
 * of the correctly rounded value (subnormal results: 2 subnormal ulps). */
#define MATH_ULP 2.0

static double sweep(void (*f)(const float *, float *, size_t), double (*truth)(double), const float *x, size_t n,
                    const char *what)
{
    float *y = falloc(n);
    f(x, y + 1, n);   /* misaligned output */
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double t = truth((double)x[i]), g = y[1 + i];
        if (isnan(t) || isnan(g)) {
            if (!(isnan(t) && isnan(g)) && bad++ < 3) report(what, i, g, t, 0);
            continue;
        }
        if (fabs(t) > FLT_MAX) {   /* must overflow */
            if (!isinf(g) && bad++ < 3) report(what, i, g, t, 0);
            continue;
        }
        double e = fabs(g - t) / ulp_of(t);
        if (e > worst) worst = e;
        if (e > MATH_ULP && bad++ < 3) {
            fprintf(stderr, "  x = %.9g (0x%08x)\n", x[i], f2bits(x[i]));
            report(what, i, g, t, MATH_ULP);
        }
    }
    cs_free(y);
    return worst;
}

static void fill_sweep(float *x, size_t n, float lo, float hi)
{
    /* half a uniform grid, half a walk over bit patterns (dense near 0) */
    size_t h = n / 2;
    for (size_t i = 0; i < h; i++) x[i] = lo + (hi - lo) * (float)((double)i / (double)(h - 1));
    uint32_t top = f2bits(fmaxf(-lo, hi)), stepb = (uint32_t)(top / (n - h) * 2 + 1);
    for (size_t i = h; i < n; i++) {
        uint32_t u = (uint32_t)((i - h) / 2) * stepb % top;
        x[i] = (i & 1) ? -bits2f(u) : bits2f(u);
        if (x[i] < lo || x[i] > hi) x[i] = 0.5f * (lo + hi);
    }
}

static void test_math(cs_simd_level l)
{
    void (*vexp)(const float *, float *, size_t) = NULL, (*verf)(const float *, float *, size_t) = NULL;
    switch (l) {
#ifdef CS_HAVE_AVX2
    case CS_SIMD_AVX2: vexp = cs_vexp_avx2, verf = cs_verf_avx2; break;
#endif
#ifdef CS_HAVE_AVX512
    case CS_SIMD_AVX512: vexp = cs_vexp_avx512, verf = cs_verf_avx512; break;
#endif
#ifdef CS_HAVE_NEON
    case CS_SIMD_NEON: vexp = cs_vexp_neon, verf = cs_verf_neon; break;
#endif
    default: return;
    }
    const size_t n = 3000000;
    float *x = falloc(n);
    fill_sweep(x, n, -104.5f, 89.5f);
    double e1 = sweep(vexp, exp, x, n, "exp sweep");
    fill_sweep(x, n, -6.0f, 6.0f);
    double e2 = sweep(verf, erf, x, n, "erf sweep");
    /* every float in [0.95, 1.05], around the split between erf's two pieces */
    size_t m = 0;
    for (uint32_t u = f2bits(0.95f); u <= f2bits(1.05f); u++) x[m++] = bits2f(u);
    double e3 = sweep(verf, erf, x, m, "erf near 1");
    float sp[NSPEC];
    memcpy(sp, specials, sizeof sp);
    sweep(vexp, exp, sp, NSPEC, "exp specials");
    sweep(verf, erf, sp, NSPEC, "erf specials");
    printf("  [%s] max error vs float64: exp %.3f ulp, erf %.3f ulp (%.3f ulp near 1)\n", lvl, e1, e2, e3);
    cs_free(x);
}

/* ---- element-wise kernels ---- */

typedef void (*unary_fn)(const float *, float *, size_t);

/* tolerance of an exp based kernel vs the reference: the two exps differ by
 * <= MATH_ULP + 1 (glibc's expf, < 1 ulp) ulps of exp, i.e. relative
 * 3 * 2^-23; then 1 + e and the division round once each in both versions
 * (2 * 2 * 2^-24). Total 5 * 2^-23 relative, plus one subnormal ulp for
 * results below FLT_MIN. */
static void tol_exp_kernel(const float *want, double *tol, size_t n)
{
    for (size_t i = 0; i < n; i++) tol[i] = 5 * 0x1p-23 * fabs((double)want[i]) + 0x1p-149;
}

/* gelu = (0.5 x)(1 + erf(z)): the erfs differ by <= MATH_ULP + 1 ulps of
 * erf (glibc's erff < 1 ulp), 1 + e rounds once in each, so the factors
 * differ by 3 ulp(e) + ulp(1 + e); times 0.5|x| plus one rounding each. The
 * cancellation in 1 + erf for x << 0 is the reference's own. */
static void tol_gelu(const float *x, const float *want, double *tol, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = erff(x[i] * 0.70710678118654752f);
        tol[i] = 0.5 * fabs((double)x[i]) * (3 * ulp_of(e) + ulp_of(1.0f + e)) + ulp_of(want[i]);
    }
}

static void test_unary(const char *name, unary_fn f, unary_fn ref, int exact, int is_gelu)
{
    size_t N = 4099 + 17;
    float *x = falloc(N), *y = falloc(N), *w = falloc(N);
    double *tol = malloc(N * sizeof(double));
    static const float ranges[][2] = {{-8, 8}, {-100, 100}, {-1, 1}};
    for (size_t s = 0; s < NSIZES; s++)
        for (int rg = 0; rg < 3; rg++)
            for (int off = 0; off < 2; off++) {
                size_t n = sizes[s];
                fill(x + off, n, ranges[rg][0], ranges[rg][1], rg != 2);
                ref(x + off, w, n);
                if (!exact) {
                    if (is_gelu) tol_gelu(x + off, w, tol, n);
                    else tol_exp_kernel(w, tol, n);
                }
                y[off + n] = 42.0f;
                f(x + off, y + off, n);
                char what[64];
                snprintf(what, sizeof what, "%s n=%zu off=%d", name, n, off);
                compare(what, y + off, w, n, exact ? NULL : tol);
                CHECK(y[off + n] == 42.0f, "%s wrote past the end", what);
                f(x + off, x + off, n);   /* in place */
                snprintf(what, sizeof what, "%s in place n=%zu", name, n);
                compare(what, x + off, w, n, exact ? NULL : tol);
            }
    /* every float around the overflow of exp(-x) and exp(-1.702x) and around
     * erf's split: whether exp overflows must agree with the reference */
    static const float around[][2] = {{88.70f, 88.74f}, {52.11f, 52.15f}, {1.40f, 1.43f}};
    for (int a = 0; a < 3; a++)
        for (int sg = -1; sg <= 1; sg += 2) {
            size_t n = 0;
            for (uint32_t u = f2bits(around[a][0]); u <= f2bits(around[a][1]) && n < N - 1; u++) x[1 + n++] = (float)sg * bits2f(u);
            ref(x + 1, w, n);
            if (!exact) {
                if (is_gelu) tol_gelu(x + 1, w, tol, n);
                else tol_exp_kernel(w, tol, n);
            }
            f(x + 1, y, n);
            compare(name, y, w, n, exact ? NULL : tol);
        }
    cs_free(x), cs_free(y), cs_free(w);
    free(tol);
}

typedef void (*binary_fn)(const float *, const float *, float *, size_t);

static void test_binary(const char *name, binary_fn f, binary_fn ref)
{
    size_t N = 4099 + 17;
    float *a = falloc(N), *b = falloc(N), *y = falloc(N), *w = falloc(N);
    for (size_t s = 0; s < NSIZES; s++)
        for (int off = 0; off < 2; off++) {
            size_t n = sizes[s];
            char what[64];
            snprintf(what, sizeof what, "%s n=%zu off=%d", name, n, off);
            fill(a + off, n, -1e3f, 1e3f, 1);
            fill(b, n, -1e3f, 1e3f, 1);
            ref(a + off, b, w, n);
            y[1 - off + n] = 42.0f;
            f(a + off, b, y + 1 - off, n);
            compare(what, y + 1 - off, w, n, NULL);
            CHECK(y[1 - off + n] == 42.0f, "%s wrote past the end", what);
            memcpy(y + off, b, n * 4);
            f(a + off, y + off, y + off, n);   /* y == b */
            compare(what, y + off, w, n, NULL);
            f(a + off, b, a + off, n);         /* y == a */
            compare(what, a + off, w, n, NULL);
        }
    /* scale */
    for (size_t s = 0; s < NSIZES; s++) {
        size_t n = sizes[s];
        float sc = check_uni(-3, 3);
        fill(a + 1, n, -1e3f, 1e3f, 1);
        cs_kernels rt;
        cs_kernels_ref(&rt);
        rt.scale(a + 1, sc, w, n);
        cs_k.scale(a + 1, sc, y + 1, n);
        compare("scale", y + 1, w, n, NULL);
        cs_k.scale(a + 1, sc, a + 1, n);
        compare("scale in place", a + 1, w, n, NULL);
    }
    cs_free(a), cs_free(b), cs_free(y), cs_free(w);
}

/* ---- rows x C kernels: exact ---- */

static const size_t chans[] = {1, 3, 4, 15, 16, 17, 31, 33, 63, 64, 65, 130, 320, 1025};
#define NCH (sizeof chans / sizeof chans[0])

static void test_channels(const cs_kernels *k, const cs_kernels *r)
{
    size_t maxn = 7 * 1025 + 17;
    float *x = falloc(maxn), *y = falloc(maxn), *w = falloc(maxn), *p = falloc(4 * 1025 + 64);
    for (size_t ci = 0; ci < NCH; ci++)
        for (size_t rows = 1; rows <= 7; rows += 2) {
            size_t C = chans[ci], n = rows * C;
            char what[80];
            float *a = p + 1, *b = a + C + 3, *c = b + C + 5, *s0 = c + C + 1;   /* odd offsets */
            fill(x + 1, n, -4, 4, 1);
            fill(a, C, -2, 2, 0), fill(b, C, -2, 2, 0), fill(c, C, -2, 2, 0);

            snprintf(what, sizeof what, "modulate %zux%zu", rows, C);
            r->modulate(x + 1, w, rows, C, a, b);
            k->modulate(x + 1, y, rows, C, a, b);
            compare(what, y, w, n, NULL);
            memcpy(y + 1, x + 1, n * 4);
            k->modulate(y + 1, y + 1, rows, C, a, b);
            compare(what, y + 1, w, n, NULL);

            snprintf(what, sizeof what, "add_bias %zux%zu", rows, C);
            r->add_bias(x + 1, w, rows, C, a);
            k->add_bias(x + 1, y, rows, C, a);
            compare(what, y, w, n, NULL);
            memcpy(y + 1, x + 1, n * 4);
            k->add_bias(y + 1, y + 1, rows, C, a);
            compare(what, y + 1, w, n, NULL);

            snprintf(what, sizeof what, "grn_apply %zux%zu", rows, C);
            r->grn_apply(x + 1, w, rows, C, a, b, c);
            k->grn_apply(x + 1, y, rows, C, a, b, c);
            compare(what, y, w, n, NULL);
            memcpy(y + 1, x + 1, n * 4);
            k->grn_apply(y + 1, y + 1, rows, C, a, b, c);
            compare(what, y + 1, w, n, NULL);

            /* sumsq accumulates onto what is there, in row order per column */
            snprintf(what, sizeof what, "sumsq_cols %zux%zu", rows, C);
            fill(s0, C, 0, 5, 0);
            memcpy(w, s0, C * 4);
            memcpy(y + 1, s0, C * 4);
            r->sumsq_cols(x + 1, rows, C, w);
            k->sumsq_cols(x + 1, rows, C, y + 1);
            compare(what, y + 1, w, C, NULL);
        }
    cs_free(x), cs_free(y), cs_free(w), cs_free(p);
}

/* ---- reductions against float64, with any-order error bounds ---- */

static void test_layernorm(const cs_kernels *k, const cs_kernels *r)
{
    size_t maxn = 3 * 4099 + 17;
    float *x = falloc(maxn), *y = falloc(maxn), *w = falloc(maxn), *g = falloc(4099), *bb = falloc(4099);
    double *tol = malloc(maxn * sizeof(double)), *truth = malloc(maxn * sizeof(double));
    static const size_t Cs[] = {1, 3, 15, 17, 63, 64, 65, 661, 1536, 4099};
    for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ci++)
        for (int affine = 0; affine < 2; affine++) {
            size_t C = Cs[ci], rows = 3, n = rows * C;
            float eps = 1e-6f;
            for (size_t i = 0; i < n; i++) x[1 + i] = check_uni(-1, 1) * (1 + (float)(i / C)) + 3.0f * (float)(i / C);
            fill(g + 1, C, -2, 2, 0), fill(bb, C, -1, 1, 0);
            const float *gw = affine ? g + 1 : NULL, *gb = affine ? bb : NULL;
            /* float64 truth; bound for a float evaluation in any order:
             * mean off by dm <= (C+2)u sum|x|/C, the variance and 1/sqrt
             * relative by (C+8)u, the product and affine by a few u */
            for (size_t rr = 0; rr < rows; rr++) {
                const float *xr = x + 1 + rr * C;
                double m = 0, v = 0, sa = 0;
                for (size_t c = 0; c < C; c++) m += xr[c], sa += fabs(xr[c]);
                m /= (double)C;
                for (size_t c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
                v /= (double)C;
                double inv = 1 / sqrt(v + eps), dm = (double)(C + 2) * U * sa / (double)C;
                for (size_t c = 0; c < C; c++) {
                    double t = (xr[c] - m) * inv, a = affine ? fabs(gw[c]) : 1.0;
                    truth[rr * C + c] = affine ? t * gw[c] + gb[c] : t;
                    tol[rr * C + c] = a * (dm * inv + fabs(t) * (double)(C + 8) * U) + 4 * U * fabs(truth[rr * C + c]) + 0x1p-149;
                }
            }
            float *want = w;
            for (size_t i = 0; i < n; i++) want[i] = (float)truth[i];
            char what[64];
            snprintf(what, sizeof what, "layernorm ref-vs-f64 C=%zu", C);
            r->layernorm(x + 1, y, rows, C, eps, gw, gb);   /* the bound holds for the reference too */
            compare(what, y, want, n, tol);
            snprintf(what, sizeof what, "layernorm C=%zu affine=%d", C, affine);
            k->layernorm(x + 1, y + 1, rows, C, eps, gw, gb);
            compare(what, y + 1, want, n, tol);
            k->layernorm(x + 1, x + 1, rows, C, eps, gw, gb);   /* in place */
            compare(what, x + 1, want, n, tol);
        }
    /* NaN / Inf rows: same NaN pattern as the reference */
    for (int t = 0; t < 3; t++) {
        size_t C = 37;
        fill(x + 1, 2 * C, -1, 1, 0);
        x[1 + 5] = t == 0 ? NAN : t == 1 ? INFINITY : -INFINITY;
        r->layernorm(x + 1, w, 2, C, 1e-5f, NULL, NULL);
        k->layernorm(x + 1, y, 2, C, 1e-5f, NULL, NULL);
        for (size_t i = 0; i < 2 * C; i++) CHECK(!isnan(y[i]) == !isnan(w[i]), "layernorm special %d at %zu", t, i);
    }
    cs_free(x), cs_free(y), cs_free(w), cs_free(g), cs_free(bb);
    free(tol), free(truth);
}

static void test_softmax(const cs_kernels *k, const cs_kernels *r)
{
    size_t N = 4099 + 17;
    float *x = falloc(N), *y = falloc(N), *w = falloc(N);
    double *tol = malloc(N * sizeof(double));
    for (size_t s = 1; s < NSIZES; s++)
        for (int rg = 0; rg < 2; rg++) {
            size_t n = sizes[s];
            fill(x + 1, n, rg ? -60.0f : -5.0f, rg ? 30.0f : 5.0f, 0);
            if (rg && n > 3) x[1 + n / 2] = -INFINITY;   /* a masked position */
            double m = -INFINITY, sum = 0;
            for (size_t i = 0; i < n; i++) m = fmax(m, x[1 + i]);
            for (size_t i = 0; i < n; i++) sum += exp(x[1 + i] - m);
            /* bound: x - max rounds (u|x - max| in exp), exp itself
             * (MATH_ULP ulp), the positive sum (n+1)u, 1/s and the product */
            double rmax = 0, ri;
            for (size_t i = 0; i < n; i++) {
                ri = U * fabs(x[1 + i] - m) + MATH_ULP * 0x1p-23;
                if (ri > rmax && isfinite(ri)) rmax = ri;
            }
            for (size_t i = 0; i < n; i++) {
                double t = exp(x[1 + i] - m) / sum;
                w[i] = (float)t;
                ri = isfinite(x[1 + i]) ? U * fabs(x[1 + i] - m) + MATH_ULP * 0x1p-23 : 0;
                tol[i] = t * (ri + rmax + (double)(n + 4) * U) + 0x1p-149;
            }
            char what[64];
            memcpy(y, x + 1, n * 4);
            snprintf(what, sizeof what, "softmax ref-vs-f64 n=%zu", n);
            r->softmax(y, n);
            compare(what, y, w, n, tol);
            snprintf(what, sizeof what, "softmax n=%zu", n);
            memcpy(y + 1, x + 1, n * 4);
            k->softmax(y + 1, n);
            compare(what, y + 1, w, n, tol);
        }
    /* NaN, +inf, all -inf: the reference's NaN pattern */
    for (int t = 0; t < 4; t++) {
        size_t n = 29;
        fill(x + 1, n, -3, 3, 0);
        if (t == 0) x[1 + 7] = NAN;
        if (t == 1) x[1 + 7] = INFINITY;
        if (t == 2) for (size_t i = 0; i < n; i++) x[1 + i] = -INFINITY;
        if (t == 3) x[1 + 28] = INFINITY, x[1 + 3] = -INFINITY;
        memcpy(w, x + 1, n * 4);
        memcpy(y + 1, x + 1, n * 4);
        r->softmax(w, n);
        k->softmax(y + 1, n);
        for (size_t i = 0; i < n; i++)
            CHECK(!isnan(y[1 + i]) == !isnan(w[i]) && (isnan(w[i]) || y[1 + i] == w[i] || fabsf(y[1 + i] - w[i]) < 1e-6f),
                  "softmax special %d at %zu: %g vs %g", t, i, y[1 + i], w[i]);
    }
    cs_free(x), cs_free(y), cs_free(w);
    free(tol);
}

static void test_dwconv(const cs_kernels *k, const cs_kernels *r)
{
    static const size_t shapes[][3] = {{1, 1, 1}, {1, 3, 5}, {2, 2, 17}, {3, 3, 8}, {5, 4, 65},
                                       {4, 7, 130}, {8, 8, 3}, {6, 5, 320}, {3, 9, 129}, {4, 6, 263}, {3, 4, 6}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int rep = 0; rep < 2; rep++)
            for (int hasb = 0; hasb < 2; hasb++) {
                size_t H = shapes[si][0], W = shapes[si][1], C = shapes[si][2], n = H * W * C;
                float *x = falloc(n), *y = falloc(n), *w = falloc(n), *wt = falloc(9 * C), *bias = falloc(C);
                double *tol = malloc(n * sizeof(double));
                fill(x + 1, n, -2, 2, 0), fill(wt + 1, 9 * C, -1, 1, 0), fill(bias, C, -1, 1, 0);
                const float *bp = hasb ? bias : NULL;
                /* float64 truth and the any-order bound of a 10-term sum: 10u sum|terms| */
                for (size_t h = 0; h < H; h++)
                    for (size_t q = 0; q < W; q++)
                        for (size_t c = 0; c < C; c++) {
                            double s = bp ? bp[c] : 0, sa = fabs(s);
                            for (int i = 0; i < 3; i++)
                                for (int j = 0; j < 3; j++) {
                                    long hh = (long)h + i - 1, ww = (long)q + j - 1;
                                    if (!rep && (hh < 0 || hh >= (long)H || ww < 0 || ww >= (long)W)) continue;
                                    hh = hh < 0 ? 0 : hh >= (long)H ? (long)H - 1 : hh;
                                    ww = ww < 0 ? 0 : ww >= (long)W ? (long)W - 1 : ww;
                                    double t = (double)wt[1 + c * 9 + (size_t)(i * 3 + j)] * x[1 + ((size_t)hh * W + (size_t)ww) * C + c];
                                    s += t, sa += fabs(t);
                                }
                            size_t o = (h * W + q) * C + c;
                            w[o] = (float)s;
                            tol[o] = 11 * U * sa + 0x1p-149;
                        }
                char what[80];
                snprintf(what, sizeof what, "dwconv ref-vs-f64 %zux%zux%zu rep=%d", H, W, C, rep);
                float *yr = falloc(n);
                r->dwconv3x3(x + 1, yr, H, W, C, wt + 1, bp, rep, 0, H);
                compare(what, yr, w, n, tol);
                cs_free(yr);
                snprintf(what, sizeof what, "dwconv %zux%zux%zu rep=%d bias=%d", H, W, C, rep, hasb);
                /* two row ranges, as the threaded caller splits them */
                size_t mid = H / 2;
                for (size_t i = 0; i < n; i++) y[1 + i] = 777.0f;
                k->dwconv3x3(x + 1, y + 1, H, W, C, wt + 1, bp, rep, 0, mid);
                CHECK(mid == H || y[1 + mid * W * C] == 777.0f, "%s: wrote outside rows [0,%zu)", what, mid);
                k->dwconv3x3(x + 1, y + 1, H, W, C, wt + 1, bp, rep, mid, H);
                compare(what, y + 1, w, n, tol);
                /* NaN and Inf inputs reach the same outputs */
                if (si == 4 && !hasb) {
                    x[1 + 0] = NAN, x[1 + (2 * W + 1) * C + 3] = INFINITY;
                    r->dwconv3x3(x + 1, w, H, W, C, wt + 1, bp, rep, 0, H);
                    k->dwconv3x3(x + 1, y + 1, H, W, C, wt + 1, bp, rep, 0, H);
                    for (size_t i = 0; i < n; i++)
                        CHECK(!isnan(y[1 + i]) == !isnan(w[i]) && !isinf(y[1 + i]) == !isinf(w[i]), "%s special at %zu", what, i);
                }
                cs_free(x), cs_free(y), cs_free(w), cs_free(wt), cs_free(bias);
                free(tol);
            }
}

/* ---- GEMM: bit for bit against the reference (one fmaf chain per element,
 * so every level must give the same bits), and the reference against float64 */
static void test_gemm(const cs_kernels *k, const cs_kernels *r)
{
    static const size_t Ms[] = {1, 2, 5, 6, 7, 11, 12, 13, 25};
    static const size_t Ns[] = {1, 3, 15, 16, 17, 31, 32, 33, 47, 65};
    static const size_t Ks[] = {0, 1, 3, 17, 64, 257};
    char what[96];
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                size_t M = Ms[mi], N = Ns[ni], K = Ks[ki], lda = K + 3, ldc = N + 5, P = (N + 15) / 16;
                size_t ps = K * 16 + 7;   /* panel stride: any, not only K*16 */
                float *a = falloc(M * lda), *bp = falloc(P * ps), *c0 = falloc(M * ldc), *ck = falloc(M * ldc),
                      *cr = falloc(M * ldc);
                fill(a, M * lda + 1, -1, 1, 0);
                fill(bp, P * ps + 1, -1, 1, 0);
                for (size_t p = 0; p < P; p++)   /* packing pads past N with zeros */
                    for (size_t kk = 0; kk < K; kk++)
                        for (size_t j = N - p * 16 < 16 ? N - p * 16 : 16; j < 16; j++) bp[1 + p * ps + kk * 16 + j] = 0;
                fill(c0, M * ldc + 1, -2, 2, 0);
                for (int cont = 0; cont < 2; cont++) {
                    memcpy(ck, c0, (M * ldc + 1) * sizeof(float));
                    memcpy(cr, c0, (M * ldc + 1) * sizeof(float));
                    k->gemm_f32(M, N, K, a + 1, lda, bp + 1, ps, ck + 1, ldc, cont);
                    r->gemm_f32(M, N, K, a + 1, lda, bp + 1, ps, cr + 1, ldc, cont);
                    snprintf(what, sizeof what, "gemm_f32 %zux%zux%zu cont=%d", M, N, K, cont);
                    for (size_t i = 0; i < M * ldc + 1; i++) {   /* padding columns untouched too */
                        if (f2bits(ck[i]) != f2bits(cr[i])) {
                            report(what, i, ck[i], cr[i], 0);
                            break;
                        }
                    }
                    for (size_t i = 0; i < M; i++)   /* the reference itself: a correct product */
                        for (size_t j = 0; j < N; j++) {
                            double d = cont ? c0[1 + i * ldc + j] : 0, mag = fabs(d);
                            for (size_t kk = 0; kk < K; kk++) {
                                double t = (double)a[1 + i * lda + kk] * bp[1 + j / 16 * ps + kk * 16 + j % 16];
                                d += t, mag += fabs(t);
                            }
                            double got = cr[1 + i * ldc + j];
                            if (fabs(got - d) > (double)(K + 1) * U * mag + 1e-30) {
                                snprintf(what, sizeof what, "gemm_f32 ref-vs-f64 %zux%zux%zu cont=%d", M, N, K, cont);
                                report(what, i * ldc + j, got, d, (double)(K + 1) * U * mag);
                                i = M;
                                break;
                            }
                        }
                }
                cs_free(a), cs_free(bp), cs_free(c0), cs_free(ck), cs_free(cr);
            }
}

/* ---- GEMM on bf16 pair panels (gemm_f32_bf16w): the bits of gemm_f32 on
 * the same bf16-valued weights widened to float32 panels, at the same level
 * and against the reference, NaN for NaN: which NaN operand an FMA passes
 * on follows the instruction form the compiler picks (vfmadd132/213/231),
 * so a NaN's sign is no part of gemm_f32's contract either. A's column K (row padding) holds Inf: an odd K's zero high half
 * multiplied by it would turn sums to NaN; a -0 C with cont shows an extra
 * +0 product too. */
static int same_bits(const float *x, const float *y, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (f2bits(x[i]) != f2bits(y[i]) && !(isnan(x[i]) && isnan(y[i]))) {
            *at = i;
            return 0;
        }
    return 1;
}

static void test_gemm_bf16w(const cs_kernels *k, const cs_kernels *r)
{
    static const size_t Ms[] = {1, 3, 6, 7, 12, 13, 17, 25, 63};
    static const size_t Ns[] = {1, 3, 15, 16, 17, 31, 32, 33, 47, 65};
    static const size_t Ks[] = {0, 1, 2, 3, 17, 64, 255, 256, 257, 300, 513};
    char what[112];
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (int spec = 0; spec < 2; spec++) {
                    size_t M = Ms[mi], N = Ns[ni], K = Ks[ki], lda = K + 3, ldc = N + 5, P = (N + 15) / 16;
                    size_t KP = (K + 1) / 2, ps = K * 16 + 7, pps = KP * 16 + 5;   /* strides: any */
                    float *a = falloc(M * lda), *bp = falloc(P * ps), *c0 = falloc(M * ldc);
                    float *cf = falloc(M * ldc), *cw = falloc(M * ldc), *crw = falloc(M * ldc);
                    uint32_t *wp = cs_alloc((P * pps + 17) * sizeof(uint32_t));
                    fill(a, M * lda + 1, -1, 1, spec);
                    for (size_t i = 0; i < M; i++) a[1 + i * lda + K] = INFINITY;
                    fill(c0, M * ldc + 1, -2, 2, 0);
                    if (spec) c0[1] = -0.0f;
                    for (size_t i = 0; i < P * pps + 1; i++) wp[i] = (uint32_t)check_rnd64();   /* garbage past the panels */
                    for (size_t p = 0; p < P; p++)
                        for (size_t kk = 0; kk < 2 * KP; kk++)
                            for (size_t j = 0; j < 16; j++) {
                                float v = 16 * p + j < N && kk < K ? check_uni(-1, 1) : 0.0f;
                                if (spec && v != 0.0f && (check_rnd64() & 31) == 0) v = specials[check_rnd64() % 6];
                                uint16_t h = cs_f32_to_bf16(v);   /* the weight: a bf16 value */
                                uint32_t *o = wp + 1 + p * pps + kk / 2 * 16 + j;
                                *o = kk % 2 ? (*o & 0xffff) | (uint32_t)h << 16 : (*o & 0xffff0000u) | h;
                                if (kk < K) bp[1 + p * ps + kk * 16 + j] = cs_bf16_to_f32(h);
                            }
                    for (int cont = 0; cont < 2; cont++) {
                        memcpy(cf, c0, (M * ldc + 1) * sizeof(float));
                        memcpy(cw, c0, (M * ldc + 1) * sizeof(float));
                        memcpy(crw, c0, (M * ldc + 1) * sizeof(float));
                        k->gemm_f32(M, N, K, a + 1, lda, bp + 1, ps, cf + 1, ldc, cont);
                        k->gemm_f32_bf16w(M, N, K, a + 1, lda, wp + 1, pps, cw + 1, ldc, cont);
                        r->gemm_f32_bf16w(M, N, K, a + 1, lda, wp + 1, pps, crw + 1, ldc, cont);
                        size_t at = 0;
                        snprintf(what, sizeof what, "gemm_f32_bf16w vs gemm_f32 %zux%zux%zu cont=%d spec=%d", M, N, K,
                                 cont, spec);
                        if (!same_bits(cw, cf, M * ldc + 1, &at)) report(what, at, cw[at], cf[at], 0);
                        snprintf(what, sizeof what, "gemm_f32_bf16w vs reference %zux%zux%zu cont=%d spec=%d", M, N, K,
                                 cont, spec);
                        if (!same_bits(cw, crw, M * ldc + 1, &at)) report(what, at, cw[at], crw[at], 0);
                    }
                    cs_free(a), cs_free(bp), cs_free(c0), cs_free(cf), cs_free(cw), cs_free(crw), cs_free(wp);
                }
}

/* ---- driver ---- */

/* ---- placement: issue 10's determinism rule. A result depends on the
 * values only: the same data at another alignment (offsets 0..16 floats),
 * a row computed alone or inside a block of rows (the thread and tile
 * split), a GEMM row at another lda, all give the same bits. */
static int placed_same(const char *what, const float *got, const float *want, size_t n, int off)
{
    size_t at;
    if (same_bits(got, want, n, &at)) return 1;
    char w[96];
    snprintf(w, sizeof w, "%s: offset %d differs from offset 0", what, off);
    report(w, at, got[at], want[at], 0);
    return 0;
}

static void test_placement(const cs_kernels *k)
{
    enum { H = 5, W = 7, C = 83, R = 4, KD = 301, N = 37, OFFS = 17 };
    size_t n = H * W * C, P = (N + 15) / 16;
    float *src = falloc(n), *ref = falloc(4 * n), *buf = falloc(n + OFFS), *out = falloc(n + OFFS);
    float *wt = falloc(9 * C), *bias = falloc(C), *bp = falloc(P * KD * 16), *a = falloc(R * (KD + OFFS));
    fill(src, n, -3, 3, 0), fill(wt, 9 * C, -1, 1, 0), fill(bias, C, -1, 1, 0);
    fill(bp, P * KD * 16, -1, 1, 0), fill(a, R * KD, -1, 1, 0);
    /* offset 0's results, one region each */
    float *r_ln = ref, *r_sm = r_ln + 2 * R * KD, *r_ss = r_sm + KD, *r_gm = r_ss + C, *r_dw = ref + 2 * n;
    for (int off = 0; off < OFFS; off++) {
        float *x = buf + off, *y = out + off;
        memcpy(x, src, n * sizeof(float));   /* layer norm: R rows of KD, then each row alone */
        k->layernorm(x, y, R, KD, 1e-6f, NULL, NULL);
        for (size_t r = 0; r < R; r++) k->layernorm(x + r * KD, x + r * KD, 1, KD, 1e-6f, wt + 1, wt + 400);   /* 9 * C >= 400 + KD */
        if (!off) memcpy(r_ln, y, R * KD * sizeof(float)), memcpy(r_ln + R * KD, x, R * KD * sizeof(float));
        placed_same("layernorm", y, r_ln, R * KD, off);
        placed_same("layernorm one row, affine", x, r_ln + R * KD, R * KD, off);
        memcpy(x, src, KD * sizeof(float));
        k->softmax(x, KD);
        if (!off) memcpy(r_sm, x, KD * sizeof(float));
        placed_same("softmax", x, r_sm, KD, off);
        memcpy(x, src, n * sizeof(float));
        memset(y, 0, C * sizeof(float));
        k->sumsq_cols(x, H * W, C, y);
        if (!off) memcpy(r_ss, y, C * sizeof(float));
        placed_same("sumsq_cols", y, r_ss, C, off);
        for (int rep = 0; rep < 2; rep++) {   /* all rows at once, then one output row per call */
            k->dwconv3x3(x, y, H, W, C, wt, bias, rep, 0, H);
            float *rd = r_dw + (size_t)rep * n;
            if (!off) memcpy(rd, y, n * sizeof(float));
            placed_same(rep ? "dwconv3x3 replicate" : "dwconv3x3", y, rd, n, off);
            for (size_t h = 0; h < H; h++) k->dwconv3x3(x, y, H, W, C, wt, bias, rep, h, h + 1);
            placed_same(rep ? "dwconv3x3 replicate, a row per call" : "dwconv3x3, a row per call", y, rd, n, off);
        }
        size_t lda = KD + (size_t)off;   /* GEMM: A at another alignment and row stride, rows alone */
        for (size_t r = 0; r < R; r++) memcpy(x + r * lda, a + r * KD, KD * sizeof(float));
        k->gemm_f32(R, N, KD, x, lda, bp, KD * 16, y, N, 0);
        if (!off) memcpy(r_gm, y, R * N * sizeof(float));
        placed_same("gemm_f32", y, r_gm, R * N, off);
        for (size_t r = 0; r < R; r++) k->gemm_f32(1, N, KD, x + r * lda, lda, bp, KD * 16, y + r * N, N, 0);
        placed_same("gemm_f32, a row per call", y, r_gm, R * N, off);
    }
    cs_free(src), cs_free(ref), cs_free(buf), cs_free(out), cs_free(wt), cs_free(bias), cs_free(bp), cs_free(a);
}

static void test_level(cs_simd_level l)
{
    cs_kernels r, k;
    cs_kernels_ref(&r);
    if (cs_simd_set(l)) {
        CHECK(0, "cs_simd_set: %s", cs_last_error());
        return;
    }
    k = cs_k;
    lvl = cs_simd_name(l);
    snprintf(lvl_tag, sizeof lvl_tag, "[%s] ", lvl);
    check_tag = lvl_tag;
    printf("level %s\n", lvl);
    /* every entry is this level's own, none left at the reference */
    void **kp = (void **)&k, **rp = (void **)&r;
    for (size_t i = 0; i < sizeof k / sizeof(void *); i++) CHECK(kp[i] != rp[i], "table entry %zu is still the reference", i);
    int f0 = failures;
    test_conversions(&k, &r);
    test_math(l);
    test_unary("gelu", k.gelu, r.gelu, 0, 1);
    test_unary("quick_gelu", k.quick_gelu, r.quick_gelu, 0, 0);
    test_unary("silu", k.silu, r.silu, 0, 0);
    test_unary("sigmoid", k.sigmoid, r.sigmoid, 0, 0);
    test_binary("add", k.add, r.add);
    test_binary("mul", k.mul, r.mul);
    test_channels(&k, &r);
    test_layernorm(&k, &r);
    test_softmax(&k, &r);
    test_dwconv(&k, &r);
    test_gemm(&k, &r);
    test_gemm_bf16w(&k, &r);
    test_placement(&k);
    printf("  [%s] %s\n", lvl, failures == f0 ? "ok" : "FAILED");
}

int main(void)
{
    check_seed64(0x9e3779b97f4a7c15ull);
    const char *env = getenv("CASCADE_SIMD");
    int tested = 0;
    if (env && *env) {
        if (cs_simd_init()) {
            fprintf(stderr, "test_kernels: %s\n", cs_last_error());
            return 99;
        }
        if (cs_simd_current() == CS_SIMD_SCALAR) {
            printf("SKIP: CASCADE_SIMD=scalar is the reference itself, nothing to compare\n");
            return 77;
        }
        test_level(cs_simd_current());
        tested = 1;
    } else {
        for (int l = 1; l < CS_SIMD_LEVELS; l++)
            if (cs_simd_supported((cs_simd_level)l)) test_level((cs_simd_level)l), tested++;
    }
    if (!tested) {
        printf("no SIMD level on this CPU/build: nothing to compare\n");
        return 77;
    }
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
