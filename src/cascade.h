/* libcascade: the Stable Cascade text-to-image engine as a library.
 *
 * The only installed header. Everything is an opaque handle or a plain C
 * type, options are set by enum key, so new options and fields never change
 * the ABI. Functions that can fail return 0 (or a count) on success and a
 * negative CASCADE_E* code on failure, with one line saying what and where
 * in cascade_errmsg(ctx). Nothing here exits or aborts the process. Every
 * _free function accepts NULL.
 *
 * Threads: a context is used by one thread at a time; two contexts may run
 * in two threads at once (each has its own thread count, precision, device,
 * scratch memory and error text), and give the same images as one after
 * the other. cascade_cancel is the exception: it may be called from any
 * thread or from a signal handler. The library initialises itself (kernel
 * choice for this CPU, honouring $CASCADE_SIMD) once, on first use.
 *
 * Minimal use (see man libcascade(3) and examples/txt2img.c):
 *
 *     cascade_ctx *ctx = cascade_ctx_new();
 *     cascade_images *im = NULL;
 *     if (cascade_find_models(ctx) < 0 ||
 *         cascade_generate(ctx, "a lighthouse at dawn", NULL, &im) < 0)
 *         fprintf(stderr, "%s\n", cascade_errmsg(ctx));
 *     else
 *         cascade_image_write_png(ctx, cascade_images_get(im, 0), "out.png", 0);
 *     cascade_images_free(im);
 *     cascade_ctx_free(ctx);
 */
#ifndef CASCADE_H
#define CASCADE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(CASCADE_STATIC)
#define CASCADE_API __attribute__((visibility("default")))
#else
#define CASCADE_API
#endif

/* ---- errors ---- */
enum {
    CASCADE_OK = 0,
    CASCADE_E_IO = -1,        /* open/read/write failed */
    CASCADE_E_FORMAT = -2,    /* malformed file */
    CASCADE_E_MODEL = -3,     /* not the expected network, or networks that do not fit together */
    CASCADE_E_ARG = -4,       /* bad argument or parameter value */
    CASCADE_E_NOMEM = -5,     /* out of memory (host or device) */
    CASCADE_E_UNSUP = -6,     /* valid but not supported here (dtype, SIMD level, device, precision) */
    CASCADE_E_INTR = -7,      /* cancelled (cascade_cancel, a progress callback, a signal) */
    CASCADE_E_NONFINITE = -8, /* a result holds NaN or Inf */
    CASCADE_E_DEVICE = -9     /* the compute device failed */
};

/* "MAJOR.MINOR.PATCH" of the library. */
CASCADE_API const char *cascade_version(void);
/* A short fixed name of a CASCADE_E* code ("out of memory"). */
CASCADE_API const char *cascade_strerror(int code);
/* The message of the last failing call on this thread, any context. */
CASCADE_API const char *cascade_last_error(void);

/* ---- the context ---- */
typedef struct cascade_ctx cascade_ctx;

/* NULL only when out of memory. */
CASCADE_API cascade_ctx *cascade_ctx_new(void);
/* Frees everything the context holds, loaded networks and demo files
 * included. NULL is fine. */
CASCADE_API void cascade_ctx_free(cascade_ctx *ctx);
/* The message of the last failing call on ctx ("" if none); valid until the
 * next call on ctx. ctx NULL: cascade_last_error(). */
CASCADE_API const char *cascade_errmsg(const cascade_ctx *ctx);

/* ---- parameters ----
 * Each key has one type (cascade_param_type); setting it through the wrong
 * setter or outside its range is CASCADE_E_ARG and leaves the value as it
 * was. Defaults and ranges (also from cascade_param_range):
 *
 *  key                    type    default  range / values
 *  CASCADE_P_WIDTH        int     1024     8..8192, a multiple of 8
 *  CASCADE_P_HEIGHT       int     1024     8..8192, a multiple of 8
 *  CASCADE_P_SEED         int     0        0..2^63-1 (torch.manual_seed; low 32 bits used)
 *  CASCADE_P_BATCH        int     1        1..64 images sampled together
 *  CASCADE_P_STEPS_C      int     20       1..10000 Stage C sampler steps
 *  CASCADE_P_STEPS_B      int     10       1..10000 Stage B sampler steps
 *  CASCADE_P_CFG_C        float   4        any finite; 0 or 1 = no guidance
 *  CASCADE_P_CFG_B        float   1.1      any finite; 0 or 1 = no guidance
 *  CASCADE_P_CFG_RHO      float   0.7      0..1 std rescaling of the guided noise
 *  CASCADE_P_SHIFT_C      float   2        (0..10000] schedule shift
 *  CASCADE_P_SHIFT_B      float   1        (0..10000]
 *  CASCADE_P_SAMPLER      int     0        CASCADE_SAMPLER_DDPM, _DDIM, _LCM
 *  CASCADE_P_ETA          float   0        0..1 (DDIM only)
 *  CASCADE_P_ROUND        int     0        0: truncate to uint8 (official), 1: round (diffusers)
 *  CASCADE_P_PROMPT_STYLE int     1        CASCADE_PROMPT_OFFICIAL, CASCADE_PROMPT_COMFYUI
 *  CASCADE_P_PREVIEW_EVERY int    0        0..10000: also preview every K Stage C steps
 *  CASCADE_P_THREADS      int     0        0..1024; 0 = $CASCADE_THREADS, else every processor
 *  CASCADE_P_KEEP_LOADED  int     0        0..1: keep the networks loaded between generate calls
 *  CASCADE_P_DEVICE       string  "auto"   auto (a usable CUDA GPU, else the CPU), cpu, cuda, cuda:N;
 *                                          NULL = $CASCADE_DEVICE, else auto
 *  CASCADE_P_PRECISION    string  "auto"   auto, fp32, bf16, fp16 (the CPU: fp32, bf16 with AVX512-BF16)
 *  CASCADE_P_MODELS_DIR   string  NULL     first folder searched by cascade_find_models (then
 *                                          $CASCADE_MODELS, then $XDG_DATA_HOME/cascade/models)
 *  CASCADE_P_TOKENIZER    string  NULL     folder with vocab.json + merges.txt (NULL: what
 *                                          cascade_find_models finds, $CASCADE_TOKENIZER)
 *  CASCADE_P_EMBEDDINGS   string  NULL     folder of textual inversions for embedding:NAME
 *  CASCADE_P_VARIANT_C    string  "auto"   auto, full, bf16, lite, lite-bf16 (cascade_find_models)
 *  CASCADE_P_VARIANT_B    string  "auto"   same, for Stage B
 *  CASCADE_P_KSAMPLER_C   string  NULL     ComfyUI's KSampler for Stage C instead of CASCADE_P_SAMPLER:
 *                                          euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, lcm, ddpm
 *                                          (cascade_param_choice lists them); set both stages or neither
 *  CASCADE_P_KSAMPLER_B   string  NULL     the same for Stage B
 *  CASCADE_P_SCHEDULER_C  string  "simple" the KSampler's scheduler: simple, normal, karras,
 *                                          exponential, sgm_uniform
 *  CASCADE_P_SCHEDULER_B  string  "simple" the same for Stage B
 *  CASCADE_P_DENOISE_C    float   1        (0..1] the KSampler's denoise (the last steps of an
 *                                          int(steps/denoise)-step schedule); with an init image
 *                                          its latent is the start, as ComfyUI's img2img
 *  CASCADE_P_DENOISE_B    float   1        (0..1] the same for Stage B
 *  CASCADE_P_SEED_B       int     -1       -1..2^63-1 Stage B's KSampler seed; -1: CASCADE_P_SEED
 *  CASCADE_P_ZERO_NEGATIVE_B int  0        0..1 with KSamplers: Stage B's negative is zeros
 *                                          (ComfyUI's ConditioningZeroOut), not the negative prompt
 *  CASCADE_P_SAMPLER_B    int     -1       -1..2 Stage B's official sampler; -1: CASCADE_P_SAMPLER
 *  CASCADE_P_ETA_B        float   -1       -1..1 Stage B's DDIM eta; below 0: CASCADE_P_ETA
 *  CASCADE_P_CFG_RHO_B    float   -1       -1..1 Stage B's cfg_rho; below 0: CASCADE_P_CFG_RHO
 *  CASCADE_P_STRENGTH     float   0.6      (0..1] the official samplers' img2img strength: the part of
 *                                          the schedule left; 1 = text to image (the image unused)
 *  CASCADE_P_INIT_RESIZE  int     0        CASCADE_RESIZE_COVER: the init image resized (bicubic with
 *                                          antialias) to cover 32 pixels per Stage C latent pixel, then
 *                                          centre-cropped; CASCADE_RESIZE_COMFYUI: as ComfyUI's
 *                                          StableCascade_StageC_VAEEncode (cropped to the aspect, then
 *                                          plain bicubic)
 *  CASCADE_P_LORA_LENIENT int     0        0..1 LoRA keys that match no weight: a notice, not an error
 */
