/* One body of the float32 GEMM micro-kernels, included by each ISA file
 * after it defines its vector macros:
 *   VF              vector type; VW floats per vector (16 % VW == 0)
 *   VZERO() VLOAD(p) VSTORE(p, v) VBCAST(x) VFMA(a, b, c) = a*b + c, fused
 *   VLOADN(p, n) VSTOREN(p, v, n)   the first n < VW lanes only
 *   GEMM_MR         rows of a register tile; GEMM_NP panels of 16 columns
 * The contract (kernels.h, gemm_f32): C[i][j] is one fused multiply-add
 * chain over k = 0..K-1 in order, started from 0 or from C[i][j] (cont), so
 * every level, tile and blocking gives the same bits as the scalar
 * reference: the tile shape decides only which lanes do the work.
 *
 * Included a second time with GEMM_BF16W defined, it makes gemm_f32_bf16w:
 * the same kernel reading B as bf16 pair panels (simd/gemm_bf16.h), which
 * needs three more macros:
 *   VI              integer vector of VW uint32; VLOADI(p) loads one
 *   VLO(v) VHI(v)   the low / high bf16 halves of each lane as floats
 * bf16 -> float is exact and the k order is the same, so it gives the bits
 * gemm_f32 gives on the same weights widened to float32 panels. */

#ifndef GEMM_TPL_DEFS
#define GEMM_TPL_DEFS
#define GEMM_PANEL 16
#define GEMM_NV (GEMM_PANEL / VW)
#define GEMM_CAT_(a, b) a##b
#define GEMM_CAT(a, b) GEMM_CAT_(a, b)

/* acc[i][:] += A[k][i] * b[:] for each row i of the tile, k in order */
#define GEMM_FMA_ROWS(ROWS, NPAN, b, k)                                                                     \
    _Pragma("GCC unroll 32") for (int i = 0; i < ROWS; i++)                                                \
    {                                                                                                      \
        VF a = VBCAST(A[(k) * ROWS + i]);                                                                  \
        _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++) acc[i][j] = VFMA(a, b[j], acc[i][j]); \
    }

/* the k loop over float32 panels: K rows of 16 floats */
#define GEMM_KLOOP_F32(ROWS, NPAN)                                                                          \
    _Pragma("GCC unroll 4") for (size_t k = 0; k < K; k++)                                                 \
    {                                                                                                      \
        VF b[NPAN * GEMM_NV];                                                                              \
        _Pragma("GCC unroll 8") for (int p = 0; p < NPAN; p++)                                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < GEMM_NV; v++)                                      \
                b[p * GEMM_NV + v] = VLOAD(B + p * pstride + k * GEMM_PANEL + v * VW);                     \
        GEMM_FMA_ROWS(ROWS, NPAN, b, k)                                                                    \
    }

/* the k loop over bf16 pair panels: per pair q, k = 2q with the low halves,
 * then k = 2q+1 with the high ones; an odd K's last pair has only its low
 * half (its zero high half is never multiplied: 0 * Inf, -0 sums) */
#define GEMM_LOAD_PAIR(NPAN, raw, q)                                                                        \
    _Pragma("GCC unroll 8") for (int p = 0; p < NPAN; p++)                                                 \
        _Pragma("GCC unroll 8") for (int v = 0; v < GEMM_NV; v++)                                          \
            raw[p * GEMM_NV + v] = VLOADI(B + p * pstride + (q) * GEMM_PANEL + v * VW);
#define GEMM_KLOOP_BW(ROWS, NPAN)                                                                           \
    _Pragma("GCC unroll 2") for (size_t q = 0; q < K / 2; q++)                                             \
    {                                                                                                      \
        VI raw[NPAN * GEMM_NV];                                                                            \
        VF b[NPAN * GEMM_NV];                                                                              \
        GEMM_LOAD_PAIR(NPAN, raw, q)                                                                       \
        _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++) b[j] = VLO(raw[j]);              \
        GEMM_FMA_ROWS(ROWS, NPAN, b, 2 * q)                                                                \
        _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++) b[j] = VHI(raw[j]);              \
        GEMM_FMA_ROWS(ROWS, NPAN, b, 2 * q + 1)                                                            \
    }                                                                                                      \
    if (K & 1) {                                                                                           \
        VI raw[NPAN * GEMM_NV];                                                                            \
        VF b[NPAN * GEMM_NV];                                                                              \
        GEMM_LOAD_PAIR(NPAN, raw, K / 2)                                                                   \
        _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++) b[j] = VLO(raw[j]);              \
        GEMM_FMA_ROWS(ROWS, NPAN, b, K - 1)                                                                \
    }

/* ROWS x (NPAN panels) register tile over K steps of a packed A tile (k
 * major: ROWS floats per k); ncols columns of it are stored (the rest of
 * the last panel is packing padding). BT: B's element type; KLOOP: one of
 * the k loops above. */
