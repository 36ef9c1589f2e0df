/* The cross-backend op test's forward single ops (tests/test_backend_ops.c
 * says how each is compared): products, normalisations, activations,
 * convolutions, attention, layout ops, copies. */
#include "backend_ops.h"

#include "cpu.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void t_linear(cs_dtype dt, size_t M, size_t K, size_t ldx, size_t N, size_t ldy, int bias, int acc)
{
    ldx = ldx ? ldx : K, ldy = ldy ? ldy : N;
    float *x = rnd(M * ldx), *y[2];
    y[0] = rnd(M * ldy), y[1] = dupf(y[0], M * ldy);
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

static void t_sgemm(int tb, size_t M, size_t N, size_t K, float alpha, float beta, size_t pad)
{
    size_t lda = K + pad, ldb = (tb ? K : N) + pad, ldc = N + pad, nb = (tb ? N : K) * ldb;
    float *a = rnd(M * lda), *b = rnd(nb), *c[2];
    c[0] = rnd(M * ldc), c[1] = dupf(c[0], M * ldc);
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
    y[0] = rnd(n), y[1] = dupf(y[0], n);
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
    o[0] = rnd(no), o[1] = dupf(o[0], no);
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

/* keys/values in two row blocks (an AttnBlock's own tokens, then its
 * conditioning): the device's attention_cat where it has one, else (and on
 * the CPU) the rows gathered and plain attention, as src/blocks.c does */
static void t_attention_cat(size_t N, size_t Lq, size_t L1, size_t L2, size_t C, int nhead, size_t pad)
{
    size_t ldq = 3 * C + pad, ld2 = 2 * C + pad, Lk = L1 + L2, nq = N * Lq * ldq, n2 = N * L2 * ld2,
           nb = N * Lk * 2 * C, no = N * Lq * C;
    float *q = rnd(nq), *kv2 = rnd(n2 + 1), *kvb = rnd(nb), *o[2];
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f;
    o[0] = rnd(no), o[1] = dupf(o[0], no);
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
    y[0] = rnd(nd), y[1] = dupf(y[0], nd);
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
    y[0] = rnd(n + 2), y[1] = dupf(y[0], n + 2);
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

void forward_ops(void)
{
    const cs_dtype wt[3] = {CS_F32, CS_BF16, CS_F16};
    t_linear(CS_F32, 1, 3, 0, 17, 0, 1, 0);
    t_linear(CS_BF16, 17, 63, 0, 1025, 0, 1, 0);
    t_linear(CS_F16, 63, 17, 0, 3, 0, 0, 0);
    t_linear(CS_F32, 1025, 17, 0, 63, 0, 0, 0);
    t_linear(CS_BF16, 17, 63, 70, 17, 20, 1, 1);
    t_linear(CS_F16, 3, 1025, 1030, 1, 3, 1, 1);
    t_linear(CS_F32, 63, 3, 5, 17, 17, 0, 1);
    /* a few rows, K % 8 == 0 (16-byte weight rows: four lanes an output on
     * the GPU), K not a multiple of 32, with and without accumulation */
    t_linear(CS_BF16, 2, 40, 0, 1025, 0, 1, 0);
    t_linear(CS_F16, 7, 1032, 1040, 63, 70, 1, 1);
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
}
