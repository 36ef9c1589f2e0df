#include "stage_c.h"

#include "device.h"
#include "error.h"
#include "grad.h"
#include "grad_blocks.h"
#include "lora.h"
#include "models.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

struct cs_stage_c {
    cs_st_file *f;
    cs_unet net;
    cs_tensor txt_w, txt_b;     /* clip_txt_mapper         [Cc, Ct] */
    cs_tensor pool_w, pool_b;   /* clip_txt_pooled_mapper  [seq*Cc, Cp] */
    cs_tensor img_w, img_b;     /* clip_img_mapper         [seq*Cc, Ci] */
    cs_tensor emb_w, emb_b;     /* embedding.1             [c0, c_in*p*p, 1, 1] */
    cs_tensor clf_w, clf_b;     /* clf.1                   [c_out*p*p, c0, 1, 1] */
    cs_net_info info;
    cs_lora_patch *lora;        /* merged LoRA weights, or NULL */
    struct train_state *tr;     /* kept by cs_stage_c_forward_train, or NULL */
    int trainable;              /* every weight is a float32 copy in lora (cs_stage_c_load_train) */
};

/* what the backward needs besides the U-Net tape: copies in the memory of
 * the mode the forward ran in (dev: the device's, NULL: host) */
struct train_state {
    const cs_dev_ops *dev;
    size_t N, h, w, Lt, M, Lc;
    float *x, *txt, *pooled, *img;   /* the inputs (img: zeros when none was given) */
    float *remb;                     /* [N, c_r*(1+nconds)] */
    float *cond_pre, *cond;          /* conditioning before / after clip_norm [N, Lc, c_cond] */
    float *emb_pre;                  /* embedding conv output before its LayerNorm [rows, c0] */
    float *out_pre;                  /* U-Net output before clf's LayerNorm [rows, c0] */
};

static void train_free(struct train_state *t)
{
    if (!t) return;
    float *p[] = {t->x, t->txt, t->pooled, t->img, t->remb, t->cond_pre, t->cond, t->emb_pre, t->out_pre};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (p[i]) t->dev ? t->dev->free(p[i]) : cs_free(p[i]);
    free(t);
}

/* a copy of n floats in the current mode's memory (zeros when src is
 * NULL); NULL + cs_error */
static float *keep_copy(const float *src, size_t n)
{
    float *p = src ? cs_act_alloc(n + 1) : cs_act_calloc(n + 1);
    if (p && src) cs_copy(p, src, n);
    return p;
}

static int is_shape(const cs_tensor *t, int ndim) { return t && t->ndim == ndim; }

