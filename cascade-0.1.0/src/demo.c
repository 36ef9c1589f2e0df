/* Demo weights: tiny random networks as ordinary checkpoints. See demo.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mkdtemp */
#endif
#include "demo.h"

#include "cancel.h"
#include "error.h"
#include "safetensors.h"
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cs_demo_list_free(cs_demo_list *l)
{
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* appends one tensor; name printf-style; shape: ndim values, then init, std */
static int add(cs_demo_list *l, int init, float std, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int add(cs_demo_list *l, int init, float std, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        cs_demo_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t)
            return cs_error(CS_ENOMEM, "demo: out of memory");
        l->t = t;
        l->cap = cap;
    }
    cs_demo_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->init = init;
    t->std = std;
    l->n++;
    return 0;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* weight of fan_in inputs with gain g, and its bias */
#define W(l, g, fanin, ...) add(l, CS_DI_NORMAL, (float)((g) / sqrt((double)(fanin))), NDIM(__VA_ARGS__), S(__VA_ARGS__)
#define B(l, n) add(l, CS_DI_NORMAL, 0.1f, 1, S(n)

/* Linear(in -> out) with bias under prefix */
static int linear(cs_demo_list *l, const char *p, int in, int out, double g)
{
    int rc = W(l, g, in, out, in), "%s.weight", p);
    return rc ? rc : B(l, out), "%s.bias", p);
}

static int conv(cs_demo_list *l, const char *p, int in, int out, int k, double g)
{
    int rc = W(l, g, in * k * k, out, in, k, k), "%s.weight", p);
    return rc ? rc : B(l, out), "%s.bias", p);
}

/* ConvTranspose2d(in -> out, k, stride s): weight [in, out, k, k] */
static int convt(cs_demo_list *l, const char *p, int in, int out, int k, int s)
{
    int rc = W(l, 1.0, in * k * k / (s * s), in, out, k, k), "%s.weight", p);
    return rc ? rc : B(l, out), "%s.bias", p);
}

/* ---- Stage C / B blocks (models.md §2) ---- */

static int resblock(cs_demo_list *l, const char *p, int c, int c_skip)
{
    char q[128];
    int rc = W(l, 1.0, 9, c, 1, 3, 3), "%s.depthwise.weight", p);
    if (!rc) rc = B(l, c), "%s.depthwise.bias", p);
    snprintf(q, sizeof q, "%s.channelwise.0", p);
    if (!rc) rc = linear(l, q, c + c_skip, 4 * c, 1.0);
    if (!rc) rc = add(l, CS_DI_NORMAL, 0.5f, 4, S(1, 1, 1, 4 * c), "%s.channelwise.2.gamma", p);
    if (!rc) rc = add(l, CS_DI_NORMAL, 0.5f, 4, S(1, 1, 1, 4 * c), "%s.channelwise.2.beta", p);
    snprintf(q, sizeof q, "%s.channelwise.4", p);
    if (!rc) rc = linear(l, q, 4 * c, c, 1.0);
    return rc;
}

static int tblock(cs_demo_list *l, const char *p, int c, const cs_demo_unet *u)
{
    char q[128];
    snprintf(q, sizeof q, "%s.mapper", p);
    int rc = linear(l, q, u->c_r, 2 * c, 0.5);
    for (int i = 0; !rc && i < u->n_conds; i++) {
        snprintf(q, sizeof q, "%s.mapper_%s", p, u->conds[i]);
        rc = linear(l, q, u->c_r, 2 * c, 0.5);
    }
    return rc;
}

static int attnblock(cs_demo_list *l, const char *p, int c, int c_cond)
{
    char q[128];
    int rc = W(l, 1.0, c, 3 * c, c), "%s.attention.attn.in_proj_weight", p);
    if (!rc) rc = B(l, 3 * c), "%s.attention.attn.in_proj_bias", p);
    snprintf(q, sizeof q, "%s.attention.attn.out_proj", p);
    if (!rc) rc = linear(l, q, c, c, 1.0);
    snprintf(q, sizeof q, "%s.kv_mapper.1", p);
    if (!rc) rc = linear(l, q, c_cond, c, 1.0);
    return rc;
}

