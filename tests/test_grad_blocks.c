/* Block backwards (src/grad_blocks.h) and the whole Stage C backward
 * against PyTorch autograd on the official modules:
 * tests/data/grad/blocks.safetensors and stage_c.safetensors, written by
 * tests/ref/grad_blocks_ref.py (no Python needed here).
 *
 * The references are float64 autograd; the file's metadata holds, per
 * tensor, the error of the same computation in float32 PyTorch
 * (max |d| / max |ref|). A tensor passes if our error (same measure) is at
 * most 20x that, and at most TOL_FLOOR when that is smaller: the rule of the
 * golden set (../shared/golden/README.md) with the floor of the op tests.
 * Each block's backward runs once more in device mode (src/device.h) on
 * the backend $CASCADE_BACKEND names (cuda on a GPU machine), else the fake
 * plugin tests/.libs/libcascade-fake.so, with its gradients in device
 * memory, and is held to the same references; without a usable device that
 * pass is skipped with a note.
 * Usage: test_grad_blocks [DATA_DIR] (default: tests/data/grad under srcdir). */
#include "check.h"
#include "backend.h"
#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "safetensors.h"
#include "stage_c.h"
#include "weights.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_FLOOR 3e-6
#define TOL_MULT 20.0

static int failures;
static double worst_ratio;   /* our error / torch fp32 error, over the passing tensors */
static cs_st_file *F;
static json_t *ERRS;
static const cs_dev_ops *DEV;   /* the device pass's op set; NULL: none */

#define MUST(x) do { if (x) { fprintf(stderr, "%s: %s\n", #x, cs_last_error()); exit(99); } } while (0)

static const float *get(const char *pre, const char *name, size_t n)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", pre, name);
    const cs_tensor *t = cs_st_find(F, full);
    if (!t || t->dtype != CS_F32 || (size_t)cs_tensor_numel(t) != n) {
        fprintf(stderr, "%s: %s missing or not F32[%zu]\n", cs_st_path(F), full, n);
        exit(99);
    }
    return t->data;
}

static float *dup(const float *p, size_t n)
{
    float *q = malloc(n * sizeof *q + 1);
    if (!q) exit(99);
    memcpy(q, p, n * sizeof *q);
    return q;
}

static float *zeros(size_t n)
{
    float *q = calloc(n + 1, sizeof *q);
    if (!q) exit(99);
    return q;
}

/* compares got with <pre>.<name> (n floats) */
static void check(const char *pre, const char *name, const float *got, size_t n)
{
    const float *want = get(pre, name, n);
    double r = check_max_rel(got, want, n);
    json_t *ref = json_object_get(json_object_get(ERRS, pre), name);
    double t32 = json_is_number(ref) ? json_number_value(ref) : 0;
    double tol = fmax(TOL_MULT * t32, TOL_FLOOR);
    int ok = r <= tol;
    if (ok && t32 > 0 && r / t32 > worst_ratio) worst_ratio = r / t32;
    printf("%-14s %-52s err %.2e  torch fp32 %.2e  tol %.1e%s\n", pre, name, r, t32, tol, ok ? "" : "  FAIL");
    failures += !ok;
}

/* every parameter gradient of the case: g.<key> against ours for <pre>.w.<key> */
static void check_params(const char *pre, const cs_grads *g)
{
    char wpre[64];
    size_t wl = (size_t)snprintf(wpre, sizeof wpre, "%s.w.", pre);
    int seen = 0;
    for (int i = 0; i < cs_st_count(F); i++) {
        const char *nm = cs_st_at(F, i)->name;
        if (strncmp(nm, wpre, wl)) continue;
        const cs_grad_ent *e = cs_grads_find(g, nm);
        char gname[160];
        snprintf(gname, sizeof gname, "g.%s", nm + wl);
        if (!e) {
            printf("%-14s %-52s no gradient  FAIL\n", pre, gname);
            failures++;
            continue;
        }
        check(pre, gname, e->g, e->n);
        seen++;
    }
    if (seen != g->n) {
        printf("%s: %d gradients made, %d in the reference  FAIL\n", pre, g->n, seen);
        failures++;
    }
}

