/* The backwards of src/grad.h and the optimizers of src/optim.h against
 * PyTorch on the same inputs: tests/data/grad/{ops,optim}.safetensors,
 * written by tests/ref/grad_ref.py (autograd, transformers' Adafactor,
 * torch.optim.AdamW). Python is not needed to run this.
 *
 * Ops are checked alone and composed into a TimestepBlock (modulation and
 * its three mappers) and an AttnBlock (LayerNorm, packed in_proj shared by
 * the image and conditioning tokens, multi-head attention, out_proj,
 * kv_mapper with SiLU), as the training backward will chain them.
 *
 * Tolerances (max |ours - torch| / max |torch| per tensor):
 *   ops and blocks  3e-6   float32 both sides, different summation orders
 *                          (measured worst 2.7e-7, the AttnBlock in_proj bias);
 *   optimizers      1e-5   of the largest parameter change after each of
 *                          3 steps (params ~0.01, lr 1e-3: the change is
 *                          ~1e4 float ulps of the parameter, so rounding
 *                          shows at ~1e-6, measured worst 9.3e-7; a wrong beta2_t or
 *                          clip is > 1e-2). */
#include "check.h"
#include "device.h"
#include "error.h"
#include "grad.h"
#include "ops.h"
#include "optim.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_OP 3e-6
#define TOL_OPT 1e-5
static int failures;
static double worst_op, worst_opt;
static cs_st_file *F;

/* a float32 copy of tensor `pre.name`, n elements expected */
static float *get(const char *pre, const char *name, size_t n)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", pre, name);
    const cs_tensor *t = cs_st_find(F, full);
    if (!t || t->dtype != CS_F32 || (size_t)cs_tensor_numel(t) != n) {
        fprintf(stderr, "%s: %s missing or not F32[%zu]\n", cs_st_path(F), full, n);
        exit(99);
    }
    float *p = malloc(n * sizeof(float) + 1);
    if (!p) exit(99);
    memcpy(p, t->data, n * sizeof(float));
    return p;
}

static cs_tensor view(const float *p, int64_t r, int64_t c, const char *name)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = CS_F32, t.ndim = 2, t.shape[0] = r, t.shape[1] = c, t.data = p, t.name = name;
    return t;
}

static double cmp(const char *what, const float *got, const float *want, size_t n, double tol, double *worst)
{
    double r = check_max_rel(got, want, n);
    int ok = r <= tol;
    if (ok && r > *worst) *worst = r;
    printf("%-40s err %.2e%s\n", what, r, ok ? "" : " FAIL");
    failures += !ok;
    return r;
}

static void check(const char *pre, const char *name, const float *got, size_t n)
{
    char w[128];
    snprintf(w, sizeof w, "%s %s", pre, name);
    float *want = get(pre, name, n);
    cmp(w, got, want, n, TOL_OP, &worst_op);
    free(want);
}

#define MUST(x) do { if (x) { fprintf(stderr, "%s: %s\n", #x, cs_last_error()); exit(99); } } while (0)

static void t_linear(const char *pre, size_t M, size_t K, size_t N)
{
    float *x = get(pre, "x", M * K), *W = get(pre, "W", N * K), *dy = get(pre, "dy", M * N);
    float *dx = calloc(M * K, 4), *dW = calloc(N * K, 4), *db = calloc(N, 4);
    cs_tensor w = view(W, (int64_t)N, (int64_t)K, "W");
    MUST(cs_linear_backward(x, M, K, 0, &w, dy, 0, dx, 0, dW, db));
    check(pre, "dx", dx, M * K), check(pre, "dW", dW, N * K), check(pre, "db", db, N);
    free(x), free(W), free(dy), free(dx), free(dW), free(db);
}

