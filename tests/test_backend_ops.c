/* Cross-backend op test (like ggml's test-backend-ops): every op of a
 * device's op set (src/backend.h cs_dev_ops), reached through the op layer
 * (src/ops.h, src/device.h) as a network body reaches it, runs once on the
 * CPU and once in device mode on the same random inputs at odd sizes; the
 * results are compared by relative L2 error.
 *
 * Backend: $CASCADE_BACKEND (a name such as cuda, or a plugin path); unset,
 * the fake plugin of tests/fake_backend.c (argv[1]: its folder, default
 * tests/.libs). Precision of the device's products: $CASCADE_PRECISION =
 * fp32 (default) | bf16 | fp16, tolerance 1e-5 | 2e-2 | 5e-3 on products
 * (linear, sgemm, convolutions, attention); every other op, and the
 * backward ops of grad.h (float32 on the device always), at 1e-5. The
 * fake plugin runs the CPU code itself, so there every result must be
 * identical, and its op counter must show that the expected device op ran.
 * Exit: 0 all ok, 1 a failure, 2 bad $CASCADE_PRECISION, 77 no usable
 * device (the reason is printed). See tests/README-backend-ops.md. */
#include "backend.h"
#include "blocks.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "grad.h"
#include "kernels.h"
#include "ops.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cs_dev_ops *D;
static double tol_prod, tol_other = 1e-5;
static unsigned long *fake_calls;   /* the fake plugin's counters; NULL for another backend */
static const char **fake_last;
static int fails, runs;

/* ---- inputs ---- */

static uint64_t rs = 0x9E3779B97F4A7C15ull;

static float urand(void)   /* uniform in [-1, 1) */
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)(rs >> 40) / (float)(1u << 23) - 1.0f;
}

static float *rnd(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "test_backend_ops: out of memory\n");
        exit(99);
    }
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static float *dup(const float *x, size_t n)
{
    float *p = rnd(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* A weight [s0, s1, s2, s3] (trailing zeros dropped) of dtype dt. */
static cs_tensor weight(cs_dtype dt, const char *name, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    cs_tensor t = {.dtype = dt, .ndim = 1, .shape = {s0}, .name = name};
    if (s1) t.shape[t.ndim++] = s1;
    if (s2) t.shape[t.ndim++] = s2;
    if (s3) t.shape[t.ndim++] = s3;
    size_t n = (size_t)cs_tensor_numel(&t);
    if (dt == CS_F32) {
        t.data = rnd(n);
        return t;
    }
    uint16_t *h = (uint16_t *)rnd(n / 2 + 1);
    for (size_t i = 0; i < n; i++) {
        float v = urand();
        uint32_t b;
        memcpy(&b, &v, 4);
        if (dt == CS_BF16) h[i] = (uint16_t)(b >> 16);
        else   /* f16: sign, exponent 2^-5..2^0, random mantissa */
            h[i] = (uint16_t)((b & 0x80000000u) >> 16 | (uint32_t)(10 + (b >> 3) % 6) << 10 | (b & 0x3ff));
    }
    t.data = h;
    return t;
}

/* t *= 2^-e with 2^e about sqrt(fan_in): exact in every dtype */
static void pow2_scale(cs_tensor *t, size_t fan_in)
{
    int e = 0;
    while ((size_t)1 << (2 * (e + 1)) <= fan_in) e++;
    size_t n = (size_t)cs_tensor_numel(t);
    float f = ldexpf(1.0f, -e);
    if (t->dtype == CS_F32) {
        for (size_t i = 0; i < n; i++) ((float *)t->data)[i] *= f;
    } else if (t->dtype == CS_BF16) {
        uint16_t *h = (uint16_t *)t->data;
        for (size_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)h[i] << 16;
            float v;
            memcpy(&v, &b, 4);
            v *= f;
            memcpy(&b, &v, 4);
            h[i] = (uint16_t)(b >> 16);
        }
    }
}

/* the device may hold a copy of it: dropped before the host memory goes */
static void drop(cs_tensor *t)
{
    if (!t || !t->data) return;
    cs_param_forget(t->data, (size_t)cs_tensor_numel(t) * cs_dtype_size(t->dtype));
    free((void *)t->data);
    t->data = NULL;
}

static const char *dtn(cs_dtype t) { return t == CS_BF16 ? "bf16w" : t == CS_F16 ? "f16w" : "f32w"; }

/* ---- one run on the CPU (m = 0) or in device mode (m = 1) ---- */

static cs_dev_args A;
static int dev;
static unsigned long calls0;

static void begin(int m)
{
    dev = m;
    if (dev) {
        cs_dev_args_begin(&A, D);
        if (fake_calls) calls0 = *fake_calls;
    }
    cs_clear_error();
}

/* host array x as the current mode sees it: uploaded in device mode */
static const float *in(const float *x, size_t n) { return dev ? cs_dev_in(&A, x, n) : x; }
/* an output, downloaded into y at the end */
static float *out(float *y, size_t n) { return dev ? cs_dev_out(&A, y, n) : y; }
/* an output whose prior content counts (accumulation, gaps between strided rows) */
static float *inout(float *y, size_t n)
{
    if (!dev) return y;
    float *p = cs_dev_out(&A, y, n);
    if (p && !A.rc && cs_act_upload(p, y, n)) A.rc = cs_dev_error();
    return p;
}
static int argrc(void) { return dev ? A.rc : 0; }

static char opmiss[160];

/* ends the run; want: the fake's op expected to have run (NULL: no op) */
static int end(int rc, const char *want)
{
    if (!dev) return rc;
    rc = cs_dev_args_finish(&A, rc);
    if (fake_calls && !rc) {
        unsigned long n = *fake_calls - calls0;
        if (want && (!n || strcmp(*fake_last, want)))
            snprintf(opmiss, sizeof opmiss, "device op %s did not run (%lu op calls, last %s)", want, n, *fake_last);
        if (!want && n) snprintf(opmiss, sizeof opmiss, "%lu unexpected device op calls (last %s)", n, *fake_last);
    }
    return rc;
}

static void report_den(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n,
                       int rc0, int rc1, double den2);

/* compares CPU result ref with device result got (n floats) by rel_l2 */
static void report(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n, int rc0,
                   int rc1)
{
    report_den(op, shape, prod, ref, got, n, rc0, rc1, -1.0);
}

/* the same with the error's norm over sqrt(den2) instead of ref's (den2 < 0:
 * ref's) */
static void report_den(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n,
                       int rc0, int rc1, double den2)
{
    runs++;
    if (rc0 || rc1) {
        printf("FAIL %s %s: %s run failed: %s\n", op, shape, rc0 ? "CPU" : "device", cs_last_error());
        fails++;
        opmiss[0] = 0;
        return;
    }
    double d = 0, r = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(ref[i]) != isfinite(got[i]) || (!isfinite(ref[i]) && memcmp(&ref[i], &got[i], 4))) bad = 1;
        if (!isfinite(ref[i]) || !isfinite(got[i])) continue;
        d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    if (den2 >= 0) r = den2;
    double rel = r > 0 ? sqrt(d / r) : sqrt(d);
    double tol = prod ? tol_prod : tol_other;
    int ok = !bad && rel <= tol && !(fake_calls && d != 0) && !opmiss[0];
    printf("%s %s %s rel_l2=%.1e%s%s%s\n", ok ? "ok" : "FAIL", op, shape, rel, bad ? " (non-finite values differ)" : "",
           fake_calls && d != 0 ? " (the fake plugin must match the CPU exactly)" : "", opmiss);
    if (!ok) fails++;
    opmiss[0] = 0;
}

/* ---- the ops ---- */

static void t_linear(cs_dtype dt, size_t M, size_t K, size_t ldx, size_t N, size_t ldy, int bias, int acc)
{
    ldx = ldx ? ldx : K, ldy = ldy ? ldy : N;
    float *x = rnd(M * ldx), *y[2];
    y[0] = rnd(M * ldy), y[1] = dup(y[0], M * ldy);
    cs_tensor W = weight(dt, "W", (int64_t)N, (int64_t)K, 0, 0), b = weight(CS_F32, "b", (int64_t)N, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, M * ldx);
        float *py = inout(y[m], M * ldy);
        rc[m] = argrc() ? argrc() : cs_linear(px, M, K, ldx, &W, bias ? &b : NULL, py, ldy, acc);
        rc[m] = end(rc[m], "linear");
    }
    char s[160];
    snprintf(s, sizeof s, "%s M=%zu K=%zu N=%zu ldx=%zu ldy=%zu bias=%d acc=%d", dtn(dt), M, K, N, ldx, ldy, bias, acc);
    report("linear", s, 1, y[0], y[1], M * ldy, rc[0], rc[1]);
    drop(&W), drop(&b);
    free(x), free(y[0]), free(y[1]);
}

