/* `cascade generate`: output files (planned and checked before the long
 * work), PNG metadata (own keys plus an A1111-style "parameters" text) and
 * the progress display (TTY status line, plain lines, or JSON lines). */
#include "cli.h"
#include "generate.h"
#include "workflow.h"

#include "cascade.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- output */

int gen_dir_writable(const char *dir, char *why, size_t len)
{
    char tmp[GEN_PATH];
    if (snprintf(tmp, sizeof tmp, "%s/.cascade-probe-XXXXXX", dir) >= (int)sizeof tmp) {
        snprintf(why, len, "path too long");
        return 0;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(why, len, "%s", strerror(errno));
        return 0;
    }
    int h = cli_cleanup_add(tmp, 0);   /* a second Ctrl-C right here leaves no probe file */
    close(fd);
    unlink(tmp);
    cli_cleanup_del(h);
    return 1;
}

static const char *kind_of(mode_t m)
{
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "a special file";
}

/* the library's checks of a name to come (lengths), its message through cli_error */
static int check_name(const char *path)
{
    cascade_ctx *ctx = cli_ctx();
    int rc = ctx ? cascade_check_output_name(ctx, path) : CASCADE_E_NOMEM;
    return rc ? cli_error(rc, "%s", ctx ? cascade_errmsg(ctx) : "out of memory") : 0;
}

static int ends_with_png(const char *s)
{
    size_t n = strlen(s);
    return n >= 4 && !strcasecmp(s + n - 4, ".png");
}

void gen_output_file_name(const gen_output *o, int k, int total, char *out, size_t len)
{
    if (total <= 1) {
        snprintf(out, len, "%s", o->file);
        return;
    }
    /* out.png -> out_1.png, out_2.png, ... */
    size_t n = strlen(o->file);
    int ext = ends_with_png(o->file) ? 4 : 0;
    snprintf(out, len, "%.*s_%d%s", (int)(n - (size_t)ext), o->file, k + 1, ext ? o->file + n - 4 : "");
}

int gen_output_plan(gen_output *o, const char *arg, int n, int runs, int force)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    o->force = force;
    int total = n * runs;
    struct stat st;
    if (!arg || !*arg)
        arg = ".";
    if (strlen(arg) >= GEN_PATH - 32)
        return cli_error(CASCADE_E_ARG, "output path too long: %s", arg);

    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        o->to_dir = 1;
        snprintf(o->dir, sizeof o->dir, "%s", arg);
    } else {
        size_t len = strlen(arg);
        if (arg[len - 1] == '/')
            return cli_error(CASCADE_E_IO, "output folder %s does not exist", arg);
        snprintf(o->file, sizeof o->file, "%s", arg);
        const char *slash = strrchr(arg, '/');
        if (!slash)
            snprintf(o->dir, sizeof o->dir, ".");
        else if (slash == arg)
            snprintf(o->dir, sizeof o->dir, "/");
        else
            snprintf(o->dir, sizeof o->dir, "%.*s", (int)(slash - arg), arg);
        if (stat(o->dir, &st) != 0)
            return cli_error(CASCADE_E_IO, "cannot write %s: folder %s does not exist", arg, o->dir);
        if (!S_ISDIR(st.st_mode))
            return cli_error(CASCADE_E_IO, "cannot write %s: %s is not a folder", arg, o->dir);
        for (int k = 0; k < total; k++) {
            char name[GEN_PATH];
            gen_output_file_name(o, k, total, name, sizeof name);
            /* "_<k>" suffixes can make a name too long only once numbered */
            int rc = check_name(name);
            if (rc)
                return rc;
            if (lstat(name, &st) == 0) {
                if (S_ISDIR(st.st_mode))
                    return cli_error(CASCADE_E_IO, "cannot write %s: it is a folder", name);
                /* --force replaces a file, never a device, FIFO, socket or link */
                if (!S_ISREG(st.st_mode))
                    return cli_error(CASCADE_E_IO, "cannot write %s: it is %s, not a regular file (--force replaces only regular files)",
                                    name, kind_of(st.st_mode));
                if (!force)
                    return cli_error(CASCADE_E_IO, "%s already exists (use --force to replace it)", name);
            }
        }
    }
    if (o->to_dir) {
        char name[GEN_PATH + 32];
        snprintf(name, sizeof name, "%s/cascade_000000001.png", o->dir);
        int rc = check_name(name);
        if (rc)
            return rc;
    }
    char why[256];
    if (!gen_dir_writable(o->dir, why, sizeof why))
        return cli_error(CASCADE_E_IO, "cannot write to folder %s: %s", o->dir, why);
    return 0;
}

