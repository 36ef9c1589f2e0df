/* The kernel table as a program finds it: every entry a stub that picks the
 * level once (cs_simd_ensure: this CPU's best, or $CASCADE_SIMD) and then
 * forwards to the entry the pick installed. So a program that never calls
 * cs_simd_pick still computes at the level it was asked for, and after the
 * first call the hot path is the real kernel with no test in front of it
 * (zlib-ng's functable does the same). */
#include "kernels.h"

#include <string.h>

static void s_bf16_to_f32(const uint16_t *x, float *y, size_t n) { cs_simd_ensure(); cs_k.bf16_to_f32(x, y, n); }
static void s_f16_to_f32(const uint16_t *x, float *y, size_t n) { cs_simd_ensure(); cs_k.f16_to_f32(x, y, n); }
static void s_f32_to_bf16(const float *x, uint16_t *y, size_t n) { cs_simd_ensure(); cs_k.f32_to_bf16(x, y, n); }
static void s_f32_to_f16(const float *x, uint16_t *y, size_t n) { cs_simd_ensure(); cs_k.f32_to_f16(x, y, n); }

static void s_layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    cs_simd_ensure();
    cs_k.layernorm(x, y, rows, C, eps, w, b);
}

static void s_gelu(const float *x, float *y, size_t n) { cs_simd_ensure(); cs_k.gelu(x, y, n); }
static void s_quick_gelu(const float *x, float *y, size_t n) { cs_simd_ensure(); cs_k.quick_gelu(x, y, n); }
static void s_silu(const float *x, float *y, size_t n) { cs_simd_ensure(); cs_k.silu(x, y, n); }
static void s_sigmoid(const float *x, float *y, size_t n) { cs_simd_ensure(); cs_k.sigmoid(x, y, n); }
static void s_softmax(float *x, size_t n) { cs_simd_ensure(); cs_k.softmax(x, n); }

static void s_sumsq_cols(const float *x, size_t rows, size_t C, float *sumsq)
{
    cs_simd_ensure();
    cs_k.sumsq_cols(x, rows, C, sumsq);
}

static void s_grn_apply(const float *x, float *y, size_t rows, size_t C, const float *nx, const float *gamma,
                        const float *beta)
{
    cs_simd_ensure();
    cs_k.grn_apply(x, y, rows, C, nx, gamma, beta);
}

static void s_add(const float *a, const float *b, float *y, size_t n) { cs_simd_ensure(); cs_k.add(a, b, y, n); }
static void s_mul(const float *a, const float *b, float *y, size_t n) { cs_simd_ensure(); cs_k.mul(a, b, y, n); }
static void s_scale(const float *x, float s, float *y, size_t n) { cs_simd_ensure(); cs_k.scale(x, s, y, n); }

static void s_modulate(const float *x, float *y, size_t rows, size_t C, const float *a, const float *b)
{
    cs_simd_ensure();
    cs_k.modulate(x, y, rows, C, a, b);
}

static void s_add_bias(const float *x, float *y, size_t rows, size_t C, const float *bias)
{
    cs_simd_ensure();
    cs_k.add_bias(x, y, rows, C, bias);
}

static void s_dwconv3x3(const float *x, float *y, size_t H, size_t W, size_t C, const float *w, const float *bias,
                        int replicate, size_t h0, size_t h1)
{
    cs_simd_ensure();
    cs_k.dwconv3x3(x, y, H, W, C, w, bias, replicate, h0, h1);
}

static void s_gemm_f32(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *Bp, size_t pstride,
                       float *C, size_t ldc, int cont)
{
    cs_simd_ensure();
    cs_k.gemm_f32(M, N, K, A, lda, Bp, pstride, C, ldc, cont);
}

static void s_gemm_f32_bf16w(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                             size_t pstride, float *C, size_t ldc, int cont)
{
    cs_simd_ensure();
    cs_k.gemm_f32_bf16w(M, N, K, A, lda, Bp, pstride, C, ldc, cont);
}

/* every entry has its stub: an entry added to cs_kernels needs one here */
_Static_assert(sizeof(cs_kernels) == 20 * sizeof(void (*)(void)), "cs_kernels changed: add the new entry's stub");
#define STUBS                                                                                          \
    {                                                                                                  \
        .bf16_to_f32 = s_bf16_to_f32, .f16_to_f32 = s_f16_to_f32, .f32_to_bf16 = s_f32_to_bf16,        \
        .f32_to_f16 = s_f32_to_f16, .layernorm = s_layernorm, .gelu = s_gelu,                          \
        .quick_gelu = s_quick_gelu, .silu = s_silu, .sigmoid = s_sigmoid, .softmax = s_softmax,        \
        .sumsq_cols = s_sumsq_cols, .grn_apply = s_grn_apply, .add = s_add, .mul = s_mul,              \
        .scale = s_scale, .modulate = s_modulate, .add_bias = s_add_bias, .dwconv3x3 = s_dwconv3x3,    \
        .gemm_f32 = s_gemm_f32, .gemm_f32_bf16w = s_gemm_f32_bf16w,                                    \
    }

cs_kernels cs_k = STUBS;
static const cs_kernels stubs = STUBS;

int cs_kernels_untouched(void) { return !memcmp(&cs_k, &stubs, sizeof stubs); }