typedef enum {
    CASCADE_P_WIDTH = 0,
    CASCADE_P_HEIGHT,
    CASCADE_P_SEED,
    CASCADE_P_BATCH,
    CASCADE_P_STEPS_C,
    CASCADE_P_STEPS_B,
    CASCADE_P_CFG_C,
    CASCADE_P_CFG_B,
    CASCADE_P_CFG_RHO,
    CASCADE_P_SHIFT_C,
    CASCADE_P_SHIFT_B,
    CASCADE_P_SAMPLER,
    CASCADE_P_ETA,
    CASCADE_P_ROUND,
    CASCADE_P_PROMPT_STYLE,
    CASCADE_P_PREVIEW_EVERY,
    CASCADE_P_THREADS,
    CASCADE_P_KEEP_LOADED,
    CASCADE_P_DEVICE,
    CASCADE_P_PRECISION,
    CASCADE_P_MODELS_DIR,
    CASCADE_P_TOKENIZER,
    CASCADE_P_EMBEDDINGS,
    CASCADE_P_VARIANT_C,
    CASCADE_P_VARIANT_B,
    CASCADE_P_KSAMPLER_C,
    CASCADE_P_KSAMPLER_B,
    CASCADE_P_SCHEDULER_C,
    CASCADE_P_SCHEDULER_B,
    CASCADE_P_DENOISE_C,
    CASCADE_P_DENOISE_B,
    CASCADE_P_SEED_B,
    CASCADE_P_ZERO_NEGATIVE_B,
    CASCADE_P_SAMPLER_B,
    CASCADE_P_ETA_B,
    CASCADE_P_CFG_RHO_B,
    CASCADE_P_STRENGTH,
    CASCADE_P_INIT_RESIZE,
    CASCADE_P_LORA_LENIENT,
    CASCADE_P_COUNT          /* the number of keys of this version */
} cascade_param;

enum { CASCADE_T_INT = 1, CASCADE_T_FLOAT = 2, CASCADE_T_STRING = 3 };
enum { CASCADE_SAMPLER_DDPM = 0, CASCADE_SAMPLER_DDIM = 1, CASCADE_SAMPLER_LCM = 2 };
enum { CASCADE_PROMPT_OFFICIAL = 0, CASCADE_PROMPT_COMFYUI = 1 };
enum { CASCADE_RESIZE_COVER = 0, CASCADE_RESIZE_COMFYUI = 1 };

CASCADE_API int cascade_set_int(cascade_ctx *ctx, cascade_param key, long long value);
CASCADE_API int cascade_set_float(cascade_ctx *ctx, cascade_param key, double value);
/* The string is copied; NULL restores the default. */
CASCADE_API int cascade_set_string(cascade_ctx *ctx, cascade_param key, const char *value);
CASCADE_API int cascade_get_int(const cascade_ctx *ctx, cascade_param key, long long *value);
CASCADE_API int cascade_get_float(const cascade_ctx *ctx, cascade_param key, double *value);
/* *value: the context's copy (NULL when unset), valid until it is set again. */
CASCADE_API int cascade_get_string(const cascade_ctx *ctx, cascade_param key, const char **value);

/* The table itself, for programs that build their options from it: the
 * name ("width", "steps_c", ...; NULL for an unknown key), the type
 * (CASCADE_T_*; 0 unknown), and for numbers the range and default (min/max
 * inclusive; a float key with an open lower end reports it in *min_open). */
CASCADE_API const char *cascade_param_name(cascade_param key);
CASCADE_API int cascade_param_type(cascade_param key);
CASCADE_API int cascade_param_range(cascade_param key, double *min, double *max, int *min_open, double *def);
/* An int key's values are multiples of this (8 for the width and height;
 * 1: any); CASCADE_E_ARG for another key. */
CASCADE_API int cascade_param_step(cascade_param key);
/* The key of a name, or CASCADE_E_ARG. */
CASCADE_API int cascade_param_find(const char *name);
/* A string key's accepted value i ("euler", "karras", ...; NULL past the
 * last, and for a key that takes any string): for --help texts. */
CASCADE_API const char *cascade_param_choice(cascade_param key, int i);

/* ---- setting up the calling thread ----
 * Every call that computes sets the calling thread up for its context
 * first. cascade_setup does it now, so that a program can report a bad
 * setting, and what was chosen, before any work; what picks the parts
 * (several may be or'ed; one at a time lets a program tell which failed):
 *   CASCADE_SETUP_KERNELS  the kernels for this CPU ($CASCADE_SIMD: an
 *                          unknown level is CASCADE_E_ARG, one this CPU
 *                          lacks CASCADE_E_UNSUP), CASCADE_P_THREADS (or a
 *                          valid $CASCADE_THREADS), a valid $CASCADE_MEMORY
 *   CASCADE_SETUP_BACKEND  unless a device is already in use on this thread:
 *                          the plugin $CASCADE_BACKEND names (cpu, cuda or a
 *                          path), which an "auto" device then keeps
 *   CASCADE_SETUP_DEVICE   CASCADE_P_DEVICE and CASCADE_P_PRECISION (this part
 *                          alone sets no kernels up); a failure's message
 *                          starts with the key and its value ("device cuda:1:
 *                          ...", "precision fp16: ...") */
enum {
    CASCADE_SETUP_KERNELS = 1,
    CASCADE_SETUP_BACKEND = 2,
    CASCADE_SETUP_DEVICE = 4,
    CASCADE_SETUP_ALL = 7
};
CASCADE_API int cascade_setup(cascade_ctx *ctx, int what);
/* After CASCADE_SETUP_DEVICE (or a computing call) on ctx: one line saying
 * what computes and why ("cuda, bf16"; "cpu, fp32 (backend 'cuda': plugin
 * not found ...)"), and in *precision (may be NULL) the CASCADE_PREC_* in
 * force; before: "" and -1. Valid until the next setup of ctx. */
enum { CASCADE_PREC_FP32 = 0, CASCADE_PREC_BF16 = 1, CASCADE_PREC_FP16 = 2 };
CASCADE_API const char *cascade_device_chosen(const cascade_ctx *ctx, int *precision);

