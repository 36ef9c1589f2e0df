/* The backward ops of src/grad.h on the device (cs_dev_ops' optional
 * tail, issue 13): the reference CPU version of each is in src/grad_*.c,
 * and each kernel here follows its formulas in the same order.
 *
 * Float32 whatever the precision in force: training runs in fp32 on the
 * device for now, so products go through cublasSgemm(StridedBatched) on the
 * plugin's handle, whose math mode is CUBLAS_DEFAULT_MATH (no TF32), and
 * results compare with the CPU at fp32 tolerance. Weights (Linear's W) come
 * from the plugin's cache as float32 (a bf16 base widened exactly).
 *
 * Determinism: no atomics. Each parameter gradient (db, dgamma, dbeta, the
 * depthwise conv's dw and db, the modulation's da and db) is a two-stage
 * column reduction over a split fixed by the sizes alone: a block sums
 * RED_ROWS rows of 32 columns in double (each thread every RED_Y-th row,
 * then the RED_Y partials in thread order), and a second kernel adds the
 * chunks in chunk order and the images in image order. So a step gives the
 * same bits run after run on one machine (resume is promised bit-exact).
 * cuBLAS's products are deterministic for one GPU model and cuBLAS version
 * on one stream; dW is such a product. Sums the CPU does in double (norms,
 * the conv's and the modulation's parameter gradients) are in double here.
 *
 * Scratch: slot 17 the reductions' partials, slot 18 the per-row or
 * per-image intermediates (LayerNorm's statistics, GRN's terms, attention's
 * probabilities and their gradient). */
#include "core.h"
#include "launch.cuh"

#include <cublas_v2.h>
#include <limits.h>
#include <math.h>

#define SLOT_RED 17
#define SLOT_TMP 18

#define RED_ROWS 64   /* rows per partial sum */
#define RED_Y 8       /* threads along the rows of a reduction block (x: 32 columns) */

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

static int no_blas(cublasHandle_t *h)
{
    *h = cs_cuda_blas();
    return *h ? 0 : cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
}

static int too_big(const char *what, size_t a, size_t b, size_t c, size_t d, size_t e, size_t f)
{
    if (a <= INT_MAX && b <= INT_MAX && c <= INT_MAX && d <= INT_MAX && e <= INT_MAX && f <= INT_MAX) return 0;
    return cs_cuda_fail_text(CS_EUNSUP, "CUDA: %s: sizes past cuBLAS's 32 bits (%zu x %zu x %zu)", what, a, b, c);
}

/* rows x cols floats at row stride ld set to zero (an input gradient that
 * is written, from an empty sum) */
static int zero2d(float *p, size_t ld, size_t rows, size_t cols, const char *what)
{
    if (!p || !rows || !cols) return 0;
    cudaError_t e = cudaMemset2DAsync(p, ld * sizeof(float), 0, cols * sizeof(float), rows, stream());
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, what);
}

/* ---- column reductions: for each of N images and each of C columns, NV
 * sums over the image's R rows of the terms F adds in (double); then G is
 * called once per column and image, images in order, with the NV totals. ---- */

template <class F, int NV>
static __global__ void k_colpart(F f, size_t N, size_t R, size_t C, size_t nch, double *part)
{
    __shared__ double sh[NV][RED_Y][32];
    size_t c = (size_t)blockIdx.x * 32 + threadIdx.x;
    for (size_t n = blockIdx.z; n < N; n += gridDim.z)
        for (size_t ch = blockIdx.y; ch < nch; ch += gridDim.y) {
            double s[NV];
            for (int v = 0; v < NV; v++) s[v] = 0.0;
            size_t r1 = (ch + 1) * RED_ROWS < R ? (ch + 1) * RED_ROWS : R;
            if (c < C)
                for (size_t r = ch * RED_ROWS + threadIdx.y; r < r1; r += RED_Y) f(n, r, c, s);
            for (int v = 0; v < NV; v++) sh[v][threadIdx.y][threadIdx.x] = s[v];
            __syncthreads();
            if (threadIdx.y == 0 && c < C)
                for (int v = 0; v < NV; v++) {
                    double t = 0.0;
                    for (int y = 0; y < RED_Y; y++) t += sh[v][y][threadIdx.x];
                    part[((n * nch + ch) * NV + v) * C + c] = t;
                }
            __syncthreads();
        }
}

