/* `cascade generate` internals shared by generate.c (options, models, run)
 * and generate_io.c (output files, PNG metadata, progress display). */
#ifndef CS_CLI_GENERATE_H
#define CS_CLI_GENERATE_H

#include "cascade.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#define GEN_PATH 4096
#define GEN_MAX_LORA CASCADE_MAX_LORAS     /* per part (cascade_add_lora) */
#define GEN_MAX_IMAGES CASCADE_MAX_IMAGES /* --image / unCLIPConditioning (cascade_add_image) */
#define GEN_MAX_SAVE_LATENT 8

/* The library's limits, from cascade.h's table (cascade_param_range). */
int gen_max_side(void);
int gen_max_batch(void);

/* One stage's sampler, names as cascade.h takes them. */
typedef struct {
    int steps;
    float cfg, cfg_rho, shift;
    int sampler;                /* CASCADE_SAMPLER_*: the official sampler (ksampler NULL) */
    float eta;                  /* its eta (DDIM; 1 otherwise) */
    const char *ksampler;       /* ComfyUI's KSampler (a CASCADE_P_KSAMPLER_C choice), or NULL */
    const char *scheduler;      /* its scheduler (a CASCADE_P_SCHEDULER_C choice) */
    double denoise;             /* its denoise, (0, 1] */
} gen_stage;

/* The settings of one generate run, in plain C types: generate's options
 * or a workflow's nodes, set into the context key by key (generate.c). */
typedef struct {
    const char *prompt, *negative;
    int width, height, batch;
    uint64_t seed;
    gen_stage c, b;
    int round;                  /* 1: round to uint8 (CASCADE_P_ROUND) */
    int preview_every;
    int prompt_style;           /* CASCADE_PROMPT_* */
    const char *embeddings;
    uint64_t seed_b;            /* Stage B's KSampler seed when seed_b_set */
    int seed_b_set;
    int b_uncond_zero;          /* Stage B's negative is zeros (ConditioningZeroOut) */
} gen_settings;

/* The library's defaults (cascade_param_range), official sampler at eta 1. */
void gen_settings_defaults(gen_settings *g);
/* A string key's accepted value equal to name (the table's copy), or NULL;
 * name NULL: the first (the default). */
const char *gen_choice(cascade_param key, const char *name);
/* "official" / "comfyui" <-> CASCADE_PROMPT_* (-1 for another name). */
int gen_prompt_style(const char *name);
const char *gen_prompt_style_name(int style);
/* The name of a stage's sampler for the start line and the metadata:
 * the KSampler's, else "DDPM", "DDIM", "LCM". */
const char *gen_sampler_name(const gen_stage *st);

/* A LoRA of the run: the file (malloc'd) and its strength. */
typedef struct {
    char *path;
    float strength;
} gen_lora;

/* Options of one generate run (generate.c parses them; run.c builds them
 * from a workflow). */
typedef struct gen_opts {
    gen_settings g;
    const char *prompt, *out, *preview, *models_dir, *tokenizer;
    const char *file[CASCADE_PART_COUNT];
    const char *var_c, *var_b;              /* CASCADE_P_VARIANT_C/B values; NULL: auto */
    int have_prompt, seed_given, size_given, count, keep, force, json, quiet, demo, threads;
    gen_lora lora[3][GEN_MAX_LORA];         /* per part: Stage C, Stage B, text encoder */
    int n_lora[3];
    int lora_lenient;
    const char *device, *precision;
    int n_images;                           /* --image */
    char image_path[GEN_MAX_IMAGES][GEN_PATH];
    float image_strength[GEN_MAX_IMAGES];
    const char *init_image;                 /* --init-image */
    int init_comfy;                         /* resize it as ComfyUI's StageC_VAEEncode (cascade run) */
    double strength;                        /* --strength */
    int strength_given;
    /* set by `cascade run` (zero for generate) */
    const char *me;                         /* "cascade generate" / "cascade run" in messages */
    const char *out_prefix;                 /* SaveImage prefix: -o DIR gets PREFIX_NNNNN_.png */
    int dry_run;                            /* print the plan once resolved, exit 0 */
    /* the plan, once models are resolved: ctx holds each part's file */
    void (*plan_print)(void *pctx, const struct gen_opts *o, cascade_ctx *ctx);
    void *plan_ctx;
    const char *images_json;                /* --image list replaced by LoadImage names (metadata) */
    /* SaveLatent nodes: img2img's encoded image (0), the Stage C (1) or Stage B (2) result of each run as
     * ComfyUI's PREFIX_NNNNN_.latent in -o DIR (the prefix may name
     * subfolders, made when missing), written with the run's images */
    int n_save_latent;
    int save_latent_stage[GEN_MAX_SAVE_LATENT];
    const char *save_latent_prefix[GEN_MAX_SAVE_LATENT];
    const char *latent_prompt;              /* the workflow (API JSON): their "prompt" metadata */
} opts;

/* Frees o's LoRA paths. */
void gen_opts_free_loras(opts *o);

/* Parses and checks generate's command line into o (generate_opts.c):
 * 0, 1 after --help (nothing to run), or 2 after a one-line error. */
int gen_parse(int argc, char **argv, opts *o);

/* Runs o (parsed and checked): output plan, models, the pipeline, the files.
 * Returns the exit status (0, 1, 2, 130). Frees o's LoRA paths. */
