/* The public training calls (cascade.h, "training"): the trainer's key
 * table with every key's type, range and default, its setters and getters,
 * and prepare / run on top of the engine of train_job.c. */
#include "api.h"
#include "train_job.h"

#include "cancel.h"
#include "error.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mixed_choices[] = {"no", "bf16", NULL};

/* one row per key: cs_param_row of api.h (min_open: a float's lower end
 * is excluded; the betas' upper end is checked apart) */
#define I(n, lo, hi, d) {n, CASCADE_T_INT, lo, hi, d, 0, 0, NULL, NULL}
#define F(n, lo, hi, d, open) {n, CASCADE_T_FLOAT, lo, hi, d, open, 0, NULL, NULL}
#define S(n, d, ch) {n, CASCADE_T_STRING, 0, 0, 0, 0, 0, d, ch}
static const cs_param_row table[CASCADE_TP_COUNT] = {
    [CASCADE_TP_STAGE_C] = S("stage_c_checkpoint_path", NULL, NULL),
    [CASCADE_TP_EFFNET] = S("effnet_checkpoint_path", NULL, NULL),
    [CASCADE_TP_PREVIEWER] = S("previewer_checkpoint_path", NULL, NULL),
    [CASCADE_TP_TEXT_ENCODER] = S("text_model_checkpoint_path", NULL, NULL),
    [CASCADE_TP_DATASET_CONFIG] = S("dataset_config", NULL, NULL),
    [CASCADE_TP_TRAIN_DATA_DIR] = S("train_data_dir", NULL, NULL),
    [CASCADE_TP_WIDTH] = I("width", 32, 8192, 1024),
    [CASCADE_TP_HEIGHT] = I("height", 32, 8192, 1024),
    [CASCADE_TP_BATCH] = I("train_batch_size", 1, 4096, 1),
    [CASCADE_TP_OUTPUT_DIR] = S("output_dir", NULL, NULL),
    [CASCADE_TP_OUTPUT_NAME] = S("output_name", "last", NULL),
    [CASCADE_TP_CACHE_DIR] = S("cache_dir", NULL, NULL),
    [CASCADE_TP_CACHE_LATENTS] = I("cache_latents", 0, 1, 0),
    [CASCADE_TP_CACHE_TEXT] = I("cache_text_encoder_outputs", 0, 1, 0),
    [CASCADE_TP_LEARNING_RATE] = F("learning_rate", 0, 10, 1e-4, 1),
    [CASCADE_TP_OPTIMIZER] = I("optimizer_type", CASCADE_OPT_ADAFACTOR, CASCADE_OPT_ADAMW, CASCADE_OPT_ADAFACTOR),
    [CASCADE_TP_ADAFACTOR_EPS] = F("adafactor_eps", 0, 1, 1e-30, 1),
    [CASCADE_TP_ADAFACTOR_CLIP_THRESHOLD] = F("adafactor_clip_threshold", 0, 1e6, 1.0, 1),
    [CASCADE_TP_ADAFACTOR_DECAY_RATE] = F("adafactor_decay_rate", -1, 0, -0.8, 0),
    [CASCADE_TP_ADAFACTOR_WEIGHT_DECAY] = F("adafactor_weight_decay", 0, 1, 0, 0),
    [CASCADE_TP_ADAMW_BETA1] = F("adamw_beta1", 0, 1, 0.9, 0),
    [CASCADE_TP_ADAMW_BETA2] = F("adamw_beta2", 0, 1, 0.999, 0),
    [CASCADE_TP_ADAMW_EPS] = F("adamw_eps", 0, 1, 1e-8, 1),
    [CASCADE_TP_ADAMW_WEIGHT_DECAY] = F("adamw_weight_decay", 0, 1, 1e-2, 0),
    [CASCADE_TP_LR_SCHEDULER] = S("lr_scheduler", "constant", NULL),
    [CASCADE_TP_LR_WARMUP] = S("lr_warmup_steps", NULL, NULL),
    [CASCADE_TP_LR_CYCLES] = I("lr_scheduler_num_cycles", 0, 1000000, 1),
    [CASCADE_TP_LR_POWER] = F("lr_scheduler_power", -1e6, 1e6, 1, 0),
    [CASCADE_TP_EPOCHS] = I("max_train_epochs", 0, 1000000, 0),
    [CASCADE_TP_STEPS] = I("max_train_steps", 0, 1000000000, 0),
    [CASCADE_TP_GRAD_ACCUM] = I("gradient_accumulation_steps", 1, 65536, 1),
    [CASCADE_TP_MAX_GRAD_NORM] = F("max_grad_norm", 0, 1e9, 1.0, 0),
    [CASCADE_TP_ADAPTIVE_LOSS] = I("adaptive_loss_weight", 0, 1, 0),
    [CASCADE_TP_SEED] = I("seed", -1, 4294967295.0, -1),
    [CASCADE_TP_SAVE_EVERY] = I("save_every_n_epochs", 0, 1000000, 0),
    [CASCADE_TP_SAVE_PRECISION] = I("save_precision", CASCADE_PREC_FP32, CASCADE_PREC_FP16, CASCADE_PREC_FP32),
    [CASCADE_TP_SAVE_STATE] = I("save_state", 0, 1, 0),
    [CASCADE_TP_RESUME] = S("resume", NULL, NULL),
    [CASCADE_TP_SAMPLE_EVERY] = I("sample_every_n_epochs", 0, 1000000, 0),
    [CASCADE_TP_SAMPLE_PROMPTS] = S("sample_prompts", NULL, NULL),
    [CASCADE_TP_MIXED_PRECISION] = S("mixed_precision", "no", mixed_choices),
    [CASCADE_TP_LORA] = I("network_module_lora", 0, 1, 0),
    [CASCADE_TP_LORA_DIM] = I("network_dim", 1, 1 << 20, 4),
    [CASCADE_TP_LORA_ALPHA] = F("network_alpha", 0, 1e9, 1.0, 0),
    [CASCADE_TP_LORA_CONV_DIM] = I("conv_dim", 0, 1 << 20, 0),
    [CASCADE_TP_LORA_CONV_ALPHA] = F("conv_alpha", 0, 1e9, 1.0, 0),
    [CASCADE_TP_NETWORK_ARGS] = S("network_args", NULL, NULL),
    [CASCADE_TP_NETWORK_WEIGHTS] = S("network_weights", NULL, NULL),
    [CASCADE_TP_FUSED_BACKWARD] = I("fused_backward_pass", -1, 1, -1),
};
#undef I
#undef F
#undef S

