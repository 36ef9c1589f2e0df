/* cascade generate: text to image. Options -> checks that can fail fast
 * (sizes, output path, models, memory) -> pipeline with progress and Ctrl-C
 * -> PNG files with metadata. Nothing is written unless the run completes. */
#include "cli.h"
#include "prompt.h"
#include "generate.h"

#include "backend.h"
#include "cancel.h"
#include "demo.h"
#include "demo_vision.h"
#include "device.h"
#include "error.h"
#include "infile.h"
#include "latent.h"
#include "ksampler.h"
#include "lora.h"
#include "models.h"
#include "weights.h"
#include "ops.h"

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
    gen_progress prog;
    gen_output out, prev;           /* images, previews */
    unsigned char *prev_existed;    /* per preview file: there before we started */
    unsigned char *prev_created;    /* per preview file: written by us (removed on failure) */
    int *prev_cleanup;              /* per preview file: its cs_cleanup_add handle while not final */
    char tok_desc[GEN_PATH + 64];
    gen_model_meta models[CS_PART_COUNT];
    int n_models;
    gen_lora_meta loras[3 * GEN_MAX_LORA];
    int n_loras;
    cs_demo_files demo;
    char demo_vision[GEN_PATH];     /* the demo's CLIP vision tower, written for --image */
    int demo_vision_cleanup;
    char demo_effnet[GEN_PATH];     /* the demo's EfficientNet encoder, written for --init-image */
    int demo_effnet_cleanup;
    gen_init init;                  /* --init-image */
    gen_images images;              /* --image inputs */
    int run;
    int prec;                       /* CS_PREC_* of the device (fp32 on the CPU) */
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

static void progress_cb(void *ctx, cs_stage_id stage, int step, int steps, double elapsed)
{
    gen_progress_cb(&((state *)ctx)->prog, stage, step, steps, elapsed);
}