int gen_execute(opts *o);

/* Where the images go, decided and checked before any long work. */
typedef struct {
    int to_dir;                 /* 1: auto-numbered cascade_NNNNN.png in dir */
    char dir[GEN_PATH];         /* folder of the output (always set) */
    char file[GEN_PATH];        /* -o FILE as given (to_dir == 0) */
    int force;
    const char *prefix;         /* to_dir with ComfyUI's PREFIX_NNNNN_.png names, or NULL */
    int n;                      /* images per run */
    char **written;             /* paths written so far (n_written) */
    int n_written, cap_written;
} gen_output;

/* Plans the output for n images per run. -o NULL: the current folder.
 * Fails (one line through cli_error) if the folder is missing or not
 * writable, or a target file exists without force. */
int gen_output_plan(gen_output *o, const char *arg, int n, int runs, int force);
/* Path of image i of run r for a file output: FILE itself when there is one
 * image in all, else STEM_<k>.EXT with k = r*n + i + 1. */
void gen_output_file_name(const gen_output *o, int k, int total, char *out, size_t len);
/* Writes image i; records the path. */
int gen_output_write(gen_output *o, int k, int total, const uint8_t *rgb, int w, int h,
                     const char *const *text, int n_text, char *path, size_t len);
/* CASCADE_E_ARG when a file of b (e.g. the previews, named `what`) is also a file
 * of a (the images): same folder and name. */
int gen_output_clash(const gen_output *a, const gen_output *b, int total, const char *what);
/* Adds path to the files written (removed with them by unwind). */
int gen_output_record(gen_output *o, const char *path);
/* Removes the files written from index start on (a batch that failed). */
void gen_output_unwind_from(gen_output *o, int start);
void gen_output_free(gen_output *o);

/* True if a file can be created in dir (tries a temporary file). */
int gen_dir_writable(const char *dir, char *why, size_t len);

/* One model file of the run, for the metadata. */
typedef struct {
    const char *role;           /* "stage_c", ... */
    char path[GEN_PATH];
    char variant[48];           /* "stage_c_lite bf16", "demo" */
    uint64_t xxh64;
    int have_hash;
} gen_model_meta;

/* One LoRA of the run, for the metadata. */
typedef struct {
    const char *part;           /* "stage_c", "stage_b", "text_encoder" */
    const char *path;
    float strength;
    uint64_t xxh64;
} gen_lora_meta;

/* Everything the PNG text chunks describe. */
typedef struct {
    const gen_settings *g;
    const char *sampler_name;
    int demo;
    int batch_index;            /* 0-based within the batch */
    const gen_model_meta *models;
    int n_models;
    const char *tokenizer;      /* folder or "byte-level fallback (demo)" */
    const gen_lora_meta *loras; /* in the order applied */
    int n_loras;
    const char *images;         /* --image inputs as a JSON list, or NULL */
    const char *init_image;     /* --init-image as a JSON object, or NULL */
    const char *prefix;         /* SaveImage's filename_prefix for the workflow, or NULL */
} gen_meta;

/* Builds the chunks (Software, prompt, ..., parameters); free with
 * gen_meta_free. */
int gen_meta_build(const gen_meta *m, char ***out, int *n);
void gen_meta_free(char **t, int n);

/* ---- input images (generate_opts.c) ---- */

/* Splits --image FILE[:STRENGTH] (default 1); -1 after printing a usage error. */
int gen_image_arg(const char *arg, char *path, size_t len, float *strength);

/* ---- SaveLatent (generate_latent.c) ---- */

typedef struct {
    float *x[3];                /* the run's latents by CASCADE_LATENT_*, [n, c, h, w] */
    int dim[3][4];
    char made[GEN_MAX_SAVE_LATENT * 4][GEN_PATH];   /* folders the batch being written made */
    int made_hnd[GEN_MAX_SAVE_LATENT * 4], n_made;
} gen_latents;

/* Before the run: each prefix's folders are folders or missing, names fit. */
int gen_latents_plan(const opts *o, const gen_output *out);
/* The latent callback: keeps a copy of what a SaveLatent wants (which: a
 * CASCADE_LATENT_*, x [n, c, h, w] in ComfyUI's form). */
int gen_latents_keep(gen_latents *l, const opts *o, int which, const float *x, int n, int c, int h, int w);
/* Writes each SaveLatent's file (recorded in out; cli_cleanup_add handles in hnd[k]). */
int gen_latents_write(gen_latents *l, const opts *o, gen_output *out, int *hnd);
/* The batch is final (failed = 0) or unwound: folders it made are removed. */
void gen_latents_done(gen_latents *l, int failed);
void gen_latents_free(gen_latents *l);

/* ---- progress ---- */

typedef struct {
    int json, quiet, tty;
    FILE *err;                  /* stderr */
    int run, runs;              /* current run (0-based) of runs */
    int line_open;              /* a TTY status line is being updated */
    double last_line;           /* elapsed time of the last plain line */
} gen_progress;

void gen_progress_init(gen_progress *p, int json, int quiet);
/* the progress callback's display */
void gen_progress_cb(gen_progress *p, cascade_stage stage, int step, int steps, double elapsed);
/* Ends an open TTY line (before printing anything else). */
void gen_progress_break(gen_progress *p);

/* Prints obj as one compact JSON line on stdout and releases it. */
void gen_json_emit(json_t *obj);

#endif
