/* ComfyUI samplers against ComfyUI itself: tests/data/ksampler_cases.txt
 * holds the sigmas and final latents that ComfyUI's own code gave
 * (tests/ref/make_ksampler_cases.py) for every sampler x scheduler, with
 * CFG, without, and with denoise < 1 on a latent image, on a stand-in
 * network that standin() below computes exactly as the script does. Noise
 * from two torch-CPU generators seeded with the seed, as ComfyUI draws it.
 * Also: names, the sigma table's ends, errors.
 * Exit 0 pass, 1 fail, 99 when the data file is missing. */
#include "check.h"
#include "error.h"
#include "ksampler.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, C = 3, H = 2, W = 4, PER = C * H * W, COUNT = B * PER };

/* Tolerances: sigmas to 2e-6 relative (libm vs torch's vectorised pow/exp);
 * latents to 2e-5 relative to the latent's scale (several steps of float32
 * rounding on values up to ~6). */
#define SIG_TOL 2e-6
#define OUT_TOL 2e-5

/* eps = 0.9*xc + 0.2*(t*w) + 0.1*sin(xc) [+ 0.15*w conditional], w[j] =
 * (j % 7)/7 - 0.5; x_batch = [cond; uncond] with CFG, else [cond] */
typedef struct {
    int n;
    int calls;
} standin_ctx;

static int standin(void *ctx, const float *x, int nb, float r, float *eps)
{
    standin_ctx *s = ctx;
    s->calls++;
    for (int b = 0; b < nb; b++) {
        int cond = b < s->n;
        for (int j = 0; j < PER; j++) {
            float w = (float)(j % 7) / 7.0f - 0.5f;
            float xc = x[b * PER + j];
            float e = xc * 0.9f + (r * w) * 0.2f;
            e = e + sinf(xc) * 0.1f;
            if (cond)
                e = e + w * 0.15f;
            eps[b * PER + j] = e;
        }
    }
    return 0;
}

static float *parse_floats(char *s, int *n)
{
    float *v = malloc(4096 * sizeof(float));
    int k = 0;
    for (char *tok = strtok(s, " \n"); tok && k < 4096; tok = strtok(NULL, " \n"))
        v[k++] = strtof(tok, NULL);
    *n = k;
    return v;
}

/* the Brownian tree's noise tensors: a fresh generator per draw (NCHW) */
static int seeded(void *ctx, uint32_t seed, float *out, size_t n)
{
    (void)ctx;
    cs_rng r;
    cs_rng_seed(&r, seed);
    return cs_rng_randn(&r, out, n);
}

/* Python's round(x, 6), as torchsde rounds its query times */
static double round6(float v)
{
    char b[64];
    snprintf(b, sizeof b, "%.6f", (double)v);
    return strtod(b, NULL);
}

static double rel_err(const float *a, const float *b, int n, double floor)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), floor);
        if (!(d <= worst))
            worst = d;   /* NaN propagates */
    }
    return worst;
}