struct cascade_trainer {
    cascade_ctx *ctx;
    long long iv[CASCADE_TP_COUNT];
    double fv[CASCADE_TP_COUNT];
    char *sv[CASCADE_TP_COUNT];
    cascade_train_fn fn;
    void *user;
    double stat[CASCADE_TS_COUNT];
    cs_tj_opts o;       /* filled from the keys by prepare */
    cs_tj *job;
};

static int fail(cascade_trainer *t, int code) { return cs_api_fail(t->ctx, code); }

/* the row of key when it has type, else CASCADE_E_ARG in ctx */
static const cs_param_row *row_typed(cascade_trainer *t, cascade_train_param key, int type)
{
    const cs_param_row *r = key >= 0 && key < CASCADE_TP_COUNT ? &table[key] : NULL;
    if (!r) {
        fail(t, cs_error(CS_EARG, "training key %d: no such key", (int)key));
        return NULL;
    }
    if (r->type != type) {
        static const char *const tn[] = {"?", "an int", "a float", "a string"};
        fail(t, cs_error(CS_EARG, "training key %s is %s, not %s", r->name, tn[r->type], tn[type]));
        return NULL;
    }
    if (t->job) {
        fail(t, cs_error(CS_EARG, "%s: the trainer is prepared; its settings are fixed", r->name));
        return NULL;
    }
    return r;
}

