#include "previewer.h"

#include "cancel.h"
#include "device.h"
#include "error.h"
#include "ops.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCONV 9

/* The Sequential, by conv: index in blocks, kind, width in/out as multiples of
 * c_hidden/4 (0 = c_in / c_out). */
static const struct {
    int idx;
    char kind;   /* '1': 1x1, '3': 3x3 pad 1, 'T': ConvTranspose k2 s2 */
    int in4, out4;
} layers[NCONV] = {
    {0, '1', 0, 4},  {3, '3', 4, 4},  {6, 'T', 4, 2},  {9, '3', 2, 2},  {12, 'T', 2, 1},
    {15, '3', 1, 1}, {18, 'T', 1, 1}, {21, '3', 1, 1}, {24, '1', 1, 0},
};

struct cs_previewer {
    cs_previewer_config cfg;
    cs_st_file *owned;
    cs_tensor w[NCONV], b[NCONV];
    float *bn;                   /* per BN (after conv i < 8): scale[cout], shift[cout] */
    size_t bn_off[NCONV];
    int cin[NCONV], cout[NCONV];
};

static int width(const cs_previewer_config *c, int q4, int is_in)
{
    return q4 ? c->c_hidden / 4 * q4 : is_in ? c->c_in : c->c_out;
}

static int bind(cs_previewer *p, cs_wmap *m)
{
    cs_previewer_config *c = &p->cfg;
    const cs_tensor *t0 = cs_wmap_peek(m, "blocks.0.weight"), *t24 = cs_wmap_peek(m, "blocks.24.weight");
    if (!t0 || !t24 || t0->ndim != 4 || t24->ndim != 4) {
        cs_wmap_problem(m, "missing %sblocks.0.weight / blocks.24.weight", m->prefix);
        return cs_wmap_finish(m, "Previewer");
    }
    c->c_in = (int)t0->shape[1];
    c->c_hidden = (int)t0->shape[0];
    c->c_out = (int)t24->shape[0];
    if (c->c_hidden % 4 || c->c_hidden < 4) {
        cs_wmap_problem(m, "%s: c_hidden %d is not a multiple of 4", t0->name, c->c_hidden);
        return cs_wmap_finish(m, "Previewer");
    }
    size_t nbn = 0;
    for (int i = 0; i < NCONV; i++) {
        p->cin[i] = width(c, layers[i].in4, 1);
        p->cout[i] = width(c, layers[i].out4, 0);
        p->bn_off[i] = nbn;
        if (i < NCONV - 1) nbn += 2 * (size_t)p->cout[i];
    }
    p->bn = malloc(nbn * sizeof(float));
    if (!p->bn) return cs_error(CS_ENOMEM, "Previewer: out of memory");
    char nm[64];
    for (int i = 0; i < NCONV; i++) {
        int64_t ci = p->cin[i], co = p->cout[i], k = layers[i].kind == '1' ? 1 : layers[i].kind == '3' ? 3 : 2;
        snprintf(nm, sizeof nm, "blocks.%d.weight", layers[i].idx);
        if (layers[i].kind == 'T') cs_wmap_req(m, &p->w[i], nm, 4, (int64_t[]){ci, co, k, k});
        else cs_wmap_req(m, &p->w[i], nm, 4, (int64_t[]){co, ci, k, k});
        snprintf(nm, sizeof nm, "blocks.%d.bias", layers[i].idx);
        cs_wmap_req(m, &p->b[i], nm, 1, (int64_t[]){co});
        if (i == NCONV - 1) break;
        /* BatchNorm at idx + 2 (GELU at idx + 1 has no parameters) */
        static const char *const part[4] = {"weight", "bias", "running_mean", "running_var"};
        cs_tensor bt[4];
        int bad = 0;
        for (int q = 0; q < 4; q++) {
            snprintf(nm, sizeof nm, "blocks.%d.%s", layers[i].idx + 2, part[q]);
            bad |= cs_wmap_req(m, &bt[q], nm, 1, (int64_t[]){co});
        }
        snprintf(nm, sizeof nm, "blocks.%d.num_batches_tracked", layers[i].idx + 2);
        cs_wmap_find(m, nm);   /* optional, unused */
        if (bad) continue;
        float *v = malloc(4 * (size_t)co * sizeof(float)), *s = p->bn + p->bn_off[i];
        if (!v) return cs_error(CS_ENOMEM, "Previewer: out of memory");
        for (int q = 0; q < 4; q++) cs_tensor_to_f32(&bt[q], v + q * co);
        for (int64_t j = 0; j < co; j++) {   /* eval BatchNorm, eps 1e-5: y = x*s + t */
            double sc = (double)v[j] / sqrt((double)v[3 * co + j] + 1e-5);
            s[j] = (float)sc;
            s[co + j] = (float)((double)v[co + j] - (double)v[2 * co + j] * sc);
        }
        free(v);
    }
    return cs_wmap_finish(m, "Previewer");
}

