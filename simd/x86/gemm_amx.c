/* bf16 products with AMX tiles (TDPBF16PS): the AMX family of
 * simd/gemm_bf16.h. A 16x16 fp32 C tile takes 16 rows of A x 16 k pairs
 * (one 1 KB tile of bf16 pairs) times 16 pairs x 16 columns of B -- and
 * that B tile is exactly 16 rows of a packed panel (pair-major, 64 bytes a
 * row), so the weights keep the one layout of wpack.c. The block is 2x2 C
 * tiles (32 rows x 32 columns; tiles 0-3 C, 4-5 A, 6-7 B); per block of KC
 * k steps and MB rows A is rounded to bf16 and packed tile by tile, then
 * every 32-column step of B meets every row pair of the block, C staying in
 * tiles over the block's steps and going through memory between blocks
 * (exact: fp32 in, fp32 out). Ragged rows, columns and the last k step are
 * zero-padded and computed but not stored, so every stored element is the
 * same chain of steps whatever the tiling. Tile rows and columns beyond the
 * call read zeros (A) or copies (B, C), never memory outside the operands.
 *
 * Needs the tile state granted (cs_amx_usable, simd/dispatch.c); the tile
 * configuration is loaded per call and released at its end, so the
 * thread's extended state goes back to its small init form between calls. */
#include "bf16_avx512.h"
#include "gemm_bf16.h"

#ifdef CS_HAVE_AMX
#include <immintrin.h>
#include <string.h>

#define KC 16            /* k steps (16 pairs each) per block: 512 k */
#define MB 96            /* rows per block: packed A is 96 KB */
#define TILE_BYTES 1024

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;


/* rows [0, mb) x k steps [s0, s0+ks) of A into at: tile (t, s) at
 * at + (t*ks + s) * 512 uint16, 16 rows of 32 bf16; zeros past mb and K */
static void pack_a(const float *A, size_t lda, size_t K, size_t mb, size_t s0, size_t ks, uint16_t *at)
{
    size_t nt = (mb + 15) / 16;
    for (size_t r = 0; r < nt * 16; r++)
        for (size_t s = 0; s < ks; s++) {
            uint16_t *o = at + ((r / 16) * ks + s) * 512 + (r % 16) * 32;
            size_t k = (s0 + s) * 32;
            if (r >= mb || k >= K) {
                memset(o, 0, 64);
                continue;
            }
            const float *a = A + r * lda + k;
            size_t n = K - k < 32 ? K - k : 32;
            __m512 lo = _mm512_maskz_loadu_ps(tmask(n < 16 ? n : 16), a);
            __m512 hi = _mm512_maskz_loadu_ps(tmask(n > 16 ? n - 16 : 0), a + 16);
            _mm256_storeu_si256((__m256i *)o, round_bf16(lo));
            _mm256_storeu_si256((__m256i *)(o + 16), round_bf16(hi));
        }
}

/* C tile (rows [r, r+16) x columns [c, c+16) of a mr x nc corner) into tile T */
#define LOAD_C(T, c, ldc, mr, nc, buf)                                                        \
    do {                                                                                      \
        if ((mr) >= 16 && (nc) >= 16) _tile_loadd(T, c, (ldc) * 4);                          \
        else {                                                                                \
            memset(buf, 0, TILE_BYTES);                                                       \
            for (size_t i_ = 0; i_ < (mr); i_++) memcpy(buf + i_ * 16, (c) + i_ * (ldc), (nc) * 4); \
            _tile_loadd(T, buf, 64);                                                          \
        }                                                                                     \
    } while (0)
#define STORE_C(T, c, ldc, mr, nc, buf)                                                       \
    do {                                                                                      \
        if ((mr) >= 16 && (nc) >= 16) _tile_stored(T, c, (ldc) * 4);                         \
        else {                                                                                \
            _tile_stored(T, buf, 64);                                                         \
            for (size_t i_ = 0; i_ < (mr); i_++) memcpy((c) + i_ * (ldc), buf + i_ * 16, (nc) * 4); \
        }                                                                                     \
    } while (0)

static inline size_t clip16(size_t left) { return left < 16 ? left : 16; }

/* one 32x32 block (mr <= 32 rows, nc <= 32 columns stored) over ks steps:
 * at = its first A tile (step-major within a row tile, the next row tile
 * tstride uint16 further),
 * b0/b1 = the two panels at the block's first pair, bt = zero-padded copies
 * of the last step's B tiles when it is short (else NULL) */
