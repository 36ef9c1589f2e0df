/* Stage A decode: a tiled decode equals the untiled one bit for bit, for
 * strips, columns, 2-D tiles and planner-chosen tiles, at two model shapes
 * (2 levels F32, 3 levels BF16), with 1 and 2 threads; plus the loader's
 * strict validation. Random weights in the real tensor layout, written to a
 * temporary safetensors file. */
#include "check.h"
#include "error.h"
#include "ops.h"
#include "safetensors.h"
#include "stage_a.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* ---- a random Stage A checkpoint ---- */

#define MAXT 256
typedef struct {
    cs_tensor t[MAXT];
    char names[MAXT][64];
    void *data[MAXT];
    int n;
    cs_dtype dt;
} wfile;

static void add(wfile *w, const char *name, int ndim, const int64_t *shape, float scale)
{
    cs_tensor *t = &w->t[w->n];
    snprintf(w->names[w->n], sizeof w->names[0], "%s", name);
    t->name = w->names[w->n];
    t->dtype = w->dt;
    t->ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (t->shape[i] = shape[i]);
    void *d = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        float v = check_urand() * scale;
        if (w->dt == CS_BF16) ((uint16_t *)d)[i] = cs_f32_to_bf16(v);
        else ((float *)d)[i] = v;
    }
    t->data = w->data[w->n++] = d;
}

static void resblock(wfile *w, const char *p, int64_t c)
{
    char nm[64];
    snprintf(nm, sizeof nm, "%sgammas", p);
    add(w, nm, 1, (int64_t[]){6}, 0.8f);
    snprintf(nm, sizeof nm, "%sdepthwise.1.weight", p);
    add(w, nm, 4, (int64_t[]){c, 1, 3, 3}, 0.4f);
    snprintf(nm, sizeof nm, "%sdepthwise.1.bias", p);
    add(w, nm, 1, (int64_t[]){c}, 0.1f);
    snprintf(nm, sizeof nm, "%schannelwise.0.weight", p);
    add(w, nm, 2, (int64_t[]){4 * c, c}, 1.7f / sqrtf((float)c));
    snprintf(nm, sizeof nm, "%schannelwise.0.bias", p);
    add(w, nm, 1, (int64_t[]){4 * c}, 0.1f);
    snprintf(nm, sizeof nm, "%schannelwise.2.weight", p);
    add(w, nm, 2, (int64_t[]){c, 4 * c}, 1.7f / sqrtf(4.0f * (float)c));
    snprintf(nm, sizeof nm, "%schannelwise.2.bias", p);
    add(w, nm, 1, (int64_t[]){c}, 0.1f);
}

