/* Golden handlers for the sampling loops: Stage C and Stage B GDF sampling
 * (sampling_c, sampling_b), the tiny text-to-image chain C -> B -> A
 * (pipeline_tiny) and img2img's start and Stage C run (module img2img, its
 * metadata in tests/data/img2img/README.md). Every random draw is replayed from the file (in.noise_init,
 * in.noise_step_NN; pipeline: in.c.* then in.b.*), every step's x0 and x is
 * compared (out.[c.|b.]x0_step_NN / x_step_NN), as are the schedule tables,
 * the stage results (sampled = x0 of the last step, x_final) and, for the
 * pipeline, the image and its uint8 conversion. The sampler runs on
 * channels-last latents, the networks' layout; golden tensors are NCHW. */
#include "golden.h"
#include "noise_name.h"

#include "error.h"
#include "effnet.h"
#include "pngout.h"
#include "rng.h"
#include "sampler.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared pieces ---------------------------------------------------- */

typedef struct {
    gcase *c;
    const char *prefix;   /* "in." or "in.c." / "in.b." */
    int next;             /* -1: the init draw, else the step */
    size_t N, C, H, W;    /* every draw has the shape of <prefix>noise_init */
    cs_rng *rng;          /* img2img: our generator, checked against each draw */
} replay;

/* Largest difference allowed between our generator's draw and torch's (the
 * stream is exact, the values differ by libm rounding, rng.h: ~1e-6). */
#define RNG_ATOL 1e-5f

/* 0 if our generator's next n values (NCHW order, stored channels-last like
 * v) match v; what names the recorded tensor. */
static int rng_matches(gcase *c, cs_rng *rng, const float *v, size_t N, size_t C, size_t H, size_t W,
                       const char *what)
{
    size_t n = N * C * H * W;
    float *o = cs_alloc(n * sizeof *o);
    if (!o)
        return cs_error(CS_ENOMEM, "out of memory");
    int rc = cs_rng_randn_nhwc(rng, o, N, C, H, W);
    size_t bad = n;
    for (size_t i = 0; !rc && i < n && bad == n; i++)
        if (!(fabsf(o[i] - v[i]) <= RNG_ATOL))
            bad = i;
    if (!rc && bad < n)
        rc = cs_error(CS_EFORMAT, "%s: %s[%zu] = %.7g, our generator (seed %s, draws in order) gives %.7g",
                      golden_file(c), what, bad, v[bad], golden_meta(c, "seed"), o[bad]);
    cs_free(o);
    return rc;
}

/* cs_noise_fn: the next recorded draw, as channels-last */
static int replay_noise(void *ctx, float *out, size_t n)
{
    replay *r = ctx;
    char name[64];
    golden_noise_name(name, sizeof name, r->prefix, r->next++);
    size_t d[4] = {r->N, r->C, r->H, r->W};
    if (!golden_shape_is(golden_tensor(r->c, name), 4, d) || r->N * r->C * r->H * r->W != n)
        return cs_error(CS_EFORMAT, "%s: %s missing or not [%zu,%zu,%zu,%zu] like the init draw",
                        golden_file(r->c), name, d[0], d[1], d[2], d[3]);
    size_t N, C, H, W;
    float *v = golden_nhwc(r->c, name, &N, &C, &H, &W);
    if (!v)
        return CS_EFORMAT;
    int rc = r->rng ? rng_matches(r->c, r->rng, v, N, C, H, W, name) : 0;
    memcpy(out, v, n * sizeof *out);
    cs_free(v);
    return rc;
}

typedef struct {
    gcase *c;
    const char *prefix;   /* "out." or "out.c." / "out.b." */
    int steps, next;      /* expected count; the step the next call must report */
    int compared;         /* per-step tensors compared */
    size_t N, C, H, W;
} step_check;

/* cs_step_fn: the contract (sampler.h) is one call per step, in order, with
 * that step's x0 and the sampler's new x; both gate the case where the file
 * records them, like checked outputs. */
static int check_step(void *ctx, int step, int steps, const float *x0, const float *x)
{
    step_check *s = ctx;
    if (step != s->next || steps != s->steps)
        return cs_error(CS_EFORMAT, "%s: step callback reported step %d of %d, expected %d of %d",
                        golden_file(s->c), step, steps, s->next, s->steps);
    s->next++;
    const char *what[2] = {"x0", "x"};
    const float *val[2] = {x0, x};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s_step_%02d", s->prefix, what[i], step);
        if (!golden_tensor(s->c, name))
            continue;
        golden_require(s->c, name);
        rc = golden_check_nhwc(s->c, name, val[i], s->N, s->C, s->H, s->W);
        s->compared++;
    }
    return rc;
}

/* Per-step tensors the file records under prefix ("out.c." ...): names
 * <prefix>x0_step_NN / <prefix>x_step_NN, whatever NN. */
