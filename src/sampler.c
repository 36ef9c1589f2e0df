/* GDF schedule, noise condition, CFG and the DDPM/DDIM/LCM loop; see
 * sampler.h. Everything is float32 in the order the official code evaluates
 * its tensor expressions, so the per-step constants match the printed tables
 * of the official gdf/ code and the trajectories match up to libm rounding. */
#include "sampler.h"

#include "ksampler.h"

#include "error.h"
#include "tensor.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define GDF_S 0.008f
/* torch.pi used as a Python float against float32 tensors: rounded to float */
#define PI_F 3.14159265358979323846f
#define HALF_PI_F 1.57079632679489661923f

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* cos(s/(1+s) * pi/2)^2 = 0.99984455 (0x3F7FF5D0) */
static float gdf_min_var(void)
{
    float c = cosf(GDF_S / (1.0f + GDF_S) * PI_F * 0.5f);
    return c * c;
}

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

float cs_gdf_logsnr(float t, float shift)
{
    float min_var = gdf_min_var();
    t = clampf(t, 0.0f, 1.0f);
    /* the clamp is on the cosine, before squaring */
    float c = clampf(cosf((GDF_S + t) / (1.0f + GDF_S) * PI_F * 0.5f), 0.0f, 1.0f);
    float var = clampf(c * c / min_var, 0.0001f, 0.9999f);
    float l = logf(var / (1.0f - var));
    if (shift != 1.0f)
        l += (float)(2.0 * log(1.0 / (double)shift));
    /* limits come from the unshifted schedule and apply after the shift */
    return clampf(l, CS_GDF_LOGSNR_LO, CS_GDF_LOGSNR_HI);
}

float cs_gdf_noise_cond(float logsnr)
{
    float var = clampf(sigmoidf(logsnr), 0.0f, 1.0f);
    float r = acosf(sqrtf(var * gdf_min_var())) / HALF_PI_F * (1.0f + GDF_S) - GDF_S;
    return clampf(r, 0.0f, 1.0f);
}

void cs_gdf_vp(float logsnr, float *a, float *b)
{
    float a2 = sigmoidf(logsnr);
    *a = sqrtf(a2);
    *b = sqrtf(1.0f - a2);   /* from a^2 in float, as torch does: b(9.21) = 0.0100008 */
}

void cs_gdf_diffuse(const float *x0, const float *eps, size_t n, size_t per, float t, float shift, float *x)
{
    float a, b;
    cs_gdf_vp(cs_gdf_logsnr(t, shift), &a, &b);
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < per; i++) {
            float xa = x0[i] * a, eb = eps[k * per + i] * b;   /* torch: x0*a + eps*b, each rounded */
            x[k * per + i] = xa + eb;
        }
}

int cs_img2img_steps(int steps, double strength)
{
    int s = (int)(steps * strength);
    return s > 0 ? s : 1;
}

/* torch.linspace(start, end, n), float32, as the CPU kernel produces it: the
 * first half counts up from start, the second half down from end; whole
 * blocks of 16 go through 8-wide vectors that count base + k*step from each
 * vector's first index (this moves some t by an ulp, and the §4 tables were
 * printed from exactly these values). */
void cs_linspace_f32(float *t, float start, float end, size_t n)
{
    if (n == 1) {
        t[0] = start;
        return;
    }
    float step = (end - start) / (float)(n - 1);
    size_t halfway = n / 2, i = 0;
    for (; i + 16 <= n; i += 16) {
        for (size_t v = i; v < i + 16; v += 8) {
            float base = v < halfway ? start + step * (float)v : end - step * (float)(n - v - 1);
            t[v] = base;
            for (int k = 1; k < 8; k++)
                t[v + k] = base + (float)k * step;
        }
    }
    for (; i < n; i++)
        t[i] = i < halfway ? start + step * (float)i : end - step * (float)(n - i - 1);
}

int cs_schedule_init(cs_schedule *s, int steps, float shift, float t_start, float t_end)
{
    memset(s, 0, sizeof *s);
    if (steps < 1 || steps > 100000 || !(shift > 0.0f) || !isfinite(t_start) || !isfinite(t_end))
        return cs_error(CS_EARG, "sampler: schedule: bad steps %d / shift %g / t range [%g, %g]",
                        steps, (double)shift, (double)t_start, (double)t_end);
    size_t n = (size_t)steps + 1;
    float *blk = cs_alloc(5 * n * sizeof(float));
    if (!blk)
        return cs_oom("the sampler schedule", 5 * n * sizeof(float));
    s->steps = steps;
    s->t = blk;
    s->logsnr = blk + n;
    s->r = blk + 2 * n;
    s->a = blk + 3 * n;
    s->b = blk + 4 * n;
    cs_linspace_f32(s->t, t_start, t_end, n);
    for (size_t i = 0; i < n; i++) {
        s->logsnr[i] = cs_gdf_logsnr(s->t[i], shift);
        s->r[i] = cs_gdf_noise_cond(s->logsnr[i]);
        cs_gdf_vp(s->logsnr[i], &s->a[i], &s->b[i]);
    }
    return 0;
}

