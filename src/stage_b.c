#include "stage_b.h"

#include "device.h"
#include "error.h"
#include "lora.h"
#include "models.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* effnet_mapper / pixels_mapper: Conv1x1 -> GELU -> Conv1x1 -> LayerNorm2d */
typedef struct {
    cs_tensor w0, b0, w2, b2;   /* [4c0, cin, 1, 1], [4c0]; [c0, 4c0, 1, 1], [c0] */
    int cin;
} mapper;

struct cs_stage_b {
    cs_st_file *f;
    cs_unet net;
    mapper effnet, pixels;
    cs_tensor clip_w, clip_b;   /* clip_mapper [seq*Cc, Cp] */
    cs_tensor emb_w, emb_b;     /* embedding.1 [c0, c_in*p*p, 1, 1] */
    cs_tensor clf_w, clf_b;     /* clf.1 [c_out*p*p, c0, 1, 1] */
    cs_net_info info;
    cs_lora_patch *lora;        /* merged LoRA weights, or NULL */
};

static int bind_mapper(mapper *mp, cs_wmap *w, const char *name, int64_t c0)
{
    char k[64];
    snprintf(k, sizeof k, "%s.0.weight", name);
    const cs_tensor *t = cs_wmap_peek(w, k);
    mp->cin = t && t->ndim == 4 ? (int)t->shape[1] : 0;
    int e = cs_wmap_req(w, &mp->w0, k, 4, (int64_t[]){4 * c0, mp->cin, 1, 1});
    snprintf(k, sizeof k, "%s.0.bias", name);
    e |= cs_wmap_req(w, &mp->b0, k, 1, (int64_t[]){4 * c0});
    snprintf(k, sizeof k, "%s.2.weight", name);
    e |= cs_wmap_req(w, &mp->w2, k, 4, (int64_t[]){c0, 4 * c0, 1, 1});
    snprintf(k, sizeof k, "%s.2.bias", name);
    e |= cs_wmap_req(w, &mp->b2, k, 1, (int64_t[]){c0});
    return e;
}