template <class G, int NV>
static __global__ void k_colfin(G g, size_t N, size_t C, size_t nch, const double *part)
{
    GRID_STRIDE(c, C)
    for (size_t n = 0; n < N; n++) {
        double t[NV];
        for (int v = 0; v < NV; v++) {
            double s = 0.0;
            for (size_t ch = 0; ch < nch; ch++) s += part[((n * nch + ch) * NV + v) * C + c];
            t[v] = s;
        }
        g(n, c, t);
    }
}

template <int NV, class F, class G>
static int colsum(F f, G g, size_t N, size_t R, size_t C, const char *what)
{
    if (!N || !C) return 0;
    size_t nch = R ? (R + RED_ROWS - 1) / RED_ROWS : 1;   /* R = 0: one chunk of zeros */
    int rc = 0;
    double *part = (double *)scratch(SLOT_RED, N * nch * NV * C * sizeof(double), what, &rc);
    if (!part) return rc;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)min_sz(nch, MAX_GRID_YZ), (unsigned)min_sz(N, MAX_GRID_YZ));
    k_colpart<F, NV><<<grid, dim3(32, RED_Y), 0, stream()>>>(f, N, R, C, nch, part);
    if ((rc = cs_cuda_check_launch(what))) return rc;
    k_colfin<G, NV><<<grid_1d(C, BLOCK), BLOCK, 0, stream()>>>(g, N, C, nch, part);
    return cs_cuda_check_launch(what);
}

/* sum over the block in double (blockDim.x a multiple of 32); every thread gets it */
static __device__ double block_sum_d(double v, double *sh)
{
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    t = warp_sum_d(t);
    __syncthreads();
    return t;
}

static __device__ float block_max(float v, float *sh)
{
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
    __syncthreads();
    return t;
}

/* ---- the transposed product: C[M,N] (+)= A^T B, A [K,M], B [K,N] ----
 * Column-major (gemm.c's mapping): C^T (N x M) = B^T (N x K, stored as B
 * with ld ldb, op N) times A (K x M: A stored is column-major M x K with
 * ld lda, op T). */

extern "C" int cs_cuda_sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb,
                                float beta, float *C, size_t ldc)
{
    if (!M || !N) return 0;
    cublasHandle_t h;
    int rc = no_blas(&h);
    if (rc) return rc;
    if (!K) {   /* an empty sum: C = beta C (grad.h's betas are 0 or 1) */
        if (beta == 0.0f) return zero2d(C, ldc, M, N, "a transposed product");
        if (beta == 1.0f) return 0;
        return cs_cuda_fail_text(CS_EUNSUP, "CUDA: sgemm_tn with K = 0 and beta %g", (double)beta);
    }
    if (too_big("sgemm_tn", M, N, K, lda, ldb, ldc)) return CS_EUNSUP;
    float one = 1.0f;
    cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)N, (int)M, (int)K, &one, B, (int)ldb, A,
                                   (int)lda, &beta, C, (int)ldc);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : cs_cuda_blas_fail(s, "sgemm_tn");
}

/* ---- Linear ---- */

struct red_colsum {   /* sum over rows of dy[r, c] */
    const float *dy;
    size_t ld;
    __device__ void operator()(size_t, size_t r, size_t c, double *s) const { s[0] += dy[r * ld + c]; }
};
struct fin_add {   /* out[c] += total */
    float *out;
    __device__ void operator()(size_t, size_t c, const double *t) const { out[c] += (float)t[0]; }
};

extern "C" int cs_cuda_linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W,
                                       const float *dy, size_t ldy, float *dx, int acc, float *dW, float *db)
{
    size_t N = W->ndim >= 1 && W->shape[0] > 0 ? (size_t)W->shape[0] : 0;
    if (!ldx) ldx = K;
    if (!ldy) ldy = N;
    if (!M) return 0;
    cublasHandle_t h;
    int rc = no_blas(&h);
    if (rc) return rc;
    if (dx && K) {
        if (!N) {
            if (!acc && (rc = zero2d(dx, ldx, M, K, "Linear backward"))) return rc;
        } else {
            /* dx[M,K] (+)= dy[M,N] W[N,K]: dx^T (K x M) = W^T (W stored, op N) dy^T (dy stored, op N) */
            const float *w = weight(W, &rc);
            if (!w) return rc;
            if (too_big("Linear backward", M, N, K, ldx, ldy, 0)) return CS_EUNSUP;
            float one = 1.0f, beta = acc ? 1.0f : 0.0f;
            cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)K, (int)M, (int)N, &one, w, (int)K, dy,
                                           (int)ldy, &beta, dx, (int)ldx);
            if (s != CUBLAS_STATUS_SUCCESS) return cs_cuda_blas_fail(s, "Linear backward (dx)");
        }
    }
    if (dW && N && K && (rc = cs_cuda_sgemm_tn(N, K, M, dy, ldy, x, ldx, 1.0f, dW, K))) return rc;   /* dW += dy^T x */
    if (db && N) {
        red_colsum f = {dy, ldy};
        fin_add g = {db};
        rc = colsum<1>(f, g, 1, M, N, "Linear backward (db)");
    }
    return rc;
}

