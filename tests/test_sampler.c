/* Sampler tests: the per-step constants against the tables printed by the
 * official code (gdf/ with the defaults) and the golden files' out.sched.*,
 * torch's lerp rounding, the std and cfg_rho rescale, and the whole loop
 * (DDPM with CFG, no CFG, DDIM, LCM, x_init, stop, errors) against an
 * independent double-precision reference with a toy model.
 * Exit 0 pass, 1 fail; golden parts skip (77) without ../shared (99 under CI). */
#include "check.h"
#include "error.h"
#include "rng.h"
#include "safetensors.h"
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the official gdf code's per-step values: t, logSNR, r, a, b as printed (4, 6, 7, 7, 7 decimals) */
static const double tab_c[21][5] = {
    {1.0000, -9.210240, 0.9935832, 0.0100000, 0.9999500},
    {0.9500, -6.486321, 0.9749619, 0.0390106, 0.9992388},
    {0.9000, -5.087794, 0.9496946, 0.0783183, 0.9969284},
    {0.8500, -4.256245, 0.9239612, 0.1182256, 0.9929867},
    {0.8000, -3.651504, 0.8975109, 0.1590459, 0.9872712},
    {0.7500, -3.166546, 0.8700708, 0.2011076, 0.9795691},
    {0.7000, -2.753193, 0.8413360, 0.2447582, 0.9695841},
    {0.6500, -2.385144, 0.8109604, 0.2903663, 0.9569156},
    {0.6000, -2.045983, 0.7785445, 0.3383178, 0.9410319},
    {0.5500, -1.724228, 0.7436217, 0.3890082, 0.9212343},
    {0.5000, -1.410921, 0.7056450, 0.4428192, 0.8966109},
    {0.4500, -1.098212, 0.6639730, 0.5000752, 0.8659820},
    {0.4000, -0.778321, 0.6178611, 0.5609651, 0.8278395},
    {0.3500, -0.442539, 0.5664634, 0.6254087, 0.7802973},
    {0.3000, -0.079892, 0.5088615, 0.6928474, 0.7210842},
    {0.2500, 0.325062, 0.4441377, 0.7619432, 0.6476439},
    {0.2000, 0.796634, 0.3715231, 0.8302132, 0.5574460},
    {0.1500, 1.378421, 0.2906397, 0.8937210, 0.4486233},
    {0.1000, 2.164270, 0.2018116, 0.9470981, 0.3209443},
    {0.0500, 3.434909, 0.1062653, 0.9842651, 0.1766978},
    {0.0000, 7.823780, 0.0071235, 0.9998000, 0.0199972},
};
static const double tab_b[11][5] = {
    {1.0000, -9.210240, 0.9935832, 0.0100000, 0.9999500},
    {0.9000, -3.701500, 0.9000000, 0.1552151, 0.9878807},
    {0.8000, -2.265210, 0.8000000, 0.3066685, 0.9518164},
    {0.7000, -1.366898, 0.7000000, 0.4506900, 0.8926806},
    {0.6000, -0.659688, 0.6000000, 0.5837890, 0.8119054},
    {0.5000, -0.024627, 0.5000000, 0.7027401, 0.7114466},
    {0.4000, 0.607973, 0.4000000, 0.8046604, 0.5937354},
    {0.3000, 1.306402, 0.3000000, 0.8870797, 0.4616162},
    {0.2000, 2.182928, 0.2000000, 0.9480011, 0.3182672},
    {0.1000, 3.550565, 0.1000002, 0.9859476, 0.1670548},
    {0.0000, 9.210074, 0.0022568, 0.9999500, 0.0100008},
};

static double ulpf(double v) { return nextafterf((float)fabs(v), INFINITY) - (float)fabs(v); }

