/* What each released network must contain (built from its constructor
 * config: upstream modules/ and train/, doc/reference.md). Identification
 * is in models_identify.c. */
#include "models.h"

#include "error.h"
#include "unet.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *title;
    cs_part part;
    int lite;
} nets[CS_NET_COUNT] = {
    [CS_NET_UNKNOWN] = {"unknown", "unknown network", CS_PART_COUNT, 0},
    [CS_NET_STAGE_C] = {"stage_c", "Stage C", CS_PART_STAGE_C, 0},
    [CS_NET_STAGE_C_LITE] = {"stage_c_lite", "Stage C lite", CS_PART_STAGE_C, 1},
    [CS_NET_STAGE_B] = {"stage_b", "Stage B", CS_PART_STAGE_B, 0},
    [CS_NET_STAGE_B_LITE] = {"stage_b_lite", "Stage B lite", CS_PART_STAGE_B, 1},
    [CS_NET_STAGE_A] = {"stage_a", "Stage A", CS_PART_STAGE_A, 0},
    [CS_NET_EFFNET] = {"effnet_encoder", "EfficientNet encoder", CS_PART_EFFNET, 0},
    [CS_NET_PREVIEWER] = {"previewer", "Previewer", CS_PART_PREVIEWER, 0},
    [CS_NET_TEXT_G] = {"text_encoder", "CLIP-G text encoder", CS_PART_TEXT, 0},
    [CS_NET_CLIP_VISION] = {"clip_vision", "CLIP vision encoder", CS_PART_CLIP_VISION, 0},
};

static const char *const part_names[CS_PART_COUNT][2] = {
    {"stage_c", "Stage C"}, {"stage_b", "Stage B"}, {"stage_a", "Stage A"},
    {"text_encoder", "text encoder"}, {"effnet_encoder", "EfficientNet encoder"},
    {"previewer", "Previewer"}, {"clip_vision", "CLIP vision encoder"},
};

const char *cs_net_name(cs_net n) { return n >= 0 && n < CS_NET_COUNT ? nets[n].name : "unknown"; }
const char *cs_net_title(cs_net n) { return n >= 0 && n < CS_NET_COUNT ? nets[n].title : "unknown network"; }
cs_part cs_net_part(cs_net n) { return n >= 0 && n < CS_NET_COUNT ? nets[n].part : CS_PART_COUNT; }
int cs_net_is_lite(cs_net n) { return n >= 0 && n < CS_NET_COUNT && nets[n].lite; }
const char *cs_part_name(cs_part p) { return p >= 0 && p < CS_PART_COUNT ? part_names[p][0] : "unknown"; }
const char *cs_part_title(cs_part p) { return p >= 0 && p < CS_PART_COUNT ? part_names[p][1] : "unknown"; }

int cs_part_from_name(const char *s)
{
    for (int p = 0; p < CS_PART_COUNT; p++)
        if (!strcmp(s, part_names[p][0])) return p;
    return -1;
}

const char *cs_naming_name(cs_naming k)
{
    return k == CS_NAMES_DIFFUSERS ? "diffusers" : k == CS_NAMES_COMFY ? "comfyui" : "official";
}

/* ---- constructor configs (upstream train/train_c.py, train/train_b.py) ---- */

#define STAGE_C_IO                                                                                  \
    .c_in = 16, .c_out = 16, .patch = 1, .c_clip_text = 1280, .c_clip_pooled = 1280, .c_clip_img = 768, \
    .c_clip_seq = 4, .nconds = 2
#define STAGE_B_IO                                                                                  \
    .c_in = 4, .c_out = 4, .patch = 2, .c_clip_pooled = 1280, .c_clip_seq = 4, .c_effnet = 16, .c_pixels = 3, \
    .nconds = 1
static const cs_unet_cfg cfg_c = {'C', 2, {2048, 2048}, {32, 32}, {8, 24}, {24, 8}, {1, 1}, {1, 1},
                                  {"CTA", "CTA"}, 2048, STAGE_C_IO};
