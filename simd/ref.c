/* Scalar reference kernels: the truth every SIMD variant is tested against.
 * Plain loops, libm functions, float accumulation in the same order a
 * straightforward implementation would use. */
#include "kernels.h"
#include "fp16.h"

#include <math.h>
#include <string.h>

static void bf16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cs_bf16_to_f32(x[i]);
}

static void f16_to_f32(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cs_f16_to_f32(x[i]);
}

static void f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cs_f32_to_bf16(x[i]);
}

static void f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cs_f32_to_f16(x[i]);
}

static void layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mean = 0, var = 0;
        for (size_t c = 0; c < C; c++) mean += xr[c];
        mean /= (float)C;
        for (size_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
        var /= (float)C;
        float inv = 1.0f / sqrtf(var + eps);
        for (size_t c = 0; c < C; c++) {
            float v = (xr[c] - mean) * inv;
            yr[c] = w ? v * w[c] + b[c] : v;
        }
    }
}

static void gelu(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static void quick_gelu(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static void silu(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void sigmoid(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void softmax(float *x, size_t n)
{
    float m = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, x[i]);
    /* a fully masked row (all -inf) gives NaN, as in PyTorch */
    for (size_t i = 0; i < n; i++) s += (x[i] = expf(x[i] - m));
    float inv = 1.0f / s;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

static void sumsq_cols(const float *x, size_t rows, size_t C, float *sumsq)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) sumsq[c] += x[r * C + c] * x[r * C + c];
}

static void grn_apply(const float *x, float *y, size_t rows, size_t C, const float *nx, const float *gamma,
                      const float *beta)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) {
            float v = x[r * C + c];
            y[r * C + c] = gamma[c] * (v * nx[c]) + beta[c] + v;
        }
}

static void add(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void mul(const float *a, const float *b, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

static void scale(const float *x, float s, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] * s;
}

static void modulate(const float *x, float *y, size_t rows, size_t C, const float *a, const float *b)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * (1.0f + a[c]) + b[c];
}

static void add_bias(const float *x, float *y, size_t rows, size_t C, const float *bias)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] + bias[c];
}

static void dwconv3x3(const float *x, float *y, size_t H, size_t W, size_t C, const float *w, const float *bias,
                      int replicate, size_t h0, size_t h1)
{
    for (size_t h = h0; h < h1; h++)
        for (size_t wi = 0; wi < W; wi++)
            for (size_t c = 0; c < C; c++) {
                float s = bias ? bias[c] : 0.0f;
                for (int i = 0; i < 3; i++) {
                    long hh = (long)h + i - 1;
                    if (hh < 0 || hh >= (long)H) {
                        if (!replicate) continue;
                        hh = hh < 0 ? 0 : (long)H - 1;
                    }
                    for (int j = 0; j < 3; j++) {
                        long ww = (long)wi + j - 1;
                        if (ww < 0 || ww >= (long)W) {
                            if (!replicate) continue;
                            ww = ww < 0 ? 0 : (long)W - 1;
                        }
                        s += w[c * 9 + i * 3 + j] * x[((size_t)hh * W + (size_t)ww) * C + c];
                    }
                }
                y[(h * W + wi) * C + c] = s;
            }
}

static void gemm_f32(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *Bp, size_t pstride,
                     float *C, size_t ldc, int cont)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            const float *b = Bp + j / 16 * pstride + j % 16;
            float acc = cont ? C[i * ldc + j] : 0.0f;
            for (size_t k = 0; k < K; k++) acc = fmaf(A[i * lda + k], b[k * 16], acc);
            C[i * ldc + j] = acc;
        }
}

/* k = 2q is pair q's low half, k = 2q+1 its high half (exact as floats) */
static void gemm_f32_bf16w(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                           size_t pstride, float *C, size_t ldc, int cont)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            const uint32_t *b = Bp + j / 16 * pstride + j % 16;
            float acc = cont ? C[i * ldc + j] : 0.0f;
            for (size_t k = 0; k < K; k++) {
                uint32_t u = b[k / 2 * 16];
                acc = fmaf(A[i * lda + k], cs_bf16_to_f32((uint16_t)(k % 2 ? u >> 16 : u & 0xffff)), acc);
            }
            C[i * ldc + j] = acc;
        }
}

#define CS_KERNELS_FN cs_kernels_ref
#include "kernels_tpl.h"