/* train: the weights become float32 copies the optimizer may update */
static int load(cs_st_file *f, const cs_unet_opts *opt, cs_lora_list *lora, int train, cs_stage_c **out)
{
    *out = NULL;
    cs_stage_c *m = calloc(1, sizeof *m);
    if (!m) return cs_oom("the Stage C object", sizeof *m);
    cs_unet_opts fo;
    if (!opt) {
        cs_unet_opts_from_file(&fo, f);
        opt = &fo;
    }
    m->f = f;
    cs_wmap w;
    int rc = cs_wmap_init(&w, f, NULL);
    if (rc) {
        free(m);
        return rc;
    }
    if (!cs_wmap_detect_prefix(&w, "clip_txt_mapper.weight")) cs_wmap_detect_prefix(&w, "clf.1.weight");
    cs_net_info *in = &m->info;
    const cs_tensor *txt = cs_wmap_peek(&w, "clip_txt_mapper.weight"), *pool = cs_wmap_peek(&w, "clip_txt_pooled_mapper.weight"),
                    *img = cs_wmap_peek(&w, "clip_img_mapper.weight"), *emb = cs_wmap_peek(&w, "embedding.1.weight"),
                    *clf = cs_wmap_peek(&w, "clf.1.weight");
    if (!is_shape(txt, 2) || !is_shape(emb, 4) || !is_shape(clf, 4)) {
        const char *miss = !txt ? "clip_txt_mapper.weight" : !emb ? "embedding.1.weight" : !clf ? "clf.1.weight" : NULL;
        if (miss && cs_wmap_peek(&w, "effnet_mapper.0.weight"))
            rc = cs_error(CS_EMODEL, "%s: not a Stage C checkpoint: missing %s%s (it looks like a Stage B)",
                          cs_basename(cs_st_path(f)), w.prefix, miss);
        else if (miss)
            rc = cs_error(CS_EMODEL, "%s: not a Stage C checkpoint: missing %s%s", cs_basename(cs_st_path(f)), w.prefix, miss);
        else
            rc = cs_error(CS_EMODEL, "%s: not a Stage C checkpoint: clip_txt_mapper/embedding/clf have the wrong rank",
                          cs_basename(cs_st_path(f)));
        cs_wmap_free(&w);
        free(m);
        return rc;
    }
    rc = train ? cs_lora_patch_f32(f, w.prefix, &m->lora) : cs_lora_merge(f, w.prefix, 0, "Stage C", lora, &m->lora);
    if (rc) {
        cs_wmap_free(&w);
        free(m);
        return rc;
    }
    cs_wmap_overlay(&w, m->lora);
    int64_t cc = txt->shape[0], c0 = emb->shape[0];
    in->c_clip_text = (int)txt->shape[1];
    in->c_clip_seq = is_shape(pool, 2) && pool->shape[0] % cc == 0 && pool->shape[0] >= cc ? (int)(pool->shape[0] / cc) : 4;
    in->c_clip_pooled = is_shape(pool, 2) ? (int)pool->shape[1] : 0;
    in->c_clip_img = is_shape(img, 2) ? (int)img->shape[1] : 0;
    in->patch_size = 1;   /* Stage C: PixelUnshuffle(1) */
    in->c_in = (int)emb->shape[1];
    in->c_out = (int)clf->shape[0];
    int64_t seq = in->c_clip_seq;
    int e = 0;
    e |= cs_wmap_req(&w, &m->txt_w, "clip_txt_mapper.weight", 2, (int64_t[]){cc, in->c_clip_text});
    e |= cs_wmap_req(&w, &m->txt_b, "clip_txt_mapper.bias", 1, (int64_t[]){cc});
    e |= cs_wmap_req(&w, &m->pool_w, "clip_txt_pooled_mapper.weight", 2, (int64_t[]){seq * cc, in->c_clip_pooled});
    e |= cs_wmap_req(&w, &m->pool_b, "clip_txt_pooled_mapper.bias", 1, (int64_t[]){seq * cc});
    e |= cs_wmap_req(&w, &m->img_w, "clip_img_mapper.weight", 2, (int64_t[]){seq * cc, in->c_clip_img});
    e |= cs_wmap_req(&w, &m->img_b, "clip_img_mapper.bias", 1, (int64_t[]){seq * cc});
    e |= cs_wmap_req(&w, &m->emb_w, "embedding.1.weight", 4, (int64_t[]){c0, in->c_in, 1, 1});
    e |= cs_wmap_req(&w, &m->emb_b, "embedding.1.bias", 1, (int64_t[]){c0});
    e |= cs_wmap_req(&w, &m->clf_w, "clf.1.weight", 4, (int64_t[]){in->c_out, c0, 1, 1});
    e |= cs_wmap_req(&w, &m->clf_b, "clf.1.bias", 1, (int64_t[]){in->c_out});
    if ((rc = cs_unet_bind_info(&m->net, &w, (int)cc, opt, c0, "Stage C", in))) goto fail;
    (void)e;   /* problems are all in w */
    in->naming = w.prefix[0] ? "comfyui" : cs_unet_split_attention(&m->net) ? "diffusers" : "official";
    in->variant = cs_unet_variant(in);
    m->trainable = train;
    cs_wmap_free(&w);
    *out = m;
    return 0;
fail:
    cs_wmap_free(&w);
    cs_unet_free(&m->net);
    cs_lora_patch_free(m->lora);
    free(m);
    return rc;
}

int cs_stage_c_load_lora(cs_st_file *f, const cs_unet_opts *opt, cs_lora_list *lora, cs_stage_c **out)
{
    return load(f, opt, lora, 0, out);
}