/* reps repetitions of pattern at width c under "<group>.<level>."; the first
 * module gets c_skip */
static int level(cs_demo_list *l, const char *group, int lv, int c, int reps, const char *pattern, int c_skip,
                 const cs_demo_unet *u)
{
    int k = 0, rc = 0;
    size_t plen = strlen(pattern);
    for (int r = 0; r < reps && !rc; r++)
        for (size_t j = 0; j < plen && !rc; j++, k++) {
            char p[96];
            snprintf(p, sizeof p, "%s.%d.%d", group, lv, k);
            switch (pattern[j]) {
            case 'C': rc = resblock(l, p, c, k == 0 ? c_skip : 0); break;
            case 'T': rc = tblock(l, p, c, u); break;
            case 'A': rc = attnblock(l, p, c, u->c_cond); break;
            default: rc = cs_error(CS_EARG, "demo: block type '%c' not supported", pattern[j]);
            }
        }
    return rc;
}

int cs_demo_stage_c(const cs_demo_unet *u, cs_demo_list *l)
{
    const int *c = u->c_hidden;
    int cc = u->c_cond, rc = 0;
    memset(l, 0, sizeof *l);
    if (u->levels != 2)
        return cs_error(CS_EARG, "demo: Stage C needs 2 levels");
    rc = linear(l, "clip_txt_mapper", u->c_clip_text, cc, 1.0);
    if (!rc) rc = linear(l, "clip_txt_pooled_mapper", u->c_clip_pooled, 4 * cc, 1.0);
    if (!rc) rc = linear(l, "clip_img_mapper", u->c_clip_img, 4 * cc, 1.0);
    if (!rc) rc = conv(l, "embedding.1", 16, c[0], 1, 1.0);
    for (int i = 0; i < 2 && !rc; i++)
        rc = level(l, "down_blocks", i, c[i], u->blocks_down[i], u->level_config[i], 0, u);
    if (!rc) rc = conv(l, "down_downscalers.1.1.blocks.0", c[0], c[1], 1, 1.0);
    /* up_blocks.0 is level 1 (no skip), up_blocks.1 level 0 (skip = c[0]) */
    if (!rc) rc = level(l, "up_blocks", 0, c[1], u->blocks_up[0], u->level_config[1], 0, u);
    if (!rc) rc = level(l, "up_blocks", 1, c[0], u->blocks_up[1], u->level_config[0], c[0], u);
    if (!rc) rc = conv(l, "up_upscalers.0.1.blocks.1", c[1], c[0], 1, 1.0);
    if (!rc) rc = conv(l, "clf.1", c[0], 16, 1, 1.0);
    if (rc)
        cs_demo_list_free(l);
    return rc;
}

