/* Throughput of the kernel table at every SIMD level on model-like shapes,
 * through the threaded op layer where one exists, and of cs_linear (F32 and
 * BF16 weights) against cblas_sgemm on the same shapes.
 *
 *   make bench/kernels && nice bench/kernels [--threads N] [--time S] [--only NAME|gemm|bf16|attn]
 *
 * Each case runs until --time seconds (default 0.5) have passed and reports
 * its best run: the machine may be shared, the minimum is the least
 * disturbed. Output is Markdown tables (bench/RESULTS-kernels.md). */
#include "args.h"
#include "backend.h"
#include "cpu.h"
#include "error.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "ops.h"
#include "tensor.h"
#include "wpack.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double min_time = 0.5;
static const char *only;   /* --only SUBSTRING: cases whose name contains it ('gemm' for the GEMM table) */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef void (*bench_fn)(void *ctx);

/* best seconds per call */
static double best(bench_fn f, void *ctx)
{
    f(ctx);   /* warm up: page faults, scratch allocation */
    double t_end = now() + min_time, b = 1e30;
    int runs = 0;
    while (runs < 3 || now() < t_end) {
        double t0 = now();
        f(ctx);
        double t = now() - t0;
        if (t < b) b = t;
        if (++runs >= 1000) break;
    }
    return b;
}

static float *randf(size_t n, float lo, float hi)
{
    float *p = cs_alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu floats)\n", n);
        exit(1);
    }
    uint64_t s = 0x243f6a8885a308d3ull ^ n;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = lo + (hi - lo) * (float)(s >> 40) * 0x1p-24f;
    }
    return p;
}

/* ---- the kernel cases ---- */

typedef struct {
    float *x, *y, *a, *b, *g;
    uint16_t *h;
    size_t rows, C, n, H, W;
    cs_tensor wt, bt;
} kctx;

static void run_layernorm(void *p) { kctx *c = p; cs_layernorm(c->x, c->y, c->rows, c->C, 1e-6f, c->a, c->b); }
static void run_gelu(void *p) { kctx *c = p; cs_gelu(c->x, c->y, c->n); }
static void run_quick_gelu(void *p) { kctx *c = p; cs_quick_gelu(c->x, c->y, c->n); }
static void run_silu(void *p) { kctx *c = p; cs_silu(c->x, c->y, c->n); }
static void run_sigmoid(void *p) { kctx *c = p; cs_sigmoid(c->x, c->y, c->n); }
static void run_add(void *p) { kctx *c = p; cs_add(c->x, c->a, c->y, c->n); }
static void run_modulate(void *p) { kctx *c = p; cs_modulate(c->x, c->y, 1, c->rows, c->C, c->a, c->b, c->C); }
static void run_grn(void *p) { kctx *c = p; cs_grn(c->x, c->y, 1, c->rows, c->C, c->a, c->b); }
static void run_dwconv(void *p) { kctx *c = p; cs_dwconv3x3(c->x, c->y, 1, c->H, c->W, c->C, &c->wt, &c->bt, 0); }
static void run_bf16(void *p) { kctx *c = p; cs_weight_f32(&c->wt, 0); }

/* softmax has no op of its own (it runs inside cs_attention, on scores just
 * written by the GEMM): rows split over threads as there, each copied from x */
static void run_softmax(void *p)
{
    kctx *c = p;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < c->rows; r++) {
        memcpy(c->y + r * c->C, c->x + r * c->C, c->C * sizeof(float));
        cs_k.softmax(c->y + r * c->C, c->C);
    }
}

/* f32 -> bf16 of activations (not used by the models today; for completeness) */
static void run_f32_bf16(void *p)
{
    kctx *c = p;
    const size_t chunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < c->n; o += chunk) cs_k.f32_to_bf16(c->x + o, c->h + o, c->n - o < chunk ? c->n - o : chunk);
}

typedef struct {
    const char *name, *shape;
    bench_fn f;
    double bytes, flops;   /* per call: bytes moved (read once + written once), useful flops */
} kcase;

