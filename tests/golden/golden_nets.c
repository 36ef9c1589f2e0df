/* Golden handlers for the Stage C / Stage B blocks and networks:
 * modules.common.{ResBlock, TimestepBlock, AttnBlock, FeedForwardBlock}
 * (parameters w.* inside the io file, constructor args in config) and
 * modules.stage_c.StageC / modules.stage_b.StageB (weights file by role). */
#include "golden.h"

#include "blocks.h"
#include "device.h"
#include "error.h"
#include "ops.h"
#include "stage_b.h"
#include "stage_c.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compares an [N,H,W,C] result with out.y, which must be NCHW [N,C,H,W]. */
static int check_y(gcase *c, const float *y, size_t N, size_t C, size_t H, size_t W)
{
    return golden_check_nhwc(c, "out.y", y, N, C, H, W);
}

/* out.y is NCHW [N,C,H,W]: checked before a result of that size is allocated */
static int want_y(gcase *c, size_t N, size_t C, size_t H, size_t W)
{
    size_t d[4] = {N, C, H, W};
    return golden_shape_is(golden_tensor(c, "out.y"), 4, d) ? 0 : golden_check(c, "out.y", NULL, 4, d);
}

/* A [N, L, C] (or [N, C] = one token) tensor: copy, with its dims. */
static float *tokens(gcase *c, const char *name, size_t *N, size_t *L, size_t *C)
{
    const cs_tensor *t;
    float *x = golden_f32(c, name, &t);
    if (!x) return NULL;
    if (t->ndim != 2 && t->ndim != 3) {
        cs_free(x);
        cs_error(CS_EFORMAT, "%s: %s: expected [N, L, C] tokens", golden_path(c), name);
        return NULL;
    }
    *N = (size_t)t->shape[0];
    *L = t->ndim == 3 ? (size_t)t->shape[1] : 1;
    *C = (size_t)t->shape[t->ndim - 1];
    return x;
}

/* The block's weights: the w.* tensors of the io file, all of them used. */
static int finish_params(cs_wmap *m, int bound, const char *what)
{
    int rc = cs_wmap_finish(m, what);
    cs_wmap_free(m);
    return rc ? rc : bound ? CS_EMODEL : 0;
}

static int run_res_or_ff(gcase *c, int ff)
{
    size_t N, C, H, W, Ns, Cs, Hs, Ws;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *skip = NULL;
    if (!x) return CS_EFORMAT;
    int cw = golden_cfg_int(c, "c", (int)C, 1, GOLDEN_MAX_DIM), cskip = golden_cfg_int(c, "c_skip", 0, 0, GOLDEN_MAX_DIM);
    int rc = golden_cfg_error(c);
    if (!rc && golden_tensor(c, "in.x_skip")) {
        skip = golden_nhwc(c, "in.x_skip", &Ns, &Cs, &Hs, &Ws);
        if (!skip) rc = CS_EFORMAT;
        else if (Ns != N || Hs != H || Ws != W || (int)Cs != cskip)
            rc = cs_error(CS_EFORMAT, "%s: in.x_skip [%zu,%zu,%zu,%zu] does not fit in.x and c_skip %d", golden_path(c),
                          Ns, Cs, Hs, Ws, cskip);
    }
    if (!rc && (size_t)cw != C) rc = cs_error(CS_EFORMAT, "%s: config c %d but in.x has %zu channels", golden_path(c), cw, C);
    cs_wmap m;
    cs_resblock b;
    cs_ws ws = {0};
    if (!rc && !(rc = cs_wmap_init(&m, golden_io(c), "w."))) {
        int e = ff ? cs_ffblock_bind(&b, &m, "", cw) : cs_resblock_bind(&b, &m, "", cw, skip ? cskip : 0);
        rc = finish_params(&m, e, ff ? "FeedForwardBlock" : "ResBlock");
    }
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        float *dx = cs_dev_out(&a, x, N * H * W * C);
        if (dx && dx != x && cs_act_upload(dx, x, N * H * W * C)) a.rc = cs_dev_error();
        const float *ds = cs_dev_in(&a, skip, N * H * W * (size_t)cskip);
        if (!(rc = a.rc))
            rc = ff ? cs_ffblock_forward(&b, dx, N, H * W, &ws) : cs_resblock_forward(&b, dx, N, H, W, ds, &ws);
        cs_ws_free(&ws);   /* in the device's memory: freed before leaving device mode */
        rc = cs_dev_args_finish(&a, rc);
    }
    if (!rc) rc = check_y(c, x, N, C, H, W);
    cs_ws_free(&ws);
    cs_free(x);
    cs_free(skip);
    return rc;
}