/* Decoder + encoder + codebook of StageA(levels, bottleneck_blocks, c_hidden). */
static void make_stage_a(wfile *w, int L, int B, int64_t C, cs_dtype dt, const char *extra)
{
    memset(w, 0, sizeof *w);
    w->dt = dt;
    int64_t cl[8];
    char nm[64];
    for (int i = 0; i < L; i++) cl[i] = C >> (L - 1 - i);
    add(w, "in_block.1.weight", 4, (int64_t[]){cl[0], 12, 1, 1}, 0.3f);
    add(w, "in_block.1.bias", 1, (int64_t[]){cl[0]}, 0.1f);
    for (int i = 0; i < L; i++) {
        if (i) {
            snprintf(nm, sizeof nm, "down_blocks.%d.weight", 2 * i - 1);
            add(w, nm, 4, (int64_t[]){cl[i], cl[i - 1], 4, 4}, 0.4f / sqrtf((float)cl[i - 1]));
            snprintf(nm, sizeof nm, "down_blocks.%d.bias", 2 * i - 1);
            add(w, nm, 1, (int64_t[]){cl[i]}, 0.1f);
        }
        snprintf(nm, sizeof nm, "down_blocks.%d.", 2 * i);
        resblock(w, nm, cl[i]);
    }
    snprintf(nm, sizeof nm, "down_blocks.%d.0.weight", 2 * L - 1);
    add(w, nm, 4, (int64_t[]){4, C, 1, 1}, 1.0f / sqrtf((float)C));
    static const char *const bn[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int q = 0; q < 4; q++) {
        snprintf(nm, sizeof nm, "down_blocks.%d.1.%s", 2 * L - 1, bn[q]);
        add(w, nm, 1, (int64_t[]){4}, 0.5f);
        if (q == 3)   /* a positive variance */
            for (int k = 0; k < 4; k++) {
                if (dt == CS_BF16) ((uint16_t *)w->data[w->n - 1])[k] = cs_f32_to_bf16(0.25f + 0.1f * (float)k);
                else ((float *)w->data[w->n - 1])[k] = 0.25f + 0.1f * (float)k;
            }
    }
    add(w, "vquantizer.codebook.weight", 2, (int64_t[]){64, 4}, 1.0f);
    add(w, "up_blocks.0.0.weight", 4, (int64_t[]){C, 4, 1, 1}, 0.5f);
    add(w, "up_blocks.0.0.bias", 1, (int64_t[]){C}, 0.1f);
    int idx = 1;
    for (int lv = L - 1; lv >= 0; lv--) {
        for (int j = 0; j < (lv == L - 1 ? B : 1); j++) {
            snprintf(nm, sizeof nm, "up_blocks.%d.", idx++);
            resblock(w, nm, cl[lv]);
        }
        if (lv) {
            snprintf(nm, sizeof nm, "up_blocks.%d.weight", idx);
            add(w, nm, 4, (int64_t[]){cl[lv], cl[lv - 1], 4, 4}, 0.8f / sqrtf((float)cl[lv]));
            snprintf(nm, sizeof nm, "up_blocks.%d.bias", idx++);
            add(w, nm, 1, (int64_t[]){cl[lv - 1]}, 0.1f);
        }
    }
    add(w, "out_block.0.weight", 4, (int64_t[]){12, cl[0], 1, 1}, 1.0f / sqrtf((float)cl[0]));
    add(w, "out_block.0.bias", 1, (int64_t[]){12}, 0.1f);
    if (extra) add(w, extra, 1, (int64_t[]){3}, 1.0f);
}

static void free_wfile(wfile *w)
{
    for (int i = 0; i < w->n; i++) free(w->data[i]);
}

static char tmpdir[256];

static cs_st_file *write_open(wfile *w, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    cs_st_file *f = NULL;
    if (cs_st_write(path, w->t, w->n, NULL, 0) || cs_st_open(path, &f)) {
        printf("FAIL: cannot write/open %s: %s\n", path, cs_last_error());
        failures++;
        f = NULL;
    }
    unlink(path);   /* the mapping stays valid */
    return f;
}

/* ---- tiled == untiled ---- */

static int same(const float *a, const float *b, size_t n, size_t *first)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, 4)) return *first = i, 0;
    return 1;
}

