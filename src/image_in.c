/* Input images: PNG and JPEG to 8-bit RGB (see image_in.h for what is read
 * and the limits). The file is read whole (it is hashed for the metadata
 * anyway) and decoded from memory; both libraries report errors by longjmp,
 * so each decoder keeps what it allocated where the jump target can free it. */
#include "image_in.h"

#include "error.h"
#include "infile.h"
#include "tensor.h"

#include <stdio.h>   /* before jpeglib.h, which uses FILE */

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void cs_image_free(cs_image *im)
{
    if (!im) return;
    cs_free(im->rgb);
    memset(im, 0, sizeof *im);
}

/* 0 if w x h is within the limits, else the error. */
static int check_size(const char *what, const char *fmt, uint64_t w, uint64_t h)
{
    if (!w || !h) return cs_error(CS_EFORMAT, "%s: the %s image has no pixels (%llux%llu)", what, fmt,
                                  (unsigned long long)w, (unsigned long long)h);
    if (w > CS_IMAGE_MAX_SIDE || h > CS_IMAGE_MAX_SIDE || w * h > CS_IMAGE_MAX_PIXELS)
        return cs_error(CS_EUNSUP, "%s: %llux%llu pixels is over the input image limit (%d a side, %llu megapixels)",
                        what, (unsigned long long)w, (unsigned long long)h, CS_IMAGE_MAX_SIDE,
                        (unsigned long long)(CS_IMAGE_MAX_PIXELS >> 20));
    return 0;
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len, off;
    char msg[256];
} png_src;

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->off) png_error(png, "the file is truncated");
    memcpy(out, s->p + s->off, n);
    s->off += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int decode_png(const unsigned char *data, size_t len, const char *what, cs_image *out)
{
    png_src s = {data, len, 0, "out of memory"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return cs_error(CS_ENOMEM, "%s: out of memory", what);
    }
    /* what the jump target frees: volatile, as they change after setjmp */
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    int rc = 0;
    if (setjmp(png_jmpbuf(png))) {
        rc = cs_error(CS_EFORMAT, "%s: bad PNG: %s", what, s.msg);
        goto done;
    }
    png_set_read_fn(png, &s, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((rc = check_size(what, "PNG", w, h))) goto done;
    png_set_expand(png);         /* palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha */
    png_set_scale_16(png);       /* 16 -> 8 bits, rounded */
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        rc = cs_error(CS_EUNSUP, "%s: this PNG does not convert to 8-bit RGB", what);
        goto done;
    }
    rgb = cs_alloc((size_t)w * h * 3);
    rows = malloc((size_t)h * sizeof *rows);
    if (!rgb || !rows) {
        rc = cs_oom("the input image", (size_t)w * h * 3);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    out->rgb = rgb, out->w = w, out->h = h, out->format = "PNG";
    rgb = NULL;
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    cs_free(rgb);
    return rc;
}

/* ---- JPEG ------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings are ignored, except a premature end: libjpeg would fill the rest
 * of a truncated file with grey and call it an image. */
static void jpeg_on_message(j_common_ptr c, int level)
{
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(c);
}

static uint32_t rd(const unsigned char *p, int n, int be)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint32_t)p[be ? i : n - 1 - i] << (8 * (n - 1 - i));
    return v;
}