/* ---- LayerNorm: one warp per row for dx and the row's statistics, then
 * the column sums for dw, db ---- */

#define LN_WARPS 8

static __global__ void k_ln_back(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C,
                                 float eps, const float *w, float *st)
{
    unsigned lane = threadIdx.x & 31;
    for (size_t r = (size_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5); r < rows; r += (size_t)gridDim.x * LN_WARPS) {
        const float *xr = x + r * C, *g = dy + r * C;
        double s = 0.0;
        for (size_t c = lane; c < C; c += 32) s += xr[c];
        float m = (float)(warp_sum_d(s) / (double)C);
        double v = 0.0;
        for (size_t c = lane; c < C; c += 32) {
            double d = (double)(xr[c] - m);
            v += d * d;
        }
        float rs = (float)(1.0 / sqrt(warp_sum_d(v) / (double)C + (double)eps));
        if (st && lane == 0) st[2 * r] = m, st[2 * r + 1] = rs;
        if (!dx) continue;
        double sg = 0.0, sgx = 0.0;
        for (size_t c = lane; c < C; c += 32) {
            double gc = w ? (double)g[c] * w[c] : (double)g[c];
            sg += gc;
            sgx += gc * ((double)(xr[c] - m) * rs);
        }
        sg = warp_sum_d(sg) / (double)C, sgx = warp_sum_d(sgx) / (double)C;
        float *d = dx + r * C;
        for (size_t c = lane; c < C; c += 32) {
            double gc = w ? (double)g[c] * w[c] : (double)g[c], xh = (double)(xr[c] - m) * rs;
            float val = (float)(rs * (gc - sg - xh * sgx));
            d[c] = acc ? __fadd_rn(d[c], val) : val;
        }
    }
}

struct red_ln {   /* dy * xhat, dy */
    const float *x, *dy, *st;
    size_t C;
    __device__ void operator()(size_t, size_t r, size_t c, double *s) const
    {
        double g = dy[r * C + c];
        s[0] += g * ((double)(x[r * C + c] - st[2 * r]) * st[2 * r + 1]);
        s[1] += g;
    }
};
struct fin_ln {
    float *dw, *db;
    __device__ void operator()(size_t, size_t c, const double *t) const
    {
        if (dw) dw[c] += (float)t[0];
        if (db) db[c] += (float)t[1];
    }
};

extern "C" int cs_cuda_layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C,
                                          float eps, const float *w, float *dw, float *db)
{
    if (!rows || !C || (!dx && !dw && !db)) return 0;
    int rc = 0;
    float *st = NULL;
    if ((dw || db) && !(st = (float *)scratch(SLOT_TMP, 2 * rows * sizeof(float), "LayerNorm backward", &rc)))
        return rc;
    size_t g = (rows + LN_WARPS - 1) / LN_WARPS;
    k_ln_back<<<(unsigned)min_sz(g, MAX_GRID_X), 32 * LN_WARPS, 0, stream()>>>(x, dy, dx, acc, rows, C, eps, w, st);
    if ((rc = cs_cuda_check_launch("LayerNorm backward")) || !st) return rc;
    red_ln f = {x, dy, st, C};
    fin_ln fin = {dw, db};
    return colsum<2>(f, fin, 1, rows, C, "LayerNorm backward (dw, db)");
}

/* ---- GELU (erf form), SiLU: dx = dy f'(x), written as the CPU's plain C
 * rounds it (no contraction into FMAs) ---- */

