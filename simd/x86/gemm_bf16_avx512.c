/* bf16 products with the arithmetic of VDPBF16PS (simd/gemm_bf16.h), two
 * kernels with the same loops and the same bits:
 *  - cs_gemm_bf16_avx512: the instruction itself, one per 16 lanes x k pair.
 *    On Zen 4 it runs at the fp32 FMA rate, i.e. twice fp32's flops.
 *  - cs_gemm_bf16_avx512_fma: each pair as two fp32 FMAs (high k, then low)
 *    with MXCSR's DAZ and FTZ set for the call. A bf16 product is exact in
 *    fp32, so each FMA rounds exactly as one step of the instruction, and
 *    DAZ/FTZ (tininess after rounding) flush as it does: checked against the
 *    silicon on 64M random lanes and the tininess corner (tests/test_gemm_bf16).
 *    On Sapphire/Emerald Rapids VDPBF16PS zmm issues once per 2 cycles
 *    (measured: 1.66 G/s against 6.7 G/s FMAs on one core), so two FMAs a
 *    pair are twice as fast there; dispatch.c picks this one on Intel.
 * Loops as simd/gemm_tpl.h: per block of MB rows and KCP_* k pairs, A is
 * rounded to bf16 and packed per 12-row tile (a 16x16 transpose in
 * registers, 16 rows x 16 k at a time), then each 32-column step of B meets
 * every tile of the block. Ragged row tiles are padded with zero rows that
 * are computed but not stored, so every stored element is the same chain
 * whatever the tiling; C goes through memory (exact) between k blocks.
 * A caller that runs one A against several column chunks packs it once
 * beforehand (cs_gemm_bf16_apacked: the same tiles over all pairs) and
 * the same loops read the tiles from there.
 *
 * The rounding of A is done with integer operations, not with
 * VCVTNEPS2BF16: that instruction flushes denormal inputs to zero (measured
 * on Zen 4; 0x007fffff must round up to the normal 0x0080). */
#include "bf16_avx512.h"
#include "gemm_bf16.h"

#ifdef CS_HAVE_AVX512BF16
#include <immintrin.h>
#include <string.h>

#define MR 12           /* rows of a register tile */
/* k pairs per block: the VDPBF16PS form 256 (512 k: the C tile's loads
 * and stores per block halved; cs_linear 3-11 % faster at 1 thread than
 * with 128 on most model shapes, Zen 4), the FMA form 128 (its A holds two
 * floats a pair; 256 not measured on Intel). Either packed A block is
 * MB x 256 words. */
#define KCP_DP 256
#define KCP_FMA 128
#define MB (8 * MR)     /* rows per block */
#define TMASK 0x0fff    /* the tile's 12 rows of a 16-lane column */

/* r[i] = row i of a 16x16 block of 32-bit lanes -> r[c] = column c */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {   /* s[4g+c], 128-bit lane L: column 4L+c of rows 4g..4g+3 */
        r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {   /* a 4x4 transpose of 128-bit lanes */
        __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xee);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xee);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

static inline __m512 load_part(const float *a, size_t k, size_t K)
{
    size_t n = k >= K ? 0 : K - k < 16 ? K - k : 16;   /* zeros past K: an odd K's last half */
    return _mm512_maskz_loadu_ps(tmask(n), a + k);
}

/* rows [0, mb) x pairs [q0, q0+kcp) of A (mb <= MB), each tile of MR rows
 * (zero rows past mb) through 16x16 transposes, 16 pairs (32 k) at a time.
 * fp32 == 0: tile t at at + t*kcp*MR uint32, pair-major, MR pairs a pair.
 * fp32 == 1: tile t at at + t*kcp*2*MR floats, per pair MR floats of the
 * high k then MR of the low k, each the bf16 value widened (exact). */
static void pack_a(const float *A, size_t lda, size_t K, size_t mb, size_t q0, size_t kcp, uint32_t *at, int fp32)
{
    size_t ntiles = (mb + MR - 1) / MR, per = fp32 ? 2 * MR : MR;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (size_t t = 0; t < ntiles; t++) {
        uint32_t *o = at + t * kcp * per;
        for (size_t q = 0; q < kcp; q += 16) {
            size_t k = 2 * (q0 + q), e = kcp - q < 16 ? kcp - q : 16;   /* pairs stored */
            __m512 r[16], r2[16];
            for (size_t i = 0; i < 16; i++) {
                size_t row = t * MR + i;
                if (i >= MR || row >= mb) {
                    r[i] = r2[i] = _mm512_setzero_ps();
                    continue;
                }
                const float *a = A + row * lda;
                __m512i l = round_bf16_hi(load_part(a, k, K)), h = round_bf16_hi(load_part(a, k + 16, K));
                if (fp32) {   /* k .. k+15 and k+16 .. k+31 as widened floats */
                    r[i] = _mm512_castsi512_ps(_mm512_and_si512(l, hi));
                    r2[i] = _mm512_castsi512_ps(_mm512_and_si512(h, hi));
                } else {      /* 16 pairs: the low bf16 of a pair is the even k */
                    __m256i pl = _mm512_cvtepi32_epi16(_mm512_srli_epi32(l, 16));
                    __m256i ph = _mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16));
                    r[i] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(pl), ph, 1));
                }
            }
            transpose16(r);
            if (!fp32) {
                for (size_t s = 0; s < e; s++) _mm512_mask_storeu_ps(o + (q + s) * MR, TMASK, r[s]);
                continue;
            }
            transpose16(r2);
            for (size_t s = 0; s < e; s++) {   /* pair q+s: k+2s (low), k+2s+1 (high) */
                const __m512 *v = s < 8 ? r : r2;
                size_t c = 2 * (s % 8);
                _mm512_mask_storeu_ps(o + (q + s) * 2 * MR, TMASK, v[c + 1]);
                _mm512_mask_storeu_ps(o + (q + s) * 2 * MR + MR, TMASK, v[c]);
            }
        }
    }
}

