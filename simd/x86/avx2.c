/* AVX2 + FMA + F16C kernels (8 floats a vector). Same results as simd/ref.c:
 * bit for bit for conversions and the element-wise kernels (separate
 * multiply and add where the reference rounds twice; this file is built with
 * -ffp-contract=off), within a few ulp for exp/erf based ones, and within
 * summation-order rounding for the reductions (layernorm, softmax, dwconv).
 * Tails use masked loads/stores (float) or a small stack copy (uint16). */
#include "kernels.h"
#include "vmath.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define L 8

static const int32_t tail_tab[2 * L] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* lanes [0, r) set, 1 <= r <= 8 */
static inline __m256i tmask(size_t r) { return _mm256_loadu_si256((const __m256i *)(tail_tab + L - r)); }

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* ---- exp and erf (constants and error analysis in simd/vmath.h) ---- */

/* full: any x (clamped; 2^n in two steps so subnormal results round once);
 * else only for |x| < 87, where 2^n is a normal number */
static inline __attribute__((always_inline)) __m256 v_exp_(__m256 x, int full)
{
    if (full) {   /* x as the second operand: min/max return it when it is NaN */
        x = _mm256_min_ps(_mm256_set1_ps(CS_EXP_HI), x);
        x = _mm256_max_ps(_mm256_set1_ps(CS_EXP_LO), x);
    }
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(CS_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CS_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(CS_LN2_LO), r);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(CS_EXP_C4), r, _mm256_set1_ps(CS_EXP_C3));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(CS_EXP_C2));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(CS_EXP_C1));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(CS_EXP_C0));
    __m256 p = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r));
    __m256i ni = _mm256_cvtps_epi32(n);
    if (!full) return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(ni, 23)));
    __m256i a = _mm256_srai_epi32(ni, 1), b = _mm256_sub_epi32(ni, a);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static inline __m256 v_exp(__m256 x) { return v_exp_(x, 1); }

static inline __m256 v_erf(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 s = _mm256_mul_ps(x, x);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(CS_ERF_A6), s, _mm256_set1_ps(CS_ERF_A5));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(CS_ERF_A4));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(CS_ERF_A3));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(CS_ERF_A2));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(CS_ERF_A1));
    q = _mm256_fmadd_ps(q, s, _mm256_set1_ps(CS_ERF_A0));
    __m256 small = _mm256_fmadd_ps(x, q, x);
    __m256 m = _mm256_cmp_ps(a, _mm256_set1_ps(CS_ERF_SPLIT), _CMP_LT_OQ);   /* false for NaN */
    if (_mm256_movemask_ps(m) == 0xff) return small;
    __m256 t = _mm256_sub_ps(_mm256_min_ps(_mm256_set1_ps(CS_ERF_MAX), a), _mm256_set1_ps(2.0f));
    __m256 Q = _mm256_fmadd_ps(_mm256_set1_ps(CS_ERF_Q7), t, _mm256_set1_ps(CS_ERF_Q6));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q5));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q4));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q3));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q2));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q1));
    Q = _mm256_fmadd_ps(Q, t, _mm256_set1_ps(CS_ERF_Q0));
    __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f), v_exp_(Q, 0));   /* Q in [-17.4, -1.8] */
    big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
    return _mm256_blendv_ps(big, small, m);
}

/* ---- unary element-wise kernels: body per vector, masked tail ---- */

#define UNARY(name, expr)                                                                  \
    static inline __m256 name##_v(__m256 v) { return expr; }                              \
    static void name(const float *x, float *y, size_t n)                                  \
    {                                                                                      \
        size_t i = 0;                                                                      \
        for (; i + 2 * L <= n; i += 2 * L) {                                               \
            __m256 a = name##_v(_mm256_loadu_ps(x + i)), b = name##_v(_mm256_loadu_ps(x + i + L)); \
            _mm256_storeu_ps(y + i, a);                                                    \
            _mm256_storeu_ps(y + i + L, b);                                                \
        }                                                                                  \
        for (; i < n; i += L) {                                                            \
            if (n - i >= L) {                                                              \
                _mm256_storeu_ps(y + i, name##_v(_mm256_loadu_ps(x + i)));                 \
            } else {                                                                       \
                __m256i m = tmask(n - i);                                                  \
                _mm256_maskstore_ps(y + i, m, name##_v(_mm256_maskload_ps(x + i, m)));     \
            }                                                                              \
        }                                                                                  \
    }

/* same operations in the same order as simd/ref.c */
UNARY(gelu, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v),
                          _mm256_add_ps(_mm256_set1_ps(1.0f), v_erf(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))))))
