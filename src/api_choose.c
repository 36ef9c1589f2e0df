/* The model scan in detail and the variant choice through the public API
 * (cascade.h): what `cascade models` lists (each file's naming, tensors,
 * hash; the search folders) and what auto would take and why, with the
 * memory figures, on the CPU or on the calling thread's GPU. */
#include "api.h"

#include "backend.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local int noted_prec = -1;
void cs_api_note_precision(int prec) { noted_prec = prec; }
int cs_api_noted_precision(void) { return noted_prec; }

static const cs_model_file *file_at(const cascade_models *m, int i)
{
    return m && m->set && i >= 0 && i < m->set->n ? &m->set->files[i] : NULL;
}

const char *cascade_models_string(const cascade_models *m, int i, cascade_models_key key)
{
    const cs_model_file *f = file_at(m, i);
    if (!f) return NULL;
    int known = !f->problem && f->info.net != CS_NET_UNKNOWN;
    cs_part p = known ? cs_net_part(f->info.net) : CS_PART_COUNT;
    switch (key) {
    case CASCADE_MF_VARIANT: return p <= CS_PART_STAGE_B ? cs_variant_name(cs_variant_of(&f->info)) : NULL;
    case CASCADE_MF_NAMING: return known ? cs_naming_name(f->info.naming) : NULL;
    case CASCADE_MF_PREFIX: return known ? f->info.prefix : NULL;
    case CASCADE_MF_CONFIG: return f->config;
    case CASCADE_MF_ROOT: return f->root >= 0 ? m->set->roots[f->root] : NULL;
    default: return NULL;
    }
}

long long cascade_models_int(const cascade_models *m, int i, cascade_models_key key)
{
    const cs_model_file *f = file_at(m, i);
    if (!f) return -1;
    switch (key) {
    case CASCADE_MF_TENSORS: return f->info.n_tensors;
    case CASCADE_MF_EXTRA_TENSORS: return f->info.n_extra;
    case CASCADE_MF_PARAMS: return f->info.params;
    case CASCADE_MF_WEIGHT_BYTES: return (long long)f->info.weight_bytes;
    case CASCADE_MF_FOREIGN: return f->foreign;
    case CASCADE_MF_SAME_AS: return f->index > 0 && i >= f->index ? f->index : 0;
    default: return -1;
    }
}

const char *cascade_models_root(const cascade_models *m, int i, const char **why)
{
    int ok = m && m->set && i >= 0 && i < m->set->n_roots;
    if (why) *why = ok ? m->set->root_why[i] : NULL;
    return ok ? m->set->roots[i] : NULL;
}

const char *cascade_models_looked(const cascade_models *m, int i)
{
    if (m && m->set && i == -1) return cs_models_looked(m->set);
    return m && m->set && i >= 0 && i < m->set->n_looked ? m->set->looked[i] : NULL;
}

int cascade_models_hash(cascade_ctx *ctx, const cascade_models *m, int i, int flags, unsigned long long *hash)
{
    if (!ctx) return CASCADE_E_ARG;
    const cs_model_file *f = file_at(m, i);
    if (!f || !hash) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_models_hash: no file %d", i));
    uint64_t h = 0;
    if (flags & CASCADE_HASH_CACHED_ONLY) {
        if (!cs_file_xxh64_cached(f->path, &h)) return 0;
        *hash = h;
        return 1;
    }
    int cached = 0, rc = cs_file_xxh64(f->path, &h, &cached);
    if (rc) return cs_api_fail(ctx, rc);
    *hash = h;
    return cached ? 1 : 0;
}

const char *cascade_part_name(cascade_part part)
{
    return (int)part >= 0 && part < CASCADE_PART_COUNT ? cs_part_name((cs_part)part) : NULL;
}

const char *cascade_part_title(cascade_part part)
{
    return (int)part >= 0 && part < CASCADE_PART_COUNT ? cs_part_title((cs_part)part) : NULL;
}

/* ---- the choice ---- */
struct cascade_choice {
    cs_choice ch;
    int on_device;
    const char *variant;   /* cascade_recommend's */
};

