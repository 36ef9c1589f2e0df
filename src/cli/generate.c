/* cascade generate: text to image. Options -> checks that can fail fast
 * (sizes, output path, models, memory) -> cascade_generate per run with
 * progress and Ctrl-C -> PNG files with metadata. Nothing is written unless
 * the run completes. A client of cascade.h: the CLI's context (cli_ctx)
 * holds the settings, models and inputs. */
#include "cli.h"
#include "generate.h"

#include "cascade.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ME "cascade generate"


/* ---- run state ---- */

typedef struct {
    opts *o;
    cascade_ctx *ctx;
    gen_progress prog;
    gen_output out, prev;           /* images, previews */
    unsigned char *prev_existed;    /* per preview file: there before we started */
    unsigned char *prev_created;    /* per preview file: written by us (removed on failure) */
    int *prev_cleanup;              /* per preview file: its cli_cleanup_add handle while not final */
    char tok_desc[GEN_PATH + 64];
    gen_model_meta models[CASCADE_PART_COUNT];
    int n_models;
    gen_lora_meta loras[3 * GEN_MAX_LORA];
    int n_loras;
    char *images_json, *init_json;  /* cascade_input_json's, for the metadata */
    int init_used;                  /* --init-image takes part (strength below 1) */
    int run;
    gen_latents lat;                /* SaveLatent (cascade run) */
    char info[4 * GEN_PATH];        /* what was chosen, printed once the checks pass */
} state;

