/* The cross-backend op test's backward ops (grad.h; tests/test_backend_ops.c
 * says how each is compared). */
#include "backend_ops.h"

#include "cpu.h"
#include "device.h"
#include "error.h"
#include "grad.h"
#include "optim.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    g[1] = dupf(g[0], n);
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

/* weight_to_f32 (a LoRA's W0 widened into W' from the device's copy in its
 * own dtype): elements [off, off + n) of a rows x cols weight, exact */
static void t_weight_to_f32(cs_dtype dt, int64_t rows, int64_t cols, size_t off, size_t n)
{
    if (!has_op(D->weight_to_f32 != NULL, "weight_to_f32")) return;
    cs_tensor w = weight(dt, "w0", rows, cols, 0, 0);
    float *all = malloc((size_t)(rows * cols) * sizeof *all + 1), *y[2];
    if (!all || cs_tensor_to_f32(&w, all)) exit(99);
    pair(y, n);
    int rc[2] = {0, 0};
    memcpy(y[0], all + off, n * sizeof *all);   /* the CPU's widening */
    begin(1);
    float *py = out(y[1], n);
    char err[256] = "";
    rc[1] = argrc() ? argrc() : D->weight_to_f32(&w, off, n, py, err, sizeof err);
    if (rc[1] && err[0]) printf("# weight_to_f32: %s\n", err);
    rc[1] = end(rc[1], "weight_to_f32");
    char sh[96];
    snprintf(sh, sizeof sh, "%s [%lld, %lld] [%zu, %zu)", dtn(dt), (long long)rows, (long long)cols, off, off + n);
    report_g("weight_to_f32", "w", sh, y, n, rc);
    free_pair(y), free(all);
    drop(&w);
}

/* ---- the optimizer ops (a training step on the device): the same step
 * on the CPU's arrays and the device's, p and the states compared ---- */

/* positive random states: exponential averages of squares */
static float *rnd_pos(size_t n)
{
    float *x = rnd(n);
    for (size_t i = 0; i < n; i++) x[i] = fabsf(x[i]) + 0.05f;
    return x;
}

/* an Adafactor step of a [B, R, C] tensor (factored) or of n = B R C values (not) */
static void t_adafactor(size_t B, size_t R, size_t C, int factored, double wd)
{
    if (!has_op(D->adafactor_update != NULL, "adafactor_update")) return;
    size_t n = B * R * C, nr = factored ? B * R : 0, nc = factored ? B * C : 0, nv = factored ? 0 : n;
    cs_adafactor s = {.step = 2};   /* the coefficients of a third step */
    cs_adafactor_cfg c;
    cs_adafactor_cfg_default(&c, 1e-2);
    c.weight_decay = wd;
    cs_adafactor_k k;
    cs_adafactor_coef(&s, &c, &k);
    float *g = rnd(n), *p[2], *row[2] = {0}, *col[2] = {0}, *v[2] = {0}, *u = malloc(n * sizeof *u);
    if (!u) exit(99);
    pair(p, n);
    if (factored) row[0] = rnd_pos(nr), row[1] = dupf(row[0], nr), col[0] = rnd_pos(nc), col[1] = dupf(col[0], nc);
    else v[0] = rnd_pos(nv), v[1] = dupf(v[0], nv);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pg = in(g, n);
        float *pp = inout(p[m], n), *pr = factored ? inout(row[m], nr) : NULL, *pc = factored ? inout(col[m], nc) : NULL;
        float *pv = factored ? NULL : inout(v[m], nv), *pu = m ? out(u, n) : u;
        rc[m] = argrc();
        if (!rc[m] && m) rc[m] = D->adafactor_update(&k, B, R, C, pp, pg, pr, pc, pv, pu);
        if (!rc[m] && !m) cs_adafactor_update(&k, B, R, C, pp, pg, pr, pc, pv, pu);
        rc[m] = end(rc[m], "adafactor_update");
    }
    char sh[96];
    snprintf(sh, sizeof sh, "[%zu, %zu, %zu] %s wd=%g", B, R, C, factored ? "factored" : "full", wd);
    report_g("adafactor", "p", sh, p, n, rc);
    if (factored) report_g("adafactor", "row", sh, row, nr, rc), report_g("adafactor", "col", sh, col, nc, rc);
    else report_g("adafactor", "v", sh, v, nv, rc);
    free_pair(p), free_pair(row), free_pair(col), free_pair(v), free(g), free(u);
}

static void t_adamw(size_t n)
{
    if (!has_op(D->adamw_update != NULL, "adamw_update")) return;
    cs_adamw s = {.step = 2};
    cs_adamw_cfg c;
    cs_adamw_cfg_default(&c, 1e-2);
    cs_adamw_k k;
    cs_adamw_coef(&s, &c, &k);
    float *g = rnd(n), *p[2], *mm[2], *v[2];
    pair(p, n), pair(mm, n);
    v[0] = rnd_pos(n), v[1] = dupf(v[0], n);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        const float *pg = in(g, n);
        float *pp = inout(p[m], n), *pm = inout(mm[m], n), *pv = inout(v[m], n);
        rc[m] = argrc();
        if (!rc[m] && m) rc[m] = D->adamw_update(&k, n, pp, pg, pm, pv);
        if (!rc[m] && !m) cs_adamw_update(&k, n, pp, pg, pm, pv);
        rc[m] = end(rc[m], "adamw_update");
    }
    char sh[32];
    snprintf(sh, sizeof sh, "n=%zu", n);
    report_g("adamw", "p", sh, p, n, rc), report_g("adamw", "m", sh, mm, n, rc), report_g("adamw", "v", sh, v, n, rc);
    free_pair(p), free_pair(mm), free_pair(v), free(g);
}

static void optim_ops(void)
{
    t_adafactor(1, 37, 1025, 1, 0);   /* rows longer than a warp's stride */
    t_adafactor(3, 63, 17, 1, 0.01);  /* several images; weight decay */
    t_adafactor(1, 2049, 33, 1, 0);   /* columns over many row groups */
    t_adafactor(3075, 1, 1, 1, 0);    /* a 1x1 conv's [O, I, 1, 1]: one-element rows and columns */
    t_adafactor(2, 3, 3, 1, 0);       /* a depthwise 3x3 */
    t_adafactor(1, 1, 1025, 0, 0);    /* a bias: not factored */
    t_adafactor(1, 1, 1, 0, 0.01);
    t_adamw(1);
    t_adamw(3 * 1025 + 1);
}

void grad_ops(void)
{
    t_weight_to_f32(CS_BF16, 63, 17, 0, 63 * 17);
    t_weight_to_f32(CS_BF16, 1025, 63, 17 * 63, 1000 * 63);   /* the rows of one q/k/v module */
    t_weight_to_f32(CS_F16, 17, 3, 3, 1);
    t_weight_to_f32(CS_F32, 3, 1025, 1025, 1025);
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
    optim_ops();
}
