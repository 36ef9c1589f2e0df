/* CLIP ViT vision tower: loader and forward (HF CLIPVisionModelWithProjection). */
#include "clip_vision.h"

#include "cancel.h"
#include "device.h"
#include "encoder.h"
#include "error.h"
#include "infile.h"
#include "ops.h"
#include "weights.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Far above ViT-bigG (width 1664, 48 layers, 8192 MLP) and any image size a
 * ViT is trained at, small enough that buffer sizes stay far from overflow. */
#define MAX_WIDTH 16384
#define MAX_LAYERS 512
#define MAX_IMAGE 4096

struct cs_clip_vision {
    cs_clip_vision_config cfg;
    cs_tensor patch_w, proj;
    float *cls, *pos;          /* [width], [tokens, width] */
    float *pre_w, *pre_b, *post_w, *post_b;
    cs_enc_layer *layer;
    cs_st_file *owned;
};

#define P "vision_model."

/* ---- config -------------------------------------------------------------- */

static int int_field(json_t *o, const char *key, int max, int *dst)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > max) return -1;
    *dst = (int)json_integer_value(v);
    return 0;
}

/* Fields present in the JSON override c. */
static int parse_config(const char *text, const char *what, cs_clip_vision_config *c)
{
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) return cs_error(CS_EFORMAT, "%s: config line %d: %s", what, err.line, err.text);
    json_t *o = json_object_get(root, "vision_config");   /* a full CLIPModel config */
    if (!json_is_object(o)) o = root;
    const char *bad = NULL;
    int rc = 0;
    if (int_field(o, "hidden_size", MAX_WIDTH, &c->width)) bad = "hidden_size";
    else if (int_field(o, "num_hidden_layers", MAX_LAYERS, &c->layers)) bad = "num_hidden_layers";
    else if (int_field(o, "num_attention_heads", MAX_WIDTH, &c->heads)) bad = "num_attention_heads";
    else if (int_field(o, "intermediate_size", 4 * MAX_WIDTH, &c->mlp)) bad = "intermediate_size";
    else if (int_field(o, "image_size", MAX_IMAGE, &c->image)) bad = "image_size";
    else if (int_field(o, "patch_size", MAX_IMAGE, &c->patch)) bad = "patch_size";
    else if (int_field(o, "projection_dim", MAX_WIDTH, &c->proj)) bad = "projection_dim";
    else if (int_field(o, "num_channels", 16, &c->channels)) bad = "num_channels";
    json_t *v = json_object_get(o, "layer_norm_eps");
    if (!bad && v) {
        if (!json_is_number(v) || !(json_number_value(v) > 0 && json_number_value(v) < 1)) bad = "layer_norm_eps";
        else c->eps = (float)json_number_value(v);
    }
    v = json_object_get(o, "hidden_act");
    if (!bad && v) {
        const char *act = json_string_value(v);
        if (act && !strcmp(act, "gelu")) c->quick_gelu = 0;
        else if (act && !strcmp(act, "quick_gelu")) c->quick_gelu = 1;
        else rc = cs_error(CS_EUNSUP, "%s: hidden_act \"%s\" is not supported (gelu, quick_gelu)", what,
                           act ? act : "?");
    }
    if (bad) rc = cs_error(CS_EFORMAT, "%s: config: bad value for \"%s\"", what, bad);
    json_decref(root);
    return rc;
}

static int64_t dim(const cs_tensor *t, int d) { return t && t->ndim > d ? t->shape[d] : 0; }