static void info_add(state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void info_add(state *s, const char *fmt, ...)
{
    size_t o = strlen(s->info);
    va_list ap;
    va_start(ap, fmt);
    if (o < sizeof s->info)
        vsnprintf(s->info + o, sizeof s->info - o, fmt, ap);
    va_end(ap);
}

static void warn_cb(void *ctx, const char *msg)
{
    state *s = ctx;
    if (s->o->json) {
        gen_json_emit(json_pack("{s:s, s:s}", "event", "warning", "message", msg));
        return;
    }
    if (s->o->quiet)
        return;
    gen_progress_break(&s->prog);
    fprintf(stderr, "%s: note: %s\n", s->o->me, msg);
}

static int progress_cb(void *ctx, cascade_stage stage, int step, int steps, double elapsed)
{
    gen_progress_cb(&((state *)ctx)->prog, stage, step, steps, elapsed);
    return 0;
}

static int preview_cb(void *ctx, int step, int steps, const unsigned char *rgb, int n, int w, int h)
{
    state *s = ctx;
    int total = n * s->o->count;
    for (int i = 0; i < n; i++) {
        char path[GEN_PATH];
        int k = s->run * n + i;
        gen_output_file_name(&s->prev, k, total, path, sizeof path);
        /* a new file is ours until the run is done: on the cleanup list before the write
         * renames it into place, so a second signal in between leaves nothing */
        int fresh = !s->prev_existed[k] && !s->prev_created[k];
        if (fresh)
            s->prev_cleanup[k] = cli_cleanup_add(path, 0);
        /* planning refused existing files without --force, so replacing is ours to do */
        int rc = cascade_png_write(s->ctx, rgb + (size_t)i * w * h * 3, w, h, (size_t)w * 3, NULL, 0, path,
                                   CASCADE_PNG_FORCE, NULL, 0);
        if (rc)
            return cli_error(rc, "%s", cascade_errmsg(s->ctx));   /* why (a full disk, ulimit -f) */
        if (fresh)
            s->prev_created[k] = 1;
        if (s->o->json)
            gen_json_emit(json_pack("{s:s, s:s, s:i, s:i}", "event", "preview", "path", path, "step", step,
                                    "steps", steps));
        else if (!s->o->quiet && step == steps) {
            gen_progress_break(&s->prog);
            fprintf(stderr, "preview: %s\n", path);
        }
    }
    return 0;
}

static int latent_cb(void *ctx, int which, const float *x, int n, int c, int h, int w)
{
    state *s = ctx;
    return gen_latents_keep(&s->lat, s->o, which, x, n, c, h, w);
}

/* ---- settings into the context ---- */

static int set_i(cascade_ctx *ctx, cascade_param k, long long v, int rc) { return rc ? rc : cascade_set_int(ctx, k, v); }
static int set_f(cascade_ctx *ctx, cascade_param k, double v, int rc) { return rc ? rc : cascade_set_float(ctx, k, v); }
static int set_s(cascade_ctx *ctx, cascade_param k, const char *v, int rc) { return rc ? rc : cascade_set_string(ctx, k, v); }

/* everything of o but the models and the seed of each run */
static int settings(state *s)
{
    const opts *o = s->o;
    const gen_settings *g = &o->g;
    cascade_ctx *ctx = s->ctx;
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        cascade_set_model(ctx, (cascade_part)p, NULL);
    cascade_clear_loras(ctx);
    cascade_clear_images(ctx);
    int ks = g->c.ksampler != NULL, rc = 0;
    rc = set_i(ctx, CASCADE_P_WIDTH, g->width, rc);
    rc = set_i(ctx, CASCADE_P_HEIGHT, g->height, rc);
    rc = set_i(ctx, CASCADE_P_SEED, (long long)g->seed, rc);
    rc = set_i(ctx, CASCADE_P_BATCH, g->batch, rc);
    rc = set_i(ctx, CASCADE_P_STEPS_C, g->c.steps, rc);
    rc = set_i(ctx, CASCADE_P_STEPS_B, g->b.steps, rc);
    rc = set_f(ctx, CASCADE_P_CFG_C, g->c.cfg, rc);
    rc = set_f(ctx, CASCADE_P_CFG_B, g->b.cfg, rc);
    rc = set_f(ctx, CASCADE_P_CFG_RHO, g->c.cfg_rho, rc);
    rc = set_f(ctx, CASCADE_P_CFG_RHO_B, g->b.cfg_rho, rc);
    rc = set_f(ctx, CASCADE_P_SHIFT_C, g->c.shift, rc);
    rc = set_f(ctx, CASCADE_P_SHIFT_B, g->b.shift, rc);
    rc = set_i(ctx, CASCADE_P_SAMPLER, g->c.sampler, rc);
    rc = set_i(ctx, CASCADE_P_SAMPLER_B, g->b.sampler, rc);
    rc = set_f(ctx, CASCADE_P_ETA, g->c.eta, rc);
    rc = set_f(ctx, CASCADE_P_ETA_B, g->b.eta, rc);
    rc = set_i(ctx, CASCADE_P_ROUND, g->round, rc);
    rc = set_i(ctx, CASCADE_P_PROMPT_STYLE, g->prompt_style, rc);
    rc = set_s(ctx, CASCADE_P_EMBEDDINGS, g->embeddings, rc);
    rc = set_i(ctx, CASCADE_P_PREVIEW_EVERY, g->preview_every, rc);
    rc = set_i(ctx, CASCADE_P_KEEP_LOADED, o->keep, rc);
    rc = set_s(ctx, CASCADE_P_MODELS_DIR, o->models_dir, rc);
    rc = set_s(ctx, CASCADE_P_VARIANT_C, o->var_c, rc);
    rc = set_s(ctx, CASCADE_P_VARIANT_B, o->var_b, rc);
    rc = set_s(ctx, CASCADE_P_KSAMPLER_C, ks ? g->c.ksampler : NULL, rc);
    rc = set_s(ctx, CASCADE_P_KSAMPLER_B, ks ? g->b.ksampler : NULL, rc);
    rc = set_s(ctx, CASCADE_P_SCHEDULER_C, ks ? g->c.scheduler : NULL, rc);
    rc = set_s(ctx, CASCADE_P_SCHEDULER_B, ks ? g->b.scheduler : NULL, rc);
    rc = set_f(ctx, CASCADE_P_DENOISE_C, ks ? g->c.denoise : 1.0, rc);
    rc = set_f(ctx, CASCADE_P_DENOISE_B, ks ? g->b.denoise : 1.0, rc);
    rc = set_i(ctx, CASCADE_P_SEED_B, ks && g->seed_b_set ? (long long)g->seed_b : -1, rc);
    rc = set_i(ctx, CASCADE_P_ZERO_NEGATIVE_B, ks && g->b_uncond_zero, rc);
    rc = set_f(ctx, CASCADE_P_STRENGTH, o->init_image && o->strength < 1 ? o->strength : 1.0, rc);
    rc = set_i(ctx, CASCADE_P_INIT_RESIZE, o->init_comfy ? CASCADE_RESIZE_COMFYUI : CASCADE_RESIZE_COVER, rc);
    rc = set_i(ctx, CASCADE_P_LORA_LENIENT, o->lora_lenient, rc);
    static const cascade_part lpart[3] = {CASCADE_PART_STAGE_C, CASCADE_PART_STAGE_B, CASCADE_PART_TEXT_ENCODER};
    for (int p = 0; p < 3; p++)
        for (int i = 0; !rc && i < o->n_lora[p]; i++)
            rc = cascade_add_lora(ctx, lpart[p], o->lora[p][i].path, o->lora[p][i].strength);
    cascade_set_progress(ctx, progress_cb, s);
    cascade_set_preview(ctx, o->preview ? preview_cb : NULL, s);
    cascade_set_log(ctx, warn_cb, s);
    cascade_set_latent(ctx, o->n_save_latent ? latent_cb : NULL, s);
    return rc;
}

/* ---- models ---- */

static uint64_t random_seed(void)
{
    uint32_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint32_t)(ts.tv_nsec ^ ts.tv_sec ^ ((uint32_t)getpid() << 16));
    }
    if (fd >= 0)
        close(fd);
    return v;   /* torch seeds use the low 32 bits; keep it printable as such */
}

