/* Fused ops of the CUDA plugin: whole blocks in 16-bit, where the single
 * ops (kernels.cu, gemm.c) would pass float32 activations through memory
 * between every step.
 *
 * mlp_block, every ResBlock and FeedForwardBlock (Stage C and B):
 *     x += fc2(GRN(GELU(fc1([LN(dwconv3x3(x)) | skip]))))
 * in bf16 precision runs as
 *     depthwise conv + LN (+ the skip's copy) -> bf16, one kernel;
 *     h = fc1 (cuBLASLt, bf16 out, bias in the epilogue);
 *     GELU in place, summing squares per (image, channel);  norms;
 *     GRN in place; x += fc2(h) (cuBLASLt, float32 accumulate, bias in the epilogue).
 * The 4c-wide hidden activation is bf16 throughout, as under PyTorch's
 * autocast (which rounds each op's output to bf16 the same way). Other
 * precisions return CS_EUNSUP and the caller runs the single ops. */
#include "core.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

static inline cudaStream_t stream(void) { return (cudaStream_t)cs_cuda_stream(); }

#define MLP_THREADS 128
#define MAX_GRID_YZ ((size_t)65535)

static __device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* grid over (channel pairs, row chunks, images); rows per chunk so the
 * chunks fit the grid's y limit */
static dim3 pair_grid(size_t c2, size_t HW, size_t N, size_t *per)
{
    size_t rows = 32;
    while ((HW + rows - 1) / rows > MAX_GRID_YZ) rows *= 2;
    *per = rows;
    return dim3((unsigned)((c2 + MLP_THREADS - 1) / MLP_THREADS), (unsigned)((HW + rows - 1) / rows), (unsigned)N);
}

/* h = bf16(GELU(h)) in place; sumsq[n, c] += its squares over the chunk's rows */
static __global__ void k_gelu_sumsq(__nv_bfloat162 *h, size_t HW, size_t c2, size_t per, float *sumsq)
{
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.z;
    if (j >= c2) return;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < HW ? r0 + per : HW;
    __nv_bfloat162 *p = h + n * HW * c2 + j;
    float s0 = 0.0f, s1 = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        float2 v = __bfloat1622float2(p[r * c2]);
        __nv_bfloat162 q = __floats2bfloat162_rn(gelu_erf(v.x), gelu_erf(v.y));
        p[r * c2] = q;
        float2 g = __bfloat1622float2(q);
        s0 += g.x * g.x, s1 += g.y * g.y;
    }
    atomicAdd(&sumsq[n * 2 * c2 + 2 * j], s0);
    atomicAdd(&sumsq[n * 2 * c2 + 2 * j + 1], s1);
}

/* per image (one block each): nx[c] = |x_c| / (mean over c of |x_c| + 1e-6), in place */
static __global__ void k_grn_nx(float *v, size_t C)
{
    __shared__ float sh[32];
    float *row = v + (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x) s += sqrtf(row[c]);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[wid] = s;
    __syncthreads();
    float t = lane < nw ? sh[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    float m = t / (float)C + 1e-6f;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x) row[c] = sqrtf(row[c]) / m;
}

/* h = bf16(gamma * (h * nx) + beta + h) in place */
static __global__ void k_grn_apply(__nv_bfloat162 *h, size_t HW, size_t c2, size_t per, const float *nx,
                                   const float *gamma, const float *beta)
{
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.z;
    if (j >= c2) return;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < HW ? r0 + per : HW;
    __nv_bfloat162 *p = h + n * HW * c2 + j;
    size_t c = 2 * j;
    float n0 = nx[n * 2 * c2 + c], n1 = nx[n * 2 * c2 + c + 1];
    float g0 = gamma[c], g1 = gamma[c + 1], b0 = beta[c], b1 = beta[c + 1];
    for (size_t r = r0; r < r1; r++) {
        float2 v = __bfloat1622float2(p[r * c2]);
        p[r * c2] = __floats2bfloat162_rn(g0 * (v.x * n0) + b0 + v.x, g1 * (v.y * n1) + b1 + v.y);
    }
}

/* the block's sum of v in every thread; sh: 32 floats */
static __device__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();   /* sh may still be read from the last call */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = 0.0f;
    for (unsigned i = 0; i < blockDim.x >> 5; i++) t += sh[i];
    return t;
}

/* One block a pixel: v = dwconv3x3(x) (zero padding) or x itself, then
 * y[pixel] = bf16([LN(v) | skip]) (eps 1e-6, no affine) */