static void check_tiles(const char *what, const cs_stage_a *m, size_t N, size_t h, size_t w)
{
    size_t f = (size_t)cs_stage_a_factor(m), n_out = N * f * h * f * w * 3, cl = 4;
    float *z = malloc(N * h * w * cl * sizeof(float)), *ref = malloc(n_out * sizeof(float)),
          *y = malloc(n_out * sizeof(float));
    for (size_t i = 0; i < N * h * w * cl; i++) z[i] = 2.0f * check_urand();
    int rc = cs_stage_a_decode(m, z, N, h, w, CS_STAGE_A_SCALE, 0, 0, ref);
    CHECK(!rc, "%s: untiled decode: %s", what, cs_last_error());
    double rms = 0;
    int finite = 1;
    for (size_t i = 0; i < n_out; i++) rms += (double)ref[i] * ref[i], finite &= isfinite(ref[i]) != 0;
    rms = sqrt(rms / (double)n_out);
    CHECK(finite && rms > 1e-3 && rms < 1e3, "%s: untiled output not sane (rms %g)", what, rms);

    size_t halo = (size_t)cs_stage_a_halo(m);
    /* strips, columns, 2-D tiles (odd sizes, smaller and larger than the halo), 1-row strips */
    size_t tiles[][2] = {{5, 0}, {0, 7}, {6, 9}, {halo, halo + 3}, {h - 1, w - 2}, {1, 0}};
    for (size_t k = 0; k < sizeof tiles / sizeof *tiles; k++) {
        memset(y, 0xff, n_out * sizeof(float));   /* NaNs: an unwritten pixel cannot pass */
        rc = cs_stage_a_decode(m, z, N, h, w, CS_STAGE_A_SCALE, tiles[k][0], tiles[k][1], y);
        size_t at = 0;
        CHECK(!rc, "%s: tiled decode %zux%zu: %s", what, tiles[k][0], tiles[k][1], cs_last_error());
        CHECK(!rc && same(ref, y, n_out, &at), "%s: tiles %zux%zu differ from untiled at element %zu: %.9g vs %.9g",
              what, tiles[k][0], tiles[k][1], at, y[at], ref[at]);
    }

    /* planner: a budget one latent row short of the untiled need gives strips, decoded exactly */
    size_t th, tw, budget = cs_stage_a_decode_bytes(m, h - 1, w);
    cs_stage_a_plan_tiles(m, h, w, budget, &th, &tw);
    CHECK(th < h && tw == w, "%s: plan for %zu bytes: %zux%zu", what, budget, th, tw);
    rc = cs_stage_a_decode(m, z, N, h, w, CS_STAGE_A_SCALE, th, tw, y);
    size_t at = 0;
    CHECK(!rc && same(ref, y, n_out, &at), "%s: planned tiles %zux%zu differ at %zu", what, th, tw, at);

    /* the comparison can fail: a different scale changes the output */
    rc = cs_stage_a_decode(m, z, N, h, w, 0.5f, 0, 0, y);
    CHECK(!rc && !same(ref, y, n_out, &at), "%s: output does not depend on the scale", what);
    free(z);
    free(ref);
    free(y);
}

/* Planner arithmetic at a released-size latent (no decoding). */
static void check_planner(const char *what, const cs_stage_a *m)
{
    size_t H = 256, W = 200, halo = (size_t)cs_stage_a_halo(m), th, tw, mt = CS_STAGE_A_MIN_TILE;
    size_t full = cs_stage_a_decode_bytes(m, H, W);
    cs_stage_a_plan_tiles(m, H, W, 0, &th, &tw);
    CHECK(th == H && tw == W, "%s: no budget should mean untiled, got %zux%zu", what, th, tw);
    cs_stage_a_plan_tiles(m, H, W, full, &th, &tw);
    CHECK(th == H && tw == W, "%s: enough budget should mean untiled, got %zux%zu", what, th, tw);
    cs_stage_a_plan_tiles(m, H, W, full / 3, &th, &tw);
    CHECK(tw == W && th < H && th >= 1 && cs_stage_a_decode_bytes(m, th + 2 * halo, W) <= full / 3,
          "%s: a third of the memory: strips %zux%zu need %zu > %zu", what, th, tw,
          cs_stage_a_decode_bytes(m, th + 2 * halo, W), full / 3);
    size_t sq = cs_stage_a_decode_bytes(m, 40 + 2 * halo, 40 + 2 * halo);
    cs_stage_a_plan_tiles(m, H, W, sq, &th, &tw);
    CHECK(tw < W && th < H && th >= 1 && tw >= 1 &&
              cs_stage_a_decode_bytes(m, th + 2 * halo, tw + 2 * halo) <= sq,
          "%s: square tiles %zux%zu need %zu > %zu", what, th, tw,
          cs_stage_a_decode_bytes(m, th + 2 * halo, tw + 2 * halo), sq);
    cs_stage_a_plan_tiles(m, H, W, 1, &th, &tw);
    CHECK(th >= mt - 1 && tw >= mt - 1 && th <= mt && tw <= mt, "%s: impossible budget: %zux%zu, expected ~%zu",
          what, th, tw, mt);
    CHECK(cs_stage_a_decode_bytes(m, 2 * H, W) > cs_stage_a_decode_bytes(m, H, W), "%s: bytes not monotonic", what);
}

