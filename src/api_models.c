/* Model files through the public API (cascade.h): parts by path, discovery
 * and variant choice (models.h, as `cascade models` and `cascade generate`
 * use them), the demo networks. */
#include "api.h"

#include "error.h"
#include "models.h"

#include <stdlib.h>
#include <string.h>

static int set_str(char **slot, const char *v)
{
    char *c = NULL;
    if (v && !(c = strdup(v))) return cs_oom("a path", strlen(v) + 1);
    free(*slot);
    *slot = c;
    return 0;
}

int cascade_set_model(cascade_ctx *ctx, cascade_part part, const char *path)
{
    if (!ctx) return CASCADE_E_ARG;
    if ((int)part < 0 || part >= CASCADE_PART_COUNT)
        return cs_api_fail(ctx, cs_error(CS_EARG, "model part %d: no such part", (int)part));
    int rc = set_str(&ctx->model[part], path);
    if (rc) return cs_api_fail(ctx, rc);
    if (part == CASCADE_PART_TEXT_ENCODER) {   /* a prefix or config.json found for another file is not this one's */
        set_str(&ctx->text_prefix, NULL);
        set_str(&ctx->text_config, NULL);
    }
    ctx->pl_stale = 1;
    return 0;
}

const char *cascade_get_model(const cascade_ctx *ctx, cascade_part part)
{
    return ctx && (int)part >= 0 && part < CASCADE_PART_COUNT ? ctx->model[part] : NULL;
}

