/* The public context (cascade.h): creation, errors, the per-thread compute
 * setup (threads, device, precision, cancel flag) and cascade_generate on
 * top of the internal pipeline (pipeline.h). */
#include "api.h"

#include "backend.h"
#include "cancel.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "ksampler.h"
#include "latent.h"
#include "prompt.h"
#include "tensor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cascade_version(void) { return PACKAGE_VERSION; }
const char *cascade_last_error(void) { return cs_last_error(); }

const char *cascade_strerror(int code)
{
    switch (code) {
    case CASCADE_OK: return "success";
    case CASCADE_E_IO: return "input/output error";
    case CASCADE_E_FORMAT: return "malformed file";
    case CASCADE_E_MODEL: return "wrong or missing model";
    case CASCADE_E_ARG: return "invalid argument";
    case CASCADE_E_NOMEM: return "out of memory";
    case CASCADE_E_UNSUP: return "not supported";
    case CASCADE_E_INTR: return "cancelled";
    case CASCADE_E_NONFINITE: return "non-finite result";
    case CASCADE_E_DEVICE: return "device failure";
    default: return "unknown error";
    }
}

/* ---- once per process: the kernel table ---- */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;
static char init_msg[256];

static void init_run(void)
{
    init_rc = cs_simd_init();
    if (init_rc) snprintf(init_msg, sizeof init_msg, "%s", cs_last_error());
}

int cs_api_init(cascade_ctx *ctx)
{
    pthread_once(&init_once, init_run);
    return init_rc ? cs_api_fail(ctx, cs_error(init_rc, "%s", init_msg)) : 0;
}

int cs_api_fail(cascade_ctx *ctx, int code)
{
    if (ctx) snprintf(ctx->err, sizeof ctx->err, "%s", cs_last_error());
    return code;
}

cascade_ctx *cascade_ctx_new(void)
{
    cascade_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    cs_api_defaults(ctx);
    ctx->prec = -1;
    cs_api_init(ctx);   /* a failure is reported again by the calls that compute */
    return ctx;
}

void cascade_ctx_free(cascade_ctx *ctx)
{
    if (!ctx) return;
    cs_pipeline_free(ctx->pl);
    cs_api_inputs_free(ctx);
    if (ctx->demo) {
        cs_demo_remove(ctx->demo);
        free(ctx->demo);
    }
    for (int k = 0; k < CASCADE_P_COUNT; k++) free(ctx->sv[k]), free(ctx->model[k]);
    free(ctx->text_prefix);
    free(ctx->text_config);
    free(ctx->found_tokenizer);
    free(ctx);
}

const char *cascade_errmsg(const cascade_ctx *ctx) { return ctx ? ctx->err : cs_last_error(); }

void cascade_free(void *p) { free(p); }

void cascade_set_progress(cascade_ctx *ctx, cascade_progress_fn fn, void *user)
{
    if (ctx) ctx->progress = fn, ctx->progress_user = user;
}

void cascade_set_preview(cascade_ctx *ctx, cascade_preview_fn fn, void *user)
{
    if (ctx) ctx->preview = fn, ctx->preview_user = user;
}

void cascade_set_log(cascade_ctx *ctx, cascade_log_fn fn, void *user)
{
    if (ctx) ctx->log = fn, ctx->log_user = user;
}

void cascade_set_latent(cascade_ctx *ctx, cascade_latent_fn fn, void *user)
{
    if (ctx) ctx->latent = fn, ctx->latent_user = user;
}

/* async-signal-safe: one store to a sig_atomic_t */
void cascade_cancel(cascade_ctx *ctx)
{
    if (ctx) ctx->cancel = 1;
}

/* the engine's one process-wide flag (cancel.h): every loop polls it */
void cascade_cancel_all(int why) { cs_cancel_request(why > 0 ? why : 1); }
int cascade_cancel_reason(void) { return *cs_cancel_flag(); }
void cascade_remove_temporaries(void) { cs_cleanup_run(); }

const char *cs_api_tokenizer(const cascade_ctx *ctx)
{
    if (ctx->sv[CASCADE_P_TOKENIZER]) return ctx->sv[CASCADE_P_TOKENIZER];
    if (ctx->demo_tokenizer) return NULL;
    if (ctx->found_tokenizer) return ctx->found_tokenizer;
    const char *e = getenv("CASCADE_TOKENIZER");
    return e && *e ? e : NULL;
}

