/* AVX-512 F/BW/DQ/VL kernels (16 floats a vector), the same algorithms as
 * simd/x86/avx2.c with mask registers for every tail. Same guarantees: bit
 * for bit for conversions and element-wise kernels (built with
 * -ffp-contract=off), a few ulp for exp/erf based ones, summation-order
 * rounding for the reductions.
 *
 * AVX512-BF16 is deliberately not used: VCVTNEPS2BF16 flushes subnormal
 * inputs to zero (measured on Zen 4: 0x007fffff -> 0x0000, the reference
 * gives 0x0080), and no kernel here is a bf16 dot product. */
#include "kernels.h"
#include "vmath.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define L 16

static inline __mmask16 tmask(size_t r) { return (__mmask16)((1u << r) - 1u); }   /* 1 <= r <= 16 */

/* ---- exp and erf (constants and error analysis in simd/vmath.h) ---- */

/* full: any x (clamped; 2^n in two steps so subnormal results round once);
 * else only for |x| < 87, where 2^n is a normal number */
static inline __attribute__((always_inline)) __m512 v_exp_(__m512 x, int full)
{
    if (full) {   /* x as the second operand: min/max return it when it is NaN */
        x = _mm512_min_ps(_mm512_set1_ps(CS_EXP_HI), x);
        x = _mm512_max_ps(_mm512_set1_ps(CS_EXP_LO), x);
    }
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(CS_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CS_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(CS_LN2_LO), r);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(CS_EXP_C4), r, _mm512_set1_ps(CS_EXP_C3));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(CS_EXP_C2));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(CS_EXP_C1));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(CS_EXP_C0));
    __m512 p = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r));
    __m512i ni = _mm512_cvtps_epi32(n);
    if (!full) return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(ni, 23)));
    __m512i a = _mm512_srai_epi32(ni, 1), b = _mm512_sub_epi32(ni, a);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

static inline __m512 v_exp(__m512 x) { return v_exp_(x, 1); }

static inline __m512 v_erf(__m512 x)
{
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(x)));
    __m512 s = _mm512_mul_ps(x, x);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(CS_ERF_A6), s, _mm512_set1_ps(CS_ERF_A5));
    q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(CS_ERF_A4));
    q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(CS_ERF_A3));
    q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(CS_ERF_A2));
    q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(CS_ERF_A1));
    q = _mm512_fmadd_ps(q, s, _mm512_set1_ps(CS_ERF_A0));
    __m512 small = _mm512_fmadd_ps(x, q, x);
    __mmask16 m = _mm512_cmp_ps_mask(a, _mm512_set1_ps(CS_ERF_SPLIT), _CMP_LT_OQ);   /* false for NaN */
    if (m == 0xffff) return small;
    __m512 t = _mm512_sub_ps(_mm512_min_ps(_mm512_set1_ps(CS_ERF_MAX), a), _mm512_set1_ps(2.0f));
    __m512 Q = _mm512_fmadd_ps(_mm512_set1_ps(CS_ERF_Q7), t, _mm512_set1_ps(CS_ERF_Q6));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q5));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q4));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q3));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q2));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q1));
    Q = _mm512_fmadd_ps(Q, t, _mm512_set1_ps(CS_ERF_Q0));
    /* Q in [-17.4, -1.8]: no clamping or two-step scaling needed */
    __m512i big = _mm512_castps_si512(_mm512_sub_ps(_mm512_set1_ps(1.0f), v_exp_(Q, 0)));
    big = _mm512_or_si512(big, _mm512_and_si512(_mm512_castps_si512(x), sign));
    return _mm512_mask_blend_ps(m, _mm512_castsi512_ps(big), small);
}

static inline __m512 neg(__m512 v)
{
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
}

/* ---- unary element-wise kernels ---- */