int cs_stage_c_load_train(cs_st_file *f, const cs_unet_opts *opt, cs_stage_c **out)
{
    return load(f, opt, NULL, 1, out);
}

int cs_stage_c_trainable(const cs_stage_c *m) { return m && m->trainable; }
cs_st_file *cs_stage_c_file(const cs_stage_c *m) { return m->f; }

const cs_tensor *cs_stage_c_weight(const cs_stage_c *m, int i)
{
    const cs_tensor *t = cs_lora_patch_at(m->lora, i);
    return t ? t : cs_st_at(m->f, i);
}

const cs_tensor *cs_stage_c_train_weight(const cs_stage_c *m, int i)
{
    return m && m->trainable ? cs_lora_patch_at(m->lora, i) : NULL;
}

int cs_stage_c_load_opts(cs_st_file *f, const cs_unet_opts *opt, cs_stage_c **out)
{
    return cs_stage_c_load_lora(f, opt, NULL, out);
}

int cs_stage_c_load(cs_st_file *f, cs_stage_c **out) { return cs_stage_c_load_opts(f, NULL, out); }

void cs_stage_c_free(cs_stage_c *m)
{
    if (!m) return;
    cs_stage_c_train_end(m);
    cs_unet_free(&m->net);
    cs_lora_patch_free(m->lora);
    free(m);
}

void cs_stage_c_info(const cs_stage_c *m, cs_net_info *info) { *info = m->info; }
size_t cs_stage_c_scratch_bytes(const cs_stage_c *m) { return cs_ws_bytes(&m->net.ws); }
void cs_stage_c_trim(cs_stage_c *m) { cs_ws_free(&m->net.ws); }

/* conditioning tokens [N, Lt + seq + seq*M, Cc], normalised */
static float *cond_tokens(const cs_stage_c *m, size_t N, const float *txt, size_t Lt, const float *pooled,
                          const float *img, size_t M, size_t *Lc_out, float **pre)
{
    size_t cc = (size_t)m->info.c_cond, seq = (size_t)m->info.c_clip_seq, Lc = Lt + seq + seq * M;
    size_t ct = (size_t)m->info.c_clip_text, cp = (size_t)m->info.c_clip_pooled, ci = (size_t)m->info.c_clip_img;
    float *c = cs_act_alloc(N * Lc * cc), *zimg = img || !c ? NULL : cs_act_calloc(N * M * ci);
    if (!c || (!img && !zimg)) {
        cs_act_free(c);
        return NULL;
    }
    if (!img) img = zimg;
    int rc = 0;
    /* [1, seq*Cc] rows are seq consecutive tokens of Cc: write them in place */
    for (size_t n = 0; n < N && !rc; n++) {
        float *cn = c + n * Lc * cc;
        if (Lt) rc = cs_linear(txt + n * Lt * ct, Lt, ct, 0, &m->txt_w, &m->txt_b, cn, 0, 0);
        if (!rc) rc = cs_linear(pooled + n * cp, 1, cp, 0, &m->pool_w, &m->pool_b, cn + Lt * cc, 0, 0);
        if (!rc && M) rc = cs_linear(img + n * M * ci, M, ci, 0, &m->img_w, &m->img_b, cn + (Lt + seq) * cc, 0, 0);
    }
    cs_act_free(zimg);
    if (!rc && pre && !(*pre = keep_copy(c, N * Lc * cc))) rc = CS_ENOMEM;
    if (rc) {
        cs_act_free(c);
        return NULL;
    }
    cs_layernorm(c, c, N * Lc, cc, 1e-6f, NULL, NULL);
    *Lc_out = Lc;
    return c;
}