/* a ResBlock (dw 1) or FeedForwardBlock (dw 0) through src/blocks.c: the
 * device's fused op where it has one, else (and on the CPU) the single ops */
static void t_block(int dw, cs_dtype dt, size_t N, size_t H, size_t W, size_t c, size_t cs)
{
    size_t rows = N * H * W, c4 = 4 * c, cin = c + cs;
    float *sk = rnd(rows * (cs ? cs : 1)), *y[2];
    y[0] = rnd(rows * c), y[1] = dup(y[0], rows * c);
    cs_resblock b = {.c = (int)c, .c_skip = (int)cs, .has_dw = dw, .k = 3};
    b.dw_w = weight(CS_F32, "dw", (int64_t)c, 1, 3, 3), b.dw_b = weight(CS_F32, "dw.b", (int64_t)c, 0, 0, 0);
    b.fc1_w = weight(dt, "fc1", (int64_t)c4, (int64_t)cin, 0, 0), b.fc1_b = weight(CS_F32, "fc1.b", (int64_t)c4, 0, 0, 0);
    b.gamma = weight(CS_F32, "gamma", 1, 1, 1, (int64_t)c4), b.beta = weight(CS_F32, "beta", 1, 1, 1, (int64_t)c4);
    b.fc2_w = weight(dt, "fc2", (int64_t)c, (int64_t)c4, 0, 0), b.fc2_b = weight(CS_F32, "fc2.b", (int64_t)c, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *ps = cs ? in(sk, rows * cs) : NULL;
        float *py = inout(y[m], rows * c);
        rc[m] = argrc() ? argrc()
                : dw    ? cs_resblock_forward(&b, py, N, H, W, ps, &ws)
                        : cs_ffblock_forward(&b, py, N, H * W, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "mlp_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s %s N=%zu H=%zu W=%zu c=%zu skip=%zu", dw ? "ResBlock" : "FeedForward", dtn(dt), N, H, W,
             c, cs);
    report("mlp_block", s, 1, y[0], y[1], rows * c, rc[0], rc[1]);
    cs_tensor *all[] = {&b.dw_w, &b.dw_b, &b.fc1_w, &b.fc1_b, &b.gamma, &b.beta, &b.fc2_w, &b.fc2_b};
    for (int i = 0; i < 8; i++) drop(all[i]);
    free(sk), free(y[0]), free(y[1]);
}

static void t_sgemm(int tb, size_t M, size_t N, size_t K, float alpha, float beta, size_t pad)
{
    size_t lda = K + pad, ldb = (tb ? K : N) + pad, ldc = N + pad, nb = (tb ? N : K) * ldb;
    float *a = rnd(M * lda), *b = rnd(nb), *c[2];
    c[0] = rnd(M * ldc), c[1] = dup(c[0], M * ldc);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pa = in(a, M * lda), *pb = in(b, nb);
        float *pc = inout(c[m], M * ldc);
        rc[m] = argrc() ? argrc() : cs_sgemm(tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc);
        rc[m] = end(rc[m], "sgemm");
    }
    char s[160];
    snprintf(s, sizeof s, "transB=%d M=%zu N=%zu K=%zu alpha=%g beta=%g pad=%zu", tb, M, N, K, alpha, beta, pad);
    report("sgemm", s, 1, c[0], c[1], M * ldc, rc[0], rc[1]);
    free(a), free(b), free(c[0]), free(c[1]);
}

static void t_layernorm(size_t rows, size_t C, int affine)   /* affine: w and b (the kernels take both or none) */
{
    float *x = rnd(rows * C), *w = rnd(C), *b = rnd(C), *y[2] = {rnd(rows * C), rnd(rows * C)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, rows * C), *pw = affine ? in(w, C) : NULL, *pb = affine ? in(b, C) : NULL;
        float *py = out(y[m], rows * C);
        if (!argrc()) cs_layernorm(px, py, rows, C, 1e-6f, pw, pb);
        rc[m] = end(argrc(), "layernorm");
    }
    char s[96];
    snprintf(s, sizeof s, "rows=%zu C=%zu %s", rows, C, affine ? "w,b" : "no w/b");
    report("layernorm", s, 0, y[0], y[1], rows * C, rc[0], rc[1]);
    free(x), free(w), free(b), free(y[0]), free(y[1]);
}

static void t_unary(int kind, size_t n, int inplace)
{
    static const char *const nm[4] = {"gelu", "quick_gelu", "silu", "sigmoid"};
    static void (*const f[4])(const float *, float *, size_t) = {cs_gelu, cs_quick_gelu, cs_silu, cs_sigmoid};
    float *x = rnd(n), *y[2] = {rnd(n), rnd(n)};
    for (size_t i = 0; i < n; i++) x[i] *= 6.0f;
    if (inplace) memcpy(y[0], x, n * 4), memcpy(y[1], x, n * 4);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        float *py = inplace ? inout(y[m], n) : out(y[m], n);
        const float *px = inplace ? py : in(x, n);
        if (!argrc()) f[kind](px, py, n);
        rc[m] = end(argrc(), "unary");
    }
    char s[64];
    snprintf(s, sizeof s, "n=%zu%s", n, inplace ? " in place" : "");
    report(nm[kind], s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(x), free(y[0]), free(y[1]);
}

/* kind 0 add, 1 scale, 2 axpy */
static void t_elem(int kind, size_t n)
{
    static const char *const nm[3] = {"add", "scale", "axpy"};
    static const char *const op[3] = {"add", "scale", "axpy"};
    float *a = rnd(n), *b = rnd(n), *y[2];
    y[0] = rnd(n), y[1] = dup(y[0], n);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pa = in(a, n), *pb = in(b, n);
        float *py = inout(y[m], n);
        if (!argrc()) {
            if (kind == 0) cs_add(pa, pb, py, n);
            if (kind == 1) cs_scale(pa, -0.7f, py, n);
            if (kind == 2) cs_axpy(py, pa, 0.3f, n);
        }
        rc[m] = end(argrc(), op[kind]);
    }
    char s[32];
    snprintf(s, sizeof s, "n=%zu", n);
    report(nm[kind], s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(a), free(b), free(y[0]), free(y[1]);
}

static void t_grn(size_t N, size_t HW, size_t C)
{
    size_t n = N * HW * C;
    float *x = rnd(n), *g = rnd(C), *b = rnd(C), *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pg = cs_param(g, C), *pb = cs_param(b, C);   /* as a block's parameters */
        float *py = out(y[m], n);
        rc[m] = argrc() ? argrc() : !pg || !pb ? CS_ENOMEM : cs_grn(px, py, N, HW, C, pg, pb);
        rc[m] = end(rc[m], "grn");
    }
    cs_param_forget(g, C * 4), cs_param_forget(b, C * 4);
    char s[64];
    snprintf(s, sizeof s, "N=%zu HW=%zu C=%zu", N, HW, C);
    report("grn", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(x), free(g), free(b), free(y[0]), free(y[1]);
}

static void t_modulate(size_t N, size_t HW, size_t C, size_t ldab, size_t boff)
{
    size_t n = N * HW * C, nab = (N - 1) * ldab + boff + C;
    float *x = rnd(n), *ab = rnd(nab), *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pab = in(ab, nab);
        float *py = out(y[m], n);
        if (!argrc()) cs_modulate(px, py, N, HW, C, pab, pab + boff, ldab);
        rc[m] = end(argrc(), "modulate");
    }
    char s[96];
    snprintf(s, sizeof s, "N=%zu HW=%zu C=%zu ldab=%zu b_at=%zu", N, HW, C, ldab, boff);
    report("modulate", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(x), free(ab), free(y[0]), free(y[1]);
}

static void t_channel_affine(size_t rows, size_t C)
{
    float *x = rnd(rows * C), *sc = rnd(C), *t = rnd(C), *y[2] = {rnd(rows * C), rnd(rows * C)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, rows * C), *ps = in(sc, C), *pt = in(t, C);
        float *py = out(y[m], rows * C);
        if (!argrc()) cs_channel_affine(px, py, rows, C, ps, pt);
        rc[m] = end(argrc(), "channel_affine");
    }
    char s[64];
    snprintf(s, sizeof s, "rows=%zu C=%zu", rows, C);
    report("channel_affine", s, 0, y[0], y[1], rows * C, rc[0], rc[1]);
    free(x), free(sc), free(t), free(y[0]), free(y[1]);
}

