#include "blocks.h"

#include "kernels.h"
#include "cancel.h"
#include "device.h"
#include "error.h"
#include "ops.h"

#include <stdio.h>
#include <string.h>

/* ---- workspace ---- */

/* frees with the allocator the buffers came from */
static void ws_release(cs_ws *ws)
{
    const cs_dev_ops *d = ws->dev;
    if (d) cs_dev_buffers_moved();
    for (int i = 0; i < CS_WS_SLOTS; i++)
        if (ws->p[i]) d ? d->free(ws->p[i]) : cs_free(ws->p[i]);
    memset(ws, 0, sizeof *ws);
}

float *cs_ws_get(cs_ws *ws, int slot, size_t n)
{
    if (ws->dev != (const void *)cs_dev) {   /* the model moved between host and device */
        int keep = ws->keep;
        ws_release(ws);
        ws->dev = cs_dev, ws->keep = keep;
    }
    if (ws->cap[slot] < n) {
        if (cs_dev_recording()) {   /* fails the recording; the forward then runs op by op */
            cs_error(CS_EUNSUP, "a workspace grows while a forward is recorded");
            return NULL;
        }
        if (cs_dev) cs_dev_buffers_moved();
        cs_act_free(ws->p[slot]);
        ws->p[slot] = cs_act_alloc(n);
        ws->cap[slot] = ws->p[slot] ? n : 0;
    }
    return ws->p[slot];
}

void cs_ws_free(cs_ws *ws) { ws_release(ws); }

size_t cs_ws_bytes(const cs_ws *ws)
{
    size_t s = 0;
    for (int i = 0; i < CS_WS_SLOTS; i++) s += ws->cap[i] * sizeof(float);
    return s;
}

/* ---- binding ---- */

static int req(cs_wmap *m, cs_tensor *out, const char *p, const char *leaf, int ndim, const int64_t *dims)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", p, leaf);
    return cs_wmap_req(m, out, name, ndim, dims);
}

/* channelwise MLP shared by ResBlock and FeedForwardBlock */
static int bind_mlp(cs_resblock *b, cs_wmap *m, const char *p, int64_t c, int64_t cin)
{
    int e = 0;
    e |= req(m, &b->fc1_w, p, "channelwise.0.weight", 2, (int64_t[]){4 * c, cin});
    e |= req(m, &b->fc1_b, p, "channelwise.0.bias", 1, (int64_t[]){4 * c});
    e |= req(m, &b->gamma, p, "channelwise.2.gamma", 4, (int64_t[]){1, 1, 1, 4 * c});
    e |= req(m, &b->beta, p, "channelwise.2.beta", 4, (int64_t[]){1, 1, 1, 4 * c});
    e |= req(m, &b->fc2_w, p, "channelwise.4.weight", 2, (int64_t[]){c, 4 * c});
    e |= req(m, &b->fc2_b, p, "channelwise.4.bias", 1, (int64_t[]){c});
    return e ? -1 : 0;
}

int cs_resblock_bind(cs_resblock *b, cs_wmap *m, const char *p, int c, int c_skip)
{
    memset(b, 0, sizeof *b);
    b->c = c, b->c_skip = c_skip, b->has_dw = 1, b->k = 3;
    char name[256];
    snprintf(name, sizeof name, "%sdepthwise.weight", p);
    const cs_tensor *dw = cs_wmap_peek(m, name);   /* the kernel size is the constructor's kernel_size */
    if (dw && dw->ndim == 4 && dw->shape[2] == dw->shape[3] && (dw->shape[2] & 1) && dw->shape[2] < 64)
        b->k = (int)dw->shape[2];
    int e = 0;
    e |= req(m, &b->dw_w, p, "depthwise.weight", 4, (int64_t[]){c, 1, b->k, b->k});
    e |= req(m, &b->dw_b, p, "depthwise.bias", 1, (int64_t[]){c});
    e |= bind_mlp(b, m, p, c, (int64_t)c + c_skip);
    return e ? -1 : 0;
}