/* x [N,h,w,c_in] -> eps [N,h,w,c_out], in the current mode's memory */
static int forward(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r, const float *clip_text,
                   size_t Lt, const float *pooled, const float *clip_img, size_t M, const float *sca, const float *crp,
                   float *eps, struct train_state *tr)
{
    size_t c0 = (size_t)m->net.c[0], rows = N * h * w, Lc = 0;
    float *remb = cs_unet_remb(&m->net, r, N, sca, crp);
    float *cond = remb ? cond_tokens(m, N, clip_text, Lt, pooled, clip_img, M, &Lc, tr ? &tr->cond_pre : NULL) : NULL;
    float *hb = cond ? cs_act_alloc(rows * c0) : NULL, *out = NULL;
    int rc = CS_ENOMEM;
    if (!hb) goto done;
    /* embedding: 1x1 conv + LayerNorm2d */
    if ((rc = cs_linear(x, rows, (size_t)m->info.c_in, 0, &m->emb_w, &m->emb_b, hb, 0, 0))) goto done;
    if (tr) {
        size_t cc = (size_t)m->info.c_cond, ldr = (size_t)m->net.c_r * (size_t)(1 + m->net.nconds);
        tr->Lc = Lc;
        rc = CS_ENOMEM;
        if (!(tr->emb_pre = keep_copy(hb, rows * c0)) || !(tr->remb = keep_copy(remb, N * ldr)) ||
            !(tr->cond = keep_copy(cond, N * Lc * cc)))
            goto done;
        rc = 0;
    }
    cs_layernorm(hb, hb, rows, c0, 1e-6f, NULL, NULL);
    rc = cs_unet_forward(&m->net, hb, N, h, w, remb, (size_t)m->net.c_r * (size_t)(1 + m->net.nconds), cond, Lc, &out);
    hb = NULL;   /* owned by the U-Net now */
    if (rc) goto done;
    /* clf: LayerNorm2d + 1x1 conv */
    if (tr && !(tr->out_pre = keep_copy(out, rows * c0))) {
        rc = CS_ENOMEM;
        goto done;
    }
    cs_layernorm(out, out, rows, c0, 1e-6f, NULL, NULL);
    rc = cs_linear(out, rows, c0, 0, &m->clf_w, &m->clf_b, eps, 0, 0);
done:
    cs_act_free(remb);
    cs_act_free(cond);
    cs_act_free(hb);
    cs_act_free(out);
    return rc;
}

int cs_stage_c_forward(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r,
                       const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                       const float *sca, const float *crp, float *eps)
{
    if (!N || !h || !w || !x || !r || !pooled || (Lt && !clip_text) || !eps)
        return cs_error(CS_EARG, "Stage C forward: missing input or empty size");
    if (!clip_img && !M) M = 1;
    if (m->tr) return cs_error(CS_EARG, "Stage C forward: a training forward awaits its backward");
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return forward(m, x, N, h, w, r, clip_text, Lt, pooled, clip_img, M, sca, crp, eps, NULL);
    const cs_net_info *in = &m->info;
    size_t hw = N * h * w;
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    cs_dev_args_graph(&a, m, h << 32 | w, Lt << 32 | M);
    const float *dx = cs_dev_in(&a, x, hw * (size_t)in->c_in), *dr = cs_dev_in(&a, r, N),
                *dt = cs_dev_in(&a, clip_text, N * Lt * (size_t)in->c_clip_text),
                *dp = cs_dev_in(&a, pooled, N * (size_t)in->c_clip_pooled),
                *di = cs_dev_in(&a, clip_img, N * M * (size_t)in->c_clip_img), *ds = cs_dev_in(&a, sca, N),
                *dc = cs_dev_in(&a, crp, N);
    float *de = cs_dev_out(&a, eps, hw * (size_t)in->c_out);
    int rc = 0;
    while (cs_dev_pass(&a, &rc)) rc = forward(m, dx, N, h, w, dr, dt, Lt, dp, di, M, ds, dc, de, NULL);
    return cs_dev_args_finish(&a, rc);
}

/* ---- training ---- */

void cs_stage_c_train_end(cs_stage_c *m)
{
    train_free(m->tr);
    m->tr = NULL;
    cs_unet_tape_end(&m->net);
}