static void t_dwconv(cs_dtype dt, size_t N, size_t H, size_t W, size_t C, int bias, int rep)
{
    size_t n = N * H * W * C;
    float *x = rnd(n), *y[2] = {rnd(n), rnd(n)};
    cs_tensor w = weight(dt, "dw", (int64_t)C, 1, 3, 3), b = weight(CS_F32, "db", (int64_t)C, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n);
        float *py = out(y[m], n);
        rc[m] = argrc() ? argrc() : cs_dwconv3x3(px, py, N, H, W, C, &w, bias ? &b : NULL, rep);
        rc[m] = end(rc[m], "dwconv3x3");
    }
    char s[128];
    snprintf(s, sizeof s, "%s N=%zu H=%zu W=%zu C=%zu bias=%d %s", dtn(dt), N, H, W, C, bias, rep ? "replicate" : "zero");
    report("dwconv3x3", s, 1, y[0], y[1], n, rc[0], rc[1]);
    drop(&w), drop(&b);
    free(x), free(y[0]), free(y[1]);
}

static void t_conv2d(cs_dtype dt, size_t N, size_t H, size_t W, size_t Cin, size_t Cout, int k, int st, int pad,
                     int groups, int bias)
{
    size_t Ho = (H + 2 * (size_t)pad - (size_t)k) / (size_t)st + 1, Wo = (W + 2 * (size_t)pad - (size_t)k) / (size_t)st + 1;
    size_t nx = N * H * W * Cin, ny = N * Ho * Wo * Cout;
    float *x = rnd(nx), *y[2] = {rnd(ny), rnd(ny)};
    cs_tensor w = weight(dt, "cw", (int64_t)Cout, (int64_t)(Cin / (size_t)groups), k, k),
              b = weight(CS_F32, "cb", (int64_t)Cout, 0, 0, 0);
    int rc[2];
    size_t ho[2] = {0, 0}, wo[2] = {0, 0};
    /* a 1x1 stride-1 convolution is a linear layer, on every backend */
    const char *want = k == 1 && st == 1 && pad == 0 && groups == 1 ? "linear" : "conv2d";
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, nx);
        float *py = out(y[m], ny);
        rc[m] = argrc() ? argrc() : cs_conv2d(px, N, H, W, Cin, &w, bias ? &b : NULL, st, pad, groups, py, &ho[m], &wo[m]);
        rc[m] = end(rc[m], want);
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu %zux%zu Cin=%zu Cout=%zu k=%d s=%d p=%d groups=%d bias=%d", dtn(dt), N, H, W, Cin,
             Cout, k, st, pad, groups, bias);
    if (!rc[0] && !rc[1] && (ho[0] != Ho || wo[0] != Wo || ho[1] != Ho || wo[1] != Wo))
        snprintf(opmiss, sizeof opmiss, " output size %zux%zu / %zux%zu, expected %zux%zu", ho[0], wo[0], ho[1], wo[1], Ho, Wo);
    report("conv2d", s, 1, y[0], y[1], ny, rc[0], rc[1]);
    drop(&w), drop(&b);
    free(x), free(y[0]), free(y[1]);
}

static void t_convt(cs_dtype dt, size_t N, size_t H, size_t W, size_t Cin, size_t Cout, int k, int st, int pad, int bias)
{
    size_t Ho = (H - 1) * (size_t)st + (size_t)k - 2 * (size_t)pad, Wo = (W - 1) * (size_t)st + (size_t)k - 2 * (size_t)pad;
    size_t nx = N * H * W * Cin, ny = N * Ho * Wo * Cout;
    float *x = rnd(nx), *y[2] = {rnd(ny), rnd(ny)};
    cs_tensor w = weight(dt, "tw", (int64_t)Cin, (int64_t)Cout, k, k), b = weight(CS_F32, "tb", (int64_t)Cout, 0, 0, 0);
    int rc[2];
    size_t ho[2] = {0, 0}, wo[2] = {0, 0};
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, nx);
        float *py = out(y[m], ny);
        rc[m] = argrc() ? argrc() : cs_conv_transpose2d(px, N, H, W, Cin, &w, bias ? &b : NULL, st, pad, py, &ho[m], &wo[m]);
        rc[m] = end(rc[m], "conv_transpose2d");
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu %zux%zu Cin=%zu Cout=%zu k=%d s=%d p=%d bias=%d", dtn(dt), N, H, W, Cin, Cout, k, st,
             pad, bias);
    if (!rc[0] && !rc[1] && (ho[0] != Ho || wo[0] != Wo || ho[1] != Ho || wo[1] != Wo))
        snprintf(opmiss, sizeof opmiss, " output size %zux%zu / %zux%zu, expected %zux%zu", ho[0], wo[0], ho[1], wo[1], Ho, Wo);
    report("conv_transpose2d", s, 1, y[0], y[1], ny, rc[0], rc[1]);
    drop(&w), drop(&b);
    free(x), free(y[0]), free(y[1]);
}

/* packed: q, k, v are column blocks of one [N*L, 3C] array (Lq == Lk) */
static void t_attention(size_t N, size_t Lq, size_t Lk, size_t C, int nhead, int masked, int packed, size_t pad)
{
    size_t ldq = packed ? 3 * C : C + pad, ldk = packed ? 3 * C : C + 2 * pad, ldv = packed ? 3 * C : C + pad,
           ldo = C + pad;
    size_t nq = N * Lq * ldq, nk = N * Lk * ldk, nv = N * Lk * ldv, nm = N * Lq * Lk, no = N * Lq * ldo;
    float *q = rnd(nq), *k = rnd(nk), *v = rnd(nv), *mask = rnd(nm), *o[2];
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f;
    for (size_t i = 0; i < nm; i++) mask[i] = i % Lk && mask[i] < -0.5f ? -INFINITY : 0.0f;   /* column 0 always open */
    o[0] = rnd(no), o[1] = dup(o[0], no);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pq = in(q, nq), *pk = packed ? pq + C : in(k, nk), *pv = packed ? pq + 2 * C : in(v, nv),
                    *pm = masked ? in(mask, nm) : NULL;
        float *po = inout(o[m], no);
        rc[m] = argrc() ? argrc() : cs_attention(pq, ldq, pk, ldk, pv, ldv, N, Lq, Lk, C, nhead, pm, po, ldo);
        rc[m] = end(rc[m], "attention");
    }
    char s[160];
    snprintf(s, sizeof s, "N=%zu Lq=%zu Lk=%zu C=%zu heads=%d mask=%d ldq=%zu ldk=%zu ldv=%zu ldo=%zu", N, Lq, Lk, C,
             nhead, masked, ldq, ldk, ldv, ldo);
    report("attention", s, 1, o[0], o[1], no, rc[0], rc[1]);
    free(q), free(k), free(v), free(mask), free(o[0]), free(o[1]);
}

/* rows [r0, r0 + n) of a 2-D (or 1-D) weight, as a view */
static cs_tensor rows_of(const cs_tensor *t, int64_t r0, int64_t n)
{
    cs_tensor v = *t;
    v.data = (const char *)t->data + (size_t)(r0 * (t->ndim > 1 ? t->shape[1] : 1)) * cs_dtype_size(t->dtype);
    v.shape[0] = n;
    return v;
}

