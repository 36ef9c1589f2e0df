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
#include "launch.cuh"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MLP_THREADS 128

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
    /* as many blocks as stay resident: at Stage B's 32768 pixels 4 blocks an SM were too few */
    size_t P = N * H * W;
    unsigned grid = resident_grid(k_dw_ln4<DW, PER4>, (P + DL_WARPS - 1) / DL_WARPS, 32 * DL_WARPS, smem);
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
    float *ss = (float *)cs_cuda_scratch(10, N * c4 * sizeof(float));
    if (!x16 || !h || !ss) return CS_ENOMEM;
    size_t blocks = (rows + DL_WARPS - 1) / DL_WARPS;
    unsigned grid = (unsigned)(blocks < ((size_t)1 << 20) ? blocks : ((size_t)1 << 20));
    if (dw ? dw_ln4<true>(x, N, H, W, c, dw, db, skip, cs, x16) : dw_ln4<false>(x, N, H, W, c, NULL, NULL, skip, cs, x16)) {
        if (dw) dw_ln<true>(grid, x, N, H, W, c, dw, db, skip, cs, x16);
        else dw_ln<false>(grid, x, N, H, W, c, NULL, NULL, skip, cs, x16);
    }
    int rc = cs_cuda_check_launch("a ResBlock's depthwise conv and norm");
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
    cudaError_t e = cudaMemsetAsync(ss, 0, N * c4 * sizeof(float), stream());
    if (e != cudaSuccess) return cs_cuda_fail(e, "a ResBlock");
    size_t c2 = c4 / 2, per;
    dim3 pg = pair_grid(c2, HW, N, &per);
    if (fused) k_gelu_sumsq<false><<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    else k_gelu_sumsq<true><<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    if ((rc = cs_cuda_check_launch("a ResBlock's GELU"))) return rc;
    k_grn_nx<<<(unsigned)N, 1024, 0, stream()>>>(ss, c4);
    if ((rc = cs_cuda_check_launch("a ResBlock's GRN norms"))) return rc;
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
        if ((rc = cs_cuda_check_launch("a ResBlock's GRN folded into fc2"))) return rc;
        for (size_t n = 0; n < N && !rc; n++)
            rc = cs_cuda_gemm_bf16((const uint16_t *)(h + n * HW * c2), HW, c4, (const uint16_t *)(wn + n * c * c2),
                                   c, bn, x + n * HW * c, c, 1);
    } else {
        k_grn_apply<<<pg, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss, g, be);
        if ((rc = cs_cuda_check_launch("a ResBlock's GRN"))) return rc;
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
    int rc = cs_cuda_check_launch("an AttnBlock's norm");
    if (!rc && w->wqkv && Ls) {
        rc = lin16(xn, rows, c, w->wqkv, w->bqkv, qkv, 3 * c);
    } else {
        const cs_tensor *W[3] = {w->wq, w->wk, w->wv}, *B[3] = {w->bq, w->bk, w->bv};
        for (int i = 0; i < (Ls ? 3 : 1) && !rc; i++) rc = lin16(xn, rows, c, W[i], B[i], qkv + (size_t)i * c, 3 * c);
    }
    if (!rc && lc) {
        k_silu16<<<grid_for(lc * cc, 256), 256, 0, stream()>>>(cond, lc * cc, sc);
        rc = cs_cuda_check_launch("an AttnBlock's SiLU");
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
