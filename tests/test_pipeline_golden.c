/* Pipeline against the shared goldens:
 * - the tiny chain pipeline_tiny run through the pipeline's own stage
 *   functions (cs_pipe_sample_c / cs_pipe_sample_b: conditioning laid out
 *   [cond; uncond], Stage B's unconditional effnet zeros) with the recorded
 *   draws, then Stage A: out.c.sampled, out.b.sampled and out.image within
 *   the case's tolerances;
 * - the demo generator's key lists equal the golden weight files' (names and
 *   shapes) for the golden tiny configs, so the demo files look exactly
 *   like real checkpoints.
 * Exit 77 = skip (shared data missing; 99 under CI). */
#include "check.h"
#include "demo.h"
#include "error.h"
#include "models.h"
#include "golden/noise_name.h"
#include "ops.h"
#include "pipeline.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char golden[4096];

static cs_st_file *open_golden(const char *name)
{
    char p[4200];
    cs_st_file *f = NULL;
    snprintf(p, sizeof p, "%s/%s", golden, name);
    if (cs_st_open(p, &f))
        fprintf(stderr, "FAIL: %s\n", cs_last_error()), failures++;
    return f;
}

/* NCHW tensor -> channels-last copy */
static float *nhwc(const cs_st_file *f, const char *name, size_t *N, size_t *C, size_t *H, size_t *W)
{
    const cs_tensor *t = cs_st_find(f, name);
    if (!t || t->ndim != 4)
        return NULL;
    *N = t->shape[0], *C = t->shape[1], *H = t->shape[2], *W = t->shape[3];
    float *a = cs_tensor_f32_dup(t), *b = malloc(cs_tensor_numel(t) * sizeof *b);
    for (size_t n = 0; n < *N; n++)
        for (size_t c = 0; c < *C; c++)
            for (size_t y = 0; y < *H; y++)
                for (size_t x = 0; x < *W; x++)
                    b[((n * *H + y) * *W + x) * *C + c] = a[((n * *C + c) * *H + y) * *W + x];
    cs_free(a);
    return b;
}

typedef struct {
    const cs_st_file *f;
    const char *prefix;
    int next;
} replay;

static int replay_noise(void *ctx, float *out, size_t n)
{
    replay *r = ctx;
    char name[64];
    golden_noise_name(name, sizeof name, r->prefix, r->next++);
    size_t N, C, H, W;
    float *v = nhwc(r->f, name, &N, &C, &H, &W);
    if (!v || N * C * H * W != n) {
        free(v);
        return cs_error(CS_EFORMAT, "%s missing or of the wrong size", name);
    }
    memcpy(out, v, n * sizeof *out);
    free(v);
    return 0;
}

