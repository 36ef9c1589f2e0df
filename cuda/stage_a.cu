/* Stage A's ResBlock as one op (cs_dev_ops.sa_block), in bf16 precision.
 * The single ops pass float32 activations through memory six times a
 * block (LN, depthwise conv, axpy, LN, fc1 -> GELU -> fc2 in row chunks,
 * axpy); here, on the whole image at once (the MLP in blocks of rows):
 *     t = bf16(LN(x) (1 + g0) + g1)                          k_sa_norm, a warp a pixel
 *     x += g2 dwconv3x3(t); u = bf16(LN(x) (1 + g3) + g4)     k_sa_dw, a warp a pixel
 *     h = bf16(GELU(u W1^T + b1))                             cuBLASLt, GELU_BIAS epilogue
 *     x += h (g5 W2)^T + g5 b2                                cuBLASLt, accumulating into x
 * About 44 bytes an element of x moved (float32 x read three times and
 * written twice, bf16 t, u and the 4c-wide h), against ~150 for the single
 * ops. t, u and h are bf16 as under PyTorch's autocast; fc2's weight is
 * scaled by g5 before its rounding to bf16 (one rounding, as the plain
 * weight has), so the residual's scale needs no pass of its own.
 * CASCADE_SA_FUSED=0 returns CS_EUNSUP (the single ops run), for
 * side-by-side timing. */
#include "core.h"
#include "launch.cuh"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>

#define SA_WARPS 8
#define SA_MAX_C 1024 /* 16 channel pairs a lane; the taps' 40 KB of shared memory */
/* h in row blocks of at most this: a 1024^2 decode's 512^2 level in two
 * (products of 131072 x 768 x 192 keep the tensor cores busy), its 256^2
 * level in one; all at once it was 402 MB of scratch */
#define SA_H_BYTES ((size_t)256 << 20)

static __device__ __forceinline__ float sa_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* y[pair j] = bf16(LN(v) a + b) for the pixel whose channel pairs lane +
 * 32 i the lanes hold in v (pairs past c2 hold zeros) */
template <int PER>
static __device__ __forceinline__ void sa_norm_store(const float2 (&v)[PER], unsigned lane, size_t c2, float a, float b,
                                                     __nv_bfloat162 *y)
{
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++) s += v[i].x + v[i].y;
    float mean = sa_warp_sum(s) / (float)(2 * c2), q = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++)
        if (lane + 32 * (size_t)i < c2) {
            float d0 = v[i].x - mean, d1 = v[i].y - mean;
            q += d0 * d0 + d1 * d1;
        }
    float inv = rsqrtf(sa_warp_sum(q) / (float)(2 * c2) + 1e-6f);
#pragma unroll
    for (int i = 0; i < PER; i++) {
        size_t j = lane + 32 * (size_t)i;
        if (j < c2) y[j] = __floats2bfloat162_rn((v[i].x - mean) * inv * a + b, (v[i].y - mean) * inv * a + b);
    }
}

/* t = bf16(LN(x) a + b), c = 2 c2 channels */
template <int PER>
static __global__ void __launch_bounds__(32 * SA_WARPS)
    k_sa_norm(const float2 *x, unsigned P, size_t c2, float a, float b, __nv_bfloat162 *t)
{
    const unsigned lane = threadIdx.x & 31, nw = gridDim.x * SA_WARPS;
    for (unsigned p = blockIdx.x * SA_WARPS + (threadIdx.x >> 5); p < P; p += nw) {
        float2 v[PER];
#pragma unroll
        for (int i = 0; i < PER; i++) {
            size_t j = lane + 32 * (size_t)i;
            v[i] = j < c2 ? x[(size_t)p * c2 + j] : make_float2(0.0f, 0.0f);
        }
        sa_norm_store<PER>(v, lane, c2, a, b, t + (size_t)p * c2);
    }
}

/* x += g2 dwconv3x3(t) (replicate padding: the taps clamp to the image),
 * then u = bf16(LN(x) a + b). The taps and bias sit tap-major in shared
 * memory ([10][c]: a tap's weights one coalesced row). t is read around the
 * pixel, x only at it: no pixel reads what another writes. */
