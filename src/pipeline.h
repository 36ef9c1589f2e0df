/* Text-to-image end to end (doc/reference.md): tokenise -> CLIP-G ->
 * Stage C sampling -> Stage B sampling -> Stage A decode -> RGB8.
 *
 * Stages are loaded one at a time and released before the next one starts
 * (peak memory = the largest stage plus activations); keep_loaded keeps every
 * loaded stage in the pipeline object for the next generate call.
 *
 * Random numbers: one torch-CPU generator seeded with params.seed, drawn in
 * the official order (C init, one per C step, B init, one per B step), so a
 * seed gives the same image as the official code on the CPU. With a ComfyUI
 * sampler (ksampler.h) each stage is a KSampler with that seed: its initial
 * noise and its sampler noise each from a fresh generator seeded with it.
 *
 * CFG batches are [x; x] with the conditional half first. The unconditional
 * text is the encoding of the negative prompt ("" by default), Stage B's
 * unconditional effnet input is zeros, clip_img is zeros for both halves. */
#ifndef CS_PIPELINE_H
#define CS_PIPELINE_H

#include "pngout.h"
#include "sampler.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Files of one run. previewer may be NULL (no previews). tokenizer_dir NULL
 * means the byte-level fallback vocabulary (demo only). */
typedef struct {
    const char *tokenizer_dir;
    const char *text_encoder;
    const char *text_config;    /* config.json of the text encoder, or NULL */
    const char *text_prefix;    /* key prefix inside a combined file, or NULL */
    const char *stage_c;
    const char *stage_b;
    const char *stage_a;
    const char *previewer;
    /* LoRAs merged into Stage C, Stage B, the text encoder at load (lora.h;
     * NULL = none); borrowed: they must outlive the pipeline */
    struct cs_lora_list *lora_c, *lora_b, *lora_text;
    const char *clip_vision;    /* CLIP vision tower, needed only for image variation */
    const char *effnet;         /* EfficientNet encoder, needed only for img2img */
} cs_model_paths;

typedef enum {
    CS_STAGE_TEXT = 0,   /* text encoder (one step) */
    CS_STAGE_C,          /* Stage C sampling, one step per sampler step */
    CS_STAGE_B,
    CS_STAGE_A,          /* Stage A decode, one step per image */
    CS_STAGE_PREVIEW,    /* previewer (one step) */
    CS_STAGE_COUNT
} cs_stage_id;

const char *cs_stage_name(cs_stage_id s);   /* "text", "stage_c", ... */

#define CS_GEN_MAX_IMAGES 16
/* The one set of size and batch limits (the public parameter table, the
 * CLI and the model chooser read these through cascade.h): sides are
 * multiples of 8 (Stage A works on 4x4 blocks of an 8-aligned image, and
 * Stage B's latent needs even sides), at most 8192 (the largest a run was
 * checked at); a batch of up to 64 images is sampled together. */
#define CS_GEN_SIDE_STEP 8
#define CS_GEN_MAX_SIDE 8192
#define CS_GEN_MAX_BATCH 64

typedef struct {
    const char *prompt;      /* "" is valid: the unconditional prompt */
    const char *negative;    /* NULL or "": the empty string */
    int width, height;       /* multiples of 8 */
    uint64_t seed;
    int batch;               /* N >= 1 */
    cs_sample_params c, b;   /* per-stage sampling settings (sampler.h) */
    cs_u8_mode u8_mode;      /* truncate (official) or round */
    int preview_every;       /* > 0: previews every K Stage C steps too */
    int want_preview;        /* 1: preview of the final Stage C x0 */
    int prompt_style;        /* cs_prompt_style (prompt.h); default comfyui */
    const char *embeddings;  /* folder for embedding:NAME (comfyui style), or NULL */
    /* image variation: n_images CLIP-preprocessed images [n, S, S, 3]
     * (S = the vision model's image size; image_prep.h) and their strengths;
     * each gives one clip_img token (image_embeds * strength) to the
     * conditional half, zeros to the unconditional one. 0: none. */
    int n_images;            /* 0..CS_GEN_MAX_IMAGES */
    int image_size;          /* S */
    const float *image_pixels;
    const float *image_strength;
    /* img2img (doc/reference.md): init_rgb [32*hc, 32*wc, 3] in [0,1]
     * (hc, wc: the Stage C latent size; cs_latent_c), encoded by the
     * EfficientNet encoder, noised to t = init_strength with the shift-1
     * schedule (as the official notebook's gdf.diffuse), then Stage C runs
     * int(steps * strength) steps from t_start = strength. 0 < strength < 1
     * (1 is text-to-image: no init image). NULL: none. */
    const float *init_rgb;
    double init_strength;
    /* ComfyUI workflows (one KSampler per stage): Stage B's KSampler seed
     * when seed_b_set (else seed), and b_uncond_zero = Stage B's negative is
     * ConditioningZeroOut (pooled zeros) rather than the negative prompt's
     * encoding. Both only with ComfyUI samplers. */
    uint64_t seed_b;
    int seed_b_set;
    int b_uncond_zero;
} cs_gen_params;

/* Official defaults (§8): 1024x1024, batch 1, seed 0, C 20/4/2, B 10/1.1/1,
 * cfg_rho 0.7, DDPM, truncate. */
