/* ComfyUI's KSampler on StableCascadeSampling; see ksampler.h. Every
 * scalar is a float32 0-dim tensor in ComfyUI, so each operation below
 * rounds to float in the order torch evaluates the Python expression. */
#include "ksampler.h"

#include "brownian.h"

#include "error.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

#define COS_S 0.008f
#define PI_F 3.14159265358979323846f   /* torch.pi against a float32 tensor */

static const char *const sampler_names[CS_KS_COUNT] = {
    NULL, "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "lcm", "ddpm"};
static const char *const sched_names[CS_KSCHED_COUNT] = {
    "simple", "normal", "karras", "exponential", "sgm_uniform"};

int cs_ks_sampler_from_name(const char *name)
{
    for (int i = 1; name && i < CS_KS_COUNT; i++)
        if (!strcmp(name, sampler_names[i]))
            return i;
    return -1;
}

const char *cs_ks_sampler_name(int s)
{
    return s > 0 && s < CS_KS_COUNT ? sampler_names[s] : NULL;
}

int cs_ks_scheduler_from_name(const char *name)
{
    for (int i = 0; name && i < CS_KSCHED_COUNT; i++)
        if (!strcmp(name, sched_names[i]))
            return i;
    return -1;
}

const char *cs_ks_scheduler_name(int s)
{
    return s >= 0 && s < CS_KSCHED_COUNT ? sched_names[s] : NULL;
}

/* cos(s / (1 + s) * pi * 0.5)^2, StableCascadeSampling._init_alpha_cumprod */
static float init_acp(void)
{
    float c = cosf(COS_S / (1.0f + COS_S) * PI_F * 0.5f);
    return c * c;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

float cs_ks_sigma(float t, float shift)
{
    float c = cosf((t + COS_S) / (1.0f + COS_S) * PI_F * 0.5f);
    float acp = c * c / init_acp();
    if (shift != 1.0f) {
        float l = logf(acp / (1.0f - acp));
        l += 2.0f * logf(1.0f / shift);
        acp = 1.0f / (1.0f + expf(-l));   /* torch's scalar sigmoid */
    }
    acp = clampf(acp, 0.0001f, 0.9999f);
    return sqrtf((1.0f - acp) / acp);
}

float cs_ks_timestep(float sigma)
{
    float var = clampf(1.0f / (sigma * sigma + 1.0f), 0.0f, 1.0f);
    return acosf(sqrtf(var * init_acp())) / (float)(3.141592653589793 * 0.5) * (1.0f + COS_S) - COS_S;
}

void cs_ks_table(float shift, float *table)
{
    for (int i = 0; i < CS_KS_TABLE; i++)
        table[i] = cs_ks_sigma((float)((i + 1) / (double)CS_KS_TABLE), shift);
}

/* math.isclose(a, b, rel_tol) */
static int isclose(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b));
}

/* the scheduler's n + 1 sigmas (n steps, last 0) into out */
static void schedule(cs_ks_scheduler sched, int n, float shift, const float *tab, float *out)
{
    float smin = tab[0], smax = tab[CS_KS_TABLE - 1];
    switch (sched) {
    case CS_KSCHED_SIMPLE: {
        double ss = (double)CS_KS_TABLE / n;
        for (int i = 0; i < n; i++)
            out[i] = tab[CS_KS_TABLE - 1 - (int)(i * ss)];
        break;
    }
    case CS_KSCHED_NORMAL:
    case CS_KSCHED_SGM_UNIFORM: {
        float start = cs_ks_timestep(smax), end = cs_ks_timestep(smin);
        if (sched == CS_KSCHED_SGM_UNIFORM) {
            /* linspace(start, end, n + 1)[:-1]: out[n] is overwritten below */
            cs_linspace_f32(out, start, end, (size_t)n + 1);
        } else if (fabsf(cs_ks_sigma(end, shift)) <= 1e-5f) {
            cs_linspace_f32(out, start, end, (size_t)n + 1);   /* ends on sigma 0 itself */
            for (int i = 0; i <= n; i++)
                out[i] = cs_ks_sigma(out[i], shift);
            return;
        } else {
            cs_linspace_f32(out, start, end, (size_t)n);
        }
        for (int i = 0; i < n; i++)
            out[i] = cs_ks_sigma(out[i], shift);
        break;
    }
    case CS_KSCHED_KARRAS: {
        double rho = 7.0, lo = pow((double)smin, 1.0 / rho), hi = pow((double)smax, 1.0 / rho);
        cs_linspace_f32(out, 0.0f, 1.0f, (size_t)n);
        float span = (float)(lo - hi), base = (float)hi;
        for (int i = 0; i < n; i++)
            out[i] = powf(base + out[i] * span, 7.0f);
        break;
    }
    case CS_KSCHED_EXPONENTIAL:
        cs_linspace_f32(out, (float)log((double)smax), (float)log((double)smin), (size_t)n);
        for (int i = 0; i < n; i++)
            out[i] = expf(out[i]);
        break;
    default:
        break;
    }
    out[n] = 0.0f;
}

