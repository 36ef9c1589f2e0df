/* Linear layers of a few short rows (M <= CS_CUDA_SMALL_M, K <=
 * CS_CUDA_SMALL_K) in 16-bit precision: the timestep mappers, run in every
 * block of every step. Through cuBLASLt each is two launches (the activations' conversion
 * to 16 bits, then the product) for a few microseconds of work; here one
 * kernel reads the float32 activations and the cached 16-bit weight and
 * accumulates in float32 (the activations are not rounded to 16 bits, so
 * this is at least as close to the float32 result as the product path).
 * A warp per output feature: its lanes stride along K, then a warp sum.
 * The same kernel sums a TimestepBlock's mappers (cs_cuda_ts_block). */
#include "core.h"

#include "error.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define GV_WARPS 8

template <typename T> static __device__ __forceinline__ float wval(const T *w, size_t i);
template <> __device__ __forceinline__ float wval<__nv_bfloat16>(const __nv_bfloat16 *w, size_t i)
{
    return __bfloat162float(w[i]);
}
template <> __device__ __forceinline__ float wval<__half>(const __half *w, size_t i) { return __half2float(w[i]); }

#define SM_MAX 5   /* products summed by one call: 1 + CS_MAX_TCONDS (src/blocks.h) */

/* up to SM_MAX weights whose products with consecutive K-wide slices of x
 * are summed: one linear, or a TimestepBlock's mappers */
struct sm_args {
    const void *w[SM_MAX];   /* [N, K] each, 16-bit */
    const float *b[SM_MAX];  /* [N] each, float32, or NULL */
    int n;
};

/* y[m, j] (+)= sum over i of x[m, i*K .. (i+1)*K) w_i[j, :] + b_i[j]: a warp
 * per output feature j, its lanes along K, every row in its registers */
template <typename T>
static __global__ void k_small(const float *x, size_t ldx, int M, size_t K, sm_args a, float *y, size_t ldy, size_t N,
                               int accumulate)
{
    size_t j = (size_t)blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
    unsigned lane = threadIdx.x & 31;
    if (j >= N) return;
    float acc[CS_CUDA_SMALL_M];
#pragma unroll
    for (int m = 0; m < CS_CUDA_SMALL_M; m++) acc[m] = 0.0f;
    for (int i = 0; i < a.n; i++) {
        const T *wr = (const T *)a.w[i] + j * K;
        for (size_t k = lane; k < K; k += 32) {
            float wv = wval(wr, k);
#pragma unroll
            for (int m = 0; m < CS_CUDA_SMALL_M; m++)
                if (m < M) acc[m] += x[(size_t)m * ldx + (size_t)i * K + k] * wv;
        }
    }
    float bias = 0.0f;
    for (int i = 0; i < a.n; i++) bias += a.b[i] ? a.b[i][j] : 0.0f;
#pragma unroll
    for (int m = 0; m < CS_CUDA_SMALL_M; m++) {
        float s = acc[m];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0 && m < M) {
            float *out = y + (size_t)m * ldy + j;
            *out = (accumulate ? *out + s : s) + bias;
        }
    }
}

/* The same where K % 8 == 0 (16-byte weight rows): four lanes an output
 * feature, each reading 8 weights at a time (a warp reads 8 whole rows,
 * contiguous), then a sum over the four. A warp a feature left most lanes
 * idle at the mappers' K = 64 and took ~12 us a TimestepBlock on the H100. */
template <typename T>
static __global__ void k_small4(const float *x, size_t ldx, int M, size_t K, sm_args a, float *y, size_t ldy, size_t N,
                                int accumulate)
{
    size_t j = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 2;
    unsigned q = threadIdx.x & 3;
    if (j >= N) return;   /* whole quads leave together: the shuffles below stay within live lanes */
    float acc[CS_CUDA_SMALL_M];
#pragma unroll
    for (int m = 0; m < CS_CUDA_SMALL_M; m++) acc[m] = 0.0f;
    for (int i = 0; i < a.n; i++) {
        const T *wr = (const T *)a.w[i] + j * K;
        for (size_t k = 8 * q; k < K; k += 32) {
            uint4 u = *(const uint4 *)(wr + k);
            const T *h = (const T *)&u;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float w = wval(h, e);
#pragma unroll
                for (int m = 0; m < CS_CUDA_SMALL_M; m++)
                    if (m < M) acc[m] += x[(size_t)m * ldx + (size_t)i * K + k + e] * w;
            }
        }
    }
    float bias = 0.0f;
    for (int i = 0; i < a.n; i++) bias += a.b[i] ? a.b[i][j] : 0.0f;
    unsigned quad = 0xfu << (threadIdx.x & 28);