static int run_resblock(gcase *c) { return run_res_or_ff(c, 0); }
static int run_ffblock(gcase *c) { return run_res_or_ff(c, 1); }

static int run_tsblock(gcase *c)
{
    size_t N, C, H, W, Nt, Lt, Ct;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *t = x ? tokens(c, "in.t", &Nt, &Lt, &Ct) : NULL;
    int rc = x && t ? 0 : CS_EFORMAT;
    json_t *cfg = golden_config(c), *conds = cfg ? json_object_get(cfg, "conds") : NULL;
    const char *names[CS_MAX_TCONDS];
    char found[CS_MAX_TCONDS][24];
    int nc = 0, c_r = golden_cfg_int(c, "c_timestep", 64, 1, 1 << 16), cw = x ? golden_cfg_int(c, "c", (int)C, 1, GOLDEN_MAX_DIM) : 0;
    if (!rc) rc = golden_cfg_error(c);
    if (!rc && (size_t)cw != C) rc = cs_error(CS_EFORMAT, "%s: config c %d but in.x has %zu channels", golden_path(c), cw, C);
    if (!rc && (conds && !json_is_array(conds))) rc = cs_error(CS_EFORMAT, "%s: config conds is not a list", golden_path(c));
    if (!rc && json_array_size(conds) > CS_MAX_TCONDS) rc = cs_error(CS_EUNSUP, "%s: too many conds", golden_path(c));
    for (size_t i = 0; !rc && i < json_array_size(conds); i++)
        if (!(names[nc++] = json_string_value(json_array_get(conds, i))))
            rc = cs_error(CS_EFORMAT, "%s: config conds[%zu] is not a string", golden_path(c), i);
    if (!conds && !rc) {   /* no list in the config: the mapper_<name> parameters present, sca and crp first */
        cs_st_file *io = golden_io(c);
        if (golden_param(c, "mapper_sca.weight")) snprintf(found[nc], 24, "sca"), names[nc] = found[nc], nc++;
        if (golden_param(c, "mapper_crp.weight")) snprintf(found[nc], 24, "crp"), names[nc] = found[nc], nc++;
        for (int i = 0; i < cs_st_count(io) && nc < CS_MAX_TCONDS; i++) {
            const char *n = cs_st_at(io, i)->name;
            size_t l = strlen(n);
            if (strncmp(n, "w.mapper_", 9) || l < 17 || strcmp(n + l - 7, ".weight") || l - 16 >= 24) continue;
            snprintf(found[nc], 24, "%.*s", (int)(l - 16), n + 9);
            int dup = 0;
            for (int j = 0; j < nc; j++) dup |= !strcmp(names[j], found[nc]);
            if (!dup) names[nc] = found[nc], nc++;
        }
    }
    if (!rc && (Nt != N || Lt * Ct != (size_t)c_r * (size_t)(1 + nc)))
        rc = cs_error(CS_EFORMAT, "%s: in.t is not [%zu, %d]", golden_path(c), N, c_r * (1 + nc));
    cs_wmap m;
    cs_tsblock b;
    cs_ws ws = {0};
    if (!rc && !(rc = cs_wmap_init(&m, golden_io(c), "w.")))
        rc = finish_params(&m, cs_tsblock_bind(&b, &m, "", cw, c_r, nc, names),
                           "TimestepBlock");
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        float *dx = cs_dev_out(&a, x, N * H * W * C);
        if (dx && dx != x && cs_act_upload(dx, x, N * H * W * C)) a.rc = cs_dev_error();
        const float *dt = cs_dev_in(&a, t, N * Lt * Ct);
        if (!(rc = a.rc)) rc = cs_tsblock_forward(&b, dx, N, H * W, dt, Lt * Ct, &ws);
        cs_ws_free(&ws);
        rc = cs_dev_args_finish(&a, rc);
    }
    if (!rc) rc = check_y(c, x, N, C, H, W);
    cs_ws_free(&ws);
    cs_free(x);
    cs_free(t);
    return rc;
}

