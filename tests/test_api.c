/* The public API (cascade.h only; linked against libcascade.so):
 * - the parameter table: defaults, ranges, wrong types, unknown keys, and
 *   every _free(NULL) a no-op;
 * - generate with the demo networks: the image count and size, the same
 *   bytes twice, the PNG writer;
 * - two contexts in two threads at once (different seeds and thread
 *   counts) give the same bytes as each one alone;
 * - cancelling: a progress callback returning non-zero, cascade_cancel from
 *   another thread and from a signal handler: CASCADE_E_INTR, no images,
 *   and the context works again afterwards;
 * - tokenize and encode-text on the demo text encoder. */
#include "check.h"
#include "cascade.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* a demo context with few steps (the demo networks are tiny: about a second) */
static cascade_ctx *demo_ctx(long long seed, int threads)
{
    cascade_ctx *c = cascade_ctx_new();
    if (!c || cascade_use_demo(c) || cascade_set_int(c, CASCADE_P_SEED, seed) ||
        cascade_set_int(c, CASCADE_P_STEPS_C, 3) || cascade_set_int(c, CASCADE_P_STEPS_B, 2) ||
        cascade_set_int(c, CASCADE_P_THREADS, threads) || cascade_set_string(c, CASCADE_P_DEVICE, "cpu")) {
        fprintf(stderr, "demo context: %s\n", cascade_errmsg(c));
        exit(99);
    }
    return c;
}

/* the batch's bytes, malloc'd (NULL on failure, message printed) */
static unsigned char *run(cascade_ctx *c, const char *prompt, size_t *len, int *rc_out)
{
    cascade_images *im = NULL;
    int rc = cascade_generate(c, prompt, "blurry", &im);
    if (rc_out) *rc_out = rc;
    if (rc) {
        if (!rc_out) fprintf(stderr, "generate: %s\n", cascade_errmsg(c));
        return NULL;
    }
    const cascade_image *img = cascade_images_get(im, 0);
    size_t one = cascade_image_stride(img) * (size_t)cascade_image_height(img);
    *len = one * (size_t)cascade_images_count(im);
    unsigned char *b = malloc(*len);
    for (int i = 0; i < cascade_images_count(im); i++)
        memcpy(b + one * (size_t)i, cascade_image_data(cascade_images_get(im, i)), one);
    cascade_images_free(im);
    return b;
}

