/* The CUDA plugin's own kernels: every op of cs_dev_ops that is not a matrix
 * product or attention (those are gemm.c and attention.cu).
 *
 * Each op means what its CPU version in src/ops.c and simd/ref.c means: the
 * same formulas in the same order. Element-wise formulas round like the
 * reference's plain C (compiled without contraction): products and sums are
 * written with __fmul_rn / __fadd_rn so nvcc cannot fuse them into an FMA, so
 * that those ops give the reference's bits. Reductions (layer norm, GRN) sum
 * in float32 in a tree, so they differ from the reference's sequential sums
 * by rounding only.
 *
 * Layout: channels-last float32 ([N, H, W, C], C contiguous); threads run
 * along C so loads and stores coalesce. Sizes are size_t throughout (a tensor
 * may exceed 2^31 floats); grids are capped and loops stride over the rest.
 * Everything is queued on cs_cuda_stream(); weights (host cs_tensor views)
 * are resolved with cs_cuda_weight, parameter pointers are device pointers.
 * This file calls nothing of libcascade (the plugin links with -z defs). */
#include "plugin.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- launch helpers ---- */

static inline cudaStream_t stream(void) { return (cudaStream_t)cs_cuda_stream(); }

#define BLOCK 256
#define MAX_GRID_X ((size_t)1 << 20)   /* blocks of a grid-stride launch; the loop does the rest */
#define MAX_GRID_YZ ((size_t)65535)
/* column buffers of the convolutions stay under this */
#ifndef COL_BYTES   /* tests shrink it to reach the chunked paths */
#define COL_BYTES ((size_t)256 << 20)
#endif

static unsigned grid_1d(size_t n, unsigned block)
{
    size_t g = (n + block - 1) / block;
    if (g < 1) g = 1;
    return (unsigned)(g < MAX_GRID_X ? g : MAX_GRID_X);
}

/* A launch over rows x cols (threads along the contiguous cols, several
 * rows per block when the rows are short); kernels stride over the rest. */
struct rc_shape {
    dim3 grid, block;
};

static rc_shape rc_launch(size_t rows, size_t cols)
{
    unsigned bx = 1;   /* a power of two: short rows share a warp (and stay coalesced, rows being contiguous) */
    while (bx < cols && bx < BLOCK) bx *= 2;
    unsigned by = BLOCK / bx;
    size_t gx = (cols + bx - 1) / bx, gy = (rows + by - 1) / by;
    if (gx > MAX_GRID_YZ) gx = MAX_GRID_YZ;
    if (gy > MAX_GRID_YZ) gy = MAX_GRID_YZ;
    rc_shape s;
    s.grid = dim3((unsigned)(gx ? gx : 1), (unsigned)(gy ? gy : 1));
    s.block = dim3(bx, by);
    return s;
}

#define RC_ROWS(r, rows) \
    for (size_t r = (size_t)blockIdx.y * blockDim.y + threadIdx.y; r < (rows); r += (size_t)gridDim.y * blockDim.y)
#define RC_COLS(c, cols) \
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < (cols); c += (size_t)gridDim.x * blockDim.x)
#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static size_t dtype_bytes(int dt)
{
    switch (dt) {
    case CS_F64: return 8;
    case CS_F32: return 4;
    case CS_F16:
    case CS_BF16: return 2;
    case CS_F8_E4M3:
    case CS_F8_E5M2: return 1;
    default: return 0;
    }
}

static size_t numel(const cs_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* A weight's device float32 copy; on failure the reason is recorded for
 * errmsg() (the first failure wins, so one cs_cuda_weight already recorded
 * stays) and *rc is set. */
static const float *weight(const cs_tensor *t, int *rc)
{
    char err[200] = "";
    const float *p = (const float *)cs_cuda_weight(t, CS_F32, err, sizeof err);
    if (!p) {
        char what[300];
        snprintf(what, sizeof what, "%s: %s", t->name ? t->name : "weight", err[0] ? err : "no device copy");
        *rc = cs_cuda_fail(strstr(err, "memory") ? cudaErrorMemoryAllocation : cudaErrorInvalidValue, what);
    }
    return p;
}

static void *scratch(int slot, size_t bytes, const char *what, int *rc)
{
    void *p = cs_cuda_scratch(slot, bytes);
    if (!p) {
        char m[200];
        snprintf(m, sizeof m, "%s (%.1f MiB of scratch)", what, (double)bytes / 1048576.0);
        *rc = cs_cuda_fail(cudaErrorMemoryAllocation, m);
    }
    return p;
}

/* ---- reductions ---- */

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;   /* the same bits in every lane (float addition commutes) */
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets it. sh: 32 floats of shared memory. */
static __device__ float block_sum(float v, float *sh)
{
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();   /* sh is free again for the next call */
    return t;
}

/* ---- copies and fills ---- */

extern "C" int cs_cuda_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols)
{
    if (!rows || !cols) return 0;
    cudaError_t e;
    if ((ldd == cols && lds == cols) || rows == 1)
        e = cudaMemcpyAsync(dst, src, rows * cols * sizeof(float), cudaMemcpyDeviceToDevice, stream());
    else
        e = cudaMemcpy2DAsync(dst, ldd * sizeof(float), src, lds * sizeof(float), cols * sizeof(float), rows,
                              cudaMemcpyDeviceToDevice, stream());
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, "a device copy");
}

static __global__ void k_fill(float *y, float v, size_t n)
{
    GRID_STRIDE(i, n) y[i] = v;
}

extern "C" int cs_cuda_fill(float *dst, float v, size_t n)
{
    if (!n) return 0;
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if (bits == 0) {   /* +0.0f: all zero bytes */
        cudaError_t e = cudaMemsetAsync(dst, 0, n * sizeof(float), stream());
        return e == cudaSuccess ? 0 : cs_cuda_fail(e, "a device fill");
    }
    k_fill<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(dst, v, n);
    return cs_cuda_check_launch("fill");
}