#define GEMM_TILE(name, ROWS, NPAN, BT, KLOOP)                                                              \
    static inline __attribute__((always_inline)) void name(size_t K, const float *A, const BT *B,         \
                                                            size_t pstride, float *C, size_t ldc,          \
                                                            size_t ncols, int cont)                        \
    {                                                                                                      \
        VF acc[ROWS][NPAN * GEMM_NV];                                                                      \
        const int full = ncols == NPAN * GEMM_PANEL;                                                       \
        _Pragma("GCC unroll 32") for (int i = 0; i < ROWS; i++)                                            \
            _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++)                               \
        {                                                                                                  \
            size_t c0 = (size_t)j * VW;                                                                    \
            if (!cont || c0 >= ncols) acc[i][j] = VZERO();                                                 \
            else if (full || c0 + VW <= ncols) acc[i][j] = VLOAD(C + i * ldc + c0);                        \
            else acc[i][j] = VLOADN(C + i * ldc + c0, ncols - c0);                                         \
        }                                                                                                  \
        KLOOP(ROWS, NPAN)                                                                                  \
        _Pragma("GCC unroll 32") for (int i = 0; i < ROWS; i++)                                            \
            _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++)                               \
        {                                                                                                  \
            size_t c0 = (size_t)j * VW;                                                                    \
            if (full || c0 + VW <= ncols) VSTORE(C + i * ldc + c0, acc[i][j]);                             \
            else if (c0 < ncols) VSTOREN(C + i * ldc + c0, acc[i][j], ncols - c0);                         \
        }                                                                                                  \
    }

#define GEMM_KC 256   /* k per block (even: a block starts on a bf16 pair) */
#define GEMM_MB (8 * GEMM_MR)   /* rows per block: its packed A (<= 96 KB, on the stack) stays in L2 */
#endif /* GEMM_TPL_DEFS */

/* this inclusion's names, B element type, k loop and B offset of row k0 (even) */
#ifdef GEMM_BF16W
#define GEMM_FN gemm_f32_bf16w
#define GEMM_BT uint32_t
#define GEMM_KLOOP GEMM_KLOOP_BW
#define GEMM_BOFF(k0) ((k0) / 2 * GEMM_PANEL)
#define GEMM_T(x) GEMM_CAT(x, _bw)
#else
#define GEMM_FN gemm_f32
#define GEMM_BT float
#define GEMM_KLOOP GEMM_KLOOP_F32
#define GEMM_BOFF(k0) ((k0) * GEMM_PANEL)
#define GEMM_T(x) x
#endif

GEMM_TILE(GEMM_T(gemm_tile_full), GEMM_MR, GEMM_NP, GEMM_BT, GEMM_KLOOP)
GEMM_TILE(GEMM_T(gemm_tile_row), 1, GEMM_NP, GEMM_BT, GEMM_KLOOP)
#if GEMM_NP > 1
GEMM_TILE(GEMM_T(gemm_tile_full1), GEMM_MR, 1, GEMM_BT, GEMM_KLOOP)
GEMM_TILE(GEMM_T(gemm_tile_row1), 1, 1, GEMM_BT, GEMM_KLOOP)
#endif

/* C[M, N] (=|+=) A[M, K] Bp, Bp: ceil(N/16) panels of K x 16 floats (or
 * ceil(K/2) x 16 bf16 pairs), panel p at Bp + p * pstride. Loops as BLIS
 * orders them: per block of GEMM_MB rows and GEMM_KC k, the row tiles of A
 * are packed k-major (a step's broadcasts in one cache line); then each B
 * micro-panel (GEMM_KC x 16*GEMM_NP, L1) meets every row tile of the block. */
static void GEMM_FN(size_t M, size_t N, size_t K, const float *A, size_t lda, const GEMM_BT *Bp, size_t pstride,
                    float *C, size_t ldc, int cont)
{
    const size_t step = GEMM_NP * GEMM_PANEL;
    float at[GEMM_MB * GEMM_KC] __attribute__((aligned(64)));
    for (size_t m0 = 0; m0 < M; m0 += GEMM_MB) {
        size_t mb = M - m0 < GEMM_MB ? M - m0 : GEMM_MB, full = mb / GEMM_MR * GEMM_MR;
        for (size_t k0 = 0; k0 < K || (k0 == 0 && !cont); k0 += GEMM_KC) {
            size_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            int cc = cont || k0 > 0;
            const GEMM_BT *b = Bp + GEMM_BOFF(k0);
            for (size_t i = 0; i < full; i += GEMM_MR) {   /* tile i: at + i*kc, k-major */
                const float *ai = A + (m0 + i) * lda + k0;
                float *o = at + i * kc;
                for (size_t k = 0; k < kc; k++)
                    _Pragma("GCC unroll 16") for (int r = 0; r < GEMM_MR; r++) o[k * GEMM_MR + r] = ai[r * lda + k];
            }
            size_t j = 0;
            for (; j < N; j += step) {
                size_t n = N - j < step ? N - j : step;
                const GEMM_BT *bj = b + j / GEMM_PANEL * pstride;
                for (size_t i = 0; i < full; i += GEMM_MR) {
                    float *c = C + (m0 + i) * ldc + j;
#if GEMM_NP > 1
                    if (n <= GEMM_PANEL) {
                        GEMM_T(gemm_tile_full1)(kc, at + i * kc, bj, pstride, c, ldc, n, cc);
                        continue;
                    }
#endif
                    GEMM_T(gemm_tile_full)(kc, at + i * kc, bj, pstride, c, ldc, n, cc);
                }
                for (size_t r = full; r < mb; r++) {   /* the last rows, one at a time: the same chains */
                    const float *a = A + (m0 + r) * lda + k0;
                    float *c = C + (m0 + r) * ldc + j;
#if GEMM_NP > 1
                    if (n <= GEMM_PANEL) {
                        GEMM_T(gemm_tile_row1)(kc, a, bj, pstride, c, ldc, n, cc);
                        continue;
                    }
#endif
                    GEMM_T(gemm_tile_row)(kc, a, bj, pstride, c, ldc, n, cc);
                }
            }
            if (!K) break;
        }
    }
}

#undef GEMM_FN
#undef GEMM_BT
#undef GEMM_KLOOP
#undef GEMM_BOFF
#undef GEMM_T
