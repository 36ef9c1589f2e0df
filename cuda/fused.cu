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
 * Where the hidden activation outweighs fc2's weight (HW >= 2c), GRN is
 * folded into fc2 instead of rewriting h: gamma*(h*nx) + beta + h =
 * h*(1 + gamma*nx) + beta, so each image's product takes fc2's weight with
 * its columns scaled by (1 + gamma*nx) and the bias b2 + W2 beta.
 * The 4c-wide hidden activation is bf16 throughout, as under PyTorch's
 * autocast (which rounds each op's output to bf16 the same way).
 *
 * attn_block, every AttnBlock: LN, the projections, attention and out_proj
 * on 16-bit rows from the norm to the last product (see cs_cuda_attn_block).
 *
 * Other precisions return CS_EUNSUP and the caller runs the single ops. */
#include "core.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* h = bf16(GELU(h)) in place (GELU: else h is already GELU'd, by fc1's
 * epilogue); sumsq[n, c] += its squares over the chunk's rows */
template <bool GELU>
static __global__ void k_gelu_sumsq(__nv_bfloat162 *h, size_t HW, size_t c2, size_t per, float *sumsq)
{
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.z;
    if (j >= c2) return;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < HW ? r0 + per : HW;
    __nv_bfloat162 *p = h + n * HW * c2 + j;
    float s0 = 0.0f, s1 = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        __nv_bfloat162 q = p[r * c2];
        if (GELU) {
            float2 v = __bfloat1622float2(q);
            q = __floats2bfloat162_rn(gelu_erf(v.x), gelu_erf(v.y));
            p[r * c2] = q;
        }
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

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* $CASCADE_MLP_WIDE=0: the depthwise conv + norm in its first form only
 * (k_dw_ln, a channel a lane), for side-by-side timing. (GELU + sums and
 * GRN 8 channels a thread, and a block a pixel for Stage C's few pixels,
 * were measured on the H100 and left out: slower, or within noise.) */
static int wide_kernels(void)
{
    static int v = -1;
    return cs_cuda_env_on("CASCADE_MLP_WIDE", &v);
}

/* GRN folded into fc2 (one block an output row o of w [O, K]):
 * wn[n][o][k] = bf16(w[o][k] * (1 + gamma[k] nx[n][k])) for each image n,
 * bn[o] = b2[o] + sum_k w[o][k] beta[k] */
#define FOLD_THREADS 256
static __global__ void __launch_bounds__(FOLD_THREADS)
    k_grn_fold(const __nv_bfloat162 *w, size_t K2, size_t O, size_t N, const float2 *nx, const float2 *gamma,
               const float2 *beta, const float *b2, __nv_bfloat162 *wn, float *bn)
{
    __shared__ float sh[FOLD_THREADS / 32];
    size_t o = blockIdx.x;
    const __nv_bfloat162 *wr = w + o * K2;
    float s = 0.0f;
    for (size_t k = threadIdx.x; k < K2; k += FOLD_THREADS) {
        float2 v = __bfloat1622float2(wr[k]), g = gamma[k], b = beta[k];
        s += v.x * b.x + v.y * b.y;
        for (size_t n = 0; n < N; n++) {
            float2 q = nx[n * K2 + k];
            wn[(n * O + o) * K2 + k] = __floats2bfloat162_rn(v.x * (1.0f + g.x * q.x), v.y * (1.0f + g.y * q.y));
        }
    }
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        float t = threadIdx.x < FOLD_THREADS / 32 ? sh[threadIdx.x] : 0.0f;
        t = warp_sum(t);
        if (threadIdx.x == 0) bn[o] = (b2 ? b2[o] : 0.0f) + t;
    }
}

/* One warp a pixel, PER channels a lane (lane + 32 i): v = dwconv3x3(x)
 * (zero padding) or x itself, then y[pixel] = bf16([LN(v) | skip]) (eps
 * 1e-6, no affine). A warp, not a block: no block-wide reductions, which
 * made the block-a-pixel form slow at Stage B's narrow levels (57 us for
 * 32768 pixels of 320 channels on the H100). */