/* ---- model files ---- */
typedef enum {
    CASCADE_PART_STAGE_C = 0,
    CASCADE_PART_STAGE_B,
    CASCADE_PART_STAGE_A,
    CASCADE_PART_TEXT_ENCODER,
    CASCADE_PART_EFFNET,
    CASCADE_PART_PREVIEWER,
    CASCADE_PART_CLIP_VISION,
    CASCADE_PART_COUNT
} cascade_part;

/* Uses the file at path for part (checked when a generation starts: the
 * file must hold that network). NULL forgets it. */
CASCADE_API int cascade_set_model(cascade_ctx *ctx, cascade_part part, const char *path);
/* The file the context will use for part, or NULL. */
CASCADE_API const char *cascade_get_model(const cascade_ctx *ctx, cascade_part part);
/* Whether the file at path holds part's network, checked as a scan checks
 * a file set with cascade_set_model (a file of several networks holds
 * each; only its header is read): 0, or CASCADE_E_MODEL ("PATH: holds
 * Stage B, not a Stage A", or why the file cannot be used) / CASCADE_E_IO
 * (missing) with the message. */
CASCADE_API int cascade_model_check(cascade_ctx *ctx, cascade_part part, const char *path);
/* Looks for model files (CASCADE_P_MODELS_DIR, $CASCADE_MODELS, the default
 * folder; flat, Hugging Face, diffusers and ComfyUI layouts, recognised by
 * their tensors) and, for each part not set with cascade_set_model, takes
 * the best variant present that fits this machine's memory at the current
 * width, height and batch (CASCADE_P_VARIANT_C/B may ask for one). Also
 * takes the tokenizer folder found, unless CASCADE_P_TOKENIZER is set.
 * CASCADE_E_MODEL if a required part (Stage C, B, A, text encoder) or the
 * tokenizer is missing, CASCADE_E_NOMEM if no variant fits. */
CASCADE_API int cascade_find_models(cascade_ctx *ctx);
/* Tiny networks of every stage with deterministic random weights, written
 * into a private temporary folder that cascade_ctx_free removes: the whole
 * pipeline runs in about a second; the image is noise. Sets every part and
 * a byte-level tokenizer (unless CASCADE_P_TOKENIZER is set), and width and
 * height to 256. */
CASCADE_API int cascade_use_demo(cascade_ctx *ctx);
/* Without files: the best of "full", "bf16", "lite", "lite-bf16" whose
 * official networks fit this machine's memory at the current width,
 * height and batch; *need (may be NULL): its peak need in bytes. */
CASCADE_API const char *cascade_recommend_variant(cascade_ctx *ctx, unsigned long long *need);

/* What cascade_find_models sees: every safetensors file found. */
typedef struct cascade_models cascade_models;
CASCADE_API int cascade_models_scan(cascade_ctx *ctx, cascade_models **out);
CASCADE_API int cascade_models_count(const cascade_models *m);
CASCADE_API const char *cascade_models_path(const cascade_models *m, int i);
/* The part file i fills, or -1 when it cannot be used (see _problem). */
CASCADE_API int cascade_models_part(const cascade_models *m, int i);
/* "stage_c_lite", "text_encoder", ... ("" if not recognised) and "BF16", "F32", ... */
CASCADE_API const char *cascade_models_network(const cascade_models *m, int i);
CASCADE_API const char *cascade_models_dtype(const cascade_models *m, int i);
/* NULL, or why file i cannot be used. */
CASCADE_API const char *cascade_models_problem(const cascade_models *m, int i);
CASCADE_API unsigned long long cascade_models_size(const cascade_models *m, int i);
/* The tokenizer folder found, or NULL. */
CASCADE_API const char *cascade_models_tokenizer(const cascade_models *m);
CASCADE_API void cascade_models_free(cascade_models *m);
/* The scan searches and forces the parts set with cascade_set_model, as
 * cascade_find_models does. More of file i by key (a key of the other
 * type, or i out of range: NULL / -1): */
typedef enum {
    CASCADE_MF_VARIANT = 0,      /* string: Stage C/B: "full", "bf16", "lite", "lite-bf16"; else NULL */
    CASCADE_MF_NAMING,           /* string: its tensor names ("official", "diffusers", "comfyui", ...) */
    CASCADE_MF_PREFIX,           /* string: the prefix of its tensors in the file, "" for none */
    CASCADE_MF_CONFIG,           /* string: a text encoder's config.json beside it, else NULL */
    CASCADE_MF_ROOT,             /* string: the search folder it was found in; NULL: set by the caller */
    CASCADE_MF_TENSORS,          /* int: the tensors the network uses */
    CASCADE_MF_EXTRA_TENSORS,    /* int: other tensors under its prefix (ignored) */
    CASCADE_MF_PARAMS,           /* int: its parameters */
    CASCADE_MF_WEIGHT_BYTES,     /* int: the bytes of those tensors at the file's dtype */
    CASCADE_MF_FOREIGN,          /* int: 1: a readable safetensors file of another model */
    CASCADE_MF_SAME_AS           /* int: k > 0: a further network of the file of entry i - k; else 0 */
} cascade_models_key;
CASCADE_API const char *cascade_models_string(const cascade_models *m, int i, cascade_models_key key);
CASCADE_API long long cascade_models_int(const cascade_models *m, int i, cascade_models_key key);
/* Search folder i, in order (NULL past the last), and in *why (may be
 * NULL) why it is searched ("--models", "$CASCADE_MODELS", "default"). */
CASCADE_API const char *cascade_models_root(const cascade_models *m, int i, const char **why);
/* Folder i examined or noted as missing (NULL past the last); i = -1: all
 * of them in one line as the library's messages word it ("looked in: ..."). */
CASCADE_API const char *cascade_models_looked(const cascade_models *m, int i);
/* The xxh64 of file i, as the PNG metadata records it, through the cache
 * in $XDG_CACHE_HOME/cascade/hashes. Returns 1 when the cache had it, 0
 * when the file was read now (a stop requested by a signal ends the read:
 * CASCADE_E_INTR), or a negative code. With CASCADE_HASH_CACHED_ONLY the
 * cache only: 0 and no hash when it lacks the file. */
enum { CASCADE_HASH_CACHED_ONLY = 1 };
CASCADE_API int cascade_models_hash(cascade_ctx *ctx, const cascade_models *m, int i, int flags,
                                    unsigned long long *hash);
/* "stage_c", "text_encoder", ... and "Stage C", "text encoder", ... (NULL
 * for an unknown part). */
CASCADE_API const char *cascade_part_name(cascade_part part);
CASCADE_API const char *cascade_part_title(cascade_part part);

/* The choice cascade_find_models makes from m, with its memory figures, for
 * width x height and batch given here (within the limits of
 * CASCADE_P_WIDTH, _HEIGHT and _BATCH, as cascade_generate) and the
 * context's CASCADE_P_VARIANT_C/B. When the calling thread runs on a GPU
 * (after cascade_generate or cascade_encode_text), its free memory counts,
 * else this process's (MemAvailable, the cgroup limit, $CASCADE_MEMORY).
 * An error (a required part missing) is a negative code. cascade_recommend
 * does the same without files: the variant to download (CASCADE_CH_VARIANT,
 * CASCADE_CH_NEED_MAX, _HAVE, _MARGIN). Keys per part, then for the whole
 * (part ignored); free with cascade_choice_free. */