/* a whole TimestepBlock through src/blocks.c, as t_attnblock */
static void t_tsblock(cs_dtype dt, size_t N, size_t HW, size_t c, size_t cr, int nconds, size_t pad)
{
    size_t ldt = cr * (size_t)(nconds + 1) + pad;
    float *t = rnd(N * ldt), *y[2];
    y[0] = rnd(N * HW * c), y[1] = dup(y[0], N * HW * c);
    cs_tsblock b = {.c = (int)c, .c_r = (int)cr, .nconds = nconds};
    for (int i = 0; i <= nconds; i++)
        b.w[i] = weight(dt, "mapper", 2 * (int64_t)c, (int64_t)cr, 0, 0), b.b[i] = weight(CS_F32, "mapper.b", 2 * (int64_t)c, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *pt = in(t, N * ldt);
        float *py = inout(y[m], N * HW * c);
        rc[m] = argrc() ? argrc() : cs_tsblock_forward(&b, py, N, HW, pt, ldt, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "ts_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu HW=%zu c=%zu c_r=%zu conds=%d ldt=%zu", dtn(dt), N, HW, c, cr, nconds, ldt);
    report("ts_block", s, 1, y[0], y[1], N * HW * c, rc[0], rc[1]);
    for (int i = 0; i <= nconds; i++) drop(&b.w[i]), drop(&b.b[i]);
    free(t), free(y[0]), free(y[1]);
}

/* a whole AttnBlock through src/blocks.c: the device's fused op where it
 * has one, else (and on the CPU) the single ops */
static void t_attnblock(cs_dtype dt, size_t N, size_t HW, size_t c, int nhead, size_t Lc, size_t cc, int packed,
                        int self_attn)
{
    size_t rows = N * HW;
    float *cond = rnd(N * Lc * cc + 1), *y[2];
    y[0] = rnd(rows * c), y[1] = dup(y[0], rows * c);
    for (size_t i = 0; i < rows * c; i++) y[0][i] = y[1][i] = 4.0f * y[0][i] + 1.0f;   /* LN must remove a mean */
    int64_t C = (int64_t)c;
    cs_attnblock b = {.c = (int)c, .c_cond = (int)cc, .nhead = nhead, .packed = packed, .self_attn = self_attn};
    cs_tensor sep[6] = {0};
    if (packed) {
        b.wqkv = weight(dt, "in_proj", 3 * C, C, 0, 0), b.bqkv = weight(CS_F32, "in_proj.b", 3 * C, 0, 0, 0);
        b.wq = rows_of(&b.wqkv, 0, C), b.wk = rows_of(&b.wqkv, C, C), b.wv = rows_of(&b.wqkv, 2 * C, C);
        b.bq = rows_of(&b.bqkv, 0, C), b.bk = rows_of(&b.bqkv, C, C), b.bv = rows_of(&b.bqkv, 2 * C, C);
    } else {
        for (int i = 0; i < 3; i++)
            sep[i] = weight(dt, "to_qkv", C, C, 0, 0), sep[3 + i] = weight(CS_F32, "to_qkv.b", C, 0, 0, 0);
        b.wq = sep[0], b.wk = sep[1], b.wv = sep[2], b.bq = sep[3], b.bk = sep[4], b.bv = sep[5];
    }
    b.wo = weight(dt, "out_proj", C, C, 0, 0), b.bo = weight(CS_F32, "out_proj.b", C, 0, 0, 0);
    b.kv_w = weight(dt, "kv_mapper", C, (int64_t)cc, 0, 0), b.kv_b = weight(CS_F32, "kv_mapper.b", C, 0, 0, 0);
    /* weights of nn.Linear's scale (about 1/sqrt(fan_in)): with +-1 ones the
     * scores reach +-30 and four chained 16-bit products put the block's
     * error past the tolerance on a GPU with or without its fused form */
    if (packed) pow2_scale(&b.wqkv, c);
    for (int i = 0; i < 3 && !packed; i++) pow2_scale(&sep[i], c);
    pow2_scale(&b.wo, c);
    pow2_scale(&b.kv_w, cc);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *pc = Lc ? in(cond, N * Lc * cc) : NULL;
        float *py = inout(y[m], rows * c);
        rc[m] = argrc() ? argrc() : cs_attnblock_forward(&b, py, N, HW, pc, Lc, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "attn_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu HW=%zu c=%zu heads=%d Lc=%zu c_cond=%zu packed=%d self=%d", dtn(dt), N, HW, c,
             nhead, Lc, cc, packed, self_attn);
    report("attn_block", s, 1, y[0], y[1], rows * c, rc[0], rc[1]);
    cs_tensor *all[] = {&b.wqkv, &b.bqkv, &b.wo, &b.bo, &b.kv_w, &b.kv_b};
    for (int i = 0; i < 6; i++) drop(all[i]);
    for (int i = 0; i < 6; i++) drop(&sep[i]);
    free(cond), free(y[0]), free(y[1]);
}

/* keys/values in two row blocks (an AttnBlock's own tokens, then its
 * conditioning): the device's attention_cat where it has one, else (and on
 * the CPU) the rows gathered and plain attention, as src/blocks.c does */
static void t_attention_cat(size_t N, size_t Lq, size_t L1, size_t L2, size_t C, int nhead, size_t pad)
{
    size_t ldq = 3 * C + pad, ld2 = 2 * C + pad, Lk = L1 + L2, nq = N * Lq * ldq, n2 = N * L2 * ld2,
           nb = N * Lk * 2 * C, no = N * Lq * C;
    float *q = rnd(nq), *kv2 = rnd(n2 + 1), *kvb = rnd(nb), *o[2];
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f;
    o[0] = rnd(no), o[1] = dup(o[0], no);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        /* block 1: the k|v columns of q's rows (Lq == L1) or nothing */
        const float *pq = in(q, nq), *p2 = L2 ? in(kv2, n2) : NULL;
        float *po = out(o[m], no);
        rc[m] = argrc() ? argrc()
                        : cs_attention_cat(pq, ldq, L1 ? pq + C : NULL, L1 ? pq + 2 * C : NULL, ldq, L1, p2,
                                           p2 ? p2 + C : NULL, ld2, L2, N, Lq, C, nhead, po, C);
        if (rc[m] == CS_EUNSUP) {
            float *pb = out(kvb, nb);
            for (size_t n = 0; n < N && !argrc(); n++) {
                if (L1) cs_copy2d(pb + n * Lk * 2 * C, 2 * C, pq + n * L1 * ldq + C, ldq, L1, 2 * C);
                if (L2) cs_copy2d(pb + (n * Lk + L1) * 2 * C, 2 * C, p2 + n * L2 * ld2, ld2, L2, 2 * C);
            }
            rc[m] = argrc() ? argrc() : cs_attention(pq, ldq, pb, 2 * C, pb + C, 2 * C, N, Lq, Lk, C, nhead, NULL, po, C);
        }
        rc[m] = end(rc[m], "attention_cat");
    }
    char s[160];
    snprintf(s, sizeof s, "N=%zu Lq=%zu L1=%zu L2=%zu C=%zu heads=%d ldq=%zu ld2=%zu", N, Lq, L1, L2, C, nhead, ldq, ld2);
    report("attention_cat", s, 1, o[0], o[1], no, rc[0], rc[1]);
    free(q), free(kv2), free(kvb), free(o[0]), free(o[1]);
}

static void t_resize(size_t N, size_t H, size_t W, size_t C, size_t Ho, size_t Wo)
{
    size_t nx = N * H * W * C, ny = N * Ho * Wo * C;
    float *x = rnd(nx), *y[2] = {rnd(ny), rnd(ny)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, nx);
        float *py = out(y[m], ny);
        if (!argrc()) cs_resize_bilinear(px, N, H, W, C, py, Ho, Wo);
        rc[m] = end(argrc(), "resize_bilinear");
    }
    char s[96];
    snprintf(s, sizeof s, "N=%zu %zux%zu -> %zux%zu C=%zu", N, H, W, Ho, Wo, C);
    report("resize_bilinear", s, 0, y[0], y[1], ny, rc[0], rc[1]);
    free(x), free(y[0]), free(y[1]);
}

/* up = 0: unshuffle x[N,H,W,C]; 1: shuffle x[N,H,W,C*r*r] */
static void t_shuffle(int up, size_t N, size_t H, size_t W, size_t C, int r)
{
    size_t n = N * H * W * C * (up ? (size_t)(r * r) : 1);
    float *x = rnd(n), *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n);
        float *py = out(y[m], n);
        if (!argrc()) {
            if (up) cs_pixel_shuffle(px, N, H, W, C, r, py);
            else cs_pixel_unshuffle(px, N, H, W, C, r, py);
        }
        rc[m] = end(argrc(), "pixel_shuffle");
    }
    char s[96];
    snprintf(s, sizeof s, "N=%zu %zux%zu C=%zu r=%d", N, H, W, C, r);
    report(up ? "pixel_shuffle" : "pixel_unshuffle", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(x), free(y[0]), free(y[1]);
}

static void t_transpose(int to_nhwc, size_t N, size_t C, size_t HW)
{
    size_t n = N * C * HW;
    float *x = rnd(n), *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n);
        float *py = out(y[m], n);
        if (!argrc()) (to_nhwc ? cs_nchw_to_nhwc : cs_nhwc_to_nchw)(px, py, N, C, HW);
        rc[m] = end(argrc(), "transpose");
    }
    char s[64];
    snprintf(s, sizeof s, "N=%zu C=%zu HW=%zu", N, C, HW);
    report(to_nhwc ? "nchw_to_nhwc" : "nhwc_to_nchw", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(x), free(y[0]), free(y[1]);
}

static void t_concat(size_t rows, size_t Ca, size_t Cb)
{
    size_t n = rows * (Ca + Cb);
    float *a = rnd(rows * Ca), *b = rnd(rows * Cb), *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pa = in(a, rows * Ca), *pb = in(b, rows * Cb);
        float *py = out(y[m], n);
        if (!argrc()) cs_concat_channels(pa, Ca, pb, Cb, py, rows);
        rc[m] = end(argrc(), "concat_channels");
    }
    char s[64];
    snprintf(s, sizeof s, "rows=%zu Ca=%zu Cb=%zu", rows, Ca, Cb);
    report("concat", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(a), free(b), free(y[0]), free(y[1]);
}

