#include "effnet.h"

#include "error.h"
#include "ops.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int stage_stride[CS_EFFNET_STAGES] = {1, 2, 2, 2, 1, 2};   /* efficientnet_v2_s */

/* Conv (no bias) -> BatchNorm (folded) -> optional SiLU. */
typedef struct {
    cs_tensor w;
    float *s, *t;                /* [cout] each, one malloc at s */
    int cin, cout, k, stride, groups, act;
} cna;

typedef struct {
    char type;                   /* 'F' FusedMBConv, 'M' MBConv */
    int cin, cout, E, S, stride, residual, ncna;
    cna c[3];                    /* F: expand (or only) conv, project; M: expand, depthwise, project */
    cs_tensor fc1_w, fc1_b, fc2_w, fc2_b;   /* M: squeeze-excitation */
} mbblock;

struct cs_effnet {
    cs_effnet_config cfg;
    cs_st_file *owned;
    cna stem, head;
    mbblock *blk;
    int nblk;
    cs_tensor map_w;
    float *map_s, *map_t;
};

/* Folds BatchNorm (eval) into y = x*s + t; w/b NULL: affine=False. */
static int fold_bn(cs_wmap *m, const char *p, int64_t C, double eps, int affine, float **s_out)
{
    static const char *const part[4] = {"running_mean", "running_var", "weight", "bias"};
    cs_tensor t[4];
    char nm[128];
    int bad = 0, n = affine ? 4 : 2;
    for (int q = 0; q < n; q++) {
        snprintf(nm, sizeof nm, "%s.%s", p, part[q]);
        bad |= cs_wmap_req(m, &t[q], nm, 1, (int64_t[]){C});
    }
    snprintf(nm, sizeof nm, "%s.num_batches_tracked", p);
    cs_wmap_find(m, nm);   /* optional, unused */
    if (bad) return -1;
    float *v = malloc(4 * (size_t)C * sizeof(float)), *s = malloc(2 * (size_t)C * sizeof(float));
    if (!v || !s) {
        free(v);
        free(s);
        cs_wmap_problem(m, "out of memory");
        return -1;
    }
    for (int q = 0; q < n; q++) cs_tensor_to_f32(&t[q], v + (size_t)q * (size_t)C);
    for (int64_t j = 0; j < C; j++) {
        double sc = 1.0 / sqrt((double)v[C + j] + eps);
        if (affine) sc *= v[2 * C + j];
        s[j] = (float)sc;
        s[C + j] = (float)((affine ? (double)v[3 * C + j] : 0.0) - (double)v[j] * sc);
    }
    free(v);
    *s_out = s;
    return 0;
}

/* "<p>.0.weight" [cout, cin/groups, k, k] + BatchNorm "<p>.1.*"; cout <= 0
 * and k <= 0: read off the weight; groups < 0: depthwise. Problems go to m;
 * returns the output width when known (so binding can go on past a broken
 * layer and report the rest), else -1. */
static int bind_cna(cs_wmap *m, cna *c, const char *p, int cin, int cout, int k, int stride, int groups, int act)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.0.weight", p);
    const cs_tensor *t = cs_wmap_peek(m, nm);
    if (t && t->ndim == 4) {
        if (cout <= 0) cout = (int)t->shape[0];
        if (k <= 0) k = (int)t->shape[2];
    }
    if (k <= 0) k = 3;
    if (groups < 0) groups = cout;
    c->cin = cin, c->cout = cout, c->k = k, c->stride = stride, c->groups = groups, c->act = act;
    if (!t) cs_wmap_problem(m, "missing %s%s", m->prefix, nm);
    else if (cout <= 0 || k % 2 == 0 || groups <= 0 || cin % groups) {
        cs_wmap_problem(m, "%s: not a conv of %d input channels with an odd kernel", t->name, cin);
        return -1;
    } else cs_wmap_req(m, &c->w, nm, 4, (int64_t[]){cout, cin / groups, k, k});
    if (cout <= 0) return -1;
    snprintf(nm, sizeof nm, "%s.1", p);
    if (!fold_bn(m, nm, cout, 1e-3, 1, &c->s)) c->t = c->s + cout;
    return cout;
}

static void free_cna(cna *c) { free(c->s); }