int cascade_trainer_new(cascade_ctx *ctx, cascade_trainer **out)
{
    if (!out) return CASCADE_E_ARG;
    *out = NULL;
    if (!ctx) return CASCADE_E_ARG;
    cascade_trainer *t = calloc(1, sizeof *t);
    if (!t) return cs_api_fail(ctx, cs_oom("a trainer", sizeof *t));
    t->ctx = ctx;
    for (int k = 0; k < CASCADE_TP_COUNT; k++) {
        if (table[k].type == CASCADE_T_INT) t->iv[k] = (long long)table[k].def;
        if (table[k].type == CASCADE_T_FLOAT) t->fv[k] = table[k].def;
    }
    for (int k = 0; k < CASCADE_TS_COUNT; k++) t->stat[k] = NAN;
    *out = t;
    return 0;
}

void cascade_trainer_free(cascade_trainer *t)
{
    if (!t) return;
    cs_tj_free(t->job);
    for (int k = 0; k < CASCADE_TP_COUNT; k++) free(t->sv[k]);
    free(t);
}

int cascade_trainer_set_int(cascade_trainer *t, cascade_train_param key, long long v)
{
    if (!t) return CASCADE_E_ARG;
    const cs_param_row *r = row_typed(t, key, CASCADE_T_INT);
    if (!r) return CASCADE_E_ARG;
    if ((double)v < r->min || (double)v > r->max)
        return fail(t, cs_error(CS_EARG, "%s: %lld is out of range %.0f..%.0f", r->name, v, r->min, r->max));
    t->iv[key] = v;
    return 0;
}

int cascade_trainer_set_float(cascade_trainer *t, cascade_train_param key, double v)
{
    if (!t) return CASCADE_E_ARG;
    const cs_param_row *r = row_typed(t, key, CASCADE_T_FLOAT);
    if (!r) return CASCADE_E_ARG;
    int beta = key == CASCADE_TP_ADAMW_BETA1 || key == CASCADE_TP_ADAMW_BETA2;   /* [0, 1) */
    if (!isfinite(v) || v < r->min || v > r->max || (r->min_open && v == r->min) || (beta && v == r->max))
        return fail(t, cs_error(CS_EARG, "%s: %g is out of range %s%g..%g%s", r->name, v, r->min_open ? "(" : "[",
                                r->min, r->max, beta ? ")" : "]"));
    t->fv[key] = v;
    return 0;
}

int cascade_trainer_set_string(cascade_trainer *t, cascade_train_param key, const char *v)
{
    if (!t) return CASCADE_E_ARG;
    const cs_param_row *r = row_typed(t, key, CASCADE_T_STRING);
    if (!r) return CASCADE_E_ARG;
    int ok = !v || !r->choices;
    for (const char *const *c = r->choices; v && !ok && *c; c++) ok = !strcmp(*c, v);
    if (!ok) {
        char list[200] = "";
        for (const char *const *c = r->choices; *c; c++)
            strncat(list, *c, sizeof list - strlen(list) - 3), strcat(list, c[1] ? ", " : "");
        return fail(t, cs_error(CS_EARG, "%s: '%s' is not one of %s", r->name, v, list));
    }
    cs_lr_kind kind;
    if (v && key == CASCADE_TP_LR_SCHEDULER && cs_lr_kind_parse(v, &kind)) return fail(t, CS_EARG);
    if (v && key == CASCADE_TP_LR_WARMUP) {   /* kohya's forms, checked now */
        int64_t n;
        double ratio;
        if (cs_lr_warmup_parse(v, &n, &ratio)) return fail(t, CS_EARG);
    }
    if (v && key == CASCADE_TP_OUTPUT_NAME && (!*v || strchr(v, '/')))
        return fail(t, cs_error(CS_EARG, "%s: must be a non-empty file name without '/'", r->name));
    char *copy = NULL;
    if (v && !(copy = strdup(v))) return fail(t, cs_oom("a training setting", strlen(v) + 1));
    free(t->sv[key]);
    t->sv[key] = copy;
    return 0;
}

static const cs_param_row *row_of(cascade_train_param key, int type)
{
    return key >= 0 && key < CASCADE_TP_COUNT && table[key].type == type ? &table[key] : NULL;
}

int cascade_trainer_get_int(const cascade_trainer *t, cascade_train_param key, long long *v)
{
    if (!t || !v || !row_of(key, CASCADE_T_INT)) return CASCADE_E_ARG;
    *v = t->iv[key];
    return 0;
}