/* What the shapes say; the rest are ViT-L/14's values. */
static void config_from_shapes(const cs_wmap *w, cs_clip_vision_config *c)
{
    const cs_tensor *pe = cs_wmap_peek(w, P "embeddings.patch_embedding.weight");
    c->width = (int)dim(cs_wmap_peek(w, P "embeddings.class_embedding"), 0);
    c->channels = (int)dim(pe, 1);
    c->patch = (int)dim(pe, 2);
    int64_t npos = dim(cs_wmap_peek(w, P "embeddings.position_embedding.weight"), 0);
    int64_t g = 0;
    while ((g + 1) * (g + 1) <= npos - 1 && g < MAX_IMAGE) g++;
    c->image = (int)(g * c->patch);
    c->mlp = (int)dim(cs_wmap_peek(w, P "encoder.layers.0.mlp.fc1.weight"), 0);
    c->proj = (int)dim(cs_wmap_peek(w, "visual_projection.weight"), 0);
    c->heads = c->width >= 64 ? c->width / 64 : 1;
    c->layers = 0;
    for (int i = 0; i < cs_st_count(w->f); i++) {
        int l;
        if (sscanf(cs_st_at(w->f, i)->name, P "encoder.layers.%d.", &l) == 1 && l >= 0 && l < MAX_LAYERS &&
            l + 1 > c->layers)
            c->layers = l + 1;
    }
    c->eps = 1e-5f;
    c->quick_gelu = 1;
}

int cs_clip_vision_probe(cs_st_file *f)
{
    return cs_st_find(f, P "embeddings.patch_embedding.weight") && cs_st_find(f, P "embeddings.class_embedding") &&
           cs_st_find(f, "visual_projection.weight");
}

/* ---- loading -------------------------------------------------------------- */

void cs_clip_vision_free(cs_clip_vision *m)
{
    if (!m) return;
    for (int l = 0; m->layer && l < m->cfg.layers; l++) cs_enc_layer_free(&m->layer[l]);
    free(m->layer);
    cs_param_free(m->cls), cs_param_free(m->pos);
    cs_param_free(m->pre_w), cs_param_free(m->pre_b), cs_param_free(m->post_w), cs_param_free(m->post_b);
    cs_st_close(m->owned);
    free(m);
}

const cs_clip_vision_config *cs_clip_vision_get_config(const cs_clip_vision *m) { return &m->cfg; }

/* A required tensor as float32 (NULL: problem recorded or out of memory). */
static float *req_f32(cs_wmap *w, const char *name, int ndim, int64_t d0, int64_t d1, int *oom)
{
    cs_tensor t;
    int64_t d[2] = {d0, d1};
    if (cs_wmap_req(w, &t, name, ndim, d)) return NULL;
    float *p = cs_tensor_f32_dup(&t);
    if (!p) *oom = 1;
    return p;
}

static void req(cs_wmap *w, cs_tensor *out, const char *name, int64_t d0, int64_t d1)
{
    int64_t d[2] = {d0, d1};
    cs_wmap_req(w, out, name, d1 ? 2 : 1, d);
}