/* Returns 0 when the block's output width is known (problems, if any, are in m). */
static int bind_block(cs_wmap *m, mbblock *b, int s, int i, int cin)
{
    char p[96], q[128];
    snprintf(p, sizeof p, "backbone.%d.%d.block", s + 1, i);
    b->cin = cin;
    b->stride = i == 0 ? stage_stride[s] : 1;
    snprintf(q, sizeof q, "%s.2.fc1.weight", p);
    if (cs_wmap_peek(m, q)) {   /* MBConv: 1x1 expand, depthwise, SE, 1x1 project */
        b->type = 'M';
        b->ncna = 3;
        snprintf(q, sizeof q, "%s.0", p);
        b->E = bind_cna(m, &b->c[0], q, cin, 0, 1, 1, 1, 1);
        snprintf(q, sizeof q, "%s.1.0.weight", p);
        const cs_tensor *dw = cs_wmap_peek(m, q);
        if (b->E <= 0 && dw && dw->ndim == 4) b->E = (int)dw->shape[0];
        if (b->E <= 0) return -1;
        snprintf(q, sizeof q, "%s.1", p);
        bind_cna(m, &b->c[1], q, b->E, b->E, 0, b->stride, -1, 1);
        snprintf(q, sizeof q, "%s.2.fc1.weight", p);
        const cs_tensor *f1 = cs_wmap_peek(m, q);
        b->S = f1->ndim == 4 ? (int)f1->shape[0] : 1;
        cs_wmap_req(m, &b->fc1_w, q, 4, (int64_t[]){b->S, b->E, 1, 1});
        snprintf(q, sizeof q, "%s.2.fc1.bias", p);
        cs_wmap_req(m, &b->fc1_b, q, 1, (int64_t[]){b->S});
        snprintf(q, sizeof q, "%s.2.fc2.weight", p);
        cs_wmap_req(m, &b->fc2_w, q, 4, (int64_t[]){b->E, b->S, 1, 1});
        snprintf(q, sizeof q, "%s.2.fc2.bias", p);
        cs_wmap_req(m, &b->fc2_b, q, 1, (int64_t[]){b->E});
        snprintf(q, sizeof q, "%s.3", p);
        b->cout = bind_cna(m, &b->c[2], q, b->E, 0, 1, 1, 1, 0);
    } else {   /* FusedMBConv: 3x3 (expand) conv, then a 1x1 project unless expand ratio 1 */
        b->type = 'F';
        snprintf(q, sizeof q, "%s.1.0.weight", p);
        int two = cs_wmap_peek(m, q) != NULL;
        b->ncna = two ? 2 : 1;
        snprintf(q, sizeof q, "%s.0", p);
        b->cout = b->E = bind_cna(m, &b->c[0], q, cin, 0, 0, b->stride, 1, 1);
        snprintf(q, sizeof q, "%s.1", p);
        if (two) b->cout = b->E > 0 ? bind_cna(m, &b->c[1], q, b->E, 0, 1, 1, 1, 0) : -1;
    }
    b->residual = b->stride == 1 && b->cin == b->cout;
    return b->cout > 0 ? 0 : -1;
}

static int bind(cs_effnet *e, cs_wmap *m)
{
    cs_effnet_config *c = &e->cfg;
    char q[96];
    int nb = 0;
    for (int s = 0; s < CS_EFFNET_STAGES; s++) {
        int i = 0;
        for (;; i++) {
            snprintf(q, sizeof q, "backbone.%d.%d.block.0.0.weight", s + 1, i);
            if (!cs_wmap_peek(m, q)) break;
        }
        if (!i) cs_wmap_problem(m, "missing %sbackbone.%d.0.block.0.0.weight (stage %d has no blocks)", m->prefix, s + 1,
                                s + 1);
        c->blocks[s] = i;
        nb += i;
    }
    if (m->nprob) return cs_wmap_finish(m, "Stable Cascade EfficientNet encoder");
    e->blk = calloc((size_t)nb, sizeof *e->blk);
    if (!e->blk) return cs_error(CS_ENOMEM, "EfficientNet: out of memory");
    int ch = bind_cna(m, &e->stem, "backbone.0", 3, 0, 3, 2, 1, 1);
    c->c_stem = ch;
    for (int s = 0; s < CS_EFFNET_STAGES && ch > 0; s++) {
        for (int i = 0; i < c->blocks[s] && ch > 0; i++) {
            mbblock *b = &e->blk[e->nblk++];
            ch = bind_block(m, b, s, i, ch) ? -1 : b->cout;
        }
        c->c_out[s] = ch;
    }
    if (ch > 0) {
        snprintf(q, sizeof q, "backbone.%d", CS_EFFNET_STAGES + 1);
        c->c_head = bind_cna(m, &e->head, q, ch, 0, 1, 1, 1, 1);
    }
    const cs_tensor *mw = cs_wmap_peek(m, "mapper.0.weight");
    c->c_latent = mw && mw->ndim == 4 ? (int)mw->shape[0] : 16;
    if (c->c_head > 0) cs_wmap_req(m, &e->map_w, "mapper.0.weight", 4, (int64_t[]){c->c_latent, c->c_head, 1, 1});
    if (!fold_bn(m, "mapper.1", c->c_latent, 1e-5, 0, &e->map_s)) e->map_t = e->map_s + c->c_latent;
    /* ComfyUI's encoder carries its normalisation constants as parameters */
    cs_wmap_find(m, "mean");
    cs_wmap_find(m, "std");
    return cs_wmap_finish(m, "Stable Cascade EfficientNet encoder");
}