/* the training forward's body, in the current mode (inputs in its memory) */
static int forward_train(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r,
                         const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                         const float *sca, const float *crp, float *eps)
{
    const cs_net_info *in = &m->info;
    struct train_state *t = calloc(1, sizeof *t);
    if (!t) return cs_oom("the training state", sizeof *t);
    m->tr = t;
    t->dev = cs_dev;
    t->N = N, t->h = h, t->w = w, t->Lt = Lt, t->M = M;
    int rc = cs_unet_tape_begin(&m->net);
    if (!rc && (!(t->x = keep_copy(x, N * h * w * (size_t)in->c_in)) ||
                !(t->txt = keep_copy(clip_text, N * Lt * (size_t)in->c_clip_text)) ||
                !(t->pooled = keep_copy(pooled, N * (size_t)in->c_clip_pooled)) ||
                !(t->img = keep_copy(clip_img, N * M * (size_t)in->c_clip_img))))
        rc = CS_ENOMEM;
    if (!rc) rc = forward(m, x, N, h, w, r, clip_text, Lt, pooled, clip_img, M, sca, crp, eps, t);
    return rc;
}

/* On a device (cs_dev_pick) the inputs are uploaded and eps downloaded; the
 * checkpoints stay in device memory for cs_stage_c_backward. */
int cs_stage_c_forward_train(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r,
                             const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                             const float *sca, const float *crp, float *eps)
{
    if (!N || !h || !w || !x || !r || !pooled || (Lt && !clip_text) || !eps)
        return cs_error(CS_EARG, "Stage C training forward: missing input or empty size");
    if (cs_dev) return cs_error(CS_EARG, "Stage C training forward: called inside a device forward");
    if (!clip_img && !M) M = 1;
    cs_stage_c_train_end(m);
    const cs_net_info *in = &m->info;
    size_t hw = N * h * w;
    cs_dev_args a;
    cs_dev_args_begin(&a, cs_dev_pick());   /* no graph: the body keeps state */
    const float *dx = cs_dev_in(&a, x, hw * (size_t)in->c_in), *dr = cs_dev_in(&a, r, N),
                *dt = cs_dev_in(&a, clip_text, N * Lt * (size_t)in->c_clip_text),
                *dp = cs_dev_in(&a, pooled, N * (size_t)in->c_clip_pooled),
                *di = cs_dev_in(&a, clip_img, N * M * (size_t)in->c_clip_img), *ds = cs_dev_in(&a, sca, N),
                *dc = cs_dev_in(&a, crp, N);
    float *de = cs_dev_out(&a, eps, hw * (size_t)in->c_out);
    int rc = a.rc ? a.rc : forward_train(m, dx, N, h, w, dr, dt, Lt, dp, di, M, ds, dc, de);
    rc = cs_dev_args_finish(&a, rc);
    if (rc) cs_stage_c_train_end(m);
    return rc;
}

