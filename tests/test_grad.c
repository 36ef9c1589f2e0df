/* Every backward of src/grad.h against central finite differences of a
 * float64 scalar forward written here, at odd sizes (1, 3, 5, 17 rows /
 * channels / pixels) and with strided rows (attention on a packed q|k|v).
 *
 * Loss L = sum(y * R) with R random, so the upstream gradient is R. For
 * each input or parameter element, dL/dv ~ (L(v+h) - L(v-h)) / 2h in double
 * (h = 1e-5 relative: truncation ~h^2, rounding ~1e-16/h, both < 1e-9).
 *
 * Tolerance: max |analytic - fd| <= 2e-5 * max |fd| over the tensor. The
 * analytic gradients are float32 with sums of at most ~100 terms, whose
 * rounding is ~1e-6 relative (measured worst 2.1e-6, a 1x1 Linear dW);
 * a wrong term or index gives errors of 1e-2 and more. */
#include "error.h"
#include "grad.h"
#include "ops.h"
#include "tensor.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-5
static int failures;
static double worst;
static uint64_t rs = 0x2545F4914F6CDD1Dull;

static double urand(void)   /* uniform [-1, 1) */
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 4503599627370496.0 - 1.0;
}

/* a float array and its exact double copy */
typedef struct { float *f; double *d; size_t n; } arr;

static arr mk(size_t n, double scale, double offset)
{
    arr a = {calloc(n + 1, sizeof(float)), calloc(n + 1, sizeof(double)), n};
    if (!a.f || !a.d) { fprintf(stderr, "out of memory\n"); exit(99); }
    for (size_t i = 0; i < n; i++) a.d[i] = a.f[i] = (float)(offset + urand() * scale);
    return a;
}
static arr zeros(size_t n) { return mk(n, 0, 0); }
static void rel(arr *a) { free(a->f), free(a->d); }

static cs_tensor f32_tensor(const float *p, int64_t r, int64_t c)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = CS_F32, t.ndim = 2, t.shape[0] = r, t.shape[1] = c, t.data = p, t.name = "W";
    return t;
}

/* the loss of one case, reading the double arrays of the context */
typedef struct ctx ctx;
typedef double (*loss_fn)(const ctx *);
struct ctx {
    arr a[6];        /* the op's inputs and parameters */
    arr R;           /* upstream gradient */
    size_t d[8];     /* sizes */
    double eps;
};

/* analytic g of element array `which` against finite differences */
static void fd_check(const char *what, ctx *c, loss_fn L, int which, const float *g, double hrel)
{
    arr *a = &c->a[which];
    double maxfd = 0, maxerr = 0;
    size_t at = 0;
    for (size_t i = 0; i < a->n; i++) {
        double v = a->d[i], h = hrel * (fabs(v) > 1 ? fabs(v) : 1);
        a->d[i] = v + h;
        double lp = L(c);
        a->d[i] = v - h;
        double lm = L(c);
        a->d[i] = v;
        double fd = (lp - lm) / (2 * h), e = fabs(g[i] - fd);
        if (fabs(fd) > maxfd) maxfd = fabs(fd);
        if (!(e <= maxerr)) maxerr = e, at = i;
    }
    double r = maxerr / (maxfd > 1e-12 ? maxfd : 1e-12);
    if (maxfd <= 1e-12) r = maxerr;   /* an all-zero gradient must come out ~0 */
    int ok = r <= TOL;
    if (r > worst && ok) worst = r;
    printf("%-36s max|fd| %-10.3g err %.2e%s\n", what, maxfd, r, ok ? "" : " FAIL");
    if (!ok) {
        fprintf(stderr, "FAIL %s: element %zu analytic %.9g\n", what, at, g[at]);
        failures++;
    }
}

/* ---- Linear: a0 x[M,K], a1 W[N,K], a2 b[N] ---- */
static double linear_loss(const ctx *c)
{
    size_t M = c->d[0], K = c->d[1], N = c->d[2];
    double s = 0;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double y = c->a[2].d[j];
            for (size_t k = 0; k < K; k++) y += c->a[0].d[i * K + k] * c->a[1].d[j * K + k];
            s += y * c->R.d[i * N + j];
        }
    return s;
}