static void test_params(void)
{
    cascade_ctx *c = cascade_ctx_new();
    long long v;
    double f;
    const char *s;
    CHECK(cascade_get_int(c, CASCADE_P_WIDTH, &v) == 0 && v == 1024, "width default %lld", v);
    CHECK(cascade_get_int(c, CASCADE_P_STEPS_C, &v) == 0 && v == 20, "steps_c default %lld", v);
    CHECK(cascade_get_float(c, CASCADE_P_CFG_B, &f) == 0 && f == 1.1, "cfg_b default %g", f);
    CHECK(cascade_get_string(c, CASCADE_P_DEVICE, &s) == 0 && !strcmp(s, "auto"), "device default %s", s);
    CHECK(cascade_set_int(c, CASCADE_P_WIDTH, 1020) == CASCADE_E_ARG && strstr(cascade_errmsg(c), "multiple of 8"),
          "width 1020: %s", cascade_errmsg(c));
    CHECK(cascade_set_int(c, CASCADE_P_WIDTH, 8200) == CASCADE_E_ARG, "width 8200 accepted");
    CHECK(cascade_get_int(c, CASCADE_P_WIDTH, &v) == 0 && v == 1024, "a refused value changed width to %lld", v);
    CHECK(cascade_set_int(c, CASCADE_P_SEED, -1) == CASCADE_E_ARG, "seed -1 accepted");
    CHECK(cascade_set_float(c, CASCADE_P_SHIFT_C, 0) == CASCADE_E_ARG, "shift 0 accepted");
    CHECK(cascade_set_float(c, CASCADE_P_CFG_RHO, 1.5) == CASCADE_E_ARG, "cfg_rho 1.5 accepted");
    CHECK(cascade_set_float(c, CASCADE_P_CFG_C, 1.0 / 0.0) == CASCADE_E_ARG, "cfg inf accepted");
    CHECK(cascade_set_float(c, CASCADE_P_WIDTH, 512) == CASCADE_E_ARG && strstr(cascade_errmsg(c), "is an int"),
          "width as float: %s", cascade_errmsg(c));
    CHECK(cascade_set_int(c, (cascade_param)999, 1) == CASCADE_E_ARG, "unknown key accepted");
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "tpu") == CASCADE_E_ARG, "device tpu accepted");
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cuda:1") == 0, "device cuda:1 refused: %s", cascade_errmsg(c));
    CHECK(cascade_set_string(c, CASCADE_P_VARIANT_C, "lite-bf16") == 0, "variant refused");
    CHECK(cascade_set_int(c, CASCADE_P_HEIGHT, 768) == 0 && cascade_get_int(c, CASCADE_P_HEIGHT, &v) == 0 && v == 768,
          "height 768");
    for (int k = 0; k < CASCADE_P_COUNT; k++) {
        const char *n = cascade_param_name((cascade_param)k);
        CHECK(n && cascade_param_find(n) == k, "key %d: name %s", k, n ? n : "(null)");
        double lo, hi, d;
        int open;
        if (cascade_param_type((cascade_param)k) != CASCADE_T_STRING)
            CHECK(cascade_param_range((cascade_param)k, &lo, &hi, &open, &d) == 0 && lo <= d && d <= hi,
                  "key %s: default %g outside %g..%g", n, d, lo, hi);
    }
    CHECK(cascade_param_find("nope") == CASCADE_E_ARG, "unknown name found");
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, NULL) == 0 && cascade_get_string(c, CASCADE_P_DEVICE, &s) == 0 &&
          !strcmp(s, "auto"), "device back to its default");
    cascade_set_string(c, CASCADE_P_DEVICE, "cpu");
    cascade_images *im = (cascade_images *)1;
    CHECK(cascade_generate(c, "x", NULL, &im) < 0 && im == NULL && strstr(cascade_errmsg(c), "no Stage C"),
          "generate without models: %s", cascade_errmsg(c));
    /* NULL everywhere: no crash */
    cascade_ctx_free(NULL);
    cascade_images_free(NULL);
    cascade_models_free(NULL);
    cascade_free(NULL);
    cascade_cancel(NULL);
    CHECK(cascade_images_count(NULL) == 0 && cascade_images_get(NULL, 0) == NULL, "NULL images");
    CHECK(cascade_set_int(NULL, CASCADE_P_WIDTH, 8) == CASCADE_E_ARG, "NULL ctx");
    cascade_ctx_free(c);
}

typedef struct {
    long long seed;
    int threads;
    const char *prompt;
    unsigned char *out;
    size_t len;
} job;

static void *job_run(void *p)
{
    job *j = p;
    cascade_ctx *c = demo_ctx(j->seed, j->threads);
    j->out = run(c, j->prompt, &j->len, NULL);
    cascade_ctx_free(c);
    return NULL;
}

static void test_concurrent(void)
{
    job alone[2] = {{7, 1, "a lighthouse at dawn", NULL, 0}, {8, 2, "a red cat", NULL, 0}};
    job both[2] = {alone[0], alone[1]};
    for (int i = 0; i < 2; i++) job_run(&alone[i]);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, job_run, &both[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(alone[i].out && both[i].out && alone[i].len == both[i].len &&
              !memcmp(alone[i].out, both[i].out, alone[i].len), "context %d: concurrent run differs from alone", i);
        free(alone[i].out);
        free(both[i].out);
    }
}

static int stop_at_c2(void *u, cascade_stage st, int step, int steps, double el)
{
    (void)u, (void)steps, (void)el;
    return st == CASCADE_STAGE_C && step == 2;
}