int cs_stage_b_load_lora(cs_st_file *f, const cs_unet_opts *opt, cs_lora_list *lora, cs_stage_b **out)
{
    *out = NULL;
    cs_stage_b *m = calloc(1, sizeof *m);
    if (!m) return cs_oom("the Stage B object", sizeof *m);
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
    if (!cs_wmap_detect_prefix(&w, "effnet_mapper.0.weight")) cs_wmap_detect_prefix(&w, "clf.1.weight");
    cs_net_info *in = &m->info;
    const char *clipname = cs_wmap_peek(&w, "clip_mapper.weight") ? "clip_mapper" : "clip_txt_pooled_mapper";
    char kw[64], kb[64];
    snprintf(kw, sizeof kw, "%s.weight", clipname);
    snprintf(kb, sizeof kb, "%s.bias", clipname);
    const cs_tensor *clip = cs_wmap_peek(&w, kw), *emb = cs_wmap_peek(&w, "embedding.1.weight"),
                    *clf = cs_wmap_peek(&w, "clf.1.weight"), *eff = cs_wmap_peek(&w, "effnet_mapper.0.weight");
    if (!clip || clip->ndim != 2 || !emb || emb->ndim != 4 || !clf || clf->ndim != 4 || !eff) {
        const char *miss = !eff ? "effnet_mapper.0.weight" : !clip ? "clip_mapper.weight" : !emb ? "embedding.1.weight"
                         : !clf ? "clf.1.weight" : NULL;
        if (miss && cs_wmap_peek(&w, "clip_txt_mapper.weight"))
            rc = cs_error(CS_EMODEL, "%s: not a Stage B checkpoint: missing %s%s (it looks like a Stage C)",
                          cs_basename(cs_st_path(f)), w.prefix, miss);
        else if (miss)
            rc = cs_error(CS_EMODEL, "%s: not a Stage B checkpoint: missing %s%s", cs_basename(cs_st_path(f)), w.prefix, miss);
        else
            rc = cs_error(CS_EMODEL, "%s: not a Stage B checkpoint: clip_mapper/embedding/clf have the wrong rank",
                          cs_basename(cs_st_path(f)));
        cs_wmap_free(&w);
        free(m);
        return rc;
    }
    if ((rc = cs_lora_merge(f, w.prefix, 0, "Stage B", lora, &m->lora))) {
        cs_wmap_free(&w);
        free(m);
        return rc;
    }
    cs_wmap_overlay(&w, m->lora);
    int64_t c0 = emb->shape[0], cp = clip->shape[1];
    /* c_cond: the AttnBlocks' kv_mapper input width (the most common one, so
     * one bad tensor is reported as such), c_clip_seq = clip_mapper rows /
     * c_cond; without attention c_clip_seq = 4 */
    int64_t cc = 0, cand[64];
    int cnt[64] = {0}, nc = 0, best = 0;
    char p[96];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < CS_UNET_MAX_LEVELS; i++)
            for (int k = 0; k < 256; k++) {
                snprintf(p, sizeof p, "%s_blocks.%d.%d.kv_mapper.1.weight", s ? "up" : "down", i, k);
                const cs_tensor *kv = cs_wmap_peek(&w, p);
                if (!kv || kv->ndim != 2 || kv->shape[1] <= 0 || clip->shape[0] % kv->shape[1]) continue;
                int j = 0;
                while (j < nc && cand[j] != kv->shape[1]) j++;
                if (j == nc && nc < 64) cand[nc++] = kv->shape[1];
                if (j < nc && ++cnt[j] > best) best = cnt[j], cc = cand[j];
            }
    if (!cc) cc = clip->shape[0] / 4;
    in->c_clip_seq = cc ? (int)(clip->shape[0] / cc) : 4;
    in->c_clip_pooled = (int)cp;
    in->c_in = in->c_out = 4;
    int p2 = (int)(emb->shape[1] / 4), ps = (int)lround(sqrt((double)p2));
    in->patch_size = ps >= 1 && ps * ps * 4 == emb->shape[1] ? ps : 1;
    if (in->patch_size == 1) in->c_in = (int)emb->shape[1];
    in->c_out = (int)(clf->shape[0] / (in->patch_size * in->patch_size));
    int64_t pp = (int64_t)in->patch_size * in->patch_size;
    cs_wmap_req(&w, &m->clip_w, kw, 2, (int64_t[]){in->c_clip_seq * cc, cp});
    cs_wmap_req(&w, &m->clip_b, kb, 1, (int64_t[]){in->c_clip_seq * cc});
    cs_wmap_req(&w, &m->emb_w, "embedding.1.weight", 4, (int64_t[]){c0, in->c_in * pp, 1, 1});
    cs_wmap_req(&w, &m->emb_b, "embedding.1.bias", 1, (int64_t[]){c0});
    cs_wmap_req(&w, &m->clf_w, "clf.1.weight", 4, (int64_t[]){in->c_out * pp, c0, 1, 1});
    cs_wmap_req(&w, &m->clf_b, "clf.1.bias", 1, (int64_t[]){in->c_out * pp});
    bind_mapper(&m->effnet, &w, "effnet_mapper", c0);
    bind_mapper(&m->pixels, &w, "pixels_mapper", c0);
    in->c_effnet = m->effnet.cin;
    in->c_pixels = m->pixels.cin;
    if ((rc = cs_unet_bind_info(&m->net, &w, (int)cc, opt, c0, "Stage B", in))) goto fail;
    in->naming = w.prefix[0] ? "comfyui"
               : cs_unet_split_attention(&m->net) || !strcmp(clipname, "clip_txt_pooled_mapper") ? "diffusers"
               : "official";
    in->variant = cs_unet_variant(in);
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

int cs_stage_b_load_opts(cs_st_file *f, const cs_unet_opts *opt, cs_stage_b **out)
{
    return cs_stage_b_load_lora(f, opt, NULL, out);
}

int cs_stage_b_load(cs_st_file *f, cs_stage_b **out) { return cs_stage_b_load_opts(f, NULL, out); }

void cs_stage_b_free(cs_stage_b *m)
{
    if (!m) return;
    cs_unet_free(&m->net);
    cs_lora_patch_free(m->lora);
    free(m);
}