static int run_attnblock(gcase *c)
{
    size_t N, C, H, W, Nk, Lk, Ck;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *kv = x ? tokens(c, "in.kv", &Nk, &Lk, &Ck) : NULL;
    int rc = x && kv ? 0 : CS_EFORMAT;
    int cw = x ? golden_cfg_int(c, "c", (int)C, 1, GOLDEN_MAX_DIM) : 0,
        cc = kv ? golden_cfg_int(c, "c_cond", (int)Ck, 1, GOLDEN_MAX_DIM) : 0,
        nhead = golden_cfg_int(c, "nhead", cw / 64 > 0 ? cw / 64 : 1, 1, GOLDEN_MAX_DIM),
        self = golden_cfg_int(c, "self_attn", 1, 0, 1);
    if (!rc) rc = golden_cfg_error(c);
    if (!rc && (Nk != N || (size_t)cc != Ck || (size_t)cw != C))
        rc = cs_error(CS_EFORMAT, "%s: in.kv / in.x do not fit c %d, c_cond %d", golden_path(c), cw, cc);
    cs_wmap m;
    cs_attnblock b;
    cs_ws ws = {0};
    if (!rc && !(rc = cs_wmap_init(&m, golden_io(c), "w.")))
        rc = finish_params(&m, cs_attnblock_bind(&b, &m, "", cw, cc, nhead), "AttnBlock");
    b.self_attn = self;
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        float *dx = cs_dev_out(&a, x, N * H * W * C);
        if (dx && dx != x && cs_act_upload(dx, x, N * H * W * C)) a.rc = cs_dev_error();
        const float *dk = cs_dev_in(&a, kv, N * Lk * Ck);
        if (!(rc = a.rc)) rc = cs_attnblock_forward(&b, dx, N, H * W, dk, Lk, &ws);
        cs_ws_free(&ws);
        rc = cs_dev_args_finish(&a, rc);
    }
    if (!rc) rc = check_y(c, x, N, C, H, W);
    cs_ws_free(&ws);
    cs_free(x);
    cs_free(kv);
    return rc;
}

/* nhead / t_conds from the case config override the file's and the default */
static int net_opts(gcase *c, cs_unet_opts *o)
{
    memset(o, 0, sizeof *o);
    json_t *cfg = golden_config(c);
    if (!cfg) return 0;
    char *js = json_dumps(cfg, JSON_COMPACT);
    int rc = js ? cs_unet_opts_from_json(o, js, golden_path(c)) : cs_error(CS_ENOMEM, "out of memory");
    free(js);
    return rc;
}

/* config c_hidden / c_cond against what was inferred from the weights */
static int cross_check(gcase *c, const cs_net_info *in)
{
    json_t *cfg = golden_config(c), *ch = cfg ? json_object_get(cfg, "c_hidden") : NULL;
    if (json_is_array(ch)) {
        int ok = json_array_size(ch) == (size_t)in->nlevels;
        for (size_t i = 0; ok && i < json_array_size(ch); i++)
            ok = json_integer_value(json_array_get(ch, i)) == in->c_hidden[i];
        if (!ok) return cs_error(CS_EMODEL, "%s: inferred level widths differ from config c_hidden", golden_path(c));
    }
    int cc = golden_cfg_int(c, "c_cond", in->c_cond, 1, GOLDEN_MAX_DIM);
    if (cc != in->c_cond) return cs_error(CS_EMODEL, "%s: inferred c_cond %d, config says %d", golden_path(c), in->c_cond, cc);
    return 0;
}

/* optional [N] vector (required: absent is an error too) */
static float *vec(gcase *c, const char *name, size_t N, int *rc, int required)
{
    if (!required && !golden_tensor(c, name)) return NULL;
    const cs_tensor *t;
    float *v = golden_f32(c, name, &t);
    if (!v || (size_t)cs_tensor_numel(t) != N) {
        *rc = cs_error(CS_EFORMAT, "%s: %s is not [%zu]", golden_path(c), name, N);
        cs_free(v);
        return NULL;
    }
    return v;
}