/* ---- element-wise maps: y[i] = f(a[i], b[i]) ----
 * NIN inputs (1 or 2); V4: float4 loads for the bulk (all pointers 16-byte
 * aligned), the n % 4 tail by the first threads. */

struct op_gelu {
    __device__ float operator()(float x, float) const
    {
        return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f))));
    }
};
struct op_quick_gelu {
    __device__ float operator()(float x, float) const { return __fdiv_rn(x, __fadd_rn(1.0f, expf(__fmul_rn(-1.702f, x)))); }
};
struct op_silu {
    __device__ float operator()(float x, float) const { return __fdiv_rn(x, __fadd_rn(1.0f, expf(-x))); }
};
struct op_sigmoid {
    __device__ float operator()(float x, float) const { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x))); }
};
struct op_add {
    __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
};
struct op_scale {
    float s;
    __device__ float operator()(float x, float) const { return __fmul_rn(x, s); }
};
struct op_axpy {   /* a = y, b = x: y + x*g, the product rounded first */
    float g;
    __device__ float operator()(float y, float x) const { return __fadd_rn(y, __fmul_rn(x, g)); }
};

template <class F, int NIN, bool V4>
static __global__ void k_map(const float *a, const float *b, float *y, size_t n, F f)
{
    if (V4) {
        size_t n4 = n / 4, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
        const float4 *a4 = (const float4 *)a, *b4 = (const float4 *)b;
        float4 *y4 = (float4 *)y;
        GRID_STRIDE(i, n4)
        {
            float4 va = a4[i], vb = NIN == 2 ? b4[i] : va, r;
            r.x = f(va.x, vb.x);
            r.y = f(va.y, vb.y);
            r.z = f(va.z, vb.z);
            r.w = f(va.w, vb.w);
            y4[i] = r;
        }
        if (n4 * 4 + t < n) y[n4 * 4 + t] = f(a[n4 * 4 + t], NIN == 2 ? b[n4 * 4 + t] : 0.0f);
    } else {
        GRID_STRIDE(i, n) y[i] = f(a[i], NIN == 2 ? b[i] : 0.0f);
    }
}

template <class F, int NIN>
static int map(const float *a, const float *b, float *y, size_t n, F f, const char *what)
{
    if (!n) return 0;
    if (aligned16(a) && aligned16(y) && (NIN == 1 || aligned16(b)))
        k_map<F, NIN, true><<<grid_1d(n / 4 ? n / 4 : 1, BLOCK), BLOCK, 0, stream()>>>(a, b, y, n, f);
    else
        k_map<F, NIN, false><<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(a, b, y, n, f);
    return cs_cuda_check_launch(what);
}

extern "C" int cs_cuda_unary(int kind, const float *x, float *y, size_t n)
{
    switch (kind) {
    case 0: return map<op_gelu, 1>(x, NULL, y, n, op_gelu(), "GELU");
    case 1: return map<op_quick_gelu, 1>(x, NULL, y, n, op_quick_gelu(), "quick GELU");
    case 2: return map<op_silu, 1>(x, NULL, y, n, op_silu(), "SiLU");
    case 3: return map<op_sigmoid, 1>(x, NULL, y, n, op_sigmoid(), "sigmoid");
    }
    char m[64];
    snprintf(m, sizeof m, "unknown activation %d", kind);
    return cs_cuda_fail(cudaErrorInvalidValue, m);
}

extern "C" int cs_cuda_add(const float *a, const float *b, float *y, size_t n)
{
    return map<op_add, 2>(a, b, y, n, op_add(), "add");
}

extern "C" int cs_cuda_scale(const float *x, float s, float *y, size_t n)
{
    op_scale f = {s};
    return map<op_scale, 1>(x, NULL, y, n, f, "scale");
}

extern "C" int cs_cuda_axpy(float *y, const float *x, float g, size_t n)
{
    op_axpy f = {g};
    return map<op_axpy, 2>(y, x, y, n, f, "axpy");
}

/* ---- per-channel maps over rows x C: y = f(x, image n, channel c) ----
 * image n = row / HW. V4: float4 rows (C % 4 == 0, x and y aligned). */

struct op_modulate {   /* x*(1 + a[n,c]) + b[n,c] */
    const float *a, *b;
    size_t ld;
    __device__ float operator()(float v, size_t n, size_t c) const
    {
        return __fadd_rn(__fmul_rn(v, __fadd_rn(1.0f, a[n * ld + c])), b[n * ld + c]);
    }
};
struct op_affine {   /* x*s[c] + t[c] */
    const float *s, *t;
    __device__ float operator()(float v, size_t, size_t c) const { return __fadd_rn(__fmul_rn(v, s[c]), t[c]); }
};
struct op_grn {   /* gamma*(x*nx[n,c]) + beta + x */
    const float *nx, *gamma, *beta;
    size_t C;
    __device__ float operator()(float v, size_t n, size_t c) const
    {
        return __fadd_rn(__fadd_rn(__fmul_rn(gamma[c], __fmul_rn(v, nx[n * C + c])), beta[c]), v);
    }
};

template <class F, bool V4>
static __global__ void k_rowchan(const float *x, float *y, size_t rows, size_t C, size_t HW, F f)
{
    size_t cols = V4 ? C / 4 : C;
    RC_ROWS(r, rows)
    {
        size_t n = r / HW;
        if (V4) {
            const float4 *xr = (const float4 *)(x + r * C);
            float4 *yr = (float4 *)(y + r * C);
            RC_COLS(c, cols)
            {
                float4 v = xr[c];
                size_t c0 = 4 * c;
                v.x = f(v.x, n, c0);
                v.y = f(v.y, n, c0 + 1);
                v.z = f(v.z, n, c0 + 2);
                v.w = f(v.w, n, c0 + 3);
                yr[c] = v;
            }
        } else {
            RC_COLS(c, cols) y[r * C + c] = f(x[r * C + c], n, c);
        }
    }
}

