/* NEON kernels for aarch64 (4 floats a vector), the same algorithms as
 * simd/x86/avx2.c. Same guarantees: bit for bit for conversions and
 * element-wise kernels (built with -ffp-contract=off, so scalar tails round
 * like the reference), a few ulp for exp/erf based ones, summation-order
 * rounding for the reductions. Tails: exact kernels finish with scalar code,
 * exp/erf ones run the vector code on a zero-padded stack copy. */
#include "kernels.h"
#include "fp16.h"
#include "vmath.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define L 4

/* ---- exp and erf (constants and error analysis in simd/vmath.h) ---- */

/* full: any x (clamped; 2^n in two steps so subnormal results round once);
 * else only for |x| < 87, where 2^n is a normal number */
static inline __attribute__((always_inline)) float32x4_t v_exp_(float32x4_t x, int full)
{
    if (full) {   /* FMIN/FMAX keep NaN */
        x = vminq_f32(x, vdupq_n_f32(CS_EXP_HI));
        x = vmaxq_f32(x, vdupq_n_f32(CS_EXP_LO));
    }
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, CS_LOG2E));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(CS_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(CS_LN2_LO));
    float32x4_t q = vfmaq_f32(vdupq_n_f32(CS_EXP_C3), vdupq_n_f32(CS_EXP_C4), r);
    q = vfmaq_f32(vdupq_n_f32(CS_EXP_C2), q, r);
    q = vfmaq_f32(vdupq_n_f32(CS_EXP_C1), q, r);
    q = vfmaq_f32(vdupq_n_f32(CS_EXP_C0), q, r);
    float32x4_t p = vaddq_f32(vdupq_n_f32(1.0f), vfmaq_f32(r, vmulq_f32(r, r), q));
    int32x4_t ni = vcvtq_s32_f32(n);
    if (!full) return vreinterpretq_f32_s32(vaddq_s32(vreinterpretq_s32_f32(p), vshlq_n_s32(ni, 23)));
    int32x4_t a = vshrq_n_s32(ni, 1), b = vsubq_s32(ni, a);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(a, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(b, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

static inline float32x4_t v_exp(float32x4_t x) { return v_exp_(x, 1); }

static inline float32x4_t v_erf(float32x4_t x)
{
    float32x4_t a = vabsq_f32(x);
    float32x4_t s = vmulq_f32(x, x);
    float32x4_t q = vfmaq_f32(vdupq_n_f32(CS_ERF_A5), vdupq_n_f32(CS_ERF_A6), s);
    q = vfmaq_f32(vdupq_n_f32(CS_ERF_A4), q, s);
    q = vfmaq_f32(vdupq_n_f32(CS_ERF_A3), q, s);
    q = vfmaq_f32(vdupq_n_f32(CS_ERF_A2), q, s);
    q = vfmaq_f32(vdupq_n_f32(CS_ERF_A1), q, s);
    q = vfmaq_f32(vdupq_n_f32(CS_ERF_A0), q, s);
    float32x4_t small = vfmaq_f32(x, x, q);
    uint32x4_t m = vcltq_f32(a, vdupq_n_f32(CS_ERF_SPLIT));   /* false for NaN */
    if (vminvq_u32(m) == 0xffffffffu) return small;
    float32x4_t t = vsubq_f32(vminq_f32(a, vdupq_n_f32(CS_ERF_MAX)), vdupq_n_f32(2.0f));
    float32x4_t Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q6), vdupq_n_f32(CS_ERF_Q7), t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q5), Q, t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q4), Q, t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q3), Q, t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q2), Q, t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q1), Q, t);
    Q = vfmaq_f32(vdupq_n_f32(CS_ERF_Q0), Q, t);
    float32x4_t big = vsubq_f32(vdupq_n_f32(1.0f), v_exp_(Q, 0));   /* Q in [-17.4, -1.8] */
    big = vbslq_f32(vdupq_n_u32(0x80000000u), x, big);   /* copysign */
    return vbslq_f32(m, small, big);
}

/* ---- unary element-wise kernels; the tail runs on a padded copy ---- */

