/* ComfyUI's KSampler for Stable Cascade: k-diffusion samplers on the
 * StableCascadeSampling sigma table (comfy/model_sampling.py,
 * comfy/samplers.py, comfy/k_diffusion/sampling.py), so a seed and settings
 * give the latents ComfyUI gives on the CPU.
 *
 * The model is an epsilon predictor seen through ComfyUI's EPS wrapper:
 *   x_in = x / sqrt(sigma^2 + 1), r = timestep(sigma) (the model's t),
 *   denoised = x - eps(x_in, r) * sigma,
 * CFG on the denoised halves: uncond + (cond - uncond) * cfg (skipped, with
 * one N-batch call, when cfg is 1 or 0 = off), no cfg_rho rescale.
 *
 * Noise as ComfyUI draws it: the initial noise from a generator seeded with
 * the seed (comfy.sample.prepare_noise: one randn of the whole [B,C,H,W]
 * latent), scaled by sqrt(1 + sigma_0^2) when sigma_0 is the table's
 * maximum (else by sigma_0) and added to the latent image; the ancestral
 * / LCM / DDPM noise from a second generator, also seeded with the seed
 * (k_diffusion default_noise_sampler), one whole-latent randn per step that
 * adds noise. So the first ancestral draw repeats the initial noise, as in
 * ComfyUI. Everything is float32, operation for operation as torch runs it. */
#ifndef CS_KSAMPLER_H
#define CS_KSAMPLER_H

#include "sampler.h"

#include <stddef.h>

typedef enum {
    CS_KS_NONE = 0,        /* the official GDF loop (sampler.h) */
    CS_KS_EULER,
    CS_KS_EULER_ANCESTRAL,
    CS_KS_DPMPP_2M,
    CS_KS_DPMPP_2M_SDE,    /* noise from torchsde's Brownian tree (brownian.h) */
    CS_KS_LCM,
    CS_KS_DDPM,
    CS_KS_COUNT
} cs_ks_sampler;

typedef enum {
    CS_KSCHED_SIMPLE = 0,
    CS_KSCHED_NORMAL,
    CS_KSCHED_KARRAS,
    CS_KSCHED_EXPONENTIAL,
    CS_KSCHED_SGM_UNIFORM,
    CS_KSCHED_COUNT
} cs_ks_scheduler;

/* ComfyUI's names ("euler_ancestral", "karras"); -1 / NULL when unknown. */
int cs_ks_sampler_from_name(const char *name);
const char *cs_ks_sampler_name(int s);
int cs_ks_scheduler_from_name(const char *name);
const char *cs_ks_scheduler_name(int s);

/* StableCascadeSampling (cosine s = 0.008, logSNR shifted by 2 log(1/shift)) */
#define CS_KS_TABLE 10000
float cs_ks_sigma(float t, float shift);   /* sigma of t in [0, 1] */
float cs_ks_timestep(float sigma);         /* the model's r for sigma */
/* table[i] = sigma((i + 1) / 10000), i < CS_KS_TABLE */
void cs_ks_table(float shift, float *table);

/* The sigmas of a run: steps + 1 values, the last 0. denoise in (0, 1]:
 * below 0.9999 the last steps + 1 of a int(steps / denoise)-step schedule.
 * out must hold steps + 1 floats. */
int cs_ks_sigmas(cs_ks_scheduler sched, int steps, float shift, double denoise, float *out);

/* Runs the sampler p->ks_sampler with p->ks_scheduler, p->steps, p->shift,
 * p->denoise, p->cfg on n images of per_image floats.
 *   x: in: the latent image (zeros for text-to-image; read only when
 *      p->x_init_given, else taken as zeros); out: the final latent.
 *   result: out: the final latent too (ComfyUI's stage result).
 * io->noise draws the initial noise, io->step_noise the sampler's noise
 * (both required; each must be a generator of its own). io->on_step gets
 * the denoised prediction and the new x after each step. */
int cs_ks_sample(const cs_sample_params *p, int n, size_t per_image, float *x, float *result,
                 const cs_sampler_io *io);

#endif