template <class F>
static int rowchan(const float *x, float *y, size_t rows, size_t C, size_t HW, F f, const char *what)
{
    if (!rows || !C) return 0;
    if (C % 4 == 0 && aligned16(x) && aligned16(y)) {
        rc_shape s = rc_launch(rows, C / 4);
        k_rowchan<F, true><<<s.grid, s.block, 0, stream()>>>(x, y, rows, C, HW ? HW : 1, f);
    } else {
        rc_shape s = rc_launch(rows, C);
        k_rowchan<F, false><<<s.grid, s.block, 0, stream()>>>(x, y, rows, C, HW ? HW : 1, f);
    }
    return cs_cuda_check_launch(what);
}

extern "C" int cs_cuda_modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a,
                                const float *b, size_t ldab)
{
    op_modulate f = {a, b, ldab};
    return rowchan(x, y, N * HW, C, HW, f, "modulate");
}

extern "C" int cs_cuda_channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t)
{
    op_affine f = {s, t};
    return rowchan(x, y, rows, C, rows, f, "channel affine");
}

/* ---- layer norm: mean, biased variance of (x - mean), (x - mean) / sqrt(var + eps),
 * then * w + b. One warp per row for short rows, one block per row else. */

static __device__ __forceinline__ float ln_out(float v, float mean, float inv, const float *w, const float *b, size_t c)
{
    float o = __fmul_rn(__fsub_rn(v, mean), inv);
    if (w) o = __fmul_rn(o, w[c]);
    if (b) o = __fadd_rn(o, b[c]);
    return o;
}

/* the row's sum, its sum of squared deviations from mean (skip: 0), and the
 * output, by thread t of T along the row; V4: float4 (C % 4 == 0, aligned) */
template <bool V4>
static __device__ __forceinline__ float ln_sum(const float *xr, size_t C, unsigned t, unsigned T, int dev, float mean)
{
    float s = 0.0f;
    if (V4) {
        const float4 *x4 = (const float4 *)xr;
        for (size_t c = t; c < C / 4; c += T) {
            float4 v = x4[c];
            if (dev) {
                v.x = __fsub_rn(v.x, mean), v.y = __fsub_rn(v.y, mean), v.z = __fsub_rn(v.z, mean), v.w = __fsub_rn(v.w, mean);
                s = __fadd_rn(s, __fmul_rn(v.x, v.x));
                s = __fadd_rn(s, __fmul_rn(v.y, v.y));
                s = __fadd_rn(s, __fmul_rn(v.z, v.z));
                s = __fadd_rn(s, __fmul_rn(v.w, v.w));
            } else s += v.x + v.y + v.z + v.w;
        }
    } else
        for (size_t c = t; c < C; c += T) {
            float v = xr[c];
            if (dev) {
                v = __fsub_rn(v, mean);
                s = __fadd_rn(s, __fmul_rn(v, v));
            } else s += v;
        }
    return s;
}

template <bool V4>
static __device__ __forceinline__ void ln_write(const float *xr, float *yr, size_t C, unsigned t, unsigned T,
                                                float mean, float inv, const float *w, const float *b)
{
    if (V4) {
        const float4 *x4 = (const float4 *)xr;
        float4 *y4 = (float4 *)yr;
        for (size_t c = t; c < C / 4; c += T) {
            float4 v = x4[c];
            v.x = ln_out(v.x, mean, inv, w, b, 4 * c);
            v.y = ln_out(v.y, mean, inv, w, b, 4 * c + 1);
            v.z = ln_out(v.z, mean, inv, w, b, 4 * c + 2);
            v.w = ln_out(v.w, mean, inv, w, b, 4 * c + 3);
            y4[c] = v;
        }
    } else
        for (size_t c = t; c < C; c += T) yr[c] = ln_out(xr[c], mean, inv, w, b, c);
}

#define LN_WARPS 8
template <bool V4>
static __global__ void k_ln_warp(const float *x, float *y, size_t rows, size_t C, float eps, const float *w,
                                 const float *b)
{
    unsigned lane = threadIdx.x & 31;
    for (size_t r = (size_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5); r < rows; r += (size_t)gridDim.x * LN_WARPS) {
        const float *xr = x + r * C;
        float mean = warp_sum(ln_sum<V4>(xr, C, lane, 32, 0, 0.0f)) / (float)C;
        float var = warp_sum(ln_sum<V4>(xr, C, lane, 32, 1, mean)) / (float)C;
        ln_write<V4>(xr, y + r * C, C, lane, 32, mean, 1.0f / sqrtf(var + eps), w, b);
    }
}

template <bool V4>
static __global__ void k_ln_block(const float *x, float *y, size_t rows, size_t C, float eps, const float *w,
                                  const float *b)
{
    __shared__ float sh[32];
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * C;
        float mean = block_sum(ln_sum<V4>(xr, C, threadIdx.x, blockDim.x, 0, 0.0f), sh) / (float)C;
        float var = block_sum(ln_sum<V4>(xr, C, threadIdx.x, blockDim.x, 1, mean), sh) / (float)C;
        ln_write<V4>(xr, y + r * C, C, threadIdx.x, blockDim.x, mean, 1.0f / sqrtf(var + eps), w, b);
    }
}