int gen_output_write(gen_output *o, int k, int total, const uint8_t *rgb, int w, int h,
                     const char *const *text, int n_text, char *path, size_t len)
{
    cascade_ctx *ctx = cli_ctx();
    char target[GEN_PATH + 256];
    int flags;
    if (!ctx)
        return cli_error(CASCADE_E_NOMEM, "out of memory");
    if (o->to_dir) {   /* the next free DIR/cascade_NNNNN.png, or SaveImage's PREFIX_NNNNN_.png */
        snprintf(target, sizeof target, "%s/%s", o->dir, o->prefix ? o->prefix : "cascade");
        flags = CASCADE_PNG_NUMBERED | (o->prefix ? CASCADE_PNG_COMFY_NAMES : 0);
    } else {
        gen_output_file_name(o, k, total, target, sizeof target);
        flags = o->force ? CASCADE_PNG_FORCE : 0;
    }
    int rc = cascade_png_write(ctx, rgb, w, h, (size_t)w * 3, text, n_text, target, flags, path, len);
    if (rc)
        return cli_error(rc, "%s", cascade_errmsg(ctx));
    return gen_output_record(o, path);
}

int gen_output_record(gen_output *o, const char *path)
{
    if (o->n_written == o->cap_written) {
        int cap = o->cap_written ? 2 * o->cap_written : 8;
        char **p = realloc(o->written, (size_t)cap * sizeof *p);
        if (!p)
            return cli_error(CASCADE_E_NOMEM, "out of memory: the list of written file names");
        o->written = p;
        o->cap_written = cap;
    }
    o->written[o->n_written] = strdup(path);
    if (!o->written[o->n_written])
        return cli_error(CASCADE_E_NOMEM, "out of memory: the list of written file names");
    o->n_written++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int gen_output_clash(const gen_output *a, const gen_output *b, int total, const char *what)
{
    struct stat da, db;
    if (a->to_dir || b->to_dir || stat(a->dir, &da) || stat(b->dir, &db) || da.st_dev != db.st_dev ||
        da.st_ino != db.st_ino)
        return 0;   /* different folders (auto-numbering never takes a taken name) */
    /* same folder: sort b's names, look up each of a's */
    char **names = calloc((size_t)total, sizeof *names);
    int rc = names ? 0 : cli_error(CASCADE_E_NOMEM, "out of memory comparing %d output names", total);
    for (int k = 0; !rc && k < total; k++) {
        char path[GEN_PATH];
        gen_output_file_name(b, k, total, path, sizeof path);
        const char *base = strrchr(path, '/');
        if (!(names[k] = strdup(base ? base + 1 : path)))
            rc = cli_error(CASCADE_E_NOMEM, "out of memory comparing %d output names", total);
    }
    if (!rc)
        qsort(names, (size_t)total, sizeof *names, cmp_str);
    for (int k = 0; !rc && k < total; k++) {
        char path[GEN_PATH];
        gen_output_file_name(a, k, total, path, sizeof path);
        const char *base = strrchr(path, '/');
        const char *key = base ? base + 1 : path;
        if (bsearch(&key, names, (size_t)total, sizeof *names, cmp_str))
            rc = cli_error(CASCADE_E_ARG, "%s %s would also be an output image; give it another name", what, path);
    }
    for (int k = 0; names && k < total; k++)
        free(names[k]);
    free(names);
    return rc;
}

void gen_output_unwind_from(gen_output *o, int start)
{
    for (int i = start; i < o->n_written; i++) {
        unlink(o->written[i]);
        free(o->written[i]);
    }
    if (start < o->n_written)
        o->n_written = start;
}

void gen_output_free(gen_output *o)
{
    for (int i = 0; i < o->n_written; i++)
        free(o->written[i]);
    free(o->written);
    o->written = NULL;
    o->n_written = o->cap_written = 0;
}

/* -------------------------------------------------------------- metadata */

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* text pairs for cascade_png_write: t[2k] a key (a string literal), t[2k+1] its value (malloc'd) */
typedef struct {
    char **t;
    int n, cap, failed;
} chunks;

static void add(chunks *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add(chunks *c, const char *key, const char *fmt, ...)
{
    if (c->failed)
        return;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 32;
        char **p = realloc(c->t, 2 * (size_t)cap * sizeof *p);
        if (!p) {
            c->failed = 1;
            return;
        }
        c->t = p;
        c->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    if (vasprintf(&v, fmt, ap) < 0)
        v = NULL;
    va_end(ap);
    if (!v) {
        c->failed = 1;
        return;
    }
    c->t[2 * c->n] = (char *)key;   /* keys are string literals */
    c->t[2 * c->n + 1] = v;
    c->n++;
}

static const char *cfg_text(float cfg, char *buf, size_t len)
{
    if (cfg == 0.0f)
        snprintf(buf, len, "off");
    else
        snprintf(buf, len, "%g", (double)cfg);
    return buf;
}

int gen_meta_build(const gen_meta *m, char ***out, int *n)
{
    const gen_settings *g = m->g;
    chunks c = {0};
    char cc[32], cb[32];
    const char *neg = g->negative ? g->negative : "";
    cfg_text(g->c.cfg, cc, sizeof cc);
    cfg_text(g->b.cfg, cb, sizeof cb);

    add(&c, "Software", "cascade %s", cascade_version());
    if (m->demo)
        add(&c, "demo", "DEMO: tiny networks with random weights; the image is meaningless noise");
    add(&c, "positive_prompt", "%s", g->prompt);
    add(&c, "negative_prompt", "%s", neg);
    add(&c, "seed", "%llu", (unsigned long long)g->seed);
    add(&c, "width", "%d", g->width);
    add(&c, "height", "%d", g->height);
    add(&c, "batch_size", "%d", g->batch);
    add(&c, "batch_index", "%d", m->batch_index);
    add(&c, "steps_c", "%d", g->c.steps);
    add(&c, "steps_b", "%d", g->b.steps);
    add(&c, "cfg_c", "%s", cc);
    add(&c, "cfg_b", "%s", cb);
    add(&c, "cfg_rho", "%g", (double)g->c.cfg_rho);
    add(&c, "shift_c", "%g", (double)g->c.shift);
    add(&c, "shift_b", "%g", (double)g->b.shift);
    add(&c, "sampler", "%s", m->sampler_name);
    if (g->c.ksampler) {   /* ComfyUI's KSampler */
        add(&c, "scheduler", "%s", g->c.scheduler);
        add(&c, "denoise", "%g", g->c.denoise);
    }
    if (g->seed_b_set)
        add(&c, "seed_b", "%llu", (unsigned long long)g->seed_b);
    add(&c, "rng", "torch-cpu");
    add(&c, "prompt_style", "%s", gen_prompt_style_name(g->prompt_style));
    add(&c, "output_rounding", "%s", g->round ? "round" : "truncate");
    add(&c, "tokenizer", "%s", m->tokenizer ? m->tokenizer : "");

    /* models: JSON list of {role, file, variant, xxh64} */
    json_t *arr = json_array();
    for (int i = 0; arr && i < m->n_models; i++) {
        const gen_model_meta *mm = &m->models[i];
        char hx[20] = "";
        if (mm->have_hash)
            snprintf(hx, sizeof hx, "%016llx", (unsigned long long)mm->xxh64);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "role", mm->role, "file",
                                             base_name(mm->path), "variant", mm->variant, "xxh64", hx));
    }
    char *mj = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    add(&c, "models", "%s", mj ? mj : "[]");
    free(mj);
    if (m->images)
        add(&c, "images", "%s", m->images);   /* image variation inputs */
    if (m->init_image)
        add(&c, "init_image", "%s", m->init_image);   /* img2img input */

    /* loras: JSON list of {part, file, strength, xxh64}; A1111 writes <lora:NAME:S> in the prompt */
    json_t *la = json_array();
    char ltags[2048] = "", lhash[2048] = "";
    for (int i = 0; la && i < m->n_loras; i++) {
        const gen_lora_meta *l = &m->loras[i];
        char hx[20], name[256], sv[32];
        snprintf(sv, sizeof sv, "%g", (double)l->strength);   /* 0.8, not 0.800000011920929 */
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)l->xxh64);
        snprintf(name, sizeof name, "%s", base_name(l->path));
        char *dot = strrchr(name, '.');
        if (dot && !strcmp(dot, ".safetensors")) *dot = 0;
        json_array_append_new(la, json_pack("{s:s, s:s, s:f, s:s}", "part", l->part, "file", base_name(l->path),
                                            "strength", strtod(sv, NULL), "xxh64", hx));
        size_t o = strlen(ltags), h = strlen(lhash);
        snprintf(ltags + o, sizeof ltags - o, " <lora:%s:%g>", name, (double)l->strength);
        snprintf(lhash + h, sizeof lhash - h, "%s%s: %s", h ? ", " : ", Lora hashes: \"", name, hx);
    }
    if (*lhash) strncat(lhash, "\"", sizeof lhash - strlen(lhash) - 1);
    if (m->n_loras) {
        char *lj = la ? json_dumps(la, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        add(&c, "loras", "%s", lj ? lj : "[]");
        free(lj);
    }
    json_decref(la);

    /* the run as a ComfyUI graph: "prompt" (API form) and "workflow" (UI form) */
    char *wa = NULL, *wu = NULL;
    if (wf_emit(m, m->prefix, &wa, &wu) == 0) {
        add(&c, "prompt", "%s", wa);
        add(&c, "workflow", "%s", wu);
    } else {
        c.failed = 1;
    }
    free(wa);
    free(wu);

    /* A1111-style summary so image viewers that know "parameters" show it */
    const gen_model_meta *sc = NULL, *sb = NULL;
    for (int i = 0; i < m->n_models; i++) {
        if (!strcmp(m->models[i].role, "stage_c"))
            sc = &m->models[i];
        if (!strcmp(m->models[i].role, "stage_b"))
            sb = &m->models[i];
    }
    char negline[64 + 4096] = "";
    if (*neg)
        snprintf(negline, sizeof negline, "\nNegative prompt: %s", neg);
    char hashes[160] = "";
    if (sc && sc->have_hash && sb && sb->have_hash)
        snprintf(hashes, sizeof hashes, ", Stage C xxh64: %016llx, Stage B xxh64: %016llx",
                 (unsigned long long)sc->xxh64, (unsigned long long)sb->xxh64);
    add(&c, "parameters",
        "%s%s%s%s\nSteps: %d, Sampler: %s, CFG scale: %s, Seed: %llu, Size: %dx%d, Model: %s%s%s, "
        "Stage B steps: %d, Stage B CFG scale: %s, Stage B model: %s, Shift: %g, Stage B shift: %g, "
        "CFG rho: %g, Batch size: %d, Batch pos: %d, RNG: torch-cpu, Prompt style: %s, Version: cascade %s",
        m->demo ? "[cascade demo: random-weight networks] " : "", g->prompt, ltags, negline, g->c.steps,
        m->sampler_name, cc, (unsigned long long)g->seed, g->width, g->height,
        sc ? sc->variant : "?", hashes, lhash, g->b.steps, cb, sb ? sb->variant : "?", (double)g->c.shift,
        (double)g->b.shift, (double)g->c.cfg_rho, g->batch, m->batch_index,
        gen_prompt_style_name(g->prompt_style), cascade_version());

    if (c.failed) {
        gen_meta_free(c.t, c.n);
        return cli_error(CASCADE_E_NOMEM, "out of memory building PNG metadata");
    }
    *out = c.t;
    *n = c.n;
    return 0;
}