static void test_linear(size_t M, size_t K, size_t N)
{
    ctx c = {.a = {mk(M * K, 1, 0), mk(N * K, 0.5, 0), mk(N, 0.5, 0)}, .R = mk(M * N, 1, 0), .d = {M, K, N}};
    arr dx = mk(M * K, 1, 0), dW = mk(N * K, 1, 0), db = mk(N, 1, 0);
    /* parameter gradients accumulate: start from known values and subtract them */
    float *w0 = malloc((N * K + N) * sizeof(float));
    memcpy(w0, dW.f, N * K * sizeof(float)), memcpy(w0 + N * K, db.f, N * sizeof(float));
    cs_tensor W = f32_tensor(c.a[1].f, (int64_t)N, (int64_t)K);
    if (cs_linear_backward(c.a[0].f, M, K, 0, &W, c.R.f, 0, dx.f, 0, dW.f, db.f)) exit(99);
    for (size_t i = 0; i < N * K; i++) dW.f[i] -= w0[i];
    for (size_t i = 0; i < N; i++) db.f[i] -= w0[N * K + i];
    char nm[64];
    snprintf(nm, sizeof nm, "linear %zux%zu->%zu dx", M, K, N);
    fd_check(nm, &c, linear_loss, 0, dx.f, 1e-5);
    snprintf(nm, sizeof nm, "linear %zux%zu->%zu dW", M, K, N);
    fd_check(nm, &c, linear_loss, 1, dW.f, 1e-5);
    snprintf(nm, sizeof nm, "linear %zux%zu->%zu db", M, K, N);
    fd_check(nm, &c, linear_loss, 2, db.f, 1e-5);
    /* acc = 1 adds to dx */
    arr dx2 = mk(M * K, 1, 0);
    float *before = malloc(M * K * sizeof(float) + 1);
    memcpy(before, dx2.f, M * K * sizeof(float));
    if (cs_linear_backward(c.a[0].f, M, K, 0, &W, c.R.f, 0, dx2.f, 1, NULL, NULL)) exit(99);
    for (size_t i = 0; i < M * K; i++) dx2.f[i] -= before[i];
    snprintf(nm, sizeof nm, "linear %zux%zu->%zu dx acc", M, K, N);
    fd_check(nm, &c, linear_loss, 0, dx2.f, 1e-5);
    free(before), free(w0);
    rel(&dx), rel(&dx2), rel(&dW), rel(&db), rel(&c.R);
    for (int i = 0; i < 3; i++) rel(&c.a[i]);
}

/* ---- LayerNorm: a0 x[rows,C], a1 w, a2 b (affine when d[2]) ---- */
static double ln_loss(const ctx *c)
{
    size_t rows = c->d[0], C = c->d[1];
    double s = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *x = c->a[0].d + r * C;
        double m = 0, v = 0;
        for (size_t k = 0; k < C; k++) m += x[k];
        m /= (double)C;
        for (size_t k = 0; k < C; k++) v += (x[k] - m) * (x[k] - m);
        v /= (double)C;
        for (size_t k = 0; k < C; k++) {
            double y = (x[k] - m) / sqrt(v + c->eps);
            if (c->d[2]) y = y * c->a[1].d[k] + c->a[2].d[k];
            s += y * c->R.d[r * C + k];
        }
    }
    return s;
}