int cascade_trainer_get_float(const cascade_trainer *t, cascade_train_param key, double *v)
{
    if (!t || !v || !row_of(key, CASCADE_T_FLOAT)) return CASCADE_E_ARG;
    *v = t->fv[key];
    return 0;
}

int cascade_trainer_get_string(const cascade_trainer *t, cascade_train_param key, const char **v)
{
    const cs_param_row *r = row_of(key, CASCADE_T_STRING);
    if (!t || !v || !r) return CASCADE_E_ARG;
    *v = t->sv[key] ? t->sv[key] : r->sdef;
    return 0;
}

const char *cascade_train_param_name(cascade_train_param key)
{
    return key >= 0 && key < CASCADE_TP_COUNT ? table[key].name : NULL;
}

int cascade_train_param_type(cascade_train_param key)
{
    return key >= 0 && key < CASCADE_TP_COUNT ? table[key].type : 0;
}

int cascade_train_param_range(cascade_train_param key, double *min, double *max, int *min_open, double *def)
{
    if (key < 0 || key >= CASCADE_TP_COUNT || table[key].type == CASCADE_T_STRING) return CASCADE_E_ARG;
    const cs_param_row *r = &table[key];
    if (min) *min = r->min;
    if (max) *max = r->max;
    if (min_open) *min_open = r->min_open;
    if (def) *def = r->def;
    return 0;
}

int cascade_train_param_find(const char *name)
{
    for (int k = 0; name && k < CASCADE_TP_COUNT; k++)
        if (!strcmp(table[k].name, name)) return k;
    return CASCADE_E_ARG;
}

void cascade_trainer_set_callback(cascade_trainer *t, cascade_train_fn fn, void *user)
{
    if (t) t->fn = fn, t->user = user;
}

double cascade_trainer_stat(const cascade_trainer *t, cascade_train_stat key)
{
    return t && key >= 0 && key < CASCADE_TS_COUNT ? t->stat[key] : NAN;
}

/* the engine's events to the caller; a non-zero answer stops the run at
 * its next check, as cascade_cancel does */
static int on_event(void *user, int ev, const char *text)
{
    cascade_trainer *t = user;
    if (t->fn && t->fn(t->user, t, (cascade_train_event)ev, text)) t->ctx->cancel = 1;
    return 0;
}