static const cs_unet_cfg cfg_c_lite = {'C', 2, {1536, 1536}, {24, 24}, {4, 12}, {12, 4}, {1, 1}, {1, 1},
                                       {"CTA", "CTA"}, 1536, STAGE_C_IO};
static const cs_unet_cfg cfg_b = {'B', 4, {320, 640, 1280, 1280}, {-1, -1, 20, 20}, {2, 6, 28, 6},
                                  {6, 28, 6, 2}, {1, 1, 1, 1}, {3, 3, 2, 2}, {"CT", "CT", "CTA", "CTA"}, 1280,
                                  STAGE_B_IO};
static const cs_unet_cfg cfg_b_lite = {'B', 4, {320, 576, 1152, 1152}, {-1, 9, 18, 18}, {2, 4, 14, 4},
                                       {4, 14, 4, 2}, {1, 1, 1, 1}, {2, 2, 2, 2}, {"CT", "CT", "CTA", "CTA"}, 1280,
                                       STAGE_B_IO};
#undef STAGE_C_IO
#undef STAGE_B_IO

const cs_unet_cfg *cs_net_unet_cfg(cs_net net)
{
    switch (net) {
    case CS_NET_STAGE_C: return &cfg_c;
    case CS_NET_STAGE_C_LITE: return &cfg_c_lite;
    case CS_NET_STAGE_B: return &cfg_b;
    case CS_NET_STAGE_B_LITE: return &cfg_b_lite;
    default: return NULL;
    }
}

static int same_cfg(const cs_net_info *in, const cs_unet_cfg *g)
{
    int ok = in->nlevels == g->levels && in->c_cond == g->c_cond && in->c_in == g->c_in && in->c_out == g->c_out &&
             in->patch_size == g->patch && in->c_clip_pooled == g->c_clip_pooled && in->c_clip_seq == g->c_clip_seq &&
             in->nconds == g->nconds;
    if (g->stage == 'C')
        ok = ok && in->c_clip_text == g->c_clip_text && in->c_clip_img == g->c_clip_img;
    else
        ok = ok && in->c_effnet == g->c_effnet && in->c_pixels == g->c_pixels;
    for (int l = 0; ok && l < g->levels; l++)
        ok = in->c_hidden[l] == g->c_hidden[l] && in->blocks_down[l] == g->blocks_down[l] &&
             in->blocks_up[l] == g->blocks_up[l] && in->repeat_down[l] == g->repeat_down[l] &&
             in->repeat_up[l] == g->repeat_up[l] && !strcmp(in->level_config[l], g->level_config[l]);
    return ok;
}

const char *cs_unet_variant(const cs_net_info *in)
{
    int b = in->c_effnet > 0;   /* only Stage B has the effnet mapper */
    if (same_cfg(in, b ? &cfg_b : &cfg_c)) return "full";
    if (same_cfg(in, b ? &cfg_b_lite : &cfg_c_lite)) return "lite";
    return "custom";
}

int cs_latent_c(int px) { return (int)ceil(px / 42.67); }
int cs_latent_b(int px) { return (int)ceil(px / 4.0); }

/* ---- expected tensor lists ---- */

typedef struct {
    cs_expect *e;
    int n, cap, oom;
} elist;

static void push(elist *l, int kind, int ndim, int64_t s0, int64_t s1, int64_t s2, int64_t s3, const char *fmt, ...)
{
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        cs_expect *e = realloc(l->e, (size_t)cap * sizeof *e);
        if (!e) {
            l->oom = 1;
            return;
        }
        l->e = e;
        l->cap = cap;
    }
    cs_expect *x = &l->e[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->kind = kind;
    x->ndim = ndim;
    int64_t s[4] = {s0, s1, s2, s3};
    memcpy(x->shape, s, sizeof s);
}