static __global__ void k_gelu_back(const float *x, const float *dy, float *dx, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i];
        float e = expf(__fmul_rn(__fmul_rn(-0.5f, v), v));
        float d = __fadd_rn(__fmul_rn(0.5f, __fadd_rn(1.0f, erff(__fmul_rn(v, 0.70710678118654752f)))),
                            __fmul_rn(__fmul_rn(v, 0.39894228040143268f), e));
        dx[i] = __fmul_rn(dy[i], d);
    }
}

static __global__ void k_silu_back(const float *x, const float *dy, float *dx, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = x[i], s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-v)));
        dx[i] = __fmul_rn(dy[i], __fmul_rn(s, __fadd_rn(1.0f, __fmul_rn(v, __fsub_rn(1.0f, s)))));
    }
}

extern "C" int cs_cuda_gelu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    if (!n) return 0;
    k_gelu_back<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(x, dy, dx, n);
    return cs_cuda_check_launch("GELU backward");
}

extern "C" int cs_cuda_silu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    if (!n) return 0;
    k_silu_back<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(x, dy, dx, n);
    return cs_cuda_check_launch("SiLU backward");
}

/* ---- AdaLN modulation: da = sum_hw dy x, db = sum_hw dy (written), then
 * dx = dy (1 + a) (after the sums: dx may be dy) ---- */

struct red_mod {
    const float *x, *dy;
    size_t HW, C;
    __device__ void operator()(size_t n, size_t r, size_t c, double *s) const
    {
        size_t i = (n * HW + r) * C + c;
        double g = dy[i];
        if (x) s[0] += g * x[i];
        s[1] += g;
    }
};
struct fin_mod {
    float *da, *db;
    size_t ld;
    __device__ void operator()(size_t n, size_t c, const double *t) const
    {
        if (da) da[n * ld + c] = (float)t[0];
        if (db) db[n * ld + c] = (float)t[1];
    }
};

static __global__ void k_mod_dx(const float *dy, float *dx, size_t rows, size_t C, size_t HW, const float *a,
                                size_t ld)
{
    RC_ROWS(r, rows)
    {
        const float *an = a + (r / HW) * ld;
        RC_COLS(c, C) dx[r * C + c] = __fmul_rn(dy[r * C + c], __fadd_rn(1.0f, an[c]));
    }
}

extern "C" int cs_cuda_modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C,
                                         const float *a, size_t ldab, float *da, float *db)
{
    if (!N || !C) return 0;
    int rc = 0;
    if (da || db) {
        red_mod f = {da ? x : NULL, dy, HW, C};
        fin_mod g = {da, db, ldab};
        if ((rc = colsum<2>(f, g, N, HW, C, "modulation backward (da, db)"))) return rc;
    }
    if (!dx || !HW) return 0;
    rc_shape s = rc_launch(N * HW, C);
    k_mod_dx<<<s.grid, s.block, 0, stream()>>>(dy, dx, N * HW, C, HW, a, ldab);
    return cs_cuda_check_launch("modulation backward");
}

/* ---- GRN: per image and channel G = ||x||, a = sum dy x, sum dy (column
 * sums); then, per image over the channels (one block, images in order so
 * dgamma and dbeta add up as on the CPU): m = mean G + 1e-6, nx = G / m,
 * dG = (gamma a / m - sum_c(gamma a G) / (m^2 C)) / G (0 where G = 0);
 * then dx = dy + gamma nx dy + dG x. ---- */

struct red_grn {
    const float *x, *dy;
    size_t HW, C;
    __device__ void operator()(size_t n, size_t r, size_t c, double *s) const
    {
        size_t i = (n * HW + r) * C + c;
        double v = x[i], g = dy[i];
        s[0] += v * v, s[1] += g * v, s[2] += g;
    }
};
struct fin_store3 {   /* tot[n][v][c] */
    double *tot;
    size_t C;
    __device__ void operator()(size_t n, size_t c, const double *t) const
    {
        for (int v = 0; v < 3; v++) tot[(n * 3 + v) * C + c] = t[v];
    }
};

#define GRN_THREADS 1024