int cs_demo_stage_b(const cs_demo_unet *u, cs_demo_list *l)
{
    const int *c = u->c_hidden;
    int n = u->levels, rc = 0;
    char p[96];
    memset(l, 0, sizeof *l);
    if (n < 1 || n > 4)
        return cs_error(CS_EARG, "demo: Stage B needs 1..4 levels");
    rc = conv(l, "effnet_mapper.0", 16, 4 * c[0], 1, 1.0);
    if (!rc) rc = conv(l, "effnet_mapper.2", 4 * c[0], c[0], 1, 1.0);
    if (!rc) rc = conv(l, "pixels_mapper.0", 3, 4 * c[0], 1, 1.0);
    if (!rc) rc = conv(l, "pixels_mapper.2", 4 * c[0], c[0], 1, 1.0);
    if (!rc) rc = linear(l, "clip_mapper", u->c_clip_pooled, 4 * u->c_cond, 1.0);
    if (!rc) rc = conv(l, "embedding.1", 16, c[0], 1, 1.0);
    for (int i = 0; i < n && !rc; i++) {
        if (i > 0) {
            snprintf(p, sizeof p, "down_downscalers.%d.1", i);
            rc = conv(l, p, c[i - 1], c[i], 2, 1.0);
        }
        if (!rc) rc = level(l, "down_blocks", i, c[i], u->blocks_down[i], u->level_config[i], 0, u);
        for (int q = 0; q < u->repeat_down[i] - 1 && !rc; q++) {
            snprintf(p, sizeof p, "down_repeat_mappers.%d.%d", i, q);
            rc = conv(l, p, c[i], c[i], 1, 1.0);
        }
    }
    for (int uu = 0; uu < n && !rc; uu++) {
        int lv = n - 1 - uu;
        rc = level(l, "up_blocks", uu, c[lv], u->blocks_up[uu], u->level_config[lv], uu > 0 ? c[lv] : 0, u);
        if (!rc && uu < n - 1) {
            snprintf(p, sizeof p, "up_upscalers.%d.1", uu);
            rc = convt(l, p, c[lv], c[lv - 1], 2, 2);
        }
        for (int q = 0; q < u->repeat_up[uu] - 1 && !rc; q++) {
            snprintf(p, sizeof p, "up_repeat_mappers.%d.%d", uu, q);
            rc = conv(l, p, c[lv], c[lv], 1, 1.0);
        }
    }
    if (!rc) rc = conv(l, "clf.1", c[0], 16, 1, 1.0);
    if (rc)
        cs_demo_list_free(l);
    return rc;
}

static int sa_resblock(cs_demo_list *l, const char *p, int c)
{
    char q[128];
    int rc = add(l, CS_DI_NORMAL, 0.5f, 1, S(6), "%s.gammas", p);
    if (!rc) rc = W(l, 1.0, 9, c, 1, 3, 3), "%s.depthwise.1.weight", p);
    if (!rc) rc = B(l, c), "%s.depthwise.1.bias", p);
    snprintf(q, sizeof q, "%s.channelwise.0", p);
    if (!rc) rc = linear(l, q, c, 4 * c, 1.0);
    snprintf(q, sizeof q, "%s.channelwise.2", p);
    if (!rc) rc = linear(l, q, 4 * c, c, 1.0);
    return rc;
}

static int batchnorm(cs_demo_list *l, const char *p, int c)
{
    int rc = add(l, CS_DI_UNIFORM_POS, 0, 1, S(c), "%s.weight", p);
    if (!rc) rc = add(l, CS_DI_NORMAL, 0.2f, 1, S(c), "%s.bias", p);
    if (!rc) rc = add(l, CS_DI_NORMAL, 0.2f, 1, S(c), "%s.running_mean", p);
    if (!rc) rc = add(l, CS_DI_UNIFORM_POS, 0, 1, S(c), "%s.running_var", p);
    return rc;
}

int cs_demo_stage_a(int ch, int nb, int with_encoder, cs_demo_list *l)
{
    int c0 = ch / 2, rc = 0;
    char p[64];
    memset(l, 0, sizeof *l);
    if (with_encoder) {
        rc = conv(l, "in_block.1", 12, c0, 1, 1.0);
        if (!rc) rc = sa_resblock(l, "down_blocks.0", c0);
        if (!rc) rc = conv(l, "down_blocks.1", c0, ch, 4, 1.0);
        if (!rc) rc = sa_resblock(l, "down_blocks.2", ch);
        if (!rc) rc = W(l, 1.0, ch, 4, ch, 1, 1), "down_blocks.3.0.weight");
        if (!rc) rc = batchnorm(l, "down_blocks.3.1", 4);
        if (!rc) rc = add(l, CS_DI_NORMAL, 1.0f, 2, S(8192, 4), "vquantizer.codebook.weight");
    }
    if (!rc) rc = conv(l, "up_blocks.0.0", 4, ch, 1, 1.0);
    for (int i = 0; i < nb && !rc; i++) {
        snprintf(p, sizeof p, "up_blocks.%d", 1 + i);
        rc = sa_resblock(l, p, ch);
    }
    snprintf(p, sizeof p, "up_blocks.%d", nb + 1);
    if (!rc) rc = convt(l, p, ch, c0, 4, 2);
    snprintf(p, sizeof p, "up_blocks.%d", nb + 2);
    if (!rc) rc = sa_resblock(l, p, c0);
    if (!rc) rc = conv(l, "out_block.0", c0, 12, 1, 1.0);
    if (rc)
        cs_demo_list_free(l);
    return rc;
}