static int recorded_steps(gcase *c, const char *prefix)
{
    cs_st_file *io = golden_io(c);
    size_t pl = strlen(prefix);
    int n = 0;
    for (int i = 0; i < cs_st_count(io); i++) {
        const char *nm = cs_st_at(io, i)->name;
        int k, len = 0;
        if (strncmp(nm, prefix, pl))
            continue;
        if ((sscanf(nm + pl, "x0_step_%d%n", &k, &len) == 1 || sscanf(nm + pl, "x_step_%d%n", &k, &len) == 1) &&
            !nm[pl + (size_t)len])
            n++;
    }
    return n;
}

/* [N, L, C] tokens (or [N, C] as L = 1) */
static float *tokens(gcase *c, const char *name, size_t *N, size_t *L, size_t *C)
{
    const cs_tensor *t;
    float *x = golden_f32(c, name, &t);
    if (!x)
        return NULL;
    if (t->ndim != 2 && t->ndim != 3) {
        cs_free(x);
        cs_error(CS_EFORMAT, "%s: %s: expected [N, L, C] tokens", golden_path(c), name);
        return NULL;
    }
    *N = (size_t)t->shape[0];
    *L = t->ndim == 3 ? (size_t)t->shape[1] : 1;
    *C = (size_t)t->shape[t->ndim - 1];
    return x;
}

/* [cond; uncond] along the batch: both [N, L, C]; NULL + cs_error on mismatch.
 * An absent uncond is zeros, as GDF.sample makes it (unused without CFG). */
static float *pair_tokens(gcase *c, const char *cond, const char *uncond, size_t *N, size_t *L,
                          size_t *C)
{
    size_t n2, l2, c2;
    int have_u = golden_tensor(c, uncond) != NULL;
    float *a = tokens(c, cond, N, L, C), *b = a && have_u ? tokens(c, uncond, &n2, &l2, &c2) : NULL;
    float *y = NULL;
    if (a && !have_u)
        n2 = *N, l2 = *L, c2 = *C;
    if (a && (b || !have_u) && (n2 != *N || l2 != *L || c2 != *C))
        cs_error(CS_EFORMAT, "%s: %s and %s differ in shape", golden_path(c), cond, uncond);
    else if (a && (b || !have_u) && !(y = cs_calloc(2 * *N * *L * *C * sizeof(float))))
        cs_error(CS_ENOMEM, "out of memory");
    if (y) {
        size_t n = *N * *L * *C;
        memcpy(y, a, n * sizeof *y);
        if (b)
            memcpy(y + n, b, n * sizeof *y);
    }
    cs_free(a);
    cs_free(b);
    return y;
}

/* cs_unet_opts from config[key] (an object with nhead / t_conds); NULL if absent */
static int net_opts(gcase *c, const char *key, cs_unet_opts *o, const cs_unet_opts **use)
{
    memset(o, 0, sizeof *o);
    *use = NULL;
    json_t *cfg = golden_config(c), *sub = cfg ? json_object_get(cfg, key) : NULL;
    if (!json_is_object(sub))
        return 0;
    char *js = json_dumps(sub, JSON_COMPACT);
    int rc = js ? cs_unet_opts_from_json(o, js, golden_path(c)) : cs_error(CS_ENOMEM, "out of memory");
    free(js);
    if (!rc)
        *use = o;
    return rc;
}

/* Sampler settings from config[key] = {cfg, shift, timesteps, t_start} and
 * config cfg_rho / sampler ("DDPMSampler...", "DDIMSampler(eta=E)", "LCMSampler").
 * cfg null = no CFG. *mix = 1 when cfg is a number that cs_sample would take
 * as "no CFG" (0) but GDF.sample still mixes: lerp(e_u, e_c, 0) = e_u, rescaled. */