extern "C" int cs_cuda_layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w,
                                 const float *b)
{
    if (!rows || !C) return 0;
    int v4 = C % 4 == 0 && aligned16(x) && aligned16(y);
    size_t per = v4 ? C / 4 : C;   /* loads along a row */
    if (per <= 512) {
        size_t g = (rows + LN_WARPS - 1) / LN_WARPS;
        unsigned gr = (unsigned)(g < MAX_GRID_X ? g : MAX_GRID_X);
        if (v4) k_ln_warp<true><<<gr, 32 * LN_WARPS, 0, stream()>>>(x, y, rows, C, eps, w, b);
        else k_ln_warp<false><<<gr, 32 * LN_WARPS, 0, stream()>>>(x, y, rows, C, eps, w, b);
    } else {
        unsigned bs = per <= 4096 ? 256 : 1024, gr = (unsigned)(rows < MAX_GRID_X ? rows : MAX_GRID_X);
        if (v4) k_ln_block<true><<<gr, bs, 0, stream()>>>(x, y, rows, C, eps, w, b);
        else k_ln_block<false><<<gr, bs, 0, stream()>>>(x, y, rows, C, eps, w, b);
    }
    return cs_cuda_check_launch("layer norm");
}

/* ---- GRN: per image and channel nx = ||x[:, c]||_2 over the HW rows, divided by
 * (mean over channels of nx + 1e-6); y = gamma*(x*nx) + beta + x.
 * 1: partial sums of squares over chunks of rows; 2: per (n, c) the chunks
 * summed in order, sqrt; 3: per image the mean over channels (in double, as
 * ops.c) and nx / m; 4: the map. */

#define GRN_TY 8
static __global__ void k_grn_sumsq(const float *x, float *part, size_t N, size_t HW, size_t C, size_t chunk,
                                   size_t nchunks)
{
    __shared__ float sh[GRN_TY][32];
    size_t c = (size_t)blockIdx.x * 32 + threadIdx.x;
    for (size_t n = blockIdx.z; n < N; n += gridDim.z)
        for (size_t k = blockIdx.y; k < nchunks; k += gridDim.y) {
            size_t r0 = k * chunk, r1 = r0 + chunk < HW ? r0 + chunk : HW;
            float s = 0.0f;
            if (c < C)
                for (size_t r = r0 + threadIdx.y; r < r1; r += GRN_TY) {
                    float v = x[(n * HW + r) * C + c];
                    s = __fadd_rn(s, __fmul_rn(v, v));
                }
            sh[threadIdx.y][threadIdx.x] = s;
            __syncthreads();
            if (threadIdx.y == 0 && c < C) {
                float t = 0.0f;
                for (int i = 0; i < GRN_TY; i++) t += sh[i][threadIdx.x];
                part[(n * nchunks + k) * C + c] = t;
            }
            __syncthreads();
        }
}

static __global__ void k_grn_norm(const float *part, float *nx, size_t N, size_t C, size_t nchunks)
{
    GRID_STRIDE(i, N * C)
    {
        size_t n = i / C, c = i - n * C;
        float s = 0.0f;
        for (size_t k = 0; k < nchunks; k++) s += part[(n * nchunks + k) * C + c];
        nx[i] = sqrtf(s);
    }
}

static __global__ void k_grn_mean(float *nx, size_t C)
{
    __shared__ double sh[32];
    float *v = nx + (size_t)blockIdx.x * C;
    double s = 0.0;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x) s += v[c];
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    s = warp_sum_d(s);
    if (lane == 0) sh[wid] = s;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    t = warp_sum_d(t);
    float m = (float)(t / (double)C) + 1e-6f;
    for (size_t c = threadIdx.x; c < C; c += blockDim.x) v[c] = v[c] / m;
}

extern "C" int cs_cuda_grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma,
                           const float *beta)
{
    if (!N || !C) return 0;
    if (!HW) return 0;
    size_t chunk = 64, nchunks = (HW + chunk - 1) / chunk;
    if (nchunks > 256) {   /* longer chunks rather than more partial sums */
        nchunks = 256;
        chunk = (HW + nchunks - 1) / nchunks;
        nchunks = (HW + chunk - 1) / chunk;
    }
    int rc = 0;
    float *part = (float *)scratch(7, (N * nchunks * C + N * C) * sizeof(float), "GRN partial sums", &rc);
    if (!part) return rc;
    float *nx = part + N * nchunks * C;
    size_t gx = (C + 31) / 32;
    dim3 g1((unsigned)(gx < MAX_GRID_X ? gx : MAX_GRID_X), (unsigned)(nchunks < MAX_GRID_YZ ? nchunks : MAX_GRID_YZ),
            (unsigned)(N < MAX_GRID_YZ ? N : MAX_GRID_YZ));
    k_grn_sumsq<<<g1, dim3(32, GRN_TY), 0, stream()>>>(x, part, N, HW, C, chunk, nchunks);
    if ((rc = cs_cuda_check_launch("GRN sums of squares"))) return rc;
    k_grn_norm<<<grid_1d(N * C, BLOCK), BLOCK, 0, stream()>>>(part, nx, N, C, nchunks);
    if ((rc = cs_cuda_check_launch("GRN norms"))) return rc;
    for (size_t n0 = 0; n0 < N; n0 += MAX_GRID_YZ) {
        size_t nb = N - n0 < MAX_GRID_YZ ? N - n0 : MAX_GRID_YZ;
        k_grn_mean<<<(unsigned)nb, 1024, 0, stream()>>>(nx + n0 * C, C);
        if ((rc = cs_cuda_check_launch("GRN mean"))) return rc;
    }
    op_grn f = {nx, gamma, beta, C};
    return rowchan(x, y, N * HW, C, HW, f, "GRN");
}

/* ---- depthwise convolution, any k / stride / pad: y[n,oh,ow,c] = bias[c] + the
 * taps w[c,i,j] * x[n, oh*s-p+i, ow*s-p+j, c] added in (i, j) order; taps
 * outside are skipped (zero pad) or clamped to the edge (replicate). */

