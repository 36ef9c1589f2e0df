/* Cancellation and cleanup (src/cancel.h), on the demo networks:
 *  - with a stop requested, every long computation returns CS_EINTR from
 *    inside (CLIP, Stage C and Stage B U-Nets, Stage A decode, previewer,
 *    file hashing), and works again after cs_cancel_reset;
 *  - through the pipeline with no caller flag (hooks.cancel NULL), a stop
 *    requested as the text encoder or Stage A starts ends that very stage;
 *  - cs_cleanup_run removes the registered files, then the folders, and
 *    nothing that was unregistered;
 *  - past a file-size limit (SIGXFSZ ignored) the PNG and safetensors
 *    writers say "file size limit exceeded" and leave no file behind. */
#include "cancel.h"
#include "check.h"
#include "clip.h"
#include "demo.h"
#include "error.h"
#include "models.h"
#include "pipeline.h"
#include "previewer.h"
#include "safetensors.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static cs_demo_files demo;

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* entries of dir other than . and .. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

static int eintr(int rc)
{
    return rc == CS_EINTR && !strcmp(cs_last_error(), "interrupted");
}

static void test_networks(void)
{
    cs_clip *clip = NULL;
    cs_st_file *fc = NULL, *fb = NULL;
    cs_stage_c *sc = NULL;
    cs_stage_b *sb = NULL;
    cs_stage_a *sa = NULL;
    cs_previewer *pv = NULL;
    int rc = cs_clip_open(demo.text_encoder, &clip);
    rc = rc ? rc : cs_st_open(demo.stage_c, &fc);
    rc = rc ? rc : cs_stage_c_load(fc, &sc);
    rc = rc ? rc : cs_st_open(demo.stage_b, &fb);
    rc = rc ? rc : cs_stage_b_load(fb, &sb);
    rc = rc ? rc : cs_stage_a_open(demo.stage_a, &sa);
    rc = rc ? rc : cs_previewer_open(demo.previewer, &pv);
    CHECK(rc == 0, "loading the demo networks: %s", cs_last_error());
    if (rc)
        goto out;
    const cs_clip_config *cc = cs_clip_get_config(clip);
    const size_t L = 77, Ct = (size_t)cc->width, Cp = (size_t)cc->proj, hc = 3, wc = 3, hb = 16, wb = 16;
    int32_t ids[77], mask[77];
    for (size_t i = 0; i < L; i++)
        ids[i] = i ? 49407 : 49406, mask[i] = i < 2;
    float *hid = calloc(L * Ct, 4), *pool = calloc(Cp, 4), *xc = calloc(hc * wc * 16, 4);
    float *ec = calloc(hc * wc * 16, 4), *xb = calloc(hb * wb * 4, 4), *eb = calloc(hb * wb * 4, 4);
    float *img = calloc(4 * hb * 4 * wb * 3, 4), *prev = calloc(8 * hc * 8 * wc * 3, 4), r = 0.5f;
    cs_clip_out co = {hid, NULL, pool, NULL};

    cs_cancel_request(SIGINT);
    CHECK(cs_cancel_pending() == SIGINT, "pending: %d", cs_cancel_pending());
    cs_cancel_request(SIGTERM);
    CHECK(cs_cancel_pending() == SIGINT, "the first reason is kept: %d", cs_cancel_pending());
    rc = cs_clip_forward(clip, ids, mask, 1, L, &co);
    CHECK(eintr(rc), "CLIP: rc %d: %s", rc, cs_last_error());
    rc = cs_stage_c_forward(sc, xc, 1, hc, wc, &r, hid, L, pool, NULL, 1, NULL, NULL, ec);
    CHECK(eintr(rc), "Stage C: rc %d: %s", rc, cs_last_error());
    rc = cs_stage_b_forward(sb, xb, 1, hb, wb, &r, ec, hc, wc, pool, NULL, 0, 0, NULL, eb);
    CHECK(eintr(rc), "Stage B: rc %d: %s", rc, cs_last_error());
    rc = cs_stage_a_decode(sa, xb, 1, hb, wb, CS_STAGE_A_SCALE, 0, 0, img);
    CHECK(eintr(rc), "Stage A: rc %d: %s", rc, cs_last_error());
    rc = cs_stage_a_decode(sa, xb, 1, hb, wb, CS_STAGE_A_SCALE, 4, 4, img);
    CHECK(eintr(rc), "Stage A tiled: rc %d: %s", rc, cs_last_error());
    rc = cs_previewer_forward(pv, xc, 1, hc, wc, prev);
    CHECK(eintr(rc), "previewer: rc %d: %s", rc, cs_last_error());
    uint64_t h;
    int cached;
    rc = cs_file_xxh64(demo.stage_b, &h, &cached);
    CHECK(eintr(rc), "hashing: rc %d: %s", rc, cs_last_error());

    cs_cancel_reset();
    CHECK(cs_cancel_pending() == 0, "reset");
    CHECK(cs_clip_forward(clip, ids, mask, 1, L, &co) == 0, "CLIP after reset: %s", cs_last_error());
    CHECK(cs_stage_c_forward(sc, xc, 1, hc, wc, &r, hid, L, pool, NULL, 1, NULL, NULL, ec) == 0,
          "Stage C after reset: %s", cs_last_error());
    CHECK(cs_stage_b_forward(sb, xb, 1, hb, wb, &r, ec, hc, wc, pool, NULL, 0, 0, NULL, eb) == 0,
          "Stage B after reset: %s", cs_last_error());
    CHECK(cs_stage_a_decode(sa, xb, 1, hb, wb, CS_STAGE_A_SCALE, 4, 4, img) == 0, "Stage A after reset: %s",
          cs_last_error());
    CHECK(cs_previewer_forward(pv, xc, 1, hc, wc, prev) == 0, "previewer after reset: %s", cs_last_error());
    CHECK(cs_file_xxh64(demo.stage_b, &h, &cached) == 0, "hashing after reset: %s", cs_last_error());
    free(hid), free(pool), free(xc), free(ec), free(xb), free(eb), free(img), free(prev);
out:
    cs_previewer_free(pv);
    cs_stage_a_free(sa);
    cs_stage_b_free(sb);
    cs_stage_c_free(sc);
    cs_clip_free(clip);
    cs_st_close(fb);
    cs_st_close(fc);
}