static void check_table(const char *what, const double (*tab)[5], int steps, float shift)
{
    static const int digits[5] = {4, 6, 7, 7, 7};
    cs_schedule s;
    CHECK(cs_schedule_init(&s, steps, shift, 1.0f, 0.0f) == 0, "%s: init: %s", what, cs_last_error());
    for (int i = 0; i <= steps; i++) {
        float got[5] = {s.t[i], s.logsnr[i], s.r[i], s.a[i], s.b[i]};
        for (int k = 0; k < 5; k++) {
            /* half a unit of the last printed digit, plus a few float ulps for
             * a libm that rounds differently at a print boundary */
            double tol = 0.5 * pow(10, -digits[k]) + 4 * ulpf(tab[i][k]);
            CHECK(fabs(got[k] - tab[i][k]) <= tol, "%s row %d col %d: %.9g vs table %.7f", what,
                  i, k, got[k], tab[i][k]);
        }
    }
    cs_schedule_free(&s);
}

static void test_tables(void)
{
    check_table("stage C (shift 2, 20 steps)", tab_c, 20, 2.0f);
    check_table("stage B (shift 1, 10 steps)", tab_b, 10, 1.0f);
    CHECK(cs_gdf_logsnr(1.0f, 1.0f) == CS_GDF_LOGSNR_LO, "logSNR(1) != LO");
    CHECK(cs_gdf_logsnr(0.0f, 1.0f) == CS_GDF_LOGSNR_HI, "logSNR(0) != HI");
    /* with shift the clamp to LO still holds at t = 1 (applied after the shift) */
    CHECK(cs_gdf_logsnr(1.0f, 2.0f) == CS_GDF_LOGSNR_LO, "shifted logSNR(1) != LO");
    cs_schedule s;
    CHECK(cs_schedule_init(&s, 0, 1.0f, 1.0f, 0.0f) == CS_EARG, "0 steps accepted");
    CHECK(cs_schedule_init(&s, 10, 0.0f, 1.0f, 0.0f) == CS_EARG, "shift 0 accepted");
    /* img2img-style start: t runs from t_start */
    CHECK(cs_schedule_init(&s, 16, 2.0f, 0.8f, 0.0f) == 0, "t_start 0.8");
    CHECK(s.t[0] == 0.8f && s.t[16] == 0.0f && fabsf(s.t[8] - 0.4f) < 1e-7f, "t grid from 0.8");
    cs_schedule_free(&s);
    cs_schedule_free(NULL);
}

static int open_golden(const char *name, cs_st_file **f)
{
    const char *dir = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/%s.io.safetensors", dir ? dir : "../shared", name);
    if (cs_st_open(path, f) == 0) return 0;
    if (check_under_ci()) {
        fprintf(stderr, "ERROR: %s\n", cs_last_error());
        return 99;
    }
    printf("SKIP golden schedule: %s\n", cs_last_error());
    return 77;
}