static void meta_add(state *s, const char *role, const char *path, const char *variant)
{
    gen_model_meta *m = &s->models[s->n_models++];
    memset(m, 0, sizeof *m);
    m->role = role;
    snprintf(m->path, sizeof m->path, "%s", path);
    snprintf(m->variant, sizeof m->variant, "%s", variant);
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* tokenizer folder: --tokenizer, $CASCADE_TOKENIZER, then what the scan found */
static const char *tokenizer_dir(const opts *o, const cascade_models *m)
{
    if (o->tokenizer)
        return o->tokenizer;
    const char *e = getenv("CASCADE_TOKENIZER");
    if (e && *e)
        return e;
    return m ? cascade_models_tokenizer(m) : NULL;
}

static int resolve_demo(state *s)
{
    opts *o = s->o;
    cascade_ctx *ctx = s->ctx;
    /* a vocabulary if there is one; the scan is only for its tokenizer */
    cascade_models *m = NULL;
    const char *tok = o->tokenizer ? o->tokenizer : getenv("CASCADE_TOKENIZER");
    if ((!tok || !*tok) && cascade_models_scan(ctx, &m) == 0)
        tok = cascade_models_tokenizer(m);
    if (tok && *tok) {
        snprintf(s->tok_desc, sizeof s->tok_desc, "%s", tok);
    } else {
        tok = NULL;
        snprintf(s->tok_desc, sizeof s->tok_desc, "byte-level fallback (no vocab.json/merges.txt found)");
    }
    int rc = cascade_set_string(ctx, CASCADE_P_TOKENIZER, tok);
    cascade_models_free(m);
    if (rc || (rc = cascade_use_demo(ctx)) != 0)
        return rc;
    /* the demo sets its own size: a size given stays */
    long long w, h;
    if (o->size_given)
        rc = set_i(ctx, CASCADE_P_WIDTH, o->g.width, set_i(ctx, CASCADE_P_HEIGHT, o->g.height, 0));
    else if ((rc = cascade_get_int(ctx, CASCADE_P_WIDTH, &w)) == 0 && (rc = cascade_get_int(ctx, CASCADE_P_HEIGHT, &h)) == 0)
        o->g.width = (int)w, o->g.height = (int)h;
    if (rc)
        return rc;
    info_add(s, "%s: DEMO: tiny networks with random weights; the image is noise, not a picture\n"
                "%s: tokenizer: %s\n", o->me, o->me, s->tok_desc);
    return 0;
}

/* the demo's files for the metadata, once cascade_check wrote the extras the inputs need */
static void demo_meta(state *s)
{
    static const cascade_part parts[] = {CASCADE_PART_TEXT_ENCODER, CASCADE_PART_STAGE_C, CASCADE_PART_STAGE_B,
                                         CASCADE_PART_STAGE_A};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        meta_add(s, cascade_part_name(parts[i]), cascade_get_model(s->ctx, parts[i]), "demo");
    if (s->o->n_images)
        meta_add(s, "clip_vision", cascade_get_model(s->ctx, CASCADE_PART_CLIP_VISION), "demo");
    if (s->init_used)
        meta_add(s, "effnet", cascade_get_model(s->ctx, CASCADE_PART_EFFNET), "demo");
}

static const char *const part_opt[CASCADE_PART_COUNT] = {"--stage-c", "--stage-b", "--stage-a", "--text-encoder",
                                                         "--effnet", "--previewer", "--clip-vision"};

/* the scan, the files of --stage-c etc. forced into it; a file that cannot
 * be forced is named by its option (the parts are forced in order: the
 * first that fails alone is the one) */
static int scan(state *s, cascade_models **m)
{
    cascade_ctx *ctx = s->ctx;
    const opts *o = s->o;
    int forced = 0, rc;
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        if (o->file[p] && (rc = cascade_set_model(ctx, (cascade_part)p, o->file[p])) != 0)
            return rc;
        else
            forced |= o->file[p] != NULL;
    if ((rc = cascade_models_scan(ctx, m)) == 0 || !forced)
        return rc;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", cascade_errmsg(ctx));
    int bad = rc;
    for (int p = 0; p < CASCADE_PART_COUNT; p++)
        cascade_set_model(ctx, (cascade_part)p, NULL);
    for (int p = -1; p < CASCADE_PART_COUNT; p++) {
        if (p >= 0 && !o->file[p])
            continue;
        if (p >= 0)
            cascade_set_model(ctx, (cascade_part)p, o->file[p]);
        cascade_models *t = NULL;
        rc = cascade_models_scan(ctx, &t);
        cascade_models_free(t);
        if (rc) {
            snprintf(msg, sizeof msg, "%s", cascade_errmsg(ctx));
            return p < 0 ? cli_error(rc, "%s", msg) : cli_error(rc, "%s: %s", part_opt[p], msg);
        }
    }
    return cli_error(bad, "%s", msg);
}

static int resolve_models(state *s, cascade_models **mp, cascade_choice **cp)
{
    opts *o = s->o;
    cascade_ctx *ctx = s->ctx;
    int rc = scan(s, mp);
    if (rc)
        return rc;
    cascade_models *m = *mp;
    if ((rc = cascade_models_choose(ctx, m, o->g.width, o->g.height, o->g.batch, cp)) != 0) {
        /* "no Stage C found (looked in: ...)": add the file names that would do */
        static const struct { cascade_part p; const char *files; } hint[] = {
            {CASCADE_PART_STAGE_C, "stage_c.safetensors, stage_c_bf16, stage_c_lite or stage_c_lite_bf16"},
            {CASCADE_PART_STAGE_B, "stage_b.safetensors, stage_b_bf16, stage_b_lite or stage_b_lite_bf16"},
            {CASCADE_PART_STAGE_A, "stage_a.safetensors"},
            {CASCADE_PART_TEXT_ENCODER, "text_encoder/model.safetensors"},
        };
        char msg[2048], want[96];
        snprintf(msg, sizeof msg, "%s", cascade_errmsg(ctx));
        for (size_t i = 0; i < sizeof hint / sizeof *hint; i++) {
            snprintf(want, sizeof want, "no %s found", cascade_part_title(hint[i].p));
            if (strncmp(msg, want, strlen(want)))
                continue;
            /* a file named like the part that could not be used says why */
            const char *stem = cascade_part_name(hint[i].p);
            for (int k = 0; k < cascade_models_count(m); k++) {
                const char *problem = cascade_models_problem(m, k);
                if (problem && strstr(cascade_models_path(m, k), stem))
                    return cli_error(rc, "%s; %s was skipped: %s", msg, cascade_models_path(m, k), problem);
            }
            return cli_error(rc, "%s; wanted a file such as %s", msg, hint[i].files);
        }
        return cli_error(rc, "%s", msg);
    }
    const cascade_choice *c = *cp;
    if (!cascade_choice_int(c, 0, CASCADE_CH_FITS)) {
        int part = (int)cascade_choice_int(c, 0, CASCADE_CH_NEED_PART);
        const char *path = cascade_models_path(m, (int)cascade_choice_int(c, part, CASCADE_CH_FILE));
        return cli_error(CASCADE_E_NOMEM,
                         "not enough memory for any variant: %s (%s) needs %.1f GiB at %dx%d batch %d, "
                         "have %.1f GiB (%s) minus %.1f GiB kept free",
                         cascade_part_title((cascade_part)part), base_name(path),
                         (double)cascade_choice_int(c, 0, CASCADE_CH_NEED_MAX) / 1073741824.0, o->g.width,
                         o->g.height, o->g.batch, (double)cascade_choice_int(c, 0, CASCADE_CH_HAVE) / 1073741824.0,
                         cascade_choice_string(c, 0, CASCADE_CH_HAVE_SOURCE),
                         (double)cascade_choice_int(c, 0, CASCADE_CH_MARGIN) / 1073741824.0);
    }
    const char *tok = tokenizer_dir(o, m);
    if (!tok)
        return cli_error(CASCADE_E_MODEL, "no tokenizer found (vocab.json + merges.txt; use --tokenizer DIR) (%s)",
                         cascade_models_looked(m, -1));
    snprintf(s->tok_desc, sizeof s->tok_desc, "%s", tok);
    if ((rc = cascade_models_use(ctx, m, c)) != 0 || (rc = cascade_set_string(ctx, CASCADE_P_TOKENIZER, tok)) != 0)
        return rc;
    static const cascade_part parts[] = {CASCADE_PART_TEXT_ENCODER, CASCADE_PART_STAGE_C, CASCADE_PART_STAGE_B,
                                         CASCADE_PART_STAGE_A, CASCADE_PART_PREVIEWER};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        cascade_part p = parts[i];
        int k = (int)cascade_choice_int(c, p, CASCADE_CH_FILE);
        if (k < 0)
            continue;
        const char *path = cascade_models_path(m, k);
        char var[48];
        snprintf(var, sizeof var, "%s %s", cascade_models_network(m, k), cascade_models_dtype(m, k));
        if (p != CASCADE_PART_PREVIEWER)
            meta_add(s, cascade_part_name(p), path, var);
        info_add(s, "%s: %-12s %s (%s)\n", o->me, cascade_part_title(p), path,
                 cascade_choice_string(c, p, CASCADE_CH_WHY));
    }
    if (o->preview && cascade_choice_int(c, CASCADE_PART_PREVIEWER, CASCADE_CH_FILE) < 0)
        warn_cb(s, "no previewer.safetensors found: --preview is ignored");
    if (o->n_images) {
        /* the forced file, else the first found (cascade_models_use) */
        const char *cv = cascade_get_model(ctx, CASCADE_PART_CLIP_VISION);
        int k = -1;
        for (int i = 0; cv && k < 0 && i < cascade_models_count(m); i++)
            if (cascade_models_part(m, i) == CASCADE_PART_CLIP_VISION && !strcmp(cascade_models_path(m, i), cv))
                k = i;
        if (k < 0)
            return cli_error(CASCADE_E_MODEL, "--image needs a CLIP vision model (ViT-L/14, e.g. ComfyUI's "
                             "models/clip_vision/ or openai/clip-vit-large-patch14; or --clip-vision FILE) and none "
                             "was found (%s)", cascade_models_looked(m, -1));
        meta_add(s, "clip_vision", cv, cascade_models_dtype(m, k));
        info_add(s, "%s: %-12s %s\n", o->me, "CLIP vision", cv);
    }
    if (s->init_used) {
        int k = (int)cascade_choice_int(c, CASCADE_PART_EFFNET, CASCADE_CH_FILE);
        if (k < 0)
            return cli_error(CASCADE_E_MODEL, "--init-image needs the EfficientNet encoder (effnet_encoder.safetensors, "
                             "or --effnet FILE) and none was found (%s)", cascade_models_looked(m, -1));
        meta_add(s, "effnet", cascade_models_path(m, k), cascade_models_dtype(m, k));
        info_add(s, "%s: %-12s %s (%s)\n", o->me, cascade_part_title(CASCADE_PART_EFFNET), cascade_models_path(m, k),
                 cascade_choice_string(c, CASCADE_PART_EFFNET, CASCADE_CH_WHY));
    }
    return 0;
}