static int sample_params(gcase *c, const char *key, cs_sample_params *p, int *mix)
{
    json_t *cfg = golden_config(c), *s = cfg ? json_object_get(cfg, key) : NULL;
    if (!json_is_object(s))
        return cs_error(CS_EFORMAT, "%s: config has no '%s' sampling settings", golden_path(c), key);
    cs_sample_defaults_c(p);
    json_t *smp = json_object_get(cfg, "sampler");
    const char *sn = json_is_string(smp) ? json_string_value(smp) : "DDPMSampler";
    if (!strncmp(sn, "DDIMSampler", 11)) {
        const char *e = strstr(sn, "eta=");
        p->sampler = CS_SAMPLER_DDIM;
        p->eta = e ? strtof(e + 4, NULL) : 0.0f;   /* DDIMSampler.step default eta 0 */
        if (!(p->eta >= 0.0f && p->eta <= 1.0f))
            return golden_cfg_bad(c, "sampler", "has an eta outside 0..1");
    } else if (!strncmp(sn, "LCMSampler", 10)) {
        p->sampler = CS_SAMPLER_LCM;
    } else if (strncmp(sn, "DDPMSampler", 11) != 0) {
        return cs_error(CS_EUNSUP, "%s: sampler '%s' (DDPM, DDIM and LCM samplers are handled)",
                        golden_path(c), sn);
    }
    json_t *v = json_object_get(s, "cfg");
    if (!json_is_number(v) && !json_is_null(v))
        return cs_error(CS_EFORMAT, "%s: %s.cfg missing", golden_path(c), key);
    p->cfg = json_is_null(v) ? 0.0f : (float)json_number_value(v);
    if (!(fabsf(p->cfg) <= 1000.0f))
        return golden_cfg_bad(c, key, "cfg is outside -1000..1000");
    *mix = json_is_number(v) && p->cfg == 0.0f;
    if (!json_is_number(v = json_object_get(s, "shift")))
        return cs_error(CS_EFORMAT, "%s: %s.shift missing", golden_path(c), key);
    p->shift = (float)json_number_value(v);
    if (!(p->shift > 0.0f && p->shift <= 1000.0f))
        return golden_cfg_bad(c, key, "shift is outside (0, 1000]");
    if (!json_is_integer(v = json_object_get(s, "timesteps")))
        return cs_error(CS_EFORMAT, "%s: %s.timesteps missing", golden_path(c), key);
    if (json_integer_value(v) < 1 || json_integer_value(v) > 1000)
        return golden_cfg_bad(c, key, "timesteps is outside 1..1000");
    p->steps = (int)json_integer_value(v);
    if (json_is_number(v = json_object_get(s, "t_start")))
        p->t_start = (float)json_number_value(v);
    if (!(p->t_start > 0.0f && p->t_start <= 1.0f))
        return golden_cfg_bad(c, key, "t_start is outside (0, 1]");
    p->cfg_rho = (float)golden_cfg_num(c, "cfg_rho", 0.7, 0.0, 1.0);
    return golden_cfg_error(c);
}

typedef struct {
    cs_eps_fn inner;
    void *inner_ctx;
    float cfg, rho;
    size_t per;   /* floats per image */
} cfg_mix;

/* cs_eps_fn doing GDF.sample's CFG itself: model on [x; x], lerp, rescale */
static int mix_eps(void *ctx, const float *x, int nb, float r, float *eps)
{
    cfg_mix *w = ctx;
    size_t count = (size_t)nb * w->per;
    float *xx = cs_alloc(2 * count * sizeof *xx), *e = cs_alloc(2 * count * sizeof *e);
    int rc = xx && e ? 0 : cs_error(CS_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(xx, x, count * sizeof *xx);
        memcpy(xx + count, x, count * sizeof *xx);
        rc = w->inner(w->inner_ctx, xx, 2 * nb, r, e);
    }
    if (!rc) {
        float sd_c = cs_std_unbiased(e, count);
        cs_cfg_lerp(e, e + count, w->cfg, eps, count);
        if (w->rho > 0.0f)
            cs_cfg_rescale(eps, count, sd_c, cs_std_unbiased(eps, count), w->rho);
    }
    cs_free(xx);
    cs_free(e);
    return rc;
}

/* Runs one sampling loop with replayed noise and per-step checks, then
 * checks the schedule tables, the result and the final x. x / *result:
 * [N, H, W, C] channels-last (N, C, H, W from <in>noise_init), *result
 * allocated here (the caller frees it). mix: see sample_params. x_init:
 * NULL, or the start (no init draw; p->x_init_given set) with rng, if not
 * NULL, our generator to check every step draw against. */
