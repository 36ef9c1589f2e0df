/* The optimizer on the device (cs_dev_ops' optimizer ops, doc/training.md
 * §4): clipping's squared norms and the AdamW / Adafactor updates of
 * src/optim.c, float32. The host computes the step's scalars
 * (cs_*_coef); these kernels run cs_*_update's per-element part.
 *
 * Same formulas in the same order as the CPU: the float operations are
 * written with the _rn intrinsics (no fused multiply-add), so AdamW and
 * Adafactor's element-wise parts round as the CPU's do. Sums the CPU does
 * in double are in double here: Adafactor's row and column means are
 * reductions in a fixed tree (a warp a row, a block 32 columns), and
 * the two long sums (a tensor's squared norm, Adafactor's RMS of the
 * update) are two-stage reductions over a split fixed by n alone (each
 * block a fixed slice, the partials added in block order by one block): no
 * atomics, the same bits run after run. These differ from the CPU's
 * sequential sums in the last bits of a double only.
 *
 * Scratch: the partial sums come from the stream-ordered pool
 * (cs_cuda_alloc), freed after the kernel that reads them. */
#include "core.h"
#include "launch.cuh"

#include <stdlib.h>

#define RED_BLOCKS 256     /* most partial sums of a reduction */
#define RED_MIN 8192       /* elements a block takes at least */

/* ---- sum of squares: partials, then one block adds them in order ---- */

/* block b sums x[i]^2 for i in its slice [b*per, (b+1)*per), each thread
 * every BLOCK-th element in order, then the block's tree (fixed) */
static __global__ void k_sumsq_part(const float *x, size_t n, size_t per, double *part)
{
    __shared__ double sh[BLOCK / 32];
    size_t lo = (size_t)blockIdx.x * per, hi = lo + per < n ? lo + per : n;
    double s = 0;
    for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += (double)x[i] * (double)x[i];
    s = warp_sum_d(s);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < BLOCK / 32; w++) t += sh[w];
        part[blockIdx.x] = t;
    }
}

static __global__ void k_sum_parts(const double *part, int nb, double *out)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double t = 0;
        for (int b = 0; b < nb; b++) t += part[b];
        *out = t;
    }
}

/* *out = sum x[i]^2 (device double), x n floats */
static int sumsq_dev(const float *x, size_t n, double *out, const char *what)
{
    size_t nb = (n + RED_MIN - 1) / RED_MIN;
    if (nb > RED_BLOCKS) nb = RED_BLOCKS;
    if (nb < 1) nb = 1;
    size_t per = (n + nb - 1) / nb;
    double *part = (double *)cs_cuda_alloc(nb * sizeof(double));
    if (!part) return cs_cuda_fail(cudaErrorMemoryAllocation, what);
    k_sumsq_part<<<(unsigned)nb, BLOCK, 0, stream()>>>(x, n, per, part);
    int rc = cs_cuda_check_launch(what);
    if (!rc) {
        k_sum_parts<<<1, 32, 0, stream()>>>(part, (int)nb, out);
        rc = cs_cuda_check_launch(what);
    }
    cs_cuda_free(part);   /* stream-ordered: after the kernels */
    return rc;
}

extern "C" int cs_cuda_sumsq(const float *x, size_t n, double *out)
{
    return sumsq_dev(x, n, out, "the squared norm of a gradient");
}

/* ---- AdamW ---- */

/* optim.c's cs_adamw_update, element by element, rounding as the CPU */
static __global__ void k_adamw(cs_adamw_k k, size_t n, float *p, const float *g, float *m, float *v)
{
    GRID_STRIDE(i, n) {
        float pi = __fmul_rn(p[i], k.decay), gi = g[i];
        float mi = __fadd_rn(m[i], __fmul_rn(k.w1, __fsub_rn(gi, m[i])));
        float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(gi, gi), k.a2));
        float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2s), k.eps);
        p[i] = __fadd_rn(pi, __fmul_rn(-k.step, __fdiv_rn(mi, den)));
        m[i] = mi, v[i] = vi;
    }
}

extern "C" int cs_cuda_adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v)
{
    if (!n) return 0;
    k_adamw<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(*k, n, p, g, m, v);
    return cs_cuda_check_launch("the AdamW step");
}

/* ---- Adafactor ---- */

/* g^2 + eps1, rounded as the CPU's u */
static __device__ __forceinline__ float sq_eps(float g, float e1)
{
    return __fadd_rn(__fmul_rn(g, g), e1);
}

#define WARPS 8   /* rows a block of the row and mean kernels, a warp each */

/* row[b,r] = row*b2 + (float)(sum_q u[b,r,q] / C)*a2, u = g^2+eps1: a warp
 * a row (a thread a row left most SMs idle on 2048-row weights) */