UNARY(quick_gelu, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), v_exp(_mm256_mul_ps(_mm256_set1_ps(-1.702f), v)))))
UNARY(silu, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), v_exp(_mm256_xor_ps(v, _mm256_set1_ps(-0.0f))))))
UNARY(sigmoid, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), v_exp(_mm256_xor_ps(v, _mm256_set1_ps(-0.0f))))))
UNARY(vexp, v_exp(v))
UNARY(verf, v_erf(v))

void cs_vexp_avx2(const float *x, float *y, size_t n) { vexp(x, y, n); }
void cs_verf_avx2(const float *x, float *y, size_t n) { verf(x, y, n); }

/* ---- conversions (bit-exact with src/tensor.c) ---- */

static inline __m256 bf16x8(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }

static void bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(x + i));
        _mm256_storeu_ps(y + i, bf16x8(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(y + i + L, bf16x8(_mm256_extracti128_si256(h, 1)));
    }
    if (i < n) {
        uint16_t t[2 * L] = {0};
        float o[2 * L];
        memcpy(t, x + i, (n - i) * 2);
        __m256i h = _mm256_loadu_si256((const __m256i *)t);
        _mm256_storeu_ps(o, bf16x8(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(o + L, bf16x8(_mm256_extracti128_si256(h, 1)));
        memcpy(y + i, o, (n - i) * 4);
    }
}

/* F16C quiets signalling NaNs; the reference keeps the payload as is */
static inline __m256 f16x8(__m128i h)
{
    __m256 f = _mm256_cvtph_ps(h);
    __m256i u = _mm256_cvtepu16_epi32(h);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fff)), _mm256_set1_epi32(0x7c00));
    if (_mm256_testz_si256(nan, nan)) return f;
    __m256i bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x8000)), 16),
                                   _mm256_or_si256(_mm256_set1_epi32(0x7f800000),
                                                   _mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x3ff)), 13)));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(nan));
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) _mm256_storeu_ps(y + i, f16x8(_mm_loadu_si128((const __m128i *)(x + i))));
    if (i < n) {
        uint16_t t[L] = {0};
        float o[L];
        memcpy(t, x + i, (n - i) * 2);
        _mm256_storeu_ps(o, f16x8(_mm_loadu_si128((const __m128i *)t)));
        memcpy(y + i, o, (n - i) * 4);
    }
}

/* Round to nearest even on the bit pattern, NaN -> quiet NaN (as the
 * reference). The AVX512-BF16 instruction is not used anywhere: it flushes
 * subnormal inputs to zero, which the reference does not. */
static inline __m256i bf16_round(__m256 v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, q, nan);
}

static inline __m256i bf16x16(const float *x)
{
    __m256i p = _mm256_packus_epi32(bf16_round(_mm256_loadu_ps(x)), bf16_round(_mm256_loadu_ps(x + L)));
    return _mm256_permute4x64_epi64(p, 0xd8);   /* packus interleaves 128-bit lanes */
}

static void f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) _mm256_storeu_si256((__m256i *)(y + i), bf16x16(x + i));
    if (i < n) {
        float t[2 * L] = {0};
        uint16_t o[2 * L];
        memcpy(t, x + i, (n - i) * 4);
        _mm256_storeu_si256((__m256i *)o, bf16x16(t));
        memcpy(y + i, o, (n - i) * 2);
    }
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float t[L] = {0};
        uint16_t o[L];
        memcpy(t, x + i, (n - i) * 4);
        _mm_storeu_si128((__m128i *)o, _mm256_cvtps_ph(_mm256_loadu_ps(t), _MM_FROUND_TO_NEAREST_INT));
        memcpy(y + i, o, (n - i) * 2);
    }
}

/* ---- layernorm and softmax ---- */