/* ---- the model files' hashes (the first image's metadata) ----
 * Only the first write needs them: the files the cache does not know are
 * hashed on threads of their own (one XXH64 stream runs ~4-5 GB/s, and a
 * full set is 10 GB) while the pipeline runs, joined before that write.
 * Demo files are temporary and never cached. */
#define HASH_MAX (CASCADE_PART_COUNT + 3 * GEN_MAX_LORA)

typedef struct {
    const char *path;
    uint64_t *out;
    int *have;          /* set to 1 once *out holds the hash, or NULL */
    int flags;          /* cascade_file_hash's */
    pthread_t th;
    int started, rc;
    char err[512];
} hash_one;

typedef struct {
    hash_one f[HASH_MAX];
    int n, active;
} hash_job;

static void *hash_main(void *arg)
{
    hash_one *h = arg;
    unsigned long long v = 0;
    h->rc = cascade_file_hash(NULL, h->path, h->flags, &v);
    if (h->rc < 0)
        snprintf(h->err, sizeof h->err, "%s", cascade_last_error());
    else
        *h->out = v;
    return NULL;
}

static void hash_add(hash_job *j, const char *path, uint64_t *out, int *have, int demo)
{
    unsigned long long v;
    if (!demo && cascade_file_hash(NULL, path, CASCADE_HASH_CACHED_ONLY, &v) == 1) {
        *out = v;
        if (have)
            *have = 1;
        return;
    }
    j->f[j->n++] = (hash_one){.path = path, .out = out, .have = have, .flags = demo ? CASCADE_HASH_NO_CACHE : 0};
}

