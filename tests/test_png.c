/* PNG writer tests: write and read back with libpng (pixels, size, tEXt and
 * iTXt chunks), cropping through the row stride, refusing to overwrite (and
 * --force), errors naming the path with no temporary file left behind,
 * next-free names, float -> uint8 (truncate / round half to even / clamp /
 * NaN, NCHW and NHWC), and the golden pipeline_tiny out.image -> out.image_u8
 * conversion (exact). Exit 0 pass, 1 fail; the golden part skips (77)
 * without ../shared (99 under CI). */
#include "check.h"
#include "error.h"
#include "pngout.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];

typedef struct {
    int w, h;
    uint8_t *rgb;
    int n_text;
    char key[8][80];
    char *val[8];
    int itxt[8];
} png_image_rb;

static void rb_free(png_image_rb *im)
{
    free(im->rgb);
    for (int i = 0; i < im->n_text; i++) free(im->val[i]);
    memset(im, 0, sizeof *im);
}

/* Reads an 8-bit RGB PNG with libpng; 0 on success. */
static int read_png(const char *path, png_image_rb *im)
{
    memset(im, 0, sizeof *im);
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        return -1;
    }
    png_init_io(png, fp);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    int ok = png_get_bit_depth(png, info) == 8 && png_get_color_type(png, info) == PNG_COLOR_TYPE_RGB;
    im->w = (int)png_get_image_width(png, info);
    im->h = (int)png_get_image_height(png, info);
    png_bytepp rows = png_get_rows(png, info);
    im->rgb = malloc((size_t)im->w * im->h * 3);
    for (int y = 0; y < im->h; y++) memcpy(im->rgb + (size_t)y * im->w * 3, rows[y], (size_t)im->w * 3);
    png_textp txt;
    int nt = 0;
    png_get_text(png, info, &txt, &nt);
    for (int i = 0; i < nt && i < 8; i++) {
        snprintf(im->key[i], sizeof im->key[i], "%s", txt[i].key);
        im->val[i] = strdup(txt[i].text);
        im->itxt[i] = txt[i].compression >= PNG_ITXT_COMPRESSION_NONE;
    }
    im->n_text = nt < 8 ? nt : 8;
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return ok ? 0 : -1;
}