typedef struct cascade_choice cascade_choice;
typedef enum {
    CASCADE_CH_FILE = 0,         /* int: the entry of m taken for the part, -1 none */
    CASCADE_CH_NEED,             /* int: the part's bytes: weights + scratch + activations */
    CASCADE_CH_WEIGHTS,          /* int */
    CASCADE_CH_SCRATCH,          /* int */
    CASCADE_CH_ACTIVATIONS,      /* int */
    CASCADE_CH_WHY,              /* string: why this file */
    CASCADE_CH_HAVE = 16,        /* int: the memory available */
    CASCADE_CH_HAVE_SOURCE,      /* string: where that figure comes from */
    CASCADE_CH_MARGIN,           /* int: the bytes kept free */
    CASCADE_CH_NEED_MAX,         /* int: the largest part's need */
    CASCADE_CH_NEED_PART,        /* int: that part (-1 none) */
    CASCADE_CH_FITS,             /* int: 1 when NEED_MAX + MARGIN <= HAVE */
    CASCADE_CH_ON_DEVICE,        /* int: 1 when HAVE is a GPU's free memory */
    CASCADE_CH_VARIANT           /* string: cascade_recommend's variant */
} cascade_choice_key;
CASCADE_API int cascade_models_choose(cascade_ctx *ctx, const cascade_models *m, int width, int height, int batch,
                                      cascade_choice **out);
CASCADE_API int cascade_recommend(cascade_ctx *ctx, int width, int height, int batch, cascade_choice **out);
CASCADE_API long long cascade_choice_int(const cascade_choice *c, int part, cascade_choice_key key);
CASCADE_API const char *cascade_choice_string(const cascade_choice *c, int part, cascade_choice_key key);
CASCADE_API void cascade_choice_free(cascade_choice *c);
/* Takes choice c of scan m into ctx, as cascade_find_models does: the file
 * of each part not set with cascade_set_model (a text encoder with its key
 * prefix and config.json), the first usable CLIP vision model if none is
 * set, and the tokenizer folder found. A program that shows the choice
 * (cascade generate) uses this instead of cascade_find_models. */
CASCADE_API int cascade_models_use(cascade_ctx *ctx, const cascade_models *m, const cascade_choice *c);

/* ---- generating ---- */
typedef enum {
    CASCADE_STAGE_TEXT = 0,   /* text encoder */
    CASCADE_STAGE_C,          /* Stage C sampling, one step per sampler step */
    CASCADE_STAGE_B,          /* Stage B sampling */
    CASCADE_STAGE_A,          /* Stage A decode, one step per image */
    CASCADE_STAGE_PREVIEW     /* the previewer */
} cascade_stage;

/* step -1: loading the stage's weights; 0: starting; i: i of steps done.
 * elapsed: seconds since the stage started. Return non-zero to cancel (the
 * generation then fails with CASCADE_E_INTR). */
typedef int (*cascade_progress_fn)(void *user, cascade_stage stage, int step, int steps, double elapsed);
/* The previewer's picture of the Stage C result at step of steps (steps =
 * final): count RGB images of width x height, rgb [count, height, width, 3],
 * valid during the call. Needs a previewer network. A positive return
 * cancels (CASCADE_E_INTR), a negative CASCADE_E_* code fails the
 * generation with that code. */
typedef int (*cascade_preview_fn)(void *user, int step, int steps, const unsigned char *rgb, int count, int width,
                                  int height);
/* One-line notices (a prompt cut at 77 tokens, a missing embedding, ...). */
typedef void (*cascade_log_fn)(void *user, const char *msg);

CASCADE_API void cascade_set_progress(cascade_ctx *ctx, cascade_progress_fn fn, void *user);
CASCADE_API void cascade_set_preview(cascade_ctx *ctx, cascade_preview_fn fn, void *user);
CASCADE_API void cascade_set_log(cascade_ctx *ctx, cascade_log_fn fn, void *user);

typedef struct cascade_image cascade_image;
typedef struct cascade_images cascade_images;

/* Text to images: prompt ("" is valid), negative (NULL = ""), with the
 * context's parameters and models. On success *out holds CASCADE_P_BATCH
 * images (free with cascade_images_free); on failure *out is NULL. */
CASCADE_API int cascade_generate(cascade_ctx *ctx, const char *prompt, const char *negative, cascade_images **out);
/* What cascade_generate checks before any long work, without loading
 * weights: the parameters together, the inputs (the demo's extra networks
 * written when they need them), each model file holding its part's network,
 * the networks fitting together and the size suiting them. */
CASCADE_API int cascade_check(cascade_ctx *ctx);
/* Asks the generation running on ctx (or the next one, if none runs) to
 * stop at its next check (every step and network block); it then returns
 * CASCADE_E_INTR. Async-signal-safe; callable from any thread. The request
 * is cleared when cascade_generate returns. */
CASCADE_API void cascade_cancel(cascade_ctx *ctx);
/* For a signal handler (a signal is for the whole process): asks every
 * computation in the process, on every context, to stop at its next check
 * (they return CASCADE_E_INTR), and records why (> 0, e.g. the signal
 * number; the first reason wins). Unlike cascade_cancel the request stays
 * for the rest of the process. Async-signal-safe; callable from any thread. */
CASCADE_API void cascade_cancel_all(int why);
/* The reason cascade_cancel_all recorded, or 0. Async-signal-safe. */
CASCADE_API int cascade_cancel_reason(void);
/* For a handler that must end the process at once (it then calls _exit):
 * removes every temporary file and folder the library has made and not
 * yet finished or removed (a PNG being written, cascade_use_demo's
 * networks). Async-signal-safe; it changes nothing else, so the process
 * must end after it. */
CASCADE_API void cascade_remove_temporaries(void);

/* ---- what a generation starts from, besides the prompt ----
 * LoRAs merged into part (CASCADE_PART_STAGE_C, _STAGE_B or _TEXT_ENCODER)
 * at load, in the order added, at strength (any finite number, may be
 * negative); the file is read when a generation loads the part (see
 * CASCADE_P_LORA_LENIENT); at most CASCADE_MAX_LORAS per part. The notes
 * of the merge go to the log callback. */
enum { CASCADE_MAX_LORAS = 16, CASCADE_MAX_IMAGES = 16 };
CASCADE_API int cascade_add_lora(cascade_ctx *ctx, cascade_part part, const char *path, double strength);
CASCADE_API void cascade_clear_loras(cascade_ctx *ctx);
/* Image variation: each image (PNG or JPEG file, or rgb [height, width, 3]
 * bytes with rows stride apart) is read and CLIP-preprocessed now (a bad
 * file fails here, before any model is loaded); its image embedding times
 * strength (-10..10) is one image token of Stage C's conditional half. At
 * most CASCADE_MAX_IMAGES. Needs a CLIP vision model (CASCADE_PART_CLIP_VISION; the demo
 * writes a tiny one). */
CASCADE_API int cascade_add_image(cascade_ctx *ctx, const char *path, double strength);
CASCADE_API int cascade_add_image_rgb(cascade_ctx *ctx, const unsigned char *rgb, int width, int height,
                                      size_t stride, double strength);
/* img2img: Stage C starts from this image (read now; NULL path forgets
 * it), resized as CASCADE_P_INIT_RESIZE says for the size of the
 * generation, encoded by the EfficientNet encoder (CASCADE_PART_EFFNET;
 * the demo writes a tiny one) and noised to CASCADE_P_STRENGTH (official
 * samplers) or taken as the latent of a KSampler's CASCADE_P_DENOISE_C. */
CASCADE_API int cascade_set_init_image(cascade_ctx *ctx, const char *path);
CASCADE_API int cascade_set_init_image_rgb(cascade_ctx *ctx, const unsigned char *rgb, int width, int height,
                                           size_t stride);