static int test_golden_sched(void)
{
    static const struct { const char *file, *prefix; int steps; float shift; } cases[] = {
        {"sampling_c", "out.sched", 20, 2.0f},
        {"sampling_b", "out.sched", 10, 1.0f},
        {"pipeline_tiny", "out.c.sched", 20, 2.0f},
        {"pipeline_tiny", "out.b.sched", 10, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cs_st_file *f;
        int rc = open_golden(cases[i].file, &f);
        if (rc) return rc;
        cs_schedule s;
        cs_schedule_init(&s, cases[i].steps, cases[i].shift, 1.0f, 0.0f);
        char name[64];
        snprintf(name, sizeof name, "%s.logSNR", cases[i].prefix);
        const cs_tensor *tl = cs_st_find(f, name);
        snprintf(name, sizeof name, "%s.noise_cond", cases[i].prefix);
        const cs_tensor *tr = cs_st_find(f, name);
        CHECK(tl && tr && cs_tensor_numel(tl) == cases[i].steps + 1 &&
              cs_tensor_numel(tr) == cases[i].steps, "%s: %s.* missing or wrong size",
              cases[i].file, cases[i].prefix);
        if (tl && tr) {
            float *l = cs_tensor_f32_dup(tl), *r = cs_tensor_f32_dup(tr);
            double dl = 0, dr = 0;
            for (int k = 0; k <= cases[i].steps; k++) dl = fmax(dl, fabs(l[k] - s.logsnr[k]));
            for (int k = 0; k < cases[i].steps; k++) dr = fmax(dr, fabs(r[k] - s.r[k]));
            printf("%s %s: logSNR max_abs %.3g, noise_cond max_abs %.3g\n", cases[i].file,
                   cases[i].prefix, dl, dr);
            CHECK(dl <= 4e-6 && dr <= 4e-7, "%s %s: logSNR %.3g / r %.3g off", cases[i].file,
                  cases[i].prefix, dl, dr);
            cs_free(l);
            cs_free(r);
        }
        cs_schedule_free(&s);
        cs_st_close(f);
    }
    return 0;
}

static void test_lerp_std(void)
{
    enum { N = 4099 };
    float *c = malloc(N * sizeof *c), *u = malloc(N * sizeof *u), *o = malloc(N * sizeof *o);
    cs_rng r;
    cs_rng_seed(&r, 3);
    cs_rng_randn(&r, c, N);
    cs_rng_randn(&r, u, N);
    const float ws[] = {4.0f, 1.1f, 0.3f, -0.7f, 0.5f, 7.5f};
    for (size_t wi = 0; wi < sizeof ws / sizeof *ws; wi++) {
        float w = ws[wi];
        cs_cfg_lerp(c, u, w, o, N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            /* one rounding of the exact value, with d and 1-w rounded first */
            float d = c[i] - u[i];
            long double want = fabsf(w) < 0.5f
                ? (long double)w * d + u[i]
                : (long double)c[i] - (long double)d * (float)(1.0f - w);
            float wf = (float)want;
            if (LDBL_MANT_DIG >= 64 ? o[i] != wf : fabs(o[i] - wf) > ulpf(wf)) bad++;
        }
        CHECK(!bad, "lerp w=%g: %d values not rounded like torch", w, bad);
    }
    cs_cfg_lerp(c, u, 1.0f, o, N);
    CHECK(!memcmp(o, c, N * sizeof *o), "lerp w=1 is not the end value");
    cs_cfg_lerp(c, u, 0.0f, o, N);
    CHECK(!memcmp(o, u, N * sizeof *o), "lerp w=0 is not the start value");
    /* in place into u */
    memcpy(o, u, N * sizeof *o);
    cs_cfg_lerp(c, o, 4.0f, o, N);
    float *o2 = malloc(N * sizeof *o2);
    cs_cfg_lerp(c, u, 4.0f, o2, N);
    CHECK(!memcmp(o, o2, N * sizeof *o), "in-place lerp differs");

    /* std of 0..n-1 (unbiased) = sqrt(n(n+1)/12); shifted far from 0 */
    for (int i = 0; i < N; i++) o[i] = 10000.0f + (float)i;
    double want = sqrt((double)N * (N + 1) / 12.0);
    float sd = cs_std_unbiased(o, N);
    CHECK(sd == (float)want, "std %.9g, want %.9g", sd, want);
    CHECK(isnan(cs_std_unbiased(o, 1)), "std of one value should be nan");

    /* rescale: rho*(e*sc/(scfg+1e-9)) + (1-rho)*e */
    memcpy(o, c, N * sizeof *o);
    cs_cfg_rescale(o, N, 0.8f, 2.5f, 0.7f);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        double w2 = 0.7 * (c[i] * 0.8 / 2.5) + 0.3 * c[i];
        if (fabs(o[i] - w2) > 3 * ulpf(w2) + 1e-30) bad++;
    }
    CHECK(!bad, "rescale off in %d values", bad);
    free(c); free(u); free(o); free(o2);
}

/* ---- the loop ---------------------------------------------------------- */

enum { NIMG = 2, PER = 3 * 5 * 7 };

typedef struct {
    int calls, noise_calls, last_nb, bad_batch, bad_r, steps_seen;
    float r_seen[64];
    cs_rng rng;
    float draws[64][NIMG * PER];   /* every noise tensor handed out */
    int stop_at;
    int fail_eps;
} toy;

