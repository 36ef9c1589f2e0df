#include "grad_blocks.h"

#include "device.h"
#include "error.h"
#include "grad.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

/* ---- parameter gradients ---- */

/* fused: entry i touched in this pass; its buffer taken from the spares
 * (the smallest that fits, zeroed) when released */
static int touch(cs_grads *g, int i)
{
    cs_grad_ent *e = &g->e[i];
    if (!e->g && e->gen == g->gen)
        return cs_error(CS_EARG, "%s: gradient added after the weight was stepped (a weight shared between blocks: "
                        "no fused backward pass)", e->name ? e->name : "weight");
    if (!e->pend) {
        if (g->npend == g->cappend) {
            int cap = g->cappend ? 2 * g->cappend : 64, *p = realloc(g->pend, (size_t)cap * sizeof *p);
            if (!p) return cs_oom("the fused backward's list", (size_t)cap * sizeof *p);
            g->pend = p, g->cappend = cap;
        }
        g->pend[g->npend++] = i;
        e->pend = 1;
    }
    if (e->g) return 0;
    int best = -1;
    for (int k = 0; k < g->nspare; k++)
        if (g->spare[k].cap >= e->n && (best < 0 || g->spare[k].cap < g->spare[best].cap)) best = k;
    if (best >= 0) {
        e->g = g->spare[best].p, e->cap = g->spare[best].cap;
        g->spare[best] = g->spare[--g->nspare];
    } else {
        size_t n = e->n ? e->n : 1;   /* freed as the other entries' (cs_grads_free) */
        if (!(e->g = cs_dev ? cs_act_alloc(n) : malloc(n * sizeof(float))))
            return cs_oom("a parameter gradient", n * sizeof(float));
        e->cap = n;
    }
    cs_fill(e->g, 0.0f, e->n);
    return 0;
}

float *cs_grads_of(cs_grads *g, const cs_tensor *t, int *rc)
{
    if (!g->n && !g->sink) g->dev = cs_dev;   /* a sink's owner set it */
    if (g->dev != (const void *)cs_dev) {
        cs_error(CS_EARG, "%s: the gradients live in %s memory, this backward runs on the %s", t->name ? t->name : "weight",
                 g->dev ? "device" : "host", cs_dev ? "device" : "host");
        if (rc) *rc = CS_EARG;
        return NULL;
    }
    for (int i = 0; i < g->n; i++) {
        if (g->e[i].key != t->data) continue;
        int r = g->done ? touch(g, i) : 0;
        if (r && rc) *rc = r;
        return r ? NULL : g->e[i].g;
    }
    if (g->only) return NULL;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        cs_grad_ent *e = realloc(g->e, (size_t)cap * sizeof *e);
        if (!e) goto oom;
        g->e = e, g->cap = cap;
    }
    size_t n = (size_t)cs_tensor_numel(t);
    g->e[g->n] = (cs_grad_ent){t->data, t->name, n, NULL, n ? n : 1, 0, 0};
    if (g->done) {   /* from the spares */
        int r = touch(g, g->n);
        if (r) {
            if (rc) *rc = r;
            return NULL;
        }
        return g->e[g->n++].g;
    }
    float *p = cs_dev ? cs_act_calloc(n ? n : 1) : calloc(n ? n : 1, sizeof *p);
    if (!p) goto oom;
    g->e[g->n].g = p;
    return g->e[g->n++].g;
oom:
    cs_oom("a parameter gradient", (size_t)cs_tensor_numel(t) * sizeof(float));
    if (rc) *rc = CS_ENOMEM;
    return NULL;
}

int cs_grads_done(cs_grads *g)
{
    if (!g->done || !g->npend) return 0;
    if (g->nspare + g->npend > g->capspare) {
        int cap = g->nspare + g->npend + 16;
        struct cs_grad_spare *s = realloc(g->spare, (size_t)cap * sizeof *s);
        if (!s) return cs_oom("the fused backward's spares", (size_t)cap * sizeof *s);
        g->spare = s, g->capspare = cap;
    }
    int rc = g->done(g->done_ctx, g, g->pend, g->npend);
    for (int k = 0; k < g->npend; k++) {   /* released even on failure: the step is lost either way */
        cs_grad_ent *e = &g->e[g->pend[k]];
        g->spare[g->nspare++] = (struct cs_grad_spare){e->g, e->cap};
        e->g = NULL, e->pend = 0, e->gen = g->gen;
    }
    g->npend = 0;
    return rc;
}