static void test_layernorm(size_t rows, size_t C, int affine)
{
    ctx c = {.a = {mk(rows * C, 1, 0.3), mk(C, 0.5, 1), mk(C, 0.5, 0)}, .R = mk(rows * C, 1, 0), .d = {rows, C, (size_t)affine},
             .eps = 1e-6};
    arr dx = zeros(rows * C), dw = zeros(C), db = zeros(C);
    if (cs_layernorm_backward(c.a[0].f, c.R.f, dx.f, 0, rows, C, 1e-6f, affine ? c.a[1].f : NULL,
                              affine ? dw.f : NULL, affine ? db.f : NULL))
        exit(99);
    char nm[64];
    snprintf(nm, sizeof nm, "layernorm%s %zux%zu dx", affine ? " affine" : "", rows, C);
    fd_check(nm, &c, ln_loss, 0, dx.f, 1e-5);
    if (affine) {
        snprintf(nm, sizeof nm, "layernorm affine %zux%zu dw", rows, C);
        fd_check(nm, &c, ln_loss, 1, dw.f, 1e-5);
        snprintf(nm, sizeof nm, "layernorm affine %zux%zu db", rows, C);
        fd_check(nm, &c, ln_loss, 2, db.f, 1e-5);
    }
    rel(&dx), rel(&dw), rel(&db), rel(&c.R);
    for (int i = 0; i < 3; i++) rel(&c.a[i]);
}

/* ---- GELU (erf) and SiLU on a0 ---- */
static double gelu_loss(const ctx *c)
{
    double s = 0;
    for (size_t i = 0; i < c->a[0].n; i++) {
        double x = c->a[0].d[i];
        s += (c->d[0] ? x / (1 + exp(-x)) : 0.5 * x * (1 + erf(x / sqrt(2.0)))) * c->R.d[i];
    }
    return s;
}

static void test_act(size_t n, int silu)
{
    ctx c = {.a = {mk(n, 4, 0)}, .R = mk(n, 1, 0), .d = {(size_t)silu}};
    arr dx = zeros(n);
    if (silu) cs_silu_backward(c.a[0].f, c.R.f, dx.f, n);
    else cs_gelu_backward(c.a[0].f, c.R.f, dx.f, n);
    char nm[64];
    snprintf(nm, sizeof nm, "%s %zu dx", silu ? "silu" : "gelu", n);
    fd_check(nm, &c, gelu_loss, 0, dx.f, 1e-5);
    /* in place */
    memcpy(dx.f, c.R.f, n * sizeof(float));
    if (silu) cs_silu_backward(c.a[0].f, dx.f, dx.f, n);
    else cs_gelu_backward(c.a[0].f, dx.f, dx.f, n);
    snprintf(nm, sizeof nm, "%s %zu dx in place", silu ? "silu" : "gelu", n);
    fd_check(nm, &c, gelu_loss, 0, dx.f, 1e-5);
    rel(&dx), rel(&c.R), rel(&c.a[0]);
}

/* ---- GRN: a0 x[N,HW,C], a1 gamma, a2 beta ---- */
static double grn_loss(const ctx *c)
{
    size_t N = c->d[0], HW = c->d[1], C = c->d[2];
    double s = 0, *G = calloc(C, sizeof(double));
    for (size_t n = 0; n < N; n++) {
        const double *x = c->a[0].d + n * HW * C;
        double m = 0;
        for (size_t k = 0; k < C; k++) {
            double ss = 0;
            for (size_t r = 0; r < HW; r++) ss += x[r * C + k] * x[r * C + k];
            G[k] = sqrt(ss), m += G[k];
        }
        m = m / (double)C + 1e-6;
        for (size_t r = 0; r < HW; r++)
            for (size_t k = 0; k < C; k++) {
                double v = x[r * C + k];
                s += (c->a[1].d[k] * (v * G[k] / m) + c->a[2].d[k] + v) * c->R.d[(n * HW + r) * C + k];
            }
    }
    free(G);
    return s;
}