/* ---- through the pipeline, with only the process-wide flag ---- */

typedef struct {
    cs_stage_id at;      /* request the stop when this stage reports step 0 */
    int done[CS_STAGE_COUNT];   /* stages that reported their last step */
} stop_at;

static void progress(void *ctx, cs_stage_id st, int step, int steps, double t)
{
    stop_at *s = ctx;
    if (st == s->at && step == 0)
        cs_cancel_request(SIGTERM);
    if (step == steps)
        s->done[st] = 1;
}

static void test_pipeline_stages(void)
{
    cs_model_paths mp = {.text_encoder = demo.text_encoder, .stage_c = demo.stage_c, .stage_b = demo.stage_b,
                         .stage_a = demo.stage_a};
    cs_gen_params g;
    cs_gen_defaults(&g);
    g.width = 96, g.height = 128, g.c.steps = 2, g.b.steps = 2;
    static const cs_stage_id at[] = {CS_STAGE_TEXT, CS_STAGE_C, CS_STAGE_B, CS_STAGE_A};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        cs_pipeline *p;
        uint8_t *rgb = NULL;
        stop_at s = {at[i], {0}};
        cs_pipeline_hooks hk = {progress, NULL, &s, NULL, NULL};
        int rc = cs_pipeline_new(&mp, 0, &p);
        rc = rc ? rc : cs_pipeline_generate(p, &g, &hk, &rgb);
        CHECK(rc == CS_EINTR && !rgb, "stop at %s: rc %d (%s)", cs_stage_name(at[i]), rc, cs_last_error());
        CHECK(!s.done[at[i]], "stop at %s: the stage ran to its end", cs_stage_name(at[i]));
        cs_pipeline_free(p);
        free(rgb);
        cs_cancel_reset();
    }
}