int cs_demo_previewer(int h, cs_demo_list *l)
{
    /* (kind, in, out) per conv index; BN after every conv but the last */
    static const struct { int idx, t, in, out; } L[] = {
        {0, 'c', 16, 4}, {3, '3', 4, 4}, {6, 't', 4, 2}, {9, '3', 2, 2},
        {12, 't', 2, 1}, {15, '3', 1, 1}, {18, 't', 1, 1}, {21, '3', 1, 1},
    };
    int rc = 0;
    char p[32];
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < sizeof L / sizeof *L && !rc; i++) {
        int in = L[i].in == 16 ? 16 : h * L[i].in / 4, out = h * L[i].out / 4;
        snprintf(p, sizeof p, "blocks.%d", L[i].idx);
        if (L[i].t == 'c')
            rc = conv(l, p, in, out, 1, 1.0);
        else if (L[i].t == '3')
            rc = conv(l, p, in, out, 3, 1.0);
        else
            rc = convt(l, p, in, out, 2, 2);
        snprintf(p, sizeof p, "blocks.%d", L[i].idx + 2);
        if (!rc) rc = batchnorm(l, p, out);
    }
    if (!rc) rc = conv(l, "blocks.24", h / 4, 3, 1, 1.0);
    if (rc)
        cs_demo_list_free(l);
    return rc;
}

int cs_demo_clip(int w, int layers, int mlp, int proj, cs_demo_list *l)
{
    int rc = 0;
    char p[96];
    memset(l, 0, sizeof *l);
    rc = add(l, CS_DI_NORMAL, 0.5f, 2, S(77, w), "text_model.embeddings.position_embedding.weight");
    if (!rc) rc = add(l, CS_DI_NORMAL, 1.0f, 2, S(49408, w), "text_model.embeddings.token_embedding.weight");
    for (int i = 0; i < layers && !rc; i++) {
        static const char *pr[] = {"k_proj", "out_proj", "q_proj", "v_proj"};
        const char *ln[] = {"layer_norm1", "layer_norm2"};
        for (int j = 0; j < 2 && !rc; j++) {
            rc = add(l, CS_DI_NORMAL, 0.1f, 1, S(w), "text_model.encoder.layers.%d.%s.bias", i, ln[j]);
            if (!rc) rc = add(l, CS_DI_ONE_PLUS, 0.1f, 1, S(w), "text_model.encoder.layers.%d.%s.weight", i, ln[j]);
        }
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.mlp.fc1", i);
        if (!rc) rc = linear(l, p, w, mlp, 1.0);
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.mlp.fc2", i);
        if (!rc) rc = linear(l, p, mlp, w, 1.0);
        for (int j = 0; j < 4 && !rc; j++) {
            snprintf(p, sizeof p, "text_model.encoder.layers.%d.self_attn.%s", i, pr[j]);
            rc = linear(l, p, w, w, 1.0);
        }
    }
    if (!rc) rc = add(l, CS_DI_NORMAL, 0.1f, 1, S(w), "text_model.final_layer_norm.bias");
    if (!rc) rc = add(l, CS_DI_ONE_PLUS, 0.1f, 1, S(w), "text_model.final_layer_norm.weight");
    if (!rc) rc = W(l, 1.0, w, proj, w), "text_projection.weight");
    if (rc)
        cs_demo_list_free(l);
    return rc;
}