int cs_effnet_load(cs_st_file *f, const char *prefix, cs_effnet **out)
{
    static const char *const cand[] = {"", "vae.encoder.", "encoder."};
    *out = NULL;
    char pre[64] = "", nm[96];
    if (prefix) snprintf(pre, sizeof pre, "%s", prefix);
    else {
        size_t i = 0;
        for (; i < sizeof cand / sizeof *cand; i++) {
            snprintf(nm, sizeof nm, "%sbackbone.0.0.weight", cand[i]);
            if (cs_st_find(f, nm)) break;
        }
        if (i == sizeof cand / sizeof *cand)
            return cs_error(CS_EMODEL, "%s: not an EfficientNet encoder checkpoint: no backbone.0.0.weight",
                            cs_basename(cs_st_path(f)));
        snprintf(pre, sizeof pre, "%s", cand[i]);
    }
    cs_effnet *e = calloc(1, sizeof *e);
    if (!e) return cs_error(CS_ENOMEM, "EfficientNet: out of memory");
    cs_wmap m;
    int rc = cs_wmap_init(&m, f, pre);
    if (!rc) {
        rc = bind(e, &m);
        cs_wmap_free(&m);
    }
    if (rc) {
        cs_effnet_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int cs_effnet_open(const char *path, cs_effnet **out)
{
    cs_st_file *f;
    *out = NULL;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    if ((rc = cs_effnet_load(f, NULL, out))) {
        cs_st_close(f);
        return rc;
    }
    (*out)->owned = f;
    return 0;
}

void cs_effnet_free(cs_effnet *e)
{
    if (!e) return;
    free_cna(&e->stem);
    free_cna(&e->head);
    for (int i = 0; i < e->nblk; i++)
        for (int j = 0; j < 3; j++) free_cna(&e->blk[i].c[j]);
    free(e->blk);
    free(e->map_s);
    cs_st_close(e->owned);
    free(e);
}

const cs_effnet_config *cs_effnet_get_config(const cs_effnet *e) { return &e->cfg; }

void cs_effnet_preprocess(const float *rgb, float *x, size_t n)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) x[i * 3 + c] = (rgb[i * 3 + c] - mean[c]) / std[c];
}

size_t cs_effnet_out_size(size_t n)
{
    for (int i = 0; i < 5; i++) n = (n + 1) / 2;
    return n;
}

/* x [H,W,cin] -> y [Ho,Wo,cout] */
static int run_cna(const cna *c, const float *x, size_t *H, size_t *W, float *y)
{
    size_t Ho, Wo;
    int rc = cs_conv2d(x, 1, *H, *W, (size_t)c->cin, &c->w, NULL, c->stride, (c->k - 1) / 2, c->groups, y, &Ho, &Wo);
    if (rc) return rc;
    size_t n = Ho * Wo * (size_t)c->cout;
    cs_channel_affine(y, y, Ho * Wo, (size_t)c->cout, c->s, c->t);
    if (c->act) cs_silu(y, y, n);
    *H = Ho;
    *W = Wo;
    return 0;
}

/* Squeeze-excitation on x [P, E] in place; v: 2E + S floats. */
static int squeeze_excite(const mbblock *b, float *x, size_t P, float *v)
{
    size_t E = (size_t)b->E;
    float *pool = v, *hid = v + E, *sc = hid + b->S;
    for (size_t e = 0; e < E; e++) {
        double a = 0;
        for (size_t p = 0; p < P; p++) a += x[p * E + e];
        pool[e] = (float)(a / (double)P);
    }
    int rc = cs_linear(pool, 1, E, 0, &b->fc1_w, &b->fc1_b, hid, 0, 0);
    if (!rc) {
        cs_silu(hid, hid, (size_t)b->S);
        rc = cs_linear(hid, 1, (size_t)b->S, 0, &b->fc2_w, &b->fc2_b, sc, 0, 0);
    }
    if (rc) return rc;
    cs_sigmoid(sc, sc, E);
#pragma omp parallel for schedule(static) if (P * E >= 1 << 16)
    for (size_t p = 0; p < P; p++)
        for (size_t e = 0; e < E; e++) x[p * E + e] *= sc[e];
    return 0;
}