/* coef[n][0][c] = nx, coef[n][1][c] = dG; one block */
static __global__ void __launch_bounds__(GRN_THREADS) k_grn_mid(const double *tot, size_t N, size_t C, const float *gamma, float *dgamma,
                                 float *dbeta, double *coef)
{
    __shared__ double sh[32];
    for (size_t n = 0; n < N; n++) {
        const double *t = tot + n * 3 * C;
        double *nx = coef + n * 2 * C, *dG = nx + C;
        double sG = 0.0;
        for (size_t c = threadIdx.x; c < C; c += blockDim.x) sG += sqrt(t[c]);
        double m = block_sum_d(sG, sh) / (double)C + 1e-6, aG = 0.0;
        for (size_t c = threadIdx.x; c < C; c += blockDim.x) {
            double G = sqrt(t[c]), a = t[C + c];
            nx[c] = G / m;
            if (dgamma) dgamma[c] += (float)(a * nx[c]);
            if (dbeta) dbeta[c] += (float)t[2 * C + c];
            a *= gamma[c];
            dG[c] = a;   /* gamma a until the sum below */
            aG += a * G;
        }
        aG = block_sum_d(aG, sh);
        for (size_t c = threadIdx.x; c < C; c += blockDim.x) {
            double G = sqrt(t[c]);
            dG[c] = G > 0 ? (dG[c] / m - aG / (m * m * (double)C)) / G : 0.0;
        }
    }
}

static __global__ void k_grn_dx(const float *x, const float *dy, float *dx, size_t rows, size_t C, size_t HW,
                                const float *gamma, const double *coef)
{
    RC_ROWS(r, rows)
    {
        const double *nx = coef + (r / HW) * 2 * C, *dG = nx + C;
        RC_COLS(c, C)
        {
            double g = dy[r * C + c], v = x[r * C + c];
            dx[r * C + c] = (float)(g + gamma[c] * nx[c] * g + dG[c] * v);
        }
    }
}

extern "C" int cs_cuda_grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C,
                                    const float *gamma, float *dgamma, float *dbeta)
{
    if (!N || !C || (!dx && !dgamma && !dbeta)) return 0;
    int rc = 0;
    double *tot = (double *)scratch(SLOT_TMP, N * 5 * C * sizeof(double), "GRN backward", &rc);
    if (!tot) return rc;
    double *coef = tot + N * 3 * C;
    red_grn f = {x, dy, HW, C};
    fin_store3 g = {tot, C};
    if ((rc = colsum<3>(f, g, N, HW, C, "GRN backward (sums)"))) return rc;
    k_grn_mid<<<1, GRN_THREADS, 0, stream()>>>(tot, N, C, gamma, dgamma, dbeta, coef);
    if ((rc = cs_cuda_check_launch("GRN backward (per channel)")) || !dx || !HW) return rc;
    rc_shape s = rc_launch(N * HW, C);
    k_grn_dx<<<s.grid, s.block, 0, stream()>>>(x, dy, dx, N * HW, C, HW, gamma, coef);
    return cs_cuda_check_launch("GRN backward (dx)");
}

/* ---- depthwise k x k convolution, stride 1, zero padding k/2 ----
 * dx: a gather per input pixel (the outputs that read it through each tap),
 * taps in the CPU's order, float sums. dw, db: column sums whose columns are
 * (tap, channel) pairs, the bias as tap k*k: tap t < k*k of pixel (h, w)
 * adds dy[h, w] x[h + i - p, w + j - p] (t = i k + j). */

static __global__ void k_dw_dx(const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C, int k,
                               const float *w)
{
    long p = k / 2, Hl = (long)H, Wl = (long)W;
    size_t kk = (size_t)k * (size_t)k;
    GRID_STRIDE(e, N * H * W * C)
    {
        size_t c = e % C, pix = e / C, n = pix / (H * W);
        long h = (long)(pix / W % H), wi = (long)(pix % W);
        const float *gn = dy + n * H * W * C;
        float s = 0.0f;
        for (long i = 0; i < k; i++) {
            long oh = h - i + p;
            if (oh < 0 || oh >= Hl) continue;
            for (long j = 0; j < k; j++) {
                long ow = wi - j + p;
                if (ow < 0 || ow >= Wl) continue;
                s = __fadd_rn(s, __fmul_rn(w[c * kk + (size_t)(i * k + j)], gn[((size_t)oh * W + (size_t)ow) * C + c]));
            }
        }
        dx[e] = acc ? __fadd_rn(dx[e], s) : s;
    }
}

