/* cs_attention (src/ops.h) on the device: per image, every head at once
 * with strided-batched GEMMs (the heads are hd = C/nhead consecutive
 * features, so head h+1 of Q, K, V and O starts hd floats after head h):
 *   S[h] = scale * Q_h K_h^T     [rows, Lk] per head, scale = 1/sqrt(hd)
 *   P[h] = softmax(S[h] + mask)  over Lk, float32
 *   O_h  = P[h] V_h              written into o's columns h*hd ..
 * Row-major products as column-major ones with swapped operands (see
 * gemm.c): S^T = K_h Q_h^T is (opA = T on K, ld ldk; opB = N on Q, ld ldq),
 * O_h^T = V_h^T P^T is (opA = N on V, ld ldv; opB = N on P, ld Lk).
 * The scores of one image take nhead x rows x Lk floats; rows of Q go in
 * chunks that keep them under 1 GiB. In BF16 / FP16 precision Q, K, V and P
 * enter the products as 16-bit, accumulated in float32; the softmax is
 * float32 always. */
#include "core.h"

#include "error.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>

#define SM_THREADS 256

static __device__ __forceinline__ void put(float *p, float v) { *p = v; }
static __device__ __forceinline__ void put(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
static __device__ __forceinline__ void put(__half *p, float v) { *p = __float2half_rn(v); }

/* all threads get the block's max (sum: 0) of v */
static __device__ float block_reduce(float v, int is_max, float *sh)
{
    for (int o = 16; o; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();   /* sh may still be read from the previous reduction */
    if (!lane) sh[warp] = v;
    __syncthreads();
    v = sh[0];
    for (int i = 1; i < SM_THREADS / 32; i++) v = is_max ? fmaxf(v, sh[i]) : v + sh[i];
    return v;
}

/* One block per row of S [nhead * rows, Lk] (head-major): P = softmax(S +
 * mask row). The mask is per image [Lq, Lk], offset to the chunk's first row
 * and shared by the heads. As the CPU (simd/ref.c): a row that is all -inf
 * gives NaN, as in PyTorch. P may be S itself (float32). */
template <typename T>
static __global__ void softmax_rows(const float *S, T *P, const float *mask, size_t rows, size_t Lk)
{
    __shared__ float sh[SM_THREADS / 32];
    size_t row = blockIdx.x;
    const float *s = S + row * Lk;
    const float *m = mask ? mask + (row % rows) * Lk : NULL;
    float mx = -INFINITY;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) mx = fmaxf(mx, m ? s[j] + m[j] : s[j]);
    mx = block_reduce(mx, 1, sh);
    float sum = 0.0f;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) sum += expf((m ? s[j] + m[j] : s[j]) - mx);
    sum = block_reduce(sum, 0, sh);
    float inv = 1.0f / sum;
    T *p = P + row * Lk;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) put(p + j, expf((m ? s[j] + m[j] : s[j]) - mx) * inv);
}

/* The same with the row held in shared memory: S is read once, not three
 * times (the scores are the largest thing attention moves). */
#define SM_ROW_MAX 12288   /* floats: the default 48 KiB of shared memory */
template <typename T>
static __global__ void softmax_rows_sh(const float *S, T *P, const float *mask, size_t rows, size_t Lk)
{
    extern __shared__ float buf[];
    __shared__ float sh[SM_THREADS / 32];
    size_t row = blockIdx.x;
    const float *s = S + row * Lk;
    const float *m = mask ? mask + (row % rows) * Lk : NULL;
    float mx = -INFINITY;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) {
        float v = m ? s[j] + m[j] : s[j];
        buf[j] = v;
        mx = fmaxf(mx, v);
    }
    mx = block_reduce(mx, 1, sh);
    float sum = 0.0f;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) {
        float e = expf(buf[j] - mx);
        buf[j] = e;
        sum += e;
    }
    sum = block_reduce(sum, 0, sh);
    float inv = 1.0f / sum;
    T *p = P + row * Lk;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) put(p + j, buf[j] * inv);
}

template <typename T>
static int softmax(const float *S, T *P, const float *mask, size_t nrows, size_t rows, size_t Lk)
{
    if (Lk <= SM_ROW_MAX)
        softmax_rows_sh<T><<<(unsigned)nrows, SM_THREADS, Lk * sizeof(float), cs_cuda_stream()>>>(S, P, mask, rows, Lk);
    else
        softmax_rows<T><<<(unsigned)nrows, SM_THREADS, 0, cs_cuda_stream()>>>(S, P, mask, rows, Lk);
    return cs_cuda_check_launch("the attention softmax");
}

static int to_16bit(int prec, const float *x, uint16_t *y, size_t rows, size_t cols, size_t ld)
{
    return prec == CS_PREC_BF16 ? cs_cuda_f32_to_bf16(x, y, rows, cols, ld) : cs_cuda_f32_to_f16(x, y, rows, cols, ld);
}