#define DL_WARPS 8
template <bool DW, int PER>
static __global__ void __launch_bounds__(32 * DL_WARPS) k_dw_ln(const float *x, size_t N, size_t H, size_t W,
                                                                size_t c, const float *dw, const float *db,
                                                                const float *skip, size_t cs, __nv_bfloat16 *y)
{
    const unsigned lane = threadIdx.x & 31;
    size_t P = N * H * W, cin = c + cs;
    size_t nw = (size_t)gridDim.x * DL_WARPS;
    for (size_t p = (size_t)blockIdx.x * DL_WARPS + (threadIdx.x >> 5); p < P; p += nw) {
        float v[PER];
        if (DW) {
            size_t n = p / (H * W), yx = p - n * H * W, py = yx / W, px = yx - py * W;
#pragma unroll
            for (int i = 0; i < PER; i++) {
                size_t ch = lane + 32 * (size_t)i;
                v[i] = ch < c ? db[ch] : 0.0f;
            }
            for (int ky = 0; ky < 3; ky++) {
                long sy = (long)py + ky - 1;
                if (sy < 0 || sy >= (long)H) continue;
                for (int kx = 0; kx < 3; kx++) {
                    long sx = (long)px + kx - 1;
                    if (sx < 0 || sx >= (long)W) continue;
                    const float *xp = x + ((n * H + (size_t)sy) * W + (size_t)sx) * c;
                    const float *wp = dw + ky * 3 + kx;
#pragma unroll
                    for (int i = 0; i < PER; i++) {
                        size_t ch = lane + 32 * (size_t)i;
                        if (ch < c) v[i] += wp[ch * 9] * xp[ch];
                    }
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < PER; i++) {
                size_t ch = lane + 32 * (size_t)i;
                v[i] = ch < c ? x[p * c + ch] : 0.0f;
            }
        }
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) s += v[i];
        float mean = warp_sum(s) / (float)c, q = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++)
            if (lane + 32 * (size_t)i < c) q += (v[i] - mean) * (v[i] - mean);
        float inv = rsqrtf(warp_sum(q) / (float)c + 1e-6f);
        __nv_bfloat16 *yp = y + p * cin;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            size_t ch = lane + 32 * (size_t)i;
            if (ch < c) yp[ch] = __float2bfloat16_rn((v[i] - mean) * inv);
        }
        for (size_t j = lane; j < cs; j += 32) yp[c + j] = __float2bfloat16_rn(skip[p * cs + j]);
    }
}

#define DL_MAX_C 2048   /* PER up to 64 */

/* The same in float4 groups: lane + 32 i of the c/4 groups, 16-byte loads,
 * the depthwise weights and bias staged tap-major in shared memory once per
 * block ([10][c/4]: nine taps, then the bias), so a tap's weights are one
 * coalesced row instead of a 9-float stride per channel. The grid is a few
 * blocks a multiprocessor, each walking many pixels (fewer stagings). Sums
 * in the same tap order as k_dw_ln; the LN's sums group 4 channels a lane. */
template <bool DW, int PER4>
static __global__ void __launch_bounds__(32 * DL_WARPS) k_dw_ln4(const float4 *x, size_t N, size_t H, size_t W,
                                                                 size_t c4, const float *dw, const float *db,
                                                                 const float *skip, size_t cs, __nv_bfloat16 *y)
{
    extern __shared__ float4 sw[];
    const unsigned lane = threadIdx.x & 31;
    if (DW) {
        for (size_t i = threadIdx.x; i < 10 * c4; i += blockDim.x) {
            size_t tap = i / c4, ch = 4 * (i - tap * c4);
            sw[i] = tap < 9 ? make_float4(dw[ch * 9 + tap], dw[(ch + 1) * 9 + tap], dw[(ch + 2) * 9 + tap],
                                          dw[(ch + 3) * 9 + tap])
                            : make_float4(db[ch], db[ch + 1], db[ch + 2], db[ch + 3]);
        }
        __syncthreads();
    }
    size_t P = N * H * W, c = 4 * c4, cin = c + cs;
    size_t nw = (size_t)gridDim.x * DL_WARPS;
    for (size_t p = (size_t)blockIdx.x * DL_WARPS + (threadIdx.x >> 5); p < P; p += nw) {
        float4 v[PER4];
        if (DW) {
            size_t n = p / (H * W), yx = p - n * H * W, py = yx / W, px = yx - py * W;
#pragma unroll
            for (int i = 0; i < PER4; i++) {
                size_t g = lane + 32 * (size_t)i;
                v[i] = g < c4 ? sw[9 * c4 + g] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            for (int ky = 0; ky < 3; ky++) {
                long sy = (long)py + ky - 1;
                if (sy < 0 || sy >= (long)H) continue;
                for (int kx = 0; kx < 3; kx++) {
                    long sx = (long)px + kx - 1;
                    if (sx < 0 || sx >= (long)W) continue;
                    const float4 *xp = x + ((n * H + (size_t)sy) * W + (size_t)sx) * c4;
                    const float4 *wp = sw + (ky * 3 + kx) * c4;
#pragma unroll
                    for (int i = 0; i < PER4; i++) {
                        size_t g = lane + 32 * (size_t)i;
                        if (g < c4) {
                            float4 a = xp[g], w = wp[g];
                            v[i].x = fmaf(w.x, a.x, v[i].x), v[i].y = fmaf(w.y, a.y, v[i].y);
                            v[i].z = fmaf(w.z, a.z, v[i].z), v[i].w = fmaf(w.w, a.w, v[i].w);
                        }
                    }
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < PER4; i++) {
                size_t g = lane + 32 * (size_t)i;
                v[i] = g < c4 ? x[p * c4 + g] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
        }
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < PER4; i++) s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
        float mean = warp_sum(s) / (float)c, q = 0.0f;
#pragma unroll
        for (int i = 0; i < PER4; i++)
            if (lane + 32 * (size_t)i < c4) {
                float a = v[i].x - mean, b = v[i].y - mean, d = v[i].z - mean, e = v[i].w - mean;
                q += (a * a + b * b) + (d * d + e * e);
            }
        float inv = rsqrtf(warp_sum(q) / (float)c + 1e-6f);
        __nv_bfloat162 *yp = (__nv_bfloat162 *)(y + p * cin);
#pragma unroll
        for (int i = 0; i < PER4; i++) {
            size_t g = lane + 32 * (size_t)i;
            if (g < c4) {
                yp[2 * g] = __floats2bfloat162_rn((v[i].x - mean) * inv, (v[i].y - mean) * inv);
                yp[2 * g + 1] = __floats2bfloat162_rn((v[i].z - mean) * inv, (v[i].w - mean) * inv);
            }
        }
        for (size_t j = lane; j < cs; j += 32) y[p * cin + c + j] = __float2bfloat16_rn(skip[p * cs + j]);
    }
}

/* the device's multiprocessors (80 where the query fails), for grids of
 * resident blocks */
static int sm_count(void)
{
    static int sms = 0;
    if (!sms) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            v = 80;
        sms = v > 0 ? v : 80;
    }
    return sms;
}

/* k_dw_ln4 for c % 4 == 0 channels at a 16-byte aligned x: 0, or CS_EUNSUP
 * (nothing queued) where it does not apply or its shared memory is refused */
template <bool DW, int PER4>
static int dw_ln4_launch(const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw, const float *db,
                         const float *skip, size_t cs, __nv_bfloat16 *y)
{
    static int ready = 0;   /* 1: the shared memory limit is set, -1: refused */
    size_t smem = DW ? 10 * c * sizeof(float) : 0;
    if (DW && ready == 0)
        ready = cudaFuncSetAttribute(k_dw_ln4<DW, PER4>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)(10 * 2048 * sizeof(float))) == cudaSuccess ? 1 : -1;
    if (DW && ready < 0) {
        cudaGetLastError();
        return CS_EUNSUP;
    }
    int sms = sm_count();
    /* as many blocks as stay resident (a memory-bound pass wants every warp
     * slot busy: at Stage B's 32768 pixels 4 blocks an SM were too few) */
    int occ = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_dw_ln4<DW, PER4>, 32 * DL_WARPS, smem) != cudaSuccess ||
        occ < 1)
        occ = 4, cudaGetLastError();
    size_t P = N * H * W, blocks = (P + DL_WARPS - 1) / DL_WARPS, most = (size_t)sms * (size_t)occ;
    unsigned grid = (unsigned)(blocks < most ? blocks : most);
    k_dw_ln4<DW, PER4><<<grid, 32 * DL_WARPS, smem, stream()>>>((const float4 *)x, N, H, W, c / 4, dw, db, skip, cs, y);
    return 0;
}