static void test_model(int L, int B, int64_t C, cs_dtype dt, size_t N, size_t h, size_t w, int halo_want)
{
    char what[96];
    snprintf(what, sizeof what, "levels %d, %d blocks, c_hidden %lld, %s", L, B, (long long)C, cs_dtype_name(dt));
    wfile wf;
    make_stage_a(&wf, L, B, C, dt, NULL);
    cs_st_file *f = write_open(&wf, "stage_a_rand.safetensors");
    cs_stage_a *m = NULL;
    int rc = f ? cs_stage_a_load(f, NULL, &m) : -1;
    CHECK(!rc, "%s: load: %s", what, cs_last_error());
    if (!rc) {
        const cs_stage_a_config *c = cs_stage_a_get_config(m);
        CHECK(c->levels == L && c->bottleneck_blocks == B && c->c_hidden == C && c->c_latent == 4 && c->has_encoder &&
                  c->codebook_size == 64,
              "%s: config read as levels %d, blocks %d, c_hidden %d", what, c->levels, c->bottleneck_blocks, c->c_hidden);
        CHECK(cs_stage_a_halo(m) == halo_want, "%s: halo %d, expected %d", what, cs_stage_a_halo(m), halo_want);
        CHECK(cs_stage_a_factor(m) == 2 << (L - 1), "%s: factor %d", what, cs_stage_a_factor(m));
        check_planner(what, m);
        for (int t = 1; t <= 2; t++) {
            cs_threads_set(t);
            check_tiles(what, m, N, h, w);
        }
    }
    cs_stage_a_free(m);
    cs_st_close(f);
    free_wfile(&wf);
}

/* ---- strict loading ---- */

