/* One body of the float32 GEMM micro-kernels, included by each ISA file
 * after it defines its vector macros:
 *   VF              vector type; VW floats per vector (16 % VW == 0)
 *   VZERO() VLOAD(p) VSTORE(p, v) VBCAST(x) VFMA(a, b, c) = a*b + c, fused
 *   VLOADN(p, n) VSTOREN(p, v, n)   the first n < VW lanes only
 *   GEMM_MR         rows of a register tile; GEMM_NP panels of 16 columns
 * The contract (kernels.h, gemm_f32): C[i][j] is one fused multiply-add
 * chain over k = 0..K-1 in order, started from 0 or from C[i][j] (cont), so
 * every level, tile and blocking gives the same bits as the scalar
 * reference: the tile shape decides only which lanes do the work. */

#define GEMM_PANEL 16
#define GEMM_NV (GEMM_PANEL / VW)

/* ROWS x (NPAN panels) register tile over K steps of a packed A tile (k
 * major: ROWS floats per k); ncols columns of it are stored (the rest of
 * the last panel is packing padding) */
#define GEMM_TILE(name, ROWS, NPAN)                                                                         \
    static inline __attribute__((always_inline)) void name(size_t K, const float *A,                      \
                                                            const float *B, size_t pstride, float *C,      \
                                                            size_t ldc, size_t ncols, int cont)            \
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
        _Pragma("GCC unroll 4") for (size_t k = 0; k < K; k++) {                                           \
            VF b[NPAN * GEMM_NV];                                                                          \
            _Pragma("GCC unroll 8") for (int p = 0; p < NPAN; p++)                                         \
                _Pragma("GCC unroll 8") for (int v = 0; v < GEMM_NV; v++)                                  \
                    b[p * GEMM_NV + v] = VLOAD(B + p * pstride + k * GEMM_PANEL + v * VW);                 \
            _Pragma("GCC unroll 32") for (int i = 0; i < ROWS; i++)                                        \
            {                                                                                              \
                VF a = VBCAST(A[k * ROWS + i]);                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++)                           \
                    acc[i][j] = VFMA(a, b[j], acc[i][j]);                                                  \
            }                                                                                              \
        }                                                                                                  \
        _Pragma("GCC unroll 32") for (int i = 0; i < ROWS; i++)                                            \
            _Pragma("GCC unroll 8") for (int j = 0; j < NPAN * GEMM_NV; j++)                               \
        {                                                                                                  \
            size_t c0 = (size_t)j * VW;                                                                    \
            if (full || c0 + VW <= ncols) VSTORE(C + i * ldc + c0, acc[i][j]);                             \
            else if (c0 < ncols) VSTOREN(C + i * ldc + c0, acc[i][j], ncols - c0);                         \
        }                                                                                                  \
    }

GEMM_TILE(gemm_tile_full, GEMM_MR, GEMM_NP)
GEMM_TILE(gemm_tile_row, 1, GEMM_NP)
#if GEMM_NP > 1
GEMM_TILE(gemm_tile_full1, GEMM_MR, 1)
GEMM_TILE(gemm_tile_row1, 1, 1)
#endif

#define GEMM_KC 256   /* k per block */
#define GEMM_MB (8 * GEMM_MR)   /* rows per block: its packed A (<= 96 KB, on the stack) stays in L2 */

/* C[M, N] (=|+=) A[M, K] Bp, Bp: ceil(N/16) panels of K x 16 floats, panel p
 * at Bp + p * pstride. Loops as BLIS orders them: per block of GEMM_MB rows
 * and GEMM_KC k, the row tiles of A are packed k-major (a step's broadcasts
 * in one cache line); then each B micro-panel (GEMM_KC x 16*GEMM_NP, L1)
 * meets every row tile of the block. */
static void gemm_f32(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *Bp, size_t pstride,
                     float *C, size_t ldc, int cont)
{
    const size_t step = GEMM_NP * GEMM_PANEL;
    float at[GEMM_MB * GEMM_KC] __attribute__((aligned(64)));
    for (size_t m0 = 0; m0 < M; m0 += GEMM_MB) {
        size_t mb = M - m0 < GEMM_MB ? M - m0 : GEMM_MB, full = mb / GEMM_MR * GEMM_MR;
        for (size_t k0 = 0; k0 < K || (k0 == 0 && !cont); k0 += GEMM_KC) {
            size_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
            int cc = cont || k0 > 0;
            const float *b = Bp + k0 * GEMM_PANEL;
            for (size_t i = 0; i < full; i += GEMM_MR) {   /* tile i: at + i*kc, k-major */
                const float *ai = A + (m0 + i) * lda + k0;
                float *o = at + i * kc;
                for (size_t k = 0; k < kc; k++)
                    _Pragma("GCC unroll 16") for (int r = 0; r < GEMM_MR; r++) o[k * GEMM_MR + r] = ai[r * lda + k];
            }
            size_t j = 0;
            for (; j < N; j += step) {
                size_t n = N - j < step ? N - j : step;
                const float *bj = b + j / GEMM_PANEL * pstride;
                for (size_t i = 0; i < full; i += GEMM_MR) {
                    float *c = C + (m0 + i) * ldc + j;
#if GEMM_NP > 1
                    if (n <= GEMM_PANEL) {
                        gemm_tile_full1(kc, at + i * kc, bj, pstride, c, ldc, n, cc);
                        continue;
                    }
#endif
                    gemm_tile_full(kc, at + i * kc, bj, pstride, c, ldc, n, cc);
                }
                for (size_t r = full; r < mb; r++) {   /* the last rows, one at a time: the same chains */
                    const float *a = A + (m0 + r) * lda + k0;
                    float *c = C + (m0 + r) * ldc + j;
#if GEMM_NP > 1
                    if (n <= GEMM_PANEL) {
                        gemm_tile_row1(kc, a, bj, pstride, c, ldc, n, cc);
                        continue;
                    }
#endif
                    gemm_tile_row(kc, a, bj, pstride, c, ldc, n, cc);
                }
            }
            if (!K) break;
        }
    }
}
