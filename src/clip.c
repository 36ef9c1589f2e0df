/* CLIP text encoder forward (HF modeling_clip.py). */
#include "clip.h"

#include "cancel.h"
#include "device.h"
#include "error.h"
#include "encoder.h"
#include "lora.h"
#include "infile.h"
#include "ops.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROBLEMS 4

struct cs_clip {
    cs_clip_config cfg;
    const cs_tensor *tok_emb, *proj;
    float *pos;              /* [ctx, width] float32 */
    float *lnf_w, *lnf_b;
    cs_enc_layer *layer;
    cs_st_file *owned;       /* set by cs_clip_open */
    cs_lora_patch *lora;     /* merged LoRA weights, or NULL */
};

/* ---- config -------------------------------------------------------------- */

static int int_field(json_t *o, const char *key, int *dst)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24)) return -1;
    *dst = (int)json_integer_value(v);
    return 0;
}

/* Fields present in the JSON override c. */
static int parse_config(const char *text, const char *what, cs_clip_config *c)
{
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) return cs_error(CS_EFORMAT, "%s: line %d: %s", what, err.line, err.text);
    json_t *o = json_object_get(root, "text_config");   /* a full CLIPModel config */
    if (!json_is_object(o)) o = root;
    int rc = 0;
    const char *bad = NULL;
    if (int_field(o, "vocab_size", &c->vocab)) bad = "vocab_size";
    else if (int_field(o, "hidden_size", &c->width)) bad = "hidden_size";
    else if (int_field(o, "num_hidden_layers", &c->layers)) bad = "num_hidden_layers";
    else if (int_field(o, "num_attention_heads", &c->heads)) bad = "num_attention_heads";
    else if (int_field(o, "intermediate_size", &c->mlp)) bad = "intermediate_size";
    else if (int_field(o, "max_position_embeddings", &c->ctx)) bad = "max_position_embeddings";
    else if (int_field(o, "projection_dim", &c->proj)) bad = "projection_dim";
    json_t *v = json_object_get(o, "layer_norm_eps");
    if (!bad && v) {
        if (!json_is_number(v) || json_number_value(v) <= 0) bad = "layer_norm_eps";
        else c->eps = (float)json_number_value(v);
    }
    v = json_object_get(o, "eos_token_id");
    if (!bad && json_is_integer(v)) c->eos = (int32_t)json_integer_value(v);
    v = json_object_get(o, "hidden_act");
    if (!bad && v) {
        const char *act = json_string_value(v);
        if (act && !strcmp(act, "gelu")) c->quick_gelu = 0;
        else if (act && !strcmp(act, "quick_gelu")) c->quick_gelu = 1;
        else rc = cs_error(CS_EUNSUP, "%s: hidden_act \"%s\" is not supported (gelu, quick_gelu)",
                           what, act ? act : "?");
    }
    if (bad) rc = cs_error(CS_EFORMAT, "%s: bad value for \"%s\"", what, bad);
    json_decref(root);
    return rc;
}

/* ---- tensors and validation -------------------------------------------- */

typedef struct {
    const cs_tensor *const *ts;
    int n;
    size_t plen;             /* prefix length; names compared after it */
    const char *prefix;
} tensor_set;

static const cs_tensor *find(const tensor_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        const char *nm = s->ts[i]->name;
        if (nm && !strncmp(nm, s->prefix, s->plen) && !strcmp(nm + s->plen, name)) return s->ts[i];
    }
    return NULL;
}

static int64_t dim(const cs_tensor *t, int d) { return t && t->ndim > d ? t->shape[d] : 0; }

/* Reads what the shapes say: widths, vocab, positions, layer count. */
static void config_from_shapes(const tensor_set *s, cs_clip_config *c)
{
    const cs_tensor *te = find(s, "text_model.embeddings.token_embedding.weight");
    c->vocab = (int)dim(te, 0);
    c->width = (int)dim(te, 1);
    c->ctx = (int)dim(find(s, "text_model.embeddings.position_embedding.weight"), 0);
    c->mlp = (int)dim(find(s, "text_model.encoder.layers.0.mlp.fc1.weight"), 0);
    c->proj = (int)dim(find(s, "text_projection.weight"), 0);
    c->heads = c->width >= 64 ? c->width / 64 : 1;   /* head dim 64 (models.md §10) */
    c->layers = 0;
    for (int i = 0; i < s->n; i++) {
        const char *nm = s->ts[i]->name;
        int l;
        if (nm && !strncmp(nm, s->prefix, s->plen) &&
            sscanf(nm + s->plen, "text_model.encoder.layers.%d.", &l) == 1 && l >= 0 && l < 4096 &&
            l + 1 > c->layers)
            c->layers = l + 1;
    }
    c->eps = 1e-5f;
    c->quick_gelu = 0;
    c->eos = 49407;
}

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    const cs_tensor *t;
} expect;