/* MR rows (mr stored) x NPAN panels over kcp pairs of a packed A tile.
 * STEP(q): the k pair q into acc, from b (B's NPAN vectors of pair q). */
#define TILE_BODY(NPAN, STEP)                                                                                    \
    __m512 acc[MR][NPAN];                                                                                        \
    _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                     \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                                \
    {                                                                                                            \
        size_t c0 = p * 16;                                                                                      \
        if (!cont || i >= mr || c0 >= ncols) acc[i][p] = _mm512_setzero_ps();                                    \
        else if (c0 + 16 <= ncols) acc[i][p] = _mm512_loadu_ps(C + i * ldc + c0);                                \
        else acc[i][p] = _mm512_maskz_loadu_ps(tmask(ncols - c0), C + i * ldc + c0);                             \
    }                                                                                                            \
    _Pragma("GCC unroll 2") for (size_t q = 0; q < kcp; q++)                                                     \
    {                                                                                                            \
        __m512i b[NPAN];                                                                                         \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++) b[p] = _mm512_loadu_si512(B + p * pstride + q * 16); \
        STEP(NPAN, q)                                                                                            \
    }                                                                                                            \
    _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                     \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                                \
    {                                                                                                            \
        size_t c0 = p * 16;                                                                                      \
        if (i >= mr || c0 >= ncols) continue;                                                                    \
        if (c0 + 16 <= ncols) _mm512_storeu_ps(C + i * ldc + c0, acc[i][p]);                                     \
        else _mm512_mask_storeu_ps(C + i * ldc + c0, tmask(ncols - c0), acc[i][p]);                              \
    }

/* one VDPBF16PS per row and panel, A's pair broadcast */
#define STEP_DP(NPAN, q)                                                                                         \
    _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                     \
    {                                                                                                            \
        __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[(q) * MR + i]);                                          \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                                \
            acc[i][p] = _mm512_dpbf16_ps(acc[i][p], a, (__m512bh)b[p]);                                          \
    }

/* the same step as two FMAs: B's high halves (k = 2q+1) first, then the
 * low ones widened by a shift; A's widened values broadcast from memory */
#define STEP_FMA(NPAN, q)                                                                                        \
    {                                                                                                            \
        __m512 w[NPAN];                                                                                          \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                                \
            w[p] = _mm512_castsi512_ps(_mm512_and_si512(b[p], _mm512_set1_epi32((int)0xffff0000u)));             \
        _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                 \
        {                                                                                                        \
            __m512 a = _mm512_set1_ps(A[(q) * 2 * MR + i]);                                                      \
            _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++) acc[i][p] = _mm512_fmadd_ps(a, w[p], acc[i][p]); \
        }                                                                                                        \
        _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++)                                                \
            w[p] = _mm512_castsi512_ps(_mm512_slli_epi32(b[p], 16));                                             \
        _Pragma("GCC unroll 16") for (size_t i = 0; i < MR; i++)                                                 \
        {                                                                                                        \
            __m512 a = _mm512_set1_ps(A[(q) * 2 * MR + MR + i]);                                                 \
            _Pragma("GCC unroll 2") for (size_t p = 0; p < NPAN; p++) acc[i][p] = _mm512_fmadd_ps(a, w[p], acc[i][p]); \
        }                                                                                                        \
    }

#define TILE(name, AT, NPAN, STEP)                                                                               \
    static inline __attribute__((always_inline)) void name(size_t kcp, const AT *A, const uint32_t *B,          \
                                                            size_t pstride, float *C, size_t ldc, size_t mr,     \
                                                            size_t ncols, int cont)                              \
    {                                                                                                            \
        TILE_BODY(NPAN, STEP)                                                                                    \
    }

TILE(tile2_dp, uint32_t, 2, STEP_DP)
TILE(tile1_dp, uint32_t, 1, STEP_DP)
TILE(tile2_fma, float, 2, STEP_FMA)
TILE(tile1_fma, float, 1, STEP_FMA)

/* rows [0, mb) x pairs [q0, q0+kcp) of C += A B, every 32-column step of B
 * against every tile of the block; tile t's packed pairs at at + t*tstride */