void cs_stage_b_info(const cs_stage_b *m, cs_net_info *info) { *info = m->info; }
size_t cs_stage_b_scratch_bytes(const cs_stage_b *m) { return cs_ws_bytes(&m->net.ws); }
void cs_stage_b_trim(cs_stage_b *m) { cs_ws_free(&m->net.ws); }

/* x [rows, cin] -> y [rows, c0] = LN(conv(GELU(conv(x)))); uses ws slot 2 */
static int run_mapper(cs_stage_b *m, const mapper *mp, const float *x, size_t rows, float *y)
{
    size_t c0 = (size_t)m->net.c[0];
    float *t = cs_ws_get(&m->net.ws, 2, rows * 4 * c0);
    if (!t) return CS_ENOMEM;
    int rc = cs_linear_gelu(x, rows, (size_t)mp->cin, 0, &mp->w0, &mp->b0, t, 0);
    if (rc) return rc;
    if ((rc = cs_linear(t, rows, 4 * c0, 0, &mp->w2, &mp->b2, y, 0, 0))) return rc;
    cs_layernorm(y, y, rows, c0, 1e-6f, NULL, NULL);
    return 0;
}

/* x [N,H,W,c_in] -> eps [N,H,W,c_out], in the current mode's memory */
static int forward(cs_stage_b *m, const float *x, size_t N, size_t H, size_t W, const float *r, const float *effnet,
                   size_t hc, size_t wc, const float *clip, const float *pixels, size_t ph, size_t pw,
                   const float *sca, float *eps)
{
    const cs_net_info *in = &m->info;
    size_t p = (size_t)in->patch_size, c0 = (size_t)m->net.c[0], cc = (size_t)in->c_cond,
           seq = (size_t)in->c_clip_seq, cin = (size_t)in->c_in * p * p;
    size_t h = H / p, w = W / p, rows = N * h * w, prow = N * ph * pw;
    float *remb = cs_unet_remb(&m->net, r, N, sca, NULL);
    float *cond = remb ? cs_act_alloc(N * seq * cc) : NULL, *hb = cond ? cs_act_alloc(rows * c0) : NULL;
    float *t = hb ? cs_act_alloc(rows * (cin > c0 ? cin : c0)) : NULL, *out = NULL;
    float *pz = pixels || !t ? NULL : cs_act_calloc(prow * (size_t)in->c_pixels);
    float *pm = t && (pixels || pz) ? cs_act_alloc(prow * c0) : NULL;
    int rc = CS_ENOMEM;
    if (!pm) goto done;
    /* 4 conditioning tokens per image: clip_mapper viewed as [seq, Cc], normalised */
    if ((rc = cs_linear(clip, N, (size_t)in->c_clip_pooled, 0, &m->clip_w, &m->clip_b, cond, 0, 0))) goto done;
    cs_layernorm(cond, cond, N * seq, cc, 1e-6f, NULL, NULL);
    /* embedding: PixelUnshuffle(p), 1x1 conv, LayerNorm2d */
    const float *xe = x;
    if (p > 1) {
        cs_pixel_unshuffle(x, N, H, W, (size_t)in->c_in, (int)p, t);
        xe = t;
    }
    if ((rc = cs_linear(xe, rows, cin, 0, &m->emb_w, &m->emb_b, hb, 0, 0))) goto done;
    cs_layernorm(hb, hb, rows, c0, 1e-6f, NULL, NULL);
    /* effnet: resize to the embedded grid FIRST, then map at full resolution */
    {
        float *er = cs_ws_get(&m->net.ws, 3, rows * (size_t)in->c_effnet);
        if (!er) goto done;
        cs_resize_bilinear(effnet, N, hc, wc, (size_t)in->c_effnet, er, h, w);
        if ((rc = run_mapper(m, &m->effnet, er, rows, t))) goto done;
        cs_add(hb, t, hb, rows * c0);
    }
    /* pixels: map at their own size FIRST, then resize and add */
    if ((rc = run_mapper(m, &m->pixels, pixels ? pixels : pz, prow, pm))) goto done;
    cs_resize_bilinear(pm, N, ph, pw, c0, t, h, w);
    cs_add(hb, t, hb, rows * c0);
    cs_act_free(t);
    t = NULL;
    rc = cs_unet_forward(&m->net, hb, N, h, w, remb, (size_t)m->net.c_r * (size_t)(1 + m->net.nconds), cond, seq, &out);
    hb = NULL;
    if (rc) goto done;
    /* clf: LayerNorm2d, 1x1 conv, PixelShuffle(p) */
    cs_layernorm(out, out, rows, c0, 1e-6f, NULL, NULL);
    if (p == 1) {
        rc = cs_linear(out, rows, c0, 0, &m->clf_w, &m->clf_b, eps, 0, 0);
    } else {
        float *y = cs_ws_get(&m->net.ws, 0, rows * (size_t)in->c_out * p * p);
        if (!y) goto done;
        if (!(rc = cs_linear(out, rows, c0, 0, &m->clf_w, &m->clf_b, y, 0, 0)))
            cs_pixel_shuffle(y, N, h, w, (size_t)in->c_out, (int)p, eps);
    }
done:
    cs_act_free(remb);
    cs_act_free(cond);
    cs_act_free(hb);
    cs_act_free(t);
    cs_act_free(pz);
    cs_act_free(pm);
    cs_act_free(out);
    return rc;
}