/* Forgets the images of cascade_add_image* and the init image. */
CASCADE_API void cascade_clear_images(cascade_ctx *ctx);
/* What the PNG metadata records of the inputs, as compact JSON (NULL when
 * there is none): CASCADE_INPUT_IMAGES, a list of {file, xxh64, size,
 * strength} (file "" for an RGB buffer); CASCADE_INPUT_INIT, one such
 * object with CASCADE_P_STRENGTH (NULL when the strength is 1 and no
 * KSampler is set: the image is not used). Valid until the next call on
 * ctx that changes the inputs or asks again. */
enum { CASCADE_INPUT_IMAGES = 0, CASCADE_INPUT_INIT = 1 };
CASCADE_API const char *cascade_input_json(cascade_ctx *ctx, int which);

/* The latents of a generation as they become final, in ComfyUI's LATENT
 * form and scale (what SaveLatent writes): the init image's EfficientNet
 * latent, the Stage C result, the Stage B result; x [n, c, h, w], valid
 * during the call. Non-zero cancels (CASCADE_E_INTR), a negative
 * CASCADE_E_* code fails the generation with that code. */
enum { CASCADE_LATENT_ENCODED = 0, CASCADE_LATENT_C = 1, CASCADE_LATENT_B = 2 };
typedef int (*cascade_latent_fn)(void *user, int which, const float *x, int n, int c, int h, int w);
CASCADE_API void cascade_set_latent(cascade_ctx *ctx, cascade_latent_fn fn, void *user);

CASCADE_API int cascade_images_count(const cascade_images *im);
/* Image i (0-based), owned by im; NULL if out of range. */
CASCADE_API const cascade_image *cascade_images_get(const cascade_images *im, int i);
CASCADE_API void cascade_images_free(cascade_images *im);
CASCADE_API int cascade_image_width(const cascade_image *img);
CASCADE_API int cascade_image_height(const cascade_image *img);
/* 3: interleaved 8-bit RGB */
CASCADE_API int cascade_image_channels(const cascade_image *img);
/* bytes from one row to the next */
CASCADE_API size_t cascade_image_stride(const cascade_image *img);
CASCADE_API const unsigned char *cascade_image_data(const cascade_image *img);
/* the seed of the generation and the image's index in its batch */
CASCADE_API unsigned long long cascade_image_seed(const cascade_image *img);
CASCADE_API int cascade_image_index(const cascade_image *img);

enum { CASCADE_PNG_FORCE = 1 };   /* replace an existing regular file */
/* Writes img as an 8-bit RGB PNG with the generation's settings as text
 * chunks (prompt, negative_prompt, seed, ..., parameters). Through a
 * temporary file renamed into place: never a half-written file; an existing
 * file is an error unless flags has CASCADE_PNG_FORCE. */
CASCADE_API int cascade_image_write_png(cascade_ctx *ctx, const cascade_image *img, const char *path, int flags);

/* ---- files, for programs that write their own ----
 * An 8-bit RGB PNG of rgb [height, width, 3] (rows stride apart) with the
 * text chunks text[2k] = text[2k+1] (k < n_text), written as
 * cascade_image_write_png does. flags: CASCADE_PNG_FORCE, or
 * CASCADE_PNG_NUMBERED: path is DIR/PREFIX and the file the next free
 * DIR/PREFIX_NNNNN.png (PREFIX_NNNNN_.png with CASCADE_PNG_COMFY_NAMES, as
 * ComfyUI's SaveImage numbers them); another writer taking a number first
 * is skipped, nothing is replaced. The path written goes to written (may
 * be NULL). */
enum { CASCADE_PNG_NUMBERED = 2, CASCADE_PNG_COMFY_NAMES = 4 };
CASCADE_API int cascade_png_write(cascade_ctx *ctx, const unsigned char *rgb, int width, int height, size_t stride,
                                  const char *const *text, int n_text, const char *path, int flags, char *written,
                                  size_t len);
/* Whether path (a PNG or latent to come; numbered names counted at their
 * longest) can be made: the lengths of its name, its temporary name and
 * the path. CASCADE_E_ARG with the message otherwise; the disk is not
 * touched. */
CASCADE_API int cascade_check_output_name(cascade_ctx *ctx, const char *path);
/* ComfyUI's .latent: x [n, c, h, w] with the text pairs as metadata,
 * written as SaveLatent names it, DIR/PREFIX_NNNNN_.latent (path is
 * DIR/PREFIX; the folder must exist), through a temporary file; the path
 * written goes to written (may be NULL). */
CASCADE_API int cascade_latent_write(cascade_ctx *ctx, const float *x, int n, int c, int h, int w,
                                     const char *const *text, int n_text, const char *path, char *written,
                                     size_t len);
/* The side of a latent for an image side of px pixels: which
 * CASCADE_LATENT_C, Stage C's (ceil(px / 42.67)), or CASCADE_LATENT_B,
 * Stage B's (ceil(px / 4)); CASCADE_E_ARG for px below 1 or another which
 * (a side past CASCADE_P_WIDTH's range is sized, not checked). */
CASCADE_API int cascade_latent_side(int px, int which);
/* A .latent file as LoadLatent reads it (ComfyUI's multiplier for files
 * without the marker applied): *x [n, c, h, w] (free with cascade_free). */
CASCADE_API int cascade_latent_read(cascade_ctx *ctx, const char *path, float **x, int *n, int *c, int *h, int *w);
/* The xxh64 of any file as the metadata records it, through the cache of
 * cascade_models_hash (same return values; CASCADE_HASH_CACHED_ONLY), or
 * with CASCADE_HASH_NO_CACHE neither looked up nor remembered (temporary
 * files). ctx may be NULL (a failure's message is then cascade_last_error's
 * only): so called, it may run on several threads at once. */
enum { CASCADE_HASH_NO_CACHE = 2 };
CASCADE_API int cascade_file_hash(cascade_ctx *ctx, const char *path, int flags, unsigned long long *hash);
/* A file from outside read whole, with the checks of the library's own
 * inputs: a regular file (a FIFO or device is refused before it is
 * opened) of at most max bytes; what names its kind in the messages
 * ("PATH: 70 MiB, more than the 64 MiB a workflow may have"). *buf is
 * NUL-terminated (free with cascade_free), *len (may be NULL) its bytes
 * without the NUL. ctx may be NULL, as for cascade_file_hash. */
CASCADE_API int cascade_file_read(cascade_ctx *ctx, const char *path, const char *what, unsigned long long max,
                                  char **buf, size_t *len);
/* The width and height of an image file (PNG or JPEG), read with the
 * checks and messages of cascade_add_image and cascade_set_init_image. */
CASCADE_API int cascade_image_size(cascade_ctx *ctx, const char *path, int *width, int *height);

/* ---- text, for tools ---- */
/* The CLIP tokens of text: BOS, every BPE token (not cut at 77), EOS, with
 * the context's tokenizer (CASCADE_P_TOKENIZER, or the one found; the
 * byte-level fallback after cascade_use_demo). Writes at most max ids and
 * returns how many there are (more than max: call again with more room). */
CASCADE_API int cascade_tokenize(cascade_ctx *ctx, const char *text, int *ids, int max);
/* The tokens of text as the text encoder reads them, with their strings,
 * in CASCADE_P_PROMPT_STYLE. CASCADE_PROMPT_OFFICIAL: one run, BOS, every
 * BPE token (not cut at 77), EOS, each of weight 1. CASCADE_PROMPT_COMFYUI:
 * chunks of CASCADE_TOKEN_CHUNK tokens (BOS, up to 75 tokens, EOS, EOS
 * padding) with each token's weight; an embedding:NAME of
 * CASCADE_P_EMBEDDINGS gives ids from the vocabulary's size up, whose text
 * is "<embedding>". Notices (a missing embedding) go to the log callback.
 * Free with cascade_tokens_free. */