/* ---- the cleanup list ---- */

static void test_cleanup(const char *base)
{
    char dir[4200], a[4300], b[4300], keep[4300];
    snprintf(dir, sizeof dir, "%s/cleanup", base);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(keep, sizeof keep, "%s/keep", base);
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    int hd = cs_cleanup_add(dir, 1), ha = cs_cleanup_add(a, 0), hb = cs_cleanup_add(b, 0);
    int hk = cs_cleanup_add(keep, 0);
    CHECK(hd > 0 && ha > 0 && hb > 0 && hk > 0 && hd != ha, "handles %d %d %d %d", hd, ha, hb, hk);
    FILE *f;
    const char *files[] = {a, keep};
    for (int i = 0; i < 2; i++)
        if ((f = fopen(files[i], "w")))
            fclose(f);
    cs_cleanup_del(hk);   /* final now: must stay */
    /* b was registered but never created: no harm */
    cs_cleanup_run();
    CHECK(!exists(a) && !exists(dir), "registered file and folder removed (file first)");
    CHECK(exists(keep), "an unregistered path stays");
    unlink(keep);
    cs_cleanup_del(hd), cs_cleanup_del(ha), cs_cleanup_del(hb);
    cs_cleanup_del(0);   /* ignored */
}

/* ---- file size limit ---- */

static void test_file_size_limit(const char *base)
{
    char dir[4200], png[4300], st[4300];
    snprintf(dir, sizeof dir, "%s/fsize", base);
    snprintf(png, sizeof png, "%s/big.png", dir);
    snprintf(st, sizeof st, "%s/big.safetensors", dir);
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur)
        lim.rlim_cur = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);   /* as the CLI does */
    if (setrlimit(RLIMIT_FSIZE, &lim)) {
        printf("note: cannot set RLIMIT_FSIZE: size-limit checks skipped\n");
        return;
    }
    /* noise does not compress: 256x256 RGB is ~196 KB */
    size_t n = 256 * 256 * 3;
    uint8_t *rgb = malloc(n);
    uint32_t s = 1;
    for (size_t i = 0; i < n; i++)
        s = s * 1664525u + 1013904223u, rgb[i] = (uint8_t)(s >> 24);
    int rc = cs_png_write_rgb8(png, rgb, 256, 256, 256 * 3, NULL, 0, 0);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), "file size limit exceeded") && strstr(cs_last_error(), png),
          "PNG past the limit: rc %d: %s", rc, cs_last_error());
    cs_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = CS_F32;
    t.ndim = 1;
    t.shape[0] = (int64_t)(n / 4);
    t.data = rgb;
    t.name = "x";
    rc = cs_st_write(st, &t, 1, NULL, 0);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), "file size limit exceeded") && strstr(cs_last_error(), st),
          "safetensors past the limit: rc %d: %s", rc, cs_last_error());
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(entries(dir) == 0, "nothing left in %s (%d entries)", dir, entries(dir));
    free(rgb);
    rmdir(dir);
}

int main(void)
{
    int rc = cs_demo_create(&demo);
    if (rc) {
        fprintf(stderr, "demo networks: %s\n", cs_last_error());
        return 99;
    }
    char cache[4200], path[4300];
    snprintf(cache, sizeof cache, "%s/cache", demo.dir);
    setenv("XDG_CACHE_HOME", cache, 1);   /* the hash cache stays in the demo folder */
    test_networks();
    snprintf(path, sizeof path, "%s/cascade/hashes", cache);
    unlink(path);
    snprintf(path, sizeof path, "%s/cascade", cache);
    rmdir(path);
    rmdir(cache);
    test_pipeline_stages();
    test_cleanup(demo.dir);
    test_file_size_limit(demo.dir);
    cs_demo_remove(&demo);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("ok\n");
    return check_exit();
}