int cs_ks_sigmas(cs_ks_scheduler sched, int steps, float shift, double denoise, float *out)
{
    if ((unsigned)sched >= CS_KSCHED_COUNT || steps < 1 || steps > 100000 || !(shift > 0.0f) ||
        !(denoise > 0.0 && denoise <= 1.0))
        return cs_error(CS_EARG, "ksampler: bad scheduler %d / steps %d / shift %g / denoise %g", (int)sched, steps,
                        (double)shift, denoise);
    int total = steps;
    if (denoise <= 0.9999)
        total = (int)(steps / denoise);   /* ComfyUI: int(steps / denoise) */
    if (total > 10000000)
        return cs_error(CS_EARG, "ksampler: denoise %g with %d steps needs %d steps", denoise, steps, total);
    float *tab = cs_alloc(CS_KS_TABLE * sizeof(float));
    float *all = cs_alloc(((size_t)total + 1) * sizeof(float));
    if (!tab || !all) {
        cs_free(tab), cs_free(all);
        return cs_oom("the sampler sigmas", ((size_t)total + 1 + CS_KS_TABLE) * sizeof(float));
    }
    cs_ks_table(shift, tab);
    schedule(sched, total, shift, tab, all);
    memcpy(out, all + (total - steps), ((size_t)steps + 1) * sizeof(float));
    cs_free(tab);
    cs_free(all);
    return 0;
}

/* ---- the denoiser: EPS wrapper + CFG ---------------------------------- */

typedef struct {
    const cs_sample_params *p;
    const cs_sampler_io *io;
    int n, use_cfg;
    size_t count;
    float *xin, *e;   /* [2 * count] each */
} denoiser;

/* den <- the (guided) denoised prediction of x at sigma */
static int denoise_at(denoiser *d, const float *x, float sigma, float *den)
{
    size_t count = d->count;
    float s = sqrtf(sigma * sigma + 1.0f);
    for (size_t k = 0; k < count; k++)
        d->xin[k] = x[k] / s;
    float r = cs_ks_timestep(sigma);
    int rc;
    if (!d->use_cfg) {
        if ((rc = d->io->eps(d->io->eps_ctx, d->xin, d->n, r, d->e)) != 0)
            return rc;
        for (size_t k = 0; k < count; k++)
            den[k] = x[k] - d->e[k] * sigma;
        return 0;
    }
    memcpy(d->xin + count, d->xin, count * sizeof(float));
    if ((rc = d->io->eps(d->io->eps_ctx, d->xin, 2 * d->n, r, d->e)) != 0)
        return rc;
    float w = d->p->cfg;
    const float *ec = d->e, *eu = d->e + count;
    for (size_t k = 0; k < count; k++) {
        float c = x[k] - ec[k] * sigma, u = x[k] - eu[k] * sigma;
        den[k] = u + (c - u) * w;
    }
    return 0;
}

/* ---- the samplers, one step each (k_diffusion/sampling.py) ------------- */

/* euler: x + (x - den) / sigma * (sn - sigma) */
static void step_euler(float *x, const float *den, float sigma, float sn, size_t count)
{
    float dt = sn - sigma;
    for (size_t k = 0; k < count; k++) {
        float dd = (x[k] - den[k]) / sigma;
        x[k] = x[k] + dd * dt;
    }
}

/* get_ancestral_step with eta 1; returns sigma_down */
static float ancestral(float sf, float st, float *up)
{
    float st2 = st * st, sf2 = sf * sf;
    float v = sqrtf(st2 * (sf2 - st2) / sf2);
    *up = v < st ? v : st;   /* Python min(st, v) */
    return sqrtf(st2 - *up * *up);
}