#define DL_THREADS 128
#define DL_PER 16   /* channels a thread: c <= 2048 */
template <bool DW>
static __global__ void k_dw_ln(const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw,
                               const float *db, const float *skip, size_t cs, __nv_bfloat16 *y)
{
    __shared__ float sh[32];
    size_t P = N * H * W, cin = c + cs;
    for (size_t p = blockIdx.x; p < P; p += gridDim.x) {
        size_t n = p / (H * W), yx = p - n * H * W, py = yx / W, px = yx - py * W;
        float v[DL_PER], s = 0.0f;
#pragma unroll
        for (int i = 0; i < DL_PER; i++) {
            size_t ch = threadIdx.x + (size_t)i * DL_THREADS;
            float a = 0.0f;
            if (ch < c) {
                if (DW) {
                    a = db[ch];
                    for (int ky = 0; ky < 3; ky++) {
                        long sy = (long)py + ky - 1;
                        if (sy < 0 || sy >= (long)H) continue;
                        for (int kx = 0; kx < 3; kx++) {
                            long sx = (long)px + kx - 1;
                            if (sx < 0 || sx >= (long)W) continue;
                            a += dw[ch * 9 + ky * 3 + kx] * x[((n * H + (size_t)sy) * W + (size_t)sx) * c + ch];
                        }
                    }
                } else {
                    a = x[p * c + ch];
                }
            }
            v[i] = a;
            s += a;
        }
        float mean = block_sum(s, sh) / (float)c, q = 0.0f;
#pragma unroll
        for (int i = 0; i < DL_PER; i++)
            if (threadIdx.x + (size_t)i * DL_THREADS < c) q += (v[i] - mean) * (v[i] - mean);
        float inv = rsqrtf(block_sum(q, sh) / (float)c + 1e-6f);
        __nv_bfloat16 *yp = y + p * cin;
#pragma unroll
        for (int i = 0; i < DL_PER; i++) {
            size_t ch = threadIdx.x + (size_t)i * DL_THREADS;
            if (ch < c) yp[ch] = __float2bfloat16_rn((v[i] - mean) * inv);
        }
        for (size_t j = threadIdx.x; j < cs; j += DL_THREADS) yp[c + j] = __float2bfloat16_rn(skip[p * cs + j]);
    }
}

static int launched(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, what);
}

extern "C" int cs_cuda_mlp_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                                 const cs_mlp_block *w)
{
    if (cs_cuda_precision() != CS_PREC_BF16 || w->fc1_w->ndim < 1 || w->fc2_w->ndim < 1) return CS_EUNSUP;
    size_t HW = H * W, rows = N * HW, cin = c + cs, c4 = (size_t)w->fc1_w->shape[0];
    if (!rows || !c || (c4 & 1) || c > (size_t)DL_PER * DL_THREADS || N > MAX_GRID_YZ ||
        (size_t)w->fc2_w->shape[0] != c)
        return CS_EUNSUP;
    char err[256];
    const float *dw = NULL, *db = NULL;
    if (w->dw_w && (!(dw = (const float *)cs_cuda_weight(w->dw_w, CS_F32, err, sizeof err)) ||
                    !(db = (const float *)cs_cuda_weight(w->dw_b, CS_F32, err, sizeof err))))
        return cs_cuda_weight_rc();
    const float *g = (const float *)cs_cuda_weight(w->gamma, CS_F32, err, sizeof err);
    const float *be = g ? (const float *)cs_cuda_weight(w->beta, CS_F32, err, sizeof err) : NULL;
    if (!be) return cs_cuda_weight_rc();
    __nv_bfloat16 *x16 = (__nv_bfloat16 *)cs_cuda_scratch(8, rows * cin * 2);
    __nv_bfloat162 *h = (__nv_bfloat162 *)cs_cuda_scratch(9, rows * c4 * 2);
    float *ss = (float *)cs_cuda_scratch(10, N * c4 * sizeof(float));
    if (!x16 || !h || !ss) return CS_ENOMEM;
    unsigned grid = (unsigned)(rows < ((size_t)1 << 20) ? rows : ((size_t)1 << 20));
    if (dw) k_dw_ln<true><<<grid, DL_THREADS, 0, stream()>>>(x, N, H, W, c, dw, db, skip, cs, x16);
    else k_dw_ln<false><<<grid, DL_THREADS, 0, stream()>>>(x, N, H, W, c, NULL, NULL, skip, cs, x16);
    int rc = launched("a ResBlock's depthwise conv and norm");
    if (!rc) rc = cs_cuda_linear16((const uint16_t *)x16, rows, cin, w->fc1_w, w->fc1_b, h, 1, c4, 0);
    if (rc) return rc;   /* CS_EUNSUP included: x is untouched so far */
    cudaError_t e = cudaMemsetAsync(ss, 0, N * c4 * sizeof(float), stream());
    if (e != cudaSuccess) return cs_cuda_fail(e, "a ResBlock");
    size_t c2 = c4 / 2, per;
    dim3 pg = pair_grid(c2, HW, N, &per);
    k_gelu_sumsq<<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    if ((rc = launched("a ResBlock's GELU"))) return rc;
    k_grn_nx<<<(unsigned)N, 1024, 0, stream()>>>(ss, c4);
    if ((rc = launched("a ResBlock's GRN norms"))) return rc;
    k_grn_apply<<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss, g, be);
    if ((rc = launched("a ResBlock's GRN"))) return rc;
    rc = cs_cuda_linear16((const uint16_t *)h, rows, c4, w->fc2_w, w->fc2_b, x, 0, c, 1);
    return rc == CS_EUNSUP ? cs_cuda_fail_text(CS_EDEVICE, "CUDA: no cuBLASLt algorithm for a ResBlock's fc2") : rc;
}