void cs_demo_stage_c_cfg(cs_demo_unet *c)
{
    /* the golden tiny Stage C, with CLIP widths of the demo text encoder */
    *c = (cs_demo_unet){.levels = 2, .c_hidden = {128, 128}, .blocks_down = {2, 3}, .blocks_up = {3, 2},
                        .repeat_down = {1, 1}, .repeat_up = {1, 1}, .level_config = {"CTA", "CTA"},
                        .c_cond = 96, .c_r = 64, .c_clip_text = 64, .c_clip_pooled = 48, .c_clip_img = 48,
                        .n_conds = 2, .conds = {"sca", "crp"}};
}

void cs_demo_stage_b_cfg(cs_demo_unet *c)
{
    *c = (cs_demo_unet){.levels = 4, .c_hidden = {32, 48, 128, 128}, .blocks_down = {1, 2, 2, 1},
                        .blocks_up = {1, 2, 2, 1}, .repeat_down = {1, 1, 1, 1}, .repeat_up = {3, 3, 2, 2},
                        .level_config = {"CT", "CT", "CTA", "CTA"}, .c_cond = 96, .c_r = 64,
                        .c_clip_pooled = 48, .n_conds = 1, .conds = {"sca"}};
}

/* ---- values ---- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) from 24 random bits: exact in float, no libm */
static float unit(uint64_t *s)
{
    return (float)((int32_t)(splitmix(s) >> 40) - (1 << 23)) * (1.0f / (1 << 23));
}

int cs_demo_write(const char *path, const cs_demo_list *l, const char *dtype_name, uint64_t seed,
                  const char *const *meta, int n_meta)
{
    int bf16 = !strcmp(dtype_name, "BF16");
    cs_tensor *ts = calloc((size_t)l->n, sizeof *ts);
    void **bufs = calloc((size_t)l->n, sizeof *bufs);
    int rc = 0;
    if (!ts || !bufs) {
        rc = cs_error(CS_ENOMEM, "demo: out of memory");
        goto out;
    }
    const float sqrt3 = 1.7320508f;   /* U(-a, a) has std a / sqrt(3) */
    for (int i = 0; i < l->n && !rc; i++) {
        const cs_demo_tensor *d = &l->t[i];
        size_t n = 1;
        for (int k = 0; k < d->ndim; k++)
            n *= (size_t)d->shape[k];
        bufs[i] = malloc(n * (bf16 ? 2 : 4));
        if (!bufs[i]) {
            rc = cs_error(CS_ENOMEM, "demo: out of memory for %s", d->name);
            break;
        }
        uint64_t s = seed ^ (0x5851F42D4C957F2Dull * (uint64_t)(i + 1));
        for (size_t k = 0; k < n; k++) {
            float u = unit(&s), v;
            if (d->init == CS_DI_UNIFORM_POS)
                v = 1.0f + 0.5f * u;
            else
                v = (d->init == CS_DI_ONE_PLUS ? 1.0f : 0.0f) + u * d->std * sqrt3;
            if (bf16)
                ((uint16_t *)bufs[i])[k] = cs_f32_to_bf16(v);
            else
                ((float *)bufs[i])[k] = v;
        }
        ts[i].dtype = bf16 ? CS_BF16 : CS_F32;
        ts[i].ndim = d->ndim;
        memcpy(ts[i].shape, d->shape, sizeof d->shape);
        ts[i].data = bufs[i];
        ts[i].name = d->name;
    }
    if (!rc)
        rc = cs_st_write(path, ts, l->n, meta, n_meta);
out:
    for (int i = 0; bufs && i < l->n; i++)
        free(bufs[i]);
    free(bufs);
    free(ts);
    return rc;
}

/* ---- the demo set ---- */

#define CLIP_W 64
#define CLIP_LAYERS 2
#define CLIP_MLP 256
#define CLIP_PROJ 48