#define UNARY(name, expr)                                                                  \
    static inline float32x4_t name##_v(float32x4_t v) { return expr; }                    \
    static void name(const float *x, float *y, size_t n)                                  \
    {                                                                                      \
        size_t i = 0;                                                                      \
        for (; i + 2 * L <= n; i += 2 * L) {                                               \
            float32x4_t a = name##_v(vld1q_f32(x + i)), b = name##_v(vld1q_f32(x + i + L)); \
            vst1q_f32(y + i, a);                                                           \
            vst1q_f32(y + i + L, b);                                                       \
        }                                                                                  \
        for (; i + L <= n; i += L) vst1q_f32(y + i, name##_v(vld1q_f32(x + i)));           \
        if (i < n) {                                                                       \
            float t[L] = {0};                                                              \
            memcpy(t, x + i, (n - i) * sizeof(float));                                     \
            vst1q_f32(t, name##_v(vld1q_f32(t)));                                          \
            memcpy(y + i, t, (n - i) * sizeof(float));                                     \
        }                                                                                  \
    }

/* same operations in the same order as simd/ref.c */
UNARY(gelu, vmulq_f32(vmulq_n_f32(v, 0.5f),
                      vaddq_f32(vdupq_n_f32(1.0f), v_erf(vmulq_n_f32(v, 0.70710678118654752f)))))
UNARY(quick_gelu, vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), v_exp(vmulq_n_f32(v, -1.702f)))))
UNARY(silu, vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), v_exp(vnegq_f32(v)))))
UNARY(sigmoid, vdivq_f32(vdupq_n_f32(1.0f), vaddq_f32(vdupq_n_f32(1.0f), v_exp(vnegq_f32(v)))))
UNARY(vexp, v_exp(v))
UNARY(verf, v_erf(v))

void cs_vexp_neon(const float *x, float *y, size_t n) { vexp(x, y, n); }
void cs_verf_neon(const float *x, float *y, size_t n) { verf(x, y, n); }

/* ---- conversions (bit-exact with src/tensor.c) ---- */

static void bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y + i + L, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; i++) y[i] = cs_bf16_to_f32(x[i]);
}

/* FCVTL quiets signalling NaNs; the reference keeps the payload as is */
static inline float32x4_t f16x4(uint16x4_t h)
{
    float32x4_t f = vcvt_f32_f16(vreinterpret_f16_u16(h));
    uint32x4_t u = vmovl_u16(h);
    uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fff)), vdupq_n_u32(0x7c00));
    if (vmaxvq_u32(nan) == 0) return f;
    uint32x4_t bits = vorrq_u32(vshlq_n_u32(vandq_u32(u, vdupq_n_u32(0x8000)), 16),
                                vorrq_u32(vdupq_n_u32(0x7f800000), vshlq_n_u32(vandq_u32(u, vdupq_n_u32(0x3ff)), 13)));
    return vbslq_f32(nan, vreinterpretq_f32_u32(bits), f);
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) vst1q_f32(y + i, f16x4(vld1_u16(x + i)));
    if (i < n) {
        uint16_t t[L] = {0};
        float o[L];
        memcpy(t, x + i, (n - i) * 2);
        vst1q_f32(o, f16x4(vld1_u16(t)));
        memcpy(y + i, o, (n - i) * 4);
    }
}

/* round to nearest even on the bit pattern, NaN -> quiet NaN (as the reference) */
static inline uint16x4_t bf16x4(float32x4_t v)
{
    uint32x4_t u = vreinterpretq_u32_f32(v);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb), 16);
    uint32x4_t q = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40));
    uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    return vmovn_u32(vbslq_u32(nan, q, r));
}

static void f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) vst1q_u16(y + i, vcombine_u16(bf16x4(vld1q_f32(x + i)), bf16x4(vld1q_f32(x + i + L))));
    for (; i < n; i++) y[i] = cs_f32_to_bf16(x[i]);
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    if (i < n) {
        float t[L] = {0};
        uint16_t o[L];
        memcpy(t, x + i, (n - i) * 4);
        vst1_u16(o, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(t))));
        memcpy(y + i, o, (n - i) * 2);
    }
}

/* ---- layernorm and softmax ---- */

static void layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        /* two passes as the reference: the mean, then squared deviations */
        float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
        size_t c = 0;
        for (; c + 4 * L <= C; c += 4 * L) {
            s0 = vaddq_f32(s0, vld1q_f32(xr + c));
            s1 = vaddq_f32(s1, vld1q_f32(xr + c + L));
            s2 = vaddq_f32(s2, vld1q_f32(xr + c + 2 * L));
            s3 = vaddq_f32(s3, vld1q_f32(xr + c + 3 * L));
        }
        for (; c + L <= C; c += L) s0 = vaddq_f32(s0, vld1q_f32(xr + c));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
        for (; c < C; c++) sum += xr[c];
        float mean = sum / (float)C;
        float32x4_t mv = vdupq_n_f32(mean);
        s0 = s1 = vdupq_n_f32(0);
        for (c = 0; c + 2 * L <= C; c += 2 * L) {
            float32x4_t d0 = vsubq_f32(vld1q_f32(xr + c), mv), d1 = vsubq_f32(vld1q_f32(xr + c + L), mv);
            s0 = vfmaq_f32(s0, d0, d0);
            s1 = vfmaq_f32(s1, d1, d1);
        }
        for (; c + L <= C; c += L) {
            float32x4_t d = vsubq_f32(vld1q_f32(xr + c), mv);
            s0 = vfmaq_f32(s0, d, d);
        }
        float ss = vaddvq_f32(vaddq_f32(s0, s1));
        for (; c < C; c++) ss = fmaf(xr[c] - mean, xr[c] - mean, ss);
        float var = ss / (float)C;
        float inv = 1.0f / sqrtf(var + eps);
        float32x4_t iv = vdupq_n_f32(inv);
        for (c = 0; c + L <= C; c += L) {
            float32x4_t v = vmulq_f32(vsubq_f32(vld1q_f32(xr + c), mv), iv);
            if (w) v = vfmaq_f32(vld1q_f32(b + c), v, vld1q_f32(w + c));
            vst1q_f32(yr + c, v);
        }
        for (; c < C; c++) {
            float v = (xr[c] - mean) * inv;
            yr[c] = w ? fmaf(v, w[c], b[c]) : v;
        }
    }
}