static void layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    size_t rem = C % L, end = C - rem;
    __m256i tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        /* two passes as the reference: the mean, then squared deviations */
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t c = 0;
        for (; c + 4 * L <= end; c += 4 * L) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + c));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + c + L));
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(xr + c + 2 * L));
            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(xr + c + 3 * L));
        }
        for (; c < end; c += L) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + c));
        if (rem) s1 = _mm256_add_ps(s1, _mm256_maskload_ps(xr + end, tm));
        float mean = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) / (float)C;
        __m256 mv = _mm256_set1_ps(mean);
        s0 = s1 = s2 = s3 = _mm256_setzero_ps();
        for (c = 0; c + 2 * L <= end; c += 2 * L) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + c), mv), d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + c + L), mv);
            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
        }
        for (; c < end; c += L) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + c), mv);
            s2 = _mm256_fmadd_ps(d, d, s2);
        }
        if (rem) {
            __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + end, tm), mv), _mm256_castsi256_ps(tm));
            s3 = _mm256_fmadd_ps(d, d, s3);
        }
        float var = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) / (float)C;
        __m256 inv = _mm256_set1_ps(1.0f / sqrtf(var + eps));
        for (c = 0; c < C; c += L) {
            int tail = c == end;
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(tail ? _mm256_maskload_ps(xr + c, tm) : _mm256_loadu_ps(xr + c), mv), inv);
            if (w)
                v = _mm256_fmadd_ps(v, tail ? _mm256_maskload_ps(w + c, tm) : _mm256_loadu_ps(w + c),
                                    tail ? _mm256_maskload_ps(b + c, tm) : _mm256_loadu_ps(b + c));
            if (tail) _mm256_maskstore_ps(yr + c, tm, v);
            else _mm256_storeu_ps(yr + c, v);
        }
    }
}

static void softmax(float *x, size_t n)
{
    size_t rem = n % L, end = n - rem;
    __m256i tm = tmask(rem ? rem : L);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    /* max ignoring NaN like fmaxf: the running max is the second operand */
    __m256 m0 = ninf, m1 = ninf;
    size_t i = 0;
    for (; i + 2 * L <= end; i += 2 * L) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + L), m1);
    }
    for (; i < end; i += L) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    if (rem) m1 = _mm256_max_ps(_mm256_blendv_ps(ninf, _mm256_maskload_ps(x + end, tm), _mm256_castsi256_ps(tm)), m1);
    __m256 mv = _mm256_set1_ps(hmax(_mm256_max_ps(m0, m1)));
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (i = 0; i + 2 * L <= end; i += 2 * L) {
        __m256 e0 = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        __m256 e1 = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + L), mv));
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + L, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i < end; i += L) {
        __m256 e = v_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_ps(s0, e);
    }
    if (rem) {
        __m256 e = v_exp(_mm256_sub_ps(_mm256_maskload_ps(x + end, tm), mv));
        _mm256_maskstore_ps(x + end, tm, e);
        s1 = _mm256_add_ps(s1, _mm256_and_ps(e, _mm256_castsi256_ps(tm)));
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum(_mm256_add_ps(s0, s1)));
    for (i = 0; i < end; i += L) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (rem) _mm256_maskstore_ps(x + end, tm, _mm256_mul_ps(_mm256_maskload_ps(x + end, tm), inv));
}

/* ---- per-channel kernels over rows x C (exact: same roundings as the reference) ---- */

/* loads lanes [c, c+L) or, at the row tail, the masked part */
#define LD(p, c) (tail ? _mm256_maskload_ps((p) + (c), tm) : _mm256_loadu_ps((p) + (c)))
#define ST(p, c, v) (tail ? _mm256_maskstore_ps((p) + (c), tm, (v)) : _mm256_storeu_ps((p) + (c), (v)))

static void sumsq_cols(const float *x, size_t rows, size_t C, float *sumsq)
{
    size_t rem = C % L, end = C - rem;
    __m256i tm = tmask(rem ? rem : L);
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {   /* four rows per pass over sumsq, in row order per column */
        const float *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        for (size_t c = 0; c < C; c += L) {
            int tail = c == end;
            __m256 s = LD(sumsq, c), v;
            v = LD(x0, c); s = _mm256_add_ps(s, _mm256_mul_ps(v, v));
            v = LD(x1, c); s = _mm256_add_ps(s, _mm256_mul_ps(v, v));
            v = LD(x2, c); s = _mm256_add_ps(s, _mm256_mul_ps(v, v));
            v = LD(x3, c); s = _mm256_add_ps(s, _mm256_mul_ps(v, v));
            ST(sumsq, c, s);
        }
    }
    for (; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            int tail = c == end;
            __m256 v = LD(x + r * C, c);
            ST(sumsq, c, _mm256_add_ps(LD(sumsq, c), _mm256_mul_ps(v, v)));
        }
}

