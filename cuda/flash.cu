/* Attention without the score matrix (the flash-attention scheme: Dao et
 * al. 2022, and the work split of FlashAttention-2, Dao 2023) for 64-wide
 * heads, the shape of every attention in Stage C and B, in bf16 or fp16
 * products with float32 accumulation (sm_80 and newer).
 *
 * The kernel reads 16-bit rows: the AttnBlock (fused.cu) hands it its
 * 16-bit projections as they come out of cuBLASLt; float32 callers
 * (cs_dev_ops.attention, attention_cat) have theirs converted first.
 * A block takes 64 query rows of one head of one image, 4 warps of 16 rows.
 * Keys and values stream through shared memory 64 at a time, copied with
 * cp.async into two buffers: the next tile's copy runs while this one is
 * computed. Everything per row stays in registers: Q as mma A fragments,
 * the scores S = Q K^T of the step (16 x 64 per warp), the running max m
 * and sum l, the output rows O (16 x 64 per warp). The scores' accumulator
 * layout of mma.m16n8k16 is the A-operand layout of the next product, so
 * P = exp(S - m) goes from S's registers straight into O += P V:
 *     m' = max(m, rowmax S);  P = exp(S - m');  l = l e^(m - m') + rowsum P;
 *     O = O e^(m - m') + P V;             and at the end O / l.
 * Keys may come in two row blocks (an image's own tokens, then the
 * conditioning tokens), so the AttnBlock needs no gathered copy of them.
 *
 * Anything else (a mask, other head widths, fp32) returns CS_EUNSUP and
 * attention.cu does it. $CASCADE_FLASH=0 turns it off. On the H100 it took
 * Stage C lite from 16.2 to 9.4 ms a forward, Stage B lite from 39.8 to
 * 25.9 ms (bench/RESULTS-cuda.md). */
#include "core.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FA_D 64            /* head width */
#define FA_BQ 64           /* query rows a block: 4 warps of 16 */
#define FA_BK 64           /* keys a step */
#define FA_LDS (FA_D + 8)  /* shared row stride: 144 bytes keep ldmatrix's 8 rows on distinct banks */

struct fa_args {
    const uint16_t *q;
    size_t ldq;
    const uint16_t *k[2], *v[2];   /* key/value row blocks (row strides ld); L[1] 0 when there is one */
    size_t ld[2], L[2];
    size_t Lq;
    void *o;                       /* float32 or 16-bit rows (the kernel's O16) */
    size_t ldo;
    float scale_log2;   /* 1/sqrt(64) * log2(e): exp(x) as exp2 */
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
static __device__ __forceinline__ uint32_t pack2(float a, float b, __nv_bfloat16 *)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *(uint32_t *)&h;
}
static __device__ __forceinline__ uint32_t pack2(float a, float b, __half *)
{
    /* saturate as the rest of the fp16 path does (cuda/convert.cu) */
    a = fminf(fmaxf(a, -65504.0f), 65504.0f), b = fminf(fmaxf(b, -65504.0f), 65504.0f);
    __half2 h = __floats2half2_rn(a, b);
    return *(uint32_t *)&h;
}

static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1,
                                                __nv_bfloat16 *)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1, __half *)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ void ldm_x4(uint32_t *r, const void *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
static __device__ __forceinline__ void ldm_x4_trans(uint32_t *r, const void *p)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* 16 bytes global -> shared, or 16 zero bytes when !valid (src not read) */
static __device__ __forceinline__ void cp16(void *dst, const void *src, bool valid)
{
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n));
}