void cs_schedule_free(cs_schedule *s)
{
    if (!s)
        return;
    cs_free(s->t);
    memset(s, 0, sizeof *s);
}

void cs_sample_defaults_c(cs_sample_params *p)
{
    memset(p, 0, sizeof *p);
    p->steps = 20;
    p->shift = 2.0f;
    p->t_start = 1.0f;
    p->t_end = 0.0f;
    p->cfg = 4.0f;
    p->cfg_rho = 0.7f;
    p->sampler = CS_SAMPLER_DDPM;
    p->eta = 1.0f;
    p->denoise = 1.0;
}

void cs_sample_defaults_b(cs_sample_params *p)
{
    cs_sample_defaults_c(p);
    p->steps = 10;
    p->shift = 1.0f;
    p->cfg = 1.1f;
}

/* Element-wise loops over a stage's latents run on the thread pool above
 * this many floats (Stage B's 1024^2 latent is 262144 an image): the same
 * values at any thread count. */
#define PAR_MIN 65536

void cs_cfg_lerp(const float *c, const float *u, float w, float *out, size_t n)
{
    /* ATen CPU lerp: small weights step from the start, large ones back from
     * the end; one rounding in each fma */
    if (fabsf(w) < 0.5f) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++)
            out[i] = fmaf(w, c[i] - u[i], u[i]);
    } else {
        float omw = 1.0f - w;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float d = c[i] - u[i];
            out[i] = fmaf(-d, omw, c[i]);
        }
    }
}

/* Sums in double over fixed chunks (at most STD_PARTS, each with four
 * interleaved accumulators), the partial sums then added in order: the
 * chunking depends on n alone, so the result does not depend on the thread
 * count. */
#define STD_PARTS 256
#define STD_MIN_CHUNK 4096

static double sum_chunk(const float *x, size_t n, double mean, int sq)
{
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) {
            double d = (double)x[i + k] - mean;
            s[k] += sq ? d * d : d;
        }
    for (; i < n; i++) {
        double d = (double)x[i] - mean;
        s[0] += sq ? d * d : d;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static double sum_parts(const float *x, size_t n, double mean, int sq)
{
    size_t chunk = (n + STD_PARTS - 1) / STD_PARTS;
    if (chunk < STD_MIN_CHUNK)
        chunk = STD_MIN_CHUNK;
    long nc = (long)((n + chunk - 1) / chunk);
    double part[STD_PARTS];
#pragma omp parallel for schedule(static) if (nc > 1 && n >= PAR_MIN)
    for (long c = 0; c < nc; c++) {
        size_t o = (size_t)c * chunk;
        part[c] = sum_chunk(x + o, n - o < chunk ? n - o : chunk, mean, sq);
    }
    double t = 0.0;
    for (long c = 0; c < nc; c++)
        t += part[c];
    return t;
}

float cs_std_unbiased(const float *x, size_t n)
{
    if (n < 2)
        return NAN;   /* torch gives nan for one element */
    double mean = sum_parts(x, n, 0.0, 0) / (double)n;
    return (float)sqrt(sum_parts(x, n, mean, 1) / (double)(n - 1));
}

void cs_cfg_rescale(float *e, size_t n, float sd_c, float sd_cfg, float rho)
{
    /* rho*(e*sd_c/(sd_cfg+1e-9)) + e*(1-rho): each tensor op rounds to float */
    float den = sd_cfg + 1e-9f;
    float keep = (float)(1.0 - (double)rho);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float scaled = e[i] * sd_c / den;
        float p = rho * scaled;
        float q = e[i] * keep;
        e[i] = p + q;
    }
}

/* x <- next x from x0 and eps (§1.5); z is the fresh draw */
static void sampler_step(const cs_sample_params *p, const cs_schedule *s, int i,
                         float *x, const float *x0, const float *eps, const float *z,
                         size_t count)
{
    float a = s->a[i], b = s->b[i], ap = s->a[i + 1], bp = s->b[i + 1];
    if (p->sampler == CS_SAMPLER_LCM) {
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
        for (size_t k = 0; k < count; k++) {
            float u = x0[k] * ap;
            float v = z[k] * bp;
            x[k] = u + v;
        }
        return;
    }
    float eta = p->sampler == CS_SAMPLER_DDPM ? 1.0f : p->eta;
    float sigma = 0.0f;
    if (eta > 0.0f) {
        float r1 = sqrtf(bp * bp / (b * b));
        float r2 = sqrtf(1.0f - a * a / (ap * ap));
        sigma = eta * r1 * r2;
    }
    float ce = sqrtf(bp * bp - sigma * sigma);
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
    for (size_t k = 0; k < count; k++) {
        float u = ap * x0[k];
        float v = ce * eps[k];
        float w = sigma * z[k];
        float uv = u + v;
        x[k] = uv + w;
    }
}