template <bool DW>
static int dw_ln4(const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw, const float *db,
                  const float *skip, size_t cs, __nv_bfloat16 *y)
{
    if (c % 4 || (c + cs) % 2 || (uintptr_t)x % 16 || (uintptr_t)y % 4 || !wide_kernels()) return CS_EUNSUP;
    size_t per4 = (c / 4 + 31) / 32;
#define D4(P) dw_ln4_launch<DW, P>(x, N, H, W, c, dw, db, skip, cs, y)
    if (per4 <= 1) return D4(1);
    if (per4 <= 2) return D4(2);
    if (per4 <= 3) return D4(3);
    if (per4 <= 4) return D4(4);
    if (per4 <= 6) return D4(6);
    if (per4 <= 8) return D4(8);
    if (per4 <= 10) return D4(10);
    if (per4 <= 12) return D4(12);
    return D4(16);
#undef D4
}



/* the k_dw_ln for c channels: the smallest PER that holds them */
template <bool DW>
static void dw_ln(unsigned grid, const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw,
                  const float *db, const float *skip, size_t cs, __nv_bfloat16 *y)
{
    size_t per = (c + 31) / 32;
    cudaStream_t st = stream();
#define DL(P) k_dw_ln<DW, P><<<grid, 32 * DL_WARPS, 0, st>>>(x, N, H, W, c, dw, db, skip, cs, y)
    if (per <= 4) DL(4);
    else if (per <= 8) DL(8);
    else if (per <= 12) DL(12);
    else if (per <= 16) DL(16);
    else if (per <= 20) DL(20);
    else if (per <= 24) DL(24);
    else if (per <= 32) DL(32);
    else if (per <= 40) DL(40);
    else if (per <= 48) DL(48);
    else DL(64);
#undef DL
}

/* $CASCADE_DW_ROWS=1: the depthwise conv + norm as row segments (k_dw_rows)
 * instead of k_dw_ln4, for side-by-side timing (default 0 until measured on
 * the GPU). Read at every call, so the op test can force either form. */
static int dw_rows_on(void)
{
    const char *e = getenv("CASCADE_DW_ROWS");
    return e && !strcmp(e, "1");
}