static int sample_stage(gcase *c, const cs_sample_params *p, int mix, const char *in,
                        const char *out, cs_eps_fn eps, void *eps_ctx, size_t N, size_t C,
                        size_t H, size_t W, const float *x_init, cs_rng *rng, float **res)
{
    size_t per = H * W * C;
    float *result = *res = cs_alloc(N * per * sizeof *result);
    if (!result)
        return cs_error(CS_ENOMEM, "out of memory");
    cfg_mix w = {eps, eps_ctx, p->cfg, p->cfg_rho, per};
    cs_sample_params q = *p;
    if (mix) {   /* cs_sample makes one N-image call per step; mix_eps does the CFG */
        q.cfg = 1.0f;
        eps = mix_eps;
        eps_ctx = &w;
        p = &q;
    }
    char name[64];
    cs_schedule s;
    int rc = cs_schedule_init(&s, p->steps, p->shift, p->t_start, p->t_end);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%ssched.logSNR", out);
    if (golden_tensor(c, name))
        rc = golden_check(c, name, s.logsnr, 1, (size_t[]){(size_t)s.steps + 1});
    snprintf(name, sizeof name, "%ssched.noise_cond", out);
    if (!rc && golden_tensor(c, name))
        rc = golden_check(c, name, s.r, 1, (size_t[]){(size_t)s.steps});
    cs_schedule_free(&s);
    if (rc)
        return rc;

    float *x = cs_alloc(N * per * sizeof *x);
    if (!x)
        return cs_error(CS_ENOMEM, "out of memory");
    replay rp = {c, in, x_init ? 0 : -1, N, C, H, W, rng};
    step_check sc = {c, out, p->steps, 0, 0, N, C, H, W};
    cs_sampler_io io = {eps, eps_ctx, replay_noise, &rp, check_step, &sc, NULL, NULL, NULL, 0};
    if (x_init)
        memcpy(x, x_init, N * per * sizeof *x);
    rc = cs_sample(p, (int)N, per, x, result, &io);
    /* rp.next counts from -1 (0 with x_init): init, then one draw per step */
    if (!rc && rp.next != p->steps)
        rc = cs_error(CS_EFORMAT, "%s: the sampler drew %d tensors, expected %d", golden_path(c),
                      rp.next + !x_init, p->steps + !x_init);
    if (!rc && sc.next != p->steps)
        rc = cs_error(CS_EFORMAT, "%s: the step callback ran %d times for %d steps", golden_file(c),
                      sc.next, p->steps);
    if (!rc && sc.compared != recorded_steps(c, out))
        rc = cs_error(CS_EFORMAT, "%s: %d per-step %s* tensors recorded, %d reported by the %d steps",
                      golden_file(c), recorded_steps(c, out), out, sc.compared, p->steps);
    snprintf(name, sizeof name, "%ssampled", out);
    if (!rc)
        rc = golden_check_nhwc(c, name, result, N, C, H, W);
    snprintf(name, sizeof name, "%sx_final", out);
    if (!rc && golden_tensor(c, name))
        rc = golden_check_nhwc(c, name, x, N, C, H, W);
    cs_free(x);
    return rc;
}

/* NCHW shape of a recorded draw */
static int latent_shape(gcase *c, const char *name, size_t *N, size_t *C, size_t *H, size_t *W)
{
    const cs_tensor *t = golden_tensor(c, name);
    if (!t || t->ndim != 4)
        return cs_error(CS_EFORMAT, "%s: %s missing or not NCHW", golden_path(c), name);
    *N = (size_t)t->shape[0], *C = (size_t)t->shape[1];
    *H = (size_t)t->shape[2], *W = (size_t)t->shape[3];
    if (*N > 32)   /* the eps callbacks take up to 64 = 2N images with CFG */
        return cs_error(CS_EFORMAT, "%s: %s: batch %zu (at most 32)", golden_file(c), name, *N);
    return 0;
}

/* What both stages read before sampling: the sampler settings from
 * config[cfg_sampling] and the latent shape of <in><first> (the first draw:
 * noise_init, or img2img's noise_diffuse). */
static int sample_setup(gcase *c, const char *cfg_sampling, const char *in, const char *first,
                        cs_sample_params *p, int *mix, size_t *N, size_t *C, size_t *H, size_t *W)
{
    char name[64];
    int rc = sample_params(c, cfg_sampling, p, mix);
    snprintf(name, sizeof name, "%s%s", in, first);
    if (!rc)
        rc = latent_shape(c, name, N, C, H, W);
    return rc;
}

/* The network options of config[cfg_model]; a single-stage case (single:
 * no result handed to a next stage) also gets its lora list, which applies
 * to that stage (the pipeline case has no single module to apply one to). */
static int stage_opts(gcase *c, const char *cfg_model, int single, cs_unet_opts *o, const cs_unet_opts **use,
                      cs_lora_list *lo)
{
    int rc = net_opts(c, cfg_model, o, use);
    if (!rc && single)
        rc = golden_lora(c, lo);
    return rc;
}

/* A stage's end: its latent res [N, H, W, C] to the caller that asked for
 * it (result != NULL) when all went well, else freed; returns rc. */
static int hand_over(int rc, float *res, float **result, size_t *rN, size_t N, size_t *rH, size_t H, size_t *rW,
                     size_t W)
{
    if (!rc && result) {
        *result = res, *rN = N, *rH = H, *rW = W;
        return 0;
    }
    cs_free(res);
    return rc;
}

/* ---- Stage C ------------------------------------------------------------ */

typedef struct {
    cs_stage_c *m;
    size_t h, w, Lt, M;
    const float *text, *pooled, *img;   /* [2N, ...]: conditional half first */
    float r[64];
} c_ctx;

/* the noise level of every image of the batch into rv[64] */
static int fill_r(float *rv, int nb, float r)
{
    if (nb > 64)
        return cs_error(CS_EARG, "golden sampling: batch %d too large", nb);
    for (int i = 0; i < nb; i++)
        rv[i] = r;
    return 0;
}