/* The next step's noise drawn on a thread of its own while the model runs:
 * the draws do not depend on the model's output, and they come from the
 * generator in the same order, so the values are the same as drawn after
 * it (Stage B's 262144 normals an image take milliseconds on the host
 * beside a ~20 ms forward on a GPU). */
#define NOISE_THREAD_MIN 16384

typedef struct {
    const cs_sampler_io *io;
    float *z;
    size_t n;
    int rc, running;
    char msg[512];
    pthread_t th;
} noise_job;

static void *noise_run(void *arg)
{
    noise_job *j = arg;
    j->rc = j->io->noise(j->io->noise_ctx, j->z, j->n);
    if (j->rc)
        snprintf(j->msg, sizeof j->msg, "%s", cs_last_error());
    return NULL;
}

static void noise_start(noise_job *j)
{
    j->running = j->n >= NOISE_THREAD_MIN && pthread_create(&j->th, NULL, noise_run, j) == 0;
    if (!j->running)
        noise_run(j);
}

/* 0, or the draw's error raised on this thread */
static int noise_wait(noise_job *j)
{
    if (j->running) {
        pthread_join(j->th, NULL);
        j->running = 0;
    }
    return j->rc ? cs_error(j->rc, "%s", j->msg) : 0;
}

int cs_sample(const cs_sample_params *p, int n, size_t per_image, float *x,
              float *result, const cs_sampler_io *io)
{
    if (!p || n < 1 || !per_image || !x || !result || !io || !io->eps || !io->noise)
        return cs_error(CS_EARG, "sampler: bad arguments (n=%d, per_image=%zu)", n, per_image);
    if (p->ks_sampler != CS_KS_NONE)
        return cs_ks_sample(p, n, per_image, x, result, io);
    if (p->sampler != CS_SAMPLER_DDPM && p->sampler != CS_SAMPLER_DDIM &&
        p->sampler != CS_SAMPLER_LCM)
        return cs_error(CS_EARG, "sampler: unknown sampler kind %d", (int)p->sampler);
    if (!isfinite(p->cfg) || !isfinite(p->cfg_rho) || p->cfg_rho < 0.0f)
        return cs_error(CS_EARG, "sampler: bad cfg %g / cfg_rho %g", (double)p->cfg,
                        (double)p->cfg_rho);

    cs_schedule s;
    int rc = cs_schedule_init(&s, p->steps, p->shift, p->t_start, p->t_end);
    if (rc)
        return rc;

    size_t count = (size_t)n * per_image;
    int use_cfg = p->cfg != 0.0f && p->cfg != 1.0f;
    size_t nb = use_cfg ? 2 * count : count;
    float *xx = use_cfg ? cs_alloc(nb * sizeof(float)) : NULL;
    float *e = cs_alloc(nb * sizeof(float));
    float *z = cs_alloc(count * sizeof(float));
    if ((use_cfg && !xx) || !e || !z) {
        rc = cs_oom("the sampler state", (nb * 2 + count) * sizeof(float));
        goto done;
    }

    if (!p->x_init_given && (rc = io->noise(io->noise_ctx, x, count)) != 0)
        goto done;

    for (int i = 0; i < s.steps; i++) {
        const float *pred;
        /* every sampler draws z, even when its coefficient is 0 */
        noise_job nj = {.io = io, .z = z, .n = count};
        noise_start(&nj);
        if (use_cfg) {
            memcpy(xx, x, count * sizeof(float));
            memcpy(xx + count, x, count * sizeof(float));
            rc = io->eps(io->eps_ctx, xx, 2 * n, s.r[i], e);
            int nrc = noise_wait(&nj);
            if (rc || (rc = nrc) != 0)
                goto done;
            float *ec = e, *eu = e + count;
            float sd_c = p->cfg_rho > 0.0f ? cs_std_unbiased(ec, count) : 0.0f;
            cs_cfg_lerp(ec, eu, p->cfg, eu, count);
            if (p->cfg_rho > 0.0f)
                cs_cfg_rescale(eu, count, sd_c, cs_std_unbiased(eu, count), p->cfg_rho);
            pred = eu;
        } else {
            rc = io->eps(io->eps_ctx, x, n, s.r[i], e);
            int nrc = noise_wait(&nj);
            if (rc || (rc = nrc) != 0)
                goto done;
            pred = e;
        }
        /* epsilon target: x0 = (x - eps*b) / a */
        float a = s.a[i], b = s.b[i];
#pragma omp parallel for schedule(static) if (count >= PAR_MIN)
        for (size_t k = 0; k < count; k++) {
            float t = pred[k] * b;
            result[k] = (x[k] - t) / a;
        }
        sampler_step(p, &s, i, x, result, pred, z, count);
        if (io->on_step) {
            rc = io->on_step(io->step_ctx, i, s.steps, result, x);
            if (rc > 0)
                rc = cs_error(CS_EINTR, "sampler: stopped at step %d of %d", i + 1, s.steps);
            if (rc)
                goto done;
        }
    }
done:
    cs_free(xx);
    cs_free(e);
    cs_free(z);
    cs_schedule_free(&s);
    return rc;
}