/* e_c = 0.8 x + 0.1 cos(k), e_u = 0.6 x - 0.05 (k = element index in image) */
static double toy_cond(double x, size_t k) { return 0.8 * x + 0.1 * cos((double)k); }
static double toy_unc(double x, size_t k) { (void)k; return 0.6 * x - 0.05; }

static int toy_eps(void *ctx, const float *xb, int nb, float r, float *out)
{
    toy *t = ctx;
    if (t->fail_eps) return cs_error(CS_EMODEL, "toy: planted failure");
    if (t->calls < 64) t->r_seen[t->calls] = r;
    t->calls++;
    t->last_nb = nb;
    size_t half = (size_t)NIMG * PER;
    if (nb == 2 * NIMG && memcmp(xb, xb + half, half * sizeof *xb)) t->bad_batch++;
    for (int b = 0; b < nb; b++)
        for (size_t k = 0; k < PER; k++) {
            float x = xb[(size_t)b * PER + k];
            out[(size_t)b * PER + k] = (float)(b < NIMG ? toy_cond(x, k) : toy_unc(x, k));
        }
    return 0;
}

static int toy_noise(void *ctx, float *out, size_t n)
{
    toy *t = ctx;
    if (n != (size_t)NIMG * PER) return cs_error(CS_EARG, "toy: noise of %zu", n);
    int rc = cs_rng_randn(&t->rng, out, n);
    if (t->noise_calls < 64) memcpy(t->draws[t->noise_calls], out, n * sizeof *out);
    t->noise_calls++;
    return rc;
}

static int toy_step(void *ctx, int step, int steps, const float *x0, const float *x)
{
    toy *t = ctx;
    if (step != t->steps_seen) t->bad_r++;
    t->steps_seen++;
    return t->stop_at && step + 1 == t->stop_at ? 1 : 0;
}

/* The loop of spec §1.6 in double precision with its own schedule. */
/* draws: the noise tensors handed out, [steps + 1][n] */
static void reference(const cs_sample_params *p, const float *draws, size_t n, size_t per, int use_cfg,
                      int init_given, const double *x_init, double *x, double *x0)
{
    const double s = 0.008, pi = 3.14159265358979323846;
    double min_var = pow(cos(s / (1 + s) * pi / 2), 2);
    int T = p->steps;
    double L[128], A[128], B[128];
    for (int i = 0; i <= T; i++) {
        double tt = p->t_start + (p->t_end - p->t_start) * i / T;
        double c = fmin(fmax(cos((s + tt) / (1 + s) * pi / 2), 0), 1);
        double var = fmin(fmax(c * c / min_var, 1e-4), 0.9999);
        double l = log(var / (1 - var)) - 2 * log(p->shift);
        L[i] = fmin(fmax(l, CS_GDF_LOGSNR_LO), CS_GDF_LOGSNR_HI);
        double sg = 1 / (1 + exp(-L[i]));
        A[i] = sqrt(sg);
        B[i] = sqrt(1 - sg);
    }
    int d = 0;
    for (size_t k = 0; k < n; k++) x[k] = init_given ? x_init[k] : draws[k];
    if (!init_given) d = 1;
    double *e = malloc(n * sizeof *e), *ec = malloc(n * sizeof *ec);
    for (int i = 0; i < T; i++) {
        for (size_t k = 0; k < n; k++) {
            ec[k] = toy_cond(x[k], k % per);
            double eu = toy_unc(x[k], k % per);
            e[k] = use_cfg ? eu + p->cfg * (ec[k] - eu) : ec[k];
        }
        if (use_cfg && p->cfg_rho > 0) {
            double m1 = 0, m2 = 0, v1 = 0, v2 = 0;
            for (size_t k = 0; k < n; k++) { m1 += ec[k]; m2 += e[k]; }
            m1 /= n; m2 /= n;
            for (size_t k = 0; k < n; k++) {
                v1 += (ec[k] - m1) * (ec[k] - m1);
                v2 += (e[k] - m2) * (e[k] - m2);
            }
            double ratio = sqrt(v1 / (n - 1)) / sqrt(v2 / (n - 1));
            for (size_t k = 0; k < n; k++)
                e[k] = p->cfg_rho * e[k] * ratio + (1 - p->cfg_rho) * e[k];
        }
        const float *z = draws + (size_t)d++ * n;
        for (size_t k = 0; k < n; k++) {
            x0[k] = (x[k] - e[k] * B[i]) / A[i];
            if (p->sampler == CS_SAMPLER_LCM) {
                x[k] = A[i + 1] * x0[k] + B[i + 1] * z[k];
            } else {
                double eta = p->sampler == CS_SAMPLER_DDPM ? 1 : p->eta;
                double sig = eta * sqrt(B[i + 1] * B[i + 1] / (B[i] * B[i])) *
                             sqrt(1 - A[i] * A[i] / (A[i + 1] * A[i + 1]));
                x[k] = A[i + 1] * x0[k] + sqrt(B[i + 1] * B[i + 1] - sig * sig) * e[k] + sig * z[k];
            }
        }
    }
    free(e);
    free(ec);
}

