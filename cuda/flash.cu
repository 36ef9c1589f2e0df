/* Attention without the score matrix (the flash-attention scheme: Dao et
 * al., 2022), for bf16 precision and 64-wide heads, the shape of every
 * attention in Stage C and B: per block 64 query rows of one head of one
 * image, 4 warps of 16 rows; keys and values stream through shared memory
 * 32 at a time; each warp keeps its rows' running max m and sum l and its
 * output rows O in shared memory:
 *     S = scale Q K^T (tensor cores, float32);  m' = max(m, rowmax S);
 *     P = exp(S - m') (bf16);  l = l e^(m - m') + rowsum P;
 *     O = O e^(m - m') + P V (tensor cores, float32);   at the end O / l.
 * The scores never reach memory (cuda/attention.cu writes all of them).
 * Anything else (a mask, other head widths, fp32/fp16) returns CS_EUNSUP
 * and attention.cu does it.
 *
 * Opt-in ($CASCADE_FLASH=1): correct on the H100 (the op tests), but this
 * first form is slower than the materialised scores there (Stage C lite
 * 22.8 vs 16.3 ms a forward, bench/RESULTS-cuda.md): 32 keys a step,
 * the output rows round-tripping through shared memory every step and
 * WMMA's opaque fragments leave the tensor cores idle most of the time.
 * mma.sync with register-resident rows is the next form. */
#include "core.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

using namespace nvcuda;

#define FA_D 64        /* head width */
#define FA_BQ 64       /* query rows a block */
#define FA_BK 32       /* keys a step */
#define FA_WARPS 4

struct __align__(128) fa_shared {
    __nv_bfloat16 q[FA_BQ][FA_D];
    __nv_bfloat16 k[FA_BK][FA_D];
    __nv_bfloat16 v[FA_BK][FA_D];
    float s[FA_WARPS][16][FA_BK];
    __nv_bfloat16 p[FA_WARPS][16][FA_BK];
    float o[FA_WARPS][16][FA_D];
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
/* rows of 64 bf16 (128 bytes) from a row stride of ld elements, as 16-byte
 * vectors; rows past nrows are zero */
static __device__ void load_rows(__nv_bfloat16 (*dst)[FA_D], const __nv_bfloat16 *src, size_t ld, int rows,
                                 int nrows)
{
    for (int i = threadIdx.x; i < rows * (FA_D / 8); i += blockDim.x) {
        int r = i / (FA_D / 8), c = (i % (FA_D / 8)) * 8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r < nrows) val = *(const uint4 *)(src + (size_t)r * ld + c);
        *(uint4 *)&dst[r][c] = val;
    }
}
#endif