static void hash_start(hash_job *j, state *s)
{
    static const char *const part[3] = {"stage_c", "stage_b", "text_encoder"};
    memset(j, 0, sizeof *j);
    j->active = 1;
    for (int i = 0; i < s->n_models; i++)
        hash_add(j, s->models[i].path, &s->models[i].xxh64, &s->models[i].have_hash, s->o->demo);
    s->n_loras = 0;
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < s->o->n_lora[p]; i++) {
            gen_lora_meta *l = &s->loras[s->n_loras++];
            l->part = part[p];
            l->path = s->o->lora[p][i].path;
            l->strength = s->o->lora[p][i].strength;
            hash_add(j, l->path, &l->xxh64, NULL, 0);
        }
    sigset_t all, old;
    sigfillset(&all);   /* signals stay with the main thread */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < j->n; i++)
        j->f[i].started = pthread_create(&j->f[i].th, NULL, hash_main, &j->f[i]) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* waits for the hashes (computing here any a thread could not take); want
 * = 0 on the way out: wait, drop the results */
static int hash_join(hash_job *j, int want)
{
    if (!j->active)
        return 0;
    j->active = 0;
    int rc = 0;
    for (int i = 0; i < j->n; i++) {
        hash_one *h = &j->f[i];
        if (h->started)
            pthread_join(h->th, NULL);
        else if (want && !rc)
            hash_main(h);
        if (!want || rc)
            continue;
        if (h->rc < 0) {
            rc = cli_error(h->rc, "%s", h->err);
            continue;
        }
        if (h->have)
            *h->have = 1;
    }
    return rc;
}