static double rel_l2(const float *y, const double *ref, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t k = 0; k < n; k++) {
        d2 += (y[k] - ref[k]) * (y[k] - ref[k]);
        r2 += ref[k] * ref[k];
    }
    return sqrt(d2 / r2);
}

static void run_case(const char *what, const cs_sample_params *p, int use_cfg)
{
    static toy t;
    memset(&t, 0, sizeof t);
    cs_rng_seed(&t.rng, 2024);
    size_t n = (size_t)NIMG * PER;
    float x[NIMG * PER], res[NIMG * PER];
    double xi[NIMG * PER], xr[NIMG * PER], x0r[NIMG * PER];
    if (p->x_init_given)
        for (size_t k = 0; k < n; k++) xi[k] = x[k] = 0.5f * (float)sin((double)k);
    cs_sampler_io io = {toy_eps, &t, toy_noise, &t, toy_step, &t, NULL, NULL, NULL, 0};
    int rc = cs_sample(p, NIMG, PER, x, res, &io);
    CHECK(rc == 0, "%s: %s", what, cs_last_error());
    CHECK(t.calls == p->steps, "%s: %d model calls for %d steps", what, t.calls, p->steps);
    CHECK(t.noise_calls == p->steps + !p->x_init_given, "%s: %d noise draws", what, t.noise_calls);
    CHECK(t.last_nb == (use_cfg ? 2 * NIMG : NIMG), "%s: batch %d", what, t.last_nb);
    CHECK(!t.bad_batch, "%s: the two halves of the CFG batch differ", what);
    CHECK(t.steps_seen == p->steps && !t.bad_r, "%s: step callback order", what);
    cs_schedule s;
    cs_schedule_init(&s, p->steps, p->shift, p->t_start, p->t_end);
    int bad_r = 0;
    for (int i = 0; i < p->steps; i++) bad_r += t.r_seen[i] != s.r[i];
    CHECK(!bad_r, "%s: model r differs from the schedule", what);
    cs_schedule_free(&s);
    reference(p, &t.draws[0][0], n, PER, use_cfg, p->x_init_given, xi, xr, x0r);
    double e1 = rel_l2(res, x0r, n), e2 = rel_l2(x, xr, n);
    printf("%-28s result rel_l2 %.3g, final x rel_l2 %.3g\n", what, e1, e2);
    CHECK(e1 < 2e-5 && e2 < 2e-5, "%s: float loop vs double reference: %.3g / %.3g", what, e1, e2);
}

