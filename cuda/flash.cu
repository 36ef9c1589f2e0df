/* Attention without the score matrix (the flash-attention scheme: Dao et
 * al. 2022, and the work split of FlashAttention-2, Dao 2023) for 64-wide
 * heads, the shape of every attention in Stage C and B, in bf16 or fp16
 * products with float32 accumulation (sm_80 and newer).
 *
 * A block takes 64 query rows of one head of one image, 4 warps of 16 rows.
 * Keys and values stream through shared memory 64 at a time: by default
 * converted once to 16-bit rows (k_kv16) and copied with cp.async into two
 * buffers, the next tile's copy running while this one is computed
 * (k_flash16); in the first form (k_flash, $CASCADE_FLASH=1) every block
 * converts the float32 activations as it loads them.
 * Everything per row stays in registers: Q as mma A fragments, the scores
 * S = Q K^T of the step (16 x 64 per warp), the running max m and sum l, the
 * output rows O (16 x 64 per warp). The scores' accumulator layout of
 * mma.m16n8k16 is the A-operand layout of the next product, so P = exp(S -
 * m) goes from S's registers straight into O += P V:
 *     m' = max(m, rowmax S);  P = exp(S - m');  l = l e^(m - m') + rowsum P;
 *     O = O e^(m - m') + P V;             and at the end O / l.
 * Keys may come in two row blocks (an image's own tokens, then the
 * conditioning tokens: cs_dev_ops.attention_cat), so the AttnBlock needs no
 * gathered copy of its keys and values.
 *
 * Anything else (a mask, other head widths, fp32, rows not 16-byte aligned)
 * returns CS_EUNSUP and attention.cu does it.
 *
 * The default where it applies ($CASCADE_FLASH=0 turns it off): on the H100
 * the first form took Stage C lite from 16.2 to 10.1 ms a forward, Stage B
 * lite from 39.8 to 28.2 ms; the second 9.4 and 25.9 ms (bench/RESULTS-cuda.md). */
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
    const float *q;
    size_t ldq;
    const float *k[2], *v[2];   /* key/value row blocks; k[1] NULL when there is one */
    size_t ldk[2], ldv[2], L[2];
    size_t Lq;
    float *o;
    size_t ldo;
    float scale_log2;   /* 1/sqrt(64) * log2(e): exp(x) as exp2 */
    const uint32_t *k16, *v16;   /* k_flash16: keys and values as 16-bit rows [n][head][Lkp][64] */
    size_t Lkp;                  /* Lk rounded up to FA_BK (the rows past Lk are zeros) */
    int nhead;
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

/* 64 rows of one head (64 floats from base + row * ld) into sh as 16-bit,
 * rows past nrows zero */
template <typename T>
static __device__ __forceinline__ void load_tile(uint32_t (*sh)[FA_LDS / 2], const float *base, size_t ld, int nrows)
{
    for (int i = threadIdx.x; i < 64 * (FA_D / 4); i += blockDim.x) {
        int r = i / (FA_D / 4), c = (i % (FA_D / 4)) * 4;
        float4 f = make_float4(0, 0, 0, 0);
        if (r < nrows) f = __ldg((const float4 *)(base + (size_t)r * ld + c));
        sh[r][c / 2] = pack2(f.x, f.y, (T *)0);
        sh[r][c / 2 + 1] = pack2(f.z, f.w, (T *)0);
    }
}

/* keys k0 .. k0+63 of block s's rows (the tile may straddle the two blocks) */
template <typename T>
static __device__ void load_kv(uint32_t (*sk)[FA_LDS / 2], uint32_t (*sv)[FA_LDS / 2], const fa_args &a, size_t n,
                               size_t h, size_t k0)
{
    for (int i = threadIdx.x; i < 64 * (FA_D / 4); i += blockDim.x) {
        int r = i / (FA_D / 4), c = (i % (FA_D / 4)) * 4;
        size_t j = k0 + (size_t)r;
        float4 fk = make_float4(0, 0, 0, 0), fv = fk;
        /* selects, not a[s]: indexing the parameters would copy them to local memory */
        int s = j >= a.L[0];
        size_t jj = s ? j - a.L[0] : j, L = s ? a.L[1] : a.L[0];
        if (jj < L) {
            const float *kb = s ? a.k[1] : a.k[0], *vb = s ? a.v[1] : a.v[0];
            size_t ldk = s ? a.ldk[1] : a.ldk[0], ldv = s ? a.ldv[1] : a.ldv[0];
            fk = __ldg((const float4 *)(kb + (n * L + jj) * ldk + h * FA_D + c));
            fv = __ldg((const float4 *)(vb + (n * L + jj) * ldv + h * FA_D + c));
        }
        sk[r][c / 2] = pack2(fk.x, fk.y, (T *)0), sk[r][c / 2 + 1] = pack2(fk.z, fk.w, (T *)0);
        sv[r][c / 2] = pack2(fv.x, fv.y, (T *)0), sv[r][c / 2 + 1] = pack2(fv.z, fv.w, (T *)0);
    }
}
#endif