int cs_demo_create(cs_demo_files *f)
{
    memset(f, 0, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(f->dir, sizeof f->dir, "%s/cascade-demo-XXXXXX", tmp);
    if (!mkdtemp(f->dir)) {
        int rc = cs_error(CS_EIO, "demo: cannot create a temporary folder in %s", tmp);
        f->dir[0] = 0;
        return rc;
    }
    f->cleanup[0] = cs_cleanup_add(f->dir, 1);
    snprintf(f->text_encoder, sizeof f->text_encoder, "%s/text_encoder.safetensors", f->dir);
    snprintf(f->stage_c, sizeof f->stage_c, "%s/stage_c_demo.safetensors", f->dir);
    snprintf(f->stage_b, sizeof f->stage_b, "%s/stage_b_demo.safetensors", f->dir);
    snprintf(f->stage_a, sizeof f->stage_a, "%s/stage_a_demo.safetensors", f->dir);
    snprintf(f->previewer, sizeof f->previewer, "%s/previewer_demo.safetensors", f->dir);
    const char *files[] = {f->text_encoder, f->stage_c, f->stage_b, f->stage_a, f->previewer};
    for (int i = 0; i < 5; i++)   /* before they exist: the folder is ours alone */
        f->cleanup[1 + i] = cs_cleanup_add(files[i], 0);

    char clip_cfg[512];
    snprintf(clip_cfg, sizeof clip_cfg,
             "{\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": 1, \"max_position_embeddings\": 77, \"projection_dim\": %d, "
             "\"layer_norm_eps\": 1e-05, \"hidden_act\": \"gelu\", \"vocab_size\": 49408, "
             "\"bos_token_id\": 49406, \"eos_token_id\": 49407, \"pad_token_id\": 49407}",
             CLIP_W, CLIP_MLP, CLIP_LAYERS, CLIP_PROJ);
    const char *meta_clip[] = {"demo", "cascade tiny random text encoder", "config", clip_cfg};
    const char *meta[] = {"demo", "cascade tiny random network"};

    cs_demo_unet uc, ub;
    cs_demo_stage_c_cfg(&uc);
    cs_demo_stage_b_cfg(&ub);
    cs_demo_list l;
    int rc = cs_demo_clip(CLIP_W, CLIP_LAYERS, CLIP_MLP, CLIP_PROJ, &l);
    if (!rc) {
        rc = cs_demo_write(f->text_encoder, &l, "BF16", CS_DEMO_SEED + 1, meta_clip, 2);
        cs_demo_list_free(&l);
    }
    if (!rc)
        rc = cs_cancel_check();   /* each write takes a moment at real sizes of --demo */
    if (!rc && !(rc = cs_demo_stage_c(&uc, &l))) {
        rc = cs_demo_write(f->stage_c, &l, "BF16", CS_DEMO_SEED + 2, meta, 1);
        cs_demo_list_free(&l);
    }
    if (!rc)
        rc = cs_cancel_check();
    if (!rc && !(rc = cs_demo_stage_b(&ub, &l))) {
        rc = cs_demo_write(f->stage_b, &l, "BF16", CS_DEMO_SEED + 3, meta, 1);
        cs_demo_list_free(&l);
    }
    if (!rc && !(rc = cs_demo_stage_a(64, 2, 0, &l))) {
        rc = cs_demo_write(f->stage_a, &l, "F32", CS_DEMO_SEED + 4, meta, 1);
        cs_demo_list_free(&l);
    }
    if (!rc && !(rc = cs_demo_previewer(32, &l))) {
        rc = cs_demo_write(f->previewer, &l, "F32", CS_DEMO_SEED + 5, meta, 1);
        cs_demo_list_free(&l);
    }
    if (rc)
        cs_demo_remove(f);
    return rc;
}

void cs_demo_remove(cs_demo_files *f)
{
    if (!f->dir[0])
        return;
    const char *p[] = {f->text_encoder, f->stage_c, f->stage_b, f->stage_a, f->previewer};
    for (int i = 0; i < 5; i++)
        if (p[i][0])
            unlink(p[i]);
    rmdir(f->dir);
    f->dir[0] = 0;
    for (int i = 0; i < 6; i++) {
        cs_cleanup_del(f->cleanup[i]);
        f->cleanup[i] = 0;
    }
}