/* compares y (channels-last) with NCHW out.<name> under the case's tolerance */
static void compare(const cs_st_file *f, json_t *tols, const char *name, const float *y)
{
    size_t N, C, H, W;
    float *ref = nhwc(f, name, &N, &C, &H, &W);
    json_t *t = json_object_get(tols, name);
    double rtol = json_number_value(json_object_get(t, "rtol_l2"));
    double atol = json_number_value(json_object_get(t, "atol_max"));
    if (!ref || !t) {
        CHECK(0, "%s: reference or tolerance missing", name);
        free(ref);
        return;
    }
    double d2 = 0, r2 = 0, mx = 0;
    for (size_t i = 0; i < N * C * H * W; i++) {
        double d = (double)y[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        mx = fmax(mx, fabs(d));
    }
    double rel = sqrt(d2 / r2);
    printf("%-16s rel_l2=%.3g max_abs=%.3g (tol %.3g / %.3g)\n", name, rel, mx, rtol, atol);
    CHECK(rel <= rtol && mx <= atol, "%s: rel_l2 %.3g max_abs %.3g over %.3g / %.3g", name, rel, mx, rtol, atol);
    free(ref);
}

static float *tokens2(const cs_st_file *f, const char *a, const char *b, size_t *L, size_t *C)
{
    const cs_tensor *ta = cs_st_find(f, a), *tb = cs_st_find(f, b);
    if (!ta || !tb)
        return NULL;
    size_t n = cs_tensor_numel(ta);
    *L = ta->ndim == 3 ? ta->shape[1] : 1;
    *C = ta->shape[ta->ndim - 1];
    float *y = malloc(2 * n * sizeof *y);
    cs_tensor_to_f32(ta, y);
    cs_tensor_to_f32(tb, y + n);
    return y;
}

static void test_pipeline_tiny(void)
{
    cs_st_file *io = open_golden("pipeline_tiny.io.safetensors");
    cs_st_file *fc = open_golden("stage_c_tiny.weights.safetensors");
    cs_st_file *fb = open_golden("stage_b_tiny.weights.safetensors");
    cs_st_file *fa = open_golden("stage_a_tiny.weights.safetensors");
    if (!io || !fc || !fb || !fa)
        return;
    json_t *tols = json_loads(cs_st_meta(io, "tolerances"), 0, NULL);
    cs_stage_c *sc = NULL;
    cs_stage_b *sb = NULL;
    cs_stage_a *sa = NULL;
    int rc = cs_stage_c_load(fc, &sc);
    rc = rc ? rc : cs_stage_b_load(fb, &sb);
    rc = rc ? rc : cs_stage_a_load(fa, NULL, &sa);
    CHECK(rc == 0 && tols, "loading: %s", cs_last_error());
    if (rc || !tols)
        return;
    /* the case's settings are the official defaults */
    cs_gen_params g;
    cs_gen_defaults(&g);
    size_t Lt, Ct, Lp, Cp;
    float *text = tokens2(io, "in.clip_text", "in.uncond.clip_text", &Lt, &Ct);
    float *pool = tokens2(io, "in.clip_text_pooled", "in.uncond.clip_text_pooled", &Lp, &Cp);
    const size_t N = 1, hc = 3, wc = 3, hb = 24, wb = 32;
    CHECK(cs_latent_c(96) == hc && cs_latent_c(128) == wc && cs_latent_b(96) == hb && cs_latent_b(128) == wb,
          "latent sizes of the case");
    float *xc = malloc(N * hc * wc * 16 * 4), *C = malloc(N * hc * wc * 16 * 4);
    float *xb = malloc(N * hb * wb * 4 * 4), *B = malloc(N * hb * wb * 4 * 4);
    float *img = malloc(N * 96 * 128 * 3 * 4);
    replay rc_c = {io, "in.c.", -1}, rc_b = {io, "in.b.", -1};
    cs_stage_io sio = {replay_noise, &rc_c, NULL, NULL, NULL, NULL, NULL, NULL, 0};
    rc = cs_pipe_sample_c(sc, &g.c, N, hc, wc, text, Lt, pool, &sio, xc, C);
    CHECK(rc == 0, "Stage C: %s", cs_last_error());
    if (!rc)
        compare(io, tols, "out.c.sampled", C);
    sio.noise_ctx = &rc_b;
    rc = rc ? rc : cs_pipe_sample_b(sb, &g.b, N, hb, wb, C, hc, wc, pool, &sio, xb, B);
    CHECK(rc == 0, "Stage B: %s", cs_last_error());
    if (!rc)
        compare(io, tols, "out.b.sampled", B);
    rc = rc ? rc : cs_stage_a_decode(sa, B, N, hb, wb, CS_STAGE_A_SCALE, 0, 0, img);
    if (!rc)
        compare(io, tols, "out.image", img);
    CHECK(rc_c.next == g.c.steps && rc_b.next == g.b.steps, "draws replayed: C %d, B %d", rc_c.next + 1,
          rc_b.next + 1);
    free(text), free(pool), free(xc), free(C), free(xb), free(B), free(img);
    json_decref(tols);
    cs_stage_a_free(sa), cs_stage_b_free(sb), cs_stage_c_free(sc);
    cs_st_close(io), cs_st_close(fc), cs_st_close(fb), cs_st_close(fa);
}

/* every float tensor of the golden file is in the list with its shape, and
 * the list has nothing else */
static void same_keys(const char *file, const cs_demo_list *l)
{
    cs_st_file *f = open_golden(file);
    if (!f)
        return;
    int nf = 0, bad = 0;
    for (int i = 0; i < cs_st_count(f); i++) {
        const cs_tensor *t = cs_st_at(f, i);
        if (t->dtype == CS_I64)
            continue;   /* num_batches_tracked: optional */
        nf++;
        int found = 0;
        for (int k = 0; k < l->n && !found; k++)
            if (!strcmp(l->t[k].name, t->name)) {
                found = 1;
                int same = l->t[k].ndim == t->ndim;
                for (int d = 0; same && d < t->ndim; d++)
                    same = l->t[k].shape[d] == t->shape[d];
                if (!same && bad++ < 3)
                    fprintf(stderr, "  %s: %s: shape differs\n", file, t->name);
            }
        if (!found && bad++ < 3)
            fprintf(stderr, "  %s: %s: not generated\n", file, t->name);
    }
    CHECK(!bad && nf == l->n, "%s: %d problems, %d tensors in the file, %d generated", file, bad, nf, l->n);
    cs_st_close(f);
}

/* rc: the demo generator's result; a generator that fails is a failure */
static void demo_keys(int rc, const char *file, cs_demo_list *l)
{
    CHECK(rc == 0, "demo generator for %s: %s", file, cs_last_error());
    if (rc)
        return;
    same_keys(file, l);
    cs_demo_list_free(l);
}

static void test_demo_keys(void)
{
    cs_demo_unet u;
    cs_demo_list l;
    cs_demo_stage_c_cfg(&u);   /* golden stage_c_tiny = demo config with its CLIP widths */
    u.c_clip_text = 80, u.c_clip_pooled = 72, u.c_clip_img = 48;
    demo_keys(cs_demo_stage_c(&u, &l), "stage_c_tiny.weights.safetensors", &l);
    cs_demo_stage_b_cfg(&u);
    u.c_clip_pooled = 72;
    demo_keys(cs_demo_stage_b(&u, &l), "stage_b_tiny.weights.safetensors", &l);
    demo_keys(cs_demo_stage_a(64, 2, 1, &l), "stage_a_tiny.weights.safetensors", &l);
    demo_keys(cs_demo_stage_a(384, 12, 1, &l), "stage_a.weights.safetensors", &l);
    demo_keys(cs_demo_previewer(512, &l), "previewer.weights.safetensors", &l);
    demo_keys(cs_demo_clip(64, 3, 256, 48, &l), "text/clip_tiny_gelu.weights.safetensors", &l);
}

int main(void)
{
    const char *sd = getenv("SHARED_DIR");
    snprintf(golden, sizeof golden, "%s/golden", sd ? sd : "../shared");
    struct stat st;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/pipeline_tiny.io.safetensors", golden);
    if (stat(probe, &st) != 0) {
        if (check_under_ci()) {
            printf("ERROR: %s missing (CI needs ../shared beside the checkout)\n", probe);
            return 99;
        }
        printf("SKIP: %s not found\n", probe);
        return 77;
    }
    cs_threads_set(1);
    test_pipeline_tiny();
    test_demo_keys();
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("test_pipeline_golden: all checks passed\n");
    return check_exit();
}
