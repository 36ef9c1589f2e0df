/* LoRA formats against weights merged independently (tests/ref/make_lora_cases.py,
 * numpy float64): for each tests/data/lora/<case>.expected.safetensors, the
 * tiny Stage C of the shared golden set is run
 *   A: loaded with the case's LoRAs (cs_stage_c_load_lora, in list order),
 *   B: loaded from a checkpoint = the base with the expected merged tensors,
 *   O: the base alone,
 * on the same random inputs. A must equal B within TOL (float32 rounding of
 * the merge: measured ~1e-7), and B must differ from O by more than MOVED
 * (so a LoRA that silently did nothing fails). Also: unmatched keys are an
 * error listing them and their count (a note with the lenient flag), and a
 * file without LoRA keys is refused.
 * Exit 77 = skip (shared data missing; 99 under CI). */
#include "check.h"
#include "error.h"
#include "lora.h"
#include "ops.h"
#include "stage_c.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-5     /* rel_l2 of A against B */
#define MOVED 1e-3   /* rel_l2 of B against O, at least */

static char base_path[4200], data[4200];

enum { H = 8, W = 8, LT = 8 };
static float x[H * W * 16], txt[LT * 80], pooled[72], r[1] = {0.6f};

static void inputs(void)
{
    uint32_t s = 12345;
    float *v[] = {x, txt, pooled};
    size_t n[] = {sizeof x / 4, sizeof txt / 4, sizeof pooled / 4};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < n[k]; i++) {
            s = s * 1664525u + 1013904223u;
            v[k][i] = (float)((s >> 8) / 16777216.0 * 2.0 - 1.0);
        }
}

/* eps of m on the inputs into y[H*W*16]; 0 or a CS_E* code */
static int run(cs_stage_c *m, float *y)
{
    return cs_stage_c_forward(m, x, 1, H, W, r, txt, LT, pooled, NULL, 1, NULL, NULL, y);
}

/* the base checkpoint with the expected tensors in place of its own, written to path */
static int write_merged(cs_st_file *base, cs_st_file *exp, const char *path)
{
    int n = cs_st_count(base), nm = cs_st_meta_count(base);
    cs_tensor *ts = calloc((size_t)n, sizeof *ts);
    const char **meta = calloc((size_t)(2 * nm + 1), sizeof *meta);
    for (int i = 0; i < n; i++) {
        const cs_tensor *t = cs_st_at(base, i), *e = cs_st_find(exp, t->name);
        ts[i] = e ? *e : *t;
    }
    for (int i = 0; i < nm; i++) cs_st_meta_at(base, i, &meta[2 * i], &meta[2 * i + 1]);
    int rc = cs_st_write(path, ts, n, meta, nm);
    free(ts);
    free(meta);
    return rc;
}