static int bind(cs_clip_vision *m, cs_wmap *w)
{
    const cs_clip_vision_config *c = &m->cfg;
    int64_t W = c->width, G = c->image / c->patch, T = G * G + 1;
    int oom = 0;
    char nm[128];
    int64_t pd[4] = {W, c->channels, c->patch, c->patch};
    cs_wmap_req(w, &m->patch_w, P "embeddings.patch_embedding.weight", 4, pd);
    m->cls = req_f32(w, P "embeddings.class_embedding", 1, W, 0, &oom);
    m->pos = req_f32(w, P "embeddings.position_embedding.weight", 2, T, W, &oom);
    m->pre_w = req_f32(w, P "pre_layrnorm.weight", 1, W, 0, &oom);
    m->pre_b = req_f32(w, P "pre_layrnorm.bias", 1, W, 0, &oom);
    m->layer = calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer) return cs_error(CS_ENOMEM, "%s: out of memory", cs_st_path(w->f));
    for (int l = 0; l < c->layers; l++) {
        cs_enc_layer *L = &m->layer[l];
        static const char *const lin[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        cs_tensor *lw[4][2] = {{&L->q_w, &L->q_b}, {&L->k_w, &L->k_b}, {&L->v_w, &L->v_b}, {&L->o_w, &L->o_b}};
        for (int j = 0; j < 4; j++) {
            snprintf(nm, sizeof nm, P "encoder.layers.%d.self_attn.%s.weight", l, lin[j]);
            req(w, lw[j][0], nm, W, W);
            snprintf(nm, sizeof nm, P "encoder.layers.%d.self_attn.%s.bias", l, lin[j]);
            req(w, lw[j][1], nm, W, 0);
        }
        float **ln[4] = {&L->ln1_w, &L->ln1_b, &L->ln2_w, &L->ln2_b};
        static const char *const lnn[] = {"layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight",
                                          "layer_norm2.bias"};
        for (int j = 0; j < 4; j++) {
            snprintf(nm, sizeof nm, P "encoder.layers.%d.%s", l, lnn[j]);
            *ln[j] = req_f32(w, nm, 1, W, 0, &oom);
        }
        snprintf(nm, sizeof nm, P "encoder.layers.%d.mlp.fc1.weight", l);
        req(w, &L->fc1_w, nm, c->mlp, W);
        snprintf(nm, sizeof nm, P "encoder.layers.%d.mlp.fc1.bias", l);
        req(w, &L->fc1_b, nm, c->mlp, 0);
        snprintf(nm, sizeof nm, P "encoder.layers.%d.mlp.fc2.weight", l);
        req(w, &L->fc2_w, nm, W, c->mlp);
        snprintf(nm, sizeof nm, P "encoder.layers.%d.mlp.fc2.bias", l);
        req(w, &L->fc2_b, nm, W, 0);
    }
    m->post_w = req_f32(w, P "post_layernorm.weight", 1, W, 0, &oom);
    m->post_b = req_f32(w, P "post_layernorm.bias", 1, W, 0, &oom);
    req(w, &m->proj, "visual_projection.weight", c->proj, W);
    /* buffers and the text half of a full CLIPModel file: not ours, not wrong */
    cs_wmap_find(w, P "embeddings.position_ids");
    for (int i = 0; i < cs_st_count(w->f); i++) {
        const char *n = cs_st_at(w->f, i)->name;
        if (!strncmp(n, "text_model.", 11) || !strcmp(n, "text_projection.weight") || !strcmp(n, "logit_scale"))
            cs_wmap_find(w, n);
    }
    if (oom) return cs_error(CS_ENOMEM, "%s: out of memory", cs_st_path(w->f));
    return cs_wmap_finish(w, "CLIP vision");
}