static void kernel_table(int nlev, const cs_simd_level *lev)
{
    size_t big = 4096 * 1536;   /* the largest case (dwconv 128x128x320 is 5.2M, gelu 4M) */
    kctx c = {0};
    c.x = randf(big, -3, 3);
    c.y = randf(big, 0, 1);
    c.a = randf(big, -1, 1);
    c.b = randf(6144, -1, 1);
    c.g = randf(1536 * 6144, -0.05f, 0.05f);
    c.h = cs_alloc((size_t)1536 * 6144 * 2);
    float *wdw = randf(1536 * 9, -0.3f, 0.3f), *x0 = c.x;
    for (size_t i = 0; i < (size_t)1536 * 6144; i++) c.h[i] = cs_f32_to_bf16(c.g[i]);

    printf("| kernel | shape |");
    for (int l = 0; l < nlev; l++) printf(" %s |", cs_simd_name(lev[l]));
    printf(" unit |\n|---|---|");
    for (int l = 0; l < nlev; l++) printf("---:|");
    printf("---|\n");

    const double F = 4.0;
    kcase cases[] = {
        {"layernorm (affine)", "4096x1536", run_layernorm, 2 * F * 4096 * 1536, 0},
        {"gelu (erf)", "4M", run_gelu, 2 * F * 4194304, 0},
        {"quick_gelu", "4M", run_quick_gelu, 2 * F * 4194304, 0},
        {"silu", "4M", run_silu, 2 * F * 4194304, 0},
        {"sigmoid", "4M", run_sigmoid, 2 * F * 4194304, 0},
        {"add", "4M", run_add, 3 * F * 4194304, 0},
        {"softmax", "4096 rows x 661", run_softmax, 2 * F * 4096 * 661, 0},
        {"modulate", "4096x1536", run_modulate, 2 * F * 4096 * 1536, 0},
        {"GRN (sumsq + apply)", "576x6144", run_grn, 3 * F * 576 * 6144, 0},
        {"dwconv3x3", "24x24x1536", run_dwconv, 0, 2.0 * 9 * 24 * 24 * 1536},
        {"dwconv3x3", "128x128x320", run_dwconv, 0, 2.0 * 9 * 128 * 128 * 320},
        {"bf16 -> f32 (cs_weight_f32)", "1536x6144", run_bf16, (2 + F) * 1536 * 6144, 0},
        {"f32 -> bf16", "1536x6144", run_f32_bf16, (2 + F) * 1536 * 6144, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kcase *k = &cases[i];
        if (only && !strstr(k->name, only)) continue;
        c.rows = 4096, c.C = 1536, c.n = 4194304;
        if (k->f == run_softmax) c.rows = 4096, c.C = 661;
        if (k->f == run_grn) c.rows = 576, c.C = 6144;
        if (k->f == run_f32_bf16) c.n = (size_t)1536 * 6144, c.x = c.g;
        if (k->f == run_dwconv) {
            int small = !strcmp(k->shape, "24x24x1536");
            c.H = c.W = small ? 24 : 128;
            c.C = small ? 1536 : 320;
            c.wt = (cs_tensor){CS_F32, 4, {(int64_t)c.C, 1, 3, 3}, wdw, "dw.weight"};
            c.bt = (cs_tensor){CS_F32, 1, {(int64_t)c.C}, c.b, "dw.bias"};
        }
        if (k->f == run_bf16) c.wt = (cs_tensor){CS_BF16, 2, {6144, 1536}, c.h, "w"};
        printf("| %s | %s |", k->name, k->shape);
        for (int l = 0; l < nlev; l++) {
            cs_simd_set(lev[l]);
            double t = best(k->f, &c);
            printf(" %.1f |", k->flops ? k->flops / t * 1e-9 : k->bytes / t * 1e-9);
            fflush(stdout);
        }
        printf(" %s |\n", cases[i].flops ? "GFLOP/s" : "GB/s");
        c.x = x0;
    }
    cs_free(x0), cs_free(c.y), cs_free(c.a), cs_free(c.b), cs_free(c.g), cs_free(c.h), cs_free(wdw);
}

/* ---- GEMM: cs_linear vs cblas_sgemm ---- */

typedef struct {
    size_t M, K, N;
    float *x, *w, *bias, *y;
    uint16_t *wh;
    cs_tensor W, Wh, B;
    int mode;   /* 0 sgemm, 1 linear f32, 2 linear f32 + bias, 3 linear bf16 + bias */
} gctx;

static void run_gemm(void *p)
{
    gctx *g = p;
    switch (g->mode) {
    case 0:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->M, (int)g->N, (int)g->K, 1.0f, g->x, (int)g->K,
                    g->w, (int)g->K, 0.0f, g->y, (int)g->N);
        break;
    case 1: cs_linear(g->x, g->M, g->K, 0, &g->W, NULL, g->y, 0, 0); break;
    case 2: cs_linear(g->x, g->M, g->K, 0, &g->W, &g->B, g->y, 0, 0); break;
    case 3: cs_linear(g->x, g->M, g->K, 0, &g->Wh, &g->B, g->y, 0, 0); break;
    }
}