typedef struct cascade_tokens cascade_tokens;
enum { CASCADE_TOKEN_CHUNK = 77 };
CASCADE_API int cascade_tokens_new(cascade_ctx *ctx, const char *text, cascade_tokens **out);
/* All tokens (chunks x CASCADE_TOKEN_CHUNK in the comfyui style). */
CASCADE_API int cascade_tokens_count(const cascade_tokens *t);
/* The chunks of the comfyui style; 0 in the official style. */
CASCADE_API int cascade_tokens_chunks(const cascade_tokens *t);
/* Token i's id (-1 out of range), weight, and text ("cat</w>"; NULL out of
 * range or for an id the vocabulary lacks). */
CASCADE_API int cascade_tokens_id(const cascade_tokens *t, int i);
CASCADE_API double cascade_tokens_weight(const cascade_tokens *t, int i);
CASCADE_API const char *cascade_tokens_text(const cascade_tokens *t, int i);
CASCADE_API void cascade_tokens_free(cascade_tokens *t);
/* The conditioning Stage C gets for text, in CASCADE_P_PROMPT_STYLE: hidden
 * [tokens, width] and pooled [pooled_width] floats, allocated (free with
 * cascade_free). Loads the text encoder for the call. */
CASCADE_API int cascade_encode_text(cascade_ctx *ctx, const char *text, float **hidden, int *tokens, int *width,
                                    float **pooled, int *pooled_width);
/* Frees memory the library returned (cascade_encode_text). NULL is fine. */
CASCADE_API void cascade_free(void *p);


/* ---- this machine and this build (what `cascade info` shows) ----
 * No context: these describe the process. A string key read with
 * cascade_info_int (or an int key with cascade_info_string) gives -1
 * (NULL); strings stay valid for the life of the process. The first call
 * sets the library up, as any other call does. */
typedef enum {
    CASCADE_INFO_CPU_MODEL = 0,  /* string: the processor's name */
    CASCADE_INFO_CPU_FEATURES,   /* string: the features found, space-separated ("avx2 fma f16c ...") */
    CASCADE_INFO_SIMD,           /* string: the kernel level in use ("avx2"; $CASCADE_SIMD forces one) */
    CASCADE_INFO_GEMM,           /* string: how matrix products are computed */
    CASCADE_INFO_CPU_BF16,       /* string: the native bf16 kernel, NULL when this level has none */
    CASCADE_INFO_BACKEND,        /* string: the calling thread's backend ("cpu", "cuda"; $CASCADE_BACKEND) */
    CASCADE_INFO_PLUGIN_DIR,     /* string: the install's plugin folder (searched after $CASCADE_PLUGIN_DIR) */
    CASCADE_INFO_BUILD,          /* string: configure's choices ("openmp=... avx2=yes ... cuda=no") */
    CASCADE_INFO_THREADS,        /* int: the threads the calling thread's computations use */
    CASCADE_INFO_OPENMP,         /* int: 1 when built with OpenMP (else one thread) */
    CASCADE_INFO_MAX_THREADS,    /* int: OpenMP's current maximum (1 without OpenMP) */
    CASCADE_INFO_PROCESSORS,     /* int: the processors OpenMP sees (1 without OpenMP) */
    CASCADE_INFO_CUDA_BUILT,     /* int: 1 when the CUDA plugin was built with this library */
    CASCADE_INFO_DEVICE_PEAK,    /* int: the most bytes the calling thread's device has held (-1: the CPU) */
    CASCADE_INFO_COUNT           /* the number of keys of this version */
} cascade_info;

CASCADE_API const char *cascade_info_string(cascade_info key);
CASCADE_API long long cascade_info_int(cascade_info key);
/* The SIMD levels this library knows, from the reference upward: the name
 * of level i ("scalar", "avx2", ...; NULL past the last) and in *usable
 * (may be NULL) whether it is built in and this CPU and OS run it. Sets
 * nothing up, so a bad $CASCADE_SIMD does not stop it. */
CASCADE_API const char *cascade_simd_level(int i, int *usable);
/* With $CASCADE_PROFILE=1 each op's time is added to its kind (work on a
 * device waits for each op; on the CPU the outermost op of a thread is
 * timed): the table of those times since the last report
 * (a heading, a line per kind, the total), each line without its newline
 * to fn, which may be NULL to drop it; the table then starts again. Nothing
 * when nothing was timed. */
CASCADE_API void cascade_profile_report(cascade_log_fn fn, void *user);

/* The GPUs the CUDA plugin sees. cascade_gpus_list loads the plugin only to
 * ask it (the backend in use does not change); when the plugin does not
 * load, a negative code and cascade_errmsg say why ("plugin not found
 * ..."). Keys for the plugin (i ignored) and for GPU i (0 <= i <
 * CASCADE_GPUS_LISTED); a key of the other type gives -1 or NULL. */
typedef struct cascade_gpus cascade_gpus;
typedef enum {
    CASCADE_GPUS_PLUGIN = 0,     /* string: the plugin file loaded */
    CASCADE_GPUS_VERSION,        /* string: what it was built with ("CUDA runtime 12.4 (static), cuBLAS, ...") */
    CASCADE_GPUS_ABI,            /* int: its backend ABI number */
    CASCADE_GPUS_COUNT,          /* int: the GPUs it sees */
    CASCADE_GPUS_LISTED,         /* int: of those, the ones described (at most 16) */
    CASCADE_GPUS_REASON,         /* string: with COUNT 0, why none is usable */
    CASCADE_GPU_NAME = 32,       /* string: GPU i's name */
    CASCADE_GPU_CC_MAJOR,        /* int: compute capability, 9 of 9.0 */
    CASCADE_GPU_CC_MINOR,        /* int: 0 of 9.0 */
    CASCADE_GPU_TOTAL_BYTES,     /* int: memory */
    CASCADE_GPU_FREE_BYTES,      /* int: memory free when listed */
    CASCADE_GPU_DRIVER,          /* int: driver version, 13000 for 13.0; 0 unknown */
    CASCADE_GPU_USABLE,          /* int: 0 when the plugin cannot run on it */
    CASCADE_GPU_WHY              /* string: when not usable, why ("no kernel image for sm_70"); else NULL */
} cascade_gpu_key;
CASCADE_API int cascade_gpus_list(cascade_ctx *ctx, cascade_gpus **out);
CASCADE_API const char *cascade_gpus_string(const cascade_gpus *g, int i, cascade_gpu_key key);
CASCADE_API long long cascade_gpus_int(const cascade_gpus *g, int i, cascade_gpu_key key);
CASCADE_API void cascade_gpus_free(cascade_gpus *g);