/* x [H,W,cin] in a -> [Ho,Wo,cout] in a (b, c scratch of the same size). */
static int run_block(const mbblock *k, float **a, float **b, float **c, size_t *H, size_t *W, float *v)
{
    size_t h = *H, w = *W, Hs = h, Ws = w;
    int rc;
    float *out;
    if (k->type == 'M') {
        if ((rc = run_cna(&k->c[0], *a, &h, &w, *b)) || (rc = run_cna(&k->c[1], *b, &h, &w, *c)) ||
            (rc = squeeze_excite(k, *c, h * w, v)) || (rc = run_cna(&k->c[2], *c, &h, &w, *b)))
            return rc;
        out = *b;
    } else {
        if ((rc = run_cna(&k->c[0], *a, &h, &w, *b))) return rc;
        out = *b;
        if (k->ncna == 2) {
            if ((rc = run_cna(&k->c[1], *b, &h, &w, *c))) return rc;
            out = *c;
        }
    }
    if (k->residual) cs_add(out, *a, out, Hs * Ws * (size_t)k->cout);
    float *t = *a;   /* out becomes the block input of the next block */
    if (out == *b) *a = *b, *b = t;
    else *a = *c, *c = t;
    *H = h;
    *W = w;
    return 0;
}

int cs_effnet_forward(const cs_effnet *e, const float *x, size_t N, size_t H, size_t W, float *y)
{
    /* [H,W,3] -> stem s2 [H/2,W/2,24] -> stages (s 1 2 2 2 1 2) -> [H/32,W/32,256] -> head [..,1280] -> mapper [..,16] */
    if (!N || !H || !W) return cs_error(CS_EARG, "EfficientNet: empty input %zux%zux%zu", N, H, W);
    const cs_effnet_config *c = &e->cfg;
    /* largest activation of any layer, following the spatial sizes */
    size_t h = (H + 1) / 2, w = (W + 1) / 2, big = h * w * (size_t)c->c_stem, vmax = 0;
    for (int i = 0; i < e->nblk; i++) {
        const mbblock *k = &e->blk[i];
        size_t E = (size_t)k->E, ea = h * w * E;   /* M: expansion at input size; F: after the strided conv */
        if (k->stride == 2) h = (h + 1) / 2, w = (w + 1) / 2;
        if (k->type == 'F') ea = h * w * E;
        size_t o = h * w * (size_t)k->cout;
        if (ea > big) big = ea;
        if (o > big) big = o;
        if (2 * E + (size_t)k->S > vmax) vmax = 2 * E + (size_t)k->S;
    }
    if (h * w * (size_t)c->c_head > big) big = h * w * (size_t)c->c_head;
    float *a = cs_alloc(big * sizeof(float)), *b = cs_alloc(big * sizeof(float)), *cc = cs_alloc(big * sizeof(float)),
          *v = cs_alloc((vmax + 1) * sizeof(float));
    int rc = a && b && cc && v ? 0 : cs_error(CS_ENOMEM, "EfficientNet: out of memory for a %zux%zu image", H, W);
    for (size_t n = 0; n < N && !rc; n++) {
        size_t hh = H, ww = W;
        if ((rc = run_cna(&e->stem, x + n * H * W * 3, &hh, &ww, a))) break;
        for (int i = 0; i < e->nblk && !rc; i++) rc = run_block(&e->blk[i], &a, &b, &cc, &hh, &ww, v);
        if (rc || (rc = run_cna(&e->head, a, &hh, &ww, b))) break;
        float *yn = y + n * hh * ww * (size_t)c->c_latent;
        if ((rc = cs_linear(b, hh * ww, (size_t)c->c_head, 0, &e->map_w, NULL, yn, 0, 0))) break;
        cs_channel_affine(yn, yn, hh * ww, (size_t)c->c_latent, e->map_s, e->map_t);
    }
    cs_free(a);
    cs_free(b);
    cs_free(cc);
    cs_free(v);
    return rc;
}
