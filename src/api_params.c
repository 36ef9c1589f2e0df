/* Parameters by key (cascade.h): one table with every key's type, range
 * and default, and the setters and getters that check against it. */
#include "api.h"

#include "error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const device_choices[] = {"auto", "cpu", "cuda", NULL};   /* and cuda:N */
static const char *const prec_choices[] = {"auto", "fp32", "bf16", "fp16", NULL};
static const char *const variant_choices[] = {"auto", "full", "bf16", "lite", "lite-bf16", NULL};
/* ComfyUI's names, in ksampler.c's order (checked by cs_api_ks_index) */
static const char *const ks_choices[] = {"euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "lcm", "ddpm", NULL};
static const char *const sched_choices[] = {"simple", "normal", "karras", "exponential", "sgm_uniform", NULL};

#define I(n, lo, hi, d, mul) {n, CASCADE_T_INT, lo, hi, d, 0, mul, NULL, NULL}
#define F(n, lo, hi, d, open) {n, CASCADE_T_FLOAT, lo, hi, d, open, 0, NULL, NULL}
#define S(n, d, ch) {n, CASCADE_T_STRING, 0, 0, 0, 0, 0, d, ch}
static const cs_param_row table[CASCADE_P_COUNT] = {
    [CASCADE_P_WIDTH] = I("width", CS_GEN_SIDE_STEP, CS_GEN_MAX_SIDE, 1024, CS_GEN_SIDE_STEP),
    [CASCADE_P_HEIGHT] = I("height", CS_GEN_SIDE_STEP, CS_GEN_MAX_SIDE, 1024, CS_GEN_SIDE_STEP),
    [CASCADE_P_SEED] = I("seed", 0, 9223372036854775807.0, 0, 0),
    [CASCADE_P_BATCH] = I("batch", 1, CS_GEN_MAX_BATCH, 1, 0),
    [CASCADE_P_STEPS_C] = I("steps_c", 1, 10000, 20, 0),
    [CASCADE_P_STEPS_B] = I("steps_b", 1, 10000, 10, 0),
    [CASCADE_P_CFG_C] = F("cfg_c", -FLT_MAX, FLT_MAX, 4, 0),
    [CASCADE_P_CFG_B] = F("cfg_b", -FLT_MAX, FLT_MAX, 1.1, 0),
    [CASCADE_P_CFG_RHO] = F("cfg_rho", 0, 1, 0.7, 0),
    [CASCADE_P_SHIFT_C] = F("shift_c", 0, 10000, 2, 1),
    [CASCADE_P_SHIFT_B] = F("shift_b", 0, 10000, 1, 1),
    [CASCADE_P_SAMPLER] = I("sampler", CASCADE_SAMPLER_DDPM, CASCADE_SAMPLER_LCM, CASCADE_SAMPLER_DDPM, 0),
    [CASCADE_P_ETA] = F("eta", 0, 1, 0, 0),
    [CASCADE_P_ROUND] = I("round", 0, 1, 0, 0),
    [CASCADE_P_PROMPT_STYLE] = I("prompt_style", CASCADE_PROMPT_OFFICIAL, CASCADE_PROMPT_COMFYUI,
                                 CASCADE_PROMPT_COMFYUI, 0),
    [CASCADE_P_PREVIEW_EVERY] = I("preview_every", 0, 10000, 0, 0),
    [CASCADE_P_THREADS] = I("threads", 0, 1024, 0, 0),
    [CASCADE_P_KEEP_LOADED] = I("keep_loaded", 0, 1, 0, 0),
    [CASCADE_P_DEVICE] = S("device", "auto", device_choices),
    [CASCADE_P_PRECISION] = S("precision", "auto", prec_choices),
    [CASCADE_P_MODELS_DIR] = S("models_dir", NULL, NULL),
    [CASCADE_P_TOKENIZER] = S("tokenizer", NULL, NULL),
    [CASCADE_P_EMBEDDINGS] = S("embeddings", NULL, NULL),
    [CASCADE_P_VARIANT_C] = S("variant_c", "auto", variant_choices),
    [CASCADE_P_VARIANT_B] = S("variant_b", "auto", variant_choices),
    [CASCADE_P_KSAMPLER_C] = S("ksampler_c", NULL, ks_choices),
    [CASCADE_P_KSAMPLER_B] = S("ksampler_b", NULL, ks_choices),
    [CASCADE_P_SCHEDULER_C] = S("scheduler_c", "simple", sched_choices),
    [CASCADE_P_SCHEDULER_B] = S("scheduler_b", "simple", sched_choices),
    [CASCADE_P_DENOISE_C] = F("denoise_c", 0, 1, 1, 1),
    [CASCADE_P_DENOISE_B] = F("denoise_b", 0, 1, 1, 1),
    [CASCADE_P_SEED_B] = I("seed_b", -1, 9223372036854775807.0, -1, 0),
    [CASCADE_P_ZERO_NEGATIVE_B] = I("zero_negative_b", 0, 1, 0, 0),
    [CASCADE_P_SAMPLER_B] = I("sampler_b", -1, CASCADE_SAMPLER_LCM, -1, 0),
    [CASCADE_P_ETA_B] = F("eta_b", -1, 1, -1, 0),
    [CASCADE_P_CFG_RHO_B] = F("cfg_rho_b", -1, 1, -1, 0),
    [CASCADE_P_STRENGTH] = F("strength", 0, 1, 0.6, 1),
    [CASCADE_P_INIT_RESIZE] = I("init_resize", CASCADE_RESIZE_COVER, CASCADE_RESIZE_COMFYUI, CASCADE_RESIZE_COVER, 0),
    [CASCADE_P_LORA_LENIENT] = I("lora_lenient", 0, 1, 0, 0),
};
#undef I
#undef F
#undef S

const cs_param_row *cs_param_row_of(int key)
{
    return key >= 0 && key < CASCADE_P_COUNT && table[key].name ? &table[key] : NULL;
}

static const cs_param_row *row_typed(cascade_ctx *ctx, cascade_param key, int type)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!r) {
        cs_api_fail(ctx, cs_error(CS_EARG, "parameter key %d: no such parameter", (int)key));
        return NULL;
    }
    if (r->type != type) {
        static const char *const tn[] = {"?", "an int", "a float", "a string"};
        cs_api_fail(ctx, cs_error(CS_EARG, "parameter %s is %s, not %s", r->name, tn[r->type], tn[type]));
        return NULL;
    }
    return r;
}