int cs_ffblock_bind(cs_resblock *b, cs_wmap *m, const char *p, int c)
{
    memset(b, 0, sizeof *b);
    b->c = c;
    return bind_mlp(b, m, p, c, c);
}

int cs_tsblock_bind(cs_tsblock *b, cs_wmap *m, const char *p, int c, int c_r, int nconds, const char *const *conds)
{
    memset(b, 0, sizeof *b);
    if (nconds > CS_MAX_TCONDS) {
        cs_wmap_problem(m, "%s: %d timestep conditions (at most %d supported)", p, nconds, CS_MAX_TCONDS);
        return -1;
    }
    b->c = c, b->c_r = c_r, b->nconds = nconds;
    int e = 0;
    for (int i = 0; i <= nconds; i++) {
        char w[96], bb[96];
        snprintf(w, sizeof w, i ? "mapper_%s.weight" : "mapper.weight", i ? conds[i - 1] : "");
        snprintf(bb, sizeof bb, i ? "mapper_%s.bias" : "mapper.bias", i ? conds[i - 1] : "");
        e |= req(m, &b->w[i], p, w, 2, (int64_t[]){2 * (int64_t)c, c_r});
        e |= req(m, &b->b[i], p, bb, 1, (int64_t[]){2 * (int64_t)c});
    }
    return e ? -1 : 0;
}

/* rows [r0, r0+nr) of a 2-D (or 1-D) tensor, as a view */
static cs_tensor row_view(const cs_tensor *t, int64_t r0, int64_t nr)
{
    cs_tensor v = *t;
    int64_t row = t->ndim > 1 ? t->shape[1] : 1;
    v.data = (const unsigned char *)t->data + (size_t)(r0 * row) * cs_dtype_size(t->dtype);
    v.shape[0] = nr;
    return v;
}

/* Finds the first present of two spellings p+a, p+b. */
static const cs_tensor *find2(cs_wmap *m, const char *p, const char *a, const char *b, char *name, size_t len)
{
    snprintf(name, len, "%s%s", p, a);
    const cs_tensor *t = cs_wmap_find(m, name);
    if (t || !b) return t;
    char alt[256];
    snprintf(alt, sizeof alt, "%s%s", p, b);
    t = cs_wmap_find(m, alt);
    if (t) snprintf(name, len, "%s", alt);
    return t;
}