static int leftovers(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void make_image(uint8_t *img, int w, int h, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                img[((size_t)y * w + x) * 3 + c] = (uint8_t)(x * 7 + y * 13 + c * 101 + seed);
}

static void test_write_read(void)
{
    enum { W = 37, H = 23 };
    static uint8_t img[W * H * 3], img2[W * H * 3];
    make_image(img, W, H, 0);
    make_image(img2, W, H, 50);
    char path[4200];
    snprintf(path, sizeof path, "%s/cascade_00001.png", dir);
    const char *params = "a cat in a hat\nNegative prompt: \nSteps: 20, Sampler: ddpm, "
                         "CFG scale: 4, Seed: 42, Size: 1024x1024";
    const char *utf8 = "ein B\xc3\xa4r \xf0\x9f\x90\xbb";
    cs_png_text text[] = {{"parameters", params}, {"Software", "cascade"}, {"prompt", utf8}};
    int rc = cs_png_write_rgb8(path, img, W, H, W * 3, text, 3, 0);
    CHECK(rc == 0, "write: %s", cs_last_error());
    png_image_rb im;
    CHECK(read_png(path, &im) == 0, "read back failed");
    CHECK(im.w == W && im.h == H, "size %dx%d", im.w, im.h);
    CHECK(im.rgb && !memcmp(im.rgb, img, sizeof img), "pixels differ after read-back");
    CHECK(im.n_text == 3, "%d text chunks", im.n_text);
    int found = 0;
    for (int i = 0; i < im.n_text; i++) {
        if (!strcmp(im.key[i], "parameters")) {
            found++;
            CHECK(!strcmp(im.val[i], params) && !im.itxt[i], "parameters chunk wrong");
        }
        if (!strcmp(im.key[i], "Software")) found++;
        if (!strcmp(im.key[i], "prompt")) {
            found++;
            CHECK(!strcmp(im.val[i], utf8) && im.itxt[i], "UTF-8 text must be an iTXt chunk");
        }
    }
    CHECK(found == 3, "text keys missing");
    rb_free(&im);
    struct stat st;
    stat(path, &st);
    CHECK((st.st_mode & 0777) == (0666 & ~(unsigned)umask(022)), "mode %o", st.st_mode & 0777);

    /* no overwrite without force: error names the path, file unchanged */
    rc = cs_png_write_rgb8(path, img2, W, H, W * 3, NULL, 0, 0);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), path) && strstr(cs_last_error(), "exists"),
          "overwrite refused? rc %d: %s", rc, cs_last_error());
    CHECK(read_png(path, &im) == 0 && !memcmp(im.rgb, img, sizeof img), "existing file changed");
    rb_free(&im);
    /* force replaces it */
    rc = cs_png_write_rgb8(path, img2, W, H, W * 3, NULL, 0, CS_PNG_FORCE);
    CHECK(rc == 0, "forced write: %s", cs_last_error());
    CHECK(read_png(path, &im) == 0 && !memcmp(im.rgb, img2, sizeof img2) && im.n_text == 0,
          "forced write did not replace the file");
    rb_free(&im);
    /* force never replaces what is not a regular file (a FIFO here), and leaves no temporary file */
    char fifo[4200];
    snprintf(fifo, sizeof fifo, "%s/fifo.png", dir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    rc = cs_png_write_rgb8(fifo, img2, W, H, W * 3, NULL, 0, CS_PNG_FORCE);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), fifo) && strstr(cs_last_error(), "not a regular file"),
          "FIFO replaced? rc %d: %s", rc, cs_last_error());
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    unlink(fifo);

    /* crop: 10x5 window at (4,3) through the stride */
    char crop[4200];
    snprintf(crop, sizeof crop, "%s/crop.png", dir);
    rc = cs_png_write_rgb8(crop, img + (3 * W + 4) * 3, 10, 5, W * 3, NULL, 0, 0);
    CHECK(rc == 0, "crop write: %s", cs_last_error());
    CHECK(read_png(crop, &im) == 0 && im.w == 10 && im.h == 5, "crop size");
    int bad = 0;
    for (int y = 0; y < 5 && im.rgb; y++)
        bad += memcmp(im.rgb + y * 30, img + ((3 + y) * W + 4) * 3, 30) != 0;
    CHECK(!bad, "crop pixels differ in %d rows", bad);
    rb_free(&im);
    CHECK(leftovers() == 0, "temporary files left in %s", dir);
}

static void test_errors(void)
{
    uint8_t px[12] = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/no/such/dir/out.png", dir);
    int rc = cs_png_write_rgb8(path, px, 2, 2, 6, NULL, 0, 0);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), path) && !strchr(cs_last_error(), '\n'),
          "missing folder: rc %d: %s", rc, cs_last_error());
    /* a regular file used as a folder */
    char file[4200];
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/plain/out.png", dir);
    rc = cs_png_write_rgb8(path, px, 2, 2, 6, NULL, 0, 0);
    CHECK(rc == CS_EIO && strstr(cs_last_error(), path), "ENOTDIR: rc %d: %s", rc, cs_last_error());
    unlink(file);
    /* unwritable folder (root ignores modes, so only as another user) */
    if (geteuid() != 0) {
        char ro[4200];
        snprintf(ro, sizeof ro, "%s/ro", dir);
        mkdir(ro, 0555);
        snprintf(path, sizeof path, "%s/ro/out.png", dir);
        rc = cs_png_write_rgb8(path, px, 2, 2, 6, NULL, 0, 0);
        CHECK(rc == CS_EIO && strstr(cs_last_error(), path), "read-only folder: rc %d: %s", rc,
              cs_last_error());
        rmdir(ro);
    }
    /* bad arguments create nothing */
    snprintf(path, sizeof path, "%s/bad.png", dir);
    char longkey[100];
    memset(longkey, 'k', 99);
    longkey[99] = 0;
    cs_png_text t1[] = {{longkey, "v"}};
    cs_png_text t2[] = {{"", "v"}};
    cs_png_text t3[] = {{"key", NULL}};
    cs_png_text t4[] = {{"k\xc3\xa4y", "v"}};
    CHECK(cs_png_write_rgb8(path, px, 2, 2, 6, t1, 1, 0) == CS_EARG, "80+ char key accepted");
    CHECK(cs_png_write_rgb8(path, px, 2, 2, 6, t2, 1, 0) == CS_EARG, "empty key accepted");
    CHECK(cs_png_write_rgb8(path, px, 2, 2, 6, t3, 1, 0) == CS_EARG, "NULL value accepted");
    CHECK(cs_png_write_rgb8(path, px, 2, 2, 6, t4, 1, 0) == CS_EARG, "non-ASCII key accepted");
    CHECK(cs_png_write_rgb8(path, px, 0, 2, 6, NULL, 0, 0) == CS_EARG, "width 0 accepted");
    CHECK(cs_png_write_rgb8(path, px, 2, 2, 5, NULL, 0, 0) == CS_EARG, "short stride accepted");
    CHECK(access(path, F_OK) != 0 && leftovers() == 0, "a failed write left files");
}