template <int KT>   /* KT: k known at compile time (3), or 0 */
static __global__ void k_dwconv(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho,
                                size_t Wo, int kr, int s, int p, int replicate, const float *w, const float *bias)
{
    const int k = KT ? KT : kr;
    size_t kk = (size_t)k * (size_t)k;
    RC_ROWS(q, N * Ho * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        const float *xn = x + n * H * W * C;
        RC_COLS(c, C)
        {
            float sum = bias ? bias[c] : 0.0f;
            const float *wc = w + c * kk;
#pragma unroll
            for (int i = 0; i < k; i++) {
                long hh = (long)(oh * (size_t)s) - p + i;
                if (hh < 0 || hh >= (long)H) {
                    if (!replicate) continue;
                    hh = hh < 0 ? 0 : (long)H - 1;
                }
#pragma unroll
                for (int j = 0; j < k; j++) {
                    long ww = (long)(ow * (size_t)s) - p + j;
                    if (ww < 0 || ww >= (long)W) {
                        if (!replicate) continue;
                        ww = ww < 0 ? 0 : (long)W - 1;
                    }
                    sum = __fadd_rn(sum, __fmul_rn(wc[i * k + j], xn[((size_t)hh * W + (size_t)ww) * C + c]));
                }
            }
            y[q * C + c] = sum;
        }
    }
}

static int dwconv(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho, size_t Wo, int k,
                  int s, int p, int replicate, const cs_tensor *w, const cs_tensor *bias)
{
    if (!N || !Ho || !Wo || !C) return 0;
    int rc = 0;
    const float *wf = weight(w, &rc);
    const float *bf = bias ? weight(bias, &rc) : NULL;
    if (!wf || (bias && !bf)) return rc;
    rc_shape sh = rc_launch(N * Ho * Wo, C);
    if (k == 3) k_dwconv<3><<<sh.grid, sh.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, k, s, p, replicate, wf, bf);
    else k_dwconv<0><<<sh.grid, sh.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, k, s, p, replicate, wf, bf);
    return cs_cuda_check_launch("depthwise convolution");
}

extern "C" int cs_cuda_dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                                 const cs_tensor *bias, int replicate)
{
    return dwconv(x, y, N, H, W, C, H, W, 3, 1, 1, replicate, w, bias);
}

/* ---- general Conv2d: im2col (columns in the weight's (ci, i, j) order) of a
 * chunk of output pixels of all images, then one product per group on the
 * group's rows of the weight, written into its channels of y. */

static __global__ void k_im2col(const float *x, float *col, size_t q0, size_t nq, size_t H, size_t W, size_t Cin,
                                size_t cg, size_t g, int k, int s, int p, size_t Ho, size_t Wo)
{
    unsigned kk = (unsigned)(k * k), K = (unsigned)(cg * kk);
    for (size_t qi = blockIdx.x; qi < nq; qi += gridDim.x) {
        size_t q = q0 + qi, ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        float *cr = col + qi * K;
        for (unsigned e = threadIdx.x; e < K; e += blockDim.x) {
            unsigned ci = e / kk, tap = e - ci * kk, i = tap / (unsigned)k, j = tap - i * (unsigned)k;
            long hh = (long)(oh * (size_t)s) - p + (long)i, ww = (long)(ow * (size_t)s) - p + (long)j;
            float v = 0.0f;
            if (hh >= 0 && hh < (long)H && ww >= 0 && ww < (long)W)
                v = x[((n * H + (size_t)hh) * W + (size_t)ww) * Cin + g * cg + ci];
            cr[e] = v;
        }
    }
}