static int preview_cb(void *ctx, int step, int steps, const uint8_t *rgb, int n, int w, int h)
{
    state *s = ctx;
    int total = n * s->o->count;
    for (int i = 0; i < n; i++) {
        char path[GEN_PATH];
        int k = s->run * n + i;
        gen_output_file_name(&s->prev, k, total, path, sizeof path);
        /* planning refused existing files without --force, so replacing is ours to do */
        int rc = cs_png_write_rgb8(path, rgb + (size_t)i * w * h * 3, w, h, (size_t)w * 3, NULL, 0, CS_PNG_FORCE);
        if (rc)
            return rc;   /* the message says why (a full disk, ulimit -f) */
        if (!s->prev_existed[k] && !s->prev_created[k]) {
            s->prev_created[k] = 1;
            s->prev_cleanup[k] = cs_cleanup_add(path, 0);   /* ours until the run is done */
        }
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

static int latent_cb(void *ctx, cs_latent_id which, const float *x, int n, int h, int w, int c)
{
    state *s = ctx;
    size_t total = (size_t)n * h * w * c;
    float *d = malloc(total * sizeof *d);
    if (!d)
        return cs_oom("a latent", total * sizeof *d);
    cs_latent_to_comfy(x, n, h, w, c, which == CS_LATENT_B, d);
    int rc = gen_latents_keep(&s->lat, s->o, (int)which, d, n, c, h, w);
    free(d);
    const char *m = rc ? cli_message(rc) : NULL;
    return m ? cs_error(rc, "%s", m) : rc;
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

/* tokenizer folder: --tokenizer, $CASCADE_TOKENIZER, then what the scan found */
static const char *tokenizer_dir(const opts *o, const cs_model_set *set)
{
    if (o->tokenizer)
        return o->tokenizer;
    const char *e = getenv("CASCADE_TOKENIZER");
    if (e && *e)
        return e;
    return set ? set->tokenizer : NULL;
}

static int resolve_demo(state *s, cs_model_paths *mp)
{
    opts *o = s->o;
    /* a vocabulary if there is one; the scan is only for its tokenizer */
    cs_model_set *set = NULL;
    const char *tok = o->tokenizer ? o->tokenizer : getenv("CASCADE_TOKENIZER");
    if ((!tok || !*tok) && cs_models_scan(o->models_dir, &set) == 0)
        tok = set->tokenizer;
    if (tok && *tok) {
        snprintf(s->tok_desc, sizeof s->tok_desc, "%s", tok);
    } else {
        tok = NULL;
        snprintf(s->tok_desc, sizeof s->tok_desc, "byte-level fallback (no vocab.json/merges.txt found)");
    }
    if (tok)
        mp->tokenizer_dir = strdup(tok);   /* outlives set; freed at exit */
    cs_models_free(set);
    int rc = cs_demo_create(&s->demo);
    if (rc)
        return rc;
    mp->text_encoder = s->demo.text_encoder;
    mp->stage_c = s->demo.stage_c;
    mp->stage_b = s->demo.stage_b;
    mp->stage_a = s->demo.stage_a;
    mp->previewer = s->demo.previewer;
    meta_add(s, "text_encoder", mp->text_encoder, "demo");
    meta_add(s, "stage_c", mp->stage_c, "demo");
    meta_add(s, "stage_b", mp->stage_b, "demo");
    meta_add(s, "stage_a", mp->stage_a, "demo");
    if (o->n_images) {   /* a tiny vision tower of its own, only when asked for */
        snprintf(s->demo_vision, sizeof s->demo_vision, "%s/clip_vision_demo.safetensors", s->demo.dir);
        s->demo_vision_cleanup = cs_cleanup_add(s->demo_vision, 0);
        if ((rc = cs_demo_clip_vision_write(s->demo_vision)) != 0)
            return rc;
        mp->clip_vision = s->demo_vision;
        meta_add(s, "clip_vision", mp->clip_vision, "demo");
    }
    if (s->init.rgb) {
        snprintf(s->demo_effnet, sizeof s->demo_effnet, "%s/effnet_demo.safetensors", s->demo.dir);
        s->demo_effnet_cleanup = cs_cleanup_add(s->demo_effnet, 0);
        if ((rc = cs_demo_effnet_write(s->demo_effnet)) != 0)
            return rc;
        mp->effnet = s->demo_effnet;
        meta_add(s, "effnet", mp->effnet, "demo");
    }
    info_add(s, "%s: DEMO: tiny networks with random weights; the image is noise, not a picture\n"
                "%s: tokenizer: %s\n", o->me, o->me, s->tok_desc);
    return 0;
}

/* The device chosen by cli_device, for choosing model variants by its free
 * memory in the precision it computes in (nothing changes on the CPU). */
static void device_req(cs_choice_req *req, int prec)
{
    const cs_backend *b = cs_backend_active();
    size_t fr = 0, tot = 0;
    if (!b || !b->ops || !b->ops->mem_info) return;
    if (b->ops->mem_info(&fr, &tot, req->dev_name, sizeof req->dev_name)) return;
    req->dev_prec = prec;
    req->dev_have = fr;
}

static int resolve_models(state *s, cs_model_paths *mp, cs_model_set **setp)
{
    opts *o = s->o;
    cs_model_set *set = NULL;
    int rc = cs_models_scan(o->models_dir, &set);
    if (rc)
        return rc;
    *setp = set;
    static const char *opt[CS_PART_COUNT] = {"--stage-c", "--stage-b", "--stage-a", "--text-encoder", "--effnet",
                                             "--previewer", "--clip-vision"};
    for (int p = 0; p < CS_PART_COUNT; p++)
        if (o->file[p] && (rc = cs_models_force(set, (cs_part)p, o->file[p])) != 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", cs_last_error());
            return cs_error(rc, "%s: %s", opt[p], msg);
        }
    cs_choice_req req;
    cs_choice_req_init(&req);
    req.width = o->g.width;
    req.height = o->g.height;
    req.batch = o->g.batch;
    req.variant[CS_PART_STAGE_C] = o->var_c;
    req.variant[CS_PART_STAGE_B] = o->var_b;
    device_req(&req, s->prec);
    /* merged LoRAs keep float32 copies of the weights they touch */
    static const cs_part lpart[3] = {CS_PART_STAGE_C, CS_PART_STAGE_B, CS_PART_TEXT};
    for (int k = 0; k < 3; k++)
        if ((rc = cs_lora_extra_bytes(&o->lora_list[k], &req.extra[lpart[k]])) != 0)
            return rc;
    cs_choice ch;
    if ((rc = cs_models_choose(set, &req, &ch)) != 0) {
        /* "no Stage C found (looked in: ...)": add the file names that would do */
        static const struct { cs_part p; const char *files; } hint[] = {
            {CS_PART_STAGE_C, "stage_c.safetensors, stage_c_bf16, stage_c_lite or stage_c_lite_bf16"},
            {CS_PART_STAGE_B, "stage_b.safetensors, stage_b_bf16, stage_b_lite or stage_b_lite_bf16"},
            {CS_PART_STAGE_A, "stage_a.safetensors"},
            {CS_PART_TEXT, "text_encoder/model.safetensors"},
        };
        char msg[2048], want[96];
        snprintf(msg, sizeof msg, "%s", cs_last_error());
        for (size_t i = 0; i < sizeof hint / sizeof *hint; i++) {
            snprintf(want, sizeof want, "no %s found", cs_part_title(hint[i].p));
            if (strncmp(msg, want, strlen(want)))
                continue;
            /* a file named like the part that could not be used says why */
            const char *stem = cs_part_name(hint[i].p);
            for (int k = 0; k < set->n; k++) {
                const cs_model_file *f = &set->files[k];
                if (f->problem && strstr(f->path, stem))
                    return cs_error(rc, "%s; %s was skipped: %s", msg, f->path, f->problem);
            }
            return cs_error(rc, "%s; wanted a file such as %s", msg, hint[i].files);
        }
        return rc;
    }
    if (!ch.fits) {
        const cs_model_file *f = &set->files[ch.file[ch.need_part]];
        return cs_error(CS_ENOMEM,
                        "not enough memory for any variant: %s (%s) needs %.1f GiB at %dx%d batch %d, "
                        "have %.1f GiB (%s) minus %.1f GiB kept free",
                        cs_part_title((cs_part)ch.need_part), cs_basename(f->path), ch.need_max / 1073741824.0,
                        o->g.width, o->g.height, o->g.batch, ch.have / 1073741824.0, ch.have_src,
                        ch.margin / 1073741824.0);
    }
    const char *tok = tokenizer_dir(o, set);
    if (!tok)
        return cs_error(CS_EMODEL, "no tokenizer found (vocab.json + merges.txt; use --tokenizer DIR) (%s)",
                        cs_models_looked(set));
    snprintf(s->tok_desc, sizeof s->tok_desc, "%s", tok);
    mp->tokenizer_dir = tok;
    static const cs_part parts[] = {CS_PART_TEXT, CS_PART_STAGE_C, CS_PART_STAGE_B, CS_PART_STAGE_A,
                                    CS_PART_PREVIEWER};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        cs_part p = parts[i];
        if (ch.file[p] < 0)
            continue;
        const cs_model_file *f = &set->files[ch.file[p]];
        char var[48];
        snprintf(var, sizeof var, "%s %s", cs_net_name(f->info.net),
                 f->info.mixed ? "mixed" : cs_dtype_name(f->info.dtype));
        switch (p) {
        case CS_PART_TEXT:
            mp->text_encoder = f->path;
            mp->text_config = f->config;
            mp->text_prefix = f->info.prefix;
            break;
        case CS_PART_STAGE_C: mp->stage_c = f->path; break;
        case CS_PART_STAGE_B: mp->stage_b = f->path; break;
        case CS_PART_STAGE_A: mp->stage_a = f->path; break;
        case CS_PART_PREVIEWER: mp->previewer = f->path; break;
        default: break;
        }
        if (p != CS_PART_PREVIEWER)
            meta_add(s, cs_part_name(p), f->path, var);
        info_add(s, "%s: %-12s %s (%s)\n", o->me, cs_part_title(p), f->path, ch.why[p]);
    }
    if (o->preview && !mp->previewer)
        warn_cb(s, "no previewer.safetensors found: --preview is ignored");
    if (o->n_images) {
        /* the chooser leaves this part to us: the forced file, else the first found */
        int k = set->forced[CS_PART_CLIP_VISION];
        for (int i = 0; k < 0 && i < set->n; i++)
            if (set->files[i].info.net == CS_NET_CLIP_VISION && !set->files[i].problem)
                k = i;
        if (k < 0)
            return cs_error(CS_EMODEL, "--image needs a CLIP vision model (ViT-L/14, e.g. ComfyUI's "
                            "models/clip_vision/ or openai/clip-vit-large-patch14; or --clip-vision FILE) and none "
                            "was found (%s)", cs_models_looked(set));
        const cs_model_file *f = &set->files[k];
        mp->clip_vision = f->path;
        meta_add(s, "clip_vision", f->path, cs_dtype_name(f->info.dtype));
        info_add(s, "%s: %-12s %s\n", o->me, "CLIP vision", f->path);
    }
    if (s->init.rgb) {
        if (ch.file[CS_PART_EFFNET] < 0)
            return cs_error(CS_EMODEL, "--init-image needs the EfficientNet encoder (effnet_encoder.safetensors, or "
                            "--effnet FILE) and none was found (%s)", cs_models_looked(set));
        const cs_model_file *f = &set->files[ch.file[CS_PART_EFFNET]];
        mp->effnet = f->path;
        meta_add(s, "effnet", f->path, cs_dtype_name(f->info.dtype));
        info_add(s, "%s: %-12s %s (%s)\n", o->me, cs_part_title(CS_PART_EFFNET), f->path, ch.why[CS_PART_EFFNET]);
    }
    return 0;
}

/* ---- the model files' hashes (the first image's metadata) ----
 * Only the first write needs them: the files the cache does not know are
 * hashed on threads of their own (one XXH64 stream runs ~4-5 GB/s, and a
 * full set is 10 GB) while the pipeline runs, joined before that write.
 * The cache is read and written on the main thread only; demo files are
 * temporary and never cached. */
#define HASH_MAX (CS_PART_COUNT + 3 * GEN_MAX_LORA)

typedef struct {
    const char *path;
    uint64_t *out;
    int *have;          /* set to 1 once *out holds the hash, or NULL */
    int cache;          /* remember it in the cache once computed */
    cs_file_stamp stamp; /* the file as it was hashed */
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
    h->rc = cs_file_xxh64_compute(h->path, h->out, &h->stamp);
    if (h->rc)
        snprintf(h->err, sizeof h->err, "%s", cs_last_error());
    return NULL;
}

static void hash_add(hash_job *j, const char *path, uint64_t *out, int *have, int demo)
{
    if (!demo && cs_file_xxh64_cached(path, out)) {
        if (have)
            *have = 1;
        return;
    }
    j->f[j->n++] = (hash_one){.path = path, .out = out, .have = have, .cache = !demo};
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
        for (int i = 0; i < s->o->lora_list[p].n; i++) {
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

/* waits for the hashes (computing here any a thread could not take) and
 * caches them; want = 0 on the way out: wait, drop the results */
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
        if (h->rc) {
            rc = cs_error(h->rc, "%s", h->err);
            continue;
        }
        if (h->have)
            *h->have = 1;
        if (h->cache)
            cs_file_xxh64_remember(h->path, &h->stamp, *h->out);
    }
    return rc;
}

/* ---- one run ---- */

static const char *sampler_name(const cs_sample_params *p)
{
    if (p->ks_sampler)
        return cs_ks_sampler_name(p->ks_sampler);
    return p->sampler == CS_SAMPLER_DDIM ? "DDIM" : p->sampler == CS_SAMPLER_LCM ? "LCM" : "DDPM";
}

/* writes the batch of one run; on failure or a stop request removes what it
 * wrote. The paths are printed once the whole batch is in place: a stop
 * that comes later (a closed stdout while printing) keeps the finished run. */
static int write_images(state *s, const uint8_t *rgb)
{
    opts *o = s->o;
    int n = o->g.batch, total = n * o->count, rc = 0, start = s->out.n_written;
    int hnd[GEN_MAX_BATCH] = {0};
    size_t img = (size_t)o->g.width * o->g.height * 3;
    for (int i = 0; i < n && !rc; i++) {
        gen_meta m = {&o->g, sampler_name(&o->g.c), o->demo, i, s->models, s->n_models, s->tok_desc,
                      s->loras, s->n_loras, s->images.json, s->init.json, o->out_prefix};
        cs_png_text *t;
        int nt;
        char path[GEN_PATH];
        if ((rc = cs_cancel_check()) != 0 || (rc = gen_meta_build(&m, &t, &nt)) != 0)
            break;
        rc = gen_output_write(&s->out, s->run * n + i, total, rgb + i * img, o->g.width, o->g.height, t, nt, path,
                              sizeof path);
        gen_meta_free(t, nt);
        if (!rc)
            hnd[i] = cs_cleanup_add(path, 0);   /* not final until the whole batch is */
    }
    int lhnd[GEN_MAX_SAVE_LATENT] = {0};
    if (!rc)
        rc = gen_latents_write(&s->lat, o, &s->out, lhnd);
    if (!rc)
        rc = cs_cancel_check();
    if (rc)
        gen_output_unwind_from(&s->out, start);
    gen_latents_done(&s->lat, rc != 0);
    for (int i = 0; i < n; i++)
        cs_cleanup_del(hnd[i]);
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
        for (int p = 0; p < 3; p++)
            for (int i = 0; i < o->lora_list[p].n; i++)
                free((char *)o->lora[p][i].path);
        free(o);
        return rc == 1 ? 0 : 2;
    }
    o->me = ME;
    rc = gen_execute(o);
    free(o);
    return rc;
}

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
    cs_model_set *set = NULL;
    cs_pipeline *pl = NULL;
    cs_model_paths mp;
    memset(&mp, 0, sizeof mp);
    uint8_t *rgb = NULL;
    int status = 1, total = o->g.batch * o->count;
    char *demo_tok = NULL;

    if (!o->seed_given)
        o->g.seed = random_seed();
    /* fail fast: settings, output paths, then models and memory */
    if ((rc = cs_gen_check(&o->g)) != 0)
        goto error;
    if ((rc = gen_output_plan(&s.out, o->out, o->g.batch, o->count, o->force)) != 0)
        goto error;
    if (o->out_prefix) {   /* SaveImage: ComfyUI's PREFIX_NNNNN_.png in a folder */
        char name[GEN_PATH + 64];
        if (!s.out.to_dir) {
            rc = cs_error(CS_EARG, "-o %s: a workflow writes numbered files (%s_00001_.png): give a folder", o->out,
                          o->out_prefix);
            goto error;
        }
        snprintf(name, sizeof name, "%s/%s_000000001_.png", s.out.dir, o->out_prefix);
        if ((rc = cs_png_check_name(name)) != 0)
            goto error;
        s.out.prefix = o->out_prefix;
    }
    if ((rc = gen_latents_plan(o, &s.out)) != 0)
        goto error;
    if (o->preview) {
        if ((rc = gen_output_plan(&s.prev, o->preview, o->g.batch, o->count, o->force)) != 0)
            goto error;
        if (s.prev.to_dir) {
            rc = cs_error(CS_EARG, "--preview needs a file name, not a folder (%s)", o->preview);
            goto error;
        }
        if ((rc = gen_output_clash(&s.out, &s.prev, total, "--preview")) != 0)
            goto error;
        s.prev_existed = calloc((size_t)total, 1);
        s.prev_created = calloc((size_t)total, 1);
        s.prev_cleanup = calloc((size_t)total, sizeof *s.prev_cleanup);
        if (!s.prev_existed || !s.prev_created || !s.prev_cleanup) {
            rc = cs_oom("the preview bookkeeping", 3 * (size_t)total);
            goto error;
        }
        for (int k = 0; k < total; k++) {
            char path[GEN_PATH];
            struct stat st;
            gen_output_file_name(&s.prev, k, total, path, sizeof path);
            s.prev_existed[k] = stat(path, &st) == 0;
        }
    }
    if (o->n_images) {   /* a bad image fails before any model is touched */
        if ((rc = gen_images_load(o->image_path, o->image_strength, o->n_images, &s.images)) != 0)
            goto error;
        o->g.n_images = s.images.n;
        o->g.image_size = s.images.size;
        o->g.image_pixels = s.images.pixels;
        o->g.image_strength = s.images.strength;
    }
    if (o->init_image) {   /* read it now; used only where strength < 1 */
        if ((rc = gen_init_image_load(o->init_image, o->strength, o->g.width, o->g.height, o->init_comfy, &s.init)) != 0)
            goto error;
        if (o->strength < 1) {
            o->g.init_rgb = s.init.rgb;
            o->g.init_strength = o->strength;
        } else {
            gen_init_free(&s.init);   /* text-to-image */
        }
    }
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
    if ((status = cli_device(o->me, o->device, o->precision, 0, dev_said, sizeof dev_said, &s.prec)) != 0)
        goto done;
    if (!o->quiet && !o->json) fprintf(stderr, "%s: device: %s\n", o->me, dev_said);
    status = 1;
    rc = o->demo ? resolve_demo(&s, &mp) : resolve_models(&s, &mp, &set);
    if (o->demo)
        demo_tok = (char *)mp.tokenizer_dir;
    if (rc)
        goto error;
    for (int p = 0; p < 3; p++) {
        o->lora_list[p].note = warn_cb;
        o->lora_list[p].ctx = &s;
    }
    mp.lora_c = o->lora_list[0].n ? &o->lora_list[0] : NULL;
    mp.lora_b = o->lora_list[1].n ? &o->lora_list[1] : NULL;
    mp.lora_text = o->lora_list[2].n ? &o->lora_list[2] : NULL;
    if ((rc = cs_pipeline_new(&mp, o->keep, &pl)) != 0 || (rc = cs_pipeline_check(pl)) != 0 ||
        (rc = cs_pipeline_check_size(pl, &o->g)) != 0 || (rc = cs_cancel_check()) != 0)
        goto error;
    if (o->dry_run) {   /* everything is resolved and checked: say what would run */
        if (o->plan_print)
            o->plan_print(o->plan_ctx, o, &mp);
        status = 0;
        goto done;
    }

    if (o->json)
        gen_json_emit(json_pack("{s:s, s:I, s:i, s:i, s:i, s:i, s:b, s:s}", "event", "start", "seed",
                                (json_int_t)o->g.seed, "width", o->g.width, "height", o->g.height, "batch",
                                o->g.batch, "count", o->count, "demo", o->demo, "prompt_style",
                                cs_prompt_style_name((cs_prompt_style)o->g.prompt_style)));
    else if (!o->quiet)
        fprintf(stderr, "%s%s: %dx%d, seed %llu, batch %d%s, Stage C %d steps cfg %g, Stage B %d steps cfg %g, %s\n",
                s.info, o->me, o->g.width, o->g.height, (unsigned long long)o->g.seed, o->g.batch, o->count > 1 ? " per run" : "",
                o->g.c.steps, (double)o->g.c.cfg, o->g.b.steps, (double)o->g.b.cfg, sampler_name(&o->g.c));

    cs_pipeline_hooks hk = {progress_cb, o->preview ? preview_cb : NULL, &s, warn_cb, cs_cancel_flag(),
                            o->n_save_latent ? latent_cb : NULL};
    uint64_t seed0 = o->g.seed;
    hash_start(&hj, &s);
    for (s.run = 0; s.run < o->count; s.run++) {
        o->g.seed = seed0 + (uint64_t)s.run;
        s.prog.run = s.run;
        if ((rc = cs_pipeline_generate(pl, &o->g, &hk, &rgb)) != 0)
            goto error;
        if ((rc = hash_join(&hj, 1)) != 0)
            goto error;
        if ((rc = write_images(&s, rgb)) != 0)
            goto error;
        cs_free(rgb);
        rgb = NULL;
    }
    const cs_backend *dev = cs_backend_active();
    if (dev && dev->ops && !o->quiet && !o->json)
        fprintf(stderr, "%s: device memory peak %.2f GiB\n", o->me, (double)dev->ops->mem_peak(0) / 1073741824.0);
    cs_dev_prof_report(o->quiet || o->json ? NULL : stderr);
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
    if (rc == CS_EINTR || cli_stop_pending()) {
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
            msg = cs_last_error();
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
        cs_cleanup_del(s.prev_cleanup[k]);   /* kept on success, removed above otherwise */
    cs_free(rgb);
    cs_pipeline_free(pl);
    cs_models_free(set);
    if (s.demo_vision[0]) {
        unlink(s.demo_vision);
        cs_cleanup_del(s.demo_vision_cleanup);
    }
    if (s.demo_effnet[0]) {
        unlink(s.demo_effnet);
        cs_cleanup_del(s.demo_effnet_cleanup);
    }
    if (o->demo)
        cs_demo_remove(&s.demo);
    gen_images_free(&s.images);
    gen_init_free(&s.init);
    gen_latents_free(&s.lat);
    free(demo_tok);
    gen_output_free(&s.out);
    gen_output_free(&s.prev);
    free(s.prev_existed);
    free(s.prev_created);
    free(s.prev_cleanup);
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < o->lora_list[p].n; i++)
            free((char *)o->lora[p][i].path);
    return status;
}