static cascade_ctx *sig_ctx;
static void on_usr1(int s) { (void)s; cascade_cancel(sig_ctx); }
static int raise_at_c1(void *u, cascade_stage st, int step, int steps, double el)
{
    (void)u, (void)steps, (void)el;
    if (st == CASCADE_STAGE_C && step == 1) raise(SIGUSR1);
    return 0;
}

static void *cancel_later(void *p)
{
    usleep(20000);
    cascade_cancel(p);
    return NULL;
}

static int slow(void *u, cascade_stage st, int step, int steps, double el)
{
    (void)u, (void)st, (void)step, (void)steps, (void)el;
    usleep(5000);
    return 0;
}

static void test_cancel(void)
{
    cascade_ctx *c = demo_ctx(3, 1);
    size_t len, len2;
    int rc;
    unsigned char *ref = run(c, "x", &len, NULL);
    cascade_set_progress(c, stop_at_c2, NULL);
    CHECK(!run(c, "x", &len2, &rc) && rc == CASCADE_E_INTR, "progress cancel: rc %d", rc);
    sig_ctx = c;
    signal(SIGUSR1, on_usr1);
    cascade_set_progress(c, raise_at_c1, NULL);
    CHECK(!run(c, "x", &len2, &rc) && rc == CASCADE_E_INTR, "signal cancel: rc %d", rc);
    cascade_set_progress(c, slow, NULL);
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, c);
    CHECK(!run(c, "x", &len2, &rc) && rc == CASCADE_E_INTR, "cancel from a thread: rc %d", rc);
    pthread_join(t, NULL);
    cascade_set_progress(c, NULL, NULL);
    unsigned char *again = run(c, "x", &len2, NULL);   /* the request does not outlive the run */
    CHECK(ref && again && len == len2 && !memcmp(ref, again, len), "after cancels: another image");
    free(ref);
    free(again);
    cascade_ctx_free(c);
}

static void test_text_and_png(const char *dir)
{
    cascade_ctx *c = demo_ctx(1, 1);
    int ids[80];
    int n = cascade_tokenize(c, "ab", ids, 80);
    CHECK(n == 4 && ids[0] == 49406 && ids[n - 1] == 49407, "tokenize: %d ids", n);   /* byte level: a, b */
    CHECK(cascade_tokenize(c, "abc", ids, 2) == 5, "tokenize with little room");
    float *h = NULL, *p = NULL;
    int L = 0, w = 0, pw = 0;
    CHECK(cascade_encode_text(c, "a cat", &h, &L, &w, &p, &pw) == 0 && h && p && L == 77 && w > 0 && pw > 0,
          "encode: %s", cascade_errmsg(c));
    cascade_free(h);
    cascade_free(p);
    cascade_images *im = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/api.png", dir);
    CHECK(cascade_generate(c, "a cat", NULL, &im) == 0 && cascade_images_count(im) == 1, "generate: %s",
          cascade_errmsg(c));
    const cascade_image *img = cascade_images_get(im, 0);
    CHECK(cascade_image_width(img) == 256 && cascade_image_height(img) == 256 && cascade_image_channels(img) == 3,
          "image %dx%d", cascade_image_width(img), cascade_image_height(img));
    CHECK(cascade_image_write_png(c, img, path, 0) == 0, "png: %s", cascade_errmsg(c));
    CHECK(cascade_image_write_png(c, img, path, 0) == CASCADE_E_IO && strstr(cascade_errmsg(c), "exists"),
          "png over an existing file: %s", cascade_errmsg(c));
    CHECK(cascade_image_write_png(c, img, path, CASCADE_PNG_FORCE) == 0, "png --force: %s", cascade_errmsg(c));
    FILE *f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    CHECK(f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "not a PNG");
    if (f) fclose(f);
    unlink(path);
    cascade_images_free(im);
    cascade_ctx_free(c);
}

int main(void)
{
    char dir[] = "/tmp/cascade-api-XXXXXX";
    if (!mkdtemp(dir)) return 99;
    test_params();
    test_concurrent();
    test_cancel();
    test_text_and_png(dir);
    rmdir(dir);
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