/* Threads, device and precision are per thread inside the engine (ops.c,
 * backend.c): cascade_setup sets them for this thread from ctx, and every
 * computing call does so first (cs_api_compute). */

static int setup_kernels(cascade_ctx *ctx)
{
    int rc = cs_api_init(ctx);
    if (rc) return rc;
    int threads = (int)ctx->iv[CASCADE_P_THREADS];
    if (threads == 0) {
        const char *e = getenv("CASCADE_THREADS");
        char *end;
        long n = e && *e ? strtol(e, &end, 10) : 0;
        if (e && *e && (*end || n < 1 || n > 1024))
            return cs_api_fail(ctx, cs_error(CS_EARG, "CASCADE_THREADS=%s: not a whole number 1..1024", e));
        threads = (int)n;
    }
    cs_threads_set(threads);   /* 0: every processor */
    /* a malformed $CASCADE_MEMORY stops here, before any work, not when a
     * variant is chosen */
    const char *mem = getenv("CASCADE_MEMORY");
    uint64_t have;
    char src[64];
    if (mem && *mem && (rc = cs_mem_available(&have, src, sizeof src)) != 0) return cs_api_fail(ctx, rc);
    return 0;
}

static const char *device_of(const cascade_ctx *ctx)
{
    const char *dev = ctx->sv[CASCADE_P_DEVICE];
    if (!dev) dev = getenv("CASCADE_DEVICE");
    return dev && *dev ? dev : "auto";
}

/* the thread's device and its precision; ctx->said says what and why */
static int setup_device(cascade_ctx *ctx)
{
    static const char *const pn[] = {"fp32", "bf16", "fp16"};
    const char *dev = device_of(ctx);
    const char *prec = ctx->sv[CASCADE_P_PRECISION];
    if (!prec) prec = getenv("CASCADE_PRECISION");
    if (!prec || !*prec) prec = "auto";
    int p = -1, rc = 0;
    for (int i = 0; i < 3; i++)
        if (!strcmp(prec, pn[i])) p = i;
    if (p < 0 && strcmp(prec, "auto"))
        return cs_api_fail(ctx, cs_error(CS_EARG, "precision '%s' is not auto, fp32, bf16 or fp16", prec));
    ctx->said[0] = 0;
    ctx->prec = -1;
    char why[600] = "";
    if (!strcmp(dev, "cpu")) {
        rc = cs_backend_select("cpu");
    } else if (!strncmp(dev, "cuda", 4) && (!dev[4] || dev[4] == ':')) {
        rc = cs_backend_select_device("cuda", dev[4] == ':' ? atoi(dev + 5) : -1);
    } else if (!strcmp(dev, "auto")) {
        /* a usable GPU, else the CPU and why; a device chosen before on
         * this thread ($CASCADE_BACKEND, CASCADE_SETUP_BACKEND) stays */
        if (!cs_backend_active() && cs_backend_select("cuda")) snprintf(why, sizeof why, " (%s)", cs_last_error());
        cs_clear_error();
    } else {
        return cs_api_fail(ctx, cs_error(CS_EARG, "device '%s' is not auto, cpu, cuda or cuda:N", dev));
    }
    if (rc) {
        char msg[900];
        snprintf(msg, sizeof msg, "%s", cs_last_error());
        return cs_api_fail(ctx, cs_error(rc, "device %s: %s", dev, msg));
    }

    const cs_backend *b = cs_backend_active();
    if (!b || !b->ops) {
        /* the CPU: fp32, or bf16 products where it has a native bf16 dot
         * product (AVX512-BF16); auto stays fp32 until bf16's effect on
         * whole images is measured (README) */
        if (p == CS_PREC_FP16)
            return cs_api_fail(ctx, cs_error(CS_EUNSUP, "precision fp16: the CPU computes in fp32 or bf16 only"));
        int cp = p == CS_PREC_BF16 ? CS_PREC_BF16 : CS_PREC_FP32;
        if ((rc = cs_cpu_precision_set(cp)) != 0) {
            char msg[900];
            snprintf(msg, sizeof msg, "%s", cs_last_error());
            return cs_api_fail(ctx, cs_error(rc, "precision %s: %s", prec, msg));
        }
        ctx->prec = cp;
        snprintf(ctx->said, sizeof ctx->said, "cpu, %s%s", pn[cp], why);
        return 0;
    }
    /* auto on a device: bf16, else fp16, else fp32 */
    int tried[3] = {p, -1, -1};
    if (p < 0) tried[0] = CS_PREC_BF16, tried[1] = CS_PREC_FP16, tried[2] = CS_PREC_FP32;
    for (int i = 0; i < 3; i++)
        if (tried[i] >= 0 && b->ops->set_precision(tried[i]) == 0) {
            /* graphs recorded in another precision would replay it */
            if (cs_api_noted_precision() != tried[i]) cs_dev_graphs_drop();
            cs_api_note_precision(tried[i]);
            ctx->prec = tried[i];
            snprintf(ctx->said, sizeof ctx->said, "%s, %s", b->name, pn[tried[i]]);
            return 0;
        }
    if (p >= 0)
        return cs_api_fail(ctx, cs_error(CS_EUNSUP, "precision %s: the %s device does not support it", prec, b->name));
    return cs_api_fail(ctx, cs_error(CS_EUNSUP, "the %s device supports no precision this build knows", b->name));
}