static void test_grn(size_t N, size_t HW, size_t C)
{
    ctx c = {.a = {mk(N * HW * C, 1, 0), mk(C, 1, 0), mk(C, 1, 0)}, .R = mk(N * HW * C, 1, 0), .d = {N, HW, C}};
    arr dx = zeros(N * HW * C), dg = zeros(C), db = zeros(C);
    if (cs_grn_backward(c.a[0].f, c.R.f, dx.f, N, HW, C, c.a[1].f, dg.f, db.f)) exit(99);
    char nm[64];
    snprintf(nm, sizeof nm, "grn %zux%zux%zu dx", N, HW, C);
    fd_check(nm, &c, grn_loss, 0, dx.f, 1e-5);
    snprintf(nm, sizeof nm, "grn %zux%zux%zu dgamma", N, HW, C);
    fd_check(nm, &c, grn_loss, 1, dg.f, 1e-5);
    snprintf(nm, sizeof nm, "grn %zux%zux%zu dbeta", N, HW, C);
    fd_check(nm, &c, grn_loss, 2, db.f, 1e-5);
    rel(&dx), rel(&dg), rel(&db), rel(&c.R);
    for (int i = 0; i < 3; i++) rel(&c.a[i]);
}

/* ---- modulation: a0 x[N,HW,C], a1 ab[N,2C] (a | b, the TimestepBlock layout) ---- */
static double mod_loss(const ctx *c)
{
    size_t N = c->d[0], HW = c->d[1], C = c->d[2];
    double s = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t r = 0; r < HW; r++)
            for (size_t k = 0; k < C; k++) {
                size_t i = (n * HW + r) * C + k;
                s += (c->a[0].d[i] * (1 + c->a[1].d[n * 2 * C + k]) + c->a[1].d[n * 2 * C + C + k]) * c->R.d[i];
            }
    return s;
}

static void test_modulate(size_t N, size_t HW, size_t C)
{
    ctx c = {.a = {mk(N * HW * C, 1, 0), mk(N * 2 * C, 0.5, 0)}, .R = mk(N * HW * C, 1, 0), .d = {N, HW, C}};
    arr dx = zeros(N * HW * C), dab = zeros(N * 2 * C);
    cs_modulate_backward(c.a[0].f, c.R.f, dx.f, N, HW, C, c.a[1].f, 2 * C, dab.f, dab.f + C);
    char nm[64];
    snprintf(nm, sizeof nm, "modulate %zux%zux%zu dx", N, HW, C);
    fd_check(nm, &c, mod_loss, 0, dx.f, 1e-5);
    snprintf(nm, sizeof nm, "modulate %zux%zux%zu d(a|b)", N, HW, C);
    fd_check(nm, &c, mod_loss, 1, dab.f, 1e-5);
    rel(&dx), rel(&dab), rel(&c.R), rel(&c.a[0]), rel(&c.a[1]);
}

/* ---- depthwise conv: a0 x[N,H,W,C], a1 w[C,k,k], a2 b[C] ---- */
static double dw_loss(const ctx *c)
{
    size_t N = c->d[0], H = c->d[1], W = c->d[2], C = c->d[3];
    long k = (long)c->d[4], p = k / 2;
    double s = 0;
    for (size_t n = 0; n < N; n++)
        for (long h = 0; h < (long)H; h++)
            for (long w = 0; w < (long)W; w++)
                for (size_t ch = 0; ch < C; ch++) {
                    double y = c->a[2].d[ch];
                    for (long i = 0; i < k; i++)
                        for (long j = 0; j < k; j++) {
                            long ih = h + i - p, iw = w + j - p;
                            if (ih < 0 || iw < 0 || ih >= (long)H || iw >= (long)W) continue;
                            y += c->a[1].d[ch * (size_t)(k * k) + (size_t)(i * k + j)] *
                                 c->a[0].d[((n * H + (size_t)ih) * W + (size_t)iw) * C + ch];
                        }
                    s += y * c->R.d[((n * H + (size_t)h) * W + (size_t)w) * C + ch];
                }
    return s;
}