#pragma unroll
    for (int m = 0; m < CS_CUDA_SMALL_M; m++) {
        float s = acc[m];
        s += __shfl_xor_sync(quad, s, 1);
        s += __shfl_xor_sync(quad, s, 2);
        if (q == 0 && m < M) {
            float *out = y + (size_t)m * ldy + j;
            *out = (accumulate ? *out + s : s) + bias;
        }
    }
}

static int small(const float *x, size_t M, size_t K, size_t ldx, const sm_args *a, int wdt, float *y, size_t ldy,
                 size_t N, int accumulate, const char *what)
{
    cudaStream_t st = (cudaStream_t)cs_cuda_stream();
    int rows16 = K % 8 == 0;
    for (int i = 0; i < a->n; i++) rows16 = rows16 && (uintptr_t)a->w[i] % 16 == 0;
    if (rows16 && (4 * N + 255) / 256 <= 0x7fffffff) {
        dim3 grid((unsigned)((4 * N + 255) / 256));
        if (wdt == CS_BF16) k_small4<__nv_bfloat16><<<grid, 256, 0, st>>>(x, ldx, (int)M, K, *a, y, ldy, N, accumulate);
        else k_small4<__half><<<grid, 256, 0, st>>>(x, ldx, (int)M, K, *a, y, ldy, N, accumulate);
        return cs_cuda_check_launch(what);
    }
    dim3 grid((unsigned)((N + GV_WARPS - 1) / GV_WARPS));
    if (wdt == CS_BF16) k_small<__nv_bfloat16><<<grid, 32 * GV_WARPS, 0, st>>>(x, ldx, (int)M, K, *a, y, ldy, N, accumulate);
    else k_small<__half><<<grid, 32 * GV_WARPS, 0, st>>>(x, ldx, (int)M, K, *a, y, ldy, N, accumulate);
    return cs_cuda_check_launch(what);
}

extern "C" int cs_cuda_linear_small(const float *x, size_t M, size_t K, size_t ldx, const void *w, int wdt,
                                    const float *b, float *y, size_t ldy, size_t N, int accumulate)
{
    if (M < 1 || M > CS_CUDA_SMALL_M || (wdt != CS_BF16 && wdt != CS_F16) || (N + GV_WARPS - 1) / GV_WARPS > 0x7fffffff)
        return CS_EUNSUP;
    sm_args a = {{w}, {b}, 1};
    return small(x, M, K, ldx, &a, wdt, y, ldy, N, accumulate, "a small linear layer");
}

/* ---- a TimestepBlock as one op ---- */

/* cs_dev_ops.ts_block in 16-bit precision: the mappers in one kernel (no
 * conversion pass, no accumulation through memory), then the modulation */
extern "C" int cs_cuda_ts_block(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r,
                                int nconds, const cs_tensor *w, const cs_tensor *b)
{
    int prec = cs_cuda_precision();
    size_t J = 2 * c;
    if (prec == CS_PREC_FP32 || !N || N > CS_CUDA_SMALL_M || nconds < 0 || nconds + 1 > SM_MAX || !c || !c_r ||
        (J + GV_WARPS - 1) / GV_WARPS > 0x7fffffff)
        return CS_EUNSUP;
    int wdt = prec == CS_PREC_BF16 ? CS_BF16 : CS_F16;
    sm_args a;
    a.n = nconds + 1;
    char err[256];
    for (int i = 0; i < a.n; i++)
        if (!(a.w[i] = cs_cuda_weight(&w[i], wdt, err, sizeof err)) ||
            !(a.b[i] = (const float *)cs_cuda_weight(&b[i], CS_F32, err, sizeof err)))
            return cs_cuda_weight_rc();
    float *ab = (float *)cs_cuda_scratch(19, N * J * sizeof(float));
    if (!ab) return CS_ENOMEM;
    int rc = small(t, N, c_r, ldt, &a, wdt, ab, J, J, 0, "a TimestepBlock's mappers");
    return rc ? rc : cs_cuda_modulate(x, x, N, HW, c, ab, ab + c, J);
}
