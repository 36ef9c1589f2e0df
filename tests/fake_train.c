/* The fake device's training ops (see tests/fake_backend.c): the backward
 * ops of grad.h and the optimizer ops of optim.h, run by the CPU's
 * functions on the real bytes. They are optional in the op table: built
 * with FAKE_NO_BACKWARD, the plugin leaves them out (it still loads, and
 * grad.h's functions give CS_EUNSUP). */
#include "fake_backend.h"

#include "cpu.h"
#include "error.h"
#include "grad.h"
#include "optim.h"
#include "ops.h"

#ifndef FAKE_NO_BACKWARD


static int sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                    float *C, size_t ldc)
{
    fake_call c = fake_enter("sgemm_tn");
    const float *rA = dv2(&c, A, K, M, lda, "A"), *rB = dv2(&c, B, K, N, ldb, "B");
    float *rC = dv2(&c, C, M, N, ldc, "C");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_sgemm_tn(M, N, K, rA, lda, rB, ldb, beta, rC, ldc));
    return fake_done(&c, rc);
}

static int linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                           size_t ldy, float *dx, int acc, float *dW, float *db)
{
    fake_call c = fake_enter("linear_backward");
    size_t N = (size_t)W->shape[0], lx = ldx ? ldx : K, ly = ldy ? ldy : N;
    const float *rx = dW ? dv2(&c, x, M, K, lx, "x") : opt(&c, x, 0, "x"), *rdy = dv2(&c, dy, M, N, ly, "dy");
    float *rdx = dx ? dv2(&c, dx, M, K, lx, "dx") : NULL, *rdW = opt(&c, dW, N * K, "dW"), *rdb = opt(&c, db, N, "db");
    fake_host_only(&c, W->data, "W");
    int rc = 0;
    cs_tensor tw;
    W = fake_rw_sub(W, &tw);
    if (!c.rc) ON_HOST(rc = cs_linear_backward(rx, M, K, ldx, W, rdy, ldy, rdx, acc, rdW, rdb));
    return fake_done(&c, rc);
}

static int layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                              const float *w, float *dw, float *db)
{
    fake_call c = fake_enter("layernorm_backward");
    const float *rx = dv(&c, x, rows * C, "x"), *rdy = dv(&c, dy, rows * C, "dy"), *rw = opt(&c, w, C, "w");
    float *rdx = opt(&c, dx, rows * C, "dx"), *rdw = opt(&c, dw, C, "dw"), *rdb = opt(&c, db, C, "db");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_layernorm_backward(rx, rdy, rdx, acc, rows, C, eps, rw, rdw, rdb));
    return fake_done(&c, rc);
}

static int gelu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    fake_call c = fake_enter("gelu_backward");
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy");
    float *rdx = dv(&c, dx, n, "dx");
    if (!c.rc) ON_HOST(cs_gelu_backward(rx, rdy, rdx, n));
    return c.rc;
}

static int silu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    fake_call c = fake_enter("silu_backward");
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy");
    float *rdx = dv(&c, dx, n, "dx");
    if (!c.rc) ON_HOST(cs_silu_backward(rx, rdy, rdx, n));
    return c.rc;
}

static int grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                        float *dgamma, float *dbeta)
{
    fake_call c = fake_enter("grn_backward");
    size_t n = N * HW * C;
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy"), *rg = dv(&c, gamma, C, "gamma");
    float *rdx = opt(&c, dx, n, "dx"), *rdg = opt(&c, dgamma, C, "dgamma"), *rdb = opt(&c, dbeta, C, "dbeta");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_grn_backward(rx, rdy, rdx, N, HW, C, rg, rdg, rdb));
    return fake_done(&c, rc);
}

static int modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *a,
                             size_t ldab, float *da, float *db)
{
    fake_call c = fake_enter("modulate_backward");
    size_t n = N * HW * C;
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy"),
                *ra = dx ? dv2(&c, a, N, C, ldab, "a") : NULL;
    float *rdx = opt(&c, dx, n, "dx"), *rda = da ? dv2(&c, da, N, C, ldab, "da") : NULL,
          *rdb = db ? dv2(&c, db, N, C, ldab, "db") : NULL;
    if (!c.rc) ON_HOST(cs_modulate_backward(rx, rdy, rdx, N, HW, C, ra, ldab, rda, rdb));
    return c.rc;
}