static void t_block(const char *pre, char type, size_t cskip, size_t ldt, size_t Lc, size_t cc)
{
    size_t N = 2, H = 5, W = 4, c = 16, n = N * H * W * c;
    char wp[64];
    snprintf(wp, sizeof wp, "%s.w.", pre);
    cs_wmap m;
    MUST(cs_wmap_init(&m, F, wp));
    cs_block b = {.type = type};
    int e = 0;
    static const char *const conds[] = {"sca", "crp"};
    switch (type) {
    case 'C': e = cs_resblock_bind(&b.u.res, &m, "", (int)c, (int)cskip); break;
    case 'F': e = cs_ffblock_bind(&b.u.res, &m, "", (int)c); break;
    case 'T': e = cs_tsblock_bind(&b.u.ts, &m, "", (int)c, 8, 2, conds); break;
    case 'A': e = cs_attnblock_bind(&b.u.attn, &m, "", (int)c, (int)cc, 2); break;
    }
    MUST(e || cs_wmap_finish(&m, pre));
    const float *x = get(pre, "x", n), *skip = cskip ? get(pre, "skip", N * H * W * cskip) : NULL;
    const float *t = ldt ? get(pre, "t", N * ldt) : NULL, *cond = Lc ? get(pre, "cond", N * Lc * cc) : NULL;
    float *d = dup(get(pre, "dy", n), n), *dskip = zeros(N * H * W * cskip), *dt = zeros(N * ldt),
          *dcond = zeros(N * Lc * cc);
    cs_grads g = {0};
    cs_ws ws = {0}, bws = {0};
    MUST(cs_block_backward(&b, x, d, N, H, W, skip, dskip, t, ldt, dt, cond, Lc, dcond, &g, &ws, &bws));
    check(pre, "dx", d, n);
    if (cskip) check(pre, "dskip", dskip, N * H * W * cskip);
    if (ldt) check(pre, "dt", dt, N * ldt);
    if (Lc) check(pre, "dcond", dcond, N * Lc * cc);
    check_params(pre, &g);
    /* a second pass adds: every parameter gradient doubles (buffers zeroed once per step) */
    memcpy(d, get(pre, "dy", n), n * sizeof *d);
    MUST(cs_block_backward(&b, x, d, N, H, W, skip, NULL, t, ldt, NULL, cond, Lc, NULL, &g, &ws, &bws));
    for (int i = 0; i < g.n; i++)
        for (size_t j = 0; j < g.e[i].n; j++) g.e[i].g[j] *= 0.5f;
    check(pre, "dx", d, n);
    check_params(pre, &g);
    cs_grads_free(&g);
    cs_ws_free(&ws), cs_ws_free(&bws);
    if (DEV) {   /* the same in device mode: inputs uploaded, gradients made in device memory */
        size_t ns = N * H * W * cskip, nt = N * ldt, nc = N * Lc * cc;
        memcpy(d, get(pre, "dy", n), n * sizeof *d);
        cs_dev_args a;
        cs_dev_args_begin(&a, DEV);
        const float *px = cs_dev_in(&a, x, n), *ps = cs_dev_in(&a, skip, ns), *pt = cs_dev_in(&a, t, nt),
                    *pc = cs_dev_in(&a, cond, nc);
        float *pd = cs_dev_out(&a, d, n), *pds = ns ? cs_dev_out(&a, dskip, ns) : NULL,
              *pdt = nt ? cs_dev_out(&a, dt, nt) : NULL, *pdc = nc ? cs_dev_out(&a, dcond, nc) : NULL;
        int rc = a.rc ? a.rc : cs_act_upload(pd, d, n);
        if (!rc && pds) cs_fill(pds, 0.0f, ns);
        if (!rc && pdt) cs_fill(pdt, 0.0f, nt);
        if (!rc && pdc) cs_fill(pdc, 0.0f, nc);
        cs_grads gd = {0}, gh = {0};
        if (!rc) rc = cs_block_backward(&b, px, pd, N, H, W, ps, pds, pt, ldt, pdt, pc, Lc, pdc, &gd, &ws, &bws);
        if (!rc && gd.n && !(gd.dev == DEV && (gh.e = calloc((size_t)gd.n, sizeof *gh.e)))) rc = CS_EARG;
        for (int i = 0; i < gd.n && !rc; i++) {   /* host copies for check_params */
            gh.e[i] = gd.e[i];
            gh.n = i + 1;
            if (!(gh.e[i].g = malloc(gd.e[i].n * sizeof(float)))) rc = CS_ENOMEM;
            else rc = cs_act_download(gh.e[i].g, gd.e[i].g, gd.e[i].n);
        }
        cs_grads_free(&gd);
        cs_ws_free(&ws), cs_ws_free(&bws);
        rc = cs_dev_args_finish(&a, rc);
        if (rc) {
            printf("%-14s device backward failed: %s  FAIL\n", pre, cs_last_error());
            failures++;
        } else {
            printf("# %s on the device (%s)\n", pre, cs_backend_name());
            check(pre, "dx", d, n);
            if (cskip) check(pre, "dskip", dskip, ns);
            if (ldt) check(pre, "dt", dt, nt);
            if (Lc) check(pre, "dcond", dcond, nc);
            check_params(pre, &gh);
        }
        for (int i = 0; i < gh.n; i++) free(gh.e[i].g);
        free(gh.e);
    }
    cs_wmap_free(&m);
    free(d), free(dskip), free(dt), free(dcond);
}