static void gemm_table(void)
{
    static const size_t shapes[][3] = {{1152, 1536, 6144}, {1152, 6144, 1536}, {8192, 320, 1280}, {2048, 2048, 2048}};
    printf("| M x K x N | cblas_sgemm (OpenBLAS threads) GFLOP/s | cs_linear F32 | +bias | BF16 W +bias | overhead F32 | +bias | BF16 +bias |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        gctx g = {.M = shapes[s][0], .K = shapes[s][1], .N = shapes[s][2]};
        g.x = randf(g.M * g.K, -1, 1);
        g.w = randf(g.N * g.K, -0.05f, 0.05f);
        g.bias = randf(g.N, -1, 1);
        g.y = randf(g.M * g.N, 0, 1);
        g.wh = cs_alloc(g.N * g.K * 2);
        for (size_t i = 0; i < g.N * g.K; i++) g.wh[i] = cs_f32_to_bf16(g.w[i]);
        g.W = (cs_tensor){CS_F32, 2, {(int64_t)g.N, (int64_t)g.K}, g.w, "w"};
        g.Wh = (cs_tensor){CS_BF16, 2, {(int64_t)g.N, (int64_t)g.K}, g.wh, "w"};
        g.B = (cs_tensor){CS_F32, 1, {(int64_t)g.N}, g.bias, "b"};
        double fl = 2.0 * (double)g.M * (double)g.K * (double)g.N, t[4];
        /* the baseline is OpenBLAS threading itself; the op layer runs it
         * single-threaded inside its own split (src/ops.c cs_sgemm) */
        openblas_set_num_threads(cs_threads_get());
        t[0] = best(run_gemm, &g);
        cs_threads_set(cs_threads_get());
        for (g.mode = 1; g.mode < 4; g.mode++) t[g.mode] = best(run_gemm, &g);
        printf("| %zu x %zu x %zu | %.1f | %.1f | %.1f | %.1f | %+.1f%% | %+.1f%% | %+.1f%% |\n", g.M, g.K, g.N,
               fl / t[0] * 1e-9, fl / t[1] * 1e-9, fl / t[2] * 1e-9, fl / t[3] * 1e-9, 100 * (t[1] / t[0] - 1),
               100 * (t[2] / t[0] - 1), 100 * (t[3] / t[0] - 1));
        fflush(stdout);
        cs_free(g.x), cs_free(g.w), cs_free(g.bias), cs_free(g.y), cs_free(g.wh);
    }
}

/* ---- bf16 products (AVX512-BF16 or AMX): cs_linear at fp32 vs bf16 precision ---- */

static void bf16_table(void)
{
    static const size_t shapes[][3] = {{1152, 1536, 1536}, {1152, 6144, 1536}, {1152, 1536, 6144}, {32768, 1280, 1280}};
    if (cs_cpu_precision_set(CS_PREC_BF16)) {
        printf("bf16: %s\n", cs_last_error());
        return;
    }
    cs_cpu_precision_set(CS_PREC_FP32);
    printf("bf16 kernel: %s (CASCADE_AMX=0: AVX512-BF16)\n\n", cs_gemm_bf16_name());
    printf("| M x K x N | fp32, F32 W GFLOP/s | fp32, BF16 W | bf16, F32 W | bf16, BF16 W | bf16/fp32 (BF16 W) | first bf16 call (packs) ms |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        gctx g = {.M = shapes[s][0], .K = shapes[s][1], .N = shapes[s][2]};
        g.x = randf(g.M * g.K, -1, 1);
        g.w = randf(g.N * g.K, -0.05f, 0.05f);
        g.y = randf(g.M * g.N, 0, 1);
        g.wh = cs_alloc(g.N * g.K * 2);
        for (size_t i = 0; i < g.N * g.K; i++) g.wh[i] = cs_f32_to_bf16(g.w[i]);
        g.W = (cs_tensor){CS_F32, 2, {(int64_t)g.N, (int64_t)g.K}, g.w, "w"};
        g.Wh = (cs_tensor){CS_BF16, 2, {(int64_t)g.N, (int64_t)g.K}, g.wh, "w"};
        double fl = 2.0 * (double)g.M * (double)g.K * (double)g.N, t[4];
        g.mode = 1, t[0] = best(run_gemm, &g);
        g.W.data = g.wh, g.W.dtype = CS_BF16, t[1] = best(run_gemm, &g);
        cs_cpu_precision_set(CS_PREC_BF16);
        double t0 = now();
        run_gemm(&g);   /* BF16 W: packs it */
        double first = now() - t0;
        t[3] = best(run_gemm, &g);
        g.W.data = g.w, g.W.dtype = CS_F32, t[2] = best(run_gemm, &g);
        cs_cpu_precision_set(CS_PREC_FP32);
        cs_wpack_clear();
        printf("| %zu x %zu x %zu | %.1f | %.1f | %.1f | %.1f | %.2fx | %.0f |\n", g.M, g.K, g.N, fl / t[0] * 1e-9,
               fl / t[1] * 1e-9, fl / t[2] * 1e-9, fl / t[3] * 1e-9, t[1] / t[3], first * 1e3);
        fflush(stdout);
        cs_free(g.x), cs_free(g.w), cs_free(g.y), cs_free(g.wh);
    }
}