extern "C" int cs_cuda_conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                              const cs_tensor *bias, int stride, int pad, int groups, float *y, size_t Ho, size_t Wo)
{
    if (w->ndim != 4 || groups < 1 || w->shape[2] != w->shape[3] || Cin % (size_t)groups ||
        (size_t)w->shape[1] * (size_t)groups != Cin || (size_t)w->shape[0] % (size_t)groups || stride < 1)
        return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: the weight's shape does not fit the input");
    int k = (int)w->shape[2];
    size_t Cout = (size_t)w->shape[0], cg = Cin / (size_t)groups, og = Cout / (size_t)groups;
    size_t K = cg * (size_t)k * (size_t)k, P = N * Ho * Wo, es = dtype_bytes(w->dtype);
    if (!P || !Cout) return 0;
    if (groups > 1 && cg == 1 && og == 1)   /* depthwise: direct */
        return dwconv(x, y, N, H, W, Cin, Ho, Wo, k, stride, pad, 0, w, bias);
    if (!es) return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: the weight is not a float type");
    /* the weight rows of group g: [og, K] from row g*og; the bias likewise */
    cs_tensor wv = *w, bv = *w;
    wv.ndim = 2;
    wv.shape[0] = (int64_t)og;
    wv.shape[1] = (int64_t)K;
    size_t bes = 0;
    if (bias) {
        bv = *bias;
        bv.ndim = 1;
        bv.shape[0] = (int64_t)og;
        bes = dtype_bytes(bias->dtype);
        if (!bes || numel(bias) != Cout) return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: bias does not fit");
    }
    if (k == 1 && stride == 1 && pad == 0 && groups == 1 && Ho == H && Wo == W)   /* a per-pixel linear layer */
        return cs_cuda_linear(x, P, Cin, Cin, &wv, bias ? &bv : NULL, y, Cout, 0);
    size_t blk = COL_BYTES / (K * sizeof(float));
    if (blk < 1) blk = 1;
    if (blk > P) blk = P;
    int rc = 0;
    float *col = (float *)scratch(6, blk * K * sizeof(float), "conv2d column buffer", &rc);
    if (!col) return rc;
    unsigned bs = K >= 256 ? 256 : (unsigned)((K + 31) / 32 * 32);
    for (size_t q0 = 0; q0 < P; q0 += blk) {
        size_t nq = P - q0 < blk ? P - q0 : blk;
        for (size_t g = 0; g < (size_t)groups; g++) {
            k_im2col<<<(unsigned)(nq < MAX_GRID_X ? nq : MAX_GRID_X), bs, 0, stream()>>>(x, col, q0, nq, H, W, Cin, cg,
                                                                                        g, k, stride, pad, Ho, Wo);
            if ((rc = cs_cuda_check_launch("im2col"))) return rc;
            wv.data = (const unsigned char *)w->data + g * og * K * es;
            if (bias) bv.data = (const unsigned char *)bias->data + g * og * bes;
            rc = cs_cuda_linear(col, nq, K, K, &wv, bias ? &bv : NULL, y + q0 * Cout + g * og, Cout, 0);
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---- ConvTranspose2d, weight [Cin, Cout, k, k]: col[rows, (i, j, o)] = x[rows, Cin]
 * x Wr[Cin, k*k*Cout] (Wr: the weight reordered so o is contiguous), then each
 * output gathers its terms as ops.c scatters them: from bias (or 0), input
 * rows h ascending (i descending), then columns wi ascending (j descending).
 * Input rows go in chunks (whole images, or rows of one image) that keep the
 * column buffer bounded; chunks ascend in h, so the order holds. */

static __global__ void k_ct_reorder(const float *wf, float *wr, size_t Cin, size_t Cout, size_t kk)
{
    GRID_STRIDE(e, Cin * Cout * kk)
    {   /* e indexes wr: (c, q, o) */
        size_t o = e % Cout, t = e / Cout, q = t % kk, c = t / kk;
        wr[e] = wf[(c * Cout + o) * kk + q];
    }
}

static __global__ void k_ct_gather(const float *col, float *y, const float *bias, int acc, size_t n0, size_t nimg,
                                   size_t hlo, size_t hhi, size_t row0, size_t ohlo, size_t ohhi, size_t H, size_t W,
                                   size_t Cout, int k, int s, int p, size_t Ho, size_t Wo)
{
    size_t kkC = (size_t)k * (size_t)k * Cout, nh = ohhi - ohlo;
    RC_ROWS(q, nimg * nh * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = ohlo + t % nh, n = n0 + t / nh;
        float *yr = y + ((n * Ho + oh) * Wo + ow) * Cout;
        RC_COLS(o, Cout)
        {
            float sum = acc ? yr[o] : (bias ? bias[o] : 0.0f);
            for (int i = k - 1; i >= 0; i--) {
                long th = (long)oh + p - i;
                if (th < 0 || th % s) continue;
                size_t h = (size_t)(th / s);
                if (h < hlo || h >= hhi) continue;
                const float *cr = col + ((n * H + h - row0) * W) * kkC;
                for (int j = k - 1; j >= 0; j--) {
                    long tw = (long)ow + p - j;
                    if (tw < 0 || tw % s) continue;
                    size_t wi = (size_t)(tw / s);
                    if (wi >= W) continue;
                    sum = __fadd_rn(sum, cr[wi * kkC + (size_t)(i * k + j) * Cout + o]);
                }
            }
            yr[o] = sum;
        }
    }
}

extern "C" int cs_cuda_conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                                        const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo)
{
    if (w->ndim != 4 || (size_t)w->shape[0] != Cin || w->shape[2] != w->shape[3] || stride < 1)
        return cs_cuda_fail(cudaErrorInvalidValue, "conv_transpose2d: the weight's shape does not fit the input");
    size_t Cout = (size_t)w->shape[1], kk = (size_t)(w->shape[2] * w->shape[3]);
    int k = (int)w->shape[2], rc = 0;
    if (!N || !Ho || !Wo || !Cout) return 0;
    const float *wf = weight(w, &rc);
    const float *bf = bias ? weight(bias, &rc) : NULL;
    if (!wf || (bias && !bf)) return rc;
    size_t rowf = W * kk * Cout, R = COL_BYTES / (rowf * sizeof(float)), rows = N * H;
    if (R < 1) R = 1;
    if (R > rows) R = rows;
    if (R >= H) R = R / H * H;   /* whole images */
    float *wr = (float *)scratch(7, Cin * kk * Cout * sizeof(float), "conv_transpose2d weights", &rc);
    if (!wr) return rc;
    float *col = (float *)scratch(6, R * rowf * sizeof(float), "conv_transpose2d column buffer", &rc);
    if (!col) return rc;
    k_ct_reorder<<<grid_1d(Cin * kk * Cout, BLOCK), BLOCK, 0, stream()>>>(wf, wr, Cin, Cout, kk);
    if ((rc = cs_cuda_check_launch("conv_transpose2d weight reorder"))) return rc;
    int one = R >= rows;   /* one chunk: each output written once, from the bias */
    if (!one) {            /* several: every output starts from the bias, chunks add */
        rc_shape s = rc_launch(N * Ho * Wo, Cout);
        if (bf) {   /* a gather with no rows in range: the bias alone */
            k_ct_gather<<<s.grid, s.block, 0, stream()>>>(col, y, bf, 0, 0, N, 0, 0, 0, 0, Ho, H, W, Cout, k, stride,
                                                          pad, Ho, Wo);
            rc = cs_cuda_check_launch("conv_transpose2d bias");
        } else rc = cs_cuda_fill(y, 0.0f, N * Ho * Wo * Cout);
        if (rc) return rc;
    }
    for (size_t g0 = 0; g0 < rows;) {
        size_t n0 = g0 / H, h0 = g0 % H, g1, nimg, hlo, hhi, ohlo, ohhi;
        if (R >= H) {   /* whole images n0 .. */
            g1 = g0 + R < rows ? g0 + R : rows;
            nimg = (g1 - g0) / H;
            hlo = 0, hhi = H, ohlo = 0, ohhi = Ho;
        } else {   /* rows h0 .. of image n0 */
            g1 = g0 + R < (n0 + 1) * H ? g0 + R : (n0 + 1) * H;
            nimg = 1;
            hlo = h0, hhi = g1 - n0 * H;
            long lo = (long)(hlo * (size_t)stride) - pad, hi = (long)((hhi - 1) * (size_t)stride) + k - pad;
            ohlo = lo < 0 ? 0 : (size_t)lo;
            ohhi = hi > (long)Ho ? Ho : hi < 0 ? 0 : (size_t)hi;
        }
        rc = cs_cuda_sgemm(0, (g1 - g0) * W, kk * Cout, Cin, 1.0f, x + g0 * W * Cin, Cin, wr, kk * Cout, 0.0f, col,
                           kk * Cout);
        if (rc) return rc;
        if (ohhi > ohlo) {
            rc_shape s = rc_launch(nimg * (ohhi - ohlo) * Wo, Cout);
            k_ct_gather<<<s.grid, s.block, 0, stream()>>>(col, y, bf, !one, n0, nimg, hlo, hhi, g0, ohlo, ohhi, H, W,
                                                          Cout, k, stride, pad, Ho, Wo);
            if ((rc = cs_cuda_check_launch("conv_transpose2d gather"))) return rc;
        }
        g0 = g1;
    }
    return 0;
}

/* ---- resampling and layout ---- */

/* as ops.c interp_axis: align_corners=True source position of output o */
static __device__ __forceinline__ void interp(size_t in, size_t O, size_t o, size_t *i0, size_t *i1, float *l1)
{
    float sc = O > 1 ? __fdiv_rn((float)(in - 1), (float)(O - 1)) : 0.0f;
    float src = __fmul_rn(sc, (float)o);
    size_t a = (size_t)floorf(src);
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + 1 < in ? a + 1 : in - 1;
    *l1 = __fsub_rn(src, (float)a);
}

static __global__ void k_resize(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho, size_t Wo)
{
    RC_ROWS(q, N * Ho * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho, h0, h1, w0, w1;
        float a1, b1;
        interp(H, Ho, oh, &h0, &h1, &a1);
        interp(W, Wo, ow, &w0, &w1, &b1);
        float a0 = __fsub_rn(1.0f, a1), b0 = __fsub_rn(1.0f, b1);
        const float *xn = x + n * H * W * C;
        const float *p00 = xn + (h0 * W + w0) * C, *p01 = xn + (h0 * W + w1) * C, *p10 = xn + (h1 * W + w0) * C,
                    *p11 = xn + (h1 * W + w1) * C;
        RC_COLS(c, C)
        {
            float top = __fadd_rn(__fmul_rn(b0, p00[c]), __fmul_rn(b1, p01[c]));
            float bot = __fadd_rn(__fmul_rn(b0, p10[c]), __fmul_rn(b1, p11[c]));
            y[q * C + c] = __fadd_rn(__fmul_rn(a0, top), __fmul_rn(a1, bot));
        }
    }
}

extern "C" int cs_cuda_resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho,
                                       size_t Wo)
{
    if (!N || !Ho || !Wo || !C || !H || !W) return 0;
    rc_shape s = rc_launch(N * Ho * Wo, C);
    k_resize<<<s.grid, s.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo);
    return cs_cuda_check_launch("bilinear resize");
}