/* query rows q0 .. q0+63 of head h into sq (rows past Lq zero) */
static __device__ __forceinline__ void fetch_q(uint32_t (*sq)[FA_LDS / 2], const fa_args &a, size_t n, size_t h,
                                               size_t q0)
{
    for (int i = threadIdx.x; i < FA_BQ * (FA_D / 8); i += blockDim.x) {
        int r = i / (FA_D / 8), c = i % (FA_D / 8);   /* 16 bytes = 8 values */
        bool ok = q0 + (size_t)r < a.Lq;
        const uint16_t *src = ok ? a.q + (n * a.Lq + q0 + (size_t)r) * a.ldq + h * FA_D + c * 8 : a.q;
        cp16(&sq[r][c * 4], src, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

/* keys k0 .. k0+63 of head h into sk, sv (rows past Lk zero; the tile may
 * straddle the two row blocks) */
static __device__ __forceinline__ void fetch_kv(uint32_t (*sk)[FA_LDS / 2], uint32_t (*sv)[FA_LDS / 2],
                                                const fa_args &a, size_t n, size_t h, size_t k0)
{
    for (int i = threadIdx.x; i < FA_BK * (FA_D / 8); i += blockDim.x) {
        int r = i / (FA_D / 8), c = i % (FA_D / 8);
        size_t j = k0 + (size_t)r;
        /* selects, not a.k[s]: indexing the parameters would copy them to local memory */
        bool s = j >= a.L[0];
        size_t jj = s ? j - a.L[0] : j, L = s ? a.L[1] : a.L[0], ld = s ? a.ld[1] : a.ld[0];
        bool ok = jj < L;
        size_t off = ok ? (n * L + jj) * ld + h * FA_D + (size_t)c * 8 : 0;
        const uint16_t *kb = s ? a.k[1] : a.k[0], *vb = s ? a.v[1] : a.v[0];
        cp16(&sk[r][c * 4], kb + off, ok);
        cp16(&sv[r][c * 4], vb + off, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
}
#endif

/* One step of 64 keys for this warp's 16 query rows: S = Q K^T from the
 * K tile, the running max and sum, O rescaled, O += P V from the V tile.
 * MASK: the tile has fewer than 64 keys (the last one): scores past kvalid
 * are -inf. */
template <typename T, bool MASK>
static __device__ __forceinline__ void fa_step(uint32_t (*sk)[FA_LDS / 2], uint32_t (*sv)[FA_LDS / 2],
                                               uint32_t (*qf)[4], float (*o)[4], float *m, float *l, int kvalid,
                                               float scale_log2)
{
    const int lane = threadIdx.x & 31, t = lane & 3;
    /* S = Q K^T: K's rows are the columns of the product (col-major B) */
    float s[FA_BK / 8][4];
    for (int j = 0; j < FA_BK / 8; j++) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        for (int kk = 0; kk < FA_D / 16; kk += 2) {
            uint32_t b[4];
            ldm_x4(b, (const uint16_t *)sk[j * 8 + (lane & 7)] + kk * 16 + (lane >> 3) * 8);
            mma16816(s[j], qf[kk], b[0], b[1], (T *)0);
            mma16816(s[j], qf[kk + 1], b[2], b[3], (T *)0);
        }
    }
    float mx[2] = {-INFINITY, -INFINITY};
    for (int j = 0; j < FA_BK / 8; j++)
        for (int e = 0; e < 4; e++) {
            float x = !MASK || j * 8 + 2 * t + (e & 1) < kvalid ? s[j][e] * scale_log2 : -INFINITY;
            s[j][e] = x;
            mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
    float alpha[2];
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float mn = fmaxf(m[r], mx[r]);   /* finite: every step has a valid key */
        alpha[r] = exp2f(m[r] - mn);
        m[r] = mn;
        l[r] *= alpha[r];   /* this thread's part of the row sum; the 4 parts are added at the end */
    }
    for (int j = 0; j < FA_D / 8; j++) {
        o[j][0] *= alpha[0], o[j][1] *= alpha[0];
        o[j][2] *= alpha[1], o[j][3] *= alpha[1];
    }
    /* P, 16 keys at a time, as the A fragment of O += P V */
    for (int kk = 0; kk < FA_BK / 16; kk++) {
        float p[2][4];
        for (int u = 0; u < 2; u++)
            for (int e = 0; e < 4; e++) {
                p[u][e] = exp2f(s[2 * kk + u][e] - m[e >> 1]);
                l[e >> 1] += p[u][e];
            }
        uint32_t pa[4] = {pack2(p[0][0], p[0][1], (T *)0), pack2(p[0][2], p[0][3], (T *)0),
                          pack2(p[1][0], p[1][1], (T *)0), pack2(p[1][2], p[1][3], (T *)0)};
        for (int dj = 0; dj < FA_D / 16; dj++) {
            uint32_t b[4];
            ldm_x4_trans(b, (const uint16_t *)sv[kk * 16 + (lane & 15)] + dj * 16 + (lane >> 4) * 8);
            mma16816(o[2 * dj], pa, b[0], b[1], (T *)0);
            mma16816(o[2 * dj + 1], pa, b[2], b[3], (T *)0);
        }
    }
}

/* The warp's output rows O / l (the 4 threads' parts of l summed first),
 * as float32 or (O16) as T */
template <typename T, bool O16>
static __device__ __forceinline__ void fa_store(const fa_args &a, float (*o)[4], float *l, size_t n, size_t h,
                                                size_t q0, int qrows)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    for (int r = 0; r < 2; r++) {
        int row = warp * 16 + g + 8 * r;
        if (row >= qrows) continue;
        float inv = 1.0f / l[r];
        size_t at = (n * a.Lq + q0 + (size_t)row) * a.ldo + h * FA_D + 2 * t;
        if (O16) {
            uint32_t *out = (uint32_t *)((uint16_t *)a.o + at);
            for (int j = 0; j < FA_D / 8; j++) out[j * 4] = pack2(o[j][2 * r] * inv, o[j][2 * r + 1] * inv, (T *)0);
        } else {
            float *out = (float *)a.o + at;
            for (int j = 0; j < FA_D / 8; j++) out[j * 8] = o[j][2 * r] * inv, out[j * 8 + 1] = o[j][2 * r + 1] * inv;
        }
    }
}

/* grid (query blocks, heads, images), 128 threads */
template <typename T, bool O16>
static __global__ void __launch_bounds__(128, 4) k_flash(fa_args a)
{
#if __CUDA_ARCH__ >= 800
    __shared__ __align__(16) uint32_t sq[FA_BQ][FA_LDS / 2], sk[2][FA_BK][FA_LDS / 2], sv[2][FA_BK][FA_LDS / 2];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t n = blockIdx.z, h = blockIdx.y, q0 = (size_t)blockIdx.x * FA_BQ, Lk = a.L[0] + a.L[1];
    const int qrows = (int)(a.Lq - q0 < FA_BQ ? a.Lq - q0 : FA_BQ);
    fetch_q(sq, a, n, h, q0);
    fetch_kv(sk[0], sv[0], a, n, h, 0);
    asm volatile("cp.async.wait_group 1;\n" ::);   /* the queries are in */
    __syncthreads();
    /* Q as A fragments, one per 16 features: rows warp*16 + (lane & 15), columns + (lane >> 4) * 8 */
    uint32_t qf[FA_D / 16][4];
    for (int kk = 0; kk < FA_D / 16; kk++)
        ldm_x4(qf[kk], (const uint16_t *)sq[warp * 16 + (lane & 15)] + kk * 16 + (lane >> 4) * 8);
    /* this thread's rows: g and g + 8 of the warp's 16; its columns 2t, 2t+1 of every 8 */
    float o[FA_D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int j = 0; j < FA_D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    int b = 0;
    for (size_t k0 = 0; k0 < Lk; k0 += FA_BK, b ^= 1) {
        if (k0 + FA_BK < Lk) {
            fetch_kv(sk[b ^ 1], sv[b ^ 1], a, n, h, k0 + FA_BK);
            asm volatile("cp.async.wait_group 1;\n" ::);
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::);
        }
        __syncthreads();   /* tile b is in for every thread */
        if (Lk - k0 >= FA_BK) fa_step<T, false>(sk[b], sv[b], qf, o, m, l, FA_BK, a.scale_log2);
        else fa_step<T, true>(sk[b], sv[b], qf, o, m, l, (int)(Lk - k0), a.scale_log2);
        __syncthreads();   /* tile b is read: the next fetch may overwrite it */
    }
    fa_store<T, O16>(a, o, l, n, h, q0, qrows);
#endif
}

static int enabled(void)
{
    static int v = -1;
    return cs_cuda_env_on("CASCADE_FLASH", &v);
}

/* whether the kernel takes these sizes (nothing about the data) */
extern "C" int cs_cuda_flash_fits(size_t N, size_t Lq, size_t Lk, size_t C, int nhead)
{
    int prec = cs_cuda_precision();
    return enabled() && cs_cuda_cc() >= 80 && (prec == CS_PREC_BF16 || prec == CS_PREC_FP16) && nhead > 0 &&
           C == (size_t)nhead * FA_D && Lq && Lk && N <= 65535 && nhead <= 65535 &&
           (Lq + FA_BQ - 1) / FA_BQ <= 0x7fffffff;
}

/* 16-byte rows: cp.async copies 16 bytes at a time */
static int rows16(const void *p, size_t ld) { return !p || ((uintptr_t)p % 16 == 0 && ld % 8 == 0); }

static int launch(fa_args *a, size_t N, int nhead, int o16)
{
    a->scale_log2 = 1.4426950408889634f / sqrtf((float)FA_D);
    dim3 grid((unsigned)((a->Lq + FA_BQ - 1) / FA_BQ), (unsigned)nhead, (unsigned)N);
    cudaStream_t st = (cudaStream_t)cs_cuda_stream();
    if (cs_cuda_precision() == CS_PREC_BF16) {
        if (o16) k_flash<__nv_bfloat16, true><<<grid, 128, 0, st>>>(*a);
        else k_flash<__nv_bfloat16, false><<<grid, 128, 0, st>>>(*a);
    } else {
        if (o16) k_flash<__half, true><<<grid, 128, 0, st>>>(*a);
        else k_flash<__half, false><<<grid, 128, 0, st>>>(*a);
    }
    return cs_cuda_check_launch("attention (flash)");
}

extern "C" int cs_cuda_flash16(const uint16_t *q, size_t ldq, const uint16_t *k1, const uint16_t *v1, size_t ld1,
                               size_t L1, const uint16_t *k2, const uint16_t *v2, size_t ld2, size_t L2, size_t N,
                               size_t Lq, size_t C, int nhead, uint16_t *o, size_t ldo)
{
    if (!L1) k1 = k2, v1 = v2, ld1 = ld2, L1 = L2, L2 = 0;
    if (!cs_cuda_flash_fits(N, Lq, L1 + L2, C, nhead) || !rows16(q, ldq) || !rows16(o, ldo) || !rows16(k1, ld1) ||
        !rows16(v1, ld1) || (L2 && (!rows16(k2, ld2) || !rows16(v2, ld2))))
        return CS_EUNSUP;
    fa_args a = {q, ldq, {k1, L2 ? k2 : k1}, {v1, L2 ? v2 : v1}, {ld1, L2 ? ld2 : ld1}, {L1, L2}, Lq, o, ldo, 0.0f};
    return launch(&a, N, nhead, 1);
}

/* float32 rows to dense 16-bit ones at *at (advanced); NULL stays NULL */
static const uint16_t *half_rows(const float *x, size_t rows, size_t C, size_t ld, uint16_t **at, int *rc)
{
    if (!x || *rc) return NULL;
    uint16_t *y = *at;
    *at += rows * C;
    *rc = cs_cuda_precision() == CS_PREC_BF16 ? cs_cuda_f32_to_bf16(x, y, rows, C, ld)
                                               : cs_cuda_f32_to_f16(x, y, rows, C, ld);
    return y;
}

/* q [N*Lq rows], keys/values in two blocks (k2 NULL: none): converted to
 * 16 bits in scratch, then the kernel writes float32 o */
static int flash_f32(const float *q, size_t ldq, const float *k1, const float *v1, size_t ldk1, size_t ldv1,
                     size_t L1, const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq,
                     size_t C, int nhead, float *o, size_t ldo)
{
    if (!L1) k1 = k2, v1 = v2, ldk1 = ldv1 = ld2, L1 = L2, L2 = 0, k2 = v2 = NULL;
    if (!L2) k2 = v2 = NULL;
    if (!cs_cuda_flash_fits(N, Lq, L1 + L2, C, nhead)) return CS_EUNSUP;
    size_t n16 = N * (Lq + 2 * (L1 + L2)) * C;
    uint16_t *at = (uint16_t *)cs_cuda_scratch(11, n16 * sizeof(uint16_t));
    if (!at) return cs_cuda_fail_text(CS_ENOMEM, "CUDA: out of memory for attention's 16-bit operands");
    int rc = 0;
    const uint16_t *q16 = half_rows(q, N * Lq, C, ldq, &at, &rc), *k16 = half_rows(k1, N * L1, C, ldk1, &at, &rc),
                   *v16 = half_rows(v1, N * L1, C, ldv1, &at, &rc), *k216 = half_rows(k2, N * L2, C, ld2, &at, &rc),
                   *v216 = half_rows(v2, N * L2, C, ld2, &at, &rc);
    if (rc) return rc;
    fa_args a = {q16, C, {k16, L2 ? k216 : k16}, {v16, L2 ? v216 : v16}, {C, C}, {L1, L2}, Lq, o, ldo, 0.0f};
    return launch(&a, N, nhead, 0);
}

extern "C" int cs_cuda_flash_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                       size_t ldv, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                                       const float *mask, float *o, size_t ldo)
{
    if (mask) return CS_EUNSUP;
    return flash_f32(q, ldq, k, v, ldk, ldv, Lk, NULL, NULL, 0, 0, N, Lq, C, nhead, o, ldo);
}

extern "C" int cs_cuda_attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1,
                                     size_t L1, const float *k2, const float *v2, size_t ld2, size_t L2, size_t N,
                                     size_t Lq, size_t C, int nhead, float *o, size_t ldo)
{
    return flash_f32(q, ldq, k1, v1, ld1, ld1, L1, k2, v2, ld2, L2, N, Lq, C, nhead, o, ldo);
}