static void touch(const char *d, const char *name)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", d, name);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

static void test_names(void)
{
    char sub[4200], name[4300], want[4300];
    snprintf(sub, sizeof sub, "%s/names", dir);
    mkdir(sub, 0755);
    CHECK(cs_png_next_name(sub, "cascade", name, sizeof name) == 0, "%s", cs_last_error());
    snprintf(want, sizeof want, "%s/cascade_00001.png", sub);
    CHECK(!strcmp(name, want), "empty folder: %s", name);
    touch(sub, "cascade_00001.png");
    touch(sub, "cascade_00007.png");
    touch(sub, "cascade_x.png");
    touch(sub, "cascade_00050.png.tmp");
    touch(sub, "other_00099.png");
    touch(sub, "cascadeX_00200.png");
    CHECK(cs_png_next_name(sub, "cascade", name, sizeof name) == 0, "%s", cs_last_error());
    snprintf(want, sizeof want, "%s/cascade_00008.png", sub);
    CHECK(!strcmp(name, want), "next after 7: %s", name);
    uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    char got[4300];
    CHECK(cs_png_write_next(sub, "cascade", px, 2, 2, 6, NULL, 0, got, sizeof got) == 0, "%s",
          cs_last_error());
    CHECK(!strcmp(got, want), "write_next wrote %s", got);
    CHECK(cs_png_write_next(sub, "cascade", px, 2, 2, 6, NULL, 0, got, sizeof got) == 0 &&
          strstr(got, "cascade_00009.png"), "second write_next: %s", got);
    snprintf(want, sizeof want, "%s/missing", dir);
    CHECK(cs_png_next_name(want, "cascade", name, sizeof name) == CS_EIO &&
          strstr(cs_last_error(), want), "missing folder: %s", cs_last_error());
    CHECK(cs_png_next_name(sub, "a/b", name, sizeof name) == CS_EARG, "prefix with / accepted");
}

/* Several processes racing for the next name: every image must land in its
 * own file (a plain rename would let one writer replace another's file). */
static void test_race(void)
{
    enum { PROCS = 4, EACH = 12 };
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/race", dir);
    mkdir(sub, 0755);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            int bad = 0;
            for (int i = 0; i < EACH; i++) {
                uint8_t px[6] = {(uint8_t)p, (uint8_t)i, 7, 8, 9, 10};
                char got[4300];
                bad |= cs_png_write_next(sub, "cascade", px, 2, 1, 6, NULL, 0, got, sizeof got);
            }
            _exit(bad ? 1 : 0);
        }
    }
    int child_fail = 0;
    for (int p = 0; p < PROCS; p++) {
        int st = 0;
        waitpid(pids[p], &st, 0);
        child_fail |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    CHECK(!child_fail, "a racing writer failed");
    int seen[PROCS][EACH] = {{0}}, files = 0;
    for (int k = 1; k <= PROCS * EACH + 4; k++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/cascade_%05d.png", sub, k);
        png_image_rb im;
        if (read_png(path, &im) != 0) continue;
        files++;
        if (im.rgb[0] < PROCS && im.rgb[1] < EACH) seen[im.rgb[0]][im.rgb[1]]++;
        rb_free(&im);
    }
    int missing = 0;
    for (int p = 0; p < PROCS; p++)
        for (int i = 0; i < EACH; i++) missing += seen[p][i] != 1;
    CHECK(files == PROCS * EACH && !missing, "race: %d files, %d images lost or doubled", files,
          missing);
}

