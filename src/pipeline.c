/* Text-to-image chain, doc/reference.md. See pipeline.h. */
#include "pipeline.h"

#include "clip.h"
#include "clip_vision.h"
#include "cond.h"
#include "effnet.h"
#include "cancel.h"
#include "error.h"
#include "lora.h"
#include "infile.h"
#include "ksampler.h"
#include "models.h"
#include "pipeline_util.h"
#include "previewer.h"
#include "rng.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"
#include "tensor.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { P_TEXT, P_C, P_B, P_A, P_PREV, P_VISION, P_EFFNET, P_N };

struct cs_pipeline {
    char *path[P_N];
    char *tok_dir, *text_config, *text_prefix;
    struct cs_lora_list *lora_c, *lora_b, *lora_text;
    int keep;
    cs_tokenizer *tok;
    cs_st_file *f[P_N];
    cs_clip *clip;
    cs_stage_c *sc;
    cs_stage_b *sb;
    cs_stage_a *sa;
    cs_previewer *pv;
    cs_clip_vision *cv;
    cs_effnet *en;
    /* widths learned by cs_pipeline_check (0 = unknown) */
    int checked;
    int clip_width, clip_proj;
    int c_text, c_pooled, c_in, c_out;   /* Stage C */
    int b_pooled, b_effnet, b_in, b_out; /* Stage B */
    int a_latent, pv_in;
    int c_img, v_proj, v_image, e_latent;          /* Stage C clip_img width, CLIP vision projection / image size */
    size_t c_min, b_min;                 /* smallest latent side of Stage C / B */
};

const char *cs_stage_name(cs_stage_id s)
{
    static const char *names[CS_STAGE_COUNT] = {"text", "stage_c", "stage_b", "stage_a", "preview"};
    return (unsigned)s < CS_STAGE_COUNT ? names[s] : "?";
}

static const char *part_title(int i)
{
    static const char *t[P_N] = {"text encoder", "Stage C", "Stage B", "Stage A", "previewer",
                                  "CLIP vision model", "EfficientNet encoder"};
    return t[i];
}

void cs_gen_defaults(cs_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->prompt = "";
    p->negative = "";
    p->width = p->height = 1024;
    p->batch = 1;
    cs_sample_defaults_c(&p->c);
    cs_sample_defaults_b(&p->b);
    p->u8_mode = CS_U8_TRUNCATE;
    p->prompt_style = CS_PROMPT_COMFYUI;
}


static int check_sp(const cs_sample_params *s, const char *st)
{
    if (s->steps <= 0)
        return cs_error(CS_EARG, "%s steps must be at least 1 (got %d)", st, s->steps);
    if (s->steps > 10000)
        return cs_error(CS_EARG, "%s steps %d is absurdly large (at most 10000)", st, s->steps);
    if (!isfinite(s->cfg) || !isfinite(s->cfg_rho) || s->cfg_rho < 0.0f || s->cfg_rho > 1.0f)
        return cs_error(CS_EARG, "%s cfg %g / cfg_rho %g out of range (cfg_rho in [0,1])", st,
                        (double)s->cfg, (double)s->cfg_rho);
    if (!isfinite(s->shift) || s->shift <= 0.0f)
        return cs_error(CS_EARG, "%s shift must be > 0 (got %g)", st, (double)s->shift);
    if (s->ks_sampler && !(s->denoise > 0.0 && s->denoise <= 1.0))
        return cs_error(CS_EARG, "%s denoise must be in (0, 1] (got %g)", st, s->denoise);
    return 0;
}

int cs_gen_check(const cs_gen_params *p)
{
    if (!p->prompt)
        return cs_error(CS_EARG, "no prompt");
    if (p->width <= 0 || p->height <= 0 || p->width % CS_GEN_SIDE_STEP || p->height % CS_GEN_SIDE_STEP)
        return cs_error(CS_EARG, "size %dx%d: width and height must be positive multiples of %d",
                        p->width, p->height, CS_GEN_SIDE_STEP);
    if (p->width > CS_GEN_MAX_SIDE || p->height > CS_GEN_MAX_SIDE)
        return cs_error(CS_EARG, "size %dx%d is too large (at most %d per side)", p->width, p->height,
                        CS_GEN_MAX_SIDE);
    if (p->batch < 1 || p->batch > CS_GEN_MAX_BATCH)
        return cs_error(CS_EARG, "batch %d out of range 1..%d", p->batch, CS_GEN_MAX_BATCH);
    if (p->preview_every < 0)
        return cs_error(CS_EARG, "preview interval must be >= 0");
    if (p->n_images < 0 || p->n_images > CS_GEN_MAX_IMAGES ||
        (p->n_images && (!p->image_pixels || !p->image_strength || p->image_size <= 0)))
        return cs_error(CS_EARG, "%d input images: at most %d, each with its pixels and strength", p->n_images,
                        CS_GEN_MAX_IMAGES);
    if (p->init_rgb && !p->c.ks_sampler && !(p->init_strength > 0 && p->init_strength < 1))
        return cs_error(CS_EARG, "img2img strength %g: need 0 < strength < 1 (1 is text-to-image)", p->init_strength);
    int rc = check_sp(&p->c, "Stage C");
    return rc ? rc : check_sp(&p->b, "Stage B");
}