const cs_grad_ent *cs_grads_find(const cs_grads *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (g->e[i].name && !strcmp(g->e[i].name, name)) return &g->e[i];
    return NULL;
}

/* device buffers go through their own op set: the call may come outside device mode */
int cs_grads_zero(cs_grads *g)
{
    const cs_dev_ops *d = g->dev;
    for (int i = 0; i < g->n; i++) {
        if (!g->e[i].g) continue;   /* released (fused) */
        if (!d) {
            memset(g->e[i].g, 0, g->e[i].n * sizeof(float));
            continue;
        }
        int rc = d->fill(g->e[i].g, 0.0f, g->e[i].n);
        if (rc) return cs_error(rc < 0 ? rc : CS_EDEVICE, "zeroing the gradients on the device failed: %s", d->errmsg());
    }
    return 0;
}

void cs_grads_free(cs_grads *g)
{
    const cs_dev_ops *d = g->dev;
    for (int i = 0; i < g->n; i++)
        if (g->e[i].g) d ? d->free(g->e[i].g) : free(g->e[i].g);
    for (int i = 0; i < g->nspare; i++) d ? d->free(g->spare[i].p) : free(g->spare[i].p);
    free(g->e), free(g->pend), free(g->spare);
    memset(g, 0, sizeof *g);
}

int cs_linear_backward_g(cs_grads *g, const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W,
                         const float *dy, size_t ldy, float *dx, int acc, float *dW, float *db)
{
    if (!dW && g->sink) {
        int rc = g->sink(g->sink_ctx, W, x, M, K, ldx ? ldx : K, dy, ldy ? ldy : (size_t)W->shape[0], dx, acc);
        if (rc != 1) return rc || !db ? rc : cs_linear_backward(x, M, K, ldx, W, dy, ldy, NULL, 0, NULL, db);
    }
    return cs_linear_backward(x, M, K, ldx, W, dy, ldy, dx, acc, dW, db);
}

/* ---- blocks ---- */

/* gradient buffers of a tensor: *p = buffer or NULL (frozen); rc on OOM */
#define GRAD(p, t) float *p = cs_grads_of(g, (t), &rc)

/* Backward of x += fc2(GRN(GELU(fc1(in)))) given d = dL/d(out) (rows of c):
 * din [rows, cin] written (NULL: not wanted). Uses the kept slots 2, 6, 7. */
static int mlp_backward(const cs_resblock *b, const float *in, size_t cin, const float *d, size_t N, size_t HW,
                        cs_ws *ws, cs_ws *bws, cs_grads *g, float *din)
{
    size_t rows = N * HW, c = (size_t)b->c, c4 = 4 * c;
    int rc = 0;
    const float *h = ws->p[2], *ge = ws->p[6], *gr = ws->p[7];
    float *dr = cs_ws_get(bws, 1, rows * c4), *dg = cs_ws_get(bws, 2, rows * c4);
    if (!dr || !dg) return CS_ENOMEM;
    GRAD(gw2, &b->fc2_w);
    GRAD(gb2, &b->fc2_b);
    GRAD(ggam, &b->gamma);
    GRAD(gbet, &b->beta);
    GRAD(gw1, &b->fc1_w);
    GRAD(gb1, &b->fc1_b);
    if (rc) return rc;
    if ((rc = cs_linear_backward_g(g, gr, rows, c4, 0, &b->fc2_w, d, 0, dr, 0, gw2, gb2))) return rc;
    const float *gam = cs_weight_f32(&b->gamma, 2);
    if (!gam) return CS_ENOMEM;
    if ((rc = cs_grn_backward(ge, dr, dg, N, HW, c4, gam, ggam, gbet))) return rc;
    cs_gelu_backward(h, dg, dg, rows * c4);
    return cs_linear_backward_g(g, in, rows, cin, 0, &b->fc1_w, dg, 0, din, 0, gw1, gb1);
}

