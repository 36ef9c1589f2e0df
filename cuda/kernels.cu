/* The CUDA plugin's own kernels: every op of cs_dev_ops that is not a matrix
 * product or attention (those are gemm.c and attention.cu). This file:
 * copies, element-wise and per-channel maps, norms, f32 -> 16-bit; conv.cu
 * the convolutions; layout.cu resampling, layout and lookups.
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
#include "launch.cuh"

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

/* the dense case, 4 values a thread (16-byte loads, 8-byte stores) */
template <bool BF>
static __global__ void k_to16_x4(const float4 *x, uint2 *y, size_t n4)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 v = x[i];
        float a[4] = {v.x, v.y, v.z, v.w};
        uint16_t h[4];
        for (int k = 0; k < 4; k++) {
            if (!BF && fabsf(a[k]) > 65504.0f) a[k] = copysignf(65504.0f, a[k]);
            h[k] = BF ? __bfloat16_as_ushort(__float2bfloat16_rn(a[k])) : __half_as_ushort(__float2half_rn(a[k]));
        }
        y[i] = make_uint2((uint32_t)h[0] | (uint32_t)h[1] << 16, (uint32_t)h[2] | (uint32_t)h[3] << 16);
    }
}

template <bool BF>
static int to16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx)
{
    if (!rows || !cols) return 0;
    if (ldx == cols) {   /* dense: one long row */
        cols *= rows;
        rows = 1;
        if (cols % 4 == 0 && (uintptr_t)x % 16 == 0 && (uintptr_t)y % 8 == 0) {
            size_t n4 = cols / 4, b = (n4 + 255) / 256;
            k_to16_x4<BF><<<(unsigned)(b < 65536 ? b : 65536), 256, 0, stream()>>>((const float4 *)x, (uint2 *)y, n4);
            return cs_cuda_check_launch(BF ? "conversion to bf16" : "conversion to f16");
        }
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