static int c_eps(void *ctx, const float *x, int nb, float r, float *eps)
{
    c_ctx *k = ctx;
    int rc = fill_r(k->r, nb, r);
    if (rc)
        return rc;
    /* with nb = N (no CFG) the first, conditional half of each table is used */
    return cs_stage_c_forward(k->m, x, (size_t)nb, k->h, k->w, k->r, k->text, k->Lt, k->pooled,
                              k->img, k->M, NULL, NULL, eps);
}

/* ---- img2img's start ------------------------------------------------- */

/* The official image-to-image start (doc/reference.md), as the
 * pipeline does it: in.image [1,3,32h,32w] in [0,1] -> ImageNet
 * normalisation -> EfficientNet (weights "effnet") = out.effnet_latent;
 * x_init = GDF.diffuse(latent, in.noise_diffuse, t = strength, shift
 * config.img2img.diffuse_shift) = out.x_init for the N images; Stage C then
 * samples int(timesteps * strength) steps from t_start = strength. With a
 * "seed" in the metadata, our generator seeded with it must give
 * in.noise_diffuse and then every in.noise_step_NN, in that order. */
static int img2img_start(gcase *c, cs_sample_params *p, size_t N, size_t C, size_t h, size_t w,
                         float **x_init, cs_rng *rng, int *use_rng)
{
    json_t *cfg = golden_config(c), *ii = cfg ? json_object_get(cfg, "img2img") : NULL;
    json_t *js = json_object_get(ii, "strength"), *jd = json_object_get(ii, "diffuse_shift");
    if (!json_is_number(js) || !(json_number_value(js) > 0 && json_number_value(js) < 1))
        return golden_cfg_bad(c, "img2img", "needs a strength in (0, 1)");
    if (jd && !(json_is_number(jd) && json_number_value(jd) > 0 && json_number_value(jd) <= 1000))
        return golden_cfg_bad(c, "img2img", "diffuse_shift is outside (0, 1000]");
    double strength = json_number_value(js);
    float dshift = jd ? (float)json_number_value(jd) : 1.0f;
    const char *seed = golden_meta(c, "seed");
    char *end = NULL;
    unsigned long long sv = seed ? strtoull(seed, &end, 10) : 0;
    if (seed && (!*seed || *end))
        return cs_error(CS_EFORMAT, "%s: metadata seed '%s' is not a number", golden_file(c), seed);
    *use_rng = seed != NULL;
    if (seed)
        cs_rng_seed(rng, sv);

    size_t Ni, Ci, H, W, Ne, Ce, He, We, per = h * w * C;
    cs_st_file *f;
    cs_effnet *m = NULL;
    float *img = golden_nhwc(c, "in.image", &Ni, &Ci, &H, &W), *lat = NULL, *x = NULL;
    float *eps = img ? golden_nhwc(c, "in.noise_diffuse", &Ne, &Ce, &He, &We) : NULL;
    int rc = img && eps ? golden_weights(c, "effnet", &f) : CS_EFORMAT;
    if (!rc)
        rc = cs_effnet_load(f, NULL, &m);
    if (!rc && (Ni != 1 || Ci != 3 || cs_effnet_out_size(H) != h || cs_effnet_out_size(W) != w ||
                (size_t)cs_effnet_get_config(m)->c_latent != C))
        rc = cs_error(CS_EFORMAT, "%s: in.image must be one [3, H, W] image that encodes to the [%zu, %zu, %zu] "
                      "latent of in.noise_diffuse", golden_file(c), C, h, w);
    if (!rc && !((lat = cs_alloc(per * sizeof *lat)) && (x = cs_alloc(N * per * sizeof *x))))
        rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) {
        cs_effnet_preprocess(img, img, H * W);
        rc = cs_effnet_forward(m, img, 1, H, W, lat);
    }
    if (!rc && golden_tensor(c, "out.effnet_latent")) {
        golden_require(c, "out.effnet_latent");
        rc = golden_check_nhwc(c, "out.effnet_latent", lat, 1, C, h, w);
    }
    if (!rc && seed)
        rc = rng_matches(c, rng, eps, N, C, h, w, "in.noise_diffuse");
    if (!rc) {
        cs_gdf_diffuse(lat, eps, N, per, (float)strength, dshift, x);
        golden_require(c, "out.x_init");
        rc = golden_check_nhwc(c, "out.x_init", x, N, C, h, w);
    }
    if (!rc) {
        p->steps = cs_img2img_steps(p->steps, strength);
        p->t_start = (float)strength;
        p->x_init_given = 1;
        *x_init = x;
        x = NULL;
    }
    cs_effnet_free(m);
    cs_free(img);
    cs_free(eps);
    cs_free(lat);
    cs_free(x);
    return rc;
}

/* Stage C sampling for one case; conditioning names as given (img may be
 * NULL for zeros). result: [N, h, w, 16] channels-last. img2img: start from
 * img2img_start's x_init instead of in.noise_init. */