static void t_simple(void)
{
    size_t rows = 30, C = 33, n;
    float *x = get("layernorm", "x", rows * C), *dy = get("layernorm", "dy", rows * C), *dx = calloc(rows * C, 4);
    MUST(cs_layernorm_backward(x, dy, dx, 0, rows, C, 1e-6f, NULL, NULL, NULL));
    check("layernorm", "dx", dx, rows * C);
    free(x), free(dy), free(dx);

    rows = 5, C = 17;
    x = get("layernorm_affine", "x", rows * C), dy = get("layernorm_affine", "dy", rows * C), dx = calloc(rows * C, 4);
    float *w = get("layernorm_affine", "w", C), *dw = calloc(C, 4), *db = calloc(C, 4);
    MUST(cs_layernorm_backward(x, dy, dx, 0, rows, C, 1e-6f, w, dw, db));
    check("layernorm_affine", "dx", dx, rows * C), check("layernorm_affine", "dw", dw, C);
    check("layernorm_affine", "db", db, C);
    free(x), free(dy), free(dx), free(w), free(dw), free(db);

    for (int s = 0; s < 2; s++) {
        const char *pre = s ? "silu" : "gelu";
        n = 101;
        x = get(pre, "x", n), dy = get(pre, "dy", n), dx = calloc(n, 4);
        if (s) cs_silu_backward(x, dy, dx, n);
        else cs_gelu_backward(x, dy, dx, n);
        check(pre, "dx", dx, n);
        free(x), free(dy), free(dx);
    }

    size_t N = 2, HW = 15;
    C = 17;
    x = get("grn", "x", N * HW * C), dy = get("grn", "dy", N * HW * C), dx = calloc(N * HW * C, 4);
    float *g = get("grn", "gamma", C), *dg = calloc(C, 4), *dbe = calloc(C, 4);
    MUST(cs_grn_backward(x, dy, dx, N, HW, C, g, dg, dbe));
    check("grn", "dx", dx, N * HW * C), check("grn", "dgamma", dg, C), check("grn", "dbeta", dbe, C);
    free(x), free(dy), free(dx), free(g), free(dg), free(dbe);

    size_t H = 5, Wd = 3;
    x = get("dwconv", "x", N * H * Wd * C), dy = get("dwconv", "dy", N * H * Wd * C), dx = calloc(N * H * Wd * C, 4);
    float *W = get("dwconv", "W", C * 9), *dW = calloc(C * 9, 4);
    db = calloc(C, 4);
    MUST(cs_dwconv_backward(x, dy, dx, 0, N, H, Wd, C, 3, W, dW, db));
    check("dwconv", "dx", dx, N * H * Wd * C), check("dwconv", "dW", dW, C * 9), check("dwconv", "db", db, C);
    free(x), free(dy), free(dx), free(W), free(dW), free(db);
}

/* TimestepBlock: ab = sum_i mapper_i(t_i); y = x*(1+a) + b */
static void t_tsblock(void)
{
    const char *P = "tsblock";
    size_t N = 2, HW = 15, C = 8, cr = 6, ldt = 3 * cr;
    static const char *const mn[3] = {"mapper", "mapper_sca", "mapper_crp"};
    float *x = get(P, "x", N * HW * C), *t = get(P, "t", N * ldt), *dy = get(P, "dy", N * HW * C);
    float *ab = calloc(N * 2 * C, 4), *dab = calloc(N * 2 * C, 4), *dx = calloc(N * HW * C, 4), *dt = calloc(N * ldt, 4);
    float *W[3], *B[3], *dW[3], *dB[3];
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s.weight", mn[i]);
        W[i] = get(P, nm, 2 * C * cr);
        snprintf(nm, sizeof nm, "%s.bias", mn[i]);
        B[i] = get(P, nm, 2 * C);
        dW[i] = calloc(2 * C * cr, 4), dB[i] = calloc(2 * C, 4);
        cs_tensor w = view(W[i], (int64_t)(2 * C), (int64_t)cr, "mapper"), b = view(B[i], 1, (int64_t)(2 * C), "bias");
        b.ndim = 1, b.shape[0] = (int64_t)(2 * C);
        MUST(cs_linear(t + (size_t)i * cr, N, cr, ldt, &w, &b, ab, 0, i > 0));
    }
    cs_modulate_backward(x, dy, dx, N, HW, C, ab, 2 * C, dab, dab + C);
    for (int i = 0; i < 3; i++) {
        cs_tensor w = view(W[i], (int64_t)(2 * C), (int64_t)cr, "mapper");
        MUST(cs_linear_backward(t + (size_t)i * cr, N, cr, ldt, &w, dab, 0, dt + (size_t)i * cr, 0, dW[i], dB[i]));
    }
    check(P, "dx", dx, N * HW * C), check(P, "dt", dt, N * ldt);
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "d%s.weight", mn[i]);
        check(P, nm, dW[i], 2 * C * cr);
        snprintf(nm, sizeof nm, "d%s.bias", mn[i]);
        check(P, nm, dB[i], 2 * C);
        free(W[i]), free(B[i]), free(dW[i]), free(dB[i]);
    }
    free(x), free(t), free(dy), free(ab), free(dab), free(dx), free(dt);
}

static cs_tensor vec(const float *p, size_t n)
{
    cs_tensor t = view(p, (int64_t)n, 1, "bias");
    t.ndim = 1;
    return t;
}

/* AttnBlock, forward (to get what the backward saves) then backward:
 *   xn = LN(x); qkv = xn Wqkv^T + b; kv = Wm silu(cond) + bm; ckv = kv Wkv^T + b[C:]
 *   keys/values = [image k|v, ckv]; o = MHA; y = x + o Wo^T + bo */