/* the device pass's backend, or NULL with a note why there is none */
static const cs_dev_ops *pick_device(void)
{
    const char *env = getenv("CASCADE_BACKEND");
    const char *name = env && *env ? env : "tests/.libs/libcascade-fake.so";
    if (!strcmp(name, "cpu")) return NULL;
    if (cs_backend_select(name)) {
        printf("# no device pass: %s\n", cs_last_error());
        return NULL;
    }
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) printf("# no device pass: backend %s has no op set\n", cs_backend_name());
    if (d && d->set_precision(CS_PREC_FP32)) {   /* training's precision on the device */
        printf("# no device pass: %s: no fp32\n", cs_backend_name());
        d = NULL;
    }
    return d;
}

/* The tiny Stage C of the golden set: loss = mean((eps - target)^2) */
static json_t *load_errs(void);

static int t_stage_c(const char *dir)
{
    const char *sd = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    cs_st_file *wf;
    if (cs_st_open(path, &wf)) return check_missing(cs_last_error());
    snprintf(path, sizeof path, "%s/stage_c.safetensors", dir);
    MUST(cs_st_open(path, &F));
    ERRS = load_errs();
    cs_stage_c *m;
    MUST(cs_stage_c_load(wf, &m));
    cs_net_info in;
    cs_stage_c_info(m, &in);
    const char *P = "stage_c";
    size_t N = 2, h = 6, w = 5, Lt = 8, n = N * h * w * (size_t)in.c_out;
    const float *x = get(P, "x", N * h * w * (size_t)in.c_in), *r = get(P, "r", N),
                *txt = get(P, "clip_text", N * Lt * (size_t)in.c_clip_text),
                *pool = get(P, "clip_pooled", N * (size_t)in.c_clip_pooled),
                *img = get(P, "clip_img", N * (size_t)in.c_clip_img), *tgt = get(P, "target", n);
    float *eps = zeros(n), *deps = zeros(n), *dx = zeros(N * h * w * (size_t)in.c_in);
    cs_grads g = {0};
    for (int pass = 0; pass < 2; pass++) {   /* twice: the second must give the same (state is reset) */
        cs_grads_zero(&g);
        MUST(cs_stage_c_forward_train(m, x, N, h, w, r, txt, Lt, pool, img, 1, NULL, NULL, eps));
        double loss = 0;
        for (size_t i = 0; i < n; i++) {
            double e = (double)eps[i] - tgt[i];
            loss += e * e;
            deps[i] = (float)(2.0 * e / (double)n);
        }
        float lossf = (float)(loss / (double)n);
        MUST(cs_stage_c_backward(m, deps, &g, dx));
        check(P, "loss", &lossf, 1);
        check(P, "eps", eps, n);
        check(P, "dx", dx, N * h * w * (size_t)in.c_in);
        for (int i = 0; i < cs_st_count(F); i++) {
            const char *nm = cs_st_at(F, i)->name;
            if (strncmp(nm, "stage_c.g.", 10)) continue;
            const cs_grad_ent *e = cs_grads_find(&g, nm + 10);
            if (!e) {
                printf("%s: no gradient for %s  FAIL\n", P, nm + 10);
                failures++;
            } else check(P, nm + 8, e->g, e->n);
        }
    }
    /* every parameter got a gradient */
    int np = 0;
    for (int i = 0; i < cs_st_count(wf); i++) np++;
    if (g.n != np) {
        printf("stage_c: %d parameter gradients, %d tensors  FAIL\n", g.n, np);
        failures++;
    }
    /* a plain forward between a training forward and its backward is refused */
    MUST(cs_stage_c_forward_train(m, x, N, h, w, r, txt, Lt, pool, img, 1, NULL, NULL, eps));
    if (cs_stage_c_forward(m, x, N, h, w, r, txt, Lt, pool, img, 1, NULL, NULL, eps) == 0) {
        printf("stage_c: an inference forward during a training step was accepted  FAIL\n");
        failures++;
    }
    cs_stage_c_train_end(m);
    /* a backward without its forward is an error, not a crash */
    if (cs_stage_c_backward(m, deps, &g, NULL) == 0) {
        printf("stage_c: a second backward of one forward was accepted  FAIL\n");
        failures++;
    }
    cs_grads_free(&g);
    cs_stage_c_free(m);
    cs_st_close(wf);
    json_decref(ERRS);
    cs_st_close(F);
    free(eps), free(deps), free(dx);
    return 0;
}