static int run_c(gcase *c, const char *cfg_model, const char *cfg_sampling, const char *in,
                 const char *out, const char *text_c, const char *text_u, const char *pool_c,
                 const char *pool_u, const char *img_c, const char *img_u, int img2img, float **result,
                 size_t *rN, size_t *rh, size_t *rw)
{
    cs_st_file *f;
    cs_unet_opts o;
    const cs_unet_opts *use;
    cs_stage_c *m = NULL;
    cs_sample_params p;
    size_t N, C, H, W, Nt, Lt, Ct, Np, Lp, Cp, Ni = 0, M = 1, Ci = 0;
    float *text = NULL, *pool = NULL, *img = NULL, *res = NULL, *x_init = NULL;
    cs_rng rng;
    int use_rng = 0, mix = 0, rc = golden_weights(c, "stage_c", &f);
    cs_lora_list lo = {0};
    if (!rc)
        rc = stage_opts(c, cfg_model, !result, &o, &use, &lo);
    if (!rc)
        rc = cs_stage_c_load_lora(f, use, &lo, &m);
    golden_lora_free(&lo);
    if (!rc)
        rc = sample_setup(c, cfg_sampling, in, img2img ? "noise_diffuse" : "noise_init", &p, &mix, &N, &C, &H, &W);
    if (!rc && img2img)
        rc = img2img_start(c, &p, N, C, H, W, &x_init, &rng, &use_rng);
    if (rc)
        goto done;
    cs_net_info info;
    cs_stage_c_info(m, &info);
    text = pair_tokens(c, text_c, text_u, &Nt, &Lt, &Ct);
    pool = pair_tokens(c, pool_c, pool_u, &Np, &Lp, &Cp);
    if (img_c)
        img = pair_tokens(c, img_c, img_u, &Ni, &M, &Ci);
    if (!text || !pool || (img_c && !img)) {
        rc = CS_EFORMAT;
        goto done;
    }
    if (Nt != N || Np != N || Lp != 1 || (img && Ni != N) || C != (size_t)info.c_in ||
        Ct != (size_t)info.c_clip_text || Cp != (size_t)info.c_clip_pooled ||
        (img && Ci != (size_t)info.c_clip_img)) {
        rc = cs_error(CS_EFORMAT, "%s: conditioning / latent do not fit the Stage C in %s",
                      golden_path(c), cs_st_path(f));
        goto done;
    }
    c_ctx k = {m, H, W, Lt, M, text, pool, img, {0}};
    rc = sample_stage(c, &p, mix, in, out, c_eps, &k, N, C, H, W, x_init, use_rng ? &rng : NULL, &res);
done:
    cs_free(x_init);
    cs_free(text);
    cs_free(pool);
    cs_free(img);
    cs_stage_c_free(m);
    return hand_over(rc, res, result, rN, N, rh, H, rw, W);
}

static int run_sampling_c(gcase *c)
{
    return run_c(c, "model", "sampling", "in.", "out.", "in.cond.clip_text", "in.uncond.clip_text",
                 "in.cond.clip_text_pooled", "in.uncond.clip_text_pooled",
                 golden_tensor(c, "in.cond.clip_img") ? "in.cond.clip_img" : NULL,
                 "in.uncond.clip_img", 0, NULL, NULL, NULL, NULL);
}

static int run_img2img(gcase *c)
{
    return run_c(c, "model", "sampling", "in.", "out.", "in.cond.clip_text", "in.uncond.clip_text",
                 "in.cond.clip_text_pooled", "in.uncond.clip_text_pooled",
                 golden_tensor(c, "in.cond.clip_img") ? "in.cond.clip_img" : NULL,
                 "in.uncond.clip_img", 1, NULL, NULL, NULL, NULL);
}

/* ---- Stage B ------------------------------------------------------------ */

typedef struct {
    cs_stage_b *m;
    size_t H, W, hc, wc;
    const float *effnet, *clip;   /* [2N, ...]: conditional half first */
    float r[64];
} b_ctx;

static int b_eps(void *ctx, const float *x, int nb, float r, float *eps)
{
    b_ctx *k = ctx;
    int rc = fill_r(k->r, nb, r);
    if (rc)
        return rc;
    return cs_stage_b_forward(k->m, x, (size_t)nb, k->H, k->W, k->r, k->effnet, k->hc, k->wc,
                              k->clip, NULL, 0, 0, NULL, eps);
}