int cs_attnblock_bind(cs_attnblock *b, cs_wmap *m, const char *p, int c, int c_cond, int nhead)
{
    memset(b, 0, sizeof *b);
    b->c = c, b->c_cond = c_cond, b->nhead = nhead, b->self_attn = 1;
    int64_t C = c;
    int e = 0;
    char name[256];
    if (nhead <= 0 || c % nhead) {
        cs_wmap_problem(m, "%sattention: %d channels do not split into %d heads", p, c, nhead);
        e = -1;
    }
    const cs_tensor *t = find2(m, p, "attention.attn.in_proj_weight", NULL, name, sizeof name);
    if (t) {   /* official packed layout: rows q | k | v */
        b->packed = 1;
        e |= cs_wmap_check(m, &b->wqkv, t, name, 2, (int64_t[]){3 * C, C});
        e |= req(m, &b->bqkv, p, "attention.attn.in_proj_bias", 1, (int64_t[]){3 * C});
        if (!e) {
            b->wq = row_view(&b->wqkv, 0, C), b->wk = row_view(&b->wqkv, C, C), b->wv = row_view(&b->wqkv, 2 * C, C);
            b->bq = row_view(&b->bqkv, 0, C), b->bk = row_view(&b->bqkv, C, C), b->bv = row_view(&b->bqkv, 2 * C, C);
        }
    } else {   /* diffusers (attention.to_q) or ComfyUI (attention.attn.to_q) */
        static const char *const qkv[3] = {"q", "k", "v"};
        cs_tensor *w[3] = {&b->wq, &b->wk, &b->wv}, *bs[3] = {&b->bq, &b->bk, &b->bv};
        for (int i = 0; i < 3; i++) {
            char a[64], a2[64];
            snprintf(a, sizeof a, "attention.to_%s.weight", qkv[i]);
            snprintf(a2, sizeof a2, "attention.attn.to_%s.weight", qkv[i]);
            t = find2(m, p, a, a2, name, sizeof name);
            if (!t) snprintf(name, sizeof name, "%sattention.attn.in_proj_weight", p);
            e |= cs_wmap_check(m, w[i], t, name, 2, (int64_t[]){C, C});
            snprintf(a, sizeof a, "attention.to_%s.bias", qkv[i]);
            snprintf(a2, sizeof a2, "attention.attn.to_%s.bias", qkv[i]);
            t = find2(m, p, a, a2, name, sizeof name);
            if (!t) snprintf(name, sizeof name, "%sattention.attn.in_proj_bias", p);
            e |= cs_wmap_check(m, bs[i], t, name, 1, (int64_t[]){C});
            if (!t && i == 0) break;   /* one "missing in_proj" is enough */
        }
    }
    t = find2(m, p, "attention.attn.out_proj.weight", "attention.to_out.0.weight", name, sizeof name);
    if (!t) snprintf(name, sizeof name, "%sattention.attn.out_proj.weight", p);
    e |= cs_wmap_check(m, &b->wo, t, name, 2, (int64_t[]){C, C});
    t = find2(m, p, "attention.attn.out_proj.bias", "attention.to_out.0.bias", name, sizeof name);
    if (!t) snprintf(name, sizeof name, "%sattention.attn.out_proj.bias", p);
    e |= cs_wmap_check(m, &b->bo, t, name, 1, (int64_t[]){C});
    e |= req(m, &b->kv_w, p, "kv_mapper.1.weight", 2, (int64_t[]){C, c_cond});
    e |= req(m, &b->kv_b, p, "kv_mapper.1.bias", 1, (int64_t[]){C});
    return e ? -1 : 0;
}

/* ---- forwards ---- */

/* The channel MLP on rows of `in` (cin wide), added into x (rows of c):
 * x += fc2(GRN(GELU(fc1(in)))). GRN reduces over each image's HW rows. */
static int mlp_residual(const cs_resblock *b, const float *in, size_t cin, float *x, size_t N, size_t HW, cs_ws *ws)
{
    size_t rows = N * HW, c4 = 4 * (size_t)b->c;
    float *h = cs_ws_get(ws, 2, rows * c4);
    if (!h) return CS_ENOMEM;
    /* training (keep) wants fc1's output before the GELU: the backward reads it */
    int rc = ws->keep ? cs_linear(in, rows, cin, 0, &b->fc1_w, &b->fc1_b, h, 0, 0)
                      : cs_linear_gelu(in, rows, cin, 0, &b->fc1_w, &b->fc1_b, h, 0);
    if (rc) return rc;
    float *ge = ws->keep ? cs_ws_get(ws, 6, rows * c4) : h, *gr = ws->keep ? cs_ws_get(ws, 7, rows * c4) : h;
    if (!ge || !gr) return CS_ENOMEM;
    if (ws->keep) cs_gelu(h, ge, rows * c4);
    const float *g = cs_weight_f32(&b->gamma, 2), *be = cs_weight_f32(&b->beta, 3);
    if (!g || !be) return CS_ENOMEM;
    if (!ws->keep) {   /* GRN folded into fc2's packing where the products allow it */
        if ((rc = cs_cancel_check())) return rc;
        if ((rc = cs_grn_linear(h, N, HW, c4, g, be, &b->fc2_w, &b->fc2_b, x)) != CS_EUNSUP) return rc;
    }
    if ((rc = cs_grn(ge, gr, N, HW, c4, g, be))) return rc;
    h = gr;
    /* the two linears of a level-0 Stage B block are ~1 s on 2 cores: a stop is
     * also seen between them (the block is abandoned, so x may stay half-updated) */
    if ((rc = cs_cancel_check())) return rc;
    return cs_linear(h, rows, c4, 0, &b->fc2_w, &b->fc2_b, x, 0, 1);   /* + residual */
}