static void test_u8(void)
{
    /* 0.3f*255 = 76.5 exactly in float: truncate 76, round half to even 76;
     * 0.5 -> 127.5: 127 / 128; 0.1f -> 25.5: 25 / 26 */
    const float v[] = {-3.0f, 0.0f, 0.5f, 0.25f, 0.3f, 0.1f, 0.999f, 1.0f, 7.0f, NAN, -0.0f, 1e-9f};
    const uint8_t tr[] = {0, 0, 127, 63, 76, 25, 254, 255, 255, 0, 0, 0};
    const uint8_t rd[] = {0, 0, 128, 64, 76, 26, 255, 255, 255, 0, 0, 0};
    enum { K = sizeof v / sizeof *v };   /* 12 = 4 pixels */
    uint8_t out[K];
    CHECK(cs_image_to_u8_nhwc(v, 1, 1, K / 3, CS_U8_TRUNCATE, out) == 0, "u8");
    CHECK(!memcmp(out, tr, K), "truncate mismatch");
    cs_image_to_u8_nhwc(v, 1, 1, K / 3, CS_U8_ROUND, out);
    CHECK(!memcmp(out, rd, K), "round mismatch");
    CHECK(cs_image_to_u8_nhwc(v, 1, 1, K / 3, (cs_u8_mode)9, out) == CS_EARG, "bad mode accepted");

    /* NCHW [2,3,2,3] and the same image NHWC give the same bytes */
    enum { N = 2, H = 2, W = 3 };
    float nchw[N * 3 * H * W], nhwc[N * H * W * 3];
    for (int n = 0; n < N; n++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < H * W; p++) {
                float x = (float)(n * 37 + c * 11 + p * 5) / 80.0f - 0.1f;
                nchw[(n * 3 + c) * H * W + p] = x;
                nhwc[(n * H * W + p) * 3 + c] = x;
            }
    uint8_t a[sizeof nhwc / sizeof(float)], b[sizeof nhwc / sizeof(float)];
    cs_image_to_u8_nchw(nchw, N, H, W, CS_U8_TRUNCATE, a);
    cs_image_to_u8_nhwc(nhwc, N, H, W, CS_U8_TRUNCATE, b);
    CHECK(!memcmp(a, b, sizeof a), "NCHW and NHWC conversions differ");
}

static int test_golden_u8(void)
{
    const char *sd = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/pipeline_tiny.io.safetensors", sd ? sd : "../shared");
    cs_st_file *f;
    if (cs_st_open(path, &f)) return check_missing(cs_last_error());
    const cs_tensor *ti = cs_st_find(f, "out.image"), *tu = cs_st_find(f, "out.image_u8");
    CHECK(ti && tu && ti->ndim == 4 && tu->ndim == 4 && tu->dtype == CS_U8, "tensors missing");
    if (ti && tu) {
        size_t n = (size_t)ti->shape[0], h = (size_t)ti->shape[2], w = (size_t)ti->shape[3];
        float *img = cs_tensor_f32_dup(ti);
        uint8_t *u8 = malloc(n * h * w * 3);
        cs_image_to_u8_nchw(img, n, h, w, CS_U8_TRUNCATE, u8);
        const uint8_t *ref = tu->data;
        size_t diff = 0;
        for (size_t i = 0; i < n * h * w * 3; i++) diff += u8[i] != ref[i];
        printf("pipeline_tiny out.image -> u8: %zu of %zu bytes differ\n", diff, n * h * w * 3);
        CHECK(diff == 0, "u8 conversion of out.image differs from out.image_u8 in %zu bytes", diff);
        cs_free(img);
        free(u8);
    }
    cs_st_close(f);
    return 0;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cascade_png_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "ERROR: mkdtemp: %s\n", strerror(errno));
        return 99;
    }
    test_write_read();
    test_errors();
    test_names();
    test_race();
    test_u8();
    int g = test_golden_u8();
    char cmd[4200 + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    return g;
}