/* Stage B sampling; effnet: [2N, hc, wc, c_effnet] channels-last, [cond; uncond]. */
static int run_b(gcase *c, const char *cfg_model, const char *cfg_sampling, const char *in,
                 const char *out, const float *effnet, size_t hc, size_t wc, size_t c_effnet,
                 const char *clip_c, const char *clip_u, float **result, size_t *rN, size_t *rH,
                 size_t *rW)
{
    cs_st_file *f;
    cs_unet_opts o;
    const cs_unet_opts *use;
    cs_stage_b *m = NULL;
    cs_sample_params p;
    size_t N, C, H, W, Nc, Lc, Cc;
    float *clip = NULL, *res = NULL;
    int mix = 0, rc = golden_weights(c, "stage_b", &f);
    cs_lora_list lo = {0};
    if (!rc)
        rc = stage_opts(c, cfg_model, !result, &o, &use, &lo);
    if (!rc)
        rc = cs_stage_b_load_lora(f, use, &lo, &m);
    golden_lora_free(&lo);
    if (!rc)
        rc = sample_setup(c, cfg_sampling, in, "noise_init", &p, &mix, &N, &C, &H, &W);
    if (rc)
        goto done;
    cs_net_info info;
    cs_stage_b_info(m, &info);
    if (!(clip = pair_tokens(c, clip_c, clip_u, &Nc, &Lc, &Cc))) {
        rc = CS_EFORMAT;
        goto done;
    }
    if (Nc != N || Lc != 1 || C != (size_t)info.c_in || Cc != (size_t)info.c_clip_pooled ||
        c_effnet != (size_t)info.c_effnet) {
        rc = cs_error(CS_EFORMAT, "%s: conditioning / latent do not fit the Stage B in %s",
                      golden_path(c), cs_st_path(f));
        goto done;
    }
    b_ctx k = {m, H, W, hc, wc, effnet, clip, {0}};
    rc = sample_stage(c, &p, mix, in, out, b_eps, &k, N, C, H, W, NULL, NULL, &res);
done:
    cs_free(clip);
    cs_stage_b_free(m);
    return hand_over(rc, res, result, rN, N, rH, H, rW, W);
}

/* [cond; uncond] effnet from two NCHW tensors, as channels-last */
static float *pair_nhwc(gcase *c, const char *a, const char *b, size_t *N, size_t *C, size_t *H,
                        size_t *W)
{
    size_t n2, c2, h2, w2;
    int have_u = golden_tensor(c, b) != NULL;   /* absent: zeros, as GDF.sample makes it */
    float *x = golden_nhwc(c, a, N, C, H, W), *y = x && have_u ? golden_nhwc(c, b, &n2, &c2, &h2, &w2) : NULL;
    float *z = NULL;
    if (x && !have_u)
        n2 = *N, c2 = *C, h2 = *H, w2 = *W;
    if (x && (y || !have_u) && (n2 != *N || c2 != *C || h2 != *H || w2 != *W))
        cs_error(CS_EFORMAT, "%s: %s and %s differ in shape", golden_path(c), a, b);
    else if (x && (y || !have_u) && !(z = cs_calloc(2 * *N * *C * *H * *W * sizeof *z)))
        cs_error(CS_ENOMEM, "out of memory");
    if (z) {
        size_t n = *N * *C * *H * *W;
        memcpy(z, x, n * sizeof *z);
        if (y)
            memcpy(z + n, y, n * sizeof *z);
    }
    cs_free(x);
    cs_free(y);
    return z;
}

static int run_sampling_b(gcase *c)
{
    size_t N, C, H, W;
    float *eff = pair_nhwc(c, "in.cond.effnet", "in.uncond.effnet", &N, &C, &H, &W);
    if (!eff)
        return CS_EFORMAT;
    int rc = run_b(c, "model", "sampling", "in.", "out.", eff, H, W, C, "in.cond.clip",
                   "in.uncond.clip", NULL, NULL, NULL, NULL);
    cs_free(eff);
    return rc;
}

/* ---- the tiny chain ----------------------------------------------------- */

/* out.image_u8 is the truncating conversion of the stored out.image (must be
 * exact); our own image may differ in at most mismatch_frac of the bytes. */