#define P CS_EXP_PARAM
static void linear(elist *l, const char *pre, int64_t out, int64_t in)
{
    push(l, P, 2, out, in, 0, 0, "%s.weight", pre);
    push(l, P, 1, out, 0, 0, 0, "%s.bias", pre);
}

static void conv(elist *l, const char *pre, int64_t out, int64_t in, int64_t k, int bias)
{
    push(l, P, 4, out, in, k, k, "%s.weight", pre);
    if (bias) push(l, P, 1, out, 0, 0, 0, "%s.bias", pre);
}

static void conv_t(elist *l, const char *pre, int64_t in, int64_t out, int64_t k)   /* weight [in, out, k, k] */
{
    push(l, P, 4, in, out, k, k, "%s.weight", pre);
    push(l, P, 1, out, 0, 0, 0, "%s.bias", pre);
}

static void batchnorm(elist *l, const char *pre, int64_t c, int affine)
{
    if (affine) {
        push(l, P, 1, c, 0, 0, 0, "%s.weight", pre);
        push(l, P, 1, c, 0, 0, 0, "%s.bias", pre);
    }
    push(l, CS_EXP_BUFFER, 1, c, 0, 0, 0, "%s.running_mean", pre);
    push(l, CS_EXP_BUFFER, 1, c, 0, 0, 0, "%s.running_var", pre);
    push(l, CS_EXP_INT64, 0, 0, 0, 0, 0, "%s.num_batches_tracked", pre);
}

/* Stage B/C blocks (spec §2.1-2.3). */
static void res_block(elist *l, const char *pre, int64_t c, int64_t skip)
{
    char b[160];
    push(l, P, 4, c, 1, 3, 3, "%s.depthwise.weight", pre);
    push(l, P, 1, c, 0, 0, 0, "%s.depthwise.bias", pre);
    snprintf(b, sizeof b, "%s.channelwise.0", pre);
    linear(l, b, 4 * c, c + skip);
    push(l, P, 4, 1, 1, 1, 4 * c, "%s.channelwise.2.gamma", pre);
    push(l, P, 4, 1, 1, 1, 4 * c, "%s.channelwise.2.beta", pre);
    snprintf(b, sizeof b, "%s.channelwise.4", pre);
    linear(l, b, c, 4 * c);
}

static void t_block(elist *l, const char *pre, int64_t c, int conds)
{
    static const char *const names[] = {"mapper", "mapper_sca", "mapper_crp"};
    char b[160];
    for (int i = 0; i <= conds; i++) {
        snprintf(b, sizeof b, "%s.%s", pre, names[i]);
        linear(l, b, 2 * c, 64);
    }
}

static void attn_block(elist *l, const char *pre, int64_t c, int64_t c_cond)
{
    char b[160];
    push(l, P, 2, 3 * c, c, 0, 0, "%s.attention.attn.in_proj_weight", pre);
    push(l, P, 1, 3 * c, 0, 0, 0, "%s.attention.attn.in_proj_bias", pre);
    snprintf(b, sizeof b, "%s.attention.attn.out_proj", pre);
    linear(l, b, c, c);
    snprintf(b, sizeof b, "%s.kv_mapper.1", pre);
    linear(l, b, c, c_cond);
}

static void level_modules(elist *l, const cs_unet_cfg *g, const char *list, int idx, int lvl, int reps, int first_skip)
{
    int64_t c = g->c_hidden[lvl];
    const char *pat = g->level_config[lvl];
    int conds = g->stage == 'C' ? 2 : 1, k = 0;
    char b[96];
    for (int r = 0; r < reps; r++)
        for (const char *t = pat; *t; t++, k++) {
            snprintf(b, sizeof b, "%s.%d.%d", list, idx, k);
            if (*t == 'C') res_block(l, b, c, k == 0 && first_skip ? c : 0);
            else if (*t == 'T') t_block(l, b, c, conds);
            else if (*t == 'A') attn_block(l, b, c, g->c_cond);
        }
}