static json_t *load_errs(void)
{
    const char *js = cs_st_meta(F, "fp32_err");
    json_t *j = js ? json_loads(js, 0, NULL) : NULL;
    if (!json_is_object(j)) {
        fprintf(stderr, "%s: no fp32_err metadata\n", cs_st_path(F));
        exit(99);
    }
    return j;
}

int main(int argc, char **argv)
{
    const char *srcdir = getenv("srcdir");
    char dir[1024], path[1100];
    if (argc > 1) snprintf(dir, sizeof dir, "%s", argv[1]);
    else snprintf(dir, sizeof dir, "%s/tests/data/grad", srcdir ? srcdir : ".");
    snprintf(path, sizeof path, "%s/blocks.safetensors", dir);
    MUST(cs_st_open(path, &F));
    ERRS = load_errs();
    DEV = pick_device();
    t_block("resblock", 'C', 0, 0, 0, 0);
    t_block("resblock_skip", 'C', 8, 0, 0, 0);
    t_block("ffblock", 'F', 0, 0, 0, 0);
    t_block("tsblock", 'T', 0, 24, 0, 0);
    t_block("attnblock", 'A', 0, 0, 3, 12);
    cs_backend_release();   /* its weight copies came from F */
    DEV = NULL;
    json_decref(ERRS);
    cs_st_close(F);
    int rc = t_stage_c(dir);
    if (rc) return rc;
    printf("worst error / torch fp32 error: %.2f (limit %.0f)\n", worst_ratio, TOL_MULT);
    if (failures) printf("%d FAILED\n", failures);
    return failures ? 1 : 0;
}
