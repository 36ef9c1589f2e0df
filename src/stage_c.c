#include "stage_c.h"

#include "device.h"
#include "error.h"
#include "lora.h"
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
};

static int is_shape(const cs_tensor *t, int ndim) { return t && t->ndim == ndim; }

static void set_variant(cs_net_info *in)
{
    static const struct { const char *name; int c, b0, b1, cc; } v[] = {
        {"full", 2048, 8, 24, 2048},
        {"lite", 1536, 4, 12, 1536},
    };
    in->variant = "custom";
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        int ok = in->nlevels == 2 && in->c_cond == v[i].cc && in->patch_size == 1 && in->c_in == 16 &&
                 in->c_out == 16 && in->c_clip_text == 1280 && in->c_clip_pooled == 1280 && in->c_clip_img == 768 &&
                 in->c_clip_seq == 4 && in->nconds == 2;
        for (int l = 0; ok && l < 2; l++)
            ok = in->c_hidden[l] == v[i].c && !strcmp(in->level_config[l], "CTA") && in->repeat_down[l] == 1 &&
                 in->repeat_up[l] == 1;
        ok = ok && in->blocks_down[0] == v[i].b0 && in->blocks_down[1] == v[i].b1 && in->blocks_up[0] == v[i].b1 &&
             in->blocks_up[1] == v[i].b0;
        if (ok) in->variant = v[i].name;
    }
}

int cs_stage_c_load_lora(cs_st_file *f, const cs_unet_opts *opt, cs_lora_list *lora, cs_stage_c **out)
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
    if ((rc = cs_lora_merge(f, w.prefix, 0, "Stage C", lora, &m->lora))) {
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
    set_variant(in);
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

int cs_stage_c_load_opts(cs_st_file *f, const cs_unet_opts *opt, cs_stage_c **out)
{
    return cs_stage_c_load_lora(f, opt, NULL, out);
}

int cs_stage_c_load(cs_st_file *f, cs_stage_c **out) { return cs_stage_c_load_opts(f, NULL, out); }

void cs_stage_c_free(cs_stage_c *m)
{
    if (!m) return;
    cs_unet_free(&m->net);
    cs_lora_patch_free(m->lora);
    free(m);
}

void cs_stage_c_info(const cs_stage_c *m, cs_net_info *info) { *info = m->info; }
size_t cs_stage_c_scratch_bytes(const cs_stage_c *m) { return cs_ws_bytes(&m->net.ws); }
void cs_stage_c_trim(cs_stage_c *m) { cs_ws_free(&m->net.ws); }

/* conditioning tokens [N, Lt + seq + seq*M, Cc], normalised */
static float *cond_tokens(const cs_stage_c *m, size_t N, const float *txt, size_t Lt, const float *pooled,
                          const float *img, size_t M, size_t *Lc_out)
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
                   float *eps)
{
    size_t c0 = (size_t)m->net.c[0], rows = N * h * w, Lc = 0;
    float *remb = cs_unet_remb(&m->net, r, N, sca, crp);
    float *cond = remb ? cond_tokens(m, N, clip_text, Lt, pooled, clip_img, M, &Lc) : NULL;
    float *hb = cond ? cs_act_alloc(rows * c0) : NULL, *out = NULL;
    int rc = CS_ENOMEM;
    if (!hb) goto done;
    /* embedding: 1x1 conv + LayerNorm2d */
    if ((rc = cs_linear(x, rows, (size_t)m->info.c_in, 0, &m->emb_w, &m->emb_b, hb, 0, 0))) goto done;
    cs_layernorm(hb, hb, rows, c0, 1e-6f, NULL, NULL);
    rc = cs_unet_forward(&m->net, hb, N, h, w, remb, (size_t)m->net.c_r * (size_t)(1 + m->net.nconds), cond, Lc, &out);
    hb = NULL;   /* owned by the U-Net now */
    if (rc) goto done;
    /* clf: LayerNorm2d + 1x1 conv */
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
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return forward(m, x, N, h, w, r, clip_text, Lt, pooled, clip_img, M, sca, crp, eps);
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
    while (cs_dev_pass(&a, &rc)) rc = forward(m, dx, N, h, w, dr, dt, Lt, dp, di, M, ds, dc, de);
    return cs_dev_args_finish(&a, rc);
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