static void unet(elist *l, const cs_unet_cfg *g)
{
    int L = g->levels;
    const int *ch = g->c_hidden;
    char b[96];
    if (g->stage == 'C') {
        linear(l, "clip_txt_mapper", g->c_cond, g->c_clip_text);
        linear(l, "clip_txt_pooled_mapper", g->c_clip_seq * g->c_cond, g->c_clip_pooled);
        linear(l, "clip_img_mapper", g->c_clip_seq * g->c_cond, g->c_clip_img);
    } else {
        conv(l, "effnet_mapper.0", 4 * ch[0], g->c_effnet, 1, 1);
        conv(l, "effnet_mapper.2", ch[0], 4 * ch[0], 1, 1);
        conv(l, "pixels_mapper.0", 4 * ch[0], g->c_pixels, 1, 1);
        conv(l, "pixels_mapper.2", ch[0], 4 * ch[0], 1, 1);
        linear(l, "clip_mapper", g->c_clip_seq * g->c_cond, g->c_clip_pooled);
    }
    conv(l, "embedding.1", ch[0], g->c_in * g->patch * g->patch, 1, 1);
    for (int i = 0; i < L; i++) {
        if (i > 0) {
            if (g->stage == 'C') {
                snprintf(b, sizeof b, "down_downscalers.%d.1.blocks.0", i);
                conv(l, b, ch[i], ch[i - 1], 1, 1);
            } else {
                snprintf(b, sizeof b, "down_downscalers.%d.1", i);
                conv(l, b, ch[i], ch[i - 1], 2, 1);
            }
        }
        level_modules(l, g, "down_blocks", i, i, g->blocks_down[i], 0);
        for (int q = 0; q < g->repeat_down[i] - 1; q++) {
            snprintf(b, sizeof b, "down_repeat_mappers.%d.%d", i, q);
            conv(l, b, ch[i], ch[i], 1, 1);
        }
    }
    for (int u = 0; u < L; u++) {
        int lvl = L - 1 - u;
        level_modules(l, g, "up_blocks", u, lvl, g->blocks_up[u], u > 0);
        for (int q = 0; q < g->repeat_up[u] - 1; q++) {
            snprintf(b, sizeof b, "up_repeat_mappers.%d.%d", u, q);
            conv(l, b, ch[lvl], ch[lvl], 1, 1);
        }
        if (u < L - 1) {
            if (g->stage == 'C') {
                snprintf(b, sizeof b, "up_upscalers.%d.1.blocks.1", u);
                conv(l, b, ch[lvl - 1], ch[lvl], 1, 1);
            } else {
                snprintf(b, sizeof b, "up_upscalers.%d.1", u);
                conv_t(l, b, ch[lvl], ch[lvl - 1], 2);
            }
        }
    }
    conv(l, "clf.1", g->c_out * g->patch * g->patch, ch[0], 1, 1);
}

/* Stage A (spec §5): levels 2, 12 bottleneck blocks, c_levels [192, 384]. */
static void stage_a_res(elist *l, const char *pre, int64_t c)
{
    char b[160];
    push(l, P, 1, 6, 0, 0, 0, "%s.gammas", pre);
    snprintf(b, sizeof b, "%s.depthwise.1", pre);
    conv(l, b, c, 1, 3, 1);
    snprintf(b, sizeof b, "%s.channelwise.0", pre);
    linear(l, b, 4 * c, c);
    snprintf(b, sizeof b, "%s.channelwise.2", pre);
    linear(l, b, c, 4 * c);
}

