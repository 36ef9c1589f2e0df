/* Input images (src/image_in.c): PNGs of every kind and JPEGs (grey, RGB,
 * EXIF orientation little- and big-endian) written here with libpng and
 * libjpeg, read back and compared; then the refusals: truncated PNG and
 * JPEG, CMYK JPEG, 0 pixels, over the size limit, other formats, an empty
 * file, a folder -- each one error naming the file. */
#include "check.h"
#include "error.h"
#include "image_in.h"

#include <stdio.h>   /* before jpeglib.h */

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* ---- writers ---- */

/* rows: h rows of rowbytes each, in the PNG's own sample layout */
static void write_png(const char *name, int w, int h, int depth, int ctype, const unsigned char *data, size_t rowbytes,
                      int interlace, const png_color *pal, int npal, const unsigned char *trns, int ntrns)
{
    FILE *f = fopen(path_of(name), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        printf("FAIL: writing %s\n", name);
        exit(99);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    if (depth == 16) png_set_swap(png);   /* our sample arrays are host (little-endian) uint16 */
    if (interlace) png_set_interlace_handling(png);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)data + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

/* when set, write_jpeg writes this APP1 payload instead of its own EXIF */
static const unsigned char *app1_raw;
static size_t app1_len;

/* 4 quadrants: TL red, TR blue, BL green, BR white; exif: orientation or 0 */
static void write_jpeg(const char *name, int w, int h, int ncomp, J_COLOR_SPACE cs, int exif, int big_endian)
{
    FILE *f = fopen(path_of(name), "wb");
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
    ci.input_components = ncomp, ci.in_color_space = cs;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    if (exif) {
        unsigned char m[6 + 8 + 2 + 12 + 4] = "Exif\0\0";
        unsigned char *t = m + 6;
        if (big_endian) {
            memcpy(t, "MM\0*\0\0\0\x08", 8);
            memcpy(t + 8, "\0\x01\x01\x12\0\x03\0\0\0\x01", 10);
            t[18] = 0, t[19] = (unsigned char)exif;
        } else {
            memcpy(t, "II*\0\x08\0\0\0", 8);
            memcpy(t + 8, "\x01\0\x12\x01\x03\0\x01\0\0\0", 10);
            t[18] = (unsigned char)exif, t[19] = 0;
        }
        jpeg_write_marker(&ci, JPEG_APP0 + 1, m, sizeof m);
    }
    if (app1_raw) jpeg_write_marker(&ci, JPEG_APP0 + 1, app1_raw, (unsigned)app1_len);
    unsigned char *row = malloc((size_t)w * (size_t)ncomp);
    while (ci.next_scanline < ci.image_height) {
        int y = (int)ci.next_scanline;
        for (int x = 0; x < w; x++) {
            static const unsigned char q[4][4] = {{255, 0, 0, 0}, {0, 0, 255, 0}, {0, 255, 0, 0}, {255, 255, 255, 0}};
            const unsigned char *c = q[(y >= h / 2) * 2 + (x >= w / 2)];
            for (int k = 0; k < ncomp; k++) row[x * ncomp + k] = ncomp == 1 ? (unsigned char)(x * 255 / (w - 1)) : c[k % 3];
        }
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(row);
    fclose(f);
}

static void write_bytes(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(path_of(name), "wb");
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static unsigned char *slurp(const char *name, size_t *n)
{
    FILE *f = fopen(path_of(name), "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n);
    if (fread(p, 1, *n, f) != *n) exit(99);
    fclose(f);
    return p;
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* ---- checks ---- */

static int read_ok(const char *name, cs_image *im, size_t w, size_t h)
{
    int rc = cs_image_read(path_of(name), im);
    CHECK(rc == 0, "%s: %s", name, cs_last_error());
    if (rc) return 0;
    CHECK(im->w == w && im->h == h, "%s: %zux%zu, expected %zux%zu", name, im->w, im->h, w, h);
    return im->w == w && im->h == h;
}

static void px_is(const char *name, const cs_image *im, size_t x, size_t y, int r, int g, int b, int tol)
{
    const uint8_t *p = im->rgb + (y * im->w + x) * 3;
    CHECK(abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol,
          "%s: pixel (%zu,%zu) = %d,%d,%d, expected %d,%d,%d", name, x, y, p[0], p[1], p[2], r, g, b);
}

static void refused(const char *name, const char *needle)
{
    cs_image im;
    int rc = cs_image_read(path_of(name), &im);
    const char *msg = cs_last_error();
    CHECK(rc < 0 && strstr(msg, path_of(name)) && strstr(msg, needle) && !strchr(msg, '\n'),
          "%s: rc %d, message '%s' (expected one line with the path and '%s')", name, rc, msg, needle);
    CHECK(im.rgb == NULL, "%s: refused but returned pixels", name);
}

static void test_png(void)
{
    enum { W = 7, H = 5 };
    unsigned char rgb[H][W * 3], rgba[H][W * 4], grey[H][W], bits[H][1];
    uint16_t rgb16[H][W * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            for (int c = 0; c < 3; c++) rgb[y][x * 3 + c] = (unsigned char)(x * 30 + y * 7 + c * 50);
            for (int c = 0; c < 4; c++) rgba[y][x * 4 + c] = (unsigned char)(c == 3 ? x * 40 : rgb[y][x * 3 + c]);
            grey[y][x] = (unsigned char)(x * 40 + y);
            for (int c = 0; c < 3; c++) rgb16[y][x * 3 + c] = (uint16_t)(x * 9000 + y * 311 + c * 1234);
        }
    cs_image im;
    write_png("rgb8.png", W, H, 8, PNG_COLOR_TYPE_RGB, rgb[0], W * 3, 0, NULL, 0, NULL, 0);
    if (read_ok("rgb8.png", &im, W, H)) {
        CHECK(!memcmp(im.rgb, rgb, sizeof rgb), "rgb8.png: pixels differ");
        CHECK(!strcmp(im.format, "PNG"), "rgb8.png: format %s", im.format);
    }
    uint64_t h1 = im.xxh64;
    cs_image_free(&im);
    write_png("rgb8i.png", W, H, 8, PNG_COLOR_TYPE_RGB, rgb[0], W * 3, 1, NULL, 0, NULL, 0);
    if (read_ok("rgb8i.png", &im, W, H)) CHECK(!memcmp(im.rgb, rgb, sizeof rgb), "rgb8i.png (interlaced): pixels differ");
    CHECK(im.xxh64 != h1 && h1 != 0, "the two files have hashes %llx and %llx", (unsigned long long)h1,
          (unsigned long long)im.xxh64);
    cs_image_free(&im);
    write_png("rgba8.png", W, H, 8, PNG_COLOR_TYPE_RGB_ALPHA, rgba[0], W * 4, 0, NULL, 0, NULL, 0);
    if (read_ok("rgba8.png", &im, W, H)) CHECK(!memcmp(im.rgb, rgb, sizeof rgb), "rgba8.png: alpha not dropped");
    cs_image_free(&im);
    write_png("grey8.png", W, H, 8, PNG_COLOR_TYPE_GRAY, grey[0], W, 0, NULL, 0, NULL, 0);
    const unsigned char *g = &grey[0][0];
    if (read_ok("grey8.png", &im, W, H))
        for (int i = 0; i < W * H; i++)
            CHECK(im.rgb[3 * i] == g[i] && im.rgb[3 * i + 1] == g[i] && im.rgb[3 * i + 2] == g[i], "grey8.png: pixel %d", i);
    cs_image_free(&im);
    /* 1-bit grey: 1010101 per row -> 255, 0, 255, ... */
    for (int y = 0; y < H; y++) bits[y][0] = 0xaa;
    write_png("grey1.png", W, H, 1, PNG_COLOR_TYPE_GRAY, bits[0], 1, 0, NULL, 0, NULL, 0);
    if (read_ok("grey1.png", &im, W, H))
        for (int x = 0; x < W; x++) px_is("grey1.png", &im, (size_t)x, 2, x % 2 ? 0 : 255, x % 2 ? 0 : 255, x % 2 ? 0 : 255, 0);
    cs_image_free(&im);
    /* 4-bit palette with transparency: the colours, alpha dropped */
    png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {1, 2, 3}};
    unsigned char trns[3] = {0, 128, 255}, idx[H][(W + 1) / 2];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < (W + 1) / 2; x++) idx[y][x] = (unsigned char)(((x + y) % 3) << 4 | ((x + y + 1) % 3));
    write_png("pal4.png", W, H, 4, PNG_COLOR_TYPE_PALETTE, idx[0], (W + 1) / 2, 0, pal, 3, trns, 3);
    if (read_ok("pal4.png", &im, W, H))
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int k = (x / 2 + y + (x & 1)) % 3;
                px_is("pal4.png", &im, (size_t)x, (size_t)y, pal[k].red, pal[k].green, pal[k].blue, 0);
            }
    cs_image_free(&im);
    /* 16 bits: scaled with rounding, v / 257 */
    write_png("rgb16.png", W, H, 16, PNG_COLOR_TYPE_RGB, (unsigned char *)rgb16[0], W * 6, 0, NULL, 0, NULL, 0);
    const uint16_t *s16 = &rgb16[0][0];
    if (read_ok("rgb16.png", &im, W, H))
        for (int i = 0; i < W * H * 3; i++) {
            int want = (int)(s16[i] / 257.0 + 0.5);
            CHECK(im.rgb[i] == want, "rgb16.png: sample %d = %d, expected %d (from %d)", i, im.rgb[i], want, s16[i]);
        }
    cs_image_free(&im);

    /* grey + alpha, 8 and 16 bits: the grey level on all three channels, alpha dropped */
    unsigned char ga[H][W * 2];
    uint16_t ga16[H][W * 2];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            ga[y][2 * x] = grey[y][x], ga[y][2 * x + 1] = (unsigned char)(255 - x * 30);
            ga16[y][2 * x] = (uint16_t)(grey[y][x] * 257 + 100), ga16[y][2 * x + 1] = (uint16_t)(x * 5000);
        }
    write_png("ga8.png", W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, ga[0], W * 2, 0, NULL, 0, NULL, 0);
    if (read_ok("ga8.png", &im, W, H))
        for (int i = 0; i < W * H; i++)
            CHECK(im.rgb[3 * i] == g[i] && im.rgb[3 * i + 1] == g[i] && im.rgb[3 * i + 2] == g[i], "ga8.png: pixel %d", i);
    cs_image_free(&im);
    write_png("ga16.png", W, H, 16, PNG_COLOR_TYPE_GRAY_ALPHA, (unsigned char *)ga16[0], W * 4, 1, NULL, 0, NULL, 0);
    if (read_ok("ga16.png", &im, W, H))   /* (v * 257 + 100) / 257 rounds back to v */
        for (int i = 0; i < W * H; i++)
            CHECK(im.rgb[3 * i] == g[i] && im.rgb[3 * i + 2] == g[i], "ga16.png (interlaced): pixel %d = %d, expected %d",
                  i, im.rgb[3 * i], g[i]);
    cs_image_free(&im);

    /* refusals */
    size_t n;
    unsigned char *p = slurp("rgb8.png", &n);
    write_bytes("trunc.png", p, n / 2);
    refused("trunc.png", "bad PNG");
    /* IHDR (bytes 16..23 = width, height; CRC at 29) patched to 0 and to 50000 */
    put32(p + 16, 0);
    put32(p + 29, crc32_of(p + 12, 17));
    write_bytes("zero.png", p, n);
    refused("zero.png", "PNG");
    put32(p + 16, 50000), put32(p + 20, 50000);
    put32(p + 29, crc32_of(p + 12, 17));
    write_bytes("huge.png", p, n);
    refused("huge.png", "over the input image limit");
    put32(p + 16, 20000), put32(p + 20, 20);   /* one side over, few pixels */
    put32(p + 29, crc32_of(p + 12, 17));
    write_bytes("wide.png", p, n);
    refused("wide.png", "over the input image limit");
    free(p);
}

static void test_jpeg(void)
{
    cs_image im;
    write_jpeg("rgb.jpg", 32, 16, 3, JCS_RGB, 0, 0);
    if (read_ok("rgb.jpg", &im, 32, 16)) {
        CHECK(!strcmp(im.format, "JPEG"), "rgb.jpg: format %s", im.format);
        px_is("rgb.jpg", &im, 4, 4, 255, 0, 0, 12);
        px_is("rgb.jpg", &im, 27, 4, 0, 0, 255, 12);
        px_is("rgb.jpg", &im, 4, 11, 0, 255, 0, 12);
        px_is("rgb.jpg", &im, 27, 11, 255, 255, 255, 12);
    }
    cs_image_free(&im);
    write_jpeg("grey.jpg", 32, 16, 1, JCS_GRAYSCALE, 0, 0);
    if (read_ok("grey.jpg", &im, 32, 16)) {
        px_is("grey.jpg", &im, 0, 3, 0, 0, 0, 4);
        px_is("grey.jpg", &im, 31, 3, 255, 255, 255, 4);
    }
    cs_image_free(&im);
    /* EXIF 6: rotate 90 clockwise for display -> 16x32; TL shows BL green, ... */
    write_jpeg("exif6.jpg", 32, 16, 3, JCS_RGB, 6, 0);
    if (read_ok("exif6.jpg", &im, 16, 32)) {
        px_is("exif6.jpg", &im, 4, 4, 0, 255, 0, 12);
        px_is("exif6.jpg", &im, 12, 4, 255, 0, 0, 12);
        px_is("exif6.jpg", &im, 4, 28, 255, 255, 255, 12);
        px_is("exif6.jpg", &im, 12, 28, 0, 0, 255, 12);
    }
    cs_image_free(&im);
    write_jpeg("exif8be.jpg", 32, 16, 3, JCS_RGB, 8, 1);   /* big-endian TIFF */
    if (read_ok("exif8be.jpg", &im, 16, 32)) {
        px_is("exif8be.jpg", &im, 4, 4, 0, 0, 255, 12);
        px_is("exif8be.jpg", &im, 12, 4, 255, 255, 255, 12);
        px_is("exif8be.jpg", &im, 4, 28, 255, 0, 0, 12);
        px_is("exif8be.jpg", &im, 12, 28, 0, 255, 0, 12);
    }
    cs_image_free(&im);
    write_jpeg("exif3.jpg", 32, 16, 3, JCS_RGB, 3, 0);
    if (read_ok("exif3.jpg", &im, 32, 16)) {
        px_is("exif3.jpg", &im, 4, 4, 255, 255, 255, 12);
        px_is("exif3.jpg", &im, 27, 11, 255, 0, 0, 12);
    }
    cs_image_free(&im);
    write_jpeg("exif2.jpg", 32, 16, 3, JCS_RGB, 2, 0);   /* mirrored */
    if (read_ok("exif2.jpg", &im, 32, 16)) px_is("exif2.jpg", &im, 4, 4, 0, 0, 255, 12);
    cs_image_free(&im);

    /* cut inside the scan data: libjpeg alone would pad it with grey */
    write_jpeg("big.jpg", 256, 128, 3, JCS_RGB, 0, 0);
    size_t n;
    unsigned char *p = slurp("big.jpg", &n);
    write_bytes("trunc.jpg", p, n - 40);
    refused("trunc.jpg", "bad JPEG");
    free(p);
    write_jpeg("cmyk.jpg", 16, 16, 4, JCS_CMYK, 0, 0);
    refused("cmyk.jpg", "CMYK");

    /* the frame header's height and width (SOF0: FF C0, length, precision, H, W) patched */
    p = slurp("rgb.jpg", &n);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n && !sof; i++)
        if (p[i] == 0xff && p[i + 1] == 0xc0) sof = i;
    CHECK(sof, "rgb.jpg: no SOF0 marker");
    if (sof) {
        p[sof + 5] = p[sof + 6] = 0;   /* height 0 */
        write_bytes("zero.jpg", p, n);
        refused("zero.jpg", "JPEG");
        p[sof + 5] = 0xc3, p[sof + 6] = 0x50, p[sof + 7] = 0xc3, p[sof + 8] = 0x50;   /* 50000 x 50000 */
        write_bytes("huge.jpg", p, n);
        refused("huge.jpg", "over the input image limit");
    }
    free(p);

    /* EXIF parsing on hostile payloads: every cut of a valid orientation-6
     * block and every byte of it replaced by 0x00 and 0xff. The image must
     * read, as 32x16 or (orientation still 6) 16x32: a bad block is
     * ignored, never an error or a crash (tests/fuzz_image.c fuzzes the
     * whole decoder under ASan). */
    const unsigned char good[] = "Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0";
    unsigned char buf[sizeof good];
    int variants = 0, bad = 0;
    for (size_t len = 0; len <= sizeof good - 1; len++)
        for (int k = -1; k < 2 * (int)len; k++) {
            if (k >= 0 && len != sizeof good - 1) continue;   /* corrupt the full block only */
            memcpy(buf, good, sizeof good);
            if (k >= 0) buf[k / 2] = k % 2 ? 0xff : 0x00;
            app1_raw = buf, app1_len = len ? len : 1;
            write_jpeg("exiffuzz.jpg", 32, 16, 3, JCS_RGB, 0, 0);
            cs_image im2;
            int rc = cs_image_read(path_of("exiffuzz.jpg"), &im2);
            if (rc || !((im2.w == 32 && im2.h == 16) || (im2.w == 16 && im2.h == 32))) {
                if (!bad++) printf("FAIL: EXIF len %zu, byte %d: rc %d %s, %zux%zu\n", len, k / 2, rc, cs_last_error(),
                                   im2.w, im2.h);
            }
            cs_image_free(&im2);
            variants++;
        }
    app1_raw = NULL;
    CHECK(!bad, "%d of %d hostile EXIF blocks misread", bad, variants);
    /* the full block is read as orientation 6 */
    app1_raw = good, app1_len = sizeof good - 1;
    write_jpeg("exifraw.jpg", 32, 16, 3, JCS_RGB, 0, 0);
    app1_raw = NULL;
    if (read_ok("exifraw.jpg", &im, 16, 32)) px_is("exifraw.jpg", &im, 4, 4, 0, 255, 0, 12);
    cs_image_free(&im);
}

static void test_other(void)
{
    write_bytes("empty.png", "", 0);
    refused("empty.png", "empty");
    write_bytes("x.webp", "RIFF\0\0\0\0WEBPVP8 ", 16);
    refused("x.webp", "WebP");
    write_bytes("x.gif", "GIF89a\1\0\1\0\0\0\0", 13);
    refused("x.gif", "not a PNG or JPEG");
    refused("missing.png", "missing.png");
    CHECK(cs_image_read(dir, &(cs_image){0}) < 0 && strstr(cs_last_error(), dir), "a folder: %s", cs_last_error());
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cs_image_in.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 99;
    }
    test_png();
    test_jpeg();
    test_other();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("warning: could not remove %s\n", dir);
    if (failures) printf("%d failure(s)\n", failures);
    else printf("ok\n");
    return check_exit();
}