int cascade_setup(cascade_ctx *ctx, int what)
{
    if (!ctx) return CASCADE_E_ARG;
    if (what & ~CASCADE_SETUP_ALL)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_setup: unknown parts 0x%x", (unsigned)what));
    int rc = 0;
    if (what & CASCADE_SETUP_KERNELS) rc = setup_kernels(ctx);
    /* $CASCADE_BACKEND: a plugin named by the environment, loaded once per thread */
    if (!rc && (what & CASCADE_SETUP_BACKEND) && !cs_backend_active() && (rc = cs_backend_select(NULL)) != 0)
        cs_api_fail(ctx, rc);
    if (!rc && (what & CASCADE_SETUP_DEVICE)) rc = setup_device(ctx);
    return rc;
}

const char *cascade_device_chosen(const cascade_ctx *ctx, int *precision)
{
    if (precision) *precision = ctx ? ctx->prec : -1;
    return ctx ? ctx->said : "";
}

int cs_api_compute(cascade_ctx *ctx) { return cascade_setup(ctx, CASCADE_SETUP_ALL); }

_Static_assert((int)CASCADE_PREC_FP32 == (int)CS_PREC_FP32 && (int)CASCADE_PREC_BF16 == (int)CS_PREC_BF16 &&
               (int)CASCADE_PREC_FP16 == (int)CS_PREC_FP16, "CASCADE_PREC_* follow CS_PREC_*");

/* ---- generate ---- */

struct cascade_image {
    int width, height, index;
    unsigned long long seed;
    const unsigned char *data;
    const struct cascade_images *owner;   /* the run's settings, for the PNG text */
};

struct cascade_images {
    int n;
    cascade_image *img;
    unsigned char *rgb;     /* [n, h, w, 3], cs_alloc'ed */
    /* what cascade_image_write_png records */
    char *prompt, *negative;
    long long iv[CASCADE_P_COUNT];
    double fv[CASCADE_P_COUNT];
    char *models;           /* "stage_c=file, ..." */
};

static void hook_progress(void *u, cs_stage_id stage, int step, int steps, double elapsed)
{
    cascade_ctx *ctx = u;
    if (ctx->progress && ctx->progress(ctx->progress_user, (cascade_stage)stage, step, steps, elapsed))
        ctx->cancel = 1;
}

static int hook_preview(void *u, int step, int steps, const uint8_t *rgb, int n, int w, int h)
{
    cascade_ctx *ctx = u;
    int rc = ctx->preview ? ctx->preview(ctx->preview_user, step, steps, rgb, n, w, h) : 0;
    if (rc < 0) return cs_error(rc, "the preview callback failed: %s", cascade_strerror(rc));
    return rc > 0 ? 1 : 0;
}

static void hook_warn(void *u, const char *msg)
{
    cascade_ctx *ctx = u;
    if (ctx->log) ctx->log(ctx->log_user, msg);
}