static void test_case(const char *name, cs_st_file *base, const float *y_base)
{
    char p[4400], tmp[4400];
    snprintf(p, sizeof p, "%s/%s.expected.safetensors", data, name);
    cs_st_file *exp = NULL, *merged = NULL;
    CHECK(!cs_st_open(p, &exp), "%s", cs_last_error());
    if (!exp) return;
    /* the list from the expectation's metadata, files beside it */
    json_t *root = json_loads(cs_st_meta(exp, "lora") ? cs_st_meta(exp, "lora") : "", 0, NULL);
    cs_lora_list lo = {0};
    cs_lora v[8];
    char paths[8][4400];
    for (size_t i = 0; i < json_array_size(root) && i < 8; i++) {
        json_t *e = json_array_get(root, i);
        snprintf(paths[i], sizeof paths[i], "%s/%s", data, json_string_value(json_object_get(e, "file")));
        v[i] = (cs_lora){paths[i], (float)json_number_value(json_object_get(e, "strength")), 0};
        lo.n++;
    }
    lo.v = v;
    CHECK(lo.n > 0, "%s: no lora list in %s", name, p);
    snprintf(tmp, sizeof tmp, "%s/cs_test_lora_%d.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    cs_stage_c *a = NULL, *b = NULL;
    int rc = cs_stage_c_load_lora(base, NULL, &lo, &a);
    CHECK(!rc, "%s: load with LoRA: %s", name, cs_last_error());
    rc = write_merged(base, exp, tmp);
    CHECK(!rc, "%s: write %s: %s", name, tmp, cs_last_error());
    if (!rc) {
        CHECK(!cs_st_open(tmp, &merged), "%s", cs_last_error());
        unlink(tmp);
    }
    if (merged) CHECK(!cs_stage_c_load(merged, &b), "%s: merged checkpoint: %s", name, cs_last_error());
    static float ya[H * W * 16], yb[H * W * 16];
    if (a && b) {
        CHECK(!run(a, ya) && !run(b, yb), "%s: forward: %s", name, cs_last_error());
        double e = check_rel_l2(ya, yb, H * W * 16), moved = check_rel_l2(yb, y_base, H * W * 16);
        printf("%-11s LoRA vs merged rel_l2 %.2e (limit %.0e); merged vs base %.3f\n", name, e, TOL, moved);
        CHECK(e <= TOL, "%s: LoRA output differs from the merged weights' by rel_l2 %.3e > %.0e", name, e, TOL);
        CHECK(moved >= MOVED, "%s: the merged weights change the output by only %.2e", name, moved);
        int changed = 0;
        for (int i = 0; i < lo.n; i++) changed += v[i].changed;
        CHECK(changed > 0, "%s: no module changed", name);
    }
    cs_stage_c_free(a);
    cs_stage_c_free(b);
    cs_st_close(merged);
    cs_st_close(exp);
    json_decref(root);
}

static void collect(void *ctx, const char *msg)
{
    char *buf = ctx;
    snprintf(buf + strlen(buf), 4096 - strlen(buf), "%s\n", msg);
}

static void test_errors(cs_st_file *base)
{
    char p[4400], notes[4096] = "";
    snprintf(p, sizeof p, "%s/unmatched.safetensors", data);
    cs_lora v = {p, 1.0f, 0};
    cs_lora_list lo = {.n = 1, .v = &v, .lenient = 0, .note = collect, .ctx = notes};
    cs_stage_c *m = NULL;
    int rc = cs_stage_c_load_lora(base, NULL, &lo, &m);
    const char *e = cs_last_error();
    CHECK(rc == CS_EMODEL && strstr(e, "unmatched.safetensors: 24 LoRA keys match no Stage C weight: ") &&
              strstr(e, "lora_unet_no_such_block_00.lora_down.weight") && strstr(e, "no_such_block_04.lora_up") &&
              !strstr(e, "no_such_block_05") && strstr(e, ", ..."),
          "unmatched keys: rc %d, %s", rc, e);
    CHECK(!m, "a model came back with the error");
    cs_stage_c_free(m);
    lo.lenient = 1;
    rc = cs_stage_c_load_lora(base, NULL, &lo, &m);
    CHECK(!rc && v.changed == 1 && strstr(notes, "24 keys match no Stage C weight and were ignored"),
          "lenient: rc %d (%s), changed %d, notes: %s", rc, rc ? cs_last_error() : "", v.changed, notes);
    cs_stage_c_free(m);
    m = NULL;
    /* the base checkpoint is no LoRA */
    v.path = base_path;
    rc = cs_stage_c_load_lora(base, NULL, &lo, &m);
    CHECK(rc == CS_EFORMAT && strstr(cs_last_error(), "not a LoRA file"), "checkpoint as LoRA: %s", cs_last_error());
    cs_stage_c_free(m);
    /* a missing file names itself */
    m = NULL;
    v.path = "/nonexistent/x.safetensors";
    rc = cs_stage_c_load_lora(base, NULL, &lo, &m);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), "/nonexistent/x.safetensors"), "missing file: %s", cs_last_error());
    cs_stage_c_free(m);
}

int main(void)
{
    const char *sd = getenv("SHARED_DIR"), *top = getenv("TOP_SRCDIR");
    snprintf(base_path, sizeof base_path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    snprintf(data, sizeof data, "%s/tests/data/lora", top ? top : ".");
    struct stat st;
    if (stat(base_path, &st) != 0) {
        if (check_under_ci()) {
            printf("ERROR: %s missing (CI needs ../shared beside the checkout)\n", base_path);
            return 99;
        }
        printf("SKIP: %s not found\n", base_path);
        return 77;
    }
    inputs();
    cs_st_file *base = NULL;
    cs_stage_c *o = NULL;
    static float y0[H * W * 16];
    if (cs_st_open(base_path, &base) || cs_stage_c_load(base, &o) || run(o, y0)) {
        fprintf(stderr, "FAIL: base Stage C: %s\n", cs_last_error());
        return 1;
    }
    static const char *const cases[] = {"peft", "onetrainer", "dotted", "diff", "locon", "stack"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_case(cases[i], base, y0);
    test_errors(base);
    cs_stage_c_free(o);
    cs_st_close(base);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("test_lora: all checks passed\n");
    return check_exit();
}