static int resblock_backward(const cs_resblock *b, const float *x, float *d, size_t N, size_t H, size_t W,
                             int has_skip, float *dskip, cs_ws *ws, cs_ws *bws, cs_grads *g)
{
    size_t c = (size_t)b->c, cs = has_skip ? (size_t)b->c_skip : 0, rows = N * H * W, cin = c + cs;
    int rc = 0;
    /* FeedForwardBlock: LN out in slot 0; ResBlock: depthwise out in 0, LN out in 8, [LN | skip] in 1 */
    const float *in = !b->has_dw ? ws->p[0] : cs ? ws->p[1] : ws->p[8];
    float *din = cs_ws_get(bws, 3, rows * cin), *dln = cs ? cs_ws_get(bws, 4, rows * c) : din;
    float *dz = b->has_dw ? cs_ws_get(bws, 5, rows * c) : NULL;
    if (!din || !dln || (b->has_dw && !dz)) return CS_ENOMEM;
    if ((rc = mlp_backward(b, in, cin, d, N, H * W, ws, bws, g, din))) return rc;
    if (cs) {   /* split [dLN | dskip]; dskip += through ops (device mode: no host loops) */
        cs_copy2d(dln, c, din, cin, rows, c);
        if (dskip) {
            float *ds = cs_ws_get(bws, 6, rows * cs);
            if (!ds) return CS_ENOMEM;
            cs_copy2d(ds, cs, din + c, cin, rows, cs);
            cs_axpy(dskip, ds, 1.0f, rows * cs);   /* x * 1 is exact: the same bits as += */
        }
    }
    if (!b->has_dw) return cs_layernorm_backward(x, dln, d, 1, rows, c, 1e-6f, NULL, NULL, NULL);
    if ((rc = cs_layernorm_backward(ws->p[0], dln, dz, 0, rows, c, 1e-6f, NULL, NULL, NULL))) return rc;
    GRAD(gdw, &b->dw_w);
    GRAD(gdb, &b->dw_b);
    if (rc) return rc;
    const float *w = cs_weight_f32(&b->dw_w, 3);
    if (!w) return CS_ENOMEM;
    return cs_dwconv_backward(x, dz, d, 1, N, H, W, c, b->k, w, gdw, gdb);
}

static int tsblock_backward(const cs_tsblock *b, const float *x, float *d, size_t N, size_t HW, const float *t,
                            size_t ldt, float *dt, cs_ws *ws, cs_ws *bws, cs_grads *g)
{
    size_t c = (size_t)b->c, cr = (size_t)b->c_r;
    float *dab = cs_ws_get(bws, 0, N * 2 * c);
    if (!dab) return CS_ENOMEM;
    cs_modulate_backward(x, d, d, N, HW, c, ws->p[0], 2 * c, dab, dab + c);
    int rc = 0;
    for (int i = 0; i <= b->nconds && !rc; i++) {
        GRAD(gw, &b->w[i]);
        GRAD(gb, &b->b[i]);
        if (!rc)
            rc = cs_linear_backward_g(g, t + (size_t)i * cr, N, cr, ldt, &b->w[i], dab, 0,
                                      dt ? dt + (size_t)i * cr : NULL, 1, gw, gb);
    }
    return rc;
}

