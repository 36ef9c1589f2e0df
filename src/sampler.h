/* GDF sampling as Stable Cascade uses it (upstream gdf/, doc/reference.md).
 *
 * Cosine schedule with shift (logSNR clamped to the float32 limits), VP
 * scaler (a, b), CosineTNoiseCond (the model's r), epsilon target, DDPM /
 * DDIM / LCM steps, CFG through torch's lerp rounding with the cfg_rho std
 * rescale. The result of a stage is the x0 predicted at the LAST step.
 *
 * The sampler is a loop driver: it owns no model. It calls
 *   eps(ctx, x_batch, n_batch, r, eps_out)
 * for the noise prediction and noise(ctx, out, n) for every standard-normal
 * tensor it needs (init + one per step, in the official order), so the
 * pipeline can plug in cs_rng and a golden test can replay recorded draws.
 * The math is element-wise plus whole-tensor stds, so the tensor layout is
 * whatever the caller uses (NCHW or NHWC); only the element count matters,
 * and the noise source must fill values in that same layout. */
#ifndef CS_SAMPLER_H
#define CS_SAMPLER_H

#include "brownian.h"

#include <stddef.h>

typedef enum {
    CS_SAMPLER_DDPM = 0,   /* DDIM with eta = 1 (official) */
    CS_SAMPLER_DDIM,       /* eta from params (0 = deterministic, still draws z) */
    CS_SAMPLER_LCM,
} cs_sampler_kind;

/* ---- schedule ---------------------------------------------------------- */

/* float32 limits of the unshifted schedule at t = 1 and t = 0 (§1.1) */
#define CS_GDF_LOGSNR_LO (-9.210240364074707f)
#define CS_GDF_LOGSNR_HI (9.210074424743652f)

float cs_gdf_logsnr(float t, float shift);       /* §1.1, float32 arithmetic */
float cs_gdf_noise_cond(float logsnr);           /* §1.3, the model's r */
void cs_gdf_vp(float logsnr, float *a, float *b); /* §1.2 */
/* torch.linspace(start, end, n) in float32, value for value as torch's CPU
 * kernel gives it (also used by the ComfyUI schedulers, ksampler.c). */
void cs_linspace_f32(float *t, float start, float end, size_t n);

/* GDF.diffuse at one time t (img2img's start, §6.1): x[k] = x0*a + eps[k]*b
 * for each of the n images, (a, b) of the schedule at t with this shift (the
 * notebook uses shift 1 here). x0: one image [per] shared by all n; eps, x:
 * [n * per] in any layout that x0 shares; x may alias eps. */
void cs_gdf_diffuse(const float *x0, const float *eps, size_t n, size_t per, float t, float shift, float *x);
/* Steps an img2img run samples: int(steps * strength) as Python computes it
 * (in double: int(20 * 0.35) = 7, a float strength gives 6), at least 1. */
int cs_img2img_steps(int steps, double strength);

/* Per-step constants for i = 0..steps: t_i = linspace(t_start, t_end, steps+1)
 * (torch's float32 linspace), logSNR_i, r_i, a_i, b_i. Row `steps` is only
 * the "next" of the last step. */
typedef struct {
    int steps;
    float *t, *logsnr, *r, *a, *b;   /* steps + 1 entries each (one block) */
} cs_schedule;

int cs_schedule_init(cs_schedule *s, int steps, float shift, float t_start, float t_end);
void cs_schedule_free(cs_schedule *s);   /* zeroed or NULL is fine */

/* ---- sampling loop ----------------------------------------------------- */

typedef struct {
    int steps;              /* 20 (C) / 10 (B) */
    float shift;            /* 2 (C) / 1 (B) */
    float t_start, t_end;   /* 1 / 0 */
    float cfg;              /* 4 (C) / 1.1 (B); 0 or 1 = no CFG, one N-batch call */
    float cfg_rho;          /* 0.7; 0 disables the std rescale */
    cs_sampler_kind sampler;
    float eta;              /* DDIM only (DDPM uses 1, LCM none) */
    int x_init_given;       /* 1: x holds x_init on entry, no init draw */
    /* ComfyUI's KSampler instead of the loop above (ksampler.h): a
     * cs_ks_sampler (0 = none), a cs_ks_scheduler, its denoise in (0, 1] */
    int ks_sampler, ks_scheduler;
    double denoise;
    /* steps + 1 sigmas to use instead of the scheduler's (ComfyUI's
     * SamplerCustom SIGMAS input); NULL: the scheduler's */
    const float *ks_sigmas;
} cs_sample_params;

void cs_sample_defaults_c(cs_sample_params *p);   /* official Stage C settings */
void cs_sample_defaults_b(cs_sample_params *p);   /* official Stage B settings */

/* Noise prediction for n_batch images of `per_image` floats each (the caller
 * knows per_image). With CFG, n_batch = 2N and x_batch = [x; x]: eps_out must
 * get [conditional; unconditional]; without CFG, n_batch = N, conditional.
 * Returns 0 or a negative CS_E* code. */
typedef int (*cs_eps_fn)(void *ctx, const float *x_batch, int n_batch, float r,
                         float *eps_out);
/* n standard-normal floats in the caller's layout. */
typedef int (*cs_noise_fn)(void *ctx, float *out, size_t n);
/* After step i (0-based): x0 predicted at this step and the sampler's new x.
 * Return nonzero to stop (cs_sample then returns that value, or CS_EINTR if
 * it was positive). Optional. */
typedef int (*cs_step_fn)(void *ctx, int step, int steps, const float *x0,
                          const float *x);

typedef struct {
    cs_eps_fn eps;
    void *eps_ctx;
    cs_noise_fn noise;
    void *noise_ctx;
    cs_step_fn on_step;     /* may be NULL */
    void *step_ctx;
    /* the sampler's own noise (ComfyUI samplers only: ancestral / SDE draws
     * come from a second generator seeded like the first) */
    cs_noise_fn step_noise;
    void *step_noise_ctx;
    /* dpmpp_2m_sde only: its Brownian tree's noise tensors, each from a
     * fresh generator (ctx step_noise_ctx; brownian.h), and the KSampler
     * seed that is the tree's entropy */
    cs_seeded_noise_fn seeded_noise;
    uint64_t seed;
} cs_sampler_io;

/* Runs the GDF loop on n images of per_image floats.
 *   x:      [n * per_image]; in: x_init if p->x_init_given (else overwritten
 *           by the init draw); out: the sampler's x after the last step.
 *   result: [n * per_image]; out: x0 of the last step (the stage result).
 * Noise order: init (unless given), then one tensor per step, last included. */
int cs_sample(const cs_sample_params *p, int n, size_t per_image, float *x,
              float *result, const cs_sampler_io *io);

/* Building blocks (exposed for tests). */
/* torch.lerp(u, c, w) rounding on CPU, element-wise into out (may alias). */
void cs_cfg_lerp(const float *c, const float *u, float w, float *out, size_t n);
/* Unbiased std over n floats, accumulated in double, rounded to float. */
float cs_std_unbiased(const float *x, size_t n);
/* out = rho * (e * sd_c / (sd_cfg + 1e-9)) + (1 - rho) * e, torch op order. */
void cs_cfg_rescale(float *e, size_t n, float sd_c, float sd_cfg, float rho);

#endif