static int run_stage_c(gcase *c)
{
    cs_st_file *f;
    cs_unet_opts o;
    cs_stage_c *m = NULL;
    int rc = golden_weights(c, "stage_c", &f);
    cs_lora_list lo;
    if (!rc) rc = net_opts(c, &o);
    if (!rc && !(rc = golden_lora(c, &lo))) {
        rc = cs_stage_c_load_lora(f, &o, &lo, &m);
        golden_lora_free(&lo);
    }
    if (rc) return rc;
    cs_net_info in;
    cs_stage_c_info(m, &in);
    size_t N, C, H, W, Nt = 0, Lt = 0, Ct = 0, Np = 0, Lp = 0, Cp = 0, Ni = 0, M = 0, Ci = 0;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    float *r = NULL, *txt = tokens(c, "in.clip_text", &Nt, &Lt, &Ct),
          *pool = tokens(c, "in.clip_text_pooled", &Np, &Lp, &Cp), *img = NULL, *sca = NULL, *crp = NULL, *y = NULL;
    if (golden_tensor(c, "in.clip_img")) img = tokens(c, "in.clip_img", &Ni, &M, &Ci);
    rc = cross_check(c, &in);
    if (!rc && (!x || !txt || !pool || (golden_tensor(c, "in.clip_img") && !img))) rc = CS_EFORMAT;
    if (!rc && (Nt != N || Np != N || Lp != 1 || (img && Ni != N) || C != (size_t)in.c_in ||
                Ct != (size_t)in.c_clip_text || Cp != (size_t)in.c_clip_pooled || (img && Ci != (size_t)in.c_clip_img)))
        rc = cs_error(CS_EFORMAT, "%s: inputs do not fit the Stage C in %s", golden_path(c), cs_st_path(f));
    if (!rc) r = vec(c, "in.r", N, &rc, 1);
    if (!rc) rc = want_y(c, N, (size_t)in.c_out, H, W);
    if (!rc) sca = vec(c, "in.sca", N, &rc, 0);
    if (!rc) crp = vec(c, "in.crp", N, &rc, 0);
    if (!rc && !(y = cs_alloc(N * H * W * (size_t)in.c_out * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) rc = cs_stage_c_forward(m, x, N, H, W, r, txt, Lt, pool, img, img ? M : 1, sca, crp, y);
    if (!rc) rc = check_y(c, y, N, (size_t)in.c_out, H, W);
    cs_free(x), cs_free(r), cs_free(txt), cs_free(pool), cs_free(img), cs_free(sca), cs_free(crp), cs_free(y);
    cs_stage_c_free(m);
    return rc;
}

static int run_stage_b(gcase *c)
{
    cs_st_file *f;
    cs_unet_opts o;
    cs_stage_b *m = NULL;
    int rc = golden_weights(c, "stage_b", &f);
    cs_lora_list lo;
    if (!rc) rc = net_opts(c, &o);
    if (!rc && !(rc = golden_lora(c, &lo))) {
        rc = cs_stage_b_load_lora(f, &o, &lo, &m);
        golden_lora_free(&lo);
    }
    if (rc) return rc;
    cs_net_info in;
    cs_stage_b_info(m, &in);
    size_t N, C, H, W, Ne, Ce, He, We, Nc = 0, Lc = 0, Cc = 0, Np = 0, Cpx = 0, Hp = 0, Wp = 0;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *r = NULL;
    float *eff = golden_nhwc(c, "in.effnet", &Ne, &Ce, &He, &We), *clip = tokens(c, "in.clip", &Nc, &Lc, &Cc);
    float *pix = NULL, *sca = NULL, *y = NULL;
    if (golden_tensor(c, "in.pixels")) pix = golden_nhwc(c, "in.pixels", &Np, &Cpx, &Hp, &Wp);
    rc = cross_check(c, &in);
    if (!rc && (!x || !eff || !clip || (golden_tensor(c, "in.pixels") && !pix))) rc = CS_EFORMAT;
    if (!rc && (Ne != N || Nc != N || Lc != 1 || C != (size_t)in.c_in || Ce != (size_t)in.c_effnet ||
                Cc != (size_t)in.c_clip_pooled || (pix && (Np != N || Cpx != (size_t)in.c_pixels))))
        rc = cs_error(CS_EFORMAT, "%s: inputs do not fit the Stage B in %s", golden_path(c), cs_st_path(f));
    if (!rc) r = vec(c, "in.r", N, &rc, 1);
    if (!rc) rc = want_y(c, N, (size_t)in.c_out, H, W);
    if (!rc) sca = vec(c, "in.sca", N, &rc, 0);
    if (!rc && !(y = cs_alloc(N * H * W * (size_t)in.c_out * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) rc = cs_stage_b_forward(m, x, N, H, W, r, eff, He, We, clip, pix, Hp, Wp, sca, y);
    if (!rc) rc = check_y(c, y, N, (size_t)in.c_out, H, W);
    cs_free(x), cs_free(r), cs_free(eff), cs_free(clip), cs_free(pix), cs_free(sca), cs_free(y);
    cs_stage_b_free(m);
    return rc;
}

const golden_handler golden_nets_handlers[] = {
    {"modules.common.ResBlock", run_resblock},
    {"modules.common.FeedForwardBlock", run_ffblock},
    {"modules.common.TimestepBlock", run_tsblock},
    {"modules.common.AttnBlock", run_attnblock},
    {"modules.stage_c.StageC", run_stage_c},
    {"modules.stage_b.StageB", run_stage_b},
    {NULL, NULL},
};
