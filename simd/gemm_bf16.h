/* The bf16 matrix-product family: float32 activations rounded to bf16,
 * bf16 weights, float32 accumulation, with the arithmetic of x86's
 * VDPBF16PS (Intel SDM, "VDPBF16PS"): per output lane and per pair of k,
 *     acc = fma(a[2q+1], b[2q+1], acc);  acc = fma(a[2q], b[2q], acc)
 * each step an fp32 fused multiply-add rounded to nearest even, with
 * denormal inputs (a, b and acc) read as zero and denormal results flushed
 * to zero; MXCSR is neither read nor written. The product of two bf16
 * values is exact in fp32, so each step rounds once (the sum).
 *
 * Kept apart from the kernel table (kernels.h): only CPUs with AVX512-BF16
 * have a native kernel; elsewhere the scalar reference below is the only
 * implementation and callers should not pick bf16 at all.
 *
 * Packed B ("bf16 pairs"): ceil(N/16) panels, panel p at Bp + p*pstride
 * (uint32 units); panel p holds KP = ceil(K/2) rows of 16 uint32, the
 * uint32 of pair q and column j being bf16(b[2q][16p+j]) in the low half
 * and bf16(b[2q+1][16p+j]) in the high half. Halves past K and columns past
 * N are zero.
 *
 * Every C element is the chain above over q = 0..KP-1 in order, from +0 or
 * from C (cont): the same bits for any M tiling, thread split or CPU that
 * has the instruction, and the same as the reference (tests/test_gemm_bf16.c). */
#ifndef CS_GEMM_BF16_H
#define CS_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

/* C[M,N] (=|+=) bf16(A[M,K]) Bp. A: float32 rows (lda), each element
 * rounded to bf16 to nearest even (NaN stays NaN, as cs_f32_to_bf16) by
 * the kernel itself; an odd K's last pair gets a zero high half. */
typedef void (*cs_gemm_bf16_fn)(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                                size_t pstride, float *C, size_t ldc, int cont);

/* uint32 per panel: ceil(K/2) pairs x 16 columns */
static inline size_t cs_bf16_panel_size(size_t K) { return (K + 1) / 2 * 16; }

/* The scalar reference (simd/ref_bf16.c): emulates VDPBF16PS step by step. */
void cs_gemm_bf16_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp, size_t pstride,
                      float *C, size_t ldc, int cont);
/* One VDPBF16PS lane step, acc + a*b (a, b bf16 bits), for tests. */
float cs_bf16_dp_step(float acc, uint16_t a, uint16_t b);

/* The native kernel for the current SIMD level (simd/dispatch.c): the
 * AVX512-BF16 one when the level is avx512 and the CPU has AVX512-BF16 (and
 * the build has it), else NULL. */
cs_gemm_bf16_fn cs_gemm_bf16_native(void);
/* Name of the native kernel, or NULL. */
const char *cs_gemm_bf16_name(void);

#ifdef CS_HAVE_AVX512BF16
void cs_gemm_bf16_avx512(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                         size_t pstride, float *C, size_t ldc, int cont);
#endif

#endif