static void t_embed(cs_dtype dt, size_t V, size_t C, size_t n)
{
    cs_tensor tab = weight(dt, "table", (int64_t)V, (int64_t)C, 0, 0);
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((urand() + 1.0f) * 0.5f * (float)V) % (int32_t)V;
    ids[0] = (int32_t)V - 1;
    float *y[2] = {rnd(n * C), rnd(n * C)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        float *py = out(y[m], n * C);
        rc[m] = argrc() ? argrc() : cs_embed_rows(&tab, ids, n, py);   /* ids stay in host memory */
        rc[m] = end(rc[m], "embed_rows");
    }
    char s[64];
    snprintf(s, sizeof s, "%s V=%zu C=%zu n=%zu", dtn(dt), V, C, n);
    report("embed_rows", s, 0, y[0], y[1], n * C, rc[0], rc[1]);
    drop(&tab);
    free(ids), free(y[0]), free(y[1]);
}

static void t_r_embedding(size_t N, int c_r)
{
    float *r = rnd(N), *y[2] = {rnd(N * (size_t)c_r), rnd(N * (size_t)c_r)};
    for (size_t i = 0; i < N; i++) r[i] = r[i] * 0.5f + 0.5f;
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pr = in(r, N);
        float *py = out(y[m], N * (size_t)c_r);
        rc[m] = argrc() ? argrc() : cs_r_embedding(pr, N, c_r, py);
        rc[m] = end(rc[m], "r_embed");
    }
    char s[32];
    snprintf(s, sizeof s, "N=%zu c_r=%d", N, c_r);
    report("r_embedding", s, 0, y[0], y[1], N * (size_t)c_r, rc[0], rc[1]);
    free(r), free(y[0]), free(y[1]);
}

static void t_copy2d(size_t rows, size_t cols, size_t lds, size_t ldd)
{
    size_t ns = (rows - 1) * lds + cols, nd = (rows - 1) * ldd + cols;
    float *x = rnd(ns), *y[2];
    y[0] = rnd(nd), y[1] = dup(y[0], nd);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, ns);
        float *py = inout(y[m], nd);
        if (!argrc()) {
            if (lds == cols && ldd == cols) cs_copy(py, px, rows * cols);
            else cs_copy2d(py, ldd, px, lds, rows, cols);
        }
        rc[m] = end(argrc(), "copy2d");
    }
    char s[96];
    snprintf(s, sizeof s, "rows=%zu cols=%zu lds=%zu ldd=%zu", rows, cols, lds, ldd);
    report(lds == cols && ldd == cols ? "copy" : "copy2d", s, 0, y[0], y[1], nd, rc[0], rc[1]);
    free(x), free(y[0]), free(y[1]);
}

static void t_fill(size_t n, float v)
{
    float *y[2];
    y[0] = rnd(n + 2), y[1] = dup(y[0], n + 2);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        float *py = inout(y[m], n + 2);
        if (!argrc()) cs_fill(py + 1, v, n);   /* leaves the first and the last alone */
        rc[m] = end(argrc(), "fill");
    }
    char s[48];
    snprintf(s, sizeof s, "n=%zu v=%g", n, v);
    report("fill", s, 0, y[0], y[1], n + 2, rc[0], rc[1]);
    free(y[0]), free(y[1]);
}

static void t_act_calloc(size_t n)
{
    float *y[2] = {rnd(n), rnd(n)};
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        float *p = cs_act_calloc(n);
        rc[m] = p ? cs_act_download(y[m], p, n) : CS_ENOMEM;
        cs_act_free(p);
        rc[m] = end(rc[m], "fill");
    }
    char s[32];
    snprintf(s, sizeof s, "n=%zu", n);
    for (size_t i = 0; i < n; i++)
        if (y[0][i] != 0.0f) {
            snprintf(opmiss, sizeof opmiss, " (the CPU's memory is not zero)");
            break;
        }
    report("act_calloc", s, 0, y[0], y[1], n, rc[0], rc[1]);
    free(y[0]), free(y[1]);
}

/* ---- backward ops (grad.h): float32 on the device whatever the precision,
 * so held to the fp32 tolerance (tol_other). Gradients that grad.h adds
 * into (parameter gradients, input gradients with acc) start from random
 * content; want: which outputs are asked for (the others are NULL). A
 * device without the op (an optional entry of cs_dev_ops) is skipped. ---- */

static int has_op(int have, const char *op)
{
    if (!have) printf("skip %s: not in this device's op set\n", op);
    return have;
}

/* one output of a backward run: CPU's g[0], device's g[1] */
static void report_g(const char *op, const char *out, const char *shape, float *const g[2], size_t n, const int rc[2])
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", op, out);
    report(name, shape, 0, g[0], g[1], n, rc[0], rc[1]);
}

/* two copies of n random floats: the starting content of an output */
static void pair(float *g[2], size_t n)
{
    g[0] = rnd(n);
    g[1] = dup(g[0], n);
}

static void free_pair(float *g[2]) { free(g[0]), free(g[1]); }

static void t_sgemm_tn(size_t M, size_t N, size_t K, float beta, size_t pad)
{
    if (!has_op(D->sgemm_tn != NULL, "sgemm_tn")) return;
    size_t lda = M + pad, ldb = N + 2 * pad, ldc = N + pad;
    float *a = rnd(K * lda), *b = rnd(K * ldb), *c[2];
    pair(c, M * ldc);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pa = in(a, K * lda), *pb = in(b, K * ldb);
        float *pc = inout(c[m], M * ldc);
        rc[m] = argrc() ? argrc() : cs_sgemm_tn(M, N, K, pa, lda, pb, ldb, beta, pc, ldc);
        rc[m] = end(rc[m], "sgemm_tn");
    }
    char s[128];
    snprintf(s, sizeof s, "M=%zu N=%zu K=%zu beta=%g lda=%zu ldb=%zu ldc=%zu", M, N, K, beta, lda, ldb, ldc);
    report_g("sgemm_tn", "C", s, c, M * ldc, rc);
    free(a), free(b), free_pair(c);
}

/* want: 1 dx, 2 dW, 4 db */
static void t_linear_bw(cs_dtype dt, size_t M, size_t K, size_t ldx, size_t N, size_t ldy, int acc, int want)
{
    if (!has_op(D->linear_backward != NULL, "linear_backward")) return;
    size_t lx = ldx ? ldx : K, ly = ldy ? ldy : N;
    float *x = rnd(M * lx), *dy = rnd(M * ly), *dx[2], *dW[2], *db[2];
    pair(dx, M * lx), pair(dW, N * K), pair(db, N);
    cs_tensor W = weight(dt, "W", (int64_t)N, (int64_t)K, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, M * lx), *pdy = in(dy, M * ly);
        float *pdx = want & 1 ? inout(dx[m], M * lx) : NULL, *pdW = want & 2 ? inout(dW[m], N * K) : NULL,
              *pdb = want & 4 ? inout(db[m], N) : NULL;
        rc[m] = argrc() ? argrc() : cs_linear_backward(px, M, K, ldx, &W, pdy, ldy, pdx, acc, pdW, pdb);
        rc[m] = end(rc[m], "linear_backward");
    }
    char s[160];
    snprintf(s, sizeof s, "%s M=%zu K=%zu N=%zu ldx=%zu ldy=%zu acc=%d dx=%d dW=%d db=%d", dtn(dt), M, K, N, lx, ly, acc,
             want & 1, !!(want & 2), !!(want & 4));
    if (want & 1) report_g("linear_backward", "dx", s, dx, M * lx, rc);
    if (want & 2) report_g("linear_backward", "dW", s, dW, N * K, rc);
    if (want & 4) report_g("linear_backward", "db", s, db, N, rc);
    drop(&W);
    free(x), free(dy), free_pair(dx), free_pair(dW), free_pair(db);
}

/* want: 1 dx, 2 dw, 4 db */
static void t_layernorm_bw(size_t rows, size_t C, int affine, int acc, int want)
{
    if (!has_op(D->layernorm_backward != NULL, "layernorm_backward")) return;
    size_t n = rows * C;
    float *x = rnd(n), *dy = rnd(n), *w = rnd(C), *dx[2], *dw[2], *db[2];
    for (size_t i = 0; i < n; i++) x[i] = x[i] * 2.0f + 0.5f;   /* a mean away from 0 */
    pair(dx, n), pair(dw, C), pair(db, C);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pdy = in(dy, n), *pw = affine ? in(w, C) : NULL;
        float *pdx = want & 1 ? inout(dx[m], n) : NULL, *pdw = want & 2 ? inout(dw[m], C) : NULL,
              *pdb = want & 4 ? inout(db[m], C) : NULL;
        rc[m] = argrc() ? argrc() : cs_layernorm_backward(px, pdy, pdx, acc, rows, C, 1e-6f, pw, pdw, pdb);
        rc[m] = end(rc[m], "layernorm_backward");
    }
    char s[128];
    snprintf(s, sizeof s, "rows=%zu C=%zu %s acc=%d dx=%d dw=%d db=%d", rows, C, affine ? "w" : "no w", acc, want & 1,
             !!(want & 2), !!(want & 4));
    if (want & 1) report_g("layernorm_backward", "dx", s, dx, n, rc);
    if (want & 2) report_g("layernorm_backward", "dw", s, dw, C, rc);
    if (want & 4) report_g("layernorm_backward", "db", s, db, C, rc);
    free(x), free(dy), free(w), free_pair(dx), free_pair(dw), free_pair(db);
}