static inline __attribute__((always_inline)) void block(size_t mb, size_t N, size_t kcp, size_t q0,
                                                        const uint32_t *at, size_t tstride, const uint32_t *Bp,
                                                        size_t pstride, float *C, size_t ldc, int cc, int fp32)
{
    size_t ntiles = (mb + MR - 1) / MR;
    for (size_t j = 0; j < N; j += 32) {
        size_t n = N - j < 32 ? N - j : 32;
        const uint32_t *bj = Bp + j / 16 * pstride + q0 * 16;
        for (size_t t = 0; t < ntiles; t++) {
            size_t mr = mb - t * MR < MR ? mb - t * MR : MR;
            float *c = C + t * MR * ldc + j;
            const uint32_t *a = at + t * tstride;
            if (fp32 && n <= 16) tile1_fma(kcp, (const float *)a, bj, pstride, c, ldc, mr, n, cc);
            else if (fp32) tile2_fma(kcp, (const float *)a, bj, pstride, c, ldc, mr, n, cc);
            else if (n <= 16) tile1_dp(kcp, a, bj, pstride, c, ldc, mr, n, cc);
            else tile2_dp(kcp, a, bj, pstride, c, ldc, mr, n, cc);
        }
    }
}

/* the loops around the tiles; fp32: the FMA form. Ap NULL: A packed here,
 * a block at a time; else A packed beforehand (cs_gemm_bf16_apacked's
 * layout, this call's row 0 at Ap). The same blocks and steps either way. */
static inline __attribute__((always_inline)) void gemm(size_t M, size_t N, size_t K, const float *A, size_t lda,
                                                       const uint32_t *Ap, const uint32_t *Bp, size_t pstride,
                                                       float *C, size_t ldc, int cont, int fp32, uint32_t *at)
{
    size_t KP = (K + 1) / 2, per = fp32 ? 2 * MR : MR, kcmax = fp32 ? KCP_FMA : KCP_DP;
    for (size_t m0 = 0; m0 < M; m0 += MB) {
        size_t mb = M - m0 < MB ? M - m0 : MB;
        for (size_t q0 = 0; q0 < KP || (q0 == 0 && !cont); q0 += kcmax) {
            size_t kcp = KP - q0 < kcmax ? KP - q0 : kcmax;
            int cc = cont || q0 > 0;
            if (Ap) {
                block(mb, N, kcp, q0, Ap + (m0 / MR * KP + q0) * per, KP * per, Bp, pstride, C + m0 * ldc, ldc, cc,
                      fp32);
            } else {
                pack_a(A + m0 * lda, lda, K, mb, q0, kcp, at, fp32);
                block(mb, N, kcp, q0, at, kcp * per, Bp, pstride, C + m0 * ldc, ldc, cc, fp32);
            }
            if (!KP) break;
        }
    }
}

#define AT_SIZE (MB * KCP_DP)   /* one block of packed A, either form (= MB * KCP_FMA * 2) */

void cs_gemm_bf16_avx512(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                         size_t pstride, float *C, size_t ldc, int cont)
{
    uint32_t at[AT_SIZE] __attribute__((aligned(64)));
    gemm(M, N, K, A, lda, NULL, Bp, pstride, C, ldc, cont, 0, at);
}

void cs_gemm_bf16_avx512_fma(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                             size_t pstride, float *C, size_t ldc, int cont)
{
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);   /* FTZ (bit 15) and DAZ (bit 6): VDPBF16PS's denormal rules */
    uint32_t at[AT_SIZE] __attribute__((aligned(64)));
    gemm(M, N, K, A, lda, NULL, Bp, pstride, C, ldc, cont, 1, at);
    _mm_setcsr(csr);
}

/* A packed once for many calls (cs_gemm_bf16_apacked): pack_a over all
 * pairs, tile t of rows [0, M) at Ap + t*KP*per */
static void pack_dp(const float *A, size_t lda, size_t M, size_t K, uint32_t *Ap)
{
    pack_a(A, lda, K, M, 0, (K + 1) / 2, Ap, 0);
}

static void pack_fma(const float *A, size_t lda, size_t M, size_t K, uint32_t *Ap)
{
    pack_a(A, lda, K, M, 0, (K + 1) / 2, Ap, 1);
}

static void run_dp(size_t M, size_t N, size_t K, const uint32_t *Ap, const uint32_t *Bp, size_t pstride, float *C,
                   size_t ldc, int cont)
{
    gemm(M, N, K, NULL, 0, Ap, Bp, pstride, C, ldc, cont, 0, NULL);
}

static void run_fma(size_t M, size_t N, size_t K, const uint32_t *Ap, const uint32_t *Bp, size_t pstride, float *C,
                    size_t ldc, int cont)
{
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
    gemm(M, N, K, NULL, 0, Ap, Bp, pstride, C, ldc, cont, 1, NULL);
    _mm_setcsr(csr);
}

const cs_gemm_bf16_apacked cs_gemm_bf16_avx512_apacked = {MR, MR, 1, pack_dp, run_dp};
const cs_gemm_bf16_apacked cs_gemm_bf16_avx512_fma_apacked = {MR, 2 * MR, 1, pack_fma, run_fma};
#endif