/* ---- training ----
 * Stage C fine-tuning, full or LoRA, with the recipe of kohya sd-scripts'
 * stable_cascade_train_stage_c.py / stable_cascade_train_c_network.py
 * (doc/training.md): images and captions are encoded once (EffNet latents,
 * CLIP-G embeddings), then epochs of bucketed batches, Adafactor or AdamW,
 * checkpoints, sample images and a JSON-lines log (OUTPUT_DIR/NAME.jsonl).
 * A trainer is made from a context and runs on the calling thread with
 * the context's threads and the device cascade_setup chose for that thread
 * (none: the CPU), always in float32. Settings are by key, as the
 * context's parameters; each key has one type (cascade_param_type's
 * CASCADE_T_*), a value of the wrong type or out of range is CASCADE_E_ARG
 * with the key named in cascade_errmsg(ctx), and leaves the value as it was.
 * The names are kohya's option names (cascade_train_param_name).
 *
 *  key                      type   default      range / values
 *  CASCADE_TP_STAGE_C       string NULL         the Stage C to train (required; with RESUME
 *                                               of a full fine-tune, the state's weights)
 *  CASCADE_TP_EFFNET        string NULL         EfficientNet encoder (required)
 *  CASCADE_TP_PREVIEWER     string NULL         previewer (required for samples)
 *  CASCADE_TP_TEXT_ENCODER  string NULL         CLIP-G; NULL: found in the context's
 *                                               CASCADE_P_MODELS_DIR, $CASCADE_MODELS, ...;
 *                                               the tokenizer: CASCADE_P_TOKENIZER, else found
 *  CASCADE_TP_DATASET_CONFIG string NULL        kohya's dataset TOML ...
 *  CASCADE_TP_TRAIN_DATA_DIR string NULL        ... or a folder of images with NAME.txt
 *                                               captions (exactly one of the two)
 *  CASCADE_TP_WIDTH         int    1024         32..8192, the folder's (or a config
 *  CASCADE_TP_HEIGHT        int    1024         32..8192  without one) training size
 *  CASCADE_TP_BATCH         int    1            1..4096, the folder's batch size
 *  CASCADE_TP_OUTPUT_DIR    string NULL         checkpoints, states, samples, log (required;
 *                                               made if missing)
 *  CASCADE_TP_OUTPUT_NAME   string "last"       NAME-<epoch>.safetensors, NAME.safetensors,
 *                                               NAME.jsonl (no '/')
 *  CASCADE_TP_CACHE_DIR     string NULL         encodings kept on disk (NULL: OUTPUT_DIR/cache)
 *  CASCADE_TP_CACHE_LATENTS int    0            0..1 keep the latents in CACHE_DIR
 *  CASCADE_TP_CACHE_TEXT    int    0            0..1 keep the text encodings in CACHE_DIR
 *  CASCADE_TP_LEARNING_RATE float  1e-4         (0..10]
 *  CASCADE_TP_OPTIMIZER     int    0            CASCADE_OPT_ADAFACTOR, CASCADE_OPT_ADAMW
 *  CASCADE_TP_ADAFACTOR_EPS float  1e-30        (0..1]  transformers' eps[0]
 *  CASCADE_TP_ADAFACTOR_CLIP_THRESHOLD float 1  (0..1e6]
 *  CASCADE_TP_ADAFACTOR_DECAY_RATE float -0.8   -1..0
 *  CASCADE_TP_ADAFACTOR_WEIGHT_DECAY float 0    0..1
 *  CASCADE_TP_ADAMW_BETA1   float  0.9          0..1 (below 1)
 *  CASCADE_TP_ADAMW_BETA2   float  0.999        0..1 (below 1)
 *  CASCADE_TP_ADAMW_EPS     float  1e-8         (0..1]
 *  CASCADE_TP_ADAMW_WEIGHT_DECAY float 0.01     0..1
 *  CASCADE_TP_LR_SCHEDULER  string "constant"   constant, constant_with_warmup, linear, cosine,
 *                                               cosine_with_restarts, polynomial
 *  CASCADE_TP_LR_WARMUP     string NULL         warmup steps N, or a ratio of the steps (below 1,
 *                                               or N%); NULL: 0; not with constant
 *  CASCADE_TP_LR_CYCLES     int    1            0..1000000 (cosine_with_restarts)
 *  CASCADE_TP_LR_POWER      float  1            -1e6..1e6 (polynomial)
 *  CASCADE_TP_EPOCHS        int    0            0..1000000; 0: by CASCADE_TP_STEPS (wins over it)
 *  CASCADE_TP_STEPS         int    0            0..1e9 optimizer steps; 0 with no epochs: 1600
 *  CASCADE_TP_GRAD_ACCUM    int    1            1..65536 micro-batches per optimizer step
 *  CASCADE_TP_MAX_GRAD_NORM float  1            0..1e9; 0: no clipping
 *  CASCADE_TP_ADAPTIVE_LOSS int    0            0..1 AdaptiveLossWeight instead of P2
 *  CASCADE_TP_SEED          int    -1           -1..4294967295; -1: random (see CASCADE_TS_SEED)
 *  CASCADE_TP_SAVE_EVERY    int    0            0..1000000 NAME-<epoch> every N epochs (0: none)
 *  CASCADE_TP_SAVE_PRECISION int   0            CASCADE_PREC_FP32, _BF16, _FP16 of checkpoints
 *  CASCADE_TP_SAVE_STATE    int    0            0..1 a resumable state with every checkpoint
 *  CASCADE_TP_RESUME        string NULL         continue from OUTPUT_DIR/state-<step> (the same
 *                                               settings; else CASCADE_E_ARG)
 *  CASCADE_TP_SAMPLE_EVERY  int    0            0..1000000 sample images every N epochs
 *  CASCADE_TP_SAMPLE_PROMPTS string NULL        kohya's prompt file (TEXT --n NEG --w W --h H
 *                                               --d SEED --l CFG --s STEPS a line)
 *  CASCADE_TP_MIXED_PRECISION string "no"       no, bf16 (recorded; float32 math, and on a
 *                                               device products on TF32 tensor cores)
 *  CASCADE_TP_LORA          int    0            0..1 train a LoRA (kohya's networks.lora)
 *  CASCADE_TP_LORA_DIM      int    4            1..1048576 rank
 *  CASCADE_TP_LORA_ALPHA    float  1            0..1e9; 0: the rank
 *  CASCADE_TP_LORA_CONV_DIM int    0            0..1048576 rank of kxk convs (0: none)
 *  CASCADE_TP_LORA_CONV_ALPHA float 1           0..1e9
 *  CASCADE_TP_NETWORK_ARGS  string NULL         kohya's ss_network_args record (JSON) written
 *                                               into LoRA files; NULL: not written
 *  CASCADE_TP_NETWORK_WEIGHTS string NULL       a saved LoRA of the same settings to start from
 *  CASCADE_TP_FUSED_BACKWARD int   -1           -1..1 kohya's fused_backward_pass: each tensor
 *                                               clipped by its own norm and stepped as its
 *                                               block's backward ends (Adafactor, no gradient
 *                                               accumulation, no LoRA; else CASCADE_E_ARG);
 *                                               -1: on where allowed and a device's free
 *                                               memory cannot hold the unfused step when the
 *                                               training starts (a note says so; CASCADE_TS_FUSED)
 */