/* the whole block as one device op, where the device has it */
static int fused(const cs_resblock *b, float *x, size_t N, size_t H, size_t W, const float *skip)
{
    if (b->has_dw && b->k != 3) return CS_EUNSUP;
    cs_mlp_block w = {b->has_dw ? &b->dw_w : NULL, b->has_dw ? &b->dw_b : NULL, &b->fc1_w, &b->fc1_b,
                      &b->gamma, &b->beta, &b->fc2_w, &b->fc2_b};
    return cs_mlp_block_fused(x, N, H, W, (size_t)b->c, skip, skip ? (size_t)b->c_skip : 0, &w);
}

/* x, skip: [N,H,W,c], [N,H,W,c_skip] */
int cs_resblock_forward(const cs_resblock *b, float *x, size_t N, size_t H, size_t W, const float *skip, cs_ws *ws)
{
    size_t c = (size_t)b->c, cs = (size_t)b->c_skip, rows = N * H * W;
    if (!skip != !cs)
        return cs_error(CS_EARG, "%s: ResBlock with c_skip %zu %s a skip input", b->fc1_w.name ? b->fc1_w.name : "",
                        cs, skip ? "given" : "not given");
    int rc = ws->keep ? CS_EUNSUP : fused(b, x, N, H, W, skip);
    if (rc != CS_EUNSUP) return rc;
    float *t = cs_ws_get(ws, 0, rows * c), *tn = ws->keep ? cs_ws_get(ws, 8, rows * c) : t;
    if (!t || !tn) return CS_ENOMEM;
    rc = b->k == 3 ? cs_dwconv3x3(x, t, N, H, W, c, &b->dw_w, &b->dw_b, 0)
                       : cs_conv2d(x, N, H, W, c, &b->dw_w, &b->dw_b, 1, b->k / 2, (int)c, t, NULL, NULL);
    if (rc) return rc;
    cs_layernorm(t, tn, rows, c, 1e-6f, NULL, NULL);
    t = tn;
    if (skip) {   /* concat AFTER depthwise + norm: [x | skip] */
        float *cat = cs_ws_get(ws, 1, rows * (c + cs));
        if (!cat) return CS_ENOMEM;
        cs_concat_channels(t, c, skip, cs, cat, rows);
        t = cat;
    }
    return mlp_residual(b, t, c + cs, x, N, H * W, ws);
}

/* x: [N,HW,c]; y = x + MLP(LN(x)) */
int cs_ffblock_forward(const cs_resblock *b, float *x, size_t N, size_t HW, cs_ws *ws)
{
    size_t c = (size_t)b->c, rows = N * HW;
    int rc = ws->keep ? CS_EUNSUP : fused(b, x, N, 1, HW, NULL);
    if (rc != CS_EUNSUP) return rc;
    float *t = cs_ws_get(ws, 0, rows * c);
    if (!t) return CS_ENOMEM;
    cs_layernorm(x, t, rows, c, 1e-6f, NULL, NULL);
    return mlp_residual(b, t, c, x, N, HW, ws);
}

/* x: [N,HW,c], t: [N, ldt] -> ab = sum_i mapper_i(t_i) [N, 2c]; x = x*(1+a)+b */
int cs_tsblock_forward(const cs_tsblock *b, float *x, size_t N, size_t HW, const float *t, size_t ldt, cs_ws *ws)
{
    size_t c = (size_t)b->c, cr = (size_t)b->c_r;
    if (ldt < cr * (size_t)(1 + b->nconds))
        return cs_error(CS_EARG, "TimestepBlock: %zu embedding values per image, need %zu", ldt, cr * (size_t)(1 + b->nconds));
    if (!ws->keep) {   /* the whole block as one device op, where the device has it */
        int rc = cs_ts_block_fused(x, N, HW, c, t, ldt, cr, b->nconds, b->w, b->b);
        if (rc != CS_EUNSUP) return rc;
    }
    float *ab = cs_ws_get(ws, 0, N * 2 * c);
    if (!ab) return CS_ENOMEM;
    for (int i = 0; i <= b->nconds; i++) {
        int rc = cs_linear(t + (size_t)i * cr, N, cr, ldt, &b->w[i], &b->b[i], ab, 0, i > 0);
        if (rc) return rc;
    }
    cs_modulate(x, x, N, HW, c, ab, ab + c, 2 * c);
    return 0;
}