/* no cs_api_init: a scan needs no kernels (a bad $CASCADE_SIMD does not stop it) */
static int scan(cascade_ctx *ctx, cs_model_set **set)
{
    int rc = cs_models_scan(ctx->sv[CASCADE_P_MODELS_DIR], set);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

static int variant_of(cascade_ctx *ctx, int key, cs_variant *v)
{
    const char *s = ctx->sv[key] ? ctx->sv[key] : "auto";
    int rc = cs_variant_parse(s, v);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

/* ch's files into ctx: the parts the caller did not set (a text encoder
 * always, for its prefix and config.json), the first usable CLIP vision
 * model, the tokenizer found */
static int use_choice(cascade_ctx *ctx, const cs_model_set *set, const cs_choice *ch)
{
    int rc = 0;
    for (int p = 0; p < CASCADE_PART_COUNT; p++) {
        if (ch->file[p] < 0 || (ctx->model[p] && p != CASCADE_PART_TEXT_ENCODER)) continue;
        const cs_model_file *f = &set->files[ch->file[p]];
        if ((rc = set_str(&ctx->model[p], f->path)) != 0) return rc;
        if (p == CASCADE_PART_TEXT_ENCODER &&
            ((rc = set_str(&ctx->text_prefix, f->info.prefix[0] ? f->info.prefix : NULL)) != 0 ||
             (rc = set_str(&ctx->text_config, f->config)) != 0))
            return rc;
    }
    if (!ctx->model[CASCADE_PART_CLIP_VISION]) {   /* the chooser leaves it: the first usable one */
        for (int i = 0; i < set->n; i++)
            if (set->files[i].info.net == CS_NET_CLIP_VISION && !set->files[i].problem) {
                if ((rc = set_str(&ctx->model[CASCADE_PART_CLIP_VISION], set->files[i].path)) != 0) return rc;
                break;
            }
    }
    if ((rc = set_str(&ctx->found_tokenizer, set->tokenizer)) != 0) return rc;
    ctx->demo_tokenizer = 0;
    ctx->pl_stale = 1;
    return 0;
}

int cascade_model_check(cascade_ctx *ctx, cascade_part part, const char *path)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!path || part < 0 || part >= CASCADE_PART_COUNT)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_model_check: %s", !path ? "the path is NULL" : "no such part"));
    /* an empty scan: the file is identified and forced as in a real one */
    cs_model_set *set = NULL;
    int rc = cs_models_scan_roots(NULL, NULL, 0, &set);
    if (!rc) rc = cs_models_force(set, (cs_part)part, path);
    cs_models_free(set);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_find_models(cascade_ctx *ctx)
{
    if (!ctx) return CASCADE_E_ARG;
    cs_model_set *set = NULL;
    cs_choice_req req;
    cs_choice_req_init(&req);
    req.width = (int)ctx->iv[CASCADE_P_WIDTH];
    req.height = (int)ctx->iv[CASCADE_P_HEIGHT];
    req.batch = (int)ctx->iv[CASCADE_P_BATCH];
    int rc = variant_of(ctx, CASCADE_P_VARIANT_C, &req.variant[CS_PART_STAGE_C]);
    if (!rc) rc = variant_of(ctx, CASCADE_P_VARIANT_B, &req.variant[CS_PART_STAGE_B]);
    if (!rc) rc = cs_api_lora_bytes(ctx, &req);   /* merged LoRAs keep float32 copies */
    if (rc || (rc = scan(ctx, &set)) != 0) return rc;
    /* parts the caller set are forced: identified, and chosen as they are */
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        if (ctx->model[p] && (rc = cs_models_force(set, (cs_part)p, ctx->model[p])) != 0) goto out;
    cs_choice ch;
    if ((rc = cs_models_choose(set, &req, &ch)) != 0) goto out;
    if (!ch.fits) {
        rc = cs_error(CS_ENOMEM, "not enough memory for any variant: %s needs %.1f GiB at %dx%d batch %d, have %.1f "
                      "GiB (%s) minus %.1f GiB kept free", cs_part_title((cs_part)ch.need_part),
                      ch.need_max / 1073741824.0, req.width, req.height, req.batch, ch.have / 1073741824.0,
                      ch.have_src, ch.margin / 1073741824.0);
        goto out;
    }
    if ((rc = use_choice(ctx, set, &ch)) != 0) goto out;
    if (!cs_api_tokenizer(ctx))
        rc = cs_error(CS_EMODEL, "no tokenizer found (vocab.json + merges.txt; set CASCADE_P_TOKENIZER) (%s)",
                      cs_models_looked(set));
out:
    cs_models_free(set);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_use_demo(cascade_ctx *ctx)
{
    if (!ctx) return CASCADE_E_ARG;
    int rc = cs_api_init(ctx);
    if (rc) return rc;
    if (!ctx->demo) {
        cs_demo_files *d = calloc(1, sizeof *d);
        if (!d) return cs_api_fail(ctx, cs_oom("the demo file list", sizeof *d));
        if ((rc = cs_demo_create(d)) != 0) {
            free(d);
            return cs_api_fail(ctx, rc);
        }
        ctx->demo = d;
    }
    const char *files[] = {ctx->demo->stage_c, ctx->demo->stage_b, ctx->demo->stage_a, ctx->demo->text_encoder,
                           NULL, ctx->demo->previewer, NULL};
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        if ((rc = set_str(&ctx->model[p], files[p])) != 0) return cs_api_fail(ctx, rc);
    set_str(&ctx->text_prefix, NULL);
    set_str(&ctx->text_config, NULL);
    ctx->demo_tokenizer = 1;
    ctx->iv[CASCADE_P_WIDTH] = ctx->iv[CASCADE_P_HEIGHT] = CS_DEMO_SIZE;
    ctx->pl_stale = 1;
    return 0;
}

const char *cascade_recommend_variant(cascade_ctx *ctx, unsigned long long *need)
{
    if (!ctx) return NULL;
    cs_choice_req req;
    cs_choice_req_init(&req);
    req.width = (int)ctx->iv[CASCADE_P_WIDTH];
    req.height = (int)ctx->iv[CASCADE_P_HEIGHT];
    req.batch = (int)ctx->iv[CASCADE_P_BATCH];
    uint64_t have = 0, n = 0;
    char src[160];
    if (cs_mem_available(&have, src, sizeof src)) {
        cs_api_fail(ctx, CS_EARG);
        return NULL;
    }
    cs_variant v = cs_models_recommend(&req, have, &n);
    if (need) *need = n;
    return cs_variant_name(v);
}

/* ---- the scan as a list ---- */

int cascade_models_scan(cascade_ctx *ctx, cascade_models **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return CASCADE_E_ARG;
    cascade_models *m = calloc(1, sizeof *m);
    if (!m) return cs_api_fail(ctx, cs_oom("the model list", sizeof *m));
    int rc = scan(ctx, &m->set);
    for (int p = 0; !rc && p < CASCADE_PART_COUNT; p++)   /* the parts the caller set, as find_models */
        if (ctx->model[p] && (rc = cs_models_force(m->set, (cs_part)p, ctx->model[p])) != 0) cs_api_fail(ctx, rc);
    if (rc) {
        cascade_models_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static const cs_model_file *file_at(const cascade_models *m, int i)
{
    return m && i >= 0 && i < m->set->n ? &m->set->files[i] : NULL;
}

int cascade_models_count(const cascade_models *m) { return m ? m->set->n : 0; }

const char *cascade_models_path(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return f ? f->path : NULL;
}

int cascade_models_part(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return f && !f->problem && f->info.net != CS_NET_UNKNOWN ? (int)cs_net_part(f->info.net) : -1;
}

const char *cascade_models_network(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return !f ? NULL : f->info.net == CS_NET_UNKNOWN ? "" : cs_net_name(f->info.net);
}

const char *cascade_models_dtype(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return !f ? NULL : f->info.mixed ? "mixed" : cs_dtype_name(f->info.dtype);
}

const char *cascade_models_problem(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return f ? f->problem : NULL;
}

unsigned long long cascade_models_size(const cascade_models *m, int i)
{
    const cs_model_file *f = file_at(m, i);
    return f ? f->size : 0;
}

const char *cascade_models_tokenizer(const cascade_models *m) { return m ? m->set->tokenizer : NULL; }

int cascade_models_use(cascade_ctx *ctx, const cascade_models *m, const cascade_choice *c)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!m || !m->set || !c) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_models_use: no %s", !c ? "choice" : "scan"));
    const cs_choice *ch = cs_api_choice(c);
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        if (ch->file[p] >= m->set->n)
            return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_models_use: the choice is not of this scan"));
    int rc = use_choice(ctx, m->set, ch);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

void cascade_models_free(cascade_models *m)
{
    if (!m) return;
    cs_models_free(m->set);
    free(m);
}

_Static_assert((int)CASCADE_PART_STAGE_C == (int)CS_PART_STAGE_C && (int)CASCADE_PART_TEXT_ENCODER == (int)CS_PART_TEXT &&
               (int)CASCADE_PART_CLIP_VISION == (int)CS_PART_CLIP_VISION && (int)CASCADE_PART_COUNT == (int)CS_PART_COUNT,
               "cascade_part follows cs_part");
