/* Scalar reference of the bf16 products (simd/gemm_bf16.h): VDPBF16PS as
 * the Intel SDM defines it, one lane step at a time. fmaf gives the single
 * rounding of each step (the bf16 product is exact in fp32 anyway); the
 * denormal rules are applied by hand around it. */
#include "gemm_bf16.h"
#include "fp16.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* denormal -> zero of the same sign (DAZ on inputs, FTZ on results) */
static inline float flush(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

/* FTZ as x86 does it: a result is tiny (flushed) when it is below FLT_MIN
 * after rounding to 24 bits with an unbounded exponent, not on the denormal
 * grid fmaf rounds to. The two differ only where fmaf gives +-FLT_MIN: an
 * exact x in [FLT_MIN - 2^-150, FLT_MIN - 2^-151) rounds to FLT_MIN on the
 * grid (ties to even) but is tiny (the silicon returns 0: tests/test_gemm_bf16).
 * There x = acc + a*b is exact in double (the bf16 product has 16 bits, acc
 * is a multiple of 2^-149 near it, or a*b is too small to matter). */
float cs_bf16_dp_step(float acc, uint16_t a, uint16_t b)
{
    float fa = flush(cs_bf16_to_f32(a)), fb = flush(cs_bf16_to_f32(b)), fc = flush(acc), r = fmaf(fa, fb, fc);
    if (fabsf(r) == FLT_MIN && fabs((double)fc + (double)fa * (double)fb) < 0x1p-126 - 0x1p-151)
        return copysignf(0.0f, r);
    return flush(r);
}

void cs_gemm_bf16_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp, size_t pstride,
                      float *C, size_t ldc, int cont)
{
    size_t KP = (K + 1) / 2;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            const float *a = A + i * lda;
            const uint32_t *b = Bp + j / 16 * pstride + j % 16;
            float acc = cont ? C[i * ldc + j] : 0.0f;
            for (size_t q = 0; q < KP; q++) {
                uint16_t lo = cs_f32_to_bf16(a[2 * q]), hi = 2 * q + 1 < K ? cs_f32_to_bf16(a[2 * q + 1]) : 0;
                uint32_t bq = b[q * 16];
                acc = cs_bf16_dp_step(acc, hi, (uint16_t)(bq >> 16));
                acc = cs_bf16_dp_step(acc, lo, (uint16_t)bq);
            }
            C[i * ldc + j] = acc;
        }
}

void cs_gemm_bf16_amx_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                          size_t pstride, float *C, size_t ldc, int cont)
{
    size_t KP = (K + 1) / 2;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            const float *a = A + i * lda;
            const uint32_t *b = Bp + j / 16 * pstride + j % 16;
            float acc = cont ? C[i * ldc + j] : 0.0f;
            for (size_t q0 = 0; q0 < KP; q0 += 16) {
                float e = 0.0f, o = 0.0f;
                for (size_t q = q0; q < q0 + 16; q++) {   /* zero pairs past KP, as the kernel pads */
                    uint16_t lo = q < KP ? cs_f32_to_bf16(a[2 * q]) : 0;
                    uint16_t hi = 2 * q + 1 < K ? cs_f32_to_bf16(a[2 * q + 1]) : 0;
                    uint32_t bq = q < KP ? b[q * 16] : 0;
                    e = cs_bf16_dp_step(e, lo, (uint16_t)bq);
                    o = cs_bf16_dp_step(o, hi, (uint16_t)(bq >> 16));
                }
                acc = flush(flush(acc) + flush(e + o));
            }
            C[i * ldc + j] = acc;
        }
}