static int check_u8(gcase *c, const float *img_nhwc, size_t N, size_t H, size_t W)
{
    const cs_tensor *tu = golden_tensor(c, "out.image_u8"), *ti = golden_tensor(c, "out.image");
    if (!tu || !ti)
        return 0;
    size_t n = N * H * W * 3;
    size_t du[4] = {N, H, W, 3}, di[4] = {N, 3, H, W};
    if (tu->dtype != CS_U8 || !golden_shape_is(tu, 4, du) || !golden_shape_is(ti, 4, di))
        return cs_error(CS_EFORMAT, "%s: out.image_u8 is not U8 [%zu,%zu,%zu,3]", golden_path(c),
                        N, H, W);
    double frac_tol = 0.0;
    json_t *tols = NULL;
    const char *tj = golden_meta(c, "tolerances");
    if (tj && (tols = json_loads(tj, 0, NULL))) {
        json_t *e = json_object_get(json_object_get(tols, "out.image_u8"), "mismatch_frac");
        if (json_is_number(e))
            frac_tol = json_number_value(e);
    }
    json_decref(tols);
    const uint8_t *ref = tu->data;
    uint8_t *u8 = malloc(n), *mine = malloc(n);
    float *stored = cs_tensor_f32_dup(ti);
    int rc = 0;
    if (!u8 || !mine || !stored)
        rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc)
        rc = cs_image_to_u8_nchw(stored, N, H, W, CS_U8_TRUNCATE, u8);
    if (!rc)
        rc = cs_image_to_u8_nhwc(img_nhwc, N, H, W, CS_U8_TRUNCATE, mine);
    if (!rc) {
        size_t d_stored = 0, d_mine = 0;
        for (size_t i = 0; i < n; i++) {
            d_stored += u8[i] != ref[i];
            d_mine += mine[i] != ref[i];
        }
        double frac = (double)d_mine / (double)n;
        int ok = d_stored == 0 && frac <= frac_tol;
        printf("out.image_u8 stored_float_mismatches=%zu mismatch_frac=%.4g tol=0/%.4g%s\n",
               d_stored, frac, frac_tol, ok ? "" : " EXCEEDED");
        if (!ok)
            rc = cs_error(CS_EMODEL, "%s: out.image_u8: %zu bytes differ from the stored float "
                          "image's conversion, %.4g of ours differ (limit %.4g)",
                          golden_path(c), d_stored, frac, frac_tol);
    }
    free(u8);
    free(mine);
    cs_free(stored);
    return rc;
}

static int run_pipeline(gcase *c)
{
    float *cres = NULL, *eff = NULL, *bres = NULL, *img = NULL;
    size_t N, hc, wc, Nb, Hb, Wb;
    int rc = run_c(c, "stage_c", "sampling_c", "in.c.", "out.c.", "in.clip_text",
                   "in.uncond.clip_text", "in.clip_text_pooled", "in.uncond.clip_text_pooled",
                   NULL, NULL, 0, &cres, &N, &hc, &wc);
    if (rc)
        return rc;
    /* Stage B conditioning: effnet = [Stage C result; zeros] */
    size_t n0, ce, h0, w0;
    if ((rc = latent_shape(c, "in.c.noise_init", &n0, &ce, &h0, &w0)))
        goto done;
    size_t n = N * hc * wc * ce;
    if (!(eff = cs_calloc(2 * n * sizeof *eff))) {
        rc = cs_error(CS_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(eff, cres, n * sizeof *eff);
    size_t nb, cb, hb, wb;   /* the effnet condition holds N images: Stage B must sample N too */
    if (!(rc = latent_shape(c, "in.b.noise_init", &nb, &cb, &hb, &wb)) && nb != N)
        rc = cs_error(CS_EFORMAT, "%s: in.b.noise_init has batch %zu, the Stage C latent %zu", golden_file(c), nb, N);
    if (rc)
        goto done;
    rc = run_b(c, "stage_b", "sampling_b", "in.b.", "out.b.", eff, hc, wc, ce, "in.clip_text_pooled",
               "in.uncond.clip_text_pooled", &bres, &Nb, &Hb, &Wb);
    if (rc)
        goto done;

    cs_st_file *f;
    cs_stage_a *a = NULL;
    if ((rc = golden_weights(c, "stage_a", &f)) || (rc = cs_stage_a_load(f, NULL, &a)))
        goto done;
    json_t *cfg = golden_config(c), *sa = cfg ? json_object_get(cfg, "stage_a") : NULL;
    json_t *sf = sa ? json_object_get(sa, "scale_factor") : NULL;
    float scale = json_is_number(sf) ? (float)json_number_value(sf) : CS_STAGE_A_SCALE;
    size_t fct = (size_t)cs_stage_a_factor(a), H = Hb * fct, W = Wb * fct;
    size_t di[4] = {Nb, 3, H, W};
    if (!golden_shape_is(golden_tensor(c, "out.image"), 4, di))
        rc = golden_check(c, "out.image", NULL, 4, di);
    else if (!(img = cs_alloc(Nb * H * W * 3 * sizeof *img)))
        rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc)
        rc = cs_stage_a_decode(a, bres, Nb, Hb, Wb, scale, 0, 0, img);
    cs_stage_a_free(a);
    if (!rc)
        rc = golden_check_nhwc(c, "out.image", img, Nb, 3, H, W);
    if (!rc)
        rc = check_u8(c, img, Nb, H, W);
done:
    cs_free(cres);
    cs_free(eff);
    cs_free(bres);
    cs_free(img);
    return rc;
}

const golden_handler golden_sampling_handlers[] = {
    {"gdf.GDF.sample + modules.stage_c.StageC", run_sampling_c},
    {"gdf.GDF.sample + modules.stage_b.StageB", run_sampling_b},
    {"Stage C sampling -> Stage B sampling -> StageA.decode", run_pipeline},
    {"img2img", run_img2img},
    {NULL, NULL},
};