static int dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C,
                           int k, const float *w, float *dw, float *db)
{
    fake_call c = fake_enter("dwconv_backward");
    size_t n = N * H * W * C, kk = (size_t)k * (size_t)k;
    const float *rx = dw ? dv(&c, x, n, "x") : NULL, *rdy = dv(&c, dy, n, "dy"), *rw = dx ? dv(&c, w, C * kk, "w") : NULL;
    float *rdx = opt(&c, dx, n, "dx"), *rdw = opt(&c, dw, C * kk, "dw"), *rdb = opt(&c, db, C, "db");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_dwconv_backward(rx, rdy, rdx, acc, N, H, W, C, k, rw, rdw, rdb));
    return fake_done(&c, rc);
}

static int attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                              const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                              float *dq, float *dk, float *dv, int acc)
{
    fake_call c = fake_enter("attention_backward");
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk = dv2(&c, k, N * Lk, C, ldk, "k"),
                *rv = dv2(&c, v, N * Lk, C, ldv, "v"), *rdo = dv2(&c, do_, N * Lq, C, ldo, "do");
    float *rdq = dq ? dv2(&c, dq, N * Lq, C, ldq, "dq") : NULL, *rdk = dk ? dv2(&c, dk, N * Lk, C, ldk, "dk") : NULL,
          *rdv = dv ? dv2(&c, dv, N * Lk, C, ldv, "dv") : NULL;
    int rc = 0;
    if (!c.rc)
        ON_HOST(rc = cs_attention_backward(rq, ldq, rk, ldk, rv, ldv, rdo, ldo, N, Lq, Lk, C, nhead, rdq, rdk, rdv, acc));
    return fake_done(&c, rc);
}

/* ---- the optimizer ops (optim.h), run by the CPU's functions ---- */

static int sumsq(const float *x, size_t n, double *out)
{
    fake_call c = fake_enter("sumsq");
    const float *rx = dv(&c, x, n, "x");
    double *ro = fake_real_bytes(&c, out, sizeof(double), "out");
    if (!c.rc) *ro = cs_sumsq(rx, n);
    return c.rc;
}

static int adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v)
{
    fake_call c = fake_enter("adamw_update");
    fake_host_only(&c, k, "k");
    float *rp = dv(&c, p, n, "p"), *rm = dv(&c, m, n, "m"), *rv = dv(&c, v, n, "v");
    const float *rg = dv(&c, g, n, "g");
    if (!c.rc) cs_adamw_update(k, n, rp, rg, rm, rv);
    return c.rc;
}

static int adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g,
                            float *row, float *col, float *v, float *u)
{
    fake_call c = fake_enter("adafactor_update");
    size_t n = B * R * C;
    fake_host_only(&c, k, "k");
    float *rp = dv(&c, p, n, "p"), *ru = dv(&c, u, n, "u");
    const float *rg = dv(&c, g, n, "g");
    float *rr = row ? dv(&c, row, B * R, "row") : NULL, *rc = row ? dv(&c, col, B * C, "col") : NULL,
          *rv = row ? NULL : dv(&c, v, n, "v");
    if (!c.rc) cs_adafactor_update(k, B, R, C, rp, rg, rr, rc, rv, ru);
    return c.rc;
}
#endif

void fake_train_ops(cs_dev_ops *o)
{
#ifndef FAKE_NO_BACKWARD
    o->sgemm_tn = sgemm_tn, o->linear_backward = linear_backward, o->layernorm_backward = layernorm_backward;
    o->gelu_backward = gelu_backward, o->silu_backward = silu_backward, o->grn_backward = grn_backward;
    o->modulate_backward = modulate_backward, o->dwconv_backward = dwconv_backward;
    o->attention_backward = attention_backward;
    o->sumsq = sumsq, o->adamw_update = adamw_update, o->adafactor_update = adafactor_update;
#else
    (void)o;
#endif
}
