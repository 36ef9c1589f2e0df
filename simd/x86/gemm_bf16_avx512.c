/* bf16 products with AVX512-BF16 (VDPBF16PS): the kernel of
 * simd/gemm_bf16.h. One instruction does 16 lanes x one k pair, twice the
 * work of an fp32 FMA, with the same loop structure as simd/gemm_tpl.h:
 * per block of GEMM_MB rows and KCP k pairs, A is rounded to bf16 and packed
 * pair-major per 12-row tile (a step's 12 broadcasts in 48 bytes), then each
 * 32-column step of B meets every tile of the block. Ragged row tiles are
 * padded with zero rows that are computed but not stored, so every stored
 * element is the same chain whatever the tiling.
 *
 * The rounding of A is done here with integer operations, not with
 * VCVTNEPS2BF16: that instruction flushes denormal inputs to zero (measured
 * on Zen 4; 0x007fffff must round up to the normal 0x0080). */
#include "bf16_avx512.h"
#include "gemm_bf16.h"

#ifdef CS_HAVE_AVX512BF16
#include <immintrin.h>
#include <string.h>

#define MR 12           /* rows of a register tile */
#define KCP 128         /* k pairs per block (256 k, as the fp32 kernel) */
#define MB (8 * MR)     /* rows per block: packed A is 48 KB */


/* rows [m0, m0+mb) x pairs [q0, q0+kcp) of A into at: tile t at
 * at + t*kcp*MR, pair-major (MR uint32 per pair); rows past mb are zero */
static void pack_a(const float *A, size_t lda, size_t K, size_t mb, size_t q0, size_t kcp, uint32_t *at)
{
    size_t ntiles = (mb + MR - 1) / MR;
    for (size_t r = 0; r < ntiles * MR; r++) {
        uint32_t *o = at + r / MR * kcp * MR + r % MR;
        if (r >= mb) {
            for (size_t q = 0; q < kcp; q++) o[q * MR] = 0;
            continue;
        }
        const float *a = A + r * lda;
        for (size_t q = 0; q < kcp; q += 8) {
            size_t k = 2 * (q0 + q), n = K - k < 16 ? K - k : 16;   /* zeros past K: an odd K's last half */
            uint32_t p[8];
            _mm256_storeu_si256((__m256i *)p, round_bf16(_mm512_maskz_loadu_ps(tmask(n), a + k)));
            size_t e = kcp - q < 8 ? kcp - q : 8;
            for (size_t s = 0; s < e; s++) o[(q + s) * MR] = p[s];
        }
    }
}

/* MR rows (mr stored) x NPAN panels over kcp pairs of a packed A tile */
#define BF16_TILE(name, NPAN)                                                                                     \
    static inline __attribute__((always_inline)) void name(size_t kcp, const uint32_t *A, const uint32_t *B,    \
                                                            size_t pstride, float *C, size_t ldc, size_t mr,     \
                                                            size_t ncols, int cont)                              \
    {                                                                                                            \
        __m512 acc[MR][NPAN];                                                                                    \
        _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                 \
            _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                            \
        {                                                                                                        \
            size_t c0 = p * 16;                                                                                  \
            if (!cont || i >= mr || c0 >= ncols) acc[i][p] = _mm512_setzero_ps();                                \
            else if (c0 + 16 <= ncols) acc[i][p] = _mm512_loadu_ps(C + i * ldc + c0);                            \
            else acc[i][p] = _mm512_maskz_loadu_ps(tmask(ncols - c0), C + i * ldc + c0);                         \
        }                                                                                                        \
        _Pragma("GCC unroll 2") for (size_t q = 0; q < kcp; q++)                                                 \
        {                                                                                                        \
            __m512bh b[NPAN];                                                                                    \
            _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                            \
                b[p] = (__m512bh)_mm512_loadu_si512(B + p * pstride + q * 16);                                   \
            _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                             \
            {                                                                                                    \
                __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[q * MR + i]);                                    \
                _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                        \
                    acc[i][p] = _mm512_dpbf16_ps(acc[i][p], a, b[p]);                                            \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                 \
            _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                            \
        {                                                                                                        \
            size_t c0 = p * 16;                                                                                  \
            if (i >= mr || c0 >= ncols) continue;                                                                \
            if (c0 + 16 <= ncols) _mm512_storeu_ps(C + i * ldc + c0, acc[i][p]);                                 \
            else _mm512_mask_storeu_ps(C + i * ldc + c0, tmask(ncols - c0), acc[i][p]);                          \
        }                                                                                                        \
    }

BF16_TILE(tile2, 2)
BF16_TILE(tile1, 1)

void cs_gemm_bf16_avx512(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                         size_t pstride, float *C, size_t ldc, int cont)
{
    size_t KP = (K + 1) / 2;
    uint32_t at[MB * KCP] __attribute__((aligned(64)));
    for (size_t m0 = 0; m0 < M; m0 += MB) {
        size_t mb = M - m0 < MB ? M - m0 : MB, ntiles = (mb + MR - 1) / MR;
        for (size_t q0 = 0; q0 < KP || (q0 == 0 && !cont); q0 += KCP) {
            size_t kcp = KP - q0 < KCP ? KP - q0 : KCP;
            int cc = cont || q0 > 0;
            pack_a(A + m0 * lda, lda, K, mb, q0, kcp, at);
            for (size_t j = 0; j < N; j += 32) {
                size_t n = N - j < 32 ? N - j : 32;
                const uint32_t *bj = Bp + j / 16 * pstride + q0 * 16;
                for (size_t t = 0; t < ntiles; t++) {
                    size_t mr = mb - t * MR < MR ? mb - t * MR : MR;
                    float *c = C + (m0 + t * MR) * ldc + j;
                    if (n <= 16) tile1(kcp, at + t * kcp * MR, bj, pstride, c, ldc, mr, n, cc);
                    else tile2(kcp, at + t * kcp * MR, bj, pstride, c, ldc, mr, n, cc);
                }
            }
            if (!KP) break;
        }
    }
}
#endif