/* [k | v] rows [c, 3c) of a packed in_proj, as one [2c, c] / [2c] view */
static cs_tensor kv_rows(const cs_tensor *packed, const cs_tensor *k_view)
{
    cs_tensor t = *packed;
    t.shape[0] = k_view->shape[0] * 2;
    t.data = k_view->data;
    return t;
}

/* x: [N,HW,c], cond: [N,Lc,cc].
 *   kv  = Linear(SiLU(cond))                  [N*Lc, c]  -> its k|v  ckv [N*Lc, 2c]
 *   xn  = LN(x)                               [N*HW, c]  -> q|k|v    qkv [N*HW, 3c]
 * one GEMM each over all images (weights read once, big M); the keys/values
 * are [x tokens, cond tokens]: the CPU and a device with attention_cat
 * read the two blocks where they are; training (whose backward reads them)
 * and a device without it gather them in kvb [N, Lk, 2c]; then
 *   x += out_proj(MHA(q, k, v)). */
int cs_attnblock_forward(const cs_attnblock *b, float *x, size_t N, size_t HW, const float *cond, size_t Lc,
                         cs_ws *ws)
{
    size_t c = (size_t)b->c, cc = (size_t)b->c_cond, Ls = b->self_attn ? HW : 0, Lk = Ls + Lc;
    if (!Lk) return cs_error(CS_EARG, "AttnBlock without self-attention needs conditioning tokens");
    if (!ws->keep) {   /* the whole block as one device op, where the device has it */
        cs_attn_block w = {&b->wq, &b->wk, &b->wv, &b->bq, &b->bk, &b->bv, b->packed ? &b->wqkv : NULL,
                           b->packed ? &b->bqkv : NULL, &b->wo, &b->bo, &b->kv_w, &b->kv_b};
        int rc = cs_attn_block_fused(x, N, HW, c, b->nhead, b->self_attn, Lc ? cond : NULL, Lc, cc, &w);
        if (rc != CS_EUNSUP) return rc;
    }
    float *xn = cs_ws_get(ws, 0, N * HW * c), *qkv = cs_ws_get(ws, 1, N * HW * 3 * c),
          *sc = cs_ws_get(ws, 3, N * Lc * cc), *kv = cs_ws_get(ws, 4, N * Lc * c), *ckv = cs_ws_get(ws, 2, N * Lc * 2 * c);
    if (!xn || !qkv || (Lc && (!sc || !kv || !ckv))) return CS_ENOMEM;
    int rc = 0;
    cs_layernorm(x, xn, N * HW, c, 1e-6f, NULL, NULL);
    if (b->packed) {
        rc = cs_linear(xn, N * HW, c, 0, &b->wqkv, &b->bqkv, qkv, 0, 0);
    } else {
        const cs_tensor *w[3] = {&b->wq, &b->wk, &b->wv}, *bs[3] = {&b->bq, &b->bk, &b->bv};
        for (int i = 0; i < 3 && !rc; i++) rc = cs_linear(xn, N * HW, c, 0, w[i], bs[i], qkv + (size_t)i * c, 3 * c, 0);
    }
    if (!rc && Lc) {
        cs_silu(cond, sc, N * Lc * cc);
        rc = cs_linear(sc, N * Lc, cc, 0, &b->kv_w, &b->kv_b, kv, 0, 0);
        if (!rc && b->packed) {
            cs_tensor wkv = kv_rows(&b->wqkv, &b->wk), bkv = kv_rows(&b->bqkv, &b->bk);
            rc = cs_linear(kv, N * Lc, c, 0, &wkv, &bkv, ckv, 0, 0);
        } else if (!rc) {
            rc = cs_linear(kv, N * Lc, c, 0, &b->wk, &b->bk, ckv, 2 * c, 0);
            if (!rc) rc = cs_linear(kv, N * Lc, c, 0, &b->wv, &b->bv, ckv + c, 2 * c, 0);
        }
    }
    if (rc) return rc;
    float *o = ws->keep ? cs_ws_get(ws, 6, N * HW * c) : xn;   /* o -> xn (no longer needed) */
    if (!o) return CS_ENOMEM;
    /* training (keep) wants the gathered keys/values: the backward reads them */
    rc = ws->keep ? CS_EUNSUP
                  : cs_attention_cat(qkv, 3 * c, qkv + c, qkv + 2 * c, 3 * c, Ls, ckv, Lc ? ckv + c : NULL, 2 * c, Lc,
                                     N, HW, c, b->nhead, o, c);
    if (rc != CS_EUNSUP) return rc ? rc : cs_linear(o, N * HW, c, 0, &b->wo, &b->bo, x, 0, 1);
    /* gather keys/values: image tokens first, then the conditioning tokens */
    float *kvb = cs_ws_get(ws, 5, N * Lk * 2 * c);
    if (!kvb) return CS_ENOMEM;
    for (size_t n = 0; n < N; n++) {
        if (Ls) cs_copy2d(kvb + n * Lk * 2 * c, 2 * c, qkv + n * HW * 3 * c + c, 3 * c, Ls, 2 * c);
        if (Lc) cs_copy2d(kvb + (n * Lk + Ls) * 2 * c, 2 * c, ckv + n * Lc * 2 * c, 2 * c, Lc, 2 * c);
    }
    rc = cs_attention(qkv, 3 * c, kvb, 2 * c, kvb + c, 2 * c, N, HW, Lk, c, b->nhead, NULL, o, c);
    if (rc) return rc;
    return cs_linear(o, N * HW, c, 0, &b->wo, &b->bo, x, 0, 1);   /* + residual */
}

