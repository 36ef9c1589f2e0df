/* The Stage C and Stage B sampling loops of the pipeline (pipeline.h
 * cs_pipe_sample_*): the model's eps with classifier-free guidance, called by
 * the sampler (sampler.h) once per step. */
#include "pipeline.h"

#include "error.h"
#include "pipeline_util.h"
#include "stage_b.h"
#include "stage_c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cs_stage_c *m;
    size_t h, w, Lt;
    const float *clip_text, *pooled, *clip_img;
    size_t M;
    float *r;
    volatile sig_atomic_t *cancel;
    size_t N, Lu, ct, ci;          /* uncond text [N, Lu, ct] when Lu != Lt; clip_img rows ci wide */
    const float *uncond_text;      /* NULL: rows N.. of clip_text */
} c_ctx;

static int c_eps(void *ctx, const float *x, int nb, float r, float *eps)
{
    c_ctx *c = ctx;
    if (cancelled(c->cancel))
        return CANCEL_ERR();
    for (int i = 0; i < nb; i++)
        c->r[i] = r;
    if (!c->uncond_text || (size_t)nb <= c->N)
        return cs_stage_c_forward(c->m, x, (size_t)nb, c->h, c->w, c->r, c->clip_text, c->Lt, c->pooled, c->clip_img,
                                  c->M, NULL, NULL, eps);
    /* texts of different lengths (ComfyUI runs such CFG halves apart) */
    size_t N = c->N, o = N * c->h * c->w * 16;
    int rc = cs_stage_c_forward(c->m, x, N, c->h, c->w, c->r, c->clip_text, c->Lt, c->pooled, c->clip_img, c->M, NULL,
                                NULL, eps);
    if (!rc)
        rc = cs_stage_c_forward(c->m, x + o, N, c->h, c->w, c->r + N, c->uncond_text, c->Lu, c->pooled + N * c->ct,
                                c->clip_img ? c->clip_img + N * c->M * c->ci : NULL, c->M, NULL, NULL, eps + o);
    return rc;
}

typedef struct {
    const cs_stage_io *io;
} step_ctx;

/* wraps the caller's on_step with the cancel check at every step boundary */
static int step_cb(void *ctx, int step, int steps, const float *x0, const float *x)
{
    const cs_stage_io *io = ((step_ctx *)ctx)->io;
    if (io->on_step) {
        int rc = io->on_step(io->step_ctx, step, steps, x0, x);
        if (rc)
            return rc;
    }
    return cancelled(io->cancel) ? CANCEL_ERR() : 0;
}

/* uncond_text NULL: clip_text holds both halves [2N, Lt, .]; else the
 * unconditional half is uncond_text [N, Lu, .] and pooled rows are cp wide.
 * clip_img: [2N, M, .] image tokens, or NULL (zeros). */
int cs_pipe_sample_c_ext(cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w, const float *clip_text,
                          size_t Lt, const float *uncond_text, size_t Lu, const float *pooled, size_t cp,
                          const float *clip_img, size_t M, const cs_stage_io *io, float *x, float *result)
{
    cs_net_info ni;
    cs_stage_c_info(m, &ni);
    c_ctx c = {m,           h,          w,  Lt, clip_text,           pooled, clip_img, clip_img ? M : 1,
               calloc(2 * N, sizeof(float)), io->cancel, N, Lu, cp, (size_t)ni.c_clip_img, uncond_text};
    if (!c.r)
        return cs_oom("Stage C timesteps", 2 * N * sizeof(float));
    step_ctx sc = {io};
    cs_sampler_io sio = {c_eps, &c, io->noise, io->noise_ctx, step_cb, &sc,
                         io->step_noise, io->step_noise_ctx, io->seeded_noise, io->seed};
    int rc = cs_sample(sp, (int)N, h * w * 16, x, result, &sio);
    free(c.r);
    return rc;
}

int cs_pipe_sample_c(cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w,
                     const float *clip_text, size_t Lt, const float *pooled, const cs_stage_io *io,
                     float *x, float *result)
{
    return cs_pipe_sample_c_ext(m, sp, N, h, w, clip_text, Lt, NULL, Lt, pooled, 0, NULL, 1, io, x, result);
}

int cs_pipe_sample_c_img(cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w,
                         const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                         const cs_stage_io *io, float *x, float *result)
{
    return cs_pipe_sample_c_ext(m, sp, N, h, w, clip_text, Lt, NULL, Lt, pooled, 0, clip_img, M, io, x, result);
}

typedef struct {
    cs_stage_b *m;
    size_t H, W, hc, wc;
    const float *effnet, *pooled;   /* [2N,...]: conditional, then zeros / uncond */
    float *r;
    volatile sig_atomic_t *cancel;
} b_ctx;

static int b_eps(void *ctx, const float *x, int nb, float r, float *eps)
{
    b_ctx *c = ctx;
    if (cancelled(c->cancel))
        return CANCEL_ERR();
    for (int i = 0; i < nb; i++)
        c->r[i] = r;
    return cs_stage_b_forward(c->m, x, (size_t)nb, c->H, c->W, c->r, c->effnet, c->hc, c->wc, c->pooled, NULL, 0,
                              0, NULL, eps);
}

int cs_pipe_sample_b(cs_stage_b *m, const cs_sample_params *sp, size_t N, size_t H, size_t W,
                     const float *effnet, size_t hc, size_t wc, const float *pooled,
                     const cs_stage_io *io, float *x, float *result)
{
    size_t ne = N * hc * wc * 16;
    float *eff = cs_calloc(2 * ne * sizeof(float));   /* [C; zeros] */
    float *r = calloc(2 * N, sizeof(float));
    if (!eff || !r) {
        cs_free(eff);
        free(r);
        return cs_oom("the Stage B effnet conditioning", 2 * ne * sizeof(float));
    }
    memcpy(eff, effnet, ne * sizeof(float));
    b_ctx c = {m, H, W, hc, wc, eff, pooled, r, io->cancel};
    step_ctx sc = {io};
    cs_sampler_io sio = {b_eps, &c, io->noise, io->noise_ctx, step_cb, &sc,
                         io->step_noise, io->step_noise_ctx, io->seeded_noise, io->seed};
    int rc = cs_sample(sp, (int)N, H * W * 4, x, result, &sio);
    cs_free(eff);
    free(r);
    return rc;
}