#define UNARY(name, expr)                                                                   \
    static inline __m512 name##_v(__m512 v) { return expr; }                               \
    static void name(const float *x, float *y, size_t n)                                   \
    {                                                                                       \
        size_t i = 0;                                                                       \
        for (; i + 2 * L <= n; i += 2 * L) {                                                \
            __m512 a = name##_v(_mm512_loadu_ps(x + i)), b = name##_v(_mm512_loadu_ps(x + i + L)); \
            _mm512_storeu_ps(y + i, a);                                                     \
            _mm512_storeu_ps(y + i + L, b);                                                 \
        }                                                                                   \
        for (; i < n; i += L) {                                                             \
            __mmask16 m = tmask(n - i < L ? n - i : L);                                     \
            _mm512_mask_storeu_ps(y + i, m, name##_v(_mm512_maskz_loadu_ps(m, x + i)));     \
        }                                                                                   \
    }

/* same operations in the same order as simd/ref.c */
UNARY(gelu, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                          _mm512_add_ps(_mm512_set1_ps(1.0f), v_erf(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))))))
UNARY(quick_gelu, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), v_exp(_mm512_mul_ps(_mm512_set1_ps(-1.702f), v)))))
UNARY(silu, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), v_exp(neg(v)))))
UNARY(sigmoid, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), v_exp(neg(v)))))
UNARY(vexp, v_exp(v))
UNARY(verf, v_erf(v))

void cs_vexp_avx512(const float *x, float *y, size_t n) { vexp(x, y, n); }
void cs_verf_avx512(const float *x, float *y, size_t n) { verf(x, y, n); }

/* ---- conversions (bit-exact with src/tensor.c) ---- */

static inline __m512 bf16x16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

static void bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        __m512i h = _mm512_loadu_si512(x + i);
        _mm512_storeu_ps(y + i, bf16x16(_mm512_castsi512_si256(h)));
        _mm512_storeu_ps(y + i + L, bf16x16(_mm512_extracti64x4_epi64(h, 1)));
    }
    for (; i < n; i += L) {
        __mmask16 m = tmask(n - i < L ? n - i : L);
        _mm512_mask_storeu_ps(y + i, m, bf16x16(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

/* hardware conversion quiets signalling NaNs; the reference keeps the payload */
static inline __m512 f16x16(__m256i h)
{
    __m512 f = _mm512_cvtph_ps(h);
    __m512i u = _mm512_cvtepu16_epi32(h);
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fff)), _mm512_set1_epi32(0x7c00));
    if (!nan) return f;
    __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x8000)), 16),
                                   _mm512_or_si512(_mm512_set1_epi32(0x7f800000),
                                                   _mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x3ff)), 13)));
    return _mm512_mask_blend_ps(nan, f, _mm512_castsi512_ps(bits));
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) _mm512_storeu_ps(y + i, f16x16(_mm256_loadu_si256((const __m256i *)(x + i))));
    if (i < n) {
        __mmask16 m = tmask(n - i);
        _mm512_mask_storeu_ps(y + i, m, f16x16(_mm256_maskz_loadu_epi16(m, x + i)));
    }
}