/* EXIF orientation (1..8) from an APP1 marker, 1 when absent or unreadable. */
static int exif_orientation(const unsigned char *d, size_t n)
{
    if (n < 14 || memcmp(d, "Exif\0\0", 6)) return 1;
    d += 6, n -= 6;   /* the TIFF header */
    int be = d[0] == 'M' && d[1] == 'M';
    if (!be && !(d[0] == 'I' && d[1] == 'I')) return 1;
    uint32_t ifd = rd(d + 4, 4, be);
    if (ifd > n - 2) return 1;
    uint32_t cnt = rd(d + ifd, 2, be);
    for (uint32_t i = 0; i < cnt; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > n) return 1;
        if (rd(d + e, 2, be) == 0x0112 && rd(d + e + 2, 2, be) == 3) {   /* SHORT */
            uint32_t v = rd(d + e + 8, 2, be);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* Applies EXIF orientation o to im (a new buffer for o != 1). */
static int orient(cs_image *im, int o, const char *what)
{
    if (o == 1) return 0;
    size_t w = im->w, h = im->h, ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    uint8_t *dst = cs_alloc(w * h * 3);
    if (!dst) return cs_oom("the input image", w * h * 3);
    for (size_t y = 0; y < oh; y++)
        for (size_t x = 0; x < ow; x++) {
            size_t sx, sy;   /* the stored pixel shown at (x, y) */
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;
            case 4: sx = x, sy = h - 1 - y; break;
            case 5: sx = y, sy = x; break;
            case 6: sx = y, sy = h - 1 - x; break;
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;
            default: sx = w - 1 - y, sy = x; break;   /* 8 */
            }
            memcpy(dst + (y * ow + x) * 3, im->rgb + (sy * w + sx) * 3, 3);
        }
    (void)what;
    cs_free(im->rgb);
    im->rgb = dst, im->w = ow, im->h = oh;
    return 0;
}

static int decode_jpeg(const unsigned char *data, size_t len, const char *what, cs_image *out)
{
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    uint8_t *volatile rgb = NULL;
    volatile int rc = 0, o = 1;
    if (setjmp(je.jb)) {
        rc = cs_error(CS_EFORMAT, "%s: bad JPEG: %s", what, je.msg);
        goto done;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (unsigned char *)data, (unsigned long)len);
    jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&ci, TRUE);
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        rc = cs_error(CS_EUNSUP, "%s: CMYK JPEG images are not supported (save it as RGB)", what);
        goto done;
    }
    if ((rc = check_size(what, "JPEG", ci.image_width, ci.image_height))) goto done;
    for (jpeg_saved_marker_ptr m = ci.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && (o = exif_orientation(m->data, m->data_length)) != 1) break;
    ci.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3) {
        rc = cs_error(CS_EUNSUP, "%s: this JPEG does not convert to RGB", what);
        goto done;
    }
    size_t w = ci.output_width, h = ci.output_height;
    rgb = cs_alloc(w * h * 3);
    if (!rgb) {
        rc = cs_oom("the input image", w * h * 3);
        goto done;
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = rgb + (size_t)ci.output_scanline * w * 3;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    out->rgb = rgb, out->w = w, out->h = h, out->format = "JPEG";
    rgb = NULL;
done:
    jpeg_destroy_decompress(&ci);
    cs_free(rgb);
    if (!rc && (rc = orient(out, o, what))) cs_image_free(out);
    return rc;
}

/* ---- entry points ------------------------------------------------------------ */

int cs_image_decode(const unsigned char *data, size_t len, const char *what, cs_image *out)
{
    memset(out, 0, sizeof *out);
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int rc;
    if (len >= 8 && !memcmp(data, png_sig, 8)) rc = decode_png(data, len, what, out);
    else if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) rc = decode_jpeg(data, len, what, out);
    else if (len == 0) return cs_error(CS_EFORMAT, "%s: the file is empty", what);
    else
        return cs_error(CS_EUNSUP, "%s: not a PNG or JPEG file (the formats read; convert %s first)", what,
                        len >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4) ? "WebP"
                        : len >= 4 && !memcmp(data, "GIF8", 4)                                 ? "GIF"
                                                                                              : "it");
    if (!rc) out->xxh64 = XXH64(data, len, 0);
    return rc;
}

int cs_image_read(const char *path, cs_image *out)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    int rc = cs_infile_read(path, "image file", CS_IMAGE_MAX_FILE, &buf, &len);
    if (rc) return rc;
    rc = cs_image_decode((const unsigned char *)buf, len, path, out);
    free(buf);
    return rc;
}