/* kind 0 GELU, 1 SiLU; inplace: dx is dy */
static void t_act_bw(int kind, size_t n, int inplace)
{
    static const char *const nm[2] = {"gelu_backward", "silu_backward"};
    if (!has_op(kind ? D->silu_backward != NULL : D->gelu_backward != NULL, nm[kind])) return;
    float *x = rnd(n), *dy = rnd(n), *dx[2];
    for (size_t i = 0; i < n; i++) x[i] *= 5.0f;
    pair(dx, n);
    if (inplace) memcpy(dx[0], dy, n * 4), memcpy(dx[1], dy, n * 4);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n);
        float *pdx = inplace ? inout(dx[m], n) : out(dx[m], n);
        const float *pdy = inplace ? pdx : in(dy, n);
        if (!argrc()) (kind ? cs_silu_backward : cs_gelu_backward)(px, pdy, pdx, n);
        rc[m] = end(argrc(), nm[kind]);
    }
    char s[64], name[64];
    snprintf(s, sizeof s, "n=%zu%s", n, inplace ? " in place" : "");
    snprintf(name, sizeof name, "%s.dx", nm[kind]);
    /* against ||dy||: f'(x) is a sum of O(1) terms that cancel in the tails
     * (GELU's 1 + erf(x / sqrt 2) for x < -3), where any float32 erf's last
     * ulp becomes a large part of the result, so ||ref|| measures nothing
     * when every element sits there (n = 1) */
    double d2 = 0;
    for (size_t i = 0; i < n; i++) d2 += (double)dy[i] * dy[i];
    report_den(name, s, 0, dx[0], dx[1], n, rc[0], rc[1], d2);
    free(x), free(dy), free_pair(dx);
}

/* want: 1 dx, 2 dgamma, 4 dbeta */
static void t_grn_bw(size_t N, size_t HW, size_t C, int want)
{
    if (!has_op(D->grn_backward != NULL, "grn_backward")) return;
    size_t n = N * HW * C;
    float *x = rnd(n), *dy = rnd(n), *g = rnd(C), *dx[2], *dg[2], *dbe[2];
    pair(dx, n), pair(dg, C), pair(dbe, C);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pdy = in(dy, n), *pg = in(g, C);
        float *pdx = want & 1 ? inout(dx[m], n) : NULL, *pdg = want & 2 ? inout(dg[m], C) : NULL,
              *pdb = want & 4 ? inout(dbe[m], C) : NULL;
        rc[m] = argrc() ? argrc() : cs_grn_backward(px, pdy, pdx, N, HW, C, pg, pdg, pdb);
        rc[m] = end(rc[m], "grn_backward");
    }
    char s[96];
    snprintf(s, sizeof s, "N=%zu HW=%zu C=%zu dx=%d dgamma=%d dbeta=%d", N, HW, C, want & 1, !!(want & 2), !!(want & 4));
    if (want & 1) report_g("grn_backward", "dx", s, dx, n, rc);
    if (want & 2) report_g("grn_backward", "dgamma", s, dg, C, rc);
    if (want & 4) report_g("grn_backward", "dbeta", s, dbe, C, rc);
    free(x), free(dy), free(g), free_pair(dx), free_pair(dg), free_pair(dbe);
}

/* da at column 0, db at column boff of rows ldab apart (the rest of the
 * rows must stay); want: 1 dx, 2 da, 4 db; inplace: dx is dy */
static void t_modulate_bw(size_t N, size_t HW, size_t C, size_t ldab, size_t boff, int inplace, int want)
{
    if (!has_op(D->modulate_backward != NULL, "modulate_backward")) return;
    size_t n = N * HW * C, nab = (N - 1) * ldab + boff + C;
    float *x = rnd(n), *dy = rnd(n), *a = rnd(N * ldab), *dx[2], *dab[2];
    pair(dx, n), pair(dab, nab);
    if (inplace) memcpy(dx[0], dy, n * 4), memcpy(dx[1], dy, n * 4);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pa = in(a, N * ldab);
        float *pdx = want & 1 || inplace ? inout(dx[m], n) : NULL, *pab = inout(dab[m], nab);
        const float *pdy = inplace ? pdx : in(dy, n);
        if (!argrc())
            cs_modulate_backward(px, pdy, want & 1 ? pdx : NULL, N, HW, C, pa, ldab, want & 2 ? pab : NULL,
                                 want & 4 ? pab + boff : NULL);
        rc[m] = end(argrc(), "modulate_backward");
    }
    char s[128];
    snprintf(s, sizeof s, "N=%zu HW=%zu C=%zu ldab=%zu b_at=%zu%s dx=%d da=%d db=%d", N, HW, C, ldab, boff,
             inplace ? " in place" : "", want & 1, !!(want & 2), !!(want & 4));
    if (want & 1) report_g("modulate_backward", "dx", s, dx, n, rc);
    report_g("modulate_backward", "da|db", s, dab, nab, rc);
    free(x), free(dy), free(a), free_pair(dx), free_pair(dab);
}

/* want: 1 dx, 2 dw, 4 db */
static void t_dwconv_bw(size_t N, size_t H, size_t W, size_t C, int k, int acc, int want)
{
    if (!has_op(D->dwconv_backward != NULL, "dwconv_backward")) return;
    size_t n = N * H * W * C, nw = C * (size_t)(k * k);
    float *x = rnd(n), *dy = rnd(n), *w = rnd(nw), *dx[2], *dw[2], *db[2];
    pair(dx, n), pair(dw, nw), pair(db, C);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *px = in(x, n), *pdy = in(dy, n), *pw = in(w, nw);
        float *pdx = want & 1 ? inout(dx[m], n) : NULL, *pdw = want & 2 ? inout(dw[m], nw) : NULL,
              *pdb = want & 4 ? inout(db[m], C) : NULL;
        rc[m] = argrc() ? argrc() : cs_dwconv_backward(px, pdy, pdx, acc, N, H, W, C, k, pw, pdw, pdb);
        rc[m] = end(rc[m], "dwconv_backward");
    }
    char s[128];
    snprintf(s, sizeof s, "N=%zu %zux%zu C=%zu k=%d acc=%d dx=%d dw=%d db=%d", N, H, W, C, k, acc, want & 1,
             !!(want & 2), !!(want & 4));
    if (want & 1) report_g("dwconv_backward", "dx", s, dx, n, rc);
    if (want & 2) report_g("dwconv_backward", "dw", s, dw, nw, rc);
    if (want & 4) report_g("dwconv_backward", "db", s, db, C, rc);
    free(x), free(dy), free(w), free_pair(dx), free_pair(dw), free_pair(db);
}

/* q (and dq) rows of ldq = C + padq; k and v (dk, dv) the two column blocks
 * of rows of 2C + padkv, as an AttnBlock keeps them, or (sepv) v in its own
 * [N*Lk, C] array; want: 1 dq, 2 dk, 4 dv */
static void t_attention_bw(size_t N, size_t Lq, size_t Lk, size_t C, int nhead, size_t padq, size_t padkv, int sepv,
                           int acc, int want)
{
    if (!has_op(D->attention_backward != NULL, "attention_backward")) return;
    size_t ldq = C + padq, ldkv = 2 * C + padkv, ldv = sepv ? C : ldkv, ldo = C + 1;
    size_t nq = N * Lq * ldq, nkv = N * Lk * ldkv, nv = N * Lk * C, no = N * Lq * ldo;
    float *q = rnd(nq), *kv = rnd(nkv), *v = rnd(nv), *dO = rnd(no), *dq[2], *dkv[2], *dv[2];
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f;
    pair(dq, nq), pair(dkv, nkv), pair(dv, nv);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pq = in(q, nq), *pkv = in(kv, nkv), *pv = sepv ? in(v, nv) : pkv ? pkv + C : NULL,
                    *po = in(dO, no);
        float *pdq = want & 1 ? inout(dq[m], nq) : NULL, *pdkv = want & 6 ? inout(dkv[m], nkv) : NULL,
              *pdv = want & 4 ? sepv ? inout(dv[m], nv) : pdkv ? pdkv + C : NULL : NULL;
        rc[m] = argrc() ? argrc()
                        : cs_attention_backward(pq, ldq, pkv, ldkv, pv, ldv, po, ldo, N, Lq, Lk, C, nhead, pdq,
                                                want & 2 ? pdkv : NULL, pdv, acc);
        rc[m] = end(rc[m], "attention_backward");
    }
    char s[160];
    snprintf(s, sizeof s, "N=%zu Lq=%zu Lk=%zu C=%zu heads=%d ldq=%zu ldk=%zu ldv=%zu acc=%d dq=%d dk=%d dv=%d", N, Lq,
             Lk, C, nhead, ldq, ldkv, ldv, acc, want & 1, !!(want & 2), !!(want & 4));
    if (want & 1) report_g("attention_backward", "dq", s, dq, nq, rc);
    if (want & 6) report_g("attention_backward", sepv ? "dk" : "dk|dv", s, dkv, nkv, rc);
    if (want & 4 && sepv) report_g("attention_backward", "dv", s, dv, nv, rc);
    free(q), free(kv), free(v), free(dO), free_pair(dq), free_pair(dkv), free_pair(dv);
}