/* sums of v[t] over the block for each of T pixels; sh: [16][T] of shared
 * memory used by this call only (a second call takes another array, so one
 * barrier each is enough) */
template <int T>
static __device__ __forceinline__ void block_sums(float *v, float (*sh)[T])
{
    const unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int t = 0; t < T; t++) v[t] = warp_sum(v[t]);
    if (lane == 0)
#pragma unroll
        for (int t = 0; t < T; t++) sh[wid][t] = v[t];
    __syncthreads();
#pragma unroll
    for (int t = 0; t < T; t++) {
        float a = 0.0f;
        for (unsigned w = 0; w < nw; w++) a += sh[w][t];
        v[t] = a;
    }
}

/* A block a segment of T pixels of one image row (or several in turn: see
 * dw_rows_launch), a thread a float4 group of channels (c/4 threads rounded
 * up to warps, at most 512). k_dw_ln4 reads
 * each input pixel 9 times through L2 (L2-bound at Stage B's 128^2 level)
 * and stages every block's weights from a 9-float stride; here a thread
 * slides along the row: 3 (T + 2) loads for T pixels, and its 4 channels'
 * 36 weights are one contiguous 144-byte run (dw [c, 1, 3, 3]) read once a
 * block into registers. Taps are summed in k_dw_ln4's order (ky, then kx,
 * from the bias): the same conv values; the norm's sums are block-wide. */
#define DR_MAX_THREADS 512
template <int T>
static __global__ void __launch_bounds__(DR_MAX_THREADS)
    k_dw_rows(const float4 *x, size_t H, size_t W, size_t c4, size_t segs, const float4 *dw, const float4 *db,
              const float *skip, size_t cs, __nv_bfloat16 *y)
{
    __shared__ float sh[2][DR_MAX_THREADS / 32][T];
    const unsigned g = threadIdx.x;
    const bool on = g < c4;
    float wf[36];   /* channel 4g + j, tap k at j * 9 + k */
    float4 b = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (on) {
        b = db[g];
#pragma unroll
        for (int i = 0; i < 9; i++) {
            float4 q = dw[9 * (size_t)g + i];
            wf[4 * i] = q.x, wf[4 * i + 1] = q.y, wf[4 * i + 2] = q.z, wf[4 * i + 3] = q.w;
        }
    }
    const size_t tiles = (W + T - 1) / T, cin = 4 * c4 + cs;
    const float c = (float)(4 * c4);
    for (size_t seg = blockIdx.x; seg < segs; seg += gridDim.x) {
        size_t row = seg / tiles, px0 = (seg - row * tiles) * (size_t)T, py = row % H;   /* row: n * H + py */
        float4 acc[T];
#pragma unroll
        for (int t = 0; t < T; t++) acc[t] = b;
#pragma unroll
        for (int ky = 0; ky < 3; ky++) {
            if (!on || (ky == 0 && py == 0) || (ky == 2 && py + 1 >= H)) continue;
            const float4 *xr = x + (row + ky - 1) * W * c4 + g;
#pragma unroll
            for (int s = 0; s < T + 2; s++) {   /* input column px0 + s - 1 */
                if ((s == 0 && px0 == 0) || px0 + s - 1 >= W) continue;
                float4 a = xr[(px0 + s - 1) * c4];
#pragma unroll
                for (int kx = 0; kx < 3; kx++) {
                    const int t = s - kx, k = ky * 3 + kx;   /* output px0 + t takes tap (ky, kx) */
                    if (t < 0 || t >= T) continue;
                    acc[t].x = fmaf(wf[k], a.x, acc[t].x), acc[t].y = fmaf(wf[9 + k], a.y, acc[t].y);
                    acc[t].z = fmaf(wf[18 + k], a.z, acc[t].z), acc[t].w = fmaf(wf[27 + k], a.w, acc[t].w);
                }
            }
        }
        float m[T], q[T];
#pragma unroll
        for (int t = 0; t < T; t++) m[t] = on ? (acc[t].x + acc[t].y) + (acc[t].z + acc[t].w) : 0.0f;
        block_sums<T>(m, sh[0]);
#pragma unroll
        for (int t = 0; t < T; t++) {
            m[t] /= c;
            float d0 = acc[t].x - m[t], d1 = acc[t].y - m[t], d2 = acc[t].z - m[t], d3 = acc[t].w - m[t];
            q[t] = on ? (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3) : 0.0f;
        }
        block_sums<T>(q, sh[1]);
        size_t p0 = row * W + px0, nt = W - px0 < (size_t)T ? W - px0 : (size_t)T;
#pragma unroll
        for (int t = 0; t < T; t++) {
            if (!on || (size_t)t >= nt) continue;
            float inv = rsqrtf(q[t] / c + 1e-6f);
            __nv_bfloat162 *yp = (__nv_bfloat162 *)(y + (p0 + t) * cin) + 2 * g;
            yp[0] = __floats2bfloat162_rn((acc[t].x - m[t]) * inv, (acc[t].y - m[t]) * inv);
            yp[1] = __floats2bfloat162_rn((acc[t].z - m[t]) * inv, (acc[t].w - m[t]) * inv);
        }
        for (size_t i = threadIdx.x; i < nt * cs; i += blockDim.x) {
            size_t t = i / cs, j = i - t * cs;
            y[(p0 + t) * cin + 4 * c4 + j] = __float2bfloat16_rn(skip[(p0 + t) * cs + j]);
        }
    }
}