/* up = 1: PixelShuffle, y[n, h*r+i, w*r+j, c] = x[n, h, w, c*r*r + i*r + j];
 * up = 0: PixelUnshuffle, the inverse. Threads over the output. */
static __global__ void k_shuffle(int up, const float *x, float *y, size_t N, size_t H, size_t W, size_t C, unsigned r)
{
    unsigned rr = r * r;
    size_t Ho = up ? H * r : H / r, Wo = up ? W * r : W / r, Co = up ? C : C * rr;
    RC_ROWS(q, N * Ho * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        float *yr = y + q * Co;
        if (up) {
            const float *xr = x + ((n * H + oh / r) * W + ow / r) * C * rr + (oh % r) * r + ow % r;
            RC_COLS(c, Co) yr[c] = xr[c * rr];
        } else {
            RC_COLS(co, Co)
            {
                size_t c = co / rr;
                unsigned ij = (unsigned)(co - c * rr), i = ij / r, j = ij - i * r;
                yr[co] = x[((n * H + oh * r + i) * W + ow * r + j) * C + c];
            }
        }
    }
}

extern "C" int cs_cuda_pixel_shuffle(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    if (r < 1) return cs_cuda_fail(cudaErrorInvalidValue, "pixel shuffle: factor below 1");
    size_t R = (size_t)r, pix = up ? N * H * R * W * R : N * (H / R) * (W / R), Co = up ? C : C * R * R;
    if (!pix || !Co) return 0;
    rc_shape s = rc_launch(pix, Co);
    k_shuffle<<<s.grid, s.block, 0, stream()>>>(up, x, y, N, H, W, C, (unsigned)r);
    return cs_cuda_check_launch(up ? "pixel shuffle" : "pixel unshuffle");
}

/* per image [A, B] -> [B, A] through a 32 x 32 tile in shared memory */
#define TT 32
static __global__ void k_transpose(const float *x, float *y, size_t N, size_t A, size_t B)
{
    __shared__ float tile[TT][TT + 1];
    for (size_t n = blockIdx.z; n < N; n += gridDim.z)
        for (size_t a0 = (size_t)blockIdx.y * TT; a0 < A; a0 += (size_t)gridDim.y * TT)
            for (size_t b0 = (size_t)blockIdx.x * TT; b0 < B; b0 += (size_t)gridDim.x * TT) {
                const float *xn = x + n * A * B;
                float *yn = y + n * A * B;
                for (unsigned i = threadIdx.y; i < TT; i += blockDim.y) {
                    size_t a = a0 + i, b = b0 + threadIdx.x;
                    if (a < A && b < B) tile[i][threadIdx.x] = xn[a * B + b];
                }
                __syncthreads();
                for (unsigned i = threadIdx.y; i < TT; i += blockDim.y) {
                    size_t b = b0 + i, a = a0 + threadIdx.x;
                    if (a < A && b < B) yn[b * A + a] = tile[threadIdx.x][i];
                }
                __syncthreads();
            }
}