/* One step of 64 keys for this warp's 16 query rows: S = Q K^T from the
 * K tile, the running max and sum, O rescaled, O += P V from the V tile. */
template <typename T>
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
            float x = j * 8 + 2 * t + (e & 1) < kvalid ? s[j][e] * scale_log2 : -INFINITY;
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

/* The warp's output rows O / l (the 4 threads' parts of l summed first) */
[[maybe_unused]] static __device__ __forceinline__ void fa_store(const fa_args &a, float (*o)[4], float *l,
                                                                 size_t n, size_t h, size_t q0, int qrows)
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
        float *out = a.o + (n * a.Lq + q0 + (size_t)row) * a.ldo + h * FA_D + 2 * t;
        for (int j = 0; j < FA_D / 8; j++) out[j * 8] = o[j][2 * r] * inv, out[j * 8 + 1] = o[j][2 * r + 1] * inv;
    }
}

/* grid (query blocks, heads, images), 128 threads */
template <typename T>
static __global__ void __launch_bounds__(128) k_flash(fa_args a)
{
#if __CUDA_ARCH__ >= 800
    __shared__ __align__(16) uint32_t sq[FA_BQ][FA_LDS / 2], sk[FA_BK][FA_LDS / 2], sv[FA_BK][FA_LDS / 2];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t n = blockIdx.z, h = blockIdx.y, q0 = (size_t)blockIdx.x * FA_BQ, Lk = a.L[0] + a.L[1];
    const int qrows = (int)(a.Lq - q0 < FA_BQ ? a.Lq - q0 : FA_BQ);
    load_tile<T>(sq, a.q + (n * a.Lq + q0) * a.ldq + h * FA_D, a.ldq, qrows);
    __syncthreads();
    /* Q as A fragments, one per 16 features: rows warp*16 + (lane & 15), columns + (lane >> 4) * 8 */
    uint32_t qf[FA_D / 16][4];
    for (int kk = 0; kk < FA_D / 16; kk++)
        ldm_x4(qf[kk], (const uint16_t *)sq[warp * 16 + (lane & 15)] + kk * 16 + (lane >> 4) * 8);
    /* this thread's rows: g and g + 8 of the warp's 16; its columns 2t, 2t+1 of every 8 */
    float o[FA_D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int j = 0; j < FA_D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    for (size_t k0 = 0; k0 < Lk; k0 += FA_BK) {
        __syncthreads();   /* the last step's K and V are read */
        load_kv<T>(sk, sv, a, n, h, k0);
        __syncthreads();
        fa_step<T>(sk, sv, qf, o, m, l, (int)(Lk - k0 < FA_BK ? Lk - k0 : FA_BK), a.scale_log2);
    }
    fa_store(a, o, l, n, h, q0, qrows);
#endif
}

/* Keys and values of every head as 16-bit rows [n][head][j][64], the two
 * row blocks joined and the rows past Lk up to Lkp zero: converted once
 * here instead of by every query block of k_flash16. */
template <typename T>
static __global__ void k_kv16(fa_args a, uint32_t *k16, uint32_t *v16)
{
#if __CUDA_ARCH__ >= 800
    const size_t H = (size_t)a.nhead, per_row = H * (FA_D / 4), Lk = a.L[0] + a.L[1];
    const size_t n = blockIdx.z;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.Lkp * per_row;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t j = i / per_row, rem = i - j * per_row, h = rem / (FA_D / 4), c = (rem % (FA_D / 4)) * 4;
        float4 fk = make_float4(0, 0, 0, 0), fv = fk;
        if (j < Lk) {
            int s = j >= a.L[0];
            size_t jj = s ? j - a.L[0] : j, L = s ? a.L[1] : a.L[0];
            const float *kb = s ? a.k[1] : a.k[0], *vb = s ? a.v[1] : a.v[0];
            size_t ldk = s ? a.ldk[1] : a.ldk[0], ldv = s ? a.ldv[1] : a.ldv[0];
            fk = __ldg((const float4 *)(kb + (n * L + jj) * ldk + h * FA_D + c));
            fv = __ldg((const float4 *)(vb + (n * L + jj) * ldv + h * FA_D + c));
        }
        size_t o = ((n * H + h) * a.Lkp + j) * (FA_D / 2) + c / 2;
        *(uint2 *)(k16 + o) = make_uint2(pack2(fk.x, fk.y, (T *)0), pack2(fk.z, fk.w, (T *)0));
        *(uint2 *)(v16 + o) = make_uint2(pack2(fv.x, fv.y, (T *)0), pack2(fv.z, fv.w, (T *)0));
    }
#endif
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
static __device__ __forceinline__ void cp16(void *dst, const void *src)
{
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
}

/* the 64-key tile at row k0 of this head's K and V into sk, sv (cp.async, one group) */
static __device__ __forceinline__ void fetch_kv16(uint32_t (*sk)[FA_LDS / 2], uint32_t (*sv)[FA_LDS / 2],
                                                  const uint32_t *k, const uint32_t *v)
{
    for (int i = threadIdx.x; i < FA_BK * (FA_D / 8); i += blockDim.x) {
        int r = i / (FA_D / 8), c = (i % (FA_D / 8)) * 4;   /* 16 bytes = 4 words */
        cp16(&sk[r][c], k + (size_t)r * (FA_D / 2) + c);
        cp16(&sv[r][c], v + (size_t)r * (FA_D / 2) + c);
    }
    asm volatile("cp.async.commit_group;\n" ::);
}
#endif

/* k_flash on the rows of k_kv16: the next tile's copy (cp.async, two
 * buffers) runs while this one is computed */
template <typename T>
static __global__ void __launch_bounds__(128, 4) k_flash16(fa_args a)
{
#if __CUDA_ARCH__ >= 800
    __shared__ __align__(16) uint32_t sq[FA_BQ][FA_LDS / 2], sk[2][FA_BK][FA_LDS / 2], sv[2][FA_BK][FA_LDS / 2];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t n = blockIdx.z, h = blockIdx.y, q0 = (size_t)blockIdx.x * FA_BQ, Lk = a.L[0] + a.L[1];
    const int qrows = (int)(a.Lq - q0 < FA_BQ ? a.Lq - q0 : FA_BQ);
    const size_t head = (n * (size_t)a.nhead + h) * a.Lkp * (FA_D / 2);
    const uint32_t *kh = a.k16 + head, *vh = a.v16 + head;
    fetch_kv16(sk[0], sv[0], kh, vh);
    load_tile<T>(sq, a.q + (n * a.Lq + q0) * a.ldq + h * FA_D, a.ldq, qrows);
    __syncthreads();
    uint32_t qf[FA_D / 16][4];
    for (int kk = 0; kk < FA_D / 16; kk++)
        ldm_x4(qf[kk], (const uint16_t *)sq[warp * 16 + (lane & 15)] + kk * 16 + (lane >> 4) * 8);
    float o[FA_D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int j = 0; j < FA_D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    int b = 0;
    for (size_t k0 = 0; k0 < Lk; k0 += FA_BK, b ^= 1) {
        if (k0 + FA_BK < Lk) {
            fetch_kv16(sk[b ^ 1], sv[b ^ 1], kh + (k0 + FA_BK) * (FA_D / 2), vh + (k0 + FA_BK) * (FA_D / 2));
            asm volatile("cp.async.wait_group 1;\n" ::);
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::);
        }
        __syncthreads();   /* tile b is in for every thread */
        fa_step<T>(sk[b], sv[b], qf, o, m, l, (int)(Lk - k0 < FA_BK ? Lk - k0 : FA_BK), a.scale_log2);
        __syncthreads();   /* tile b is read: the next fetch may overwrite it */
    }
    fa_store(a, o, l, n, h, q0, qrows);
#endif
}

/* $CASCADE_FLASH: 0 off; 1 k_flash (keys converted by every query block);
 * else (default) k_kv16 + k_flash16. Both forms stay until one is measured
 * the faster on a GPU (bench/RESULTS-cuda.md). */
static int mode(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("CASCADE_FLASH");
        v = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : 2;
    }
    return v;
}