int cs_param_check_int(cascade_ctx *ctx, cascade_param key, long long v)
{
    const cs_param_row *r = row_typed(ctx, key, CASCADE_T_INT);
    if (!r) return CASCADE_E_ARG;
    if ((double)v < r->min || (double)v > r->max)
        return cs_api_fail(ctx, cs_error(CS_EARG, "%s: %lld is out of range %.0f..%.0f", r->name, v, r->min, r->max));
    if (r->multiple && v % r->multiple)
        return cs_api_fail(ctx, cs_error(CS_EARG, "%s: %lld is not a multiple of %d", r->name, v, r->multiple));
    return 0;
}

int cascade_set_int(cascade_ctx *ctx, cascade_param key, long long v)
{
    if (!ctx) return CASCADE_E_ARG;
    int rc = cs_param_check_int(ctx, key, v);
    if (rc) return rc;
    ctx->iv[key] = v;
    return 0;
}

int cascade_set_float(cascade_ctx *ctx, cascade_param key, double v)
{
    if (!ctx) return CASCADE_E_ARG;
    const cs_param_row *r = row_typed(ctx, key, CASCADE_T_FLOAT);
    if (!r) return CASCADE_E_ARG;
    if (!isfinite(v) || v < r->min || v > r->max || (r->min_open && v == r->min))
        return cs_api_fail(ctx, cs_error(CS_EARG, "%s: %g is out of range %s%g..%g]", r->name, v,
                                         r->min_open ? "(" : "[", r->min, r->max));
    ctx->fv[key] = v;
    return 0;
}