typedef struct cascade_trainer cascade_trainer;
typedef enum {
    CASCADE_TP_STAGE_C = 0,
    CASCADE_TP_EFFNET,
    CASCADE_TP_PREVIEWER,
    CASCADE_TP_TEXT_ENCODER,
    CASCADE_TP_DATASET_CONFIG,
    CASCADE_TP_TRAIN_DATA_DIR,
    CASCADE_TP_WIDTH,
    CASCADE_TP_HEIGHT,
    CASCADE_TP_BATCH,
    CASCADE_TP_OUTPUT_DIR,
    CASCADE_TP_OUTPUT_NAME,
    CASCADE_TP_CACHE_DIR,
    CASCADE_TP_CACHE_LATENTS,
    CASCADE_TP_CACHE_TEXT,
    CASCADE_TP_LEARNING_RATE,
    CASCADE_TP_OPTIMIZER,
    CASCADE_TP_ADAFACTOR_EPS,
    CASCADE_TP_ADAFACTOR_CLIP_THRESHOLD,
    CASCADE_TP_ADAFACTOR_DECAY_RATE,
    CASCADE_TP_ADAFACTOR_WEIGHT_DECAY,
    CASCADE_TP_ADAMW_BETA1,
    CASCADE_TP_ADAMW_BETA2,
    CASCADE_TP_ADAMW_EPS,
    CASCADE_TP_ADAMW_WEIGHT_DECAY,
    CASCADE_TP_LR_SCHEDULER,
    CASCADE_TP_LR_WARMUP,
    CASCADE_TP_LR_CYCLES,
    CASCADE_TP_LR_POWER,
    CASCADE_TP_EPOCHS,
    CASCADE_TP_STEPS,
    CASCADE_TP_GRAD_ACCUM,
    CASCADE_TP_MAX_GRAD_NORM,
    CASCADE_TP_ADAPTIVE_LOSS,
    CASCADE_TP_SEED,
    CASCADE_TP_SAVE_EVERY,
    CASCADE_TP_SAVE_PRECISION,
    CASCADE_TP_SAVE_STATE,
    CASCADE_TP_RESUME,
    CASCADE_TP_SAMPLE_EVERY,
    CASCADE_TP_SAMPLE_PROMPTS,
    CASCADE_TP_MIXED_PRECISION,
    CASCADE_TP_LORA,
    CASCADE_TP_LORA_DIM,
    CASCADE_TP_LORA_ALPHA,
    CASCADE_TP_LORA_CONV_DIM,
    CASCADE_TP_LORA_CONV_ALPHA,
    CASCADE_TP_NETWORK_ARGS,
    CASCADE_TP_NETWORK_WEIGHTS,
    CASCADE_TP_FUSED_BACKWARD,
    CASCADE_TP_COUNT         /* the number of keys of this version */
} cascade_train_param;
enum { CASCADE_OPT_ADAFACTOR = 0, CASCADE_OPT_ADAMW = 1 };

/* A trainer of ctx (which must outlive it; errors go to cascade_errmsg(ctx)). */
CASCADE_API int cascade_trainer_new(cascade_ctx *ctx, cascade_trainer **out);
CASCADE_API void cascade_trainer_free(cascade_trainer *t);
CASCADE_API int cascade_trainer_set_int(cascade_trainer *t, cascade_train_param key, long long value);
CASCADE_API int cascade_trainer_set_float(cascade_trainer *t, cascade_train_param key, double value);
/* The string is copied; NULL restores the default. */
CASCADE_API int cascade_trainer_set_string(cascade_trainer *t, cascade_train_param key, const char *value);
CASCADE_API int cascade_trainer_get_int(const cascade_trainer *t, cascade_train_param key, long long *value);
CASCADE_API int cascade_trainer_get_float(const cascade_trainer *t, cascade_train_param key, double *value);
CASCADE_API int cascade_trainer_get_string(const cascade_trainer *t, cascade_train_param key, const char **value);
/* The key table: name (NULL unknown), CASCADE_T_* type (0 unknown), the
 * range and default of a number key, and the key of a name (or CASCADE_E_ARG). */
CASCADE_API const char *cascade_train_param_name(cascade_train_param key);
CASCADE_API int cascade_train_param_type(cascade_train_param key);
CASCADE_API int cascade_train_param_range(cascade_train_param key, double *min, double *max, int *min_open,
                                          double *def);
CASCADE_API int cascade_train_param_find(const char *name);

/* What a run reports, as it happens. text: see each event; the figures
 * are read with cascade_trainer_stat during the call. A non-zero return
 * asks the run to stop, as cascade_cancel(ctx) does. */
typedef enum {
    CASCADE_TE_NOTE = 0,  /* text: a notice about the data (a missing caption file, ...) */
    CASCADE_TE_INFO,      /* text: a line of information */
    CASCADE_TE_ENCODE,    /* image ENCODED of IMAGES encoded (ELAPSED seconds); text NULL */
    CASCADE_TE_START,     /* the loop starts: IMAGES, BATCHES, EPOCHS, STEPS, SEED, RESUMED */
    CASCADE_TE_STEP,      /* an optimizer step done: STEP, EPOCH, LOSS, LOSS_SMOOTH, LR, ... */
    CASCADE_TE_EPOCH,     /* an epoch done: EPOCH, STEP, LOSS_SMOOTH, SEC_PER_STEP */
    CASCADE_TE_SAVED,     /* text: a checkpoint written */
    CASCADE_TE_SAMPLE,    /* text: a sample image written */
    CASCADE_TE_STOPPED    /* a stop was handled (CASCADE_TS_STOP says how); text: the state saved, or NULL */
} cascade_train_event;
typedef int (*cascade_train_fn)(void *user, cascade_trainer *t, cascade_train_event ev, const char *text);
CASCADE_API void cascade_trainer_set_callback(cascade_trainer *t, cascade_train_fn fn, void *user);

typedef enum {
    CASCADE_TS_IMAGES = 0,   /* images in the data set (repeats counted) */
    CASCADE_TS_BATCHES,      /* batches an epoch */
    CASCADE_TS_EPOCHS,       /* epochs of the run */
    CASCADE_TS_STEPS,        /* optimizer steps of the run */
    CASCADE_TS_SEED,         /* the seed in use (drawn when CASCADE_TP_SEED is -1) */
    CASCADE_TS_RESUMED,      /* 1 when continuing a state */
    CASCADE_TS_STEP,         /* optimizer steps done */
    CASCADE_TS_EPOCH,        /* the epoch (1-based) of the last step or event */
    CASCADE_TS_LOSS,         /* the last step's mean loss */
    CASCADE_TS_LOSS_SMOOTH,  /* its moving average (0.9) */
    CASCADE_TS_LR,           /* the last step's learning rate */
    CASCADE_TS_GRAD_NORM,    /* the last step's gradient norm before clipping */
    CASCADE_TS_SEC_PER_STEP, /* seconds a step, since this run started */
    CASCADE_TS_RSS_MIB,      /* the process's resident memory, MiB */
    CASCADE_TS_ENCODED,      /* images encoded so far */
    CASCADE_TS_ELAPSED,      /* seconds since the encoding started */
    CASCADE_TS_LORA_MODULES, /* after cascade_trainer_prepare of a LoRA run: its modules */
    CASCADE_TS_LORA_PARAMS,  /* and its trained values */
    CASCADE_TS_STOP,         /* after a stop: 1 before any optimizer step of this run (no new
                              * state), 2 the state was saved, 3 saving it failed (errmsg) */
    CASCADE_TS_FUSED,        /* once the encoding is done: 1 when the fused backward pass runs */
    CASCADE_TS_COUNT
} cascade_train_stat;
/* The figure of key (NaN for an unknown key or one not known yet). */
CASCADE_API double cascade_trainer_stat(const cascade_trainer *t, cascade_train_stat key);

/* Checks the settings together (the required keys, the schedule) without
 * opening anything: CASCADE_E_ARG, the message starting with the key's name. */
CASCADE_API int cascade_trainer_check(cascade_trainer *t);
/* Opens and checks every input (files, networks that fit together, the
 * data, a state to resume) and writes nothing; run calls it if it was
 * not called. Once prepared, the settings are fixed. */
CASCADE_API int cascade_trainer_prepare(cascade_trainer *t);
/* Trains to the end: 0, or a negative code. A stop (cascade_cancel(ctx),
 * cascade_cancel_all, the callback) drops the unfinished step, saves the
 * state of the last optimizer step atomically in OUTPUT_DIR/state-<step>
 * (CASCADE_TE_STOPPED) and returns CASCADE_E_INTR; a run set to RESUME
 * from it ends with the same bytes as an uninterrupted one (same machine
 * and threads). A trainer runs once. */
CASCADE_API int cascade_trainer_run(cascade_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