static void grn_apply(const float *x, float *y, size_t rows, size_t C, const float *nx, const float *gamma,
                      const float *beta)
{
    size_t rem = C % L, end = C - rem;
    __m256i tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            int tail = c == end;
            __m256 v = LD(x + r * C, c);
            __m256 t = _mm256_mul_ps(LD(gamma, c), _mm256_mul_ps(v, LD(nx, c)));
            ST(y + r * C, c, _mm256_add_ps(_mm256_add_ps(t, LD(beta, c)), v));
        }
}

static void modulate(const float *x, float *y, size_t rows, size_t C, const float *a, const float *b)
{
    size_t rem = C % L, end = C - rem;
    __m256i tm = tmask(rem ? rem : L);
    const __m256 one = _mm256_set1_ps(1.0f);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            int tail = c == end;
            __m256 v = _mm256_mul_ps(LD(x + r * C, c), _mm256_add_ps(one, LD(a, c)));
            ST(y + r * C, c, _mm256_add_ps(v, LD(b, c)));
        }
}

static void add_bias(const float *x, float *y, size_t rows, size_t C, const float *bias)
{
    size_t rem = C % L, end = C - rem;
    __m256i tm = tmask(rem ? rem : L);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c += L) {
            int tail = c == end;
            ST(y + r * C, c, _mm256_add_ps(LD(x + r * C, c), LD(bias, c)));
        }
}

/* ---- binary element-wise ---- */

#define BINARY(name, op)                                                                          \
    static void name(const float *a, const float *b, float *y, size_t n)                         \
    {                                                                                             \
        size_t i = 0;                                                                             \
        for (; i + 2 * L <= n; i += 2 * L) {                                                      \
            __m256 u = op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));                        \
            __m256 v = op(_mm256_loadu_ps(a + i + L), _mm256_loadu_ps(b + i + L));                \
            _mm256_storeu_ps(y + i, u);                                                           \
            _mm256_storeu_ps(y + i + L, v);                                                       \
        }                                                                                         \
        for (; i < n; i += L) {                                                                   \
            if (n - i >= L) {                                                                     \
                _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));      \
            } else {                                                                              \
                __m256i m = tmask(n - i);                                                         \
                _mm256_maskstore_ps(y + i, m, op(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m))); \
            }                                                                                     \
        }                                                                                         \
    }

BINARY(add, _mm256_add_ps)
BINARY(mul, _mm256_mul_ps)

static void scale(const float *x, float s, float *y, size_t n)
{
    __m256 sv = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + L <= n; i += L) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
    if (i < n) {
        __m256i m = tmask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), sv));
    }
}

/* ---- depthwise 3x3 ---- */

/* the driver is simd/dwconv_tpl.h (included below); here one pixel's taps */
#define DW_CB 256

static inline void dw_pixel(const float *const *xp, const int *tk, int nt, const float *wt, const float *bt,
                            float *yp, size_t cb, __m256i tm)
{
    for (size_t c = 0; c < cb; c += L) {
        int tail = cb - c < L;
        __m256 s = _mm256_loadu_ps(bt + c);
        for (int t = 0; t < nt; t++) s = _mm256_fmadd_ps(_mm256_loadu_ps(wt + tk[t] * DW_CB + c), LD(xp[t], c), s);
        ST(yp, c, s);
    }
}

/* ---- GEMM micro-kernel: 6 rows x 16 columns (12 accumulators) ---- */
#define VF __m256
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VBCAST(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VLOADN(p, n) _mm256_maskload_ps((p), tmask(n))
#define VSTOREN(p, v, n) _mm256_maskstore_ps((p), tmask(n), (v))
#define GEMM_MR 6
#define GEMM_NP 1
#include "gemm_tpl.h"
#define VI __m256i
#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(p))
#define VLO(v) _mm256_castsi256_ps(_mm256_slli_epi32((v), 16))
#define VHI(v) _mm256_castsi256_ps(_mm256_and_si256((v), _mm256_set1_epi32((int)0xffff0000u)))
#define GEMM_BF16W
#include "gemm_tpl.h"

#define DW_ALIGN 32
#define DW_MASK __m256i
#define DW_TAILMASK(n) tmask(n)
#include "dwconv_tpl.h"

#define CS_KERNELS_FN cs_kernels_avx2
#include "kernels_tpl.h"