static void add_expect(expect *e, int *k, const char *name, int64_t d0, int64_t d1)
{
    snprintf(e[*k].name, sizeof e[*k].name, "%s", name);
    e[*k].ndim = d1 ? 2 : 1;
    e[*k].shape[0] = d0;
    e[*k].shape[1] = d1;
    e[*k].t = NULL;
    (*k)++;
}

static void problem(char *msg, size_t cap, int *count, const char *fmt, const char *a, const char *b,
                    const char *c2)
{
    if (*count < MAX_PROBLEMS) {
        size_t l = strlen(msg);
        snprintf(msg + l, cap - l, "%s", *count ? "; " : "");
        l = strlen(msg);
        snprintf(msg + l, cap - l, fmt, a, b, c2);
    }
    (*count)++;
}

/* Checks every expected tensor (presence, shape, float dtype) and that no
 * unknown tensor is present; fills e[].t. */
static int validate(const tensor_set *s, const cs_clip_config *c, expect *e, int ne, const char *source)
{
    char msg[1024] = "", buf[64], want[64];
    int bad = 0;
    for (int i = 0; i < ne; i++) {
        const cs_tensor *t = find(s, e[i].name);
        cs_tensor w = {.ndim = e[i].ndim, .shape = {e[i].shape[0], e[i].shape[1]}};
        cs_shape_str(&w, want, sizeof want);
        if (!t) {
            problem(msg, sizeof msg, &bad, "missing %s%s%s", e[i].name, "", "");
            continue;
        }
        int ok = t->ndim == e[i].ndim;
        for (int d = 0; ok && d < e[i].ndim; d++) ok = t->shape[d] == e[i].shape[d];
        if (!ok)
            problem(msg, sizeof msg, &bad, "%s is %s, expected %s", e[i].name, cs_shape_str(t, buf, sizeof buf), want);
        else if (t->dtype != CS_F32 && t->dtype != CS_F16 && t->dtype != CS_BF16)
            problem(msg, sizeof msg, &bad, "%s has dtype %s%s", e[i].name, cs_dtype_name(t->dtype), "");
        else
            e[i].t = t;
    }
    for (int i = 0; i < s->n; i++) {
        const char *nm = s->ts[i]->name;
        if (!nm || strncmp(nm, s->prefix, s->plen)) continue;
        nm += s->plen;
        if (!strcmp(nm, "text_model.embeddings.position_ids")) continue;
        int known = 0;
        for (int j = 0; j < ne && !known; j++) known = !strcmp(nm, e[j].name);
        if (!known) problem(msg, sizeof msg, &bad, "unexpected %s%s%s", nm, "", "");
    }
    if (!bad) return 0;
    return cs_error(CS_EMODEL, "%s: not a CLIP text encoder with width %d, %d layers, mlp %d, vocab %d, "
                    "%d positions, projection %d: %d problem%s: %s%s", source, c->width, c->layers, c->mlp,
                    c->vocab, c->ctx, c->proj, bad, bad > 1 ? "s" : "", msg, bad > MAX_PROBLEMS ? "; ..." : "");
}

static float *f32_copy(const cs_tensor *t) { return cs_tensor_f32_dup(t); }