static void stage_a(elist *l)
{
    const int64_t cl[2] = {192, 384};
    char b[96];
    int k = 0;
    conv(l, "in_block.1", cl[0], 12, 1, 1);
    for (int i = 0; i < 2; i++) {
        if (i > 0) {
            snprintf(b, sizeof b, "down_blocks.%d", k++);
            conv(l, b, cl[i], cl[i - 1], 4, 1);
        }
        snprintf(b, sizeof b, "down_blocks.%d", k++);
        stage_a_res(l, b, cl[i]);
    }
    snprintf(b, sizeof b, "down_blocks.%d.0", k);
    conv(l, b, 4, cl[1], 1, 0);
    snprintf(b, sizeof b, "down_blocks.%d.1", k);
    batchnorm(l, b, 4, 1);
    push(l, P, 2, 8192, 4, 0, 0, "vquantizer.codebook.weight");
    conv(l, "up_blocks.0.0", cl[1], 4, 1, 1);
    k = 1;
    for (int i = 0; i < 2; i++) {
        int64_t c = cl[1 - i];
        for (int j = 0; j < (i == 0 ? 12 : 1); j++) {
            snprintf(b, sizeof b, "up_blocks.%d", k++);
            stage_a_res(l, b, c);
        }
        if (i == 0) {
            snprintf(b, sizeof b, "up_blocks.%d", k++);
            conv_t(l, b, c, cl[0], 4);
        }
    }
    conv(l, "out_block.0", 12, cl[0], 1, 1);
}

/* Previewer (spec §6): conv -> GELU -> BatchNorm, Sequential indices. */
static void previewer(elist *l)
{
    static const struct { int idx, type, cin, cout, k; } t[] = {   /* type 0 conv, 1 conv-transpose */
        {0, 0, 16, 512, 1}, {3, 0, 512, 512, 3}, {6, 1, 512, 256, 2}, {9, 0, 256, 256, 3},
        {12, 1, 256, 128, 2}, {15, 0, 128, 128, 3}, {18, 1, 128, 128, 2}, {21, 0, 128, 128, 3},
        {24, 0, 128, 3, 1},
    };
    char b[96];
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        snprintf(b, sizeof b, "blocks.%d", t[i].idx);
        if (t[i].type) conv_t(l, b, t[i].cin, t[i].cout, t[i].k);
        else conv(l, b, t[i].cout, t[i].cin, t[i].k, 1);
        if (t[i].idx < 24) {
            snprintf(b, sizeof b, "blocks.%d", t[i].idx + 2);
            batchnorm(l, b, t[i].cout, 1);
        }
    }
}

/* EfficientNetV2-S features + mapper (spec §7.3). */
static void cna(elist *l, const char *pre, int64_t out, int64_t in, int64_t k)
{
    char b[160];
    snprintf(b, sizeof b, "%s.0", pre);
    conv(l, b, out, in, k, 0);
    snprintf(b, sizeof b, "%s.1", pre);
    batchnorm(l, b, out, 1);
}

static void effnet(elist *l)
{
    static const struct { int fused, e, cin, cout, n; } st[] = {
        {1, 1, 24, 24, 2}, {1, 4, 24, 48, 4}, {1, 4, 48, 64, 4},
        {0, 4, 64, 128, 6}, {0, 6, 128, 160, 9}, {0, 6, 160, 256, 15},
    };
    char b[96], s[160];
    cna(l, "backbone.0", 24, 3, 3);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < st[i].n; j++) {
            int64_t cin = j ? st[i].cout : st[i].cin, cout = st[i].cout, E = st[i].e * cin;
            snprintf(b, sizeof b, "backbone.%d.%d.block", i + 1, j);
            if (st[i].fused) {
                snprintf(s, sizeof s, "%s.0", b);
                if (st[i].e == 1) {
                    cna(l, s, cout, cin, 3);
                    continue;
                }
                cna(l, s, E, cin, 3);
                snprintf(s, sizeof s, "%s.1", b);
                cna(l, s, cout, E, 1);
                continue;
            }
            int64_t S = cin / 4 > 1 ? cin / 4 : 1;
            snprintf(s, sizeof s, "%s.0", b);
            cna(l, s, E, cin, 1);
            snprintf(s, sizeof s, "%s.1.0", b);   /* depthwise: [E, 1, 3, 3] */
            conv(l, s, E, 1, 3, 0);
            snprintf(s, sizeof s, "%s.1.1", b);
            batchnorm(l, s, E, 1);
            snprintf(s, sizeof s, "%s.2.fc1", b);
            conv(l, s, S, E, 1, 1);
            snprintf(s, sizeof s, "%s.2.fc2", b);
            conv(l, s, E, S, 1, 1);
            snprintf(s, sizeof s, "%s.3", b);
            cna(l, s, cout, E, 1);
        }
    cna(l, "backbone.7", 1280, 256, 1);
    conv(l, "mapper.0", 16, 1280, 1, 0);
    batchnorm(l, "mapper.1", 16, 0);
}