static void softmax(float *x, size_t n)
{
    /* max ignoring NaN like fmaxf: FMAXNM */
    float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
    size_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        m0 = vmaxnmq_f32(m0, vld1q_f32(x + i));
        m1 = vmaxnmq_f32(m1, vld1q_f32(x + i + L));
    }
    for (; i + L <= n; i += L) m0 = vmaxnmq_f32(m0, vld1q_f32(x + i));
    float m = vmaxnmvq_f32(vmaxnmq_f32(m0, m1));
    for (; i < n; i++) m = fmaxf(m, x[i]);
    float32x4_t mv = vdupq_n_f32(m);
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
    for (i = 0; i + 2 * L <= n; i += 2 * L) {
        float32x4_t e0 = v_exp(vsubq_f32(vld1q_f32(x + i), mv)), e1 = v_exp(vsubq_f32(vld1q_f32(x + i + L), mv));
        vst1q_f32(x + i, e0);
        vst1q_f32(x + i + L, e1);
        s0 = vaddq_f32(s0, e0);
        s1 = vaddq_f32(s1, e1);
    }
    for (; i + L <= n; i += L) {
        float32x4_t e = v_exp(vsubq_f32(vld1q_f32(x + i), mv));
        vst1q_f32(x + i, e);
        s0 = vaddq_f32(s0, e);
    }
    if (i < n) {
        float t[L];
        for (size_t j = 0; j < L; j++) t[j] = i + j < n ? x[i + j] : -INFINITY;   /* exp(-inf) = 0 */
        float32x4_t e = v_exp(vsubq_f32(vld1q_f32(t), mv));
        vst1q_f32(t, e);
        memcpy(x + i, t, (n - i) * sizeof(float));
        s1 = vaddq_f32(s1, e);
    }
    float32x4_t inv = vdupq_n_f32(1.0f / vaddvq_f32(vaddq_f32(s0, s1)));
    for (i = 0; i + L <= n; i += L) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= vgetq_lane_f32(inv, 0);
}

/* ---- per-channel kernels over rows x C (exact: same roundings as the reference) ---- */

static void sumsq_cols(const float *x, size_t rows, size_t C, float *sumsq)
{
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {   /* four rows per pass over sumsq, in row order per column */
        const float *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        size_t c = 0;
        for (; c + L <= C; c += L) {
            float32x4_t s = vld1q_f32(sumsq + c), v;
            v = vld1q_f32(x0 + c); s = vaddq_f32(s, vmulq_f32(v, v));
            v = vld1q_f32(x1 + c); s = vaddq_f32(s, vmulq_f32(v, v));
            v = vld1q_f32(x2 + c); s = vaddq_f32(s, vmulq_f32(v, v));
            v = vld1q_f32(x3 + c); s = vaddq_f32(s, vmulq_f32(v, v));
            vst1q_f32(sumsq + c, s);
        }
        for (; c < C; c++) {
            float s = sumsq[c];
            s += x0[c] * x0[c];
            s += x1[c] * x1[c];
            s += x2[c] * x2[c];
            s += x3[c] * x3[c];
            sumsq[c] = s;
        }
    }
    for (; r < rows; r++) {
        const float *xr = x + r * C;
        size_t c = 0;
        for (; c + L <= C; c += L) {
            float32x4_t v = vld1q_f32(xr + c);
            vst1q_f32(sumsq + c, vaddq_f32(vld1q_f32(sumsq + c), vmulq_f32(v, v)));
        }
        for (; c < C; c++) sumsq[c] += xr[c] * xr[c];
    }
}