int cs_clip_from_tensors(const cs_tensor *const *ts, int n, const char *prefix, const char *config_json,
                         const char *source, cs_clip **out)
{
    *out = NULL;
    if (!source) source = "text encoder";
    tensor_set s = {ts, n, prefix ? strlen(prefix) : 0, prefix ? prefix : ""};
    cs_clip *m = calloc(1, sizeof *m);
    if (!m) return cs_error(CS_ENOMEM, "%s: out of memory", source);
    cs_clip_config *c = &m->cfg;
    config_from_shapes(&s, c);
    int rc = config_json ? parse_config(config_json, source, c) : 0;
    if (!rc && (c->width <= 0 || c->layers <= 0 || c->heads <= 0 || c->width % c->heads))
        rc = cs_error(CS_EMODEL, "%s: no usable CLIP text encoder config (width %d, %d layers, %d heads)", source,
                      c->width, c->layers, c->heads);
    /* a layer has 16 tensors: a config asking for more layers than the file has
     * tensors is refused before the expectation list (16 a layer) is allocated;
     * a small excess still gets the list of missing tensors below
     * (found by tests/fuzz_config.c: 2.5M layers asked for 5 GB) */
    if (!rc && c->layers > n)
        rc = cs_error(CS_EMODEL, "%s: the config asks for %d layers, more than the file's %d tensors", source,
                      c->layers, n);
    int ne = 0;
    expect *e = rc ? NULL : calloc((size_t)c->layers * 16 + 8, sizeof *e);
    if (!rc && !e) rc = cs_error(CS_ENOMEM, "%s: out of memory", source);
    if (!rc) {
        int64_t W = c->width;
        char nm[96];
        add_expect(e, &ne, "text_model.embeddings.token_embedding.weight", c->vocab, W);
        add_expect(e, &ne, "text_model.embeddings.position_embedding.weight", c->ctx, W);
        static const char *const lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.out_proj"};
        for (int l = 0; l < c->layers; l++) {
            for (int j = 0; j < 4; j++) {
                snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.weight", l, lin[j]);
                add_expect(e, &ne, nm, W, W);
                snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.bias", l, lin[j]);
                add_expect(e, &ne, nm, W, 0);
            }
            static const char *const vec[] = {"layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight",
                                              "layer_norm2.bias"};
            for (int j = 0; j < 4; j++) {
                snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s", l, vec[j]);
                add_expect(e, &ne, nm, W, 0);
            }
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.weight", l);
            add_expect(e, &ne, nm, c->mlp, W);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.bias", l);
            add_expect(e, &ne, nm, c->mlp, 0);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.weight", l);
            add_expect(e, &ne, nm, W, c->mlp);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.bias", l);
            add_expect(e, &ne, nm, W, 0);
        }
        add_expect(e, &ne, "text_model.final_layer_norm.weight", W, 0);
        add_expect(e, &ne, "text_model.final_layer_norm.bias", W, 0);
        add_expect(e, &ne, "text_projection.weight", c->proj, W);
        rc = validate(&s, c, e, ne, source);
    }
    if (!rc) {
        /* e[] is in the order added above: 2 + 16 per layer + 3 */
        m->tok_emb = e[0].t;
        m->pos = f32_copy(e[1].t);
        m->layer = calloc((size_t)c->layers, sizeof *m->layer);
        int ok = m->pos && m->layer;
        for (int l = 0; ok && l < c->layers; l++) {
            const expect *q = e + 2 + 16 * l;
            cs_enc_layer *L = &m->layer[l];
            L->q_w = *q[0].t, L->q_b = *q[1].t, L->k_w = *q[2].t, L->k_b = *q[3].t;
            L->v_w = *q[4].t, L->v_b = *q[5].t, L->o_w = *q[6].t, L->o_b = *q[7].t;
            L->ln1_w = f32_copy(q[8].t), L->ln1_b = f32_copy(q[9].t);
            L->ln2_w = f32_copy(q[10].t), L->ln2_b = f32_copy(q[11].t);
            L->fc1_w = *q[12].t, L->fc1_b = *q[13].t, L->fc2_w = *q[14].t, L->fc2_b = *q[15].t;
            ok = L->ln1_w && L->ln1_b && L->ln2_w && L->ln2_b;
        }
        const expect *f = e + 2 + 16 * c->layers;
        if (ok) {
            m->lnf_w = f32_copy(f[0].t);
            m->lnf_b = f32_copy(f[1].t);
            m->proj = f[2].t;
            ok = m->lnf_w && m->lnf_b;
        }
        if (!ok) rc = cs_error(CS_ENOMEM, "%s: out of memory", source);
    }
    free(e);
    if (rc) {
        cs_clip_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int cs_clip_load_lora(cs_st_file *f, const char *prefix, const char *config_json, cs_lora_list *lora,
                      cs_clip **out)
{
    *out = NULL;
    int n = cs_st_count(f);
    cs_lora_patch *patch = NULL;
    int rc = cs_lora_merge(f, prefix, 1, "text encoder", lora, &patch);
    if (rc) return rc;
    const cs_tensor **ts = malloc((size_t)(n ? n : 1) * sizeof *ts);
    if (!ts) {
        cs_lora_patch_free(patch);
        return cs_error(CS_ENOMEM, "%s: out of memory", cs_st_path(f));
    }
    for (int i = 0; i < n; i++) ts[i] = cs_lora_patch_at(patch, i) ? cs_lora_patch_at(patch, i) : cs_st_at(f, i);
    char what[4200];
    const char *cfg = config_json;
    if (!cfg) cfg = cs_st_meta(f, "config");
    snprintf(what, sizeof what, "%s%s", cs_st_path(f), cfg && !config_json ? " (metadata config)" : "");
    rc = cs_clip_from_tensors(ts, n, prefix, cfg, what, out);
    free(ts);
    if (rc) cs_lora_patch_free(patch);
    else (*out)->lora = patch;
    return rc;
}

int cs_clip_load(cs_st_file *f, const char *prefix, const char *config_json, cs_clip **out)
{
    return cs_clip_load_lora(f, prefix, config_json, NULL, out);
}

/* config.json beside the weights: optional (NULL, *rc 0 when missing) */
static char *read_text(const char *path, int *rc)
{
    char *s;
    *rc = cs_infile_read(path, "config file", CS_MAX_CONFIG_FILE, &s, NULL);
    if (*rc && errno == ENOENT) *rc = 0;
    return *rc ? NULL : s;
}

int cs_clip_open(const char *path, cs_clip **out)
{
    *out = NULL;
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    char cfgpath[4200];
    const char *slash = strrchr(path, '/');
    snprintf(cfgpath, sizeof cfgpath, "%.*sconfig.json", slash ? (int)(slash - path + 1) : 0, path);
    char *cfg = read_text(cfgpath, &rc);
    if (!rc && cfg) {
        /* messages should name config.json when it is the broken part */
        cs_clip_config probe = {0};
        rc = parse_config(cfg, cfgpath, &probe);
    }
    if (!rc) rc = cs_clip_load(f, "", cfg, out);
    free(cfg);
    if (rc) {
        cs_st_close(f);
        return rc;
    }
    (*out)->owned = f;
    return 0;
}

void cs_clip_free(cs_clip *m)
{
    if (!m) return;
    for (int l = 0; m->layer && l < m->cfg.layers; l++) cs_enc_layer_free(&m->layer[l]);
    free(m->layer);
    cs_param_free(m->pos);
    cs_param_free(m->lnf_w);
    cs_param_free(m->lnf_b);
    cs_lora_patch_free(m->lora);
    cs_st_close(m->owned);
    free(m);
}

const cs_clip_config *cs_clip_get_config(const cs_clip *m) { return &m->cfg; }

/* ---- forward ------------------------------------------------------------- */

/* h[n,l] = token_embedding[ids[n,l]] + position_embedding[l]; h: [N*L, C].
 * Ids vocab .. vocab+n_extra-1 take row (id - vocab) of extra [n_extra, C]
 * instead (textual-inversion vectors, numbered as ComfyUI does). */
static int embed(const cs_clip *m, const int32_t *ids, size_t N, size_t L, const float *extra, size_t n_extra,
                 float *h)
{
    const cs_clip_config *c = &m->cfg;
    size_t C = (size_t)c->width, n_ext = 0;
    for (size_t r = 0; r < N * L; r++) {
        if (ids[r] >= c->vocab && (size_t)(ids[r] - c->vocab) < n_extra) {
            n_ext++;
            continue;
        }
        if (ids[r] < 0 || ids[r] >= c->vocab)
            return cs_error(CS_EARG, "clip: token id %d at [%zu,%zu] is outside the vocabulary of %d", ids[r], r / L,
                            r % L, c->vocab);
    }
    int32_t *tmp = NULL;
    if (n_ext) {   /* look the others up; the extra rows are written over */
        if (!(tmp = malloc(N * L * sizeof *tmp))) return cs_oom("the CLIP token ids", N * L * sizeof *tmp);
        for (size_t r = 0; r < N * L; r++) tmp[r] = ids[r] >= c->vocab ? 0 : ids[r];
    }
    int rc = cs_embed_rows(m->tok_emb, tmp ? tmp : ids, N * L, h);
    for (size_t r = 0; tmp && r < N * L && !rc; r++)
        if (ids[r] >= c->vocab) rc = cs_act_upload(h + r * C, extra + (size_t)(ids[r] - c->vocab) * C, C);
    free(tmp);
    const float *pos = rc ? NULL : cs_param(m->pos, L * C);
    if (!rc && !pos) rc = CS_ENOMEM;
    for (size_t n = 0; n < N && !rc; n++) cs_add(h + n * L * C, pos, h + n * L * C, L * C);
    return rc;
}

/* Additive mask [N, L, L]: 0 where key j <= query i and mask[n,j] != 0, else -inf. */
static int build_mask(const int32_t *mask, size_t N, size_t L, float *M)
{
    for (size_t n = 0; n < N; n++) {
        if (mask && !mask[n * L])
            return cs_error(CS_EARG, "clip: attention mask of prompt %zu is 0 at position 0 (BOS must be real)", n);
        for (size_t i = 0; i < L; i++)
            for (size_t j = 0; j < L; j++)
                M[(n * L + i) * L + j] = j <= i && (!mask || mask[n * L + j]) ? 0.0f : -INFINITY;
    }
    return 0;
}

static size_t pool_index(const cs_clip_config *c, const int32_t *ids, size_t L)
{
    size_t best = 0;
    for (size_t i = 0; i < L; i++) {
        if (c->eos == 2) {   /* HF legacy configs: the highest id (eos is the largest) */
            if (ids[i] < c->vocab && ids[i] > ids[best]) best = i;
        } else if (ids[i] == c->eos) {
            return i;
        }
    }
    return best;
}

/* Outputs go to host memory (out); the work runs in the current mode. */
static int forward(const cs_clip *m, const int32_t *ids, const int32_t *mask, size_t N, size_t L,
                   const float *extra, size_t n_extra, const cs_clip_out *out)
{
    const cs_clip_config *c = &m->cfg;
    size_t R = N * L, C = (size_t)c->width, RC = R * C;
    float *M = cs_alloc(N * L * L * sizeof(float));
    float *buf = M ? cs_act_alloc(6 * RC + R * (size_t)c->mlp + N * L * L + N * C + N * (size_t)c->proj) : NULL;
    if (!buf) {
        cs_free(M);
        return M ? CS_ENOMEM : cs_oom("the CLIP attention mask", N * L * L * sizeof(float));
    }
    float *h = buf, *x = h + RC, *q = x + RC, *k = q + RC, *v = k + RC, *a = v + RC;
    float *f = a + RC, *dM = f + R * (size_t)c->mlp, *pooled = dM + N * L * L, *emb = pooled + N * C;
    const cs_enc_dims dims = {C, (size_t)c->mlp, c->heads, c->quick_gelu, c->eps};
    int rc = build_mask(mask, N, L, M);
    if (!rc) rc = cs_act_upload(dM, M, N * L * L);
    if (!rc) rc = embed(m, ids, N, L, extra, n_extra, h);
    if (!rc && out->hidden) rc = cs_act_download(out->hidden[0], h, RC);
    for (int l = 0; !rc && l < c->layers; l++) {
        if ((rc = cs_cancel_check())) break;
        rc = cs_enc_layer_forward(&m->layer[l], &dims, h, N, L, dM, x, q, k, v, a, f);
        if (!rc && out->hidden) rc = cs_act_download(out->hidden[l + 1], h, RC);
    }
    if (!rc && out->clip_text) rc = cs_act_download(out->clip_text, h, RC);
    if (!rc && (out->last_hidden || out->text_embeds)) {
        const float *lw = cs_param(m->lnf_w, C), *lb = cs_param(m->lnf_b, C);
        if ((m->lnf_w && !lw) || (m->lnf_b && !lb)) rc = CS_ENOMEM;
        if (!rc) cs_layernorm(h, x, R, C, c->eps, lw, lb);
        if (!rc && out->last_hidden) rc = cs_act_download(out->last_hidden, x, RC);
        if (!rc && out->text_embeds) {
            for (size_t n = 0; n < N; n++) cs_copy(pooled + n * C, x + (n * L + pool_index(c, ids + n * L, L)) * C, C);
            rc = cs_linear(pooled, N, C, 0, m->proj, NULL, emb, 0, 0);
            if (!rc) rc = cs_act_download(out->text_embeds, emb, N * (size_t)c->proj);
        }
    }
    if (!rc) rc = cs_dev_error();
    cs_act_free(buf);
    cs_free(M);
    return rc;
}

int cs_clip_forward_ext(const cs_clip *m, const int32_t *ids, const int32_t *mask, size_t N, size_t L,
                        const float *extra, size_t n_extra, const cs_clip_out *out)
{
    const cs_clip_config *c = &m->cfg;
    if (N == 0 || L == 0 || L > (size_t)c->ctx)
        return cs_error(CS_EARG, "clip: %zu x %zu tokens; need N >= 1 and 1 <= L <= %d", N, L, c->ctx);
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return forward(m, ids, mask, N, L, extra, n_extra, out);
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    return cs_dev_args_finish(&a, forward(m, ids, mask, N, L, extra, n_extra, out));
}

int cs_clip_forward(const cs_clip *m, const int32_t *ids, const int32_t *mask, size_t N, size_t L,
                    const cs_clip_out *out)
{
    return cs_clip_forward_ext(m, ids, mask, N, L, NULL, 0, out);
}