static void test_validation(void)
{
    wfile wf;
    make_stage_a(&wf, 2, 2, 32, CS_F32, "up_blocks.9.surprise");
    for (int i = 0; i < wf.n; i++)
        if (!strcmp(wf.names[i], "up_blocks.2.channelwise.2.bias")) wf.t[i].shape[0] = 31;   /* wrong shape */
    for (int i = 0; i < wf.n; i++)
        if (!strcmp(wf.names[i], "out_block.0.bias")) {   /* drop it */
            free(wf.data[i]);
            memmove(&wf.t[i], &wf.t[i + 1], (size_t)(wf.n - i - 1) * sizeof wf.t[0]);
            memmove(&wf.data[i], &wf.data[i + 1], (size_t)(wf.n - i - 1) * sizeof wf.data[0]);
            memmove(&wf.names[i], &wf.names[i + 1], (size_t)(wf.n - i - 1) * sizeof wf.names[0]);
            for (int j = 0; j < wf.n - 1; j++) wf.t[j].name = wf.names[j];
            wf.n--;
            break;
        }
    cs_st_file *f = write_open(&wf, "stage_a_bad.safetensors");
    cs_stage_a *m = NULL;
    int rc = f ? cs_stage_a_load(f, NULL, &m) : 0;
    const char *e = cs_last_error();
    CHECK(rc == CS_EMODEL && !m, "broken file loaded (rc %d)", rc);
    CHECK(strstr(e, "stage_a_bad.safetensors") && strstr(e, "up_blocks.2.channelwise.2.bias") &&
              strstr(e, "missing out_block.0.bias") && strstr(e, "unexpected up_blocks.9.surprise"),
          "message does not name the file and all three problems: %s", e);
    cs_st_close(f);
    free_wfile(&wf);

    /* a "vae." prefix (ComfyUI) and diffusers' codebook name load */
    make_stage_a(&wf, 2, 1, 32, CS_F32, NULL);
    for (int i = 0; i < wf.n; i++) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "vae.%s",
                 strcmp(wf.names[i], "vquantizer.codebook.weight") ? wf.names[i] : "vquantizer.embedding.weight");
        memcpy(wf.names[i], tmp, sizeof tmp);
    }
    f = write_open(&wf, "stage_a_vae.safetensors");
    rc = f ? cs_stage_a_load(f, NULL, &m) : -1;
    CHECK(!rc && cs_stage_a_get_config(m)->codebook_size == 64, "vae.-prefixed diffusers names: %s", cs_last_error());
    if (!rc) {   /* quantised encode returns codebook rows / scale */
        float img[8 * 8 * 3], z[2 * 2 * 4], zq[2 * 2 * 4];
        int32_t idx[4];
        for (int i = 0; i < 8 * 8 * 3; i++) img[i] = 0.5f + 0.5f * check_urand();
        rc = cs_stage_a_encode(m, img, 1, 8, 8, CS_STAGE_A_SCALE, z, NULL);
        CHECK(!rc, "encode: %s", cs_last_error());
        rc = cs_stage_a_encode(m, img, 1, 8, 8, CS_STAGE_A_SCALE, zq, idx);
        CHECK(!rc, "quantised encode: %s", cs_last_error());
        const float *cb = NULL;
        for (int i = 0; i < wf.n; i++)
            if (strstr(wf.names[i], "vquantizer")) cb = wf.data[i];
        for (int p = 0; p < 4 && !rc && cb; p++) {
            CHECK(idx[p] >= 0 && idx[p] < 64, "index %d out of range", idx[p]);
            double best = INFINITY;   /* the chosen row is a nearest one */
            for (int k = 0; k < 64; k++) {
                double d = 0;
                for (int j = 0; j < 4; j++) d += pow(z[p * 4 + j] * CS_STAGE_A_SCALE - cb[k * 4 + j], 2);
                if (d < best) best = d;
            }
            double dq = 0;
            for (int j = 0; j < 4; j++) {
                dq += pow(z[p * 4 + j] * CS_STAGE_A_SCALE - cb[idx[p] * 4 + j], 2);
                CHECK(zq[p * 4 + j] == cb[idx[p] * 4 + j] / CS_STAGE_A_SCALE, "quantised value is not codebook/scale");
            }
            CHECK(dq <= best * (1 + 1e-5) + 1e-7, "pixel %d: row %d at distance %g, nearest is %g", p, idx[p], dq, best);
        }
        rc = cs_stage_a_encode(m, img, 1, 7, 8, CS_STAGE_A_SCALE, z, NULL);
        CHECK(rc == CS_EARG, "odd image height accepted");
    }
    cs_stage_a_free(m);
    cs_st_close(f);
    free_wfile(&wf);
}

int main(int argc, char **argv)
{
    check_seed(88172645463325252ull);
    (void)argc;
    /* Hundreds of small tiles alternate OpenMP regions and BLAS calls; with
     * libgomp's default spinning that crawls when make check shares the
     * cores with other jobs. Results do not depend on the wait policy. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);   /* falls through where that does not exist */
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s", t && *t ? t : "/tmp");
    cs_threads_set(2);
    test_validation();
    /* halo: 2 blocks + 1 = 3; 3 levels: ((1 -> 1) + 1 -> 2) + 2 = 4 */
    test_model(2, 2, 64, CS_F32, 2, 23, 19, 3);
    test_model(3, 2, 64, CS_BF16, 1, 14, 17, 4);
    if (failures) printf("%d check(s) failed\n", failures);
    else printf("stage A tiles: all checks passed\n");
    return check_exit();
}