static void grad_ops(void)
{
    t_sgemm_tn(1, 17, 63, 0.0f, 0);
    t_sgemm_tn(17, 63, 3, 1.0f, 2);
    t_sgemm_tn(63, 3, 1025, 1.0f, 0);
    t_sgemm_tn(3, 1025, 17, 0.0f, 5);
    t_linear_bw(CS_F32, 1, 3, 0, 17, 0, 0, 7);
    t_linear_bw(CS_F32, 63, 17, 0, 3, 0, 1, 7);
    t_linear_bw(CS_BF16, 17, 63, 70, 1025, 1030, 1, 7);   /* a frozen bf16 base: dx only in LoRA, all here */
    t_linear_bw(CS_F16, 3, 1025, 1030, 17, 20, 0, 1);
    t_linear_bw(CS_F32, 1025, 63, 0, 17, 0, 0, 6);         /* long column sums: db over 1025 rows */
    t_linear_bw(CS_BF16, 17, 3, 5, 63, 0, 1, 2);
    t_linear_bw(CS_F32, 3, 17, 0, 63, 64, 0, 4);
    t_layernorm_bw(1, 3, 1, 0, 7);
    t_layernorm_bw(3, 17, 0, 1, 1);
    t_layernorm_bw(17, 63, 1, 1, 7);
    t_layernorm_bw(63, 1025, 0, 0, 7);
    t_layernorm_bw(1025, 17, 1, 0, 6);
    t_layernorm_bw(17, 63, 0, 0, 2);
    for (int k = 0; k < 2; k++) {
        t_act_bw(k, 1, 0);
        t_act_bw(k, 63, 1);
        t_act_bw(k, 3 * 1025 + 1, 0);
    }
    t_grn_bw(2, 17, 63, 7);
    t_grn_bw(1, 3, 17, 1);
    t_grn_bw(1, 1, 1025, 6);
    t_grn_bw(3, 63, 3, 7);
    t_grn_bw(1, 300, 1, 4);
    t_modulate_bw(2, 17, 63, 126, 63, 0, 7);   /* da | db in the [N, 2C] mapper gradient */
    t_modulate_bw(2, 17, 63, 126, 63, 1, 7);
    t_modulate_bw(1, 1025, 3, 6, 3, 1, 7);
    t_modulate_bw(3, 1, 17, 40, 20, 0, 1);
    t_modulate_bw(3, 3, 17, 40, 20, 0, 4);
    t_dwconv_bw(2, 5, 7, 17, 3, 0, 7);
    t_dwconv_bw(2, 5, 7, 17, 3, 1, 7);
    t_dwconv_bw(1, 1, 1, 3, 3, 1, 7);
    t_dwconv_bw(1, 3, 17, 63, 3, 0, 2);
    t_dwconv_bw(2, 6, 5, 3, 5, 1, 5);
    t_dwconv_bw(1, 4, 4, 17, 1, 0, 4);
    t_dwconv_bw(1, 63, 33, 3, 3, 0, 6);   /* long sums: 2079 pixels */
    t_attention_bw(2, 17, 17, 128, 2, 0, 0, 0, 0, 7);   /* 64-wide heads */
    t_attention_bw(2, 17, 17, 128, 2, 3, 1, 0, 1, 7);
    t_attention_bw(1, 63, 3, 64, 1, 0, 0, 1, 0, 7);
    t_attention_bw(1, 1, 1, 64, 1, 0, 0, 0, 1, 7);
    t_attention_bw(2, 3, 63, 192, 3, 5, 0, 1, 1, 7);
    t_attention_bw(1, 17, 1030, 64, 1, 0, 2, 0, 0, 7);  /* rows longer than the softmax's block */
    t_attention_bw(1, 63, 17, 72, 3, 0, 0, 1, 0, 7);    /* 24-wide heads */
    t_attention_bw(1, 17, 63, 128, 2, 0, 0, 1, 1, 1);
    t_attention_bw(1, 17, 63, 128, 2, 0, 0, 1, 0, 4);
    t_attention_bw(2, 63, 17, 64, 1, 0, 0, 0, 0, 2);
}