struct red_dw {
    const float *x, *dy;
    size_t H, W, C;
    int k, tap0;   /* tap0: the first tap of column 0 (k*k when only db is wanted) */
    __device__ void operator()(size_t n, size_t r, size_t q, double *s) const
    {
        size_t tap = (size_t)tap0 + q / C, c = q % C, kk = (size_t)k * (size_t)k;
        double g = dy[(n * H * W + r) * C + c];
        if (tap == kk) {
            s[0] += g;
            return;
        }
        long p = k / 2, ih = (long)(r / W) + (long)(tap / (size_t)k) - p, iw = (long)(r % W) + (long)(tap % (size_t)k) - p;
        if (ih < 0 || ih >= (long)H || iw < 0 || iw >= (long)W) return;
        s[0] += g * x[((n * H + (size_t)ih) * W + (size_t)iw) * C + c];
    }
};
struct fin_dw {
    float *dw, *db;
    size_t C;
    int k, tap0;
    __device__ void operator()(size_t, size_t q, const double *t) const
    {
        size_t tap = (size_t)tap0 + q / C, c = q % C, kk = (size_t)k * (size_t)k;
        if (tap == kk) db[c] += (float)t[0];
        else dw[c * kk + tap] += (float)t[0];
    }
};

extern "C" int cs_cuda_dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H,
                                       size_t W, size_t C, int k, const float *w, float *dw, float *db)
{
    if (k <= 0 || !(k & 1)) return cs_cuda_fail_text(CS_EARG, "depthwise backward: kernel size %d is not odd", k);
    size_t n = N * H * W * C, kk = (size_t)k * (size_t)k;
    if (!n) return 0;
    int rc = 0;
    if (dx) {
        k_dw_dx<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(dy, dx, acc, N, H, W, C, k, w);
        if ((rc = cs_cuda_check_launch("depthwise convolution backward (dx)"))) return rc;
    }
    if (!dw && !db) return 0;
    int tap0 = dw ? 0 : (int)kk;
    size_t cols = ((dw ? kk : 0) + (db ? 1 : 0)) * C;
    red_dw f = {x, dy, H, W, C, k, tap0};
    fin_dw g = {dw, db, C, k, tap0};
    return colsum<1>(f, g, N, H * W, cols, "depthwise convolution backward (dw, db)");
}

/* ---- attention core (no mask), per image with every head at once in
 * strided-batched products (head h's features are columns h*hd.., so
 * batch strides are hd; the score blocks [rows, Lk] are r*Lk apart):
 *   P  = softmax(scale q k^T)                 recomputed
 *   dv (+)= P^T do,  dP = do v^T,  dS = scale P (dP - rowsum(dP P))
 *   dq (+)= dS k,    dk (+)= dS^T q
 * Query rows go in chunks that keep P and dP under 1 GiB; dk and dv add
 * from the second chunk on. Column-major forms as in attention.cu. ---- */

#define SM_THREADS 256

static __global__ void k_softmax(float *P, size_t Lk)
{
    __shared__ float sh[32];
    float *p = P + (size_t)blockIdx.x * Lk;
    float m = -INFINITY;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) m = fmaxf(m, p[j]);
    m = block_max(m, sh);
    float s = 0.0f;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) {
        float e = expf(p[j] - m);
        p[j] = e;
        s += e;
    }
    float inv = 1.0f / block_sum(s, sh);
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) p[j] *= inv;
}

/* dP -> scale P (dP - sum_j P dP), in place */
static __global__ void k_dsoft(const float *P, float *dP, size_t Lk, float scale)
{
    __shared__ float sh[32];
    const float *p = P + (size_t)blockIdx.x * Lk;
    float *d = dP + (size_t)blockIdx.x * Lk;
    float s = 0.0f;
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) s += p[j] * d[j];
    s = block_sum(s, sh);
    for (size_t j = threadIdx.x; j < Lk; j += SM_THREADS) d[j] = scale * (p[j] * (d[j] - s));
}