/* round to nearest even on the bit pattern, NaN -> quiet NaN (as the reference) */
static inline __m256i bf16_round(__m512 v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

static void f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) _mm256_storeu_si256((__m256i *)(y + i), bf16_round(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tmask(n - i);
        _mm256_mask_storeu_epi16(y + i, m, bf16_round(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L)
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 m = tmask(n - i);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

/* ---- layernorm and softmax ---- */

static void layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    size_t rem = C % L, end = C - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        /* two passes as the reference: the mean, then squared deviations */
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t c = 0;
        for (; c + 4 * L <= end; c += 4 * L) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + c));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + c + L));
            s2 = _mm512_add_ps(s2, _mm512_loadu_ps(xr + c + 2 * L));
            s3 = _mm512_add_ps(s3, _mm512_loadu_ps(xr + c + 3 * L));
        }
        for (; c < end; c += L) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + c));
        if (rem) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(tm, xr + end));
        float mean = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))) / (float)C;
        __m512 mv = _mm512_set1_ps(mean);
        s0 = s1 = s2 = s3 = _mm512_setzero_ps();
        for (c = 0; c + 2 * L <= end; c += 2 * L) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + c), mv), d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + c + L), mv);
            s0 = _mm512_fmadd_ps(d0, d0, s0);
            s1 = _mm512_fmadd_ps(d1, d1, s1);
        }
        for (; c < end; c += L) {
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(xr + c), mv);
            s2 = _mm512_fmadd_ps(d, d, s2);
        }
        if (rem) {
            __m512 d = _mm512_maskz_sub_ps(tm, _mm512_maskz_loadu_ps(tm, xr + end), mv);
            s3 = _mm512_fmadd_ps(d, d, s3);
        }
        float var = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))) / (float)C;
        __m512 inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (c = 0; c < C; c += L) {
            __mmask16 m = c == end ? tm : (__mmask16)0xffff;
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), mv), inv);
            if (w) v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, w + c), _mm512_maskz_loadu_ps(m, b + c));
            _mm512_mask_storeu_ps(yr + c, m, v);
        }
    }
}

static void softmax(float *x, size_t n)
{
    size_t rem = n % L, end = n - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    /* max ignoring NaN like fmaxf: the running max is the second operand */
    __m512 m0 = ninf, m1 = ninf;
    size_t i = 0;
    for (; i + 2 * L <= end; i += 2 * L) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + i), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(x + i + L), m1);
    }
    for (; i < end; i += L) m0 = _mm512_max_ps(_mm512_loadu_ps(x + i), m0);
    if (rem) m1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tm, x + end), m1);
    __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(m0, m1)));
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (i = 0; i + 2 * L <= end; i += 2 * L) {
        __m512 e0 = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
        __m512 e1 = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i + L), mv));
        _mm512_storeu_ps(x + i, e0);
        _mm512_storeu_ps(x + i + L, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < end; i += L) {
        __m512 e = v_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
        _mm512_storeu_ps(x + i, e);
        s0 = _mm512_add_ps(s0, e);
    }
    if (rem) {
        __m512 e = v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tm, x + end), mv));
        _mm512_mask_storeu_ps(x + end, tm, e);
        s1 = _mm512_mask_add_ps(s1, tm, s1, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
    for (i = 0; i < end; i += L) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (rem) _mm512_mask_storeu_ps(x + end, tm, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, x + end), inv));
}

/* ---- per-channel kernels over rows x C (exact: same roundings as the reference) ---- */

#define LD(p, c) _mm512_maskz_loadu_ps(m, (p) + (c))
#define ST(p, c, v) _mm512_mask_storeu_ps((p) + (c), m, (v))
#define MASK(c) __mmask16 m = (c) == end ? tm : (__mmask16)0xffff

static void sumsq_cols(const float *x, size_t rows, size_t C, float *sumsq)
{
    size_t rem = C % L, end = C - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {   /* four rows per pass over sumsq, in row order per column */
        const float *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        for (size_t c = 0; c < C; c += L) {
            MASK(c);
            __m512 s = LD(sumsq, c), v;
            v = LD(x0, c); s = _mm512_add_ps(s, _mm512_mul_ps(v, v));
            v = LD(x1, c); s = _mm512_add_ps(s, _mm512_mul_ps(v, v));
            v = LD(x2, c); s = _mm512_add_ps(s, _mm512_mul_ps(v, v));
            v = LD(x3, c); s = _mm512_add_ps(s, _mm512_mul_ps(v, v));
            ST(sumsq, c, s);
        }
    }
    for (; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            MASK(c);
            __m512 v = LD(x + r * C, c);
            ST(sumsq, c, _mm512_add_ps(LD(sumsq, c), _mm512_mul_ps(v, v)));
        }
}