static void all_ops(void)
{
    const cs_dtype wt[3] = {CS_F32, CS_BF16, CS_F16};
    t_linear(CS_F32, 1, 3, 0, 17, 0, 1, 0);
    t_linear(CS_BF16, 17, 63, 0, 1025, 0, 1, 0);
    t_linear(CS_F16, 63, 17, 0, 3, 0, 0, 0);
    t_linear(CS_F32, 1025, 17, 0, 63, 0, 0, 0);
    t_linear(CS_BF16, 17, 63, 70, 17, 20, 1, 1);
    t_linear(CS_F16, 3, 1025, 1030, 1, 3, 1, 1);
    t_linear(CS_F32, 63, 3, 5, 17, 17, 0, 1);
    for (int tb = 0; tb < 2; tb++) {
        t_sgemm(tb, 1, 17, 63, 1.0f, 0.0f, 0);
        t_sgemm(tb, 17, 63, 3, 0.5f, 0.0f, 2);
        t_sgemm(tb, 63, 3, 1025, 1.0f, 1.0f, 0);
        t_sgemm(tb, 3, 1025, 17, -1.5f, 0.25f, 5);
        t_sgemm(tb, 1025, 17, 63, 1.0f, 0.0f, 1);
    }
    t_layernorm(1, 3, 1);
    t_layernorm(17, 63, 0);
    t_layernorm(1025, 17, 1);
    t_layernorm(3, 1025, 1);
    t_layernorm(63, 1, 0);
    for (int k = 0; k < 4; k++) {
        t_unary(k, 1, 0);
        t_unary(k, 3 * 1025 + 1, 0);
        t_unary(k, 63, 1);
    }
    for (int k = 0; k < 3; k++) {
        t_elem(k, 1);
        t_elem(k, 17);
        t_elem(k, 4099);
    }
    t_grn(2, 17, 63);
    t_block(1, CS_F32, 2, 3, 5, 1, 0);
    t_block(1, CS_BF16, 2, 7, 9, 17, 3);
    t_block(1, CS_F32, 1, 33, 31, 24, 40);
    t_block(0, CS_F32, 2, 1, 17, 63, 0);
    t_block(0, CS_BF16, 1, 1, 1025, 3, 0);
    t_grn(1, 300, 3);
    t_grn(1, 1, 1025);
    t_modulate(2, 17, 63, 126, 63);
    t_modulate(1, 1025, 3, 3, 3);
    t_modulate(3, 1, 17, 40, 20);
    t_channel_affine(17, 63);
    t_channel_affine(1025, 3);
    t_dwconv(CS_F32, 2, 5, 7, 17, 1, 0);
    t_dwconv(CS_BF16, 2, 5, 7, 17, 0, 1);
    t_dwconv(CS_F32, 1, 1, 1, 3, 1, 1);
    t_dwconv(CS_F16, 1, 3, 17, 63, 1, 0);
    t_conv2d(CS_F32, 1, 5, 7, 3, 17, 1, 1, 0, 1, 1);
    t_conv2d(CS_F32, 1, 1, 1, 3, 17, 1, 2, 0, 1, 0);
    t_conv2d(CS_BF16, 2, 7, 5, 17, 3, 2, 2, 0, 1, 1);
    t_conv2d(CS_F32, 1, 17, 3, 3, 5, 2, 1, 1, 1, 0);
    t_conv2d(CS_F32, 1, 9, 9, 4, 6, 3, 1, 1, 2, 1);
    t_conv2d(CS_F16, 1, 5, 5, 63, 3, 3, 2, 0, 1, 1);
    t_conv2d(CS_F32, 1, 8, 6, 17, 17, 3, 1, 1, 17, 1);
    t_conv2d(CS_F16, 1, 7, 9, 17, 17, 4, 2, 1, 17, 0);
    t_conv2d(CS_F32, 2, 6, 6, 3, 63, 4, 2, 1, 1, 1);
    t_conv2d(CS_BF16, 1, 6, 4, 4, 8, 4, 1, 0, 2, 1);
    for (int i = 0; i < 3; i++) t_conv2d(wt[i], 1, 3, 3, 2, 4, 1, 1, 0, 2, 1);
    t_convt(CS_F32, 1, 5, 7, 17, 3, 2, 2, 0, 1);
    t_convt(CS_BF16, 2, 4, 3, 3, 17, 4, 2, 1, 1);
    t_convt(CS_F16, 1, 1, 1, 63, 3, 2, 2, 0, 0);
    t_convt(CS_F32, 1, 3, 5, 4, 4, 4, 2, 1, 0);
    t_attention(2, 17, 17, 64, 4, 0, 0, 0);
    t_attention(1, 3, 63, 24, 3, 1, 0, 5);
    t_attention(2, 1025, 17, 16, 1, 1, 0, 0);
    t_attention(1, 17, 17, 32, 2, 0, 1, 3);
    t_attention(1, 1, 1, 8, 2, 1, 0, 1);
    t_attention(1, 5, 12301, 8, 2, 1, 0, 0);   /* rows past the device softmax's shared memory */
    t_attention(2, 65, 33, 128, 2, 0, 0, 0);   /* 64-wide heads: the device's flash path (bf16, fp16) */
    t_attention(1, 1025, 77, 64, 1, 0, 1, 3);
    t_attention(2, 17, 1030, 192, 3, 0, 0, 0);
    t_attention(1, 1, 1, 64, 1, 0, 0, 0);
    t_attention(2, 100, 130, 128, 2, 0, 0, 4);   /* flash with ld != C */
    t_attention(1, 64, 64, 64, 1, 0, 0, 1);      /* ld 65: rows not 16-byte aligned, converted */
    t_attention_cat(2, 17, 17, 9, 128, 2, 0);
    t_attention_cat(2, 100, 100, 85, 192, 3, 4);   /* an AttnBlock's shapes, smaller */
    t_attention_cat(1, 65, 0, 77, 64, 1, 0);       /* cross-attention only */
    t_attention_cat(1, 63, 63, 0, 64, 1, 8);       /* self-attention only */
    t_attention_cat(1, 5, 5, 3, 24, 3, 0);         /* 8-wide heads: gathered */
    t_tsblock(CS_F32, 2, 17, 63, 64, 2, 0);
    t_tsblock(CS_BF16, 2, 1025, 17, 3, 0, 5);
    t_tsblock(CS_F32, 1, 3, 128, 17, 4, 1);
    t_tsblock(CS_BF16, 9, 2, 5, 8, 1, 0);   /* past the device's 8 rows: single ops */
    t_attnblock(CS_F32, 2, 17, 64, 1, 9, 24, 1, 1);
    t_attnblock(CS_BF16, 2, 100, 128, 2, 85, 40, 1, 1);   /* a Stage C AttnBlock's shapes, smaller */
    t_attnblock(CS_F32, 1, 65, 192, 3, 77, 17, 0, 1);     /* diffusers' separate q, k, v */
    t_attnblock(CS_BF16, 2, 63, 128, 2, 0, 0, 1, 1);      /* no conditioning */
    t_attnblock(CS_F32, 1, 33, 64, 1, 5, 8, 1, 0);        /* cross-attention only */
    t_attnblock(CS_F32, 1, 17, 24, 3, 3, 5, 0, 1);        /* 8-wide heads: single ops on a GPU */
    t_resize(1, 5, 7, 3, 17, 3);
    t_resize(2, 17, 17, 4, 3, 5);
    t_resize(1, 1, 1, 3, 4, 4);
    t_resize(1, 6, 6, 17, 6, 6);
    t_shuffle(0, 2, 6, 4, 3, 2);
    t_shuffle(0, 1, 8, 8, 17, 4);
    t_shuffle(1, 2, 3, 5, 3, 2);
    t_shuffle(1, 1, 2, 2, 17, 4);
    for (int d = 0; d < 2; d++) {
        t_transpose(d, 2, 17, 35);
        t_transpose(d, 1, 1025, 3);
        t_transpose(d, 1, 1, 1);
    }
    t_concat(17, 3, 63);
    t_concat(1025, 1, 17);
    for (int i = 0; i < 3; i++) t_embed(wt[i], 63, 17, 17);
    t_embed(CS_BF16, 3, 1025, 5);
    t_r_embedding(3, 64);
    t_r_embedding(1, 17);
    t_copy2d(17, 63, 70, 65);
    t_copy2d(1, 1025, 1025, 1025);
    t_copy2d(1025, 3, 3, 3);
    t_fill(1025, 0.5f);
    t_fill(1, -3.0f);
    t_act_calloc(1025);
    t_act_calloc(1);
    grad_ops();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a crash shows the op it was in */
    const char *env = getenv("CASCADE_BACKEND");
    char fake[1024];
    snprintf(fake, sizeof fake, "%s/libcascade-fake.so", argc > 1 ? argv[1] : "tests/.libs");
    const char *name = env && *env ? env : fake;
    const char *ps = getenv("CASCADE_PRECISION");
    int prec = !ps || !*ps || !strcmp(ps, "fp32") ? CS_PREC_FP32 : !strcmp(ps, "bf16") ? CS_PREC_BF16
                                                                : !strcmp(ps, "fp16") ? CS_PREC_FP16 : -1;
    if (prec < 0) {
        fprintf(stderr, "test_backend_ops: CASCADE_PRECISION=%s: expected fp32, bf16 or fp16\n", ps);
        return 2;
    }
    /* the CPU side at the level under test; the fake plugin's own copy of
     * the engine picks the same one (its init follows CASCADE_SIMD too) */
    if (cs_simd_init()) {
        fprintf(stderr, "test_backend_ops: %s\n", cs_last_error());
        return 1;
    }
    tol_prod = prec == CS_PREC_BF16 ? 2e-2 : prec == CS_PREC_FP16 ? 5e-3 : 1e-5;
    if (!strcmp(name, "cpu")) {
        printf("SKIP: CASCADE_BACKEND=cpu: no device backend to compare with the CPU\n");
        return 77;
    }
    static cs_backend_report rep;
    if (cs_backend_describe(name, &rep)) {
        printf("test_backend_ops: %s\n", cs_last_error());
        return 1;
    }
    int usable = 0;
    for (int i = 0; i < rep.ndev && i < CS_MAX_LISTED; i++) usable |= rep.dev[i].usable;
    if (!usable) {
        printf("SKIP: backend %s: no usable device: %s\n", name,
               rep.ndev ? rep.dev[0].why : rep.reason[0] ? rep.reason : "none listed");
        return 77;
    }
    if (cs_backend_select(name)) {
        int skip = strstr(cs_last_error(), "not usable here") != NULL;
        printf("%s%s\n", skip ? "SKIP: " : "test_backend_ops: ", cs_last_error());
        return skip ? 77 : 1;
    }
    D = cs_dev_pick();
    if (!D) {
        printf("SKIP: backend %s has no op set (the CPU computes)\n", name);
        return 77;
    }
    int rc = D->set_precision(prec);
    if (rc) {
        const char *m = D->errmsg ? D->errmsg() : "";
        printf("%s%s: precision %s: %s\n", rc == CS_EUNSUP ? "SKIP: " : "FAIL ", cs_backend_name(), ps, m);
        return rc == CS_EUNSUP ? 77 : 1;
    }
    void *h = dlopen(rep.path, RTLD_NOW | RTLD_NOLOAD);
    fake_calls = h ? dlsym(h, "fake_backend_calls") : NULL;
    fake_last = h ? dlsym(h, "fake_backend_last_op") : NULL;
    if (!fake_last) fake_calls = NULL;
    printf("# backend %s (%s, %s), device %s, precision %s%s\n", cs_backend_name(), rep.path, rep.version,
           rep.dev[0].name, ps && *ps ? ps : "fp32", fake_calls ? "; the fake plugin: results must be identical" : "");
    D->mem_peak(1);
    all_ops();
    printf("# device memory peak %.1f MiB\n", (double)D->mem_peak(0) / 1048576.0);
    printf("%s: %d of %d op runs %s on %s\n", fails ? "FAIL" : "PASS", fails ? fails : runs, runs,
           fails ? "failed" : "ok", cs_backend_name());
    if (h) dlclose(h);
    cs_backend_release();
    return fails ? 1 : 0;
}