static int backward(cs_stage_c *m, const float *deps, cs_grads *g, float *dx)
{
    struct train_state *t = m->tr;
    const cs_net_info *in = &m->info;
    size_t N = t->N, rows = N * t->h * t->w, c0 = (size_t)m->net.c[0], cc = (size_t)in->c_cond, Lc = t->Lc;
    size_t seq = (size_t)in->c_clip_seq, Lt = t->Lt, M = t->M;
    size_t ldr = (size_t)m->net.c_r * (size_t)(1 + m->net.nconds);
    float *a = cs_act_alloc(rows * c0 + 1), *d = cs_act_alloc(rows * c0 + 1), *dcond = cs_act_calloc(N * Lc * cc + 1),
          *dpre = cs_act_alloc(N * Lc * cc + 1);
    int rc = a && d && dcond && dpre ? 0 : CS_ENOMEM;
    float *gw = NULL, *gb = NULL;
#define G(T) (gw = cs_grads_of(g, &m->T##_w, &rc), gb = cs_grads_of(g, &m->T##_b, &rc), rc)
    /* clf: eps = conv1x1(LN(out)) */
    if (!rc) cs_layernorm(t->out_pre, a, rows, c0, 1e-6f, NULL, NULL);
    if (!rc && !G(clf)) rc = cs_linear_backward_g(g, a, rows, c0, 0, &m->clf_w, deps, 0, d, 0, gw, gb);
    if (!rc) rc = cs_grads_done(g);   /* fused: clf is complete */
    if (!rc) rc = cs_layernorm_backward(t->out_pre, d, a, 0, rows, c0, 1e-6f, NULL, NULL, NULL);
    if (!rc) rc = cs_unet_backward(&m->net, a, N, t->h, t->w, t->remb, ldr, t->cond, Lc, dcond, g);
    /* embedding: h = LN(conv1x1(x)) */
    if (!rc) rc = cs_layernorm_backward(t->emb_pre, a, d, 0, rows, c0, 1e-6f, NULL, NULL, NULL);
    if (!rc && !G(emb)) rc = cs_linear_backward_g(g, t->x, rows, (size_t)in->c_in, 0, &m->emb_w, d, 0, dx, 0, gw, gb);
    /* conditioning: clip_norm, then the three mappers ([1, seq*cc] rows are seq tokens) */
    if (!rc) rc = cs_layernorm_backward(t->cond_pre, dcond, dpre, 0, N * Lc, cc, 1e-6f, NULL, NULL, NULL);
    for (size_t n = 0; n < N && !rc; n++) {
        const float *dn = dpre + n * Lc * cc;
        size_t ct = (size_t)in->c_clip_text, cp = (size_t)in->c_clip_pooled, ci = (size_t)in->c_clip_img;
        if (Lt && !G(txt))
            rc = cs_linear_backward_g(g, t->txt + n * Lt * ct, Lt, ct, 0, &m->txt_w, dn, 0, NULL, 0, gw, gb);
        if (!rc && !G(pool))
            rc = cs_linear_backward_g(g, t->pooled + n * cp, 1, cp, 0, &m->pool_w, dn + Lt * cc, 0, NULL, 0, gw, gb);
        if (!rc && M && !G(img))
            rc = cs_linear_backward_g(g, t->img + n * M * ci, M, ci, 0, &m->img_w, dn + (Lt + seq) * cc, 0, NULL, 0,
                                      gw, gb);
    }
#undef G
    if (!rc) rc = cs_grads_done(g);   /* fused: the embedding and the clip mappers */
    cs_act_free(a), cs_act_free(d), cs_act_free(dcond), cs_act_free(dpre);
    return rc;
}

/* On the device of the training forward: deps uploaded, dx downloaded. */
int cs_stage_c_backward(cs_stage_c *m, const float *deps, cs_grads *g, float *dx)
{
    struct train_state *t = m->tr;
    if (!t) return cs_error(CS_EARG, "Stage C backward: no recorded training forward");
    if (cs_dev) return cs_error(CS_EARG, "Stage C backward: called inside a device forward");
    size_t rows = t->N * t->h * t->w;
    cs_dev_args a;
    cs_dev_args_begin(&a, t->dev);
    const float *dd = cs_dev_in(&a, deps, rows * (size_t)m->info.c_out);
    float *ddx = cs_dev_out(&a, dx, rows * (size_t)m->info.c_in);
    int rc = a.rc ? a.rc : backward(m, dd, g, ddx);
    rc = cs_dev_args_finish(&a, rc);
    cs_stage_c_train_end(m);   /* the checkpoints are spent: free them now */
    return rc;
}

size_t cs_stage_c_min_side(const cs_stage_c *m)
{
    return (size_t)m->info.patch_size * cs_unet_min_side(&m->net);
}

double cs_stage_c_flops(const cs_stage_c *m, size_t N, size_t h, size_t w, size_t Lt, size_t M)
{
    const cs_net_info *in = &m->info;
    size_t seq = (size_t)in->c_clip_seq, Lc = Lt + seq + seq * M;
    double f = cs_unet_flops(&m->net, N, h, w, Lc);
    f += 2.0 * N * ((double)Lt * in->c_clip_text * in->c_cond + (double)seq * in->c_cond * in->c_clip_pooled +
                    (double)M * seq * in->c_cond * in->c_clip_img);
    f += 2.0 * N * h * w * (double)in->c_hidden[0] * (in->c_in + in->c_out);
    return f;
}