/* one launch of k_dw_rows<T>: a block a segment, or where there are 4 times
 * more segments than resident blocks, those blocks each walking its share
 * (the weights read once a block: at T = 8 they are a third of a segment's
 * reads; fewer segments a block would leave some blocks a whole segment
 * behind) */
template <int T>
static void dw_rows_launch(const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw, const float *db,
                           const float *skip, size_t cs, __nv_bfloat16 *y, unsigned threads)
{
    size_t segs = N * H * ((W + T - 1) / T);
    int occ = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_dw_rows<T>, (int)threads, 0) != cudaSuccess || occ < 1)
        occ = 1, cudaGetLastError();
    size_t most = (size_t)sm_count() * (size_t)occ;
    unsigned grid = (unsigned)(segs < 4 * most ? segs : most);
    k_dw_rows<T><<<grid, threads, 0, stream()>>>((const float4 *)x, H, W, c / 4, segs, (const float4 *)dw,
                                                 (const float4 *)db, skip, cs, y);
}

/* k_dw_rows where it applies (c % 4 == 0 up to 4 * DR_MAX_THREADS channels,
 * x, dw and db 16-byte aligned, an even row of y): 0, else CS_EUNSUP
 * (nothing queued). The segment is 8 pixels, shorter where 8 would leave
 * SMs without a block (Stage C's 24^2 and 12^2 levels). */
static int dw_rows(const float *x, size_t N, size_t H, size_t W, size_t c, const float *dw, const float *db,
                   const float *skip, size_t cs, __nv_bfloat16 *y)
{
    if (!dw_rows_on() || c % 4 || c > 4 * DR_MAX_THREADS || (c + cs) % 2 || (uintptr_t)x % 16 ||
        (uintptr_t)dw % 16 || (uintptr_t)db % 16 || (uintptr_t)y % 4)
        return CS_EUNSUP;
    size_t rows = N * H, sms = (size_t)sm_count();
    unsigned threads = (unsigned)((c / 4 + 31) / 32 * 32);
    if (rows * ((W + 7) / 8) >= sms) dw_rows_launch<8>(x, N, H, W, c, dw, db, skip, cs, y, threads);
    else if (rows * ((W + 3) / 4) >= sms) dw_rows_launch<4>(x, N, H, W, c, dw, db, skip, cs, y, threads);
    else dw_rows_launch<2>(x, N, H, W, c, dw, db, skip, cs, y, threads);
    return 0;
}

/* $CASCADE_SUMSQ_WIDE=1: GRN's sums of squares over an already GELU'd h by
 * k_sumsq8 instead of k_gelu_sumsq<false> (default 0 until measured on the
 * GPU; read at every call, so the op test can force either form) */
static int sumsq_wide_on(void)
{
    const char *e = getenv("CASCADE_SUMSQ_WIDE");
    return e && !strcmp(e, "1");
}

/* sumsq[n, ch] += sum of h[n, r, ch]^2 over a chunk of rows. A block is
 * 8 rows x 32 lanes of 8 channels (16-byte loads, 256 channels), each lane
 * walking every 8th row of the chunk; the 8 rows' sums meet in shared
 * memory, so one atomic a channel a block (k_gelu_sumsq: 4-byte loads and
 * one atomic a channel every 32 rows). C % 8 == 0, h 16-byte aligned.
 * The image's last block to finish (done[n] counts them, from 0) turns its
 * sums into GRN's nx as k_grn_nx does: one launch fewer a ResBlock. */
#define SQ_ROWS 8
static __global__ void __launch_bounds__(32 * SQ_ROWS)
    k_sumsq8(const uint4 *h, size_t HW, size_t C8, size_t per, float *sumsq, unsigned *done)
{
    __shared__ float sh[SQ_ROWS][8 * 32];   /* [row lane][k * 32 + lane]: conflict-free both ways */
    __shared__ float part[SQ_ROWS];
    __shared__ bool last;
    const unsigned tx = threadIdx.x, ty = threadIdx.y;
    size_t j = (size_t)blockIdx.x * 32 + tx, n = blockIdx.z;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < HW ? r0 + per : HW;
    float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (j < C8) {
        const uint4 *p = h + n * HW * C8 + j;
#pragma unroll 4
        for (size_t r = r0 + ty; r < r1; r += SQ_ROWS) {
            uint4 u = p[r * C8];
            const __nv_bfloat162 *b = (const __nv_bfloat162 *)&u;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 v = __bfloat1622float2(b[k]);
                s[2 * k] = fmaf(v.x, v.x, s[2 * k]), s[2 * k + 1] = fmaf(v.y, v.y, s[2 * k + 1]);
            }
        }
    }