static void test_loop(void)
{
    cs_sample_params p;
    cs_sample_defaults_c(&p);
    run_case("C defaults (cfg 4, rho 0.7)", &p, 1);
    cs_sample_defaults_b(&p);
    run_case("B defaults (cfg 1.1)", &p, 1);
    p.cfg_rho = 0.0f;
    run_case("B, rho 0", &p, 1);
    cs_sample_defaults_c(&p);
    p.cfg = 1.0f;
    run_case("cfg 1 (single batch)", &p, 0);
    p.cfg = 0.0f;
    run_case("cfg off", &p, 0);
    cs_sample_defaults_c(&p);
    p.sampler = CS_SAMPLER_DDIM;
    p.eta = 0.0f;
    run_case("DDIM eta 0", &p, 1);
    p.eta = 0.5f;
    run_case("DDIM eta 0.5", &p, 1);
    p.sampler = CS_SAMPLER_LCM;
    p.steps = 4;
    run_case("LCM 4 steps", &p, 1);
    cs_sample_defaults_c(&p);
    p.x_init_given = 1;
    p.t_start = 0.8f;
    p.steps = 16;
    run_case("x_init, t_start 0.8", &p, 1);
}

/* Latents large enough for the sampler's thread pool loops and its noise
 * thread (Stage B's size class): the same loop, the same reference. */
enum { BIG_PER = 4 * 96 * 96 };

typedef struct {
    cs_rng rng;
    float *draws;      /* [steps + 1][NIMG * BIG_PER] */
    int noise_calls, calls;
} big_toy;

static int big_eps(void *ctx, const float *xb, int nb, float r, float *out)
{
    big_toy *t = ctx;
    (void)r;
    for (int b = 0; b < nb; b++)
        for (size_t k = 0; k < BIG_PER; k++) {
            float x = xb[(size_t)b * BIG_PER + k];
            out[(size_t)b * BIG_PER + k] = (float)(b < NIMG ? toy_cond(x, k) : toy_unc(x, k));
        }
    t->calls++;
    return 0;
}

static int big_noise(void *ctx, float *out, size_t n)
{
    big_toy *t = ctx;
    int rc = cs_rng_randn(&t->rng, out, n);
    memcpy(t->draws + (size_t)t->noise_calls * n, out, n * sizeof *out);
    t->noise_calls++;
    return rc;
}

static void test_big(void)
{
    cs_sample_params p;
    cs_sample_defaults_b(&p);
    size_t n = (size_t)NIMG * BIG_PER;
    static big_toy t;
    cs_rng_seed(&t.rng, 77);
    t.draws = malloc((size_t)(p.steps + 1) * n * sizeof(float));
    float *x = malloc(n * sizeof(float)), *res = malloc(n * sizeof(float));
    double *xr = malloc(n * sizeof(double)), *x0r = malloc(n * sizeof(double));
    CHECK(t.draws && x && res && xr && x0r, "out of memory");
    if (!t.draws || !x || !res || !xr || !x0r) return;
    cs_sampler_io io = {big_eps, &t, big_noise, &t, NULL, NULL, NULL, NULL, NULL, 0};
    int rc = cs_sample(&p, NIMG, BIG_PER, x, res, &io);
    CHECK(rc == 0, "big latents: %s", cs_last_error());
    CHECK(t.calls == p.steps && t.noise_calls == p.steps + 1, "big latents: %d model calls, %d draws", t.calls,
          t.noise_calls);
    reference(&p, t.draws, n, BIG_PER, 1, 0, NULL, xr, x0r);
    double e1 = rel_l2(res, x0r, n), e2 = rel_l2(x, xr, n);
    printf("%-28s result rel_l2 %.3g, final x rel_l2 %.3g\n", "B defaults, 2 x 36864", e1, e2);
    CHECK(e1 < 2e-5 && e2 < 2e-5, "big latents: float loop vs double reference: %.3g / %.3g", e1, e2);
    /* the same run again gives the same bits (no race between the noise
     * thread and the loop) */
    float *x2 = malloc(n * sizeof(float)), *res2 = malloc(n * sizeof(float));
    cs_rng_seed(&t.rng, 77);
    t.noise_calls = t.calls = 0;
    CHECK(x2 && res2 && cs_sample(&p, NIMG, BIG_PER, x2, res2, &io) == 0, "big latents, second run");
    CHECK(x2 && res2 && !memcmp(x, x2, n * sizeof(float)) && !memcmp(res, res2, n * sizeof(float)),
          "big latents: two runs differ");
    free(x2); free(res2);
    free(t.draws); free(x); free(res); free(xr); free(x0r);
}

