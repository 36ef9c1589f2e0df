/* Fused ops of the CUDA plugin: whole sub-blocks in 16-bit, where the
 * single ops (kernels.cu, gemm.c) would pass float32 activations through
 * memory between every step.
 *
 * mlp_grn, the channel MLP of every ResBlock (Stage C and B):
 *     x += fc2(GRN(GELU(fc1(in))))
 * in bf16 precision runs as
 *     in -> bf16; h = fc1 (cuBLASLt, bf16 out, bias in the epilogue);
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

static int launched(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, what);
}

extern "C" int cs_cuda_mlp_grn(const float *in, size_t N, size_t HW, size_t cin, const cs_tensor *w1,
                               const cs_tensor *b1, const cs_tensor *gamma, const cs_tensor *beta,
                               const cs_tensor *w2, const cs_tensor *b2, float *x)
{
    if (cs_cuda_precision() != CS_PREC_BF16 || w1->ndim < 1 || w2->ndim < 1) return CS_EUNSUP;
    size_t rows = N * HW, c4 = (size_t)w1->shape[0], c = (size_t)w2->shape[0];
    if (!rows || !c4 || !c || (c4 & 1) || N > MAX_GRID_YZ) return CS_EUNSUP;
    char err[256];
    const float *g = (const float *)cs_cuda_weight(gamma, CS_F32, err, sizeof err);
    const float *be = g ? (const float *)cs_cuda_weight(beta, CS_F32, err, sizeof err) : NULL;
    if (!be) return cs_cuda_weight_rc();
    uint16_t *x16 = (uint16_t *)cs_cuda_scratch(8, rows * cin * 2);
    __nv_bfloat162 *h = (__nv_bfloat162 *)cs_cuda_scratch(9, rows * c4 * 2);
    float *ss = (float *)cs_cuda_scratch(10, N * c4 * sizeof(float));
    if (!x16 || !h || !ss) return CS_ENOMEM;
    int rc = cs_cuda_f32_to_bf16(in, x16, rows, cin, cin);
    if (!rc) rc = cs_cuda_linear16(x16, rows, cin, w1, b1, h, 1, c4, 0);
    if (rc) return rc;   /* CS_EUNSUP included: x is untouched so far */
    cudaError_t e = cudaMemsetAsync(ss, 0, N * c4 * sizeof(float), stream());
    if (e != cudaSuccess) return cs_cuda_fail(e, "the channel MLP");
    size_t c2 = c4 / 2, per;
    dim3 grid = pair_grid(c2, HW, N, &per);
    k_gelu_sumsq<<<grid, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss);
    if ((rc = launched("the channel MLP's GELU"))) return rc;
    k_grn_nx<<<(unsigned)N, 1024, 0, stream()>>>(ss, c4);
    if ((rc = launched("the channel MLP's GRN norms"))) return rc;
    k_grn_apply<<<grid, MLP_THREADS, 0, stream()>>>(h, HW, c2, per, ss, g, be);
    if ((rc = launched("the channel MLP's GRN"))) return rc;
    rc = cs_cuda_linear16((const uint16_t *)h, rows, c4, w2, b2, x, 0, c, 1);
    return rc == CS_EUNSUP ? cs_cuda_fail_text(CS_EDEVICE, "CUDA: no cuBLASLt algorithm for the channel MLP's fc2")
                           : rc;
}