/* ---- one run ---- */

static int stop_check(void) { return cli_stop_pending() ? CASCADE_E_INTR : 0; }

/* writes the batch of one run; on failure or a stop request removes what it
 * wrote. The paths are printed once the whole batch is in place: a stop
 * that comes later (a closed stdout while printing) keeps the finished run. */
static int write_images(state *s, const cascade_images *im)
{
    opts *o = s->o;
    int n = o->g.batch, total = n * o->count, rc = 0, start = s->out.n_written;
    int *hnd = calloc((size_t)n, sizeof *hnd);
    if (!hnd)
        return cli_error(CASCADE_E_NOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        gen_meta m = {&o->g, gen_sampler_name(&o->g.c), o->demo, i, s->models, s->n_models, s->tok_desc,
                      s->loras, s->n_loras, s->images_json, s->init_json, o->out_prefix};
        char **t;
        int nt;
        char path[GEN_PATH];
        if ((rc = stop_check()) != 0 || (rc = gen_meta_build(&m, &t, &nt)) != 0)
            break;
        rc = gen_output_write(&s->out, s->run * n + i, total, cascade_image_data(cascade_images_get(im, i)),
                              o->g.width, o->g.height, (const char *const *)t, nt, path, sizeof path);
        gen_meta_free(t, nt);
        if (!rc)
            hnd[i] = cli_cleanup_add(path, 0);   /* not final until the whole batch is */
    }
    int lhnd[GEN_MAX_SAVE_LATENT] = {0};
    if (!rc)
        rc = gen_latents_write(&s->lat, o, &s->out, lhnd);
    if (!rc)
        rc = stop_check();
    if (rc)
        gen_output_unwind_from(&s->out, start);
    gen_latents_done(&s->lat, rc != 0);
    for (int i = 0; i < n; i++)
        cli_cleanup_del(hnd[i]);
    free(hnd);
    for (int k = 0; k < GEN_MAX_SAVE_LATENT; k++)
        cli_cleanup_del(lhnd[k]);
    for (int i = start; !rc && i < s->out.n_written; i++) {
        if (o->json && i - start >= n)   /* after the images: SaveLatent's files */
            gen_json_emit(json_pack("{s:s, s:s, s:I}", "event", "latent", "path", s->out.written[i], "seed",
                                    (json_int_t)o->g.seed));
        else if (o->json)
            gen_json_emit(json_pack("{s:s, s:s, s:I, s:i}", "event", "image", "path", s->out.written[i], "seed",
                                    (json_int_t)o->g.seed, "batch_index", i - start));
        else
            printf("%s\n", s->out.written[i]);
    }
    fflush(stdout);
    return rc;
}

static void fail(const opts *o, gen_progress *p, const char *msg)
{
    gen_progress_break(p);
    fprintf(stderr, "%s: %s\n", o->me, msg);
    if (o->json)
        gen_json_emit(json_pack("{s:s, s:s}", "event", "error", "message", msg));
}