static void test_ddim_deterministic(void)
{
    /* eta 0: same init, different step noise -> same result (z still drawn) */
    cs_sample_params p;
    cs_sample_defaults_c(&p);
    p.sampler = CS_SAMPLER_DDIM;
    p.eta = 0.0f;
    p.x_init_given = 1;
    static toy t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    cs_rng_seed(&t1.rng, 1);
    cs_rng_seed(&t2.rng, 2);
    float x1[NIMG * PER], x2[NIMG * PER], r1[NIMG * PER], r2[NIMG * PER];
    for (int k = 0; k < NIMG * PER; k++) x1[k] = x2[k] = (float)cos(k * 0.3);
    cs_sampler_io io1 = {toy_eps, &t1, toy_noise, &t1, NULL, NULL, NULL, NULL, NULL, 0};
    cs_sampler_io io2 = {toy_eps, &t2, toy_noise, &t2, NULL, NULL, NULL, NULL, NULL, 0};
    cs_sample(&p, NIMG, PER, x1, r1, &io1);
    cs_sample(&p, NIMG, PER, x2, r2, &io2);
    CHECK(!memcmp(r1, r2, sizeof r1) && !memcmp(x1, x2, sizeof x1), "DDIM eta 0 depends on z");
    CHECK(t1.noise_calls == p.steps, "DDIM eta 0 must still draw z each step (%d)", t1.noise_calls);
    /* DDPM with different noise differs */
    p.sampler = CS_SAMPLER_DDPM;
    for (int k = 0; k < NIMG * PER; k++) x1[k] = x2[k] = (float)cos(k * 0.3);
    cs_sample(&p, NIMG, PER, x1, r1, &io1);
    cs_sample(&p, NIMG, PER, x2, r2, &io2);
    CHECK(memcmp(r1, r2, sizeof r1) != 0, "DDPM ignores its noise");
}

static void test_stop_and_errors(void)
{
    cs_sample_params p;
    cs_sample_defaults_b(&p);
    static toy t;
    memset(&t, 0, sizeof t);
    cs_rng_seed(&t.rng, 5);
    t.stop_at = 3;
    float x[NIMG * PER], r[NIMG * PER];
    cs_sampler_io io = {toy_eps, &t, toy_noise, &t, toy_step, &t, NULL, NULL, NULL, 0};
    CHECK(cs_sample(&p, NIMG, PER, x, r, &io) == CS_EINTR, "stop request not honoured");
    CHECK(t.calls == 3, "stopped after %d model calls, want 3", t.calls);
    memset(&t, 0, sizeof t);
    t.fail_eps = 1;
    CHECK(cs_sample(&p, NIMG, PER, x, r, &io) == CS_EMODEL, "model error not propagated");
    CHECK(strstr(cs_last_error(), "planted") != NULL, "model error message lost: %s",
          cs_last_error());
    cs_sampler_io bad = {NULL, NULL, toy_noise, &t, NULL, NULL, NULL, NULL, NULL, 0};
    CHECK(cs_sample(&p, NIMG, PER, x, r, &bad) == CS_EARG, "NULL model accepted");
    p.steps = 0;
    CHECK(cs_sample(&p, NIMG, PER, x, r, &io) == CS_EARG, "0 steps accepted");
    cs_sample_defaults_b(&p);
    p.cfg_rho = -1.0f;
    CHECK(cs_sample(&p, NIMG, PER, x, r, &io) == CS_EARG, "negative cfg_rho accepted");
}

int main(void)
{
    test_tables();
    test_lerp_std();
    test_loop();
    test_ddim_deterministic();
    test_big();
    test_stop_and_errors();
    int g = test_golden_sched();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    return g;
}
