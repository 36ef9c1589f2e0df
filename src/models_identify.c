/* Which networks a safetensors file holds, from its header alone:
 * signature tensors (doc/reference.md, "Files") pick the network and prefix, then
 * every expected tensor is looked up under the accepted spellings. */
#include "models.h"

#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const cs_st_file *f;
    const char *prefix;
    cs_net net;
    unsigned char *used;        /* per file tensor */
    int problems;
    char first[400];
    int split, to_out, renamed; /* which alternative spellings were met */
    uint64_t dtype_elems[CS_DTYPE_COUNT];
    cs_netid *ni;
} vctx;

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const cs_tensor *find(const vctx *v, const char *name)
{
    char b[256];
    snprintf(b, sizeof b, "%s%s", v->prefix, name);
    return cs_st_find(v->f, b);
}

static int is_float(cs_dtype d) { return d == CS_F32 || d == CS_BF16 || d == CS_F16; }

static void problem(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(vctx *v, const char *fmt, ...)
{
    if (v->problems++) return;
    char b[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    snprintf(v->first, sizeof v->first, "%s: %s: %s", cs_st_path(v->f), cs_net_title(v->net), b);
}

static void shape_str(int nd, const int64_t *s, char *b, size_t len)
{
    size_t o = (size_t)snprintf(b, len, "[");
    for (int d = 0; d < nd && o < len; d++) o += (size_t)snprintf(b + o, len - o, d ? ",%lld" : "%lld", (long long)s[d]);
    if (o < len) snprintf(b + o, len - o, "]");
}

/* Checks t against shape (nd, s) and accounts for it. */
static int take(vctx *v, const cs_tensor *t, const cs_expect *e, int nd, const int64_t *s)
{
    char got[64], want[96];
    int ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == s[d];
    if (!ok) {
        shape_str(t->ndim, t->shape, got, sizeof got);
        shape_str(nd, s, want, sizeof want);
        problem(v, "tensor '%s' has shape %s, expected %s", t->name, got, want);
        return -1;
    }
    if (e->kind != CS_EXP_INT64 && !is_float(t->dtype)) {
        problem(v, "tensor '%s' has dtype %s, expected F32, BF16 or F16", t->name, cs_dtype_name(t->dtype));
        return -1;
    }
    int idx = (int)(t - cs_st_at(v->f, 0));
    v->used[idx] = 1;
    int64_t n = cs_tensor_numel(t);
    v->ni->n_tensors++;
    v->ni->weight_bytes += (uint64_t)n * cs_dtype_size(t->dtype);
    if (e->kind == CS_EXP_PARAM) {
        v->ni->params += n;
        v->dtype_elems[t->dtype] += (uint64_t)n;
    }
    return 0;
}

static void check_entry(vctx *v, const cs_expect *e)
{
    const cs_tensor *t = find(v, e->name);
    if (t) {
        take(v, t, e, e->ndim, e->shape);
        goto largest;
    }
    char base[128], alt[160];
    const char *cut;
    /* packed attention in_proj [3c, c] split into three [c, c] */
    if ((cut = strstr(e->name, ".attention.attn.in_proj_"))) {
        int bias = ends_with(e->name, "_bias");
        snprintf(base, sizeof base, "%.*s.attention", (int)(cut - e->name), e->name);
        int64_t s[2] = {e->shape[0] / 3, e->shape[1]};
        static const char *const qkv[] = {"to_q", "to_k", "to_v"};
        for (int form = 0; form < 2; form++) {   /* diffusers: attention.to_q; ComfyUI: attention.attn.to_q */
            const cs_tensor *p[3];
            int have = 0;
            for (int j = 0; j < 3; j++) {
                snprintf(alt, sizeof alt, "%s%s.%s.%s", base, form ? ".attn" : "", qkv[j], bias ? "bias" : "weight");
                have += (p[j] = find(v, alt)) != NULL;
            }
            if (have == 3) {
                v->split = 1;
                for (int j = 0; j < 3; j++) take(v, p[j], e, e->ndim, s);
                goto largest;
            }
        }
        problem(v, "missing tensor '%s%s' (nor its to_q/to_k/to_v split)", v->prefix, e->name);
        return;
    }
    alt[0] = 0;
    if ((cut = strstr(e->name, ".attention.attn.out_proj."))) {
        snprintf(alt, sizeof alt, "%.*s.attention.to_out.0.%s", (int)(cut - e->name), e->name,
                 cut + strlen(".attention.attn.out_proj."));
        if ((t = find(v, alt))) v->to_out = 1;
    } else if (!strncmp(e->name, "clip_mapper.", 12) && cs_net_part(v->net) == CS_PART_STAGE_B) {
        snprintf(alt, sizeof alt, "clip_txt_pooled_mapper.%s", e->name + 12);
        if ((t = find(v, alt))) v->renamed = 1;
    } else if (!strcmp(e->name, "vquantizer.codebook.weight")) {
        if ((t = find(v, "vquantizer.embedding.weight"))) v->renamed = 1;
    }
    if (t) {
        take(v, t, e, e->ndim, e->shape);
        goto largest;
    }
    if (e->kind == CS_EXP_INT64) return;   /* num_batches_tracked is not needed */
    problem(v, "missing tensor '%s%s'", v->prefix, e->name);
    return;
largest:
    if (e->kind == CS_EXP_PARAM) {
        int64_t n = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
        if (n > v->ni->largest) v->ni->largest = n;
    }
}

static void finish_dtype(vctx *v)
{
    cs_netid *ni = v->ni;
    int kinds = 0;
    uint64_t best = 0;
    ni->dtype = CS_F32;
    for (int d = 0; d < CS_DTYPE_COUNT; d++) {
        if (!v->dtype_elems[d]) continue;
        kinds++;
        if (v->dtype_elems[d] > best) {
            best = v->dtype_elems[d];
            ni->dtype = (cs_dtype)d;
        }
    }
    ni->mixed = kinds > 1;
}

static int count_extra(vctx *v)
{
    int n = 0, total = cs_st_count(v->f);
    size_t pl = strlen(v->prefix);
    for (int i = 0; i < total; i++)
        if (!v->used[i] && !strncmp(cs_st_at(v->f, i)->name, v->prefix, pl)) n++;
    return n;
}

/* Validates one network found at prefix; fills ni. */
static int validate(const cs_st_file *f, cs_net net, const char *prefix, cs_netid *ni)
{
    memset(ni, 0, sizeof *ni);
    ni->net = net;
    snprintf(ni->prefix, sizeof ni->prefix, "%s", prefix);
    vctx v = {.f = f, .prefix = prefix, .net = net, .ni = ni};
    v.used = calloc((size_t)cs_st_count(f) + 1, 1);
    if (!v.used) return cs_error(CS_ENOMEM, "out of memory identifying a model file");
    if (net == CS_NET_CLIP_VISION) {   /* no key list to check against: take the prefix's tensors */
        size_t pl = strlen(prefix);
        for (int i = 0; i < cs_st_count(f); i++) {
            const cs_tensor *t = cs_st_at(f, i);
            if (strncmp(t->name, prefix, pl) || !is_float(t->dtype)) continue;
            int64_t n = cs_tensor_numel(t);
            ni->n_tensors++;
            ni->params += n;
            ni->weight_bytes += (uint64_t)n * cs_dtype_size(t->dtype);
            v.dtype_elems[t->dtype] += (uint64_t)n;
            if (n > ni->largest) ni->largest = n;
        }
        finish_dtype(&v);
        free(v.used);
        return 0;
    }
    cs_expect *e;
    int n, rc = cs_net_expected(net, &e, &n);
    if (rc) {
        free(v.used);
        return rc;
    }
    for (int i = 0; i < n; i++) check_entry(&v, &e[i]);
    free(e);
    finish_dtype(&v);
    ni->n_extra = count_extra(&v);
    ni->naming = v.to_out || v.renamed ? CS_NAMES_DIFFUSERS : v.split ? CS_NAMES_COMFY : CS_NAMES_OFFICIAL;
    free(v.used);
    if (v.problems > 1)
        return cs_error(CS_EMODEL, "%s (and %d more problem%s)", v.first, v.problems - 1, v.problems > 2 ? "s" : "");
    if (v.problems) return cs_error(CS_EMODEL, "%s", v.first);
    return 0;
}

/* Picks full/lite from the width-defining tensor (doc/reference.md). */
static int variant_of(const cs_st_file *f, const char *prefix, char stage, cs_net *net)
{
    char b[256];
    const cs_tensor *t;
    int64_t w = -1;
    if (stage == 'C') {
        snprintf(b, sizeof b, "%sclip_txt_mapper.weight", prefix);
        if ((t = cs_st_find(f, b)) && t->ndim == 2) w = t->shape[0];
        *net = w == 2048 ? CS_NET_STAGE_C : w == 1536 ? CS_NET_STAGE_C_LITE : CS_NET_UNKNOWN;
        if (*net == CS_NET_UNKNOWN)
            return cs_error(CS_EMODEL, "%s: Stage C with c_cond %lld at '%s' is not a released variant "
                            "(2048 full, 1536 lite)", cs_st_path(f), (long long)w, b);
        return 0;
    }
    snprintf(b, sizeof b, "%sdown_blocks.1.0.depthwise.weight", prefix);
    if ((t = cs_st_find(f, b)) && t->ndim == 4) w = t->shape[0];
    *net = w == 640 ? CS_NET_STAGE_B : w == 576 ? CS_NET_STAGE_B_LITE : CS_NET_UNKNOWN;
    if (*net == CS_NET_UNKNOWN)
        return cs_error(CS_EMODEL, "%s: Stage B with level-1 width %lld at '%s' is not a released variant "
                        "(640 full, 576 lite)", cs_st_path(f), (long long)w, b);
    return 0;
}

static const char *const signatures[] = {
    "clf.1.weight", "vquantizer.codebook.weight", "vquantizer.embedding.weight", "backbone.0.0.weight",
    "blocks.24.weight", "text_model.final_layer_norm.weight", "vision_model.post_layernorm.weight",
};

/* Network family at prefix for signature s (CS_NET_STAGE_C/B stand for
 * both sizes), or CS_NET_UNKNOWN when the companion tensor is absent. */
static cs_net family(const cs_st_file *f, const char *prefix, int s)
{
    char b[256];
#define HAS(name) (snprintf(b, sizeof b, "%s%s", prefix, name), cs_st_find(f, b) != NULL)
    switch (s) {
    case 0: return HAS("clip_txt_mapper.weight") ? CS_NET_STAGE_C : HAS("effnet_mapper.0.weight") ? CS_NET_STAGE_B
                                                                                                 : CS_NET_UNKNOWN;
    case 1: case 2: return CS_NET_STAGE_A;
    case 3: return HAS("mapper.0.weight") ? CS_NET_EFFNET : CS_NET_UNKNOWN;
    case 4: return HAS("blocks.0.weight") ? CS_NET_PREVIEWER : CS_NET_UNKNOWN;
    case 5: return CS_NET_TEXT_G;
    case 6: return CS_NET_CLIP_VISION;
    }
#undef HAS
    return CS_NET_UNKNOWN;
}

int cs_identify(const cs_st_file *f, cs_netid *out, int max)
{
    struct { cs_net fam; char prefix[96]; } found[16];
    int nf = 0, total = cs_st_count(f);
    for (int i = 0; i < total; i++) {
        const char *name = cs_st_at(f, i)->name;
        for (int s = 0; s < (int)(sizeof signatures / sizeof *signatures); s++) {
            if (!ends_with(name, signatures[s])) continue;
            size_t pl = strlen(name) - strlen(signatures[s]);
            if (pl && name[pl - 1] != '.') continue;
            if (pl >= sizeof found[0].prefix) continue;
            char prefix[96];
            memcpy(prefix, name, pl);
            prefix[pl] = 0;
            cs_net fam = family(f, prefix, s);
            if (fam == CS_NET_UNKNOWN) continue;
            int dup = 0;
            for (int k = 0; k < nf; k++) dup |= found[k].fam == fam && !strcmp(found[k].prefix, prefix);
            if (dup || nf == 16) continue;
            found[nf].fam = fam;
            memcpy(found[nf].prefix, prefix, pl + 1);
            nf++;
        }
    }
    if (!nf) {   /* not ours: 0 networks, with the reason set */
        cs_error(CS_EMODEL, "%s: no Stable Cascade network recognised (%d tensors%s%s%s)", cs_st_path(f),
                 total, total ? ", first '" : "", total ? cs_st_at(f, 0)->name : "", total ? "'" : "");
        return 0;
    }
    int n = 0;
    for (int k = 0; k < nf; k++) {
        cs_net net = found[k].fam;
        int rc;
        if (net == CS_NET_STAGE_C || net == CS_NET_STAGE_B)
            if ((rc = variant_of(f, found[k].prefix, net == CS_NET_STAGE_C ? 'C' : 'B', &net))) return rc;
        if (net == CS_NET_TEXT_G) {   /* CLIP-L text towers share the names: check the width first */
            char b[256];
            snprintf(b, sizeof b, "%stext_model.embeddings.token_embedding.weight", found[k].prefix);
            const cs_tensor *t = cs_st_find(f, b);
            if (t && t->ndim == 2 && t->shape[1] != 1280)
                return cs_error(CS_EMODEL, "%s: text encoder at '%s' has width %lld; Stable Cascade needs "
                                "CLIP ViT-bigG (1280)", cs_st_path(f), found[k].prefix, (long long)t->shape[1]);
        }
        cs_netid ni;
        if ((rc = validate(f, net, found[k].prefix, &ni))) return rc;
        if (n < max) out[n] = ni;
        n++;
    }
    return n;
}

int cs_identify_path(const char *path, cs_netid *out, int max)
{
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    rc = cs_identify(f, out, max);
    cs_st_close(f);
    return rc;
}