static __global__ void k_rows(const float *g, float e1, float *row, size_t BR, size_t C, float b2, float a2)
{
    size_t i = (size_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (i >= BR) return;
    const float *gr = g + i * C;
    double t = 0;
    for (size_t q = threadIdx.x & 31; q < C; q += 32) t += sq_eps(gr[q], e1);
    t = warp_sum_d(t);
    if ((threadIdx.x & 31) == 0) row[i] = __fadd_rn(__fmul_rn(row[i], b2), __fmul_rn((float)(t / (double)C), a2));
}

#define COL_X 32   /* columns a block (one coalesced 128-byte read a row) */
#define COL_Y 16   /* row groups a block */

/* col[b,q] = col*b2 + (float)(sum_r u[b,r,q] / R)*a2: a block COL_X
 * consecutive columns of B*C, each thread every COL_Y-th row, the COL_Y
 * partials added in order */
static __global__ void k_cols(const float *g, float e1, float *col, size_t B, size_t R, size_t C, float b2, float a2)
{
    __shared__ double sh[COL_Y][COL_X];
    size_t i = (size_t)blockIdx.x * COL_X + threadIdx.x;
    double t = 0;
    if (i < B * C) {
        const float *gb = g + (i / C) * R * C + i % C;
        for (size_t r = threadIdx.y; r < R; r += COL_Y) t += sq_eps(gb[r * C], e1);
    }
    sh[threadIdx.y][threadIdx.x] = t;
    __syncthreads();
    if (threadIdx.y == 0 && i < B * C) {
        for (int y = 1; y < COL_Y; y++) t += sh[y][threadIdx.x];
        col[i] = __fadd_rn(__fmul_rn(col[i], b2), __fmul_rn((float)(t / (double)R), a2));
    }
}

/* rmean[b] = (float)(sum_r row[b,r] / R): a warp an image */
static __global__ void k_rmean(const float *row, size_t B, size_t R, float *rmean)
{
    size_t b = (size_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (b >= B) return;
    double t = 0;
    for (size_t r = threadIdx.x & 31; r < R; r += 32) t += row[b * R + r];
    t = warp_sum_d(t);
    if ((threadIdx.x & 31) == 0) rmean[b] = (float)(t / (double)R);
}

/* u = (1/sqrt(row/rmean)) * (1/sqrt(col)) * g */
static __global__ void k_factored_u(const float *g, const float *row, const float *col, const float *rmean, size_t B,
                                    size_t R, size_t C, float *u)
{
    GRID_STRIDE(i, B * R * C) {
        size_t q = i % C, br = i / C, b = br / R;
        float rf = __fdiv_rn(1.0f, __fsqrt_rn(__fdiv_rn(row[br], rmean[b])));
        float cf = __fdiv_rn(1.0f, __fsqrt_rn(col[b * C + q]));
        u[i] = __fmul_rn(__fmul_rn(rf, cf), g[i]);
    }
}

/* v = v*b2 + (g^2+eps1)*a2; u = 1/sqrt(v) * g */
static __global__ void k_full_u(const float *g, float e1, float *v, float *u, size_t n, float b2, float a2)
{
    GRID_STRIDE(i, n) {
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(sq_eps(g[i], e1), a2));
        v[i] = vi;
        u[i] = __fmul_rn(__fdiv_rn(1.0f, __fsqrt_rn(vi)), g[i]);
    }
}

/* u /= max(rms(u)/clip, 1); p += p*wd (with decay); p -= u*lr */
static __global__ void k_af_apply(cs_adafactor_k k, const double *ss, const float *u, float *p, size_t n)
{
    float rms = (float)(sqrt(*ss) / sqrt((double)n));
    float div = __fdiv_rn(rms, k.clip);
    if (div < 1.0f) div = 1.0f;
    GRID_STRIDE(i, n) {
        float up = __fmul_rn(__fdiv_rn(u[i], div), k.lr), pi = p[i];
        if (k.decay) pi = __fadd_rn(pi, __fmul_rn(pi, k.wd));
        p[i] = __fadd_rn(pi, -up);
    }
}

extern "C" int cs_cuda_adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p,
                                        const float *g, float *row, float *col, float *v, float *u)
{
    size_t n = B * R * C;
    if (!n) return 0;
    const char *what = "the Adafactor step";
    /* ss (1 double) and, factored, rmean (B floats) */
    double *ss = (double *)cs_cuda_alloc(sizeof(double) + B * sizeof(float));
    if (!ss) return cs_cuda_fail(cudaErrorMemoryAllocation, what);
    float *rmean = (float *)(ss + 1);
    unsigned gn = grid_1d(n, BLOCK);
    int rc;
    if (row) {
        k_rows<<<(unsigned)((B * R + WARPS - 1) / WARPS), WARPS * 32, 0, stream()>>>(g, k->e1, row, B * R, C, k->b2,
                                                                                   k->a2);
        k_cols<<<(unsigned)((B * C + COL_X - 1) / COL_X), dim3(COL_X, COL_Y), 0, stream()>>>(g, k->e1, col, B, R, C,
                                                                                            k->b2, k->a2);
        k_rmean<<<(unsigned)((B + WARPS - 1) / WARPS), WARPS * 32, 0, stream()>>>(row, B, R, rmean);
        k_factored_u<<<gn, BLOCK, 0, stream()>>>(g, row, col, rmean, B, R, C, u);
    } else {
        k_full_u<<<gn, BLOCK, 0, stream()>>>(g, k->e1, v, u, n, k->b2, k->a2);
    }
    rc = cs_cuda_check_launch(what);
    if (!rc) rc = sumsq_dev(u, n, ss, what);
    if (!rc) {
        k_af_apply<<<gn, BLOCK, 0, stream()>>>(*k, ss, u, p, n);
        rc = cs_cuda_check_launch(what);
    }
    cs_cuda_free(ss);
    return rc;
}