static int attnblock_backward(const cs_attnblock *b, const float *x, float *d, size_t N, size_t HW, const float *cond,
                              size_t Lc, float *dcond, cs_ws *ws, cs_ws *bws, cs_grads *g)
{
    if (!b->packed)
        return cs_error(CS_EUNSUP, "%s: AttnBlock backward needs the packed in_proj (official keys)",
                        b->wo.name ? b->wo.name : "");
    size_t c = (size_t)b->c, cc = (size_t)b->c_cond, R = N * HW, Ls = b->self_attn ? HW : 0, Lk = Ls + Lc;
    const float *xn = ws->p[0], *qkv = ws->p[1], *sc = ws->p[3], *kv = ws->p[4], *kvb = ws->p[5], *o = ws->p[6];
    float *dO = cs_ws_get(bws, 0, R * c), *dqkv = cs_ws_get(bws, 1, R * 3 * c), *dkvb = cs_ws_get(bws, 2, N * Lk * 2 * c),
          *dckv = cs_ws_get(bws, 3, N * Lc * 2 * c + 1), *dxn = cs_ws_get(bws, 4, R * c), *dkv = cs_ws_get(bws, 5, N * Lc * c + 1),
          *dsc = cs_ws_get(bws, 6, N * Lc * cc + 1);
    if (!dO || !dqkv || !dkvb || !dckv || !dxn || !dkv || !dsc) return CS_ENOMEM;
    int rc = 0;
    GRAD(gwo, &b->wo);
    GRAD(gbo, &b->bo);
    GRAD(gwqkv, &b->wqkv);
    GRAD(gbqkv, &b->bqkv);
    GRAD(gwm, &b->kv_w);
    GRAD(gbm, &b->kv_b);
    if (rc) return rc;
    if ((rc = cs_linear_backward_g(g, o, R, c, 0, &b->wo, d, 0, dO, 0, gwo, gbo))) return rc;
    for (size_t n = 0; n < N; n++) {
        const float *k = kvb + n * Lk * 2 * c;
        float *dk = dkvb + n * Lk * 2 * c;
        rc = cs_attention_backward(qkv + n * HW * 3 * c, 3 * c, k, 2 * c, k + c, 2 * c, dO + n * HW * c, c, 1, HW, Lk,
                                   c, b->nhead, dqkv + n * HW * 3 * c, dk, dk + c, 0);
        if (rc) return rc;
        /* keys/values back where they came from: image tokens -> k|v columns of qkv */
        if (Ls) cs_copy2d(dqkv + n * HW * 3 * c + c, 3 * c, dk, 2 * c, HW, 2 * c);
        else {   /* no self-attention: the k|v columns get nothing (copied from zeros: ops only) */
            float *z = cs_ws_get(bws, 7, HW * 2 * c);
            if (!z) return CS_ENOMEM;
            if (!n) cs_fill(z, 0.0f, HW * 2 * c);
            cs_copy2d(dqkv + n * HW * 3 * c + c, 3 * c, z, 2 * c, HW, 2 * c);
        }
        if (Lc) cs_copy2d(dckv + n * Lc * 2 * c, 2 * c, dk + Ls * 2 * c, 2 * c, Lc, 2 * c);
    }
    if ((rc = cs_linear_backward_g(g, xn, R, c, 0, &b->wqkv, dqkv, 0, dxn, 0, gwqkv, gbqkv))) return rc;
    if (Lc) {   /* the k|v rows of in_proj once more, on the mapped conditioning */
        cs_tensor wkv = b->wqkv;
        wkv.shape[0] = 2 * (int64_t)c;
        wkv.data = b->wk.data;
        rc = cs_linear_backward_g(g, kv, N * Lc, c, 0, &wkv, dckv, 0, dkv, 0, gwqkv ? gwqkv + c * c : NULL,
                                  gbqkv ? gbqkv + c : NULL);
        if (!rc) rc = cs_linear_backward_g(g, sc, N * Lc, cc, 0, &b->kv_w, dkv, 0, dcond ? dsc : NULL, 0, gwm, gbm);
        if (rc) return rc;
        if (dcond) {
            cs_silu_backward(cond, dsc, dsc, N * Lc * cc);
            cs_axpy(dcond, dsc, 1.0f, N * Lc * cc);
        }
    }
    return cs_layernorm_backward(x, dxn, d, 1, R, c, 1e-6f, NULL, NULL, NULL);
}

int cs_block_backward(const cs_block *b, const float *x, float *d, size_t N, size_t H, size_t W, const float *skip,
                      float *dskip, const float *t, size_t ldt, float *dt, const float *cond, size_t Lc, float *dcond,
                      cs_grads *g, cs_ws *ws, cs_ws *bws)
{
    size_t c = (size_t)(b->type == 'T' ? b->u.ts.c : b->type == 'A' ? b->u.attn.c : b->u.res.c), n = N * H * W * c;
    /* recompute the forward on a copy of x, keeping its intermediates */
    float *xc = cs_ws_get(bws, 8, n);
    if (!xc) return CS_ENOMEM;
    cs_copy(xc, x, n);
    ws->keep = 1;
    int rc = cs_block_forward(b, xc, N, H, W, skip, t, ldt, cond, Lc, ws);
    if (rc) return rc;
    switch (b->type) {
    case 'C':
    case 'F': return resblock_backward(&b->u.res, x, d, N, H, W, skip != NULL, dskip, ws, bws, g);
    case 'T': return tsblock_backward(&b->u.ts, x, d, N, H * W, t, ldt, dt, ws, bws, g);
    case 'A': return attnblock_backward(&b->u.attn, x, d, N, H * W, cond, Lc, dcond, ws, bws, g);
    }
    return cs_error(CS_EARG, "unknown block type '%c'", b->type);
}