static void test_dwconv(size_t N, size_t H, size_t W, size_t C, int k)
{
    size_t kk = (size_t)(k * k);
    ctx c = {.a = {mk(N * H * W * C, 1, 0), mk(C * kk, 0.5, 0), mk(C, 0.5, 0)}, .R = mk(N * H * W * C, 1, 0),
             .d = {N, H, W, C, (size_t)k}};
    arr dx = zeros(N * H * W * C), dw = zeros(C * kk), db = zeros(C);
    if (cs_dwconv_backward(c.a[0].f, c.R.f, dx.f, 0, N, H, W, C, k, c.a[1].f, dw.f, db.f)) exit(99);
    char nm[64];
    snprintf(nm, sizeof nm, "dwconv%d %zux%zux%zux%zu dx", k, N, H, W, C);
    fd_check(nm, &c, dw_loss, 0, dx.f, 1e-5);
    snprintf(nm, sizeof nm, "dwconv%d %zux%zux%zux%zu dw", k, N, H, W, C);
    fd_check(nm, &c, dw_loss, 1, dw.f, 1e-5);
    snprintf(nm, sizeof nm, "dwconv%d %zux%zux%zux%zu db", k, N, H, W, C);
    fd_check(nm, &c, dw_loss, 2, db.f, 1e-5);
    rel(&dx), rel(&dw), rel(&db), rel(&c.R);
    for (int i = 0; i < 3; i++) rel(&c.a[i]);
}

/* ---- attention: a0 q[N,Lq,ldq], a1 k[N,Lk,ldk], a2 v[N,Lk,ldv] (d: N, Lq, Lk, C, nhead, ldq, ldk, ldv);
 * packed self-attention: a0 only, q|k|v rows of 3C with Lq = Lk ---- */
static double attn_loss(const ctx *c)
{
    size_t N = c->d[0], Lq = c->d[1], Lk = c->d[2], C = c->d[3], nh = c->d[4], hd = C / nh;
    int packed = c->d[5] == 0;
    size_t ldq = packed ? 3 * C : C, ldk = ldq;
    const double *Q = c->a[0].d, *K = packed ? c->a[0].d + C : c->a[1].d, *V = packed ? c->a[0].d + 2 * C : c->a[2].d;
    double s = 0, *p = calloc(Lk, sizeof(double));
    for (size_t n = 0; n < N; n++)
        for (size_t h = 0; h < nh; h++)
            for (size_t i = 0; i < Lq; i++) {
                double mx = -INFINITY, z = 0;
                for (size_t j = 0; j < Lk; j++) {
                    double d = 0;
                    for (size_t e = 0; e < hd; e++)
                        d += Q[(n * Lq + i) * ldq + h * hd + e] * K[(n * Lk + j) * ldk + h * hd + e];
                    p[j] = d / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (size_t j = 0; j < Lk; j++) z += (p[j] = exp(p[j] - mx));
                for (size_t e = 0; e < hd; e++) {
                    double o = 0;
                    for (size_t j = 0; j < Lk; j++) o += p[j] / z * V[(n * Lk + j) * ldk + h * hd + e];
                    s += o * c->R.d[(n * Lq + i) * C + h * hd + e];
                }
            }
    free(p);
    return s;
}

static void test_attention(size_t N, size_t Lq, size_t Lk, size_t C, int nh, int packed)
{
    char nm[80];
    if (packed) {   /* q, k, v are strided views of one [N, L, 3C] buffer, as the AttnBlock's qkv */
        ctx c = {.a = {mk(N * Lq * 3 * C, 1, 0)}, .R = mk(N * Lq * C, 1, 0), .d = {N, Lq, Lq, C, (size_t)nh, 0}};
        arr d = zeros(N * Lq * 3 * C);
        const float *q = c.a[0].f;
        if (cs_attention_backward(q, 3 * C, q + C, 3 * C, q + 2 * C, 3 * C, c.R.f, C, N, Lq, Lq, C, nh, d.f, d.f + C,
                                  d.f + 2 * C, 0))
            exit(99);
        snprintf(nm, sizeof nm, "attention packed %zux%zux%zu h%d dqkv", N, Lq, C, nh);
        fd_check(nm, &c, attn_loss, 0, d.f, 1e-5);
        rel(&d), rel(&c.R), rel(&c.a[0]);
        return;
    }
    ctx c = {.a = {mk(N * Lq * C, 1, 0), mk(N * Lk * C, 1, 0), mk(N * Lk * C, 1, 0)}, .R = mk(N * Lq * C, 1, 0),
             .d = {N, Lq, Lk, C, (size_t)nh, 1}};
    arr dq = mk(N * Lq * C, 1, 0), dk = mk(N * Lk * C, 1, 0), dv = mk(N * Lk * C, 1, 0);
    /* acc = 1: start from known values and subtract them */
    float *b0 = malloc((N * Lq * C + 2 * N * Lk * C) * sizeof(float));
    memcpy(b0, dq.f, N * Lq * C * 4), memcpy(b0 + N * Lq * C, dk.f, N * Lk * C * 4);
    memcpy(b0 + N * Lq * C + N * Lk * C, dv.f, N * Lk * C * 4);
    if (cs_attention_backward(c.a[0].f, C, c.a[1].f, C, c.a[2].f, C, c.R.f, C, N, Lq, Lk, C, nh, dq.f, dk.f, dv.f, 1))
        exit(99);
    for (size_t i = 0; i < N * Lq * C; i++) dq.f[i] -= b0[i];
    for (size_t i = 0; i < N * Lk * C; i++) dk.f[i] -= b0[N * Lq * C + i], dv.f[i] -= b0[N * Lq * C + N * Lk * C + i];
    const char *nmv[3] = {"dq", "dk", "dv"};
    float *g[3] = {dq.f, dk.f, dv.f};
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "attention %zux%zux%zux%zu h%d %s acc", N, Lq, Lk, C, nh, nmv[i]);
        fd_check(nm, &c, attn_loss, i, g[i], 1e-5);
    }
    free(b0);
    rel(&dq), rel(&dk), rel(&dv), rel(&c.R);
    for (int i = 0; i < 3; i++) rel(&c.a[i]);
}