/* ---- attention (cs_attention) on the model's shapes, fp32 and bf16 ---- */

typedef struct {
    size_t N, Lq, Lk, C;
    int H;
    float *q, *k, *v, *o;
} actx;

static void run_attn(void *p)
{
    actx *a = p;
    if (cs_attention(a->q, a->C, a->k, a->C, a->v, a->C, a->N, a->Lq, a->Lk, a->C, a->H, NULL, a->o, a->C)) {
        fprintf(stderr, "bench: %s\n", cs_last_error());
        exit(1);
    }
}

static void attn_table(void)
{
    static const struct { const char *what; size_t N, Lq, Lk, C; int H; } shapes[] = {
        {"Stage B lite 1024^2, level 2", 2, 1024, 1028, 1152, 18},
        {"Stage C lite 1024^2, level 0", 2, 576, 661, 1536, 24},
        {"Stage C lite 1024^2, level 1", 2, 144, 229, 1536, 24},
    };
    int bf = !cs_cpu_precision_set(CS_PREC_BF16);
    cs_cpu_precision_set(CS_PREC_FP32);
    printf("| attention | N x Lq x Lk x C / heads | fp32 GFLOP/s | bf16 GFLOP/s |\n|---|---|---:|---:|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        actx a = {shapes[s].N, shapes[s].Lq, shapes[s].Lk, shapes[s].C, shapes[s].H, NULL, NULL, NULL, NULL};
        a.q = randf(a.N * a.Lq * a.C, -1, 1), a.o = randf(a.N * a.Lq * a.C, 0, 1);
        a.k = randf(a.N * a.Lk * a.C, -1, 1), a.v = randf(a.N * a.Lk * a.C, -1, 1);
        double fl = 4.0 * (double)a.N * (double)a.Lq * (double)a.Lk * (double)a.C, t32 = best(run_attn, &a), t16 = 0;
        if (bf) {
            cs_cpu_precision_set(CS_PREC_BF16);
            t16 = best(run_attn, &a);
            cs_cpu_precision_set(CS_PREC_FP32);
        }
        printf("| %s | %zu x %zu x %zu x %zu / %d | %.1f | ", shapes[s].what, a.N, a.Lq, a.Lk, a.C, a.H, fl / t32 * 1e-9);
        if (bf) printf("%.1f |\n", fl / t16 * 1e-9);
        else printf("- |\n");
        fflush(stdout);
        cs_free(a.q), cs_free(a.k), cs_free(a.v), cs_free(a.o);
    }
}

int main(int argc, char **argv)
{
    int threads = 2;
    static const char use[] = "usage: bench/kernels [--threads N] [--time SECONDS] [--only SUBSTRING|gemm|bf16|attn]\n";
    for (int i = 1; i < argc; i++) {
        int e = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(use, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) e = bench_int("bench/kernels", argv[i], argv[i + 1], 1, 1024, &threads), i++;
        else if (!strcmp(argv[i], "--time") && i + 1 < argc) e = bench_real("bench/kernels", argv[i], argv[i + 1], 0.001, 3600, &min_time), i++;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fputs(use, stderr);
            return 2;
        }
        if (e) return 2;
    }
    if (cs_simd_init()) {
        fprintf(stderr, "bench: %s\n", cs_last_error());
        return 1;
    }
    cs_threads_set(threads);
    cs_simd_level lev[CS_SIMD_LEVELS];
    int nlev = 0;
    for (int l = 0; l < CS_SIMD_LEVELS; l++)
        if (cs_simd_supported((cs_simd_level)l)) lev[nlev++] = (cs_simd_level)l;
    printf("cpu: %s; %d threads; OpenBLAS core %s\n\n", cs_cpu_model(), threads, openblas_get_corename());
    if (!only || (strcmp(only, "gemm") && strcmp(only, "bf16") && strcmp(only, "attn"))) kernel_table(nlev, lev);
    printf("\n");
    cs_simd_init();
    if (!only || !strcmp(only, "gemm")) gemm_table();
    printf("\n");
    if (!only || !strcmp(only, "bf16")) bf16_table();
    printf("\n");
    if (!only || !strcmp(only, "attn")) attn_table();
    return 0;
}