static int rows_ok(const float *p, size_t ld) { return p && (uintptr_t)p % 16 == 0 && ld % 4 == 0; }

static int flash(fa_args *a, size_t N, int nhead, size_t C)
{
    int prec = cs_cuda_precision();
    int form = mode();
    if (!form || cs_cuda_cc() < 80 || (prec != CS_PREC_BF16 && prec != CS_PREC_FP16) || nhead <= 0 ||
        C != (size_t)nhead * FA_D || !a->Lq || !(a->L[0] + a->L[1]) || N > 65535 || nhead > 65535 ||
        (a->Lq + FA_BQ - 1) / FA_BQ > 0x7fffffff || !rows_ok(a->q, a->ldq))
        return CS_EUNSUP;
    for (int s = 0; s < 2; s++)
        if (a->L[s] && (!rows_ok(a->k[s], a->ldk[s]) || !rows_ok(a->v[s], a->ldv[s]))) return CS_EUNSUP;
    a->scale_log2 = 1.4426950408889634f / sqrtf((float)FA_D);
    dim3 grid((unsigned)((a->Lq + FA_BQ - 1) / FA_BQ), (unsigned)nhead, (unsigned)N);
    cudaStream_t st = (cudaStream_t)cs_cuda_stream();
    if (form == 1) {
        if (prec == CS_PREC_BF16) k_flash<__nv_bfloat16><<<grid, 128, 0, st>>>(*a);
        else k_flash<__half><<<grid, 128, 0, st>>>(*a);
        return cs_cuda_check_launch("attention (flash)");
    }
    size_t Lk = a->L[0] + a->L[1];
    a->Lkp = (Lk + FA_BK - 1) / FA_BK * FA_BK;
    a->nhead = nhead;
    size_t words = N * (size_t)nhead * a->Lkp * (FA_D / 2);
    uint32_t *kv = (uint32_t *)cs_cuda_scratch(11, 2 * words * sizeof(uint32_t));
    if (!kv) return cs_cuda_fail_text(CS_ENOMEM, "CUDA: out of memory for attention's 16-bit keys and values");
    a->k16 = kv, a->v16 = kv + words;
    size_t items = a->Lkp * (size_t)nhead * (FA_D / 4);
    dim3 cg((unsigned)((items + 255) / 256 < 4096 ? (items + 255) / 256 : 4096), 1, (unsigned)N);
    if (prec == CS_PREC_BF16) k_kv16<__nv_bfloat16><<<cg, 256, 0, st>>>(*a, kv, kv + words);
    else k_kv16<__half><<<cg, 256, 0, st>>>(*a, kv, kv + words);
    int rc = cs_cuda_check_launch("attention (keys and values to 16 bits)");
    if (rc) return rc;
    if (prec == CS_PREC_BF16) k_flash16<__nv_bfloat16><<<grid, 128, 0, st>>>(*a);
    else k_flash16<__half><<<grid, 128, 0, st>>>(*a);
    return cs_cuda_check_launch("attention (flash)");
}

extern "C" int cs_cuda_flash_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                       size_t ldv, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                                       const float *mask, float *o, size_t ldo)
{
    if (mask) return CS_EUNSUP;
    fa_args a = {q, ldq, {k, NULL}, {v, NULL}, {ldk, 0}, {ldv, 0}, {Lk, 0}, Lq, o, ldo, 0.0f};
    return flash(&a, N, nhead, C);
}

extern "C" int cs_cuda_attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1,
                                     size_t L1, const float *k2, const float *v2, size_t ld2, size_t L2, size_t N,
                                     size_t Lq, size_t C, int nhead, float *o, size_t ldo)
{
    fa_args a = {q, ldq, {k1, k2}, {v1, v2}, {ld1, ld2}, {ld1, ld2}, {L1, L2}, Lq, o, ldo, 0.0f};
    if (!L1) a.k[0] = k2, a.v[0] = v2, a.ldk[0] = a.ldv[0] = ld2, a.L[0] = L2, a.L[1] = 0;
    return flash(&a, N, nhead, C);
}