/* DDPMSampler_step inside generic_step_sampler; z NULL when sn is 0 */
static void step_ddpm(float *x, const float *den, const float *z, float sigma, float sn, size_t count)
{
    float sq = sqrtf(1.0f + sigma * sigma);
    float acp = 1.0f / (sigma * sigma + 1.0f), acp_prev = 1.0f / (sn * sn + 1.0f);
    float alpha = acp / acp_prev;
    float c1 = sqrtf(1.0f / alpha), k1 = 1.0f - alpha, dv = sqrtf(1.0f - acp);
    float c2 = sqrtf(k1 * (1.0f - acp_prev) / (1.0f - acp));
    float sq_next = sqrtf(1.0f + sn * sn);
    for (size_t k = 0; k < count; k++) {
        float xin = x[k] / sq;
        float eps = (x[k] - den[k]) / sigma;
        float mu = c1 * (xin - k1 * eps / dv);
        if (sn > 0.0f)
            mu = mu + c2 * z[k];
        x[k] = sn != 0.0f ? mu * sq_next : mu;
    }
}

int cs_ks_sample(const cs_sample_params *p, int n, size_t per_image, float *x, float *result,
                 const cs_sampler_io *io)
{
    if (!p || n < 1 || !per_image || !x || !result || !io || !io->eps || !io->noise)
        return cs_error(CS_EARG, "ksampler: bad arguments (n=%d, per_image=%zu)", n, per_image);
    if (p->ks_sampler <= CS_KS_NONE || p->ks_sampler >= CS_KS_COUNT)
        return cs_error(CS_EARG, "ksampler: unknown sampler %d", p->ks_sampler);
    if (p->ks_sampler == CS_KS_DPMPP_2M_SDE && !io->seeded_noise)
        return cs_error(CS_EARG, "ksampler: dpmpp_2m_sde needs a seeded noise source for its Brownian tree");
    int needs_noise = p->ks_sampler == CS_KS_EULER_ANCESTRAL || p->ks_sampler == CS_KS_LCM ||
                      p->ks_sampler == CS_KS_DDPM;
    if (needs_noise && !io->step_noise)
        return cs_error(CS_EARG, "ksampler: %s needs a noise source of its own", cs_ks_sampler_name(p->ks_sampler));
    if (!isfinite(p->cfg))
        return cs_error(CS_EARG, "ksampler: bad cfg %g", (double)p->cfg);

    const int steps = p->steps;
    const size_t count = (size_t)n * per_image;
    float *sig = cs_alloc(((size_t)steps + 1) * sizeof(float));
    float *tab = cs_alloc(CS_KS_TABLE * sizeof(float));
    float *den = cs_alloc(count * sizeof(float)), *old = cs_alloc(count * sizeof(float));
    float *z = cs_alloc(count * sizeof(float));
    denoiser d = {p, io, n, !(p->cfg == 0.0f || isclose(p->cfg, 1.0, 1e-9)), count,
                  cs_alloc(2 * count * sizeof(float)), cs_alloc(2 * count * sizeof(float))};
    int rc = 0;
    cs_brownian *bt = NULL;
    if (!sig || !tab || !den || !old || !z || !d.xin || !d.e) {
        rc = cs_oom("the sampler state", 7 * count * sizeof(float));
        goto done;
    }
    if (p->ks_sigmas)
        memcpy(sig, p->ks_sigmas, ((size_t)steps + 1) * sizeof(float));
    else if ((rc = cs_ks_sigmas((cs_ks_scheduler)p->ks_scheduler, steps, p->shift, p->denoise, sig)) != 0)
        goto done;
    cs_ks_table(p->shift, tab);

    /* noise_scaling: noise * sqrt(1 + s0^2) from the top of the table, else
     * noise * s0; plus the latent image */
    if ((rc = io->noise(io->noise_ctx, z, count)) != 0)
        goto done;
    {
        float smax = tab[CS_KS_TABLE - 1], s0 = sig[0];
        int max_denoise = isclose(smax, s0, 1e-5) || s0 > smax;
        float scale = max_denoise ? sqrtf(1.0f + s0 * s0) : s0;
        for (size_t k = 0; k < count; k++) {
            float v = z[k] * scale;
            x[k] = p->x_init_given ? v + x[k] : v;
        }
    }

    /* dpmpp_2m_sde: BrownianTreeNoiseSampler over [smallest sigma > 0, largest] */
    if (p->ks_sampler == CS_KS_DPMPP_2M_SDE) {
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i <= steps; i++) {
            if (sig[i] > 0.0f && sig[i] < lo)
                lo = sig[i];
            if (sig[i] > hi)
                hi = sig[i];
        }
        if (lo <= hi && (rc = cs_brownian_new(lo, hi, io->seed, count, io->seeded_noise, io->step_noise_ctx, &bt)))
            goto done;
    }

    int have_old = 0;
    float h_last = 0.0f;
    for (int i = 0; i < steps; i++) {
        float s = sig[i], sn = sig[i + 1];
        if ((rc = denoise_at(&d, x, s, den)) != 0)
            goto done;
        switch (p->ks_sampler) {
        case CS_KS_EULER:
            step_euler(x, den, s, sn, count);
            break;
        case CS_KS_EULER_ANCESTRAL: {
            float up, down = ancestral(s, sn, &up);
            if (down == 0.0f) {
                memcpy(x, den, count * sizeof(float));
                break;
            }
            if ((rc = io->step_noise(io->step_noise_ctx, z, count)) != 0)
                goto done;
            float dt = down - s;
            for (size_t k = 0; k < count; k++) {
                float dd = (x[k] - den[k]) / s;
                x[k] = (x[k] + dd * dt) + z[k] * up;
            }
            break;
        }
        case CS_KS_DPMPP_2M: {
            float t = -logf(s), tn = -logf(sn), h = tn - t;
            float ratio = expf(-tn) / expf(-t), em = expm1f(-h);
            if (!have_old || sn == 0.0f) {
                for (size_t k = 0; k < count; k++)
                    x[k] = ratio * x[k] - em * den[k];
            } else {
                float h_last = t - -logf(sig[i - 1]);
                float r = h_last / h, inv = 1.0f / (2.0f * r), c = 1.0f + inv;
                for (size_t k = 0; k < count; k++) {
                    float dd = c * den[k] - inv * old[k];
                    x[k] = ratio * x[k] - em * dd;
                }
            }
            memcpy(old, den, count * sizeof(float));
            have_old = 1;
            break;
        }
        case CS_KS_DPMPP_2M_SDE:   /* eta 1, s_noise 1, midpoint */
            if (sn == 0.0f) {
                memcpy(x, den, count * sizeof(float));
            } else {
                float ls = -logf(s), lt = -logf(sn), h = lt - ls, h_eta = h * 2.0f;
                float alpha = sn * expf(lt), em = -expm1f(-h_eta);
                float a = (sn / s) * expf(-h), c0 = alpha * em;
                for (size_t k = 0; k < count; k++)
                    x[k] = a * x[k] + c0 * den[k];
                if (have_old) {
                    float r = h_last / h, c1 = ((0.5f * alpha) * em) * (1.0f / r);
                    for (size_t k = 0; k < count; k++)
                        x[k] = x[k] + c1 * (den[k] - old[k]);
                }
                /* noise_sampler(s, sn): the tree's W(s) - W(sn) over sqrt|sn - s| */
                if ((rc = cs_brownian_increment(bt, sn, s, z)) != 0)
                    goto done;
                float dv = sqrtf(fabsf(sn - s)), cn = sqrtf(-expm1f(-2.0f * h));
                for (size_t k = 0; k < count; k++) {
                    float nz = -z[k] / dv;
                    x[k] = x[k] + (nz * sn) * cn;
                }
                h_last = h;
            }
            memcpy(old, den, count * sizeof(float));
            have_old = 1;
            break;
        case CS_KS_LCM:
            if (sn > 0.0f) {
                if ((rc = io->step_noise(io->step_noise_ctx, z, count)) != 0)
                    goto done;
                for (size_t k = 0; k < count; k++)
                    x[k] = z[k] * sn + den[k];
            } else {
                memcpy(x, den, count * sizeof(float));
            }
            break;
        case CS_KS_DDPM:
            if (sn > 0.0f && (rc = io->step_noise(io->step_noise_ctx, z, count)) != 0)
                goto done;
            step_ddpm(x, den, z, s, sn, count);
            break;
        }
        if (io->on_step) {
            rc = io->on_step(io->step_ctx, i, steps, den, x);
            if (rc > 0)
                rc = cs_error(CS_EINTR, "sampler: stopped at step %d of %d", i + 1, steps);
            if (rc)
                goto done;
        }
    }
    memcpy(result, x, count * sizeof(float));
done:
    cs_brownian_free(bt);
    cs_free(sig);
    cs_free(tab);
    cs_free(den);
    cs_free(old);
    cs_free(z);
    cs_free(d.xin);
    cs_free(d.e);
    return rc;
}