static int run_cases(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "test_ksampler: cannot open %s\n", path);
        return -1;
    }
    char line[65536], sname[64], sched[64];
    int ncases = 0, n_sde_ref = 0;
    double worst_sig = 0, worst_out = 0;
    while (fgets(line, sizeof line, f)) {
        int steps, seed, use_latent;
        double shift, denoise, cfg;
        if (sscanf(line, "case %63s %63s %d %lf %lf %lf %d %d", sname, sched, &steps, &shift, &denoise, &cfg, &seed,
                   &use_latent) != 8)
            continue;
        int ns = 0, no = 0;
        char sl[65536], ol[65536];
        if (!fgets(sl, sizeof sl, f) || !fgets(ol, sizeof ol, f) || strncmp(sl, "sigmas ", 7) ||
            strncmp(ol, "out ", 4)) {
            CHECK(0, "%s: malformed case", path);
            break;
        }
        float *want_sig = parse_floats(sl + 7, &ns), *want = parse_floats(ol + 4, &no);
        CHECK(ns == steps + 1 && no == COUNT, "case %s %s: %d sigmas, %d values", sname, sched, ns, no);

        cs_sample_params p;
        cs_sample_defaults_c(&p);
        p.ks_sampler = cs_ks_sampler_from_name(sname);
        p.ks_scheduler = cs_ks_scheduler_from_name(sched);
        p.steps = steps;
        p.shift = (float)shift;
        p.denoise = denoise;
        p.cfg = (float)cfg;
        CHECK(p.ks_sampler > 0 && p.ks_scheduler >= 0, "names %s %s", sname, sched);

        float sig[64];
        int rc = cs_ks_sigmas((cs_ks_scheduler)p.ks_scheduler, steps, p.shift, denoise, sig);
        CHECK(rc == 0, "cs_ks_sigmas: %s", cs_last_error());
        double es = rel_err(sig, want_sig, steps + 1, 1e-6);
        CHECK(es <= SIG_TOL, "case %s %s steps %d shift %g denoise %g: sigmas off by %.3g", sname, sched, steps,
              shift, denoise, es);
        worst_sig = fmax(worst_sig, es);

        float x[COUNT], out[COUNT];
        for (int i = 0; i < COUNT; i++)
            x[i] = (float)(i % 5) * 0.25f - 0.5f;   /* the script's latent image */
        p.x_init_given = use_latent;
        cs_rng init, step;
        cs_rng_seed(&init, (uint64_t)seed);
        cs_rng_seed(&step, (uint64_t)seed);
        standin_ctx sc = {B, 0};
        cs_sampler_io io = {standin, &sc, cs_rng_noise, &init, NULL, NULL, cs_rng_noise, &step, seeded, (uint64_t)seed};
        /* dpmpp_2m_sde: torchsde rounds the query times to 6 decimals, so
         * its draws jump where a sigma crosses a rounding boundary, and our
         * sigmas are torch's only to ~5e-7 relative. With ComfyUI's sigmas
         * the result must match; with ours, whenever they round alike. */
        int sde = p.ks_sampler == CS_KS_DPMPP_2M_SDE, alike = 1;
        for (int i = 0; sde && i <= steps; i++)
            alike &= round6(sig[i]) == round6(want_sig[i]);
        if (sde && !alike)
            p.ks_sigmas = want_sig;
        rc = cs_sample(&p, B, PER, x, out, &io);
        CHECK(rc == 0, "case %s %s: %s", sname, sched, cs_last_error());
        double eo = rel_err(out, want, COUNT, 1.0);
        CHECK(eo <= OUT_TOL, "case %s %s steps %d shift %g denoise %g cfg %g%s: latent off by %.3g", sname, sched,
              steps, shift, denoise, cfg, p.ks_sigmas ? " (ComfyUI's sigmas)" : "", eo);
        n_sde_ref += sde && !alike;
        worst_out = fmax(worst_out, eo);
        free(want_sig);
        free(want);
        ncases++;
    }
    fclose(f);
    printf("ksampler: %d ComfyUI cases, worst sigma error %.3g (relative), worst latent error %.3g; %d "
           "dpmpp_2m_sde cases on ComfyUI's sigmas (ours round differently at 6 decimals)\n", ncases, worst_sig,
           worst_out, n_sde_ref);
    CHECK(ncases == 90, "expected 90 cases, read %d", ncases);
    return 0;
}

static void test_names_and_errors(void)
{
    CHECK(cs_ks_sampler_from_name("euler_ancestral") == CS_KS_EULER_ANCESTRAL, "name");
    CHECK(cs_ks_sampler_from_name("ddim") < 0 && cs_ks_sampler_from_name("") < 0, "unknown sampler");
    CHECK(cs_ks_scheduler_from_name("sgm_uniform") == CS_KSCHED_SGM_UNIFORM, "scheduler name");
    CHECK(cs_ks_scheduler_from_name("beta") < 0, "unknown scheduler");
    for (int i = 1; i < CS_KS_COUNT; i++)
        CHECK(cs_ks_sampler_from_name(cs_ks_sampler_name(i)) == i, "round trip %d", i);
    for (int i = 0; i < CS_KSCHED_COUNT; i++)
        CHECK(cs_ks_scheduler_from_name(cs_ks_scheduler_name(i)) == i, "round trip %d", i);
    float sig[8];
    CHECK(cs_ks_sigmas(CS_KSCHED_SIMPLE, 4, 2.0f, 0.0, sig) == CS_EARG, "denoise 0");
    CHECK(cs_ks_sigmas(CS_KSCHED_SIMPLE, 4, 2.0f, 1.5, sig) == CS_EARG, "denoise 1.5");

    cs_sample_params p;
    cs_sample_defaults_c(&p);
    p.steps = 3;
    p.ks_scheduler = CS_KSCHED_SIMPLE;
    float x[COUNT] = {0}, out[COUNT];
    cs_rng r;
    cs_rng_seed(&r, 1);
    standin_ctx sc = {B, 0};
    cs_sampler_io io = {standin, &sc, cs_rng_noise, &r, NULL, NULL, NULL, NULL, NULL, 0};
    p.ks_sampler = CS_KS_EULER_ANCESTRAL;
    CHECK(cs_sample(&p, B, PER, x, out, &io) == CS_EARG, "ancestral without its noise source");
    p.ks_sampler = CS_KS_DPMPP_2M_SDE;
    CHECK(cs_sample(&p, B, PER, x, out, &io) == CS_EARG, "dpmpp_2m_sde without its seeded noise source");
    /* euler needs no second generator; cfg 1 = one N-batch call per step */
    p.ks_sampler = CS_KS_EULER;
    p.cfg = 1.0f;
    CHECK(cs_sample(&p, B, PER, x, out, &io) == 0 && sc.calls == 3, "euler, cfg 1: %d calls", sc.calls);
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : ".";
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/ksampler_cases.txt", top);
    test_names_and_errors();
    if (run_cases(path) < 0)
        return 99;
    if (failures)
        fprintf(stderr, "test_ksampler: %d failures\n", failures);
    return check_exit();
}