/* the keys -> the engine's settings; what needs the keys together is checked here */
static int fill(cascade_trainer *t)
{
    cs_tj_opts *o = &t->o;
    const long long *iv = t->iv;
    const double *fv = t->fv;
    char *const *sv = t->sv;
    memset(o, 0, sizeof *o);
    o->stage_c = sv[CASCADE_TP_STAGE_C], o->effnet = sv[CASCADE_TP_EFFNET];
    o->previewer = sv[CASCADE_TP_PREVIEWER], o->text_encoder = sv[CASCADE_TP_TEXT_ENCODER];
    o->models_dir = t->ctx->sv[CASCADE_P_MODELS_DIR];
    o->tokenizer = cs_api_tokenizer(t->ctx);
    o->dataset_config = sv[CASCADE_TP_DATASET_CONFIG], o->train_data_dir = sv[CASCADE_TP_TRAIN_DATA_DIR];
    o->res_w = (int)iv[CASCADE_TP_WIDTH], o->res_h = (int)iv[CASCADE_TP_HEIGHT];
    o->batch_size = (int)iv[CASCADE_TP_BATCH];
    o->output_dir = sv[CASCADE_TP_OUTPUT_DIR];
    o->output_name = sv[CASCADE_TP_OUTPUT_NAME] ? sv[CASCADE_TP_OUTPUT_NAME] : "last";
    o->cache_dir = sv[CASCADE_TP_CACHE_DIR];
    o->cache_latents = (int)iv[CASCADE_TP_CACHE_LATENTS], o->cache_text = (int)iv[CASCADE_TP_CACHE_TEXT];
    o->lr = fv[CASCADE_TP_LEARNING_RATE];
    cs_train_cfg_default(&o->cfg, iv[CASCADE_TP_OPTIMIZER] == CASCADE_OPT_ADAMW ? CS_OPT_ADAMW : CS_OPT_ADAFACTOR,
                         o->lr);
    o->cfg.adafactor.eps1 = fv[CASCADE_TP_ADAFACTOR_EPS];
    o->cfg.adafactor.clip_threshold = fv[CASCADE_TP_ADAFACTOR_CLIP_THRESHOLD];
    o->cfg.adafactor.decay_rate = fv[CASCADE_TP_ADAFACTOR_DECAY_RATE];
    o->cfg.adafactor.weight_decay = fv[CASCADE_TP_ADAFACTOR_WEIGHT_DECAY];
    o->cfg.adamw.beta1 = fv[CASCADE_TP_ADAMW_BETA1], o->cfg.adamw.beta2 = fv[CASCADE_TP_ADAMW_BETA2];
    o->cfg.adamw.eps = fv[CASCADE_TP_ADAMW_EPS], o->cfg.adamw.weight_decay = fv[CASCADE_TP_ADAMW_WEIGHT_DECAY];
    o->cfg.loss_weight = iv[CASCADE_TP_ADAPTIVE_LOSS] ? CS_LOSS_ADAPTIVE : CS_LOSS_P2;
    o->cfg.grad_accum = (int)iv[CASCADE_TP_GRAD_ACCUM];
    o->cfg.max_grad_norm = fv[CASCADE_TP_MAX_GRAD_NORM];
    o->fused = (int)iv[CASCADE_TP_FUSED_BACKWARD];
    o->cfg.fused = o->fused == 1;
    const char *sched = sv[CASCADE_TP_LR_SCHEDULER] ? sv[CASCADE_TP_LR_SCHEDULER] : "constant";
    if (cs_lr_kind_parse(sched, &o->sched.kind)) return CS_EARG;
    o->sched.cycles = (int)iv[CASCADE_TP_LR_CYCLES], o->sched.power = fv[CASCADE_TP_LR_POWER];
    o->warmup_ratio = -1;
    o->warmup_arg = sv[CASCADE_TP_LR_WARMUP];
    if (o->warmup_arg && cs_lr_warmup_parse(o->warmup_arg, &o->warmup_steps, &o->warmup_ratio)) return CS_EARG;
    o->epochs = (int)iv[CASCADE_TP_EPOCHS], o->steps = (int)iv[CASCADE_TP_STEPS];
    if (!o->epochs && !o->steps) o->steps = 1600;   /* kohya's default */
    o->save_every = (int)iv[CASCADE_TP_SAVE_EVERY];
    o->save_prec = iv[CASCADE_TP_SAVE_PRECISION] == CASCADE_PREC_BF16   ? CS_TJ_SAVE_BF16
                   : iv[CASCADE_TP_SAVE_PRECISION] == CASCADE_PREC_FP16 ? CS_TJ_SAVE_FP16
                                                                        : CS_TJ_SAVE_FP32;
    o->seed_given = iv[CASCADE_TP_SEED] >= 0;
    o->seed = o->seed_given ? (uint64_t)iv[CASCADE_TP_SEED] : 0;
    o->sample_every = (int)iv[CASCADE_TP_SAMPLE_EVERY], o->sample_prompts = sv[CASCADE_TP_SAMPLE_PROMPTS];
    o->resume = sv[CASCADE_TP_RESUME];
    o->save_state = (int)iv[CASCADE_TP_SAVE_STATE];
    o->mixed_bf16 = sv[CASCADE_TP_MIXED_PRECISION] && !strcmp(sv[CASCADE_TP_MIXED_PRECISION], "bf16");
    o->cfg.tf32 = o->mixed_bf16;   /* a device's products on TF32 (float32 data and master weights) */
    o->lora = (int)iv[CASCADE_TP_LORA];
    cs_lora_train_cfg_default(&o->lora_cfg);
    o->lora_cfg.dim = (int)iv[CASCADE_TP_LORA_DIM], o->lora_cfg.alpha = fv[CASCADE_TP_LORA_ALPHA];
    o->lora_cfg.conv_dim = (int)iv[CASCADE_TP_LORA_CONV_DIM], o->lora_cfg.conv_alpha = fv[CASCADE_TP_LORA_CONV_ALPHA];
    o->network_args = sv[CASCADE_TP_NETWORK_ARGS], o->network_weights = sv[CASCADE_TP_NETWORK_WEIGHTS];
    o->event = on_event, o->user = t, o->stat = t->stat;
    /* what needs several keys */
    if (!o->stage_c) return cs_error(CS_EARG, "stage_c_checkpoint_path: required (the Stage C to train)");
    if (!o->effnet) return cs_error(CS_EARG, "effnet_checkpoint_path: required (the EfficientNet encoder)");
    if (!o->dataset_config == !o->train_data_dir)
        return cs_error(CS_EARG, "dataset_config: give exactly one of dataset_config and train_data_dir");
    if (!o->output_dir || !*o->output_dir) return cs_error(CS_EARG, "output_dir: required");
    if (o->sample_every && !o->sample_prompts)
        return cs_error(CS_EARG, "sample_every_n_epochs: needs sample_prompts");
    if (o->sample_prompts && !o->previewer)
        return cs_error(CS_EARG, "sample_prompts: needs previewer_checkpoint_path (samples are decoded by the "
                                 "previewer)");
    if (!o->lora && (o->network_weights || o->network_args))
        return cs_error(CS_EARG, "%s: needs a LoRA run (network_module_lora)",
                        o->network_weights ? "network_weights" : "network_args");
    /* kohya's get_optimizer refuses the first two; its LoRA trainers have no fused pass */
    if (o->fused == 1 && (o->cfg.opt != CS_OPT_ADAFACTOR || o->cfg.grad_accum > 1 || o->lora))
        return cs_error(CS_EARG, "fused_backward_pass: %s",
                        o->cfg.opt != CS_OPT_ADAFACTOR ? "works with optimizer_type Adafactor only"
                        : o->lora                      ? "is for a full fine-tune, not a LoRA"
                                                       : "does not work with gradient_accumulation_steps > 1");
    o->sched.lr = o->lr;
    if (o->sched.kind == CS_LR_CONSTANT && (o->warmup_steps || o->warmup_ratio > 0))
        return cs_error(CS_EARG, "lr_warmup_steps: the constant scheduler has no warmup (use constant_with_warmup)");
    if (cs_lr_sched_check(&o->sched)) {
        char m[600];
        snprintf(m, sizeof m, "%s", cs_last_error());
        return cs_error(CS_EARG, "lr_scheduler: %s", m);
    }
    return 0;
}

