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

/* The AMX family (TDPBF16PS, Intel SDM "TDPBF16PS", matched bit for bit on
 * a Sapphire/Emerald Rapids core): the same operands and packed B, another
 * order of operations. k pairs go in steps of 16 (32 k; a last short step
 * is padded with zero pairs); per step and output, an even chain e and an
 * odd chain o start from +0 and take, for q = 0..15 in order,
 *     e = fma(a[2q], b[2q], e);  o = fma(a[2q+1], b[2q+1], o)
 * then acc = acc + (e + o) -- every operation rounded to nearest even with
 * DAZ/FTZ, as above. acc starts from +0 or C (cont); with K = 0 it is +0 or
 * C untouched. Again one chain per element, whatever the tiling or thread
 * split, but not the chain of VDPBF16PS: the two families differ in the
 * last bits (tests/test_gemm_bf16.c checks each against its own model). */
void cs_gemm_bf16_amx_ref(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                          size_t pstride, float *C, size_t ldc, int cont);

/* The native kernel for the current SIMD level (simd/dispatch.c), at the
 * avx512 level only: the AMX one where the CPU has AMX-BF16, the OS grants
 * the tile state (arch_prctl ARCH_REQ_XCOMP_PERM on Linux) and CASCADE_AMX
 * is not 0; else the AVX512-BF16 one where the CPU has AVX512-BF16 (its
 * two-FMA form on Intel, or as CASCADE_BF16_FMA says); else
 * NULL (also where the build lacks the kernels). */
cs_gemm_bf16_fn cs_gemm_bf16_native(void);
/* Name of the native kernel, or NULL. */
const char *cs_gemm_bf16_name(void);
/* The reference that models the native kernel bit for bit (cs_gemm_bf16_ref
 * or cs_gemm_bf16_amx_ref), or NULL without one. */
cs_gemm_bf16_fn cs_gemm_bf16_native_ref(void);
/* 1 when the CPU and OS allow AMX-BF16 tiles in this process (asks the OS
 * once), whatever CASCADE_AMX and the level say. */
int cs_amx_usable(void);

/* A kernel's form with A packed beforehand, for a product whose A meets
 * several column chunks (each kernel call would pack it again): rows
 * [r, r+mr) (r a multiple of mr) as one tile of KQ pairs x per uint32 at
 * Ap + r/mr * KQ * per, KQ = ceil(K/2) rounded up to a multiple of kq,
 * zero rows past M (cs_gemm_bf16_apacked_words). pack packs rows [0, M) of
 * A at Ap (callers split M at multiples of mr); run is the kernel on rows
 * packed so, row 0 at Ap: the same bits as the kernel. */
typedef struct {
    size_t mr, per, kq;
    void (*pack)(const float *A, size_t lda, size_t M, size_t K, uint32_t *Ap);
    void (*run)(size_t M, size_t N, size_t K, const uint32_t *Ap, const uint32_t *Bp, size_t pstride, float *C,
                size_t ldc, int cont);
} cs_gemm_bf16_apacked;

/* uint32 per tile of mr rows */
static inline size_t cs_gemm_bf16_apacked_words(const cs_gemm_bf16_apacked *ap, size_t K)
{
    return ((K + 1) / 2 + ap->kq - 1) / ap->kq * ap->kq * ap->per;
}

/* kern's pre-packed form, or NULL where it has none (the references; AMX
 * unless $CASCADE_AMX_APACK=1: not yet timed on an AMX CPU) */
const cs_gemm_bf16_apacked *cs_gemm_bf16_apacked_of(cs_gemm_bf16_fn kern);

#ifdef CS_HAVE_AVX512BF16
extern const cs_gemm_bf16_apacked cs_gemm_bf16_avx512_apacked, cs_gemm_bf16_avx512_fma_apacked;
/* VDPBF16PS itself, and the same chain as two fp32 FMAs a pair under
 * DAZ/FTZ (simd/x86/gemm_bf16_avx512.c): the same bits */
void cs_gemm_bf16_avx512(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                         size_t pstride, float *C, size_t ldc, int cont);
void cs_gemm_bf16_avx512_fma(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                             size_t pstride, float *C, size_t ldc, int cont);
#endif
#ifdef CS_HAVE_AMX
/* needs cs_amx_usable() */
void cs_gemm_bf16_amx(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                      size_t pstride, float *C, size_t ldc, int cont);
extern const cs_gemm_bf16_apacked cs_gemm_bf16_amx_apacked;
#endif

#endif