/* ---- r-embedding: a0 r[N] -> [N, c_r] ---- */
static double remb_loss(const ctx *c)
{
    size_t N = c->d[0], cr = c->d[1], half = cr / 2;
    double e = log(10000.0) / (double)(half - 1), s = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < half; k++) {
            double ph = c->a[0].d[n] * 10000.0 * exp(-e * (double)k);
            s += sin(ph) * c->R.d[n * cr + k] + cos(ph) * c->R.d[n * cr + half + k];
        }
    return s;
}

static void test_remb(size_t N, int cr)
{
    ctx c = {.a = {mk(N, 0.5, 0.5)}, .R = mk(N * (size_t)cr, 1, 0), .d = {N, (size_t)cr}};
    arr dr = zeros(N);
    if (cs_r_embedding_backward(c.a[0].f, N, cr, c.R.f, dr.f)) exit(99);
    char nm[64];
    snprintf(nm, sizeof nm, "r-embedding %zux%d dr", N, cr);
    fd_check(nm, &c, remb_loss, 0, dr.f, 1e-10);   /* phases up to 1e4 r: a small step */
    rel(&dr), rel(&c.R), rel(&c.a[0]);
}

int main(void)
{
    cs_threads_set(0);
    static const size_t rows[] = {1, 3, 17};
    for (int i = 0; i < 3; i++) {
        test_linear(rows[i], 1, 3);
        test_linear(rows[i], 17, 7);
        test_layernorm(rows[i], 17, 0);
        test_layernorm(rows[i], 5, 1);
        test_grn(2, rows[i], 3);
        test_modulate(2, rows[i], 5);
    }
    test_layernorm(3, 1, 0);
    test_grn(1, 5, 17);
    test_act(37, 0);
    test_act(37, 1);
    test_dwconv(2, 1, 1, 3, 3);
    test_dwconv(1, 3, 5, 3, 3);
    test_dwconv(2, 5, 3, 17, 3);
    test_dwconv(1, 4, 5, 2, 5);
    test_attention(2, 3, 17, 6, 2, 0);
    test_attention(1, 1, 5, 6, 3, 0);
    test_attention(2, 5, 5, 4, 2, 1);
    test_remb(3, 7);
    test_remb(2, 64);
    printf("worst passing err %.2e (tolerance %.0e)\n", worst, TOL);
    if (failures) fprintf(stderr, "%d gradient checks failed\n", failures);
    return failures ? 1 : 0;
}