/* HF CLIPTextModelWithProjection, CLIP-G config (spec §8). */
static void text_g(elist *l)
{
    const int64_t V = 49408, W = 1280, M = 5120, N = 77;
    static const char *const proj[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    char b[96];
    push(l, P, 2, V, W, 0, 0, "text_model.embeddings.token_embedding.weight");
    push(l, P, 2, N, W, 0, 0, "text_model.embeddings.position_embedding.weight");
    for (int i = 0; i < 32; i++) {
        for (int j = 0; j < 4; j++) {
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.self_attn.%s", i, proj[j]);
            linear(l, b, W, W);
        }
        push(l, P, 1, W, 0, 0, 0, "text_model.encoder.layers.%d.layer_norm1.weight", i);
        push(l, P, 1, W, 0, 0, 0, "text_model.encoder.layers.%d.layer_norm1.bias", i);
        snprintf(b, sizeof b, "text_model.encoder.layers.%d.mlp.fc1", i);
        linear(l, b, M, W);
        snprintf(b, sizeof b, "text_model.encoder.layers.%d.mlp.fc2", i);
        linear(l, b, W, M);
        push(l, P, 1, W, 0, 0, 0, "text_model.encoder.layers.%d.layer_norm2.weight", i);
        push(l, P, 1, W, 0, 0, 0, "text_model.encoder.layers.%d.layer_norm2.bias", i);
    }
    push(l, P, 1, W, 0, 0, 0, "text_model.final_layer_norm.weight");
    push(l, P, 1, W, 0, 0, 0, "text_model.final_layer_norm.bias");
    push(l, P, 2, W, W, 0, 0, "text_projection.weight");
}
#undef P

int cs_net_expected(cs_net net, cs_expect **out, int *n)
{
    elist l = {0};
    *out = NULL;
    *n = 0;
    const cs_unet_cfg *g = cs_net_unet_cfg(net);
    if (g) unet(&l, g);
    else if (net == CS_NET_STAGE_A) stage_a(&l);
    else if (net == CS_NET_PREVIEWER) previewer(&l);
    else if (net == CS_NET_EFFNET) effnet(&l);
    else if (net == CS_NET_TEXT_G) text_g(&l);
    else return cs_error(CS_EARG, "%s: no tensor list for this network", cs_net_name(net));
    if (l.oom) {
        free(l.e);
        return cs_error(CS_ENOMEM, "out of memory: the tensor list of %s", cs_net_name(net));
    }
    *out = l.e;
    *n = l.n;
    return 0;
}

static int64_t numel(const cs_expect *e)
{
    int64_t m = 1;
    for (int d = 0; d < e->ndim; d++) m *= e->shape[d];
    return m;
}

static int64_t count(cs_net net, int params_only)
{
    cs_expect *e;
    int n;
    if (cs_net_expected(net, &e, &n)) return 0;
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        if (!params_only || e[i].kind == CS_EXP_PARAM) s += numel(&e[i]);
    free(e);
    return s;
}

int64_t cs_net_params(cs_net net) { return count(net, 1); }
int64_t cs_net_elements(cs_net net) { return count(net, 0); }