#pragma unroll
    for (int k = 0; k < 8; k++) sh[ty][k * 32 + tx] = s[k];
    __syncthreads();
    unsigned i = ty * 32 + tx, lane = i & 31, k = i >> 5;   /* channel 8 (32 blockIdx.x + lane) + k */
    size_t ch8 = (size_t)blockIdx.x * 32 + lane, C = 8 * C8;
    if (ch8 < C8) {
        float t = 0.0f;
#pragma unroll
        for (int y = 0; y < SQ_ROWS; y++) t += sh[y][k * 32 + lane];
        atomicAdd(&sumsq[n * C + 8 * ch8 + k], t);
    }
    __threadfence();   /* the sums before the count */
    __syncthreads();
    if (i == 0) last = atomicAdd(&done[n], 1u) == gridDim.x * gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    float *row = sumsq + n * C, a = 0.0f;   /* every block's sums are in (read through L2) */
    for (size_t c = i; c < C; c += 32 * SQ_ROWS) a += sqrtf(__ldcg(row + c));
    a = warp_sum(a);
    if (lane == 0) part[k] = a;   /* k: the warp */
    __syncthreads();
    float m = 0.0f;
#pragma unroll
    for (int w = 0; w < SQ_ROWS; w++) m += part[w];
    m = m / (float)C + 1e-6f;
    for (size_t c = i; c < C; c += 32 * SQ_ROWS) row[c] = sqrtf(__ldcg(row + c)) / m;
}

/* k_sumsq8 where it applies (C % 8 == 0, h 16-byte aligned): 0 (sumsq
 * holds nx), else CS_EUNSUP (nothing queued); done: N zeros. Chunks of rows so that the grid has about
 * 8 blocks an SM (all resident: a read-only pass wants every load slot). */
static int sumsq8(const __nv_bfloat16 *h, size_t N, size_t HW, size_t C, float *sumsq, unsigned *done)
{
    if (!sumsq_wide_on() || C % 8 || (uintptr_t)h % 16 || N > MAX_GRID_YZ) return CS_EUNSUP;
    int sms = sm_count();
    size_t C8 = C / 8, gx = (C8 + 31) / 32, want = 8 * (size_t)sms, chunks = (want + gx * N - 1) / (gx * N);
    size_t per = (HW + chunks - 1) / chunks;
    per = (per + SQ_ROWS - 1) / SQ_ROWS * SQ_ROWS;
    chunks = (HW + per - 1) / per;
    while (chunks > MAX_GRID_YZ) per *= 2, chunks = (HW + per - 1) / per;
    k_sumsq8<<<dim3((unsigned)gx, (unsigned)chunks, (unsigned)N), dim3(32, SQ_ROWS), 0, stream()>>>(
        (const uint4 *)h, HW, C8, per, sumsq, done);
    return 0;
}

static int launched(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, what);
}

/* $CASCADE_GRN_FOLD=0: GRN always rewrites h (for side-by-side timing) */
static int fold_grn(void)
{
    static int v = -1;
    return cs_cuda_env_on("CASCADE_GRN_FOLD", &v);
}