/* the request for ctx's variants at this size, on the calling thread's GPU if any */
static int request(cascade_ctx *ctx, int width, int height, int batch, cs_choice_req *req)
{
    cs_choice_req_init(req);
    /* the limits of cascade_generate (one table): a plan for a size that
     * cannot be generated is no plan */
    int rc = cs_param_check_int(ctx, CASCADE_P_WIDTH, width);
    if (!rc) rc = cs_param_check_int(ctx, CASCADE_P_HEIGHT, height);
    if (!rc) rc = cs_param_check_int(ctx, CASCADE_P_BATCH, batch);
    if (rc) return rc;
    req->width = width, req->height = height, req->batch = batch;
    for (int k = 0; k < 2; k++) {
        const char *v = ctx->sv[k ? CASCADE_P_VARIANT_B : CASCADE_P_VARIANT_C];
        if ((rc = cs_variant_parse(v ? v : "auto", &req->variant[k ? CS_PART_STAGE_B : CS_PART_STAGE_C])) != 0)
            return cs_api_fail(ctx, rc);
    }
    const cs_backend *b = cs_backend_active();
    size_t fr = 0, tot = 0;
    if (b && b->ops && b->ops->mem_info && !b->ops->mem_info(&fr, &tot, req->dev_name, sizeof req->dev_name)) {
        req->dev_prec = noted_prec >= 0 ? noted_prec : CS_PREC_FP32;
        req->dev_have = fr;
    }
    return cs_api_lora_bytes(ctx, req);   /* merged LoRAs keep float32 copies */
}

int cascade_models_choose(cascade_ctx *ctx, const cascade_models *m, int width, int height, int batch,
                          cascade_choice **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return CASCADE_E_ARG;
    if (!m || !m->set) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_models_choose: no scan"));
    cs_choice_req req;
    int rc = request(ctx, width, height, batch, &req);
    if (rc) return rc;
    cascade_choice *c = calloc(1, sizeof *c);
    if (!c) return cs_api_fail(ctx, cs_oom("the model choice", sizeof *c));
    if ((rc = cs_models_choose(m->set, &req, &c->ch)) != 0) {
        free(c);
        return cs_api_fail(ctx, rc);
    }
    c->on_device = req.dev_prec >= 0;
    *out = c;
    return 0;
}

int cascade_recommend(cascade_ctx *ctx, int width, int height, int batch, cascade_choice **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return CASCADE_E_ARG;
    cs_choice_req req;
    int rc = request(ctx, width, height, batch, &req);
    if (rc) return rc;
    cascade_choice *c = calloc(1, sizeof *c);
    if (!c) return cs_api_fail(ctx, cs_oom("the model choice", sizeof *c));
    for (int p = 0; p < CS_PART_COUNT; p++) c->ch.file[p] = -1;
    c->ch.need_part = -1;
    c->on_device = req.dev_prec >= 0;
    if (c->on_device) {
        c->ch.have = req.dev_have;
        snprintf(c->ch.have_src, sizeof c->ch.have_src, "free on %.150s", req.dev_name);
    } else if ((rc = cs_mem_available(&c->ch.have, c->ch.have_src, sizeof c->ch.have_src)) != 0) {
        free(c);
        return cs_api_fail(ctx, rc);
    }
    c->variant = cs_variant_name(cs_models_recommend(&req, c->ch.have, &c->ch.need_max));
    c->ch.margin = cs_mem_margin(c->ch.have);
    c->ch.fits = c->ch.need_max + c->ch.margin <= c->ch.have;
    *out = c;
    return 0;
}

static int part_ok(const cascade_choice *c, int part)
{
    return c && part >= 0 && part < CS_PART_COUNT && c->ch.file[part] >= 0;
}

long long cascade_choice_int(const cascade_choice *c, int part, cascade_choice_key key)
{
    if (!c) return -1;
    switch (key) {
    case CASCADE_CH_FILE: return part >= 0 && part < CS_PART_COUNT ? c->ch.file[part] : -1;
    case CASCADE_CH_NEED: return part_ok(c, part) ? (long long)c->ch.need[part].total : -1;
    case CASCADE_CH_WEIGHTS: return part_ok(c, part) ? (long long)c->ch.need[part].weights : -1;
    case CASCADE_CH_SCRATCH: return part_ok(c, part) ? (long long)c->ch.need[part].scratch : -1;
    case CASCADE_CH_ACTIVATIONS: return part_ok(c, part) ? (long long)c->ch.need[part].acts : -1;
    case CASCADE_CH_HAVE: return (long long)c->ch.have;
    case CASCADE_CH_MARGIN: return (long long)c->ch.margin;
    case CASCADE_CH_NEED_MAX: return (long long)c->ch.need_max;
    case CASCADE_CH_NEED_PART: return c->ch.need_part;
    case CASCADE_CH_FITS: return c->ch.fits;
    case CASCADE_CH_ON_DEVICE: return c->on_device;
    default: return -1;
    }
}

const char *cascade_choice_string(const cascade_choice *c, int part, cascade_choice_key key)
{
    if (!c) return NULL;
    switch (key) {
    case CASCADE_CH_WHY: return part_ok(c, part) ? c->ch.why[part] : NULL;
    case CASCADE_CH_HAVE_SOURCE: return c->ch.have_src;
    case CASCADE_CH_VARIANT: return c->variant;
    default: return NULL;
    }
}

void cascade_choice_free(cascade_choice *c) { free(c); }

const cs_choice *cs_api_choice(const cascade_choice *c) { return &c->ch; }