static int choice_ok(const cs_param_row *r, const char *v)
{
    if (!r->choices) return 1;
    for (const char *const *c = r->choices; *c; c++)
        if (!strcmp(*c, v)) return 1;
    if (r == &table[CASCADE_P_DEVICE] && !strncmp(v, "cuda:", 5)) {
        char *end;
        long n = strtol(v + 5, &end, 10);
        return v[5] >= '0' && v[5] <= '9' && !*end && n <= 255;
    }
    return 0;
}

int cascade_set_string(cascade_ctx *ctx, cascade_param key, const char *v)
{
    if (!ctx) return CASCADE_E_ARG;
    const cs_param_row *r = row_typed(ctx, key, CASCADE_T_STRING);
    if (!r) return CASCADE_E_ARG;
    if (v && !choice_ok(r, v)) {
        char list[160] = "";
        for (const char *const *c = r->choices; *c; c++)
            strncat(list, *c, sizeof list - strlen(list) - 3), strcat(list, c[1] ? ", " : "");
        return cs_api_fail(ctx, cs_error(CS_EARG, "%s: '%s' is not one of %s%s", r->name, v, list,
                                         key == CASCADE_P_DEVICE ? ", cuda:N" : ""));
    }
    char *copy = NULL;
    if (v && !(copy = strdup(v))) return cs_api_fail(ctx, cs_oom("a parameter", strlen(v) + 1));
    free(ctx->sv[key]);
    ctx->sv[key] = copy;
    if (key == CASCADE_P_TOKENIZER) ctx->pl_stale = 1;
    return 0;
}

int cascade_get_int(const cascade_ctx *ctx, cascade_param key, long long *v)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!ctx || !v || !r || r->type != CASCADE_T_INT) return CASCADE_E_ARG;
    *v = ctx->iv[key];
    return 0;
}

int cascade_get_float(const cascade_ctx *ctx, cascade_param key, double *v)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!ctx || !v || !r || r->type != CASCADE_T_FLOAT) return CASCADE_E_ARG;
    *v = ctx->fv[key];
    return 0;
}

int cascade_get_string(const cascade_ctx *ctx, cascade_param key, const char **v)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!ctx || !v || !r || r->type != CASCADE_T_STRING) return CASCADE_E_ARG;
    *v = ctx->sv[key] ? ctx->sv[key] : r->sdef;
    return 0;
}

const char *cascade_param_name(cascade_param key)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    return r ? r->name : NULL;
}

int cascade_param_type(cascade_param key)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    return r ? r->type : 0;
}

int cascade_param_range(cascade_param key, double *min, double *max, int *min_open, double *def)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!r || r->type == CASCADE_T_STRING) return CASCADE_E_ARG;
    if (min) *min = r->min;
    if (max) *max = r->max;
    if (min_open) *min_open = r->min_open;
    if (def) *def = r->def;
    return 0;
}

int cascade_param_step(cascade_param key)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!r || r->type != CASCADE_T_INT) return CASCADE_E_ARG;
    return r->multiple ? r->multiple : 1;
}

int cascade_param_find(const char *name)
{
    for (int k = 0; name && k < CASCADE_P_COUNT; k++)
        if (table[k].name && !strcmp(table[k].name, name)) return k;
    return CASCADE_E_ARG;
}

const char *cascade_param_choice(cascade_param key, int i)
{
    const cs_param_row *r = cs_param_row_of((int)key);
    if (!r || r->type != CASCADE_T_STRING || !r->choices || i < 0) return NULL;
    for (int k = 0; r->choices[k]; k++)
        if (k == i) return r->choices[k];
    return NULL;
}

void cs_api_defaults(cascade_ctx *ctx)
{
    for (int k = 0; k < CASCADE_P_COUNT; k++) {
        if (table[k].type == CASCADE_T_INT) ctx->iv[k] = (long long)table[k].def;
        if (table[k].type == CASCADE_T_FLOAT) ctx->fv[k] = table[k].def;
    }
}