static void t_attnblock(void)
{
    const char *P = "attnblock";
    size_t N = 2, HW = 5, C = 8, nh = 2, Lc = 3, cc = 6, Lk = HW + Lc, R = N * HW;
    float *x = get(P, "x", R * C), *cond = get(P, "cond", N * Lc * cc), *dy = get(P, "dy", R * C);
    float *Wqkv = get(P, "in_proj_weight", 3 * C * C), *bqkv = get(P, "in_proj_bias", 3 * C);
    float *Wo = get(P, "out_proj.weight", C * C), *bo = get(P, "out_proj.bias", C);
    float *Wm = get(P, "kv_mapper.weight", C * cc), *bm = get(P, "kv_mapper.bias", C);
    cs_tensor tqkv = view(Wqkv, (int64_t)(3 * C), (int64_t)C, "in_proj"), tbqkv = vec(bqkv, 3 * C);
    cs_tensor tkv = view(Wqkv + C * C, (int64_t)(2 * C), (int64_t)C, "in_proj[k|v]"), tbkv = vec(bqkv + C, 2 * C);
    cs_tensor to = view(Wo, (int64_t)C, (int64_t)C, "out_proj");
    cs_tensor tm = view(Wm, (int64_t)C, (int64_t)cc, "kv_mapper"), tbm = vec(bm, C);
    float *xn = calloc(R * C, 4), *qkv = calloc(R * 3 * C, 4), *sc = calloc(N * Lc * cc, 4), *kv = calloc(N * Lc * C, 4),
          *ckv = calloc(N * Lc * 2 * C, 4), *kvb = calloc(N * Lk * 2 * C, 4), *o = calloc(R * C, 4);
    /* forward */
    cs_layernorm(x, xn, R, C, 1e-6f, NULL, NULL);
    MUST(cs_linear(xn, R, C, 0, &tqkv, &tbqkv, qkv, 0, 0));
    cs_silu(cond, sc, N * Lc * cc);
    MUST(cs_linear(sc, N * Lc, cc, 0, &tm, &tbm, kv, 0, 0));
    MUST(cs_linear(kv, N * Lc, C, 0, &tkv, &tbkv, ckv, 0, 0));
    for (size_t n = 0; n < N; n++) {
        cs_copy2d(kvb + n * Lk * 2 * C, 2 * C, qkv + n * HW * 3 * C + C, 3 * C, HW, 2 * C);
        cs_copy2d(kvb + (n * Lk + HW) * 2 * C, 2 * C, ckv + n * Lc * 2 * C, 2 * C, Lc, 2 * C);
        MUST(cs_attention(qkv + n * HW * 3 * C, 3 * C, kvb + n * Lk * 2 * C, 2 * C, kvb + n * Lk * 2 * C + C, 2 * C, 1,
                          HW, Lk, C, (int)nh, NULL, o + n * HW * C, C));
    }
    /* backward */
    float *dx = calloc(R * C, 4), *dO = calloc(R * C, 4), *dqkv = calloc(R * 3 * C, 4), *dkvb = calloc(N * Lk * 2 * C, 4),
          *dckv = calloc(N * Lc * 2 * C, 4), *dxn = calloc(R * C, 4), *dkv = calloc(N * Lc * C, 4),
          *dsc = calloc(N * Lc * cc, 4), *dcond = calloc(N * Lc * cc, 4);
    float *dWqkv = calloc(3 * C * C, 4), *dbqkv = calloc(3 * C, 4), *dWo = calloc(C * C, 4), *dbo = calloc(C, 4),
          *dWm = calloc(C * cc, 4), *dbm = calloc(C, 4);
    memcpy(dx, dy, R * C * 4);   /* the residual */
    MUST(cs_linear_backward(o, R, C, 0, &to, dy, 0, dO, 0, dWo, dbo));
    for (size_t n = 0; n < N; n++) {
        float *dk = dkvb + n * Lk * 2 * C;
        MUST(cs_attention_backward(qkv + n * HW * 3 * C, 3 * C, kvb + n * Lk * 2 * C, 2 * C, kvb + n * Lk * 2 * C + C,
                                   2 * C, dO + n * HW * C, C, 1, HW, Lk, C, (int)nh, dqkv + n * HW * 3 * C, dk,
                                   dk + C, 0));
        /* keys/values back to where they came from: image tokens -> the k|v columns of qkv */
        cs_copy2d(dqkv + n * HW * 3 * C + C, 3 * C, dk, 2 * C, HW, 2 * C);
        cs_copy2d(dckv + n * Lc * 2 * C, 2 * C, dk + HW * 2 * C, 2 * C, Lc, 2 * C);
    }
    MUST(cs_linear_backward(xn, R, C, 0, &tqkv, dqkv, 0, dxn, 0, dWqkv, dbqkv));
    MUST(cs_linear_backward(kv, N * Lc, C, 0, &tkv, dckv, 0, dkv, 0, dWqkv + C * C, dbqkv + C));   /* rows k|v again */
    MUST(cs_linear_backward(sc, N * Lc, cc, 0, &tm, dkv, 0, dsc, 0, dWm, dbm));
    cs_silu_backward(cond, dsc, dcond, N * Lc * cc);
    MUST(cs_layernorm_backward(x, dxn, dx, 1, R, C, 1e-6f, NULL, NULL, NULL));
    check(P, "dx", dx, R * C), check(P, "dcond", dcond, N * Lc * cc);
    check(P, "din_proj_weight", dWqkv, 3 * C * C), check(P, "din_proj_bias", dbqkv, 3 * C);
    check(P, "dout_proj.weight", dWo, C * C), check(P, "dout_proj.bias", dbo, C);
    check(P, "dkv_mapper.weight", dWm, C * cc), check(P, "dkv_mapper.bias", dbm, C);
    float *all[] = {x, cond, dy, Wqkv, bqkv, Wo, bo, Wm, bm, xn, qkv, sc, kv, ckv, kvb, o, dx, dO, dqkv, dkvb, dckv,
                    dxn, dkv, dsc, dcond, dWqkv, dbqkv, dWo, dbo, dWm, dbm};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* 3 steps of each optimizer on each shape kind, against torch after every step */
static void t_optim(void)
{
    static const struct { const char *name; int ndim; int64_t shape[4]; } sh[] = {
        {"w2", 2, {5, 7}}, {"w4", 4, {3, 4, 1, 1}}, {"gamma", 4, {1, 1, 1, 6}}, {"b1", 1, {6}}};
    for (size_t k = 0; k < sizeof sh / sizeof *sh; k++) {
        size_t n = 1;
        for (int d = 0; d < sh[k].ndim; d++) n *= (size_t)sh[k].shape[d];
        float *p0 = get(sh[k].name, "p0", n), *p = malloc(n * 4), *dp = malloc(n * 4), *dw = malloc(n * 4),
              *u = malloc(n * 4);
        for (int o = 0; o < 2; o++) {
            cs_adafactor af;
            cs_adamw aw;
            cs_adafactor_cfg afc;
            cs_adamw_cfg awc;
            cs_adafactor_cfg_default(&afc, 1e-3);
            cs_adamw_cfg_default(&awc, 1e-3);
            MUST(o ? cs_adamw_init(&aw, n) : cs_adafactor_init(&af, sh[k].ndim, sh[k].shape));
            memcpy(p, p0, n * 4);
            for (int s = 0; s < 3; s++) {
                char nm[64];
                snprintf(nm, sizeof nm, "g%d", s);
                float *g = get(sh[k].name, nm, n);
                if (o) cs_adamw_step(&aw, &awc, p, g);
                else cs_adafactor_step(&af, &afc, p, g, u);
                snprintf(nm, sizeof nm, "%s%d", o ? "adamw" : "adafactor", s);
                float *want = get(sh[k].name, nm, n);
                for (size_t i = 0; i < n; i++) dp[i] = p[i] - p0[i], dw[i] = want[i] - p0[i];
                char what[96];
                snprintf(what, sizeof what, "%s %s step %d", o ? "adamw" : "adafactor", sh[k].name, s + 1);
                cmp(what, dp, dw, n, TOL_OPT, &worst_opt);
                free(g), free(want);
            }
            if (o) cs_adamw_free(&aw);
            else cs_adafactor_free(&af);
        }
        free(p0), free(p), free(dp), free(dw), free(u);
    }
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char path[4096];
    cs_threads_set(0);
    snprintf(path, sizeof path, "%s/tests/data/grad/ops.safetensors", top ? top : ".");
    MUST(cs_st_open(path, &F));
    t_linear("linear", 17, 13, 7);
    t_linear("conv1x1", 30, 13, 7);   /* NHWC rows x [7,13,1,1] */
    t_simple();
    t_tsblock();
    t_attnblock();
    cs_st_close(F);
    snprintf(path, sizeof path, "%s/tests/data/grad/optim.safetensors", top ? top : ".");
    MUST(cs_st_open(path, &F));
    t_optim();
    cs_st_close(F);
    printf("worst passing err: ops %.2e (tolerance %.0e), optimizers %.2e (tolerance %.0e)\n", worst_op, TOL_OP,
           worst_opt, TOL_OPT);
    if (failures) fprintf(stderr, "%d comparisons with PyTorch failed\n", failures);
    return failures ? 1 : 0;
}