/* grid (query blocks, heads, images); q/k/v dense bf16 [N, L, C] */
static __global__ void k_flash(const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v, size_t Lq,
                               size_t Lk, size_t C, float scale, float *o, size_t ldo)
{
#if __CUDA_ARCH__ >= 800
    __shared__ fa_shared sh;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    size_t n = blockIdx.z, h = blockIdx.y, q0 = (size_t)blockIdx.x * FA_BQ;
    const __nv_bfloat16 *qn = q + (n * Lq + q0) * C + h * FA_D, *kn = k + n * Lk * C + h * FA_D,
                        *vn = v + n * Lk * C + h * FA_D;
    int qrows = (int)(Lq - q0 < FA_BQ ? Lq - q0 : FA_BQ);
    load_rows(sh.q, qn, C, FA_BQ, qrows);
    for (int i = lane; i < 16 * FA_D; i += 32) sh.o[warp][i / FA_D][i % FA_D] = 0.0f;
    /* lanes 2r and 2r+1 own row r of the warp's 16: columns [half*16, half*16+16) of S, [half*32, +32) of O */
    int row = lane >> 1, half = lane & 1;
    float m = -INFINITY, l = 0.0f;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fq[FA_D / 16];
    __syncthreads();
    for (int kk = 0; kk < FA_D / 16; kk++) wmma::load_matrix_sync(fq[kk], &sh.q[warp * 16][kk * 16], FA_D);
    for (size_t k0 = 0; k0 < Lk; k0 += FA_BK) {
        int krows = (int)(Lk - k0 < FA_BK ? Lk - k0 : FA_BK);
        __syncthreads();   /* the last step's K and V are read */
        load_rows(sh.k, kn + k0 * C, C, FA_BK, krows);
        load_rows(sh.v, vn + k0 * C, C, FA_BK, krows);
        __syncthreads();
        /* S = Q K^T: K stored [key][d] is K^T column-major */
        for (int j = 0; j < FA_BK / 16; j++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < FA_D / 16; kk++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fk;
                wmma::load_matrix_sync(fk, &sh.k[j * 16][kk * 16], FA_D);
                wmma::mma_sync(acc, fq[kk], fk, acc);
            }
            wmma::store_matrix_sync(&sh.s[warp][0][j * 16], acc, FA_BK, wmma::mem_row_major);
        }
        __syncwarp();
        float s[16], mx = -INFINITY;
        for (int c = 0; c < 16; c++) {
            int col = half * 16 + c;
            s[c] = col < krows ? sh.s[warp][row][col] * scale : -INFINITY;
            mx = fmaxf(mx, s[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx), alpha = __expf(m - mn), sum = 0.0f;
        for (int c = 0; c < 16; c++) {
            __nv_bfloat16 pb = __float2bfloat16_rn(__expf(s[c] - mn));
            sh.p[warp][row][half * 16 + c] = pb;
            sum += __bfloat162float(pb);   /* the sum of what P V adds up */
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * alpha + sum;
        m = mn;
        for (int c = 0; c < FA_D / 2; c++) sh.o[warp][row][half * (FA_D / 2) + c] *= alpha;
        __syncwarp();
        /* O += P V */
        for (int j = 0; j < FA_D / 16; j++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, &sh.o[warp][0][j * 16], FA_D, wmma::mem_row_major);
            for (int kk = 0; kk < FA_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fp;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fv;
                wmma::load_matrix_sync(fp, &sh.p[warp][0][kk * 16], FA_BK);
                wmma::load_matrix_sync(fv, &sh.v[kk * 16][j * 16], FA_D);
                wmma::mma_sync(acc, fp, fv, acc);
            }
            wmma::store_matrix_sync(&sh.o[warp][0][j * 16], acc, FA_D, wmma::mem_row_major);
        }
        __syncwarp();
    }
    int r = warp * 16 + row;
    if (r < qrows) {
        float inv = 1.0f / l;
        float *out = o + (n * Lq + q0 + (size_t)r) * ldo + h * FA_D + half * (FA_D / 2);
        for (int c = 0; c < FA_D / 2; c++) out[c] = sh.o[warp][row][half * (FA_D / 2) + c] * inv;
    }
#endif
}

static int aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

extern "C" int cs_cuda_flash_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                       size_t ldv, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                                       const float *mask, float *o, size_t ldo)
{
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("CASCADE_FLASH");
        off = !(e && !strcmp(e, "1"));
    }
    if (off || mask || cs_cuda_precision() != CS_PREC_BF16 || nhead <= 0 || C != (size_t)nhead * FA_D || !Lk ||
        (C * 2) % 16 || N > 65535 || (size_t)nhead > 65535 || (Lq + FA_BQ - 1) / FA_BQ > 0x7fffffff)
        return CS_EUNSUP;
    /* q, k, v as dense bf16 [N, L, C] (one conversion each, all images) */
    uint16_t *Qh = (uint16_t *)cs_cuda_scratch(5, (N * Lq + 2 * N * Lk) * C * 2);
    if (!Qh) return CS_ENOMEM;
    uint16_t *Kh = Qh + N * Lq * C, *Vh = Kh + N * Lk * C;
    if (!aligned(Kh, 16) || !aligned(Vh, 16)) return CS_EUNSUP;
    int rc = cs_cuda_f32_to_bf16(q, Qh, N * Lq, C, ldq);
    if (!rc) rc = cs_cuda_f32_to_bf16(k, Kh, N * Lk, C, ldk);
    if (!rc) rc = cs_cuda_f32_to_bf16(v, Vh, N * Lk, C, ldv);
    if (rc) return rc;
    dim3 grid((unsigned)((Lq + FA_BQ - 1) / FA_BQ), (unsigned)nhead, (unsigned)N);
    k_flash<<<grid, FA_WARPS * 32, 0, (cudaStream_t)cs_cuda_stream()>>>(
        (const __nv_bfloat16 *)Qh, (const __nv_bfloat16 *)Kh, (const __nv_bfloat16 *)Vh, Lq, Lk, C,
        1.0f / sqrtf((float)FA_D), o, ldo);
    return cs_cuda_check_launch("attention (flash)");
}