template <int PER>
static __global__ void __launch_bounds__(32 * SA_WARPS)
    k_sa_dw(const __nv_bfloat162 *t, float2 *x, unsigned N, unsigned H, unsigned W, size_t c2, const float *dw,
            const float *db, float g2, float a, float b, __nv_bfloat162 *u)
{
    extern __shared__ float2 sw[];
    for (size_t i = threadIdx.x; i < 10 * c2; i += blockDim.x) {
        size_t tap = i / c2, ch = 2 * (i - tap * c2);
        sw[i] = tap < 9 ? make_float2(dw[ch * 9 + tap], dw[(ch + 1) * 9 + tap]) : make_float2(db[ch], db[ch + 1]);
    }
    __syncthreads();
    const unsigned lane = threadIdx.x & 31, nw = gridDim.x * SA_WARPS, HW = H * W, P = N * HW;
    for (unsigned p = blockIdx.x * SA_WARPS + (threadIdx.x >> 5); p < P; p += nw) {
        unsigned n = p / HW, yx = p - n * HW, py = yx / W, px = yx - py * W;
        float2 v[PER];
#pragma unroll
        for (int i = 0; i < PER; i++) {
            size_t j = lane + 32 * (size_t)i;
            v[i] = j < c2 ? sw[9 * c2 + j] : make_float2(0.0f, 0.0f);
        }
        for (int ky = 0; ky < 3; ky++) {
            int sy = (int)py + ky - 1;
            sy = sy < 0 ? 0 : sy >= (int)H ? (int)H - 1 : sy;
            for (int kx = 0; kx < 3; kx++) {
                int sx = (int)px + kx - 1;
                sx = sx < 0 ? 0 : sx >= (int)W ? (int)W - 1 : sx;
                const __nv_bfloat162 *tp = t + ((size_t)n * HW + (size_t)sy * W + (size_t)sx) * c2;
                const float2 *wp = sw + (ky * 3 + kx) * c2;
#pragma unroll
                for (int i = 0; i < PER; i++) {
                    size_t j = lane + 32 * (size_t)i;
                    if (j < c2) {
                        float2 tv = __bfloat1622float2(tp[j]), w = wp[j];
                        v[i].x = fmaf(w.x, tv.x, v[i].x), v[i].y = fmaf(w.y, tv.y, v[i].y);
                    }
                }
            }
        }
        float2 *xp = x + (size_t)p * c2;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            size_t j = lane + 32 * (size_t)i;
            if (j < c2) { /* the residual as cs_axpy rounds it: the product, then the sum */
                float2 o = xp[j];
                o.x = __fadd_rn(o.x, __fmul_rn(v[i].x, g2)), o.y = __fadd_rn(o.y, __fmul_rn(v[i].y, g2));
                xp[j] = o;
                v[i] = o;
            }
        }
        sa_norm_store<PER>(v, lane, c2, a, b, u + (size_t)p * c2);
    }
}

/* h = bf16(GELU(h)) in place (erf form), where no epilogue has it */
static __global__ void k_sa_gelu(__nv_bfloat16 *h, size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = __bfloat162float(h[i]);
        h[i] = __float2bfloat16_rn(gelu_erf(v));
    }
}

/* ws = bf16(g w) (n elements), bs = g b (nb, b may be NULL) */
static __global__ void k_sa_scale(const float *w, size_t n, const float *b, size_t nb, float g, __nv_bfloat16 *ws,
                                  float *bs)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        ws[i] = __float2bfloat16_rn(g * w[i]);
        if (b && i < nb) bs[i] = g * b[i];
    }
}