extern "C" int cs_cuda_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                                 size_t N, size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o,
                                 size_t ldo)
{
    if (nhead <= 0 || C % (size_t)nhead)
        return cs_cuda_fail_text(CS_EARG, "attention: %zu channels do not split into %d heads", C, nhead);
    if (!N || !Lq || !C) return 0;
    int frc = cs_cuda_flash_attention(q, ldq, k, ldk, v, ldv, N, Lq, Lk, C, nhead, mask, o, ldo);
    if (frc != CS_EUNSUP) return frc;
    cublasHandle_t blas = cs_cuda_blas();
    if (!blas) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    if (!Lk) {   /* empty sums: o = 0, as the CPU's product with K = 0 */
        cudaError_t e = cudaMemset2DAsync(o, ldo * sizeof(float), 0, C * sizeof(float), N * Lq, cs_cuda_stream());
        return e == cudaSuccess ? 0 : cs_cuda_fail(e, "attention");
    }
    size_t H = (size_t)nhead, hd = C / H;
    if (Lq > INT_MAX || Lk > INT_MAX || C > INT_MAX || ldq > INT_MAX || ldk > INT_MAX || ldv > INT_MAX ||
        ldo > INT_MAX)
        return cs_cuda_fail_text(CS_EUNSUP, "CUDA: attention of %zu x %zu tokens is past cuBLAS's 32-bit sizes", Lq, Lk);
    float scale = 1.0f / sqrtf((float)hd), one = 1.0f, zero = 0.0f;
    int prec = cs_cuda_precision();
    size_t rows = ((size_t)1 << 28) / (H * Lk);   /* 1 GiB of float32 scores */
    if (rows < 1) rows = 1;
    if (rows > Lq) rows = Lq;
    float *S = (float *)cs_cuda_scratch(4, H * rows * Lk * sizeof(float));
    if (!S) return CS_ENOMEM;
    /* 16-bit operands: Q chunk [rows, C], K and V [Lk, C], P [nhead, rows, Lk] */
    uint16_t *Qh = NULL, *Kh = NULL, *Vh = NULL, *Ph = NULL;
    cudaDataType_t t = prec == CS_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    if (prec != CS_PREC_FP32) {
        Qh = (uint16_t *)cs_cuda_scratch(5, (rows * C + 2 * Lk * C + H * rows * Lk) * 2);
        if (!Qh) return CS_ENOMEM;
        Kh = Qh + rows * C, Vh = Kh + Lk * C, Ph = Vh + Lk * C;
    }
    int rc;
    cublasStatus_t s;
    for (size_t n = 0; n < N; n++) {
        const float *kn = k + n * Lk * ldk, *vn = v + n * Lk * ldv;
        if (Kh && ((rc = to_16bit(prec, kn, Kh, Lk, C, ldk)) || (rc = to_16bit(prec, vn, Vh, Lk, C, ldv)))) return rc;
        for (size_t i0 = 0; i0 < Lq; i0 += rows) {
            size_t r = Lq - i0 < rows ? Lq - i0 : rows;
            const float *qn = q + (n * Lq + i0) * ldq;
            float *on = o + (n * Lq + i0) * ldo;
            const float *mn = mask ? mask + (n * Lq + i0) * Lk : NULL;
            long long sS = (long long)(r * Lk);   /* one head's scores */
            if (!Kh) {
                s = cublasSgemmStridedBatched(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)Lk, (int)r, (int)hd, &scale, kn,
                                              (int)ldk, (long long)hd, qn, (int)ldq, (long long)hd, &zero, S, (int)Lk,
                                              sS, (int)H);
                if (s) return cs_cuda_blas_fail(s, "attention scores");
                if ((rc = softmax<float>(S, S, mn, H * r, r, Lk))) return rc;
                s = cublasSgemmStridedBatched(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)hd, (int)r, (int)Lk, &one, vn,
                                              (int)ldv, (long long)hd, S, (int)Lk, sS, &zero, on, (int)ldo,
                                              (long long)hd, (int)H);
                if (s) return cs_cuda_blas_fail(s, "attention output");
                continue;
            }
            if ((rc = to_16bit(prec, qn, Qh, r, C, ldq))) return rc;
            s = cublasGemmStridedBatchedEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)Lk, (int)r, (int)hd, &scale, Kh, t,
                                           (int)C, (long long)hd, Qh, t, (int)C, (long long)hd, &zero, S, CUDA_R_32F,
                                           (int)Lk, sS, (int)H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (s) return cs_cuda_blas_fail(s, "attention scores (16-bit)");
            rc = prec == CS_PREC_BF16 ? softmax<__nv_bfloat16>(S, (__nv_bfloat16 *)Ph, mn, H * r, r, Lk)
                                      : softmax<__half>(S, (__half *)Ph, mn, H * r, r, Lk);
            if (rc) return rc;
            s = cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)hd, (int)r, (int)Lk, &one, Vh, t,
                                           (int)C, (long long)hd, Ph, t, (int)Lk, sS, &zero, on, CUDA_R_32F, (int)ldo,
                                           (long long)hd, (int)H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (s) return cs_cuda_blas_fail(s, "attention output (16-bit)");
        }
    }
    return 0;
}