/* smallest multiple of 8 pixels whose latent side (lat) is at least min */
static int min_px(int (*lat)(int), size_t min)
{
    int px = CS_GEN_SIDE_STEP;
    while (px < CS_GEN_MAX_SIDE && (size_t)lat(px) < min)
        px += CS_GEN_SIDE_STEP;
    return px;
}

int cs_pipeline_check_size(const cs_pipeline *p, const cs_gen_params *g)
{
    const size_t hc = cs_latent_c(g->height), wc = cs_latent_c(g->width);
    const size_t hb = cs_latent_b(g->height), wb = cs_latent_b(g->width);
    if (hb % 2 || wb % 2)
        return cs_error(CS_EARG, "size %dx%d: the Stage B latent must have even sides", g->width, g->height);
    if (hc < p->c_min || wc < p->c_min) {
        int m = min_px(cs_latent_c, p->c_min);
        return cs_error(CS_EARG, "size %dx%d is too small for this Stage C: its %zux%zu latent must be at least "
                        "%zu on each side (width and height at least %d)", g->width, g->height, wc, hc,
                        p->c_min, m);
    }
    if (hb < p->b_min || wb < p->b_min) {
        int m = min_px(cs_latent_b, p->b_min);
        return cs_error(CS_EARG, "size %dx%d is too small for this Stage B: its %zux%zu latent must be at least "
                        "%zu on each side (width and height at least %d)", g->width, g->height, wb, hb,
                        p->b_min, m);
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

int cs_pipeline_new(const cs_model_paths *paths, int keep_loaded, cs_pipeline **out)
{
    *out = NULL;
    cs_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return cs_oom("the pipeline object", sizeof *p);
    const char *src[P_N] = {paths->text_encoder, paths->stage_c, paths->stage_b, paths->stage_a,
                            paths->previewer, paths->clip_vision, paths->effnet};
    for (int i = 0; i < P_N; i++)
        p->path[i] = dup_or_null(src[i]);
    p->tok_dir = dup_or_null(paths->tokenizer_dir);
    p->text_config = dup_or_null(paths->text_config);
    p->text_prefix = dup_or_null(paths->text_prefix);
    p->keep = keep_loaded;
    p->lora_c = paths->lora_c, p->lora_b = paths->lora_b, p->lora_text = paths->lora_text;
    for (int i = 0; i < P_PREV; i++)
        if (!p->path[i]) {
            cs_pipeline_free(p);
            return cs_error(CS_EARG, "pipeline: no %s file given", part_title(i));
        }
    *out = p;
    return 0;
}

static void release(cs_pipeline *p, int i)
{
    switch (i) {
    case P_TEXT: cs_clip_free(p->clip), p->clip = NULL; break;
    case P_C: cs_stage_c_free(p->sc), p->sc = NULL; break;
    case P_B: cs_stage_b_free(p->sb), p->sb = NULL; break;
    case P_A: cs_stage_a_free(p->sa), p->sa = NULL; break;
    case P_PREV: cs_previewer_free(p->pv), p->pv = NULL; break;
    case P_VISION: cs_clip_vision_free(p->cv), p->cv = NULL; break;
    case P_EFFNET: cs_effnet_free(p->en), p->en = NULL; break;
    }
    cs_st_close(p->f[i]);
    p->f[i] = NULL;
}

void cs_pipeline_free(cs_pipeline *p)
{
    if (!p)
        return;
    for (int i = 0; i < P_N; i++) {
        release(p, i);
        free(p->path[i]);
    }
    cs_tokenizer_free(p->tok);
    free(p->tok_dir);
    free(p->text_config);
    free(p->text_prefix);
    free(p);
}

static char *read_small(const char *path)
{
    char *buf;
    return cs_infile_read(path, "config file", CS_MAX_CONFIG_FILE, &buf, NULL) ? NULL : buf;
}

/* Loads part i (no-op when loaded). */
static int load(cs_pipeline *p, int i)
{
    int rc = 0;
    if ((i == P_TEXT && p->clip) || (i == P_C && p->sc) || (i == P_B && p->sb) || (i == P_A && p->sa) ||
        (i == P_PREV && p->pv) || (i == P_VISION && p->cv) || (i == P_EFFNET && p->en))
        return 0;
    if (!p->path[i])
        return cs_error(CS_EARG, "pipeline: no %s file given", part_title(i));
    if ((rc = cs_st_open(p->path[i], &p->f[i])) != 0)
        return rc;
    cs_net_info ni;
    char *cfg = NULL;
    switch (i) {
    case P_TEXT:
        if (p->text_config && !(cfg = read_small(p->text_config)))
            rc = CS_EIO;
        if (!rc)
            rc = cs_clip_load_lora(p->f[i], p->text_prefix ? p->text_prefix : "", cfg, p->lora_text, &p->clip);
        free(cfg);
        if (!rc) {
            const cs_clip_config *c = cs_clip_get_config(p->clip);
            p->clip_width = c->width;
            p->clip_proj = c->proj;
        }
        break;
    case P_C:
        rc = cs_stage_c_load_lora(p->f[i], NULL, p->lora_c, &p->sc);
        if (!rc) {
            cs_stage_c_info(p->sc, &ni);
            p->c_text = ni.c_clip_text;
            p->c_pooled = ni.c_clip_pooled;
            p->c_img = ni.c_clip_img;
            p->c_in = ni.c_in;
            p->c_out = ni.c_out;
            p->c_min = cs_stage_c_min_side(p->sc);
        }
        break;
    case P_B:
        rc = cs_stage_b_load_lora(p->f[i], NULL, p->lora_b, &p->sb);
        if (!rc) {
            cs_stage_b_info(p->sb, &ni);
            p->b_pooled = ni.c_clip_pooled;
            p->b_effnet = ni.c_effnet;
            p->b_in = ni.c_in;
            p->b_out = ni.c_out;
            p->b_min = cs_stage_b_min_side(p->sb);
        }
        break;
    case P_A:
        rc = cs_stage_a_load(p->f[i], NULL, &p->sa);
        if (!rc)
            p->a_latent = cs_stage_a_get_config(p->sa)->c_latent;
        break;
    case P_PREV:
        rc = cs_previewer_load(p->f[i], NULL, &p->pv);
        if (!rc)
            p->pv_in = cs_previewer_get_config(p->pv)->c_in;
        break;
    case P_EFFNET:
        rc = cs_effnet_load(p->f[i], NULL, &p->en);
        if (!rc)
            p->e_latent = cs_effnet_get_config(p->en)->c_latent;
        break;
    case P_VISION:
        rc = cs_clip_vision_load(p->f[i], NULL, &p->cv);
        if (!rc) {
            p->v_proj = cs_clip_vision_get_config(p->cv)->proj;
            p->v_image = cs_clip_vision_get_config(p->cv)->image;
        }
        break;
    }
    if (rc) {
        release(p, i);
        return rc;
    }
    return 0;
}

/* a must equal b when both are known */
static int fit(int a, int b, const char *what_a, const char *what_b)
{
    if (a && b && a != b)
        return cs_error(CS_EMODEL, "models do not fit together: %s is %d wide but %s is %d", what_a, a,
                        what_b, b);
    return 0;
}

int cs_pipeline_check(cs_pipeline *p)
{
    int rc = 0;
    if (!p->tok) {
        rc = p->tok_dir ? cs_tokenizer_load(p->tok_dir, &p->tok) : cs_tokenizer_bytes(&p->tok);
        if (rc)
            return rc;
    }
    /* LoRAs are matched here but merged only at the real load (merging twice
     * would copy every touched weight twice); with --keep-loaded this load is the real one */
    struct cs_lora_list *lists[3] = {p->lora_c, p->lora_b, p->lora_text};
    for (int k = 0; k < 3; k++)
        if (lists[k]) lists[k]->dry = !p->keep;
    for (int i = 0; i < P_N && !rc; i++) {
        if (!p->path[i])
            continue;
        rc = load(p, i);
        if (!rc && !p->keep)
            release(p, i);
    }
    for (int k = 0; k < 3; k++)
        if (lists[k]) lists[k]->dry = 0;
    if (rc)
        return rc;
    if ((rc = fit(p->clip_width, p->c_text, "the text encoder output", "Stage C's clip_text input")) ||
        (rc = fit(p->clip_proj, p->c_pooled, "the text encoder projection", "Stage C's pooled input")) ||
        (rc = fit(p->clip_proj, p->b_pooled, "the text encoder projection", "Stage B's clip input")) ||
        (rc = fit(16, p->c_in, "the Stage C latent (16 channels)", "Stage C's input")) ||
        (rc = fit(16, p->c_out, "the Stage C latent (16 channels)", "Stage C's output")) ||
        (rc = fit(16, p->b_effnet, "the Stage C latent (16 channels)", "Stage B's effnet input")) ||
        (rc = fit(4, p->b_in, "the Stage B latent (4 channels)", "Stage B's input")) ||
        (rc = fit(4, p->b_out, "the Stage B latent (4 channels)", "Stage B's output")) ||
        (rc = fit(4, p->a_latent, "the Stage B latent (4 channels)", "Stage A's latent")) ||
        (rc = fit(16, p->pv_in, "the Stage C latent (16 channels)", "the previewer's input")) ||
        (rc = fit(p->v_proj, p->c_img, "the CLIP vision projection", "Stage C's clip_img input")) ||
        (rc = fit(16, p->e_latent, "the Stage C latent (16 channels)", "the EfficientNet encoder's output")))
        return rc;
    p->checked = 1;
    return 0;
}

/* ------------------------------------------------------------ generate */

/* A NaN or Inf latent would quantise to a black (or garbage) PNG that looks
 * like success: every stage's result is checked before the next one. */
static int check_finite(const float *x, size_t n, const char *what, const cs_sample_params *sp)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !isfinite(x[i]);
    if (!bad)
        return 0;
    if (sp)
        return cs_error(CS_ENONFINITE,
                        "the %s has %zu of %zu values that are NaN or Inf (guidance %g, shift %g, cfg_rho %g "
                        "are too extreme, or a model file holds bad weights)",
                        what, bad, n, (double)sp->cfg, (double)sp->shift, (double)sp->cfg_rho);
    return cs_error(CS_ENONFINITE, "the %s has %zu of %zu values that are NaN or Inf (a model file holds bad weights?)",
                    what, bad, n);
}

/* a fresh torch generator per draw (the Brownian tree's), same layout */
static int seeded_nhwc(void *ctx, uint32_t seed, float *out, size_t n)
{
    cs_rng_nhwc *z = ctx;
    cs_rng r;
    cs_rng_seed(&r, seed);
    cs_rng_nhwc t = {&r, z->c, z->h, z->w};
    return cs_rng_noise_nhwc(&t, out, n);
}

typedef struct {
    cs_pipeline *p;
    const cs_gen_params *g;
    const cs_pipeline_hooks *hk;
    cs_stage_id stage;
    double t0;
    size_t N, hc, wc;
    uint8_t *prev_rgb;
    float *prev_img;
} run_ctx;

static void progress(run_ctx *r, cs_stage_id st, int step, int steps)
{
    if (step == 0)
        r->t0 = now_s();
    if (r->hk && r->hk->progress)
        r->hk->progress(r->hk->ctx, st, step, steps, step < 0 ? 0.0 : now_s() - r->t0);
}

static void warn(const cs_pipeline_hooks *hk, const char *msg)
{
    if (hk && hk->warn)
        hk->warn(hk->ctx, msg);
}

/* previewer image of x0 [N,hc,wc,16] passed to the preview hook */
static int do_preview(run_ctx *r, int step, int steps, const float *x0)
{
    const cs_pipeline_hooks *hk = r->hk;
    if (!r->p->pv || !hk || !hk->preview)
        return 0;
    size_t ph = 8 * r->hc, pw = 8 * r->wc;
    int rc = cs_previewer_forward(r->p->pv, x0, r->N, r->hc, r->wc, r->prev_img);
    if (!rc)
        rc = cs_image_to_u8_nhwc(r->prev_img, r->N, ph, pw, r->g->u8_mode, r->prev_rgb);
    if (!rc) {
        int hr = hk->preview(hk->ctx, step, steps, r->prev_rgb, (int)r->N, (int)pw, (int)ph);
        if (hr < 0)
            rc = hr;   /* the handler's own error (it set the message) */
        else if (hr > 0)
            rc = cs_error(CS_EINTR, "stopped by the preview handler");
    }
    return rc;
}

static int on_step(void *ctx, int step, int steps, const float *x0, const float *x)
{
    run_ctx *r = ctx;
    progress(r, r->stage, step + 1, steps);
    int k = r->g->preview_every;
    if (r->stage == CS_STAGE_C && k > 0 && (step + 1) % k == 0 && step + 1 < steps)
        return do_preview(r, step + 1, steps, x0);
    return 0;
}

size_t cs_pipeline_state_bytes(const cs_gen_params *g)
{
    size_t N = (size_t)g->batch, hc = cs_latent_c(g->height), wc = cs_latent_c(g->width);
    size_t hb = cs_latent_b(g->height), wb = cs_latent_b(g->width);
    size_t f = 2 * N * 77 * 1280 + 2 * N * 1280   /* conditioning */
               + 2 * N * hc * wc * 16              /* C: x, result */
               + 2 * N * hb * wb * 4               /* B: x, result */
               + N * 16 * hb * wb * 3;             /* image */
    return f * sizeof(float) + N * 16 * hb * wb * 3;
}

/* Stage A scratch budget: what is free, at most 2 GiB (tiling is exact) */
static size_t stage_a_budget(void)
{
    uint64_t have = 0;
    char src[64];
    if (cs_mem_available(&have, src, sizeof src) || have == 0)
        return 0;
    uint64_t b = have / 2;
    if (b > (2ull << 30))
        b = 2ull << 30;
    return (size_t)b;
}

/* hooks->latent; a positive answer is a stop, as for previews */
static int give_latent(const cs_pipeline_hooks *hk, cs_latent_id st, const float *x, size_t n, size_t h, size_t w,
                       int c)
{
    if (!hk || !hk->latent)
        return 0;
    int rc = hk->latent(hk->ctx, st, x, (int)n, (int)h, (int)w, c);
    return rc > 0 ? CANCEL_ERR() : rc;
}

/* img2img's Stage C start (doc/reference.md, upstream GDF.diffuse): x = a*lat + b*eps with
 * lat the EfficientNet latent of the init image (the same for every batch
 * image), eps the generator's next draw [N, hc, wc, 16] (the first of the
 * run, as the notebook's diffuse comes before sampling) and (a, b) of the
 * shift-1 schedule at t = strength (cs_gdf_diffuse). sp gets t_start =
 * strength and cs_img2img_steps steps, x given. */
static int init_latent(cs_pipeline *p, const cs_gen_params *g, const cs_pipeline_hooks *hk, size_t hc, size_t wc,
                       cs_noise_fn noise, void *nctx, float *x, cs_sample_params *sp)
{
    size_t N = (size_t)g->batch, H = 32 * hc, W = 32 * wc, per = hc * wc * 16;
    if (!p->path[P_EFFNET])
        return cs_error(CS_EARG, "img2img needs the EfficientNet encoder (effnet_encoder.safetensors; no file given)");
    int rc = load(p, P_EFFNET);
    if (rc)
        return rc;
    if (cs_effnet_out_size(H) != hc || cs_effnet_out_size(W) != wc)
        return cs_error(CS_EARG, "img2img: a %zux%zu image does not encode to the %zux%zu Stage C latent", W, H, wc, hc);
    float *in = cs_alloc(H * W * 3 * sizeof(float)), *lat = cs_alloc(per * sizeof(float));
    if (!in || !lat) {
        cs_free(in), cs_free(lat);
        return cs_oom("the init image", (H * W * 3 + per) * sizeof(float));
    }
    cs_effnet_preprocess(g->init_rgb, in, H * W);
    rc = cs_effnet_forward(p->en, in, 1, H, W, lat);
    if (!rc) rc = check_finite(lat, per, "EfficientNet latent of the init image", NULL);
    if (!rc) rc = give_latent(hk, CS_LATENT_ENCODED, lat, 1, hc, wc, 16);
    cs_free(in);
    if (!p->keep)
        release(p, P_EFFNET);
    if (!rc && sp->ks_sampler) {
        /* ComfyUI: the latent is the KSampler's latent image; its noise and
         * denoise come in the sampler */
        for (size_t n = 0; n < N; n++)
            memcpy(x + n * per, lat, per * sizeof(float));
        sp->x_init_given = 1;
        cs_free(lat);
        return 0;
    }
    if (!rc)
        rc = noise(nctx, x, N * per);
    if (!rc) {
        cs_gdf_diffuse(lat, x, N, per, (float)g->init_strength, 1.0f, x);
        sp->steps = cs_img2img_steps(g->c.steps, g->init_strength);
        sp->t_start = (float)g->init_strength;
        sp->x_init_given = 1;
    }
    cs_free(lat);
    return rc;
}

/* clip_img [2N, M, c_img]: rows 0..N-1 the images' embeddings times their
 * strengths, rows N..2N-1 zeros (the unconditional half, as ComfyUI and
 * diffusers do). The vision model is loaded for this and released. */
static int image_tokens(cs_pipeline *p, const cs_gen_params *g, float **out)
{
    size_t N = (size_t)g->batch, M = (size_t)g->n_images;
    if (!p->path[P_VISION])
        return cs_error(CS_EARG, "image variation needs a CLIP vision model (no file given)");
    int rc = load(p, P_VISION);
    if (rc)
        return rc;
    size_t P = (size_t)p->v_proj;
    if (g->image_size != p->v_image)
        return cs_error(CS_EMODEL, "the CLIP vision model takes %dx%d images, the input images were prepared at %dx%d",
                        p->v_image, p->v_image, g->image_size, g->image_size);
    if (p->c_img && (size_t)p->c_img != P)
        return cs_error(CS_EMODEL, "models do not fit together: the CLIP vision projection is %zu wide but Stage "
                        "C's clip_img input is %d", P, p->c_img);
    float *emb = cs_alloc(M * P * sizeof(float)), *t = cs_calloc(2 * N * M * P * sizeof(float));
    if (!emb || !t) {
        cs_free(emb), cs_free(t);
        return cs_oom("the image tokens", (2 * N + 1) * M * P * sizeof(float));
    }
    cs_clip_vision_out vo = {emb, NULL, NULL};
    rc = cs_clip_vision_forward(p->cv, g->image_pixels, M, &vo);
    for (size_t n = 0; !rc && n < N; n++)
        for (size_t k = 0; k < M; k++)
            for (size_t j = 0; j < P; j++) t[(n * M + k) * P + j] = emb[k * P + j] * g->image_strength[k];
    cs_free(emb);
    if (!p->keep)
        release(p, P_VISION);
    if (rc) {
        cs_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int cs_pipeline_generate(cs_pipeline *p, const cs_gen_params *g, const cs_pipeline_hooks *hk,
                         uint8_t **rgb_out)
{
    *rgb_out = NULL;
    int rc = cs_gen_check(g);
    if (rc)
        return rc;
    if (!p->checked && (rc = cs_pipeline_check(p)) != 0)
        return rc;
    if ((rc = cs_pipeline_check_size(p, g)) != 0)
        return rc;
    volatile sig_atomic_t *cancel = hk ? hk->cancel : NULL;
    const size_t N = (size_t)g->batch;
    size_t L = CS_TOK_CTX, Lu = CS_TOK_CTX;
    cs_cond cd[2] = {{0}};
    cs_embeddings *emb = NULL;
    const size_t hc = cs_latent_c(g->height), wc = cs_latent_c(g->width);
    const size_t hb = cs_latent_b(g->height), wb = cs_latent_b(g->width);
    const size_t Ct = (size_t)p->clip_width, Cp = (size_t)p->clip_proj;
    run_ctx r = {p, g, hk, CS_STAGE_TEXT, 0, N, hc, wc, NULL, NULL};

    float *ctext = NULL, *cpool = NULL, *xc = NULL, *C = NULL, *xb = NULL,
          *B = NULL, *img = NULL, *cimg = NULL;
    uint8_t *rgb = NULL;
    cs_rng rng;
    cs_rng_seed(&rng, g->seed);

    /* 1-2. tokens and text encoding of [prompt, negative] */
    const char *texts[2] = {g->prompt, g->negative ? g->negative : ""};
    if (cancelled(cancel)) {
        rc = CANCEL_ERR();
        goto out;
    }
    progress(&r, CS_STAGE_TEXT, -1, 1);
    if ((rc = load(p, P_TEXT)) != 0)
        goto out;
    progress(&r, CS_STAGE_TEXT, 0, 1);
    if (g->embeddings && g->prompt_style == CS_PROMPT_COMFYUI &&
        (rc = cs_embeddings_new(g->embeddings, p->clip_width, &emb)) != 0)
        goto out;
    for (int i = 0; i < 2 && !rc; i++)
        rc = cs_cond_encode(p->clip, p->tok, (cs_prompt_style)g->prompt_style, texts[i], emb,
                            i ? "negative prompt" : "prompt", hk ? hk->warn : NULL, hk ? hk->ctx : NULL, &cd[i]);
    if (rc)
        goto out;
    if (!p->keep)
        release(p, P_TEXT);
    /* ComfyUI's CFG batching: equal lengths (repeat to the lcm when that is
     * at most 4x the shorter), else each half with its own length */
    L = cs_cond_common_len(cd[0].Lt, cd[1].Lt);
    Lu = L ? L : cd[1].Lt;
    if (!L)
        L = cd[0].Lt;
    ctext = cs_alloc((L + Lu) * N * Ct * sizeof(float));
    cpool = cs_alloc(2 * N * Cp * sizeof(float));
    if (!ctext || !cpool) {
        rc = cs_oom("the text conditioning", ((L + Lu) * N * Ct + 2 * N * Cp) * sizeof(float));
        goto out;
    }
    /* rows 0..N-1 prompt [N, L], then N negative rows [N, Lu]; tiled to length */
    for (size_t i = 0; i < 2 * N; i++) {
        const cs_cond *c = &cd[i < N ? 0 : 1];
        size_t len = i < N ? L : Lu;
        float *dst = ctext + (i < N ? i * L : N * L + (i - N) * Lu) * Ct;
        for (size_t t = 0; t < len; t += c->Lt)
            memcpy(dst + t * Ct, c->text, c->Lt * Ct * sizeof(float));
        memcpy(cpool + i * Cp, c->pooled, Cp * sizeof(float));
    }
    progress(&r, CS_STAGE_TEXT, 1, 1);

    /* 3. image variation: clip_img tokens (counted in the text stage's time) */
    if (g->n_images > 0 && (rc = image_tokens(p, g, &cimg)) != 0)
        goto out;

    /* 4. Stage C */
    if (cancelled(cancel)) {
        rc = CANCEL_ERR();
        goto out;
    }
    if (g->want_preview || g->preview_every > 0) {
        if (p->path[P_PREV]) {
            if ((rc = load(p, P_PREV)) != 0)
                goto out;
            r.prev_img = cs_alloc(N * 64 * hc * wc * 3 * sizeof(float));
            r.prev_rgb = cs_alloc(N * 64 * hc * wc * 3);
            if (!r.prev_img || !r.prev_rgb) {
                rc = cs_oom("the previews", N * 64 * hc * wc * 3 * (sizeof(float) + 1));
                goto out;
            }
        } else {
            warn(hk, "no previewer file: previews are skipped");
        }
    }
    r.stage = CS_STAGE_C;
    int steps_c = g->init_rgb && !g->c.ks_sampler ? cs_img2img_steps(g->c.steps, g->init_strength) : g->c.steps;
    progress(&r, CS_STAGE_C, -1, steps_c);
    if ((rc = load(p, P_C)) != 0)
        goto out;
    xc = cs_alloc(N * hc * wc * 16 * sizeof(float));
    C = cs_alloc(N * hc * wc * 16 * sizeof(float));
    if (!xc || !C) {
        rc = cs_oom("the Stage C latents", 2 * N * hc * wc * 16 * sizeof(float));
        goto out;
    }
    progress(&r, CS_STAGE_C, 0, steps_c);
    /* ComfyUI samplers: a KSampler per stage, each with its two generators */
    cs_rng ks_init, ks_step;
    cs_rng_seed(&ks_init, g->seed);
    cs_rng_seed(&ks_step, g->seed);
    cs_rng_nhwc nzc = {g->c.ks_sampler ? &ks_init : &rng, 16, hc, wc}, nzc_step = {&ks_step, 16, hc, wc};
    cs_stage_io ioc = {cs_rng_noise_nhwc, &nzc, on_step, &r, cancel, cs_rng_noise_nhwc, &nzc_step, seeded_nhwc, g->seed};
    cs_sample_params spc = g->c;
    if (g->init_rgb && (rc = init_latent(p, g, hk, hc, wc, cs_rng_noise_nhwc, &nzc, xc, &spc)) != 0)
        goto out;
    if ((rc = cs_pipe_sample_c_ext(p->sc, &spc, N, hc, wc, ctext, L, Lu == L ? NULL : ctext + N * L * Ct, Lu, cpool, Cp, cimg,
                       (size_t)g->n_images, &ioc, xc, C)) != 0 ||
        (rc = check_finite(C, N * hc * wc * 16, "Stage C result", &g->c)) != 0 ||
        (rc = give_latent(hk, CS_LATENT_C, C, N, hc, wc, 16)) != 0)
        goto out;
    if (!p->keep)
        release(p, P_C);
    cs_free(ctext);
    ctext = NULL;
    cs_free(xc);
    xc = NULL;
    if (p->pv && g->want_preview) {
        progress(&r, CS_STAGE_PREVIEW, 0, 1);
        if ((rc = do_preview(&r, g->c.steps, g->c.steps, C)) != 0)
            goto out;
        progress(&r, CS_STAGE_PREVIEW, 1, 1);
    }
    if (!p->keep)
        release(p, P_PREV);

    /* 5. Stage B */
    if (cancelled(cancel)) {
        rc = CANCEL_ERR();
        goto out;
    }
    r.stage = CS_STAGE_B;
    progress(&r, CS_STAGE_B, -1, g->b.steps);
    if ((rc = load(p, P_B)) != 0)
        goto out;
    xb = cs_alloc(N * hb * wb * 4 * sizeof(float));
    B = cs_alloc(N * hb * wb * 4 * sizeof(float));
    if (!xb || !B) {
        rc = cs_oom("the Stage B latents", 2 * N * hb * wb * 4 * sizeof(float));
        goto out;
    }
    progress(&r, CS_STAGE_B, 0, g->b.steps);
    uint64_t seed_b = g->seed_b_set ? g->seed_b : g->seed;
    cs_rng_seed(&ks_init, seed_b);
    cs_rng_seed(&ks_step, seed_b);
    if (g->b_uncond_zero)   /* ConditioningZeroOut: Stage B's unconditional pooled rows are zeros */
        memset(cpool + N * Cp, 0, N * Cp * sizeof(float));
    cs_rng_nhwc nzb = {g->b.ks_sampler ? &ks_init : &rng, 4, hb, wb}, nzb_step = {&ks_step, 4, hb, wb};
    cs_stage_io iob = {cs_rng_noise_nhwc, &nzb, on_step, &r, cancel, cs_rng_noise_nhwc, &nzb_step, seeded_nhwc, seed_b};
    if ((rc = cs_pipe_sample_b(p->sb, &g->b, N, hb, wb, C, hc, wc, cpool, &iob, xb, B)) != 0 ||
        (rc = check_finite(B, N * hb * wb * 4, "Stage B result", &g->b)) != 0 ||
        (rc = give_latent(hk, CS_LATENT_B, B, N, hb, wb, 4)) != 0)
        goto out;
    if (!p->keep)
        release(p, P_B);
    cs_free(xb);
    xb = NULL;

    /* 6. Stage A, one image at a time so Ctrl-C is seen between them */
    if (cancelled(cancel)) {
        rc = CANCEL_ERR();
        goto out;
    }
    r.stage = CS_STAGE_A;
    progress(&r, CS_STAGE_A, -1, (int)N);
    if ((rc = load(p, P_A)) != 0)
        goto out;
    const size_t f = (size_t)cs_stage_a_factor(p->sa), H = f * hb, W = f * wb;
    img = cs_alloc(N * H * W * 3 * sizeof(float));
    rgb = cs_alloc(N * (size_t)g->height * (size_t)g->width * 3);
    if (!img || !rgb) {
        rc = cs_oom("the decoded image", N * H * W * 3 * sizeof(float) + N * (size_t)g->height * g->width * 3);
        goto out;
    }
    size_t th, tw;
    cs_stage_a_plan_tiles(p->sa, hb, wb, stage_a_budget(), &th, &tw);
    progress(&r, CS_STAGE_A, 0, (int)N);
    for (size_t i = 0; i < N; i++) {
        if (cancelled(cancel)) {
            rc = CANCEL_ERR();
            goto out;
        }
        if ((rc = cs_stage_a_decode(p->sa, B + i * hb * wb * 4, 1, hb, wb, CS_STAGE_A_SCALE, th, tw,
                                    img + i * H * W * 3)) != 0)
            goto out;
        progress(&r, CS_STAGE_A, (int)i + 1, (int)N);
    }
    if ((rc = check_finite(img, N * H * W * 3, "Stage A image", NULL)) != 0)
        goto out;
    if (!p->keep)
        release(p, P_A);

    /* 7. clamp, uint8, crop to (height, width) */
    const size_t oh = (size_t)g->height, ow = (size_t)g->width;
    for (size_t i = 0; i < N; i++)
        for (size_t y = 0; y < oh; y++)
            if ((rc = cs_image_to_u8_nhwc(img + ((i * H + y) * W) * 3, 1, 1, ow, g->u8_mode,
                                          rgb + (i * oh + y) * ow * 3)) != 0)
                goto out;
    *rgb_out = rgb;
    rgb = NULL;

out:
    if (rc && !p->keep)
        for (int i = 0; i < P_N; i++)
            release(p, i);
    cs_cond_free(&cd[0]);
    cs_cond_free(&cd[1]);
    cs_embeddings_free(emb);
    cs_free(ctext);
    cs_free(cpool);
    cs_free(xc);
    cs_free(C);
    cs_free(xb);
    cs_free(B);
    cs_free(img);
    cs_free(rgb);
    cs_free(r.prev_img);
    cs_free(r.prev_rgb);
    cs_free(cimg);
    return rc;
}