static unsigned flat_grid(size_t n)
{
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

template <int PER>
static void sa_passes(float *x, unsigned N, unsigned H, unsigned W, size_t c2, const float *dw, const float *db,
                      const float *g, __nv_bfloat162 *t, __nv_bfloat162 *u)
{
    unsigned P = N * H * W;
    size_t smem = 10 * c2 * sizeof(float2);
    size_t blocks = (P + SA_WARPS - 1) / SA_WARPS;
    unsigned gn = resident_grid(k_sa_norm<PER>, blocks, 32 * SA_WARPS, 0);
    unsigned gd = resident_grid(k_sa_dw<PER>, blocks, 32 * SA_WARPS, smem);
    k_sa_norm<PER><<<gn, 32 * SA_WARPS, 0, stream()>>>((const float2 *)x, P, c2, 1.0f + g[0], g[1], t);
    k_sa_dw<PER><<<gd, 32 * SA_WARPS, smem, stream()>>>(t, (float2 *)x, N, H, W, c2, dw, db, g[2], 1.0f + g[3], g[4], u);
}

extern "C" int cs_cuda_sa_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w)
{
    static int on = -1;
    if (cs_cuda_precision() != CS_PREC_BF16 || !cs_cuda_env_on("CASCADE_SA_FUSED", &on)) return CS_EUNSUP;
    size_t P = N * H * W;
    /* 16-byte rows for cuBLASLt (c, ch % 8) and pairs of channels for the passes */
    if (!P || !c || c % 8 || c > SA_MAX_C || P > UINT_MAX / 2 || (uintptr_t)x % 8 || !w->dw_w || !w->dw_b ||
        w->fc1_w->ndim < 1 || w->fc2_w->ndim < 1 || (size_t)w->fc2_w->shape[0] != c)
        return CS_EUNSUP;
    size_t ch = (size_t)w->fc1_w->shape[0], c2 = c / 2;
    if (!ch || ch % 8) return CS_EUNSUP;
    char err[256];
    const float *dw = (const float *)cs_cuda_weight(w->dw_w, CS_F32, err, sizeof err);
    const float *db = dw ? (const float *)cs_cuda_weight(w->dw_b, CS_F32, err, sizeof err) : NULL;
    const float *w2 = db ? (const float *)cs_cuda_weight(w->fc2_w, CS_F32, err, sizeof err) : NULL;
    const float *b2 = NULL;
    if (!w2 || (w->fc2_b && !(b2 = (const float *)cs_cuda_weight(w->fc2_b, CS_F32, err, sizeof err))))
        return cs_cuda_weight_rc();
    /* the slots of fused.cu's blocks (bf16 input, hidden, scaled fc2): one stream, no overlap */
    __nv_bfloat162 *t = (__nv_bfloat162 *)cs_cuda_scratch(8, P * c * 2);
    __nv_bfloat162 *u = (__nv_bfloat162 *)cs_cuda_scratch(12, P * c * 2);
    size_t R = SA_H_BYTES / (ch * 2); /* rows of h at a time, in balanced blocks */
    R = R < 1 ? 1 : R > P ? P : R;
    size_t nb = (P + R - 1) / R;
    R = (P + nb - 1) / nb;
    __nv_bfloat16 *h = (__nv_bfloat16 *)cs_cuda_scratch(9, R * ch * 2);
    __nv_bfloat16 *w2s = (__nv_bfloat16 *)cs_cuda_scratch(20, c * ch * 2);
    float *b2s = (float *)cs_cuda_scratch(21, c * sizeof(float));
    if (!t || !u || !h || !w2s || !b2s) return CS_ENOMEM;
    size_t per = (c2 + 31) / 32;
    unsigned n32 = (unsigned)N, h32 = (unsigned)H, w32 = (unsigned)W;
#define SA(K) sa_passes<K>(x, n32, h32, w32, c2, dw, db, g, t, u)
    if (per <= 1)
        SA(1);
    else if (per <= 2)
        SA(2);
    else if (per <= 3)
        SA(3);
    else if (per <= 4)
        SA(4);
    else if (per <= 6)
        SA(6);
    else if (per <= 8)
        SA(8);
    else if (per <= 12)
        SA(12);
    else
        SA(16);
#undef SA
    int rc = cs_cuda_check_launch("a Stage A ResBlock's norms and depthwise conv");
    if (rc) return rc;
    /* x has changed: from here a product cuBLASLt refuses is a failure, not CS_EUNSUP */
    k_sa_scale<<<flat_grid(c * ch), 256, 0, stream()>>>(w2, c * ch, b2, c, g[5], w2s, b2s);
    rc = cs_cuda_check_launch("a Stage A ResBlock's scaled fc2");
    for (size_t r0 = 0; r0 < P && !rc; r0 += R) {
        size_t m = P - r0 < R ? P - r0 : R;
        const uint16_t *ur = (const uint16_t *)u + r0 * c;
        rc = cs_cuda_linear16_gelu(ur, m, c, w->fc1_w, w->fc1_b, h, 1, ch, 0, 1);
        if (rc == CS_EUNSUP) {
            rc = cs_cuda_linear16(ur, m, c, w->fc1_w, w->fc1_b, h, 1, ch, 0);
            if (!rc) {
                k_sa_gelu<<<flat_grid(m * ch), 256, 0, stream()>>>(h, m * ch);
                rc = cs_cuda_check_launch("a Stage A ResBlock's GELU");
            }
        }
        if (!rc)
            rc = cs_cuda_gemm_bf16((const uint16_t *)h, m, ch, (const uint16_t *)w2s, c, b2 ? b2s : NULL, x + r0 * c, c,
                                   1);
    }
    return rc == CS_EUNSUP
               ? cs_cuda_fail_text(CS_EDEVICE, "CUDA: no cuBLASLt algorithm for a Stage A ResBlock's products")
               : rc;
}