int cascade_trainer_check(cascade_trainer *t)
{
    if (!t) return CASCADE_E_ARG;
    int rc = fill(t);
    return rc ? fail(t, rc) : 0;
}

int cascade_trainer_prepare(cascade_trainer *t)
{
    if (!t) return CASCADE_E_ARG;
    if (t->job) return 0;
    /* the kernels and threads of ctx, and $CASCADE_BACKEND's plugin: what
     * every computing call sets up; the device stays as cascade_setup left it */
    int rc = cascade_setup(t->ctx, CASCADE_SETUP_KERNELS | CASCADE_SETUP_BACKEND);
    if (rc) return rc;
    if ((rc = fill(t)) || (rc = cs_tj_new(&t->o, &t->job))) return fail(t, rc);
    cs_cancel_bind(&t->ctx->cancel);
    rc = cs_tj_prepare(t->job);
    cs_cancel_bind(NULL);
    if (rc) {
        /* a trainer that did not prepare can be set again and retried */
        cs_tj_free(t->job);
        t->job = NULL;
        return fail(t, rc);
    }
    return 0;
}

int cascade_trainer_run(cascade_trainer *t)
{
    if (!t) return CASCADE_E_ARG;
    int rc = t->job ? 0 : cascade_trainer_prepare(t);
    if (rc) return rc;
    cs_cancel_bind(&t->ctx->cancel);
    rc = cs_tj_run(t->job);
    cs_cancel_bind(NULL);
    t->ctx->cancel = 0;
    return rc ? fail(t, rc) : 0;
}