int cs_stage_b_forward(cs_stage_b *m, const float *x, size_t N, size_t H, size_t W, const float *r,
                       const float *effnet, size_t hc, size_t wc, const float *clip, const float *pixels, size_t ph,
                       size_t pw, const float *sca, float *eps)
{
    const cs_net_info *in = &m->info;
    size_t p = (size_t)in->patch_size;
    if (!N || !H || !W || !x || !r || !effnet || !hc || !wc || !clip || !eps)
        return cs_error(CS_EARG, "Stage B forward: missing input or empty size");
    if (H % p || W % p) return cs_error(CS_EARG, "Stage B forward: latent %zux%zu is not a multiple of %zu", H, W, p);
    if (!pixels) ph = pw = 8;
    if (!ph || !pw) return cs_error(CS_EARG, "Stage B forward: empty pixels map");
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return forward(m, x, N, H, W, r, effnet, hc, wc, clip, pixels, ph, pw, sca, eps);
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    cs_dev_args_graph(&a, m, H << 32 | W, hc << 48 | wc << 32 | ph << 16 | pw);
    size_t hw = N * H * W;
    const float *dx = cs_dev_in(&a, x, hw * (size_t)in->c_in), *dr = cs_dev_in(&a, r, N),
                *de = cs_dev_in(&a, effnet, N * hc * wc * (size_t)in->c_effnet),
                *dc = cs_dev_in(&a, clip, N * (size_t)in->c_clip_pooled),
                *dp = cs_dev_in(&a, pixels, N * ph * pw * (size_t)in->c_pixels), *ds = cs_dev_in(&a, sca, N);
    float *dy = cs_dev_out(&a, eps, hw * (size_t)in->c_out);
    int rc = 0;
    while (cs_dev_pass(&a, &rc)) rc = forward(m, dx, N, H, W, dr, de, hc, wc, dc, dp, ph, pw, ds, dy);
    return cs_dev_args_finish(&a, rc);
}

size_t cs_stage_b_min_side(const cs_stage_b *m)
{
    return (size_t)m->info.patch_size * cs_unet_min_side(&m->net);
}

double cs_stage_b_flops(const cs_stage_b *m, size_t N, size_t H, size_t W)
{
    const cs_net_info *in = &m->info;
    size_t p = (size_t)in->patch_size, h = H / p, w = W / p;
    double c0 = in->c_hidden[0], rows = (double)N * h * w;
    double f = cs_unet_flops(&m->net, N, h, w, (size_t)in->c_clip_seq);
    f += 2.0 * rows * c0 * ((double)in->c_in * p * p + (double)in->c_out * p * p);   /* embedding, clf */
    f += 2.0 * rows * (4 * c0 * in->c_effnet + 4 * c0 * c0);                        /* effnet mapper */
    f += 2.0 * N * 64.0 * (4 * c0 * in->c_pixels + 4 * c0 * c0);                     /* pixels mapper at 8x8 */
    return f;
}