void cs_gen_defaults(cs_gen_params *p);
/* Checks sizes, steps, batch and cfg; one-line message on failure. */
int cs_gen_check(const cs_gen_params *p);

/* Latent sizes (§3.1). */

typedef enum { CS_LATENT_ENCODED = 0, CS_LATENT_C, CS_LATENT_B } cs_latent_id;

typedef struct {
    /* stage progress: step -1 = loading the weights, 0 = starting, i = i
     * of steps done; seconds since the stage started (after loading). */
    void (*progress)(void *ctx, cs_stage_id stage, int step, int steps, double elapsed);
    /* Previewer image of the Stage C x0 at step (steps = final): n RGB8
     * images [n, h, w, 3]. Return 0 to go on, a negative CS_E* code (with
     * cs_error's message set) to fail the run with that error, or a
     * positive value to stop it (CS_EINTR). */
    int (*preview)(void *ctx, int step, int steps, const uint8_t *rgb, int n, int w, int h);
    void *ctx;
    /* one-line notices (prompt truncated to 77 tokens, ...) */
    void (*warn)(void *ctx, const char *msg);
    /* set asynchronously (a signal); checked at every step boundary. The
     * process-wide flag of cancel.h is checked too, also inside the
     * networks (every U-Net block, CLIP layer, Stage A block and tile). */
    volatile sig_atomic_t *cancel;
    /* each latent once it is final (channels last, [n, h, w, c]): img2img's
     * EfficientNet latent of the init image (what ComfyUI's
     * StableCascade_StageC_VAEEncode outputs), the Stage C result and the
     * Stage B result (what a KSampler outputs); may be NULL. Return values
     * as preview. */
    int (*latent)(void *ctx, cs_latent_id which, const float *x, int n, int h, int w, int c);
} cs_pipeline_hooks;

typedef struct cs_pipeline cs_pipeline;

/* Copies the paths; opens nothing yet. */
int cs_pipeline_new(const cs_model_paths *paths, int keep_loaded, cs_pipeline **out);
void cs_pipeline_free(cs_pipeline *p);   /* NULL is fine */

/* Cheap up-front checks before any long work: every file opens as
 * safetensors and holds the network its role claims (tensor names and
 * shapes), the tokenizer loads, and the stages fit together (CLIP width =
 * Stage C text width, CLIP projection = Stage C / B pooled width). */
int cs_pipeline_check(cs_pipeline *p);
/* After cs_pipeline_check: the image size fits the networks (every level
 * transition of Stage C and Stage B keeps at least one row and column). */
int cs_pipeline_check_size(const cs_pipeline *p, const cs_gen_params *g);

/* Runs the whole chain. On success *rgb is cs_alloc'ed [batch, height,
 * width, 3] (free with cs_free). On cancel returns CS_EINTR with nothing
 * allocated; on any error every stage is released. */
int cs_pipeline_generate(cs_pipeline *p, const cs_gen_params *g, const cs_pipeline_hooks *hooks,
                         uint8_t **rgb);

/* ---- the two sampling stages, shared with the golden runner ----
 * Channels-last latents. The noise source must fill [n, h, w, c] buffers in
 * the draw order of the official NCHW tensors (cs_rng_randn_nhwc). */
typedef struct {
    cs_noise_fn noise;
    void *noise_ctx;
    cs_step_fn on_step;                 /* may be NULL */
    void *step_ctx;
    volatile sig_atomic_t *cancel;      /* may be NULL */
    cs_noise_fn step_noise;             /* ComfyUI samplers: their own generator */
    void *step_noise_ctx;
    cs_seeded_noise_fn seeded_noise;    /* dpmpp_2m_sde: fresh generators (ctx step_noise_ctx) */
    uint64_t seed;                      /* the stage's KSampler seed */
} cs_stage_io;

struct cs_stage_c;
struct cs_stage_b;

/* Stage C (§8 step 4): x, result [N, h, w, 16]; clip_text [2N, Lt, Ct] and
 * pooled [2N, 1, Cp] hold the N conditional rows first, then the N
 * unconditional ones (only the first N are read without CFG). clip_img is
 * zeros. x: the sampler's final x on return; result: x0 of the last step. */
int cs_pipe_sample_c(struct cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w,
                     const float *clip_text, size_t Lt, const float *pooled, const cs_stage_io *io,
                     float *x, float *result);
/* The same with clip_img [2N, M, c_clip_img] (conditional rows first;
 * NULL = zeros, M = 1). */
int cs_pipe_sample_c_img(struct cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w,
                         const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                         const cs_stage_io *io, float *x, float *result);
/* Stage B (§8 step 5): x, result [N, H, W, 4]; effnet [N, hc, wc, 16] is the
 * Stage C result (the unconditional half gets zeros); pooled [2N, 1, Cp] as
 * above. */
int cs_pipe_sample_b(struct cs_stage_b *m, const cs_sample_params *sp, size_t N, size_t H, size_t W,
                     const float *effnet, size_t hc, size_t wc, const float *pooled,
                     const cs_stage_io *io, float *x, float *result);

/* Peak number of float32 activation bytes the pipeline itself keeps
 * (latents, conditioning, image) for g, excluding the networks. */
size_t cs_pipeline_state_bytes(const cs_gen_params *g);

#endif