static void grn_apply(const float *x, float *y, size_t rows, size_t C, const float *nx, const float *gamma,
                      const float *beta)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        size_t c = 0;
        for (; c + L <= C; c += L) {
            float32x4_t v = vld1q_f32(xr + c);
            float32x4_t t = vmulq_f32(vld1q_f32(gamma + c), vmulq_f32(v, vld1q_f32(nx + c)));
            vst1q_f32(yr + c, vaddq_f32(vaddq_f32(t, vld1q_f32(beta + c)), v));
        }
        for (; c < C; c++) yr[c] = gamma[c] * (xr[c] * nx[c]) + beta[c] + xr[c];
    }
}

static void modulate(const float *x, float *y, size_t rows, size_t C, const float *a, const float *b)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        size_t c = 0;
        for (; c + L <= C; c += L)
            vst1q_f32(yr + c, vaddq_f32(vmulq_f32(vld1q_f32(xr + c), vaddq_f32(one, vld1q_f32(a + c))), vld1q_f32(b + c)));
        for (; c < C; c++) yr[c] = xr[c] * (1.0f + a[c]) + b[c];
    }
}

static void add_bias(const float *x, float *y, size_t rows, size_t C, const float *bias)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        size_t c = 0;
        for (; c + L <= C; c += L) vst1q_f32(yr + c, vaddq_f32(vld1q_f32(xr + c), vld1q_f32(bias + c)));
        for (; c < C; c++) yr[c] = xr[c] + bias[c];
    }
}

/* ---- binary element-wise ---- */

#define BINARY(name, op, sop)                                                           \
    static void name(const float *a, const float *b, float *y, size_t n)               \
    {                                                                                   \
        size_t i = 0;                                                                   \
        for (; i + 2 * L <= n; i += 2 * L) {                                            \
            float32x4_t u = op(vld1q_f32(a + i), vld1q_f32(b + i));                     \
            float32x4_t v = op(vld1q_f32(a + i + L), vld1q_f32(b + i + L));             \
            vst1q_f32(y + i, u);                                                        \
            vst1q_f32(y + i + L, v);                                                    \
        }                                                                               \
        for (; i < n; i++) y[i] = a[i] sop b[i];                                        \
    }

BINARY(add, vaddq_f32, +)
BINARY(mul, vmulq_f32, *)

static void scale(const float *x, float s, float *y, size_t n)
{
    size_t i = 0;
    for (; i + L <= n; i += L) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(x + i), s));
    for (; i < n; i++) y[i] = x[i] * s;
}

/* ---- depthwise 3x3: the driver is simd/dwconv_tpl.h (included below) ---- */

#define DW_CB 256

/* channels [0, cb) of one pixel; the tail in scalar code (tm: no masks here) */
static inline void dw_pixel(const float *const *xp, const int *tk, int nt, const float *wt, const float *bt,
                            float *yp, size_t cb, int tm)
{
    (void)tm;
    size_t c = 0;
    for (; c + L <= cb; c += L) {
        float32x4_t s = vld1q_f32(bt + c);
        for (int t = 0; t < nt; t++) s = vfmaq_f32(s, vld1q_f32(wt + tk[t] * DW_CB + c), vld1q_f32(xp[t] + c));
        vst1q_f32(yp + c, s);
    }
    for (; c < cb; c++) {
        float s = bt[c];
        for (int t = 0; t < nt; t++) s = fmaf(wt[tk[t] * DW_CB + c], xp[t][c], s);
        yp[c] = s;
    }
}

/* ---- GEMM micro-kernel: 6 rows x 16 columns (24 accumulators) ---- */
static inline float32x4_t loadn4(const float *p, size_t n)
{
    float t[4] = {0, 0, 0, 0};
    memcpy(t, p, n * sizeof(float));
    return vld1q_f32(t);
}
static inline void storen4(float *p, float32x4_t v, size_t n)
{
    float t[4];
    vst1q_f32(t, v);
    memcpy(p, t, n * sizeof(float));
}
#define VF float32x4_t
#define VW 4
#define VZERO() vdupq_n_f32(0.0f)
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32((p), (v))
#define VBCAST(x) vdupq_n_f32(x)
#define VFMA(a, b, c) vfmaq_f32((c), (a), (b))
#define VLOADN(p, n) loadn4((p), (n))
#define VSTOREN(p, v, n) storen4((p), (v), (n))
#define GEMM_MR 6
#define GEMM_NP 1
#include "gemm_tpl.h"
#define VI uint32x4_t
#define VLOADI(p) vld1q_u32(p)
#define VLO(v) vreinterpretq_f32_u32(vshlq_n_u32((v), 16))
#define VHI(v) vreinterpretq_f32_u32(vandq_u32((v), vdupq_n_u32(0xffff0000u)))
#define GEMM_BF16W
#include "gemm_tpl.h"

#define DW_ALIGN 16
#define DW_MASK int
#define DW_TAILMASK(n) 0
#include "dwconv_tpl.h"

#define CS_KERNELS_FN cs_kernels_neon
#include "kernels_tpl.h"