extern "C" int cs_cuda_transpose(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW)
{
    if (!N || !C || !HW) return 0;
    size_t A = to_nhwc ? C : HW, B = to_nhwc ? HW : C;   /* x is [A, B] per image */
    size_t gx = (B + TT - 1) / TT, gy = (A + TT - 1) / TT;
    dim3 grid((unsigned)(gx < MAX_GRID_X ? gx : MAX_GRID_X), (unsigned)(gy < MAX_GRID_YZ ? gy : MAX_GRID_YZ),
              (unsigned)(N < MAX_GRID_YZ ? N : MAX_GRID_YZ));
    k_transpose<<<grid, dim3(TT, 8), 0, stream()>>>(x, y, N, A, B);
    return cs_cuda_check_launch("transpose");
}

extern "C" int cs_cuda_concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows)
{
    int rc = cs_cuda_copy2d(y, Ca + Cb, a, Ca, rows, Ca);
    return rc ? rc : cs_cuda_copy2d(y + Ca, Ca + Cb, b, Cb, rows, Cb);
}

/* ---- embedding rows: ids travel in the launch's parameters (a few KiB a
 * launch), so nothing waits for a host copy and the caller's array may go. */

#define EMB_IDS 960
struct emb_ids {
    int32_t v[EMB_IDS];
};

static __global__ void k_embed(const float *tab, size_t C, emb_ids ids, size_t n, float *out)
{
    for (size_t i = blockIdx.y; i < n; i += gridDim.y) {
        const float *src = tab + (size_t)ids.v[i] * C;
        RC_COLS(c, C) out[i * C + c] = src[c];
    }
}

extern "C" int cs_cuda_embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out)
{
    if (!n) return 0;
    if (table->ndim != 2) return cs_cuda_fail(cudaErrorInvalidValue, "embedding: the table is not 2-d");
    size_t C = (size_t)table->shape[1];
    if (!C) return 0;
    int rc = 0;
    const float *tab = weight(table, &rc);
    if (!tab) return rc;
    size_t gx = (C + BLOCK - 1) / BLOCK;
    for (size_t i0 = 0; i0 < n; i0 += EMB_IDS) {
        size_t m = n - i0 < EMB_IDS ? n - i0 : EMB_IDS;
        emb_ids v;
        memcpy(v.v, ids + i0, m * sizeof(int32_t));
        k_embed<<<dim3((unsigned)(gx < MAX_GRID_YZ ? gx : MAX_GRID_YZ), (unsigned)m), BLOCK, 0, stream()>>>(
            tab, C, v, m, out + i0 * C);
        if ((rc = cs_cuda_check_launch("embedding lookup"))) return rc;
    }
    return 0;
}

/* ---- timestep embedding: the host's frequencies, sines in double ---- */

struct remb_freqs {
    float f[256];
};

static __global__ void k_r_embed(const float *r, size_t N, int c_r, int half, remb_freqs fq, float *emb)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N * (size_t)c_r;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / (size_t)c_r;
        int k = (int)(i % (size_t)c_r);
        float v = 0.0f;
        if (k < 2 * half) {
            float u = __fmul_rn(r[n], 10000.0f);
            float ph = __fmul_rn(u, fq.f[k < half ? k : k - half]);
            v = (float)(k < half ? sin((double)ph) : cos((double)ph));
        }
        emb[i] = v;
    }
}

extern "C" int cs_cuda_r_embed(const float *r, size_t N, int c_r, const float *freq, float *emb)
{
    int half = c_r / 2;
    if (!N || c_r <= 0) return 0;
    if (half > 256) return cs_cuda_fail(cudaErrorInvalidValue, "timestep embedding: more than 512 channels");
    remb_freqs fq;
    memset(&fq, 0, sizeof fq);
    memcpy(fq.f, freq, (size_t)half * sizeof(float));
    size_t n = N * (size_t)c_r;
    k_r_embed<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(r, N, c_r, half, fq, emb);
    return cs_cuda_check_launch("timestep embedding");
}

/* ---- float32 -> 16-bit, round to nearest even; rows x cols from row stride ldx
 * into a dense [rows, cols] ---- */

template <bool BF>
static __global__ void k_to16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx)
{
    RC_ROWS(r, rows)
    RC_COLS(c, cols)
    {
        float v = x[r * ldx + c];
        /* f16: a value past its range saturates instead of becoming inf (an
         * inf operand turns a whole product row into NaN: black images) */
        if (!BF && fabsf(v) > 65504.0f) v = copysignf(65504.0f, v);
        if (BF) y[r * cols + c] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
        else y[r * cols + c] = __half_as_ushort(__float2half_rn(v));
    }
}

template <bool BF>
static int to16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx)
{
    if (!rows || !cols) return 0;
    if (ldx == cols) {   /* dense: one long row */
        cols *= rows;
        rows = 1;
    }
    rc_shape s = rc_launch(rows, cols);
    k_to16<BF><<<s.grid, s.block, 0, stream()>>>(x, y, rows, cols, ldx ? ldx : cols);
    return cs_cuda_check_launch(BF ? "conversion to bf16" : "conversion to f16");
}

extern "C" int cs_cuda_f32_to_bf16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx)
{
    return to16<true>(x, y, rows, cols, ldx);
}

extern "C" int cs_cuda_f32_to_f16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx)
{
    return to16<false>(x, y, rows, cols, ldx);
}