/* the latent callback gets ComfyUI's LATENT form (latent.h) */
static int hook_latent(void *u, cs_latent_id which, const float *x, int n, int h, int w, int c)
{
    cascade_ctx *ctx = u;
    size_t total = (size_t)n * h * w * c;
    float *d = malloc(total * sizeof *d);
    if (!d) return cs_oom("a latent for the latent callback", total * sizeof *d);
    cs_latent_to_comfy(x, n, h, w, c, which == CS_LATENT_B, d);
    int rc = ctx->latent(ctx->latent_user, (int)which, d, n, c, h, w);
    free(d);
    if (rc < 0) return cs_error(rc, "the latent callback failed: %s", cascade_strerror(rc));
    return rc > 0 ? 1 : 0;
}

static int make_pipeline(cascade_ctx *ctx)
{
    if (ctx->pl && !ctx->pl_stale && ctx->iv[CASCADE_P_KEEP_LOADED]) return 0;
    cs_pipeline_free(ctx->pl);
    ctx->pl = NULL;
    static const char *const need[] = {"Stage C", "Stage B", "Stage A", "text encoder"};
    for (int p = 0; p <= CASCADE_PART_TEXT_ENCODER; p++)
        if (!ctx->model[p])
            return cs_api_fail(ctx, cs_error(CS_EMODEL, "no %s: call cascade_find_models, cascade_use_demo or "
                                                        "cascade_set_model first", need[p]));
    const char *tok = cs_api_tokenizer(ctx);
    if (!tok && !ctx->demo_tokenizer)
        return cs_api_fail(ctx, cs_error(CS_EMODEL, "no tokenizer (vocab.json + merges.txt): set CASCADE_P_TOKENIZER "
                                                    "or call cascade_find_models"));
    cs_model_paths mp = {0};
    mp.tokenizer_dir = tok;
    mp.text_encoder = ctx->model[CASCADE_PART_TEXT_ENCODER];
    mp.text_config = ctx->text_config;
    mp.text_prefix = ctx->text_prefix;
    mp.stage_c = ctx->model[CASCADE_PART_STAGE_C];
    mp.stage_b = ctx->model[CASCADE_PART_STAGE_B];
    mp.stage_a = ctx->model[CASCADE_PART_STAGE_A];
    mp.previewer = ctx->model[CASCADE_PART_PREVIEWER];
    mp.clip_vision = ctx->model[CASCADE_PART_CLIP_VISION];
    mp.effnet = ctx->model[CASCADE_PART_EFFNET];
    for (int k = 0; k < 3; k++) {
        ctx->lora_list[k].lenient = (int)ctx->iv[CASCADE_P_LORA_LENIENT];
        ctx->lora_list[k].note = hook_warn;
        ctx->lora_list[k].ctx = ctx;
    }
    mp.lora_c = ctx->lora_list[0].n ? &ctx->lora_list[0] : NULL;
    mp.lora_b = ctx->lora_list[1].n ? &ctx->lora_list[1] : NULL;
    mp.lora_text = ctx->lora_list[2].n ? &ctx->lora_list[2] : NULL;
    int rc = cs_pipeline_new(&mp, (int)ctx->iv[CASCADE_P_KEEP_LOADED], &ctx->pl);
    if (!rc) rc = cs_pipeline_check(ctx->pl);
    if (rc) {
        cs_pipeline_free(ctx->pl);
        ctx->pl = NULL;
        return cs_api_fail(ctx, rc);
    }
    ctx->pl_stale = 0;
    return 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int wrap_images(cascade_ctx *ctx, const char *prompt, const char *negative, uint8_t *rgb, int n, int w,
                       int h, cascade_images **out)
{
    cascade_images *im = calloc(1, sizeof *im);
    if (!im || !(im->img = calloc((size_t)n, sizeof *im->img))) {
        free(im);
        cs_free(rgb);
        return cs_api_fail(ctx, cs_oom("the image list", sizeof *im));
    }
    im->n = n;
    im->rgb = rgb;
    im->prompt = dup_or_null(prompt);
    im->negative = dup_or_null(negative ? negative : "");
    memcpy(im->iv, ctx->iv, sizeof im->iv);
    memcpy(im->fv, ctx->fv, sizeof im->fv);
    char models[4096] = "";
    static const char *const pn[CASCADE_PART_COUNT] = {"stage_c", "stage_b", "stage_a", "text_encoder",
                                                       "effnet", "previewer", "clip_vision"};
    for (int p = 0; p < CASCADE_PART_COUNT; p++) {
        if (!ctx->model[p]) continue;
        const char *base = strrchr(ctx->model[p], '/');
        size_t o = strlen(models);
        snprintf(models + o, sizeof models - o, "%s%s=%s", o ? ", " : "", pn[p], base ? base + 1 : ctx->model[p]);
    }
    im->models = strdup(models);
    if (!im->prompt || !im->negative || !im->models) {
        cascade_images_free(im);
        return cs_api_fail(ctx, cs_oom("the image list", sizeof models));
    }
    for (int i = 0; i < n; i++)
        im->img[i] = (cascade_image){w, h, i, (unsigned long long)ctx->iv[CASCADE_P_SEED],
                                     rgb + (size_t)i * (size_t)h * (size_t)w * 3, im};
    *out = im;
    return 0;
}

/* Stage B's own official sampler settings (-1 / below 0: Stage C's) */
static int stage_b_params(const cascade_ctx *ctx, cs_gen_params *g)
{
    if (ctx->iv[CASCADE_P_SAMPLER_B] >= 0) g->b.sampler = (cs_sampler_kind)ctx->iv[CASCADE_P_SAMPLER_B];
    if (ctx->fv[CASCADE_P_ETA_B] >= 0) g->b.eta = (float)ctx->fv[CASCADE_P_ETA_B];
    if (ctx->fv[CASCADE_P_CFG_RHO_B] >= 0) g->b.cfg_rho = (float)ctx->fv[CASCADE_P_CFG_RHO_B];
    return 0;
}

/* ComfyUI's KSampler per stage (ksampler.h), by the names of the table */
static int ksampler_params(const cascade_ctx *ctx, cs_gen_params *g)
{
    const char *kc = ctx->sv[CASCADE_P_KSAMPLER_C], *kb = ctx->sv[CASCADE_P_KSAMPLER_B];
    if (!kc != !kb)
        return cs_error(CS_EARG, "ksampler_c and ksampler_b: set both stages' KSampler or neither (%s is unset)",
                        kc ? "ksampler_b" : "ksampler_c");
    int seed_b = ctx->iv[CASCADE_P_SEED_B] >= 0, zero = (int)ctx->iv[CASCADE_P_ZERO_NEGATIVE_B];
    if (!kc) {
        if (seed_b || zero)
            return cs_error(CS_EARG, "%s applies to ComfyUI's KSamplers only (set ksampler_c and ksampler_b)",
                            seed_b ? "seed_b" : "zero_negative_b");
        return 0;
    }
    const char *sc = ctx->sv[CASCADE_P_SCHEDULER_C], *sb = ctx->sv[CASCADE_P_SCHEDULER_B];
    g->c.ks_sampler = cs_ks_sampler_from_name(kc);
    g->b.ks_sampler = cs_ks_sampler_from_name(kb);
    g->c.ks_scheduler = sc ? cs_ks_scheduler_from_name(sc) : CS_KSCHED_SIMPLE;
    g->b.ks_scheduler = sb ? cs_ks_scheduler_from_name(sb) : CS_KSCHED_SIMPLE;
    if (g->c.ks_sampler <= 0 || g->b.ks_sampler <= 0 || g->c.ks_scheduler < 0 || g->b.ks_scheduler < 0)
        return cs_error(CS_EARG, "a KSampler name the table accepts is unknown to the sampler: please report");
    g->c.denoise = ctx->fv[CASCADE_P_DENOISE_C];
    g->b.denoise = ctx->fv[CASCADE_P_DENOISE_B];
    g->seed_b = seed_b ? (uint64_t)ctx->iv[CASCADE_P_SEED_B] : g->seed;
    g->seed_b_set = seed_b;
    g->b_uncond_zero = zero;
    return 0;
}

/* The run's parameters from ctx, its inputs, the pipeline made and checked
 * against them: everything short of computing. */
static int prepare(cascade_ctx *ctx, const char *prompt, const char *negative, cs_gen_params *g, float **init_rgb)
{
    cs_gen_defaults(g);
    g->prompt = prompt;
    g->negative = negative;
    g->width = (int)ctx->iv[CASCADE_P_WIDTH];
    g->height = (int)ctx->iv[CASCADE_P_HEIGHT];
    g->seed = (uint64_t)ctx->iv[CASCADE_P_SEED];
    g->batch = (int)ctx->iv[CASCADE_P_BATCH];
    g->c.steps = (int)ctx->iv[CASCADE_P_STEPS_C];
    g->b.steps = (int)ctx->iv[CASCADE_P_STEPS_B];
    g->c.cfg = (float)ctx->fv[CASCADE_P_CFG_C];
    g->b.cfg = (float)ctx->fv[CASCADE_P_CFG_B];
    g->c.cfg_rho = g->b.cfg_rho = (float)ctx->fv[CASCADE_P_CFG_RHO];
    g->c.shift = (float)ctx->fv[CASCADE_P_SHIFT_C];
    g->b.shift = (float)ctx->fv[CASCADE_P_SHIFT_B];
    g->c.sampler = g->b.sampler = (cs_sampler_kind)ctx->iv[CASCADE_P_SAMPLER];
    g->c.eta = g->b.eta = (float)ctx->fv[CASCADE_P_ETA];
    g->u8_mode = ctx->iv[CASCADE_P_ROUND] ? CS_U8_ROUND : CS_U8_TRUNCATE;
    g->prompt_style = (int)ctx->iv[CASCADE_P_PROMPT_STYLE];
    g->embeddings = ctx->sv[CASCADE_P_EMBEDDINGS];
    g->preview_every = ctx->preview ? (int)ctx->iv[CASCADE_P_PREVIEW_EVERY] : 0;
    g->want_preview = ctx->preview && ctx->model[CASCADE_PART_PREVIEWER];
    int rc;
    if ((rc = stage_b_params(ctx, g)) != 0 || (rc = ksampler_params(ctx, g)) != 0 ||
        (rc = cs_api_inputs_apply(ctx, g, init_rgb)) != 0 || (rc = cs_gen_check(g)) != 0 ||
        (rc = make_pipeline(ctx)) != 0 || (rc = cs_pipeline_check_size(ctx->pl, g)) != 0)
        return cs_api_fail(ctx, rc);
    return 0;
}

/* what prepare made and only a generation keeps */
static void unprepare(cascade_ctx *ctx, float *init_rgb)
{
    cs_free(init_rgb);
    if (!ctx->iv[CASCADE_P_KEEP_LOADED]) {
        cs_pipeline_free(ctx->pl);
        ctx->pl = NULL;
    }
}

int cascade_check(cascade_ctx *ctx)
{
    if (!ctx) return CASCADE_E_ARG;
    ctx->err[0] = 0;
    float *init_rgb = NULL;
    cs_gen_params g;
    int rc = cs_api_init(ctx);
    if (!rc) rc = prepare(ctx, "", NULL, &g, &init_rgb);
    unprepare(ctx, init_rgb);
    return rc;
}

int cascade_generate(cascade_ctx *ctx, const char *prompt, const char *negative, cascade_images **out)
{
    if (out) *out = NULL;
    if (!ctx) return CASCADE_E_ARG;
    if (!prompt || !out)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_generate: %s is NULL", !prompt ? "prompt" : "out"));
    ctx->err[0] = 0;
    float *init_rgb = NULL;
    int rc = cs_api_compute(ctx);
    if (rc) goto done;
    cs_cancel_bind(&ctx->cancel);

    cs_gen_params g;
    if ((rc = prepare(ctx, prompt, negative, &g, &init_rgb)) != 0) goto done;
    cs_pipeline_hooks hk = {hook_progress, g.want_preview ? hook_preview : NULL, ctx, hook_warn, &ctx->cancel,
                            ctx->latent ? hook_latent : NULL};
    uint8_t *rgb = NULL;
    rc = cs_pipeline_generate(ctx->pl, &g, &hk, &rgb);
    cs_free(init_rgb);
    init_rgb = NULL;
    if (rc) {
        cs_api_fail(ctx, rc);
        goto done;
    }
    rc = wrap_images(ctx, prompt, negative, rgb, g.batch, g.width, g.height, out);
done:
    unprepare(ctx, init_rgb);
    cs_cancel_bind(NULL);
    ctx->cancel = 0;
    return rc;
}

/* ---- the result ---- */

int cascade_images_count(const cascade_images *im) { return im ? im->n : 0; }

const cascade_image *cascade_images_get(const cascade_images *im, int i)
{
    return im && i >= 0 && i < im->n ? &im->img[i] : NULL;
}

void cascade_images_free(cascade_images *im)
{
    if (!im) return;
    cs_free(im->rgb);
    free(im->img);
    free(im->prompt);
    free(im->negative);
    free(im->models);
    free(im);
}

int cascade_image_width(const cascade_image *img) { return img ? img->width : 0; }
int cascade_image_height(const cascade_image *img) { return img ? img->height : 0; }
int cascade_image_channels(const cascade_image *img) { return img ? 3 : 0; }
size_t cascade_image_stride(const cascade_image *img) { return img ? (size_t)img->width * 3 : 0; }
const unsigned char *cascade_image_data(const cascade_image *img) { return img ? img->data : NULL; }
unsigned long long cascade_image_seed(const cascade_image *img) { return img ? img->seed : 0; }
int cascade_image_index(const cascade_image *img) { return img ? img->index : -1; }

int cascade_image_write_png(cascade_ctx *ctx, const cascade_image *img, const char *path, int flags)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!img || !path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_image_write_png: %s is NULL",
                                                        !img ? "the image" : "the path"));
    const cascade_images *im = img->owner;
    static const char *const sampler[] = {"ddpm", "ddim", "lcm"};
    char num[12][48], params[8192];
    snprintf(num[0], sizeof num[0], "%llu", img->seed);
    snprintf(num[1], sizeof num[1], "%d", img->width);
    snprintf(num[2], sizeof num[2], "%d", img->height);
    snprintf(num[3], sizeof num[3], "%d", im->n);
    snprintf(num[4], sizeof num[4], "%d", img->index);
    snprintf(num[5], sizeof num[5], "%lld", im->iv[CASCADE_P_STEPS_C]);
    snprintf(num[6], sizeof num[6], "%lld", im->iv[CASCADE_P_STEPS_B]);
    snprintf(num[7], sizeof num[7], "%g", im->fv[CASCADE_P_CFG_C]);
    snprintf(num[8], sizeof num[8], "%g", im->fv[CASCADE_P_CFG_B]);
    snprintf(num[9], sizeof num[9], "%g", im->fv[CASCADE_P_CFG_RHO]);
    snprintf(num[10], sizeof num[10], "%g", im->fv[CASCADE_P_SHIFT_C]);
    snprintf(num[11], sizeof num[11], "%g", im->fv[CASCADE_P_SHIFT_B]);
    snprintf(params, sizeof params, "%s\nNegative prompt: %s\nSteps: %s, Sampler: %s, CFG scale: %s, Seed: %s, "
             "Size: %sx%s", im->prompt, im->negative, num[5], sampler[im->iv[CASCADE_P_SAMPLER]], num[7], num[0],
             num[1], num[2]);
    char software[64];
    snprintf(software, sizeof software, "cascade %s (libcascade)", PACKAGE_VERSION);
    const cs_png_text text[] = {
        {"prompt", im->prompt}, {"negative_prompt", im->negative}, {"seed", num[0]}, {"width", num[1]},
        {"height", num[2]}, {"batch_size", num[3]}, {"batch_index", num[4]}, {"steps_c", num[5]},
        {"steps_b", num[6]}, {"cfg_c", num[7]}, {"cfg_b", num[8]}, {"cfg_rho", num[9]}, {"shift_c", num[10]},
        {"shift_b", num[11]}, {"sampler", sampler[im->iv[CASCADE_P_SAMPLER]]},
        {"prompt_style", cs_prompt_style_name((cs_prompt_style)im->iv[CASCADE_P_PROMPT_STYLE])},
        {"rng", "torch-cpu"}, {"output_rounding", im->iv[CASCADE_P_ROUND] ? "round" : "truncate"},
        {"models", im->models}, {"Software", software}, {"parameters", params},
    };
    int rc = cs_png_write_rgb8(path, img->data, img->width, img->height, cascade_image_stride(img), text,
                               (int)(sizeof text / sizeof *text), flags & CASCADE_PNG_FORCE ? CS_PNG_FORCE : 0);
    return rc ? cs_api_fail(ctx, rc) : 0;
}