int cs_previewer_load(cs_st_file *f, const char *prefix, cs_previewer **out)
{
    static const char *const cand[] = {"", "vae.previewer.", "previewer."};
    *out = NULL;
    char pre[64] = "", nm[96];
    if (prefix) snprintf(pre, sizeof pre, "%s", prefix);
    else {
        size_t i = 0;
        for (; i < sizeof cand / sizeof *cand; i++) {
            snprintf(nm, sizeof nm, "%sblocks.24.weight", cand[i]);
            if (cs_st_find(f, nm)) break;
        }
        if (i == sizeof cand / sizeof *cand)
            return cs_error(CS_EMODEL, "%s: not a Previewer checkpoint: no blocks.24.weight", cs_basename(cs_st_path(f)));
        snprintf(pre, sizeof pre, "%s", cand[i]);
    }
    cs_previewer *p = calloc(1, sizeof *p);
    if (!p) return cs_error(CS_ENOMEM, "Previewer: out of memory");
    cs_wmap m;
    int rc = cs_wmap_init(&m, f, pre);
    if (!rc) {
        rc = bind(p, &m);
        cs_wmap_free(&m);
    }
    if (rc) {
        cs_previewer_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int cs_previewer_open(const char *path, cs_previewer **out)
{
    cs_st_file *f;
    *out = NULL;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    if ((rc = cs_previewer_load(f, NULL, out))) {
        cs_st_close(f);
        return rc;
    }
    (*out)->owned = f;
    return 0;
}

void cs_previewer_free(cs_previewer *p)
{
    if (!p) return;
    cs_param_forget(p->bn, 1 + p->bn_off[NCONV - 1] * sizeof(float));   /* a device's copies of the BN folds */
    free(p->bn);
    cs_st_close(p->owned);
    free(p);
}

const cs_previewer_config *cs_previewer_get_config(const cs_previewer *p) { return &p->cfg; }

/* x, y in the current mode's memory */
static int forward(const cs_previewer *p, const float *x, size_t N, size_t h, size_t w, float *y)
{
    /* [h,w,c_in] -> 1x1 -> 3x3 @ c_hidden -> T -> 3x3 @ c/2 (2h) -> T -> 3x3 @ c/4 (4h) -> T -> 3x3 @ c/4 (8h) -> 1x1 */
    size_t big = 0;
    for (int i = 0, s = 1; i < NCONV; i++) {
        if (layers[i].kind == 'T') s *= 2;
        size_t e = h * w * (size_t)(s * s) * (size_t)p->cout[i];
        if (e > big) big = e;
    }
    float *a = cs_act_alloc(big), *b = a ? cs_act_alloc(big) : NULL;
    int rc = b ? 0 : CS_ENOMEM;
    for (size_t n = 0; n < N && !rc; n++) {   /* one image at a time bounds the scratch */
        const float *in = x + n * h * w * (size_t)p->cin[0];
        size_t H = h, W = w, Ho, Wo;
        for (int i = 0; i < NCONV && !rc; i++) {
            float *o = i == NCONV - 1 ? y + n * 64 * h * w * (size_t)p->cout[i] : in == a ? b : a;
            char k = layers[i].kind;
            if ((rc = cs_cancel_check())) break;
            if (k == 'T') rc = cs_conv_transpose2d(in, 1, H, W, (size_t)p->cin[i], &p->w[i], &p->b[i], 2, 0, o, &Ho, &Wo);
            else rc = cs_conv2d(in, 1, H, W, (size_t)p->cin[i], &p->w[i], &p->b[i], 1, k == '3', 1, o, &Ho, &Wo);
            if (rc) break;
            H = Ho;
            W = Wo;
            if (i < NCONV - 1) {
                size_t co = (size_t)p->cout[i];
                cs_gelu(o, o, H * W * co);
                const float *bs = cs_param(p->bn + p->bn_off[i], co), *bt = cs_param(p->bn + p->bn_off[i] + co, co);
                if (!bs || !bt) {
                    rc = CS_ENOMEM;
                    break;
                }
                cs_channel_affine(o, o, H * W, co, bs, bt);
            }
            in = o;
        }
    }
    cs_act_free(a);
    cs_act_free(b);
    return rc;
}

int cs_previewer_forward(const cs_previewer *p, const float *x, size_t N, size_t h, size_t w, float *y)
{
    if (!N || !h || !w) return cs_error(CS_EARG, "Previewer: empty input %zux%zux%zu", N, h, w);
    cs_dev_args a;
    cs_dev_args_begin(&a, cs_dev_pick());
    const float *dx = cs_dev_in(&a, x, N * h * w * (size_t)p->cin[0]);
    float *dy = cs_dev_out(&a, y, N * 64 * h * w * (size_t)p->cout[NCONV - 1]);
    return cs_dev_args_finish(&a, a.rc ? a.rc : forward(p, dx, N, h, w, dy));
}