int cs_block_forward(const cs_block *b, float *x, size_t N, size_t H, size_t W, const float *skip, const float *t,
                     size_t ldt, const float *cond, size_t Lc, cs_ws *ws)
{
    switch (b->type) {
    case 'C': return cs_resblock_forward(&b->u.res, x, N, H, W, skip, ws);
    case 'F': return cs_ffblock_forward(&b->u.res, x, N, H * W, ws);
    case 'T': return cs_tsblock_forward(&b->u.ts, x, N, H * W, t, ldt, ws);
    case 'A': return cs_attnblock_forward(&b->u.attn, x, N, H * W, cond, Lc, ws);
    default: return cs_error(CS_EARG, "unknown block type '%c'", b->type);
    }
}

double cs_block_flops(const cs_block *b, size_t N, size_t HW, size_t Lc)
{
    double rows = (double)N * (double)HW, c = 0;
    switch (b->type) {
    case 'C':
    case 'F':
        c = b->u.res.c;
        return 2.0 * rows * (4 * c * (c + b->u.res.c_skip) + 4 * c * c) +
               (b->type == 'C' ? 2.0 * rows * b->u.res.k * b->u.res.k * c : 0);
    case 'T': return 2.0 * N * (1 + b->u.ts.nconds) * 2.0 * b->u.ts.c * b->u.ts.c_r;
    case 'A': {
        c = b->u.attn.c;
        double cc = b->u.attn.c_cond, lk = (double)HW + (double)Lc;
        return 2.0 * N * ((double)Lc * cc * c                   /* kv_mapper */
                          + (double)HW * 3 * c * c + (double)Lc * 2 * c * c   /* q, k, v */
                          + 2.0 * (double)HW * lk * c           /* scores and p·v */
                          + (double)HW * c * c);                /* out_proj */
    }
    }
    return 0;
}
