/* The kernel table: one struct of function pointers, filled with the scalar
 * reference (simd/ref.c) and upgraded level by level on first use or an
 * explicit pick (simd/dispatch.c). Every variant must agree with the reference.
 *
 * Conventions: float32 unless named otherwise; "rows x C" means rows of C
 * contiguous floats (channels-last); in-place is allowed where x == y. No
 * kernel allocates or threads: callers split work (see src/ops.c). */
#ifndef CS_KERNELS_H
#define CS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CS_SIMD_SCALAR = 0,
    CS_SIMD_AVX2,     /* AVX2 + FMA + F16C */
    CS_SIMD_AVX512,   /* AVX-512 F/BW/DQ/VL (+BF16 where available) */
    CS_SIMD_NEON,
    CS_SIMD_LEVELS
} cs_simd_level;

typedef struct {
    /* conversions, n elements */
    void (*bf16_to_f32)(const uint16_t *x, float *y, size_t n);
    void (*f16_to_f32)(const uint16_t *x, float *y, size_t n);
    void (*f32_to_bf16)(const float *x, uint16_t *y, size_t n);   /* round to nearest even */
    void (*f32_to_f16)(const float *x, uint16_t *y, size_t n);    /* round to nearest even */

    /* LayerNorm over each row of C: biased variance; w, b may be NULL (no affine). */
    void (*layernorm)(const float *x, float *y, size_t rows, size_t C, float eps,
                      const float *w, const float *b);

    /* activations, n elements */
    void (*gelu)(const float *x, float *y, size_t n);        /* exact erf form */
    void (*quick_gelu)(const float *x, float *y, size_t n);  /* x*sigmoid(1.702x) */
    void (*silu)(const float *x, float *y, size_t n);
    void (*sigmoid)(const float *x, float *y, size_t n);

    /* softmax of one row in place, max-subtracted */
    void (*softmax)(float *x, size_t n);

    /* GRN pieces over rows x C: sumsq[c] += sum_rows x^2 (accumulates, in double
     * precision is not required; float is what torch uses for norm) and
     * y = gamma*(x*nx) + beta + x with per-channel nx, gamma, beta. */
    void (*sumsq_cols)(const float *x, size_t rows, size_t C, float *sumsq);
    void (*grn_apply)(const float *x, float *y, size_t rows, size_t C,
                      const float *nx, const float *gamma, const float *beta);

    /* element-wise, n elements */
    void (*add)(const float *a, const float *b, float *y, size_t n);
    void (*mul)(const float *a, const float *b, float *y, size_t n);
    void (*scale)(const float *x, float s, float *y, size_t n);
    /* rows x C: y = x*(1+a[c]) + b[c] */
    void (*modulate)(const float *x, float *y, size_t rows, size_t C,
                     const float *a, const float *b);
    /* rows x C: y = x + bias[c] */
    void (*add_bias)(const float *x, float *y, size_t rows, size_t C, const float *bias);

    /* Depthwise 3x3 over one image, channels-last x[H][W][C] -> y[H][W][C],
     * w[C][3][3] (PyTorch layout), bias[C] (may be NULL). Rows [h0,h1) of the
     * output only (threading splits rows). pad: 0 = zeros, 1 = replicate. */
    void (*dwconv3x3)(const float *x, float *y, size_t H, size_t W, size_t C,
                      const float *w, const float *bias, int replicate,
                      size_t h0, size_t h1);

    /* C[M,N] = A[M,K] Bp, or C += with cont (continuing each sum across K
     * blocks). Bp: ceil(N/16) panels of K x 16 floats, panel p at
     * Bp + p*pstride, columns past N zero. Each C element is one fused
     * multiply-add chain over k in order, from 0 or from C: every level,
     * tiling and thread split gives the same bits (simd/gemm_tpl.h). */
    void (*gemm_f32)(size_t M, size_t N, size_t K, const float *A, size_t lda,
                     const float *Bp, size_t pstride, float *C, size_t ldc, int cont);
    /* gemm_f32 with Bp as bf16 pair panels (simd/gemm_bf16.h: ceil(K/2)
     * rows of 16 uint32 per panel, pstride in uint32): the same chains on
     * the weights widened to float32 (exact), so the same bits as gemm_f32
     * on those -- a packed bf16 weight needs no per-call conversion. */
    void (*gemm_f32_bf16w)(size_t M, size_t N, size_t K, const float *A, size_t lda,
                           const uint32_t *Bp, size_t pstride, float *C, size_t ldc, int cont);
} cs_kernels;

/* The active table (set by cs_simd_pick / cs_simd_use). Before that every
 * entry is a stub (simd/table.c) that runs cs_simd_ensure and forwards, so
 * a program computes at $CASCADE_SIMD's level without asking for it. */
extern cs_kernels cs_k;
/* Once per process, unless a level was installed already: cs_simd_pick, and
 * where that fails (a bad or unavailable $CASCADE_SIMD) the scalar reference
 * -- cs_simd_pick again (the library's cs_simd_init) reports the failure.
 * Thread-safe. */
void cs_simd_ensure(void);
/* 1 while cs_k is still the stub table (nothing computed, nothing chosen) */
int cs_kernels_untouched(void);

/* simd/ is a leaf (it includes nothing from src/): its failures are these
 * codes with a line in cs_simd_why(); the library's cs_simd_init/_set
 * (src/cpu.h) turn them into its own errors. */
enum { CS_SIMD_EBAD = -1, CS_SIMD_EUNAVAIL = -2 };
const char *cs_simd_why(void);   /* this thread's last failure */
/* Picks the best level this CPU (and OS) supports, or $CASCADE_SIMD if set
 * ($CASCADE_AMX: AMX on or off). Returns 0 or CS_SIMD_E*. Safe to call more
 * than once. */
int cs_simd_pick(void);
/* Forces one level; CS_SIMD_EUNAVAIL if the CPU or the build lacks it. */
int cs_simd_use(cs_simd_level level);
cs_simd_level cs_simd_current(void);   /* runs cs_simd_ensure first */
int cs_simd_supported(cs_simd_level level);   /* built in AND CPU/OS can run it */
const char *cs_simd_name(cs_simd_level level);
/* CPU description for `cascade info` */
const char *cs_cpu_model(void);
const char *cs_cpu_features(void);   /* space-separated list of detected features */

/* Fill a table with one level's kernels (leave entries a level lacks as is). */
void cs_kernels_ref(cs_kernels *k);
void cs_kernels_avx2(cs_kernels *k);
void cs_kernels_avx512(cs_kernels *k);
void cs_kernels_neon(cs_kernels *k);

#endif