extern "C" int cs_cuda_attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                                          size_t ldv, const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk,
                                          size_t C, int nhead, float *dq, float *dk, float *dv, int acc)
{
    if (nhead <= 0 || C % (size_t)nhead)
        return cs_cuda_fail_text(CS_EARG, "attention backward: %zu channels do not split into %d heads", C, nhead);
    if (!N || !C) return 0;
    int rc;
    if (!Lk || !Lq) {   /* empty sums: written gradients are zero */
        if (acc) return 0;
        if (Lk) {
            if ((rc = zero2d(dk, ldk, N * Lk, C, "attention backward"))) return rc;
            return zero2d(dv, ldv, N * Lk, C, "attention backward");
        }
        return zero2d(dq, ldq, N * Lq, C, "attention backward");
    }
    cublasHandle_t h;
    if ((rc = no_blas(&h))) return rc;
    size_t H = (size_t)nhead, hd = C / H;
    if (too_big("attention backward", Lq, Lk, C, ldq, ldk, ldv) || ldo > INT_MAX) return CS_EUNSUP;
    size_t rows = ((size_t)1 << 27) / (H * Lk);   /* P and dP: 1 GiB of float32 */
    if (rows < 1) rows = 1;
    if (rows > Lq) rows = Lq;
    if (H * rows > INT_MAX) rows = INT_MAX / H;
    float *P = (float *)scratch(SLOT_TMP, 2 * H * rows * Lk * sizeof(float), "attention backward scores", &rc);
    if (!P) return rc;
    float *dP = P + H * rows * Lk;
    float scale = 1.0f / sqrtf((float)hd), one = 1.0f, zero = 0.0f, bq = acc ? 1.0f : 0.0f;
    cublasStatus_t s;
    for (size_t n = 0; n < N; n++) {
        const float *kn = k + n * Lk * ldk, *vn = v + n * Lk * ldv;
        float *dkn = dk ? dk + n * Lk * ldk : NULL, *dvn = dv ? dv + n * Lk * ldv : NULL;
        for (size_t i0 = 0; i0 < Lq; i0 += rows) {
            size_t r = Lq - i0 < rows ? Lq - i0 : rows;
            const float *qn = q + (n * Lq + i0) * ldq, *on = do_ + (n * Lq + i0) * ldo;
            float *dqn = dq ? dq + (n * Lq + i0) * ldq : NULL, bkv = acc || i0 ? 1.0f : 0.0f;
            long long sP = (long long)(r * Lk);
            /* P^T (Lk x r) = k_h (op T) q_h^T, scaled */
            s = cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)Lk, (int)r, (int)hd, &scale, kn, (int)ldk,
                                          (long long)hd, qn, (int)ldq, (long long)hd, &zero, P, (int)Lk, sP, (int)H);
            if (s) return cs_cuda_blas_fail(s, "attention backward (scores)");
            k_softmax<<<(unsigned)(H * r), SM_THREADS, 0, stream()>>>(P, Lk);
            if ((rc = cs_cuda_check_launch("attention backward (softmax)"))) return rc;
            if (dvn) {   /* dv^T (hd x Lk) = do^T (op N) P (op T) */
                s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)hd, (int)Lk, (int)r, &one, on,
                                              (int)ldo, (long long)hd, P, (int)Lk, sP, &bkv, dvn, (int)ldv,
                                              (long long)hd, (int)H);
                if (s) return cs_cuda_blas_fail(s, "attention backward (dv)");
            }
            if (!dqn && !dkn) continue;
            /* dP^T (Lk x r) = v_h (op T) do_h^T */
            s = cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)Lk, (int)r, (int)hd, &one, vn, (int)ldv,
                                          (long long)hd, on, (int)ldo, (long long)hd, &zero, dP, (int)Lk, sP, (int)H);
            if (s) return cs_cuda_blas_fail(s, "attention backward (dP)");
            k_dsoft<<<(unsigned)(H * r), SM_THREADS, 0, stream()>>>(P, dP, Lk, scale);
            if ((rc = cs_cuda_check_launch("attention backward (dS)"))) return rc;
            if (dqn) {   /* dq^T (hd x r) = k_h^T (op N) dS^T (op N) */
                s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)hd, (int)r, (int)Lk, &one, kn,
                                              (int)ldk, (long long)hd, dP, (int)Lk, sP, &bq, dqn, (int)ldq,
                                              (long long)hd, (int)H);
                if (s) return cs_cuda_blas_fail(s, "attention backward (dq)");
            }
            if (dkn) {   /* dk^T (hd x Lk) = q_h^T (op N) dS (op T) */
                s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)hd, (int)Lk, (int)r, &one, qn,
                                              (int)ldq, (long long)hd, dP, (int)Lk, sP, &bkv, dkn, (int)ldk,
                                              (long long)hd, (int)H);
                if (s) return cs_cuda_blas_fail(s, "attention backward (dk)");
            }
        }
    }
    return 0;
}