static void block(size_t ks, const uint16_t *at, size_t tstride, const uint32_t *b0, const uint32_t *b1,
                  const uint32_t *bt0, const uint32_t *bt1, float *C, size_t ldc, size_t mr, size_t nc, int load,
                  float *buf)
{
    int two_m = mr > 16, two_n = nc > 16;
    size_t m1 = two_m ? mr - 16 : 0, n1 = two_n ? nc - 16 : 0, m0 = clip16(mr), n0 = clip16(nc);
    if (load) {
        LOAD_C(0, C, ldc, m0, n0, buf);
        if (two_n) LOAD_C(1, C + 16, ldc, m0, n1, buf);
        if (two_m) LOAD_C(2, C + 16 * ldc, ldc, m1, n0, buf);
        if (two_m && two_n) LOAD_C(3, C + 16 * ldc + 16, ldc, m1, n1, buf);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const uint16_t *at1 = at + tstride;
    for (size_t s = 0; s < ks; s++) {
        int tail = bt0 && s == ks - 1;
        _tile_loadd(6, tail ? bt0 : b0 + s * 256, 64);
        _tile_loadd(4, at + s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_m) {
            _tile_loadd(5, at1 + s * 512, 64);
            _tile_dpbf16ps(2, 5, 6);
        }
        if (two_n) {
            _tile_loadd(7, tail ? bt1 : b1 + s * 256, 64);
            _tile_dpbf16ps(1, 4, 7);
            if (two_m) _tile_dpbf16ps(3, 5, 7);
        }
    }
    STORE_C(0, C, ldc, m0, n0, buf);
    if (two_n) STORE_C(1, C + 16, ldc, m0, n1, buf);
    if (two_m) STORE_C(2, C + 16 * ldc, ldc, m1, n0, buf);
    if (two_m && two_n) STORE_C(3, C + 16 * ldc + 16, ldc, m1, n1, buf);
}

/* the loops around the blocks; Ap NULL: A packed here, a block of MB rows
 * and KC steps at a time into at; else A packed beforehand (all steps of a
 * row tile together, cs_gemm_bf16_amx_apacked, this call's row 0 at Ap).
 * The same blocks and steps either way. */
static void gemm(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint16_t *Ap, const uint32_t *Bp,
                 size_t pstride, float *C, size_t ldc, int cont, uint16_t *at)
{
    size_t KP = (K + 1) / 2, nsteps = (KP + 15) / 16;
    if (!M || !N) return;
    if (!nsteps) {   /* K = 0: +0 or C untouched */
        if (!cont)
            for (size_t i = 0; i < M; i++) memset(C + i * ldc, 0, N * 4);
        return;
    }
    tilecfg cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    uint32_t bt[2][256] __attribute__((aligned(64)));
    float buf[256] __attribute__((aligned(64)));
    size_t qt = KP % 16;   /* pairs in a short last step, 0 if none */
    /* k blocks outermost: the call's slice of B for one k block (N x 512 k,
     * 384 KB at N = 384) stays in L2 while every row block meets it */
    for (size_t s0 = 0; s0 < nsteps; s0 += KC) {
        size_t ks = nsteps - s0 < KC ? nsteps - s0 : KC;
        int last = s0 + ks == nsteps, load = cont || s0 > 0;
        for (size_t m0 = 0; m0 < M; m0 += MB) {
            size_t mb = M - m0 < MB ? M - m0 : MB;
            const uint16_t *ab = Ap ? Ap + (m0 / 16 * nsteps + s0) * 512 : at;
            size_t tstride = Ap ? nsteps * 512 : ks * 512;
            if (!Ap) pack_a(A + m0 * lda, lda, K, mb, s0, ks, at);
            for (size_t j = 0; j < N; j += 32) {
                size_t nc = N - j < 32 ? N - j : 32;
                const uint32_t *b0 = Bp + j / 16 * pstride + s0 * 256, *b1 = nc > 16 ? b0 + pstride : NULL;
                const uint32_t *bt0 = NULL, *bt1 = NULL;
                if (last && qt) {   /* the short last step: its pairs, then zeros */
                    size_t o = (ks - 1) * 256;
                    memset(bt, 0, sizeof bt);
                    memcpy(bt[0], b0 + o, qt * 64);
                    if (b1) memcpy(bt[1], b1 + o, qt * 64);
                    bt0 = bt[0], bt1 = bt[1];
                }
                for (size_t r = 0; r < mb; r += 32) {
                    size_t mr = mb - r < 32 ? mb - r : 32;
                    block(ks, ab + r / 16 * tstride, tstride, b0, b1, bt0, bt1, C + (m0 + r) * ldc + j, ldc, mr, nc,
                          load, buf);
                }
            }
        }
    }
    _tile_release();
}

void cs_gemm_bf16_amx(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp, size_t pstride,
                      float *C, size_t ldc, int cont)
{
    uint16_t at[MB * KC * 32] __attribute__((aligned(64)));
    gemm(M, N, K, A, lda, NULL, Bp, pstride, C, ldc, cont, at);
}

/* A packed once for many calls: pack_a over all steps, the tile of rows
 * [16t, 16t+16) at Ap + t * (pairs rounded up to 16) * 16 uint32 */
static void pack_all(const float *A, size_t lda, size_t M, size_t K, uint32_t *Ap)
{
    pack_a(A, lda, K, M, 0, ((K + 1) / 2 + 15) / 16, (uint16_t *)Ap);
}

static void run_packed(size_t M, size_t N, size_t K, const uint32_t *Ap, const uint32_t *Bp, size_t pstride,
                       float *C, size_t ldc, int cont)
{
    gemm(M, N, K, NULL, 0, (const uint16_t *)Ap, Bp, pstride, C, ldc, cont, NULL);
}

const cs_gemm_bf16_apacked cs_gemm_bf16_amx_apacked = {16, 16, 16, pack_all, run_packed};
#endif