void gen_meta_free(char **t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[2 * i + 1]);
    free(t);
}

/* -------------------------------------------------------------- progress */

void gen_json_emit(json_t *obj)
{
    if (!obj)
        return;
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(obj);
}

void gen_progress_init(gen_progress *p, int json, int quiet)
{
    memset(p, 0, sizeof *p);
    p->json = json;
    p->quiet = quiet;
    p->err = stderr;
    p->tty = isatty(fileno(stderr));
    p->runs = 1;
}

void gen_progress_break(gen_progress *p)
{
    if (p->line_open) {
        fputc('\n', p->err);
        p->line_open = 0;
    }
}

static const char *stage_title(cascade_stage s)
{
    switch (s) {
    case CASCADE_STAGE_TEXT: return "text encoder";
    case CASCADE_STAGE_C: return "Stage C";
    case CASCADE_STAGE_B: return "Stage B";
    case CASCADE_STAGE_A: return "Stage A";
    case CASCADE_STAGE_PREVIEW: return "previewer";
    default: return "?";
    }
}

/* the "stage" of the JSON lines */
static const char *stage_key(cascade_stage s)
{
    static const char *const names[] = {"text", "stage_c", "stage_b", "stage_a", "preview"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "?";
}

static void fmt_rate(char *buf, size_t len, int done, double t)
{
    if (done <= 0 || t <= 0.0)
        snprintf(buf, len, "-- it/s");
    else if (done / t >= 1.0)
        snprintf(buf, len, "%.2f it/s", done / t);
    else
        snprintf(buf, len, "%.2f s/it", t / done);
}

static void fmt_secs(char *buf, size_t len, double s)
{
    if (s < 60.0)
        snprintf(buf, len, "%.1fs", s);
    else
        snprintf(buf, len, "%d:%02d", (int)(s / 60), (int)s % 60);
}

/* seconds (or rates) to 3 decimals for the JSON lines */
static double ms(double v)
{
    return round(v * 1000.0) / 1000.0;
}

void gen_progress_cb(gen_progress *p, cascade_stage stage, int step, int steps, double elapsed)
{
    double rate = step > 0 && elapsed > 0 ? step / elapsed : 0.0;
    double eta = rate > 0 ? (steps - step) / rate : -1.0;
    if (p->json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:f}", "event", step < 0 ? "load" : "progress",
                              "stage", stage_key(stage), "run", p->run + 1, "step", step < 0 ? 0 : step,
                              "steps", steps, "elapsed", ms(elapsed));
        if (o && step > 0) {
            json_object_set_new(o, "it_per_s", json_real(ms(rate)));
            json_object_set_new(o, "eta", json_real(ms(eta)));
        }
        gen_json_emit(o);
        return;
    }
    if (p->quiet)
        return;
    char run[32] = "", r[32], t[32], e[32];
    if (p->runs > 1)
        snprintf(run, sizeof run, "[%d/%d] ", p->run + 1, p->runs);
    const char *title = stage_title(stage);
    if (step < 0) {
        /* loading: a line of its own either way */
        gen_progress_break(p);
        fprintf(p->err, "%s%s: loading\n", run, title);
        return;
    }
    if (step == 0) {
        p->last_line = 0.0;
        return;
    }
    fmt_rate(r, sizeof r, step, elapsed);
    fmt_secs(t, sizeof t, elapsed);
    int multi = stage == CASCADE_STAGE_C || stage == CASCADE_STAGE_B;
    if (p->tty) {
        if (step < steps) {
            fmt_secs(e, sizeof e, eta);
            fprintf(p->err, "\r\033[K%s%-12s %3d/%-3d  %s  ETA %s", run, title, step, steps, r, e);
            p->line_open = 1;
        } else {
            fprintf(p->err, "\r\033[K%s%-12s %3d/%-3d  %s  %s\n", run, title, step, steps,
                    multi ? r : "", t);
            p->line_open = 0;
        }
    } else if (multi && step < steps) {
        /* plain lines (logs): the first step, then at most one every 2 s */
        if (step == 1 || elapsed - p->last_line >= 2.0) {
            fmt_secs(e, sizeof e, eta > 0 ? eta : 0.0);
            fprintf(p->err, "%s%s %d/%d %s ETA %s\n", run, title, step, steps, r, e);
            p->last_line = elapsed;
        }
    } else if (multi) {
        fprintf(p->err, "%s%s: %d steps in %s (%s)\n", run, title, steps, t, r);
        p->last_line = 0.0;
    } else if (step == steps) {
        fprintf(p->err, "%s%s: done in %s\n", run, title, t);
    }
    fflush(p->err);
}