extern "C" int cs_cuda_mlp_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                                 const cs_mlp_block *w)
{
    if (cs_cuda_precision() != CS_PREC_BF16 || w->fc1_w->ndim < 1 || w->fc2_w->ndim < 1) return CS_EUNSUP;
    size_t HW = H * W, rows = N * HW, cin = c + cs, c4 = (size_t)w->fc1_w->shape[0];
    if (!rows || !c || (c4 & 1) || c > DL_MAX_C || N > MAX_GRID_YZ ||
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
    float *ss = (float *)cs_cuda_scratch(10, N * (c4 + 1) * sizeof(float));   /* sums, then k_sumsq8's counts */
    if (!x16 || !h || !ss) return CS_ENOMEM;
    size_t blocks = (rows + DL_WARPS - 1) / DL_WARPS;
    unsigned grid = (unsigned)(blocks < ((size_t)1 << 20) ? blocks : ((size_t)1 << 20));
    int rows_form = dw && !dw_rows(x, N, H, W, c, dw, db, skip, cs, x16);
    if (!rows_form && (dw ? dw_ln4<true>(x, N, H, W, c, dw, db, skip, cs, x16)
                          : dw_ln4<false>(x, N, H, W, c, NULL, NULL, skip, cs, x16))) {
        if (dw) dw_ln<true>(grid, x, N, H, W, c, dw, db, skip, cs, x16);
        else dw_ln<false>(grid, x, N, H, W, c, NULL, NULL, skip, cs, x16);
    }
    int rc = launched("a ResBlock's depthwise conv and norm");
    /* fc1 with GELU in its epilogue where cuBLASLt has it ($CASCADE_GELU_EPILOGUE=0: the separate pass) */
    static int ge = -1;
    int fused = 0;
    if (!rc && cs_cuda_env_on("CASCADE_GELU_EPILOGUE", &ge)) {
        rc = cs_cuda_linear16_gelu((const uint16_t *)x16, rows, cin, w->fc1_w, w->fc1_b, h, 1, c4, 0, 1);
        fused = !rc;
        if (rc == CS_EUNSUP) rc = 0;
    }
    if (!rc && !fused) rc = cs_cuda_linear16((const uint16_t *)x16, rows, cin, w->fc1_w, w->fc1_b, h, 1, c4, 0);
    if (rc) return rc;   /* CS_EUNSUP included: x is untouched so far */
    cudaError_t e = cudaMemsetAsync(ss, 0, N * (c4 + 1) * sizeof(float), stream());
    if (e != cudaSuccess) return cs_cuda_fail(e, "a ResBlock");
    size_t c2 = c4 / 2, per;
    dim3 pg = pair_grid(c2, HW, N, &per);
    int wide = fused && !sumsq8((const __nv_bfloat16 *)h, N, HW, c4, ss, (unsigned *)(ss + N * c4));
    if (!fused) k_gelu_sumsq<true><<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    else if (!wide) k_gelu_sumsq<false><<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    if ((rc = launched("a ResBlock's GELU"))) return rc;
    if (!wide) k_grn_nx<<<(unsigned)N, 1024, 0, stream()>>>(ss, c4);   /* k_sumsq8 made nx itself */
    if ((rc = launched("a ResBlock's GRN norms"))) return rc;
    if (HW >= 2 * c && fold_grn()) {
        const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)cs_cuda_weight(w->fc2_w, CS_BF16, err, sizeof err);
        const float *b2 = NULL;
        if (!w2 || (w->fc2_b && !(b2 = (const float *)cs_cuda_weight(w->fc2_b, CS_F32, err, sizeof err))))
            return cs_cuda_weight_rc();
        __nv_bfloat162 *wn = (__nv_bfloat162 *)cs_cuda_scratch(20, N * c * c4 * 2);
        float *bn = (float *)cs_cuda_scratch(21, c * sizeof(float));
        if (!wn || !bn) return CS_ENOMEM;
        k_grn_fold<<<(unsigned)c, FOLD_THREADS, 0, stream()>>>(w2, c2, c, N, (const float2 *)ss, (const float2 *)g,
                                                              (const float2 *)be, b2, wn, bn);
        if ((rc = launched("a ResBlock's GRN folded into fc2"))) return rc;
        for (size_t n = 0; n < N && !rc; n++)
            rc = cs_cuda_gemm_bf16((const uint16_t *)(h + n * HW * c2), HW, c4, (const uint16_t *)(wn + n * c * c2),
                                   c, bn, x + n * HW * c, c, 1);
    } else {
        k_grn_apply<<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss, g, be);
        if ((rc = launched("a ResBlock's GRN"))) return rc;
        rc = cs_cuda_linear16((const uint16_t *)h, rows, c4, w->fc2_w, w->fc2_b, x, 0, c, 1);
    }
    return rc == CS_EUNSUP ? cs_cuda_fail_text(CS_EDEVICE, "CUDA: no cuBLASLt algorithm for a ResBlock's fc2") : rc;
}

/* ---- AttnBlock ---- */

/* one warp a row: y = bf16(LN(x)) (eps 1e-6, no affine); c % 4 == 0, x 16-byte aligned */
static __global__ void k_ln16(const float *x, size_t rows, size_t c, __nv_bfloat162 *y)
{
    const unsigned lane = threadIdx.x & 31;
    size_t nw = ((size_t)gridDim.x * blockDim.x) >> 5, c4 = c / 4;
    for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += nw) {
        const float4 *xr = (const float4 *)(x + r * c);
        float s = 0.0f;
        for (size_t i = lane; i < c4; i += 32) {
            float4 v = xr[i];
            s += (v.x + v.y) + (v.z + v.w);
        }
        float mean = warp_sum(s) / (float)c, q = 0.0f;
        for (size_t i = lane; i < c4; i += 32) {
            float4 v = xr[i];
            q += (v.x - mean) * (v.x - mean) + (v.y - mean) * (v.y - mean) + (v.z - mean) * (v.z - mean) +
                 (v.w - mean) * (v.w - mean);
        }
        float inv = rsqrtf(warp_sum(q) / (float)c + 1e-6f);
        __nv_bfloat162 *yr = y + r * (c / 2);
        for (size_t i = lane; i < c4; i += 32) {
            float4 v = xr[i];
            yr[2 * i] = __floats2bfloat162_rn((v.x - mean) * inv, (v.y - mean) * inv);
            yr[2 * i + 1] = __floats2bfloat162_rn((v.z - mean) * inv, (v.w - mean) * inv);
        }
    }
}

/* y = bf16(SiLU(x)) */
static __global__ void k_silu16(const float *x, size_t n, __nv_bfloat16 *y)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        y[i] = __float2bfloat16_rn(v / (1.0f + expf(-v)));
    }
}