int cmd_generate(int argc, char **argv)
{
    opts *o = calloc(1, sizeof *o);
    if (!o) {
        fprintf(stderr, ME ": out of memory\n");
        return 1;
    }
    int rc = gen_parse(argc, argv, o);
    if (rc) {
        gen_opts_free_loras(o);
        free(o);
        return rc == 1 ? 0 : 2;
    }
    o->me = ME;
    rc = gen_execute(o);
    free(o);
    return rc;
}

static char *dup_or_null(const char *v) { return v ? strdup(v) : NULL; }

int gen_execute(opts *o)
{
    int rc;
    /* from here on every stop request (INT, TERM, HUP, a closed stdout) ends
     * through the error path below, which removes what the run made */
    cli_signals_install();
    cli_message_clear();
    state s;
    memset(&s, 0, sizeof s);
    hash_job hj;
    memset(&hj, 0, sizeof hj);
    s.o = o;
    gen_progress_init(&s.prog, o->json, o->quiet);
    s.prog.runs = o->count;
    cascade_models *models = NULL;
    cascade_choice *choice = NULL;
    cascade_images *im = NULL;
    int status = 1, total = o->g.batch * o->count;
    cascade_ctx *ctx = s.ctx = cli_ctx();
    if (!ctx) {
        rc = cli_error(CASCADE_E_NOMEM, "out of memory");
        goto error;
    }

    if (!o->seed_given)
        o->g.seed = random_seed();
    s.init_used = o->init_image && o->strength < 1;
    /* fail fast: settings, output paths, then models and memory */
    if ((rc = settings(&s)) != 0)
        goto error;
    if ((rc = gen_output_plan(&s.out, o->out, o->g.batch, o->count, o->force)) != 0)
        goto error;
    if (o->out_prefix) {   /* SaveImage: ComfyUI's PREFIX_NNNNN_.png in a folder */
        char name[GEN_PATH + 64];
        if (!s.out.to_dir) {
            rc = cli_error(CASCADE_E_ARG, "-o %s: a workflow writes numbered files (%s_00001_.png): give a folder",
                           o->out, o->out_prefix);
            goto error;
        }
        snprintf(name, sizeof name, "%s/%s_000000001_.png", s.out.dir, o->out_prefix);
        if ((rc = cascade_check_output_name(ctx, name)) != 0)
            goto error;
        s.out.prefix = o->out_prefix;
    }
    if ((rc = gen_latents_plan(o, &s.out)) != 0)
        goto error;
    if (o->preview) {
        if ((rc = gen_output_plan(&s.prev, o->preview, o->g.batch, o->count, o->force)) != 0)
            goto error;
        if (s.prev.to_dir) {
            rc = cli_error(CASCADE_E_ARG, "--preview needs a file name, not a folder (%s)", o->preview);
            goto error;
        }
        if ((rc = gen_output_clash(&s.out, &s.prev, total, "--preview")) != 0)
            goto error;
        s.prev_existed = calloc((size_t)total, 1);
        s.prev_created = calloc((size_t)total, 1);
        s.prev_cleanup = calloc((size_t)total, sizeof *s.prev_cleanup);
        if (!s.prev_existed || !s.prev_created || !s.prev_cleanup) {
            rc = cli_error(CASCADE_E_NOMEM, "out of memory: the preview bookkeeping (%zu bytes)", 3 * (size_t)total);
            goto error;
        }
        for (int k = 0; k < total; k++) {
            char path[GEN_PATH];
            struct stat st;
            gen_output_file_name(&s.prev, k, total, path, sizeof path);
            s.prev_existed[k] = stat(path, &st) == 0;
        }
    }
    /* a bad image fails before any model is touched */
    for (int i = 0; i < o->n_images; i++)
        if ((rc = cascade_add_image(ctx, o->image_path[i], o->image_strength[i])) != 0)
            goto error;
    if (o->init_image && (rc = cascade_set_init_image(ctx, o->init_image)) != 0)
        goto error;   /* read now; used only where strength < 1 */
    /* the demo networks are too small to gain from threads, and on a busy
     * machine thread barriers cost far more than the work */
    if (!o->threads && cli_env_threads(o->me, &o->threads)) {
        status = 2;
        goto done;
    }
    if (o->demo && !o->threads)
        o->threads = 1;
    if ((status = cli_init(o->threads)) != 0)
        goto done;   /* it printed why */
    char dev_said[700];
    int prec;
    if ((status = cli_device(o->me, o->device, o->precision, 0, dev_said, sizeof dev_said, &prec)) != 0)
        goto done;
    if (!o->quiet && !o->json) fprintf(stderr, "%s: device: %s\n", o->me, dev_said);
    status = 1;
    rc = o->demo ? resolve_demo(&s) : resolve_models(&s, &models, &choice);
    if (rc || (rc = cascade_check(ctx)) != 0 || (rc = stop_check()) != 0)
        goto error;
    if (o->demo)
        demo_meta(&s);
    s.images_json = dup_or_null(cascade_input_json(ctx, CASCADE_INPUT_IMAGES));
    s.init_json = dup_or_null(cascade_input_json(ctx, CASCADE_INPUT_INIT));
    if (o->dry_run) {   /* everything is resolved and checked: say what would run */
        if (o->plan_print)
            o->plan_print(o->plan_ctx, o, ctx);
        status = 0;
        goto done;
    }

    if (o->json)
        gen_json_emit(json_pack("{s:s, s:I, s:i, s:i, s:i, s:i, s:b, s:s}", "event", "start", "seed",
                                (json_int_t)o->g.seed, "width", o->g.width, "height", o->g.height, "batch",
                                o->g.batch, "count", o->count, "demo", o->demo, "prompt_style",
                                o->g.prompt_style == CASCADE_PROMPT_OFFICIAL ? "official" : "comfyui"));
    else if (!o->quiet)
        fprintf(stderr, "%s%s: %dx%d, seed %llu, batch %d%s, Stage C %d steps cfg %g, Stage B %d steps cfg %g, %s\n",
                s.info, o->me, o->g.width, o->g.height, (unsigned long long)o->g.seed, o->g.batch, o->count > 1 ? " per run" : "",
                o->g.c.steps, (double)o->g.c.cfg, o->g.b.steps, (double)o->g.b.cfg, gen_sampler_name(&o->g.c));

    uint64_t seed0 = o->g.seed;
    hash_start(&hj, &s);
    for (s.run = 0; s.run < o->count; s.run++) {
        o->g.seed = seed0 + (uint64_t)s.run;
        s.prog.run = s.run;
        if ((rc = cascade_set_int(ctx, CASCADE_P_SEED, (long long)o->g.seed)) != 0 ||
            (rc = cascade_generate(ctx, o->g.prompt, o->g.negative, &im)) != 0)
            goto error;
        if ((rc = hash_join(&hj, 1)) != 0)
            goto error;
        if ((rc = write_images(&s, im)) != 0)
            goto error;
        cascade_images_free(im);
        im = NULL;
    }
    cli_device_report(o->me, o->quiet || o->json);
    if (o->json) {
        json_t *files = json_array();
        for (int i = 0; i < s.out.n_written; i++)
            json_array_append_new(files, json_string(s.out.written[i]));
        gen_json_emit(json_pack("{s:s, s:o, s:I}", "event", "done", "files", files, "seed", (json_int_t)seed0));
    }
    status = 0;
    goto done;

error:
    hash_join(&hj, 0);   /* the threads read files we may be about to remove */
    if (rc == CASCADE_E_INTR || cli_stop_pending()) {
        int why = cli_stop_pending();
        gen_progress_break(&s.prog);
        if (s.out.n_written)
            fprintf(stderr, "%s: %s; run %d not written (the %d images of finished runs are kept)\n", o->me,
                    cli_stop_text(why), s.run + 1, s.out.n_written);
        else
            fprintf(stderr, "%s: %s; nothing written\n", o->me, cli_stop_text(why));
        if (o->json)
            gen_json_emit(json_pack("{s:s}", "event", "interrupted"));
        status = cli_stop_status(why);
    } else {
        char why[64];
        const char *msg = cli_message(rc);   /* a CLI file's own failure, else the library's */
        if (!msg)
            msg = cascade_last_error();
        snprintf(why, sizeof why, "failed (error %d, no message: please report)", rc);
        fail(o, &s.prog, msg[0] ? msg : why);
        status = 1;
    }
    for (int k = 0; s.prev_created && k < total; k++)
        if (s.prev_created[k]) {
            char path[GEN_PATH];
            gen_output_file_name(&s.prev, k, total, path, sizeof path);
            unlink(path);
        }
done:
    for (int k = 0; s.prev_cleanup && k < total; k++)
        cli_cleanup_del(s.prev_cleanup[k]);   /* kept on success, removed above otherwise */
    cascade_images_free(im);
    cascade_choice_free(choice);
    cascade_models_free(models);
    cli_ctx_free();   /* its callbacks point here; the demo's files go with it */
    gen_latents_free(&s.lat);
    free(s.images_json);
    free(s.init_json);
    gen_output_free(&s.out);
    gen_output_free(&s.prev);
    free(s.prev_existed);
    free(s.prev_created);
    free(s.prev_cleanup);
    gen_opts_free_loras(o);
    return status;
}