int cs_clip_vision_load(cs_st_file *f, const char *config_json, cs_clip_vision **out)
{
    *out = NULL;
    const char *path = cs_st_path(f);
    cs_wmap w;
    int rc = cs_wmap_init(&w, f, "");
    if (rc) return rc;
    cs_clip_vision *m = calloc(1, sizeof *m);
    if (!m) {
        cs_wmap_free(&w);
        return cs_error(CS_ENOMEM, "%s: out of memory", path);
    }
    cs_clip_vision_config *c = &m->cfg;
    config_from_shapes(&w, c);
    const char *cfg = config_json ? config_json : cs_st_meta(f, "config");
    if (cfg) rc = parse_config(cfg, path, c);
    if (!rc && (c->width <= 0 || c->layers <= 0 || c->heads <= 0 || c->width % c->heads || c->patch <= 0 ||
                c->image < c->patch || c->image % c->patch || c->mlp <= 0 || c->proj <= 0 || c->channels <= 0))
        rc = cs_error(CS_EMODEL, "%s: no usable CLIP vision config (width %d, %d layers, %d heads, image %d, patch %d)",
                      path, c->width, c->layers, c->heads, c->image, c->patch);
    /* 16 tensors a layer: more layers than tensors cannot bind (and must not allocate) */
    if (!rc && c->layers > cs_st_count(f))
        rc = cs_error(CS_EMODEL, "%s: the config asks for %d layers, more than the file's %d tensors", path,
                      c->layers, cs_st_count(f));
    if (!rc) rc = bind(m, &w);
    cs_wmap_free(&w);
    if (rc) {
        cs_clip_vision_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int cs_clip_vision_open(const char *path, cs_clip_vision **out)
{
    *out = NULL;
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    /* config.json beside the weights (HF repo layout) when there is one */
    char cfgpath[4200], *cfg = NULL;
    const char *slash = strrchr(path, '/');
    snprintf(cfgpath, sizeof cfgpath, "%.*sconfig.json", slash ? (int)(slash - path + 1) : 0, path);
    rc = cs_infile_read(cfgpath, "config file", CS_MAX_CONFIG_FILE, &cfg, NULL);
    if (rc && errno == ENOENT) rc = 0, cfg = NULL;
    if (!rc) rc = cs_clip_vision_load(f, cfg, out);
    free(cfg);
    if (rc) {
        cs_st_close(f);
        return rc;
    }
    (*out)->owned = f;
    return 0;
}

/* ---- forward --------------------------------------------------------------- */

/* The body: runs in the current mode (CPU or device); pixels and outputs are
 * host memory, moved with cs_act_upload / cs_act_download. */
static int forward(const cs_clip_vision *m, const float *pixels, size_t N, const cs_clip_vision_out *out)
{
    const cs_clip_vision_config *c = &m->cfg;
    size_t C = (size_t)c->width, G = (size_t)(c->image / c->patch), GG = G * G, T = GG + 1, R = N * T, RC = R * C;
    size_t npix = N * (size_t)c->image * (size_t)c->image * (size_t)c->channels;
    float *buf = cs_act_alloc(npix + 6 * RC + R * (size_t)c->mlp + 2 * N * C + N * (size_t)c->proj);
    if (!buf) return CS_ENOMEM;
    float *px = buf, *h = px + npix, *x = h + RC, *q = x + RC, *k = q + RC, *v = k + RC, *a = v + RC;
    float *f = a + RC, *pooled = f + R * (size_t)c->mlp, *pn = pooled + N * C, *emb = pn + N * C;
    const cs_enc_dims dims = {C, (size_t)c->mlp, c->heads, c->quick_gelu, c->eps};
    const float *cls = cs_param(m->cls, C), *pos = cs_param(m->pos, T * C);
    const float *prw = cs_param(m->pre_w, C), *prb = cs_param(m->pre_b, C);
    const float *pow_ = cs_param(m->post_w, C), *pob = cs_param(m->post_b, C);
    int rc = cls && pos && prw && prb && pow_ && pob ? 0 : CS_ENOMEM;
    /* patch embedding: a stride-patch conv without bias, x: [N, G, G, C] */
    if (!rc) rc = cs_act_upload(px, pixels, npix);
    if (!rc) rc = cs_conv2d(px, N, (size_t)c->image, (size_t)c->image, (size_t)c->channels, &m->patch_w, NULL,
                            c->patch, 0, 1, x, NULL, NULL);
    /* tokens: [class, patches] + positions, then pre_layrnorm */
    for (size_t n = 0; !rc && n < N; n++) {
        float *hn = h + n * T * C;
        cs_copy(hn, cls, C);
        cs_copy(hn + C, x + n * GG * C, GG * C);
        cs_add(hn, pos, hn, T * C);
    }
    if (!rc) {
        cs_layernorm(h, x, R, C, c->eps, prw, prb);
        cs_copy(h, x, RC);
    }
    if (!rc && out->hidden) rc = cs_act_download(out->hidden[0], h, RC);
    for (int l = 0; !rc && l < c->layers; l++) {
        if ((rc = cs_cancel_check())) break;
        rc = cs_enc_layer_forward(&m->layer[l], &dims, h, N, T, NULL, x, q, k, v, a, f);
        if (!rc && out->hidden) rc = cs_act_download(out->hidden[l + 1], h, RC);
    }
    if (!rc && out->last_hidden) rc = cs_act_download(out->last_hidden, h, RC);
    if (!rc && out->image_embeds) {
        cs_copy2d(pooled, C, h, T * C, N, C);   /* the class token of each image */
        cs_layernorm(pooled, pn, N, C, c->eps, pow_, pob);
        rc = cs_linear(pn, N, C, 0, &m->proj, NULL, emb, 0, 0);
        if (!rc) rc = cs_act_download(out->image_embeds, emb, N * (size_t)c->proj);
    }
    if (!rc) rc = cs_dev_error();
    cs_act_free(buf);
    return rc;
}

int cs_clip_vision_forward(const cs_clip_vision *m, const float *pixels, size_t N, const cs_clip_vision_out *out)
{
    if (N == 0 || N > 4096) return cs_error(CS_EARG, "clip vision: %zu images; need 1 to 4096", N);
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return forward(m, pixels, N, out);
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    return cs_dev_args_finish(&a, forward(m, pixels, N, out));
}