static unsigned grid_for(size_t items, unsigned per_block)
{
    size_t b = (items + per_block - 1) / per_block;
    return (unsigned)(b < ((size_t)1 << 16) ? (b ? b : 1) : ((size_t)1 << 16));
}

/* rows of y (bf16, row stride ldy) = x16 [M, K] W^T + b: CS_EUNSUP when
 * cuBLASLt has no bf16-output algorithm for it */
static int lin16(const __nv_bfloat16 *x16, size_t M, size_t K, const cs_tensor *W, const cs_tensor *b,
                 __nv_bfloat16 *y, size_t ldy)
{
    return cs_cuda_linear16((const uint16_t *)x16, M, K, W, b, y, 1, ldy, 0);
}

/* [k | v] rows of a packed in_proj: one [2c, K] view from the k rows on */
static cs_tensor two_rows(const cs_tensor *k)
{
    cs_tensor t = *k;
    t.shape[0] *= 2;
    return t;
}

/* In bf16: xn = LN(x) -> bf16 (one kernel); q|k|v = xn Wqkv (cuBLASLt, bf16
 * out); ckv = (SiLU(cond) -> bf16) kv_mapper Wk|Wv (two products, bf16 out);
 * attention straight from those rows (flash.cu, bf16 out); x += o Wo. Every
 * intermediate is bf16 as under autocast; x is written only by the last
 * product, so a CS_EUNSUP before it leaves x as it was. */
extern "C" int cs_cuda_attn_block(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond,
                                  size_t Lc, size_t cc, const cs_attn_block *w)
{
    size_t rows = N * HW, Ls = self_attn ? HW : 0, lc = Lc ? N * Lc : 0;
    if (cs_cuda_precision() != CS_PREC_BF16 || !rows || c % 64 || (uintptr_t)x % 16 ||
        !cs_cuda_flash_fits(N, HW, Ls + Lc, c, nhead) || (Lc && (!cond || !cc)))
        return CS_EUNSUP;
    __nv_bfloat16 *xn = (__nv_bfloat16 *)cs_cuda_scratch(12, rows * c * 2),
                  *qkv = (__nv_bfloat16 *)cs_cuda_scratch(13, rows * 3 * c * 2);
    __nv_bfloat16 *sc = NULL, *kv = NULL, *ckv = NULL;
    if (lc && (!(sc = (__nv_bfloat16 *)cs_cuda_scratch(14, lc * cc * 2)) ||
               !(kv = (__nv_bfloat16 *)cs_cuda_scratch(15, lc * c * 2)) ||
               !(ckv = (__nv_bfloat16 *)cs_cuda_scratch(16, lc * 2 * c * 2))))
        return CS_ENOMEM;
    if (!xn || !qkv) return CS_ENOMEM;
    k_ln16<<<grid_for(rows, 8), 256, 0, stream()>>>(x, rows, c, (__nv_bfloat162 *)xn);
    int rc = launched("an AttnBlock's norm");
    if (!rc && w->wqkv && Ls) {
        rc = lin16(xn, rows, c, w->wqkv, w->bqkv, qkv, 3 * c);
    } else {
        const cs_tensor *W[3] = {w->wq, w->wk, w->wv}, *B[3] = {w->bq, w->bk, w->bv};
        for (int i = 0; i < (Ls ? 3 : 1) && !rc; i++) rc = lin16(xn, rows, c, W[i], B[i], qkv + (size_t)i * c, 3 * c);
    }
    if (!rc && lc) {
        k_silu16<<<grid_for(lc * cc, 256), 256, 0, stream()>>>(cond, lc * cc, sc);
        rc = launched("an AttnBlock's SiLU");
        if (!rc) rc = lin16(sc, lc, cc, w->kv_w, w->kv_b, kv, c);
        if (!rc && w->wqkv) {
            cs_tensor wkv = two_rows(w->wk), bkv = two_rows(w->bk);
            rc = lin16(kv, lc, c, &wkv, &bkv, ckv, 2 * c);
        } else if (!rc) {
            rc = lin16(kv, lc, c, w->wk, w->bk, ckv, 2 * c);
            if (!rc) rc = lin16(kv, lc, c, w->wv, w->bv, ckv + c, 2 * c);
        }
    }
    if (rc) return rc;   /* CS_EUNSUP included: x is untouched so far */
    __nv_bfloat16 *o = xn;   /* xn is read */
    rc = cs_cuda_flash16((const uint16_t *)qkv, 3 * c, (const uint16_t *)qkv + c, (const uint16_t *)qkv + 2 * c,
                         3 * c, Ls, (const uint16_t *)ckv, ckv ? (const uint16_t *)ckv + c : NULL, 2 * c, Lc, N, HW,
                         c, nhead, (uint16_t *)o, c);
    if (rc) return rc;
    rc = cs_cuda_linear16((const uint16_t *)o, rows, c, w->wo, w->bo, x, 0, c, 1);
    return rc == CS_EUNSUP ? cs_cuda_fail_text(CS_EDEVICE, "CUDA: no cuBLASLt algorithm for an AttnBlock's out_proj")
                           : rc;
}