static void grn_apply(const float *x, float *y, size_t rows, size_t C, const float *nx, const float *gamma,
                      const float *beta)
{
    size_t rem = C % L, end = C - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            MASK(c);
            __m512 v = LD(x + r * C, c);
            __m512 t = _mm512_mul_ps(LD(gamma, c), _mm512_mul_ps(v, LD(nx, c)));
            ST(y + r * C, c, _mm512_add_ps(_mm512_add_ps(t, LD(beta, c)), v));
        }
}

static void modulate(const float *x, float *y, size_t rows, size_t C, const float *a, const float *b)
{
    size_t rem = C % L, end = C - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            MASK(c);
            __m512 v = _mm512_mul_ps(LD(x + r * C, c), _mm512_add_ps(one, LD(a, c)));
            ST(y + r * C, c, _mm512_add_ps(v, LD(b, c)));
        }
}

static void add_bias(const float *x, float *y, size_t rows, size_t C, const float *bias)
{
    size_t rem = C % L, end = C - rem;
    __mmask16 tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            MASK(c);
            ST(y + r * C, c, _mm512_add_ps(LD(x + r * C, c), LD(bias, c)));
        }
}

/* ---- binary element-wise ---- */

#define BINARY(name, op)                                                                       \
    static void name(const float *a, const float *b, float *y, size_t n)                      \
    {                                                                                          \
        size_t i = 0;                                                                          \
        for (; i + 2 * L <= n; i += 2 * L) {                                                   \
            __m512 u = op(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));                     \
            __m512 v = op(_mm512_loadu_ps(a + i + L), _mm512_loadu_ps(b + i + L));             \
            _mm512_storeu_ps(y + i, u);                                                        \
            _mm512_storeu_ps(y + i + L, v);                                                    \
        }                                                                                      \
        for (; i < n; i += L) {                                                                \
            __mmask16 m = tmask(n - i < L ? n - i : L);                                        \
            _mm512_mask_storeu_ps(y + i, m, op(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i))); \
        }                                                                                      \
    }

BINARY(add, _mm512_add_ps)
BINARY(mul, _mm512_mul_ps)

static void scale(const float *x, float s, float *y, size_t n)
{
    __m512 sv = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += L) {
        __mmask16 m = tmask(n - i < L ? n - i : L);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sv));
    }
}

/* ---- depthwise 3x3 (as simd/x86/avx2.c) ---- */

/* the driver is simd/dwconv_tpl.h (included below); here one pixel's taps */
#define DW_CB 256

static inline void dw_pixel(const float *const *xp, const int *tk, int nt, const float *wt, const float *bt,
                            float *yp, size_t cb, __mmask16 tm)
{
    for (size_t c = 0; c < cb; c += L) {
        __mmask16 m = cb - c < L ? tm : (__mmask16)0xffff;
        __m512 s = _mm512_loadu_ps(bt + c);
        for (int t = 0; t < nt; t++) s = _mm512_fmadd_ps(_mm512_loadu_ps(wt + tk[t] * DW_CB + c), LD(xp[t], c), s);
        ST(yp, c, s);
    }
}

/* ---- GEMM micro-kernel: 12 rows x 32 columns (24 accumulators) ---- */
#define VF __m512
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VBCAST(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VLOADN(p, n) _mm512_maskz_loadu_ps(tmask(n), (p))
#define VSTOREN(p, v, n) _mm512_mask_storeu_ps((p), tmask(n), (v))
#define GEMM_MR 12
#define GEMM_NP 2
#include "gemm_tpl.h"
#define VI __m512i
#define VLOADI(p) _mm512_loadu_si512((const void *)(p))
#define VLO(v) _mm512_castsi512_ps(_mm512_slli_epi32((v), 16))
#define VHI(v) _mm512_castsi512_ps(_mm512_and_si512((v), _mm512_set1_epi32((int)0xffff0000u)))
#define GEMM_BF16W
#include "gemm_tpl.h"

#define DW_ALIGN 64
#define DW_MASK __mmask16
#define DW_TAILMASK(n) tmask(n)
#include "dwconv_tpl.h"

#define CS_KERNELS_FN cs_kernels_avx512
#include "kernels_tpl.h"
