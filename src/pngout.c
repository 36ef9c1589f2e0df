/* libpng writer with text chunks, temp file + fsync + no-replace rename;
 * float -> uint8 conversion. See pngout.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* renameat2 */
#endif
#include "pngout.h"

#include "cancel.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- float -> uint8 ---------------------------------------------------- */

static uint8_t to_u8(float v, cs_u8_mode mode)
{
    if (!(v > 0.0f))          /* also NaN */
        return 0;
    if (v > 1.0f)
        v = 1.0f;
    float s = v * 255.0f;     /* float32 product, as torch/numpy form it */
    if (mode == CS_U8_ROUND)
        s = nearbyintf(s);    /* ties to even, like numpy round */
    return (uint8_t)s;        /* truncation toward zero, like .byte() */
}

int cs_image_to_u8_nhwc(const float *in, size_t n, size_t h, size_t w, cs_u8_mode mode,
                        uint8_t *out)
{
    if ((!in || !out) && n && h && w)
        return cs_error(CS_EARG, "png: image to u8: null buffer");
    if (mode != CS_U8_TRUNCATE && mode != CS_U8_ROUND)
        return cs_error(CS_EARG, "png: image to u8: unknown rounding mode %d", (int)mode);
    size_t count = n * h * w * 3;
    for (size_t i = 0; i < count; i++)
        out[i] = to_u8(in[i], mode);
    return 0;
}

int cs_image_to_u8_nchw(const float *in, size_t n, size_t h, size_t w, cs_u8_mode mode,
                        uint8_t *out)
{
    if ((!in || !out) && n && h && w)
        return cs_error(CS_EARG, "png: image to u8: null buffer");
    if (mode != CS_U8_TRUNCATE && mode != CS_U8_ROUND)
        return cs_error(CS_EARG, "png: image to u8: unknown rounding mode %d", (int)mode);
    size_t hw = h * w;
    for (size_t b = 0; b < n; b++) {
        const float *src = in + b * 3 * hw;
        uint8_t *dst = out + b * 3 * hw;
        for (size_t p = 0; p < hw; p++)
            for (int c = 0; c < 3; c++)
                dst[3 * p + c] = to_u8(src[(size_t)c * hw + p], mode);
    }
    return 0;
}

/* ---- libpng ------------------------------------------------------------ */

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

static int check_key(const char *path, const char *k)
{
    size_t len = k ? strlen(k) : 0;
    if (len < 1 || len > 79 || k[0] == ' ' || k[len - 1] == ' ' || strstr(k, "  "))
        return cs_error(CS_EARG, "png: %s: bad text key '%s' (1-79 chars, no edge/double spaces)",
                        path, k ? k : "(null)");
    for (const char *c = k; *c; c++)
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126)
            return cs_error(CS_EARG, "png: %s: text key '%s' must be printable ASCII", path, k);
    return 0;
}

/* libpng's own writer says only "Write Error"; this one keeps errno so a
 * full disk reads "No space left on device" */
typedef struct {
    FILE *fp;
    int err;
} png_sink;

static void sink_write(png_structp png, png_bytep data, size_t len)
{
    png_sink *s = png_get_io_ptr(png);
    if (fwrite(data, 1, len, s->fp) != len) {
        s->err = errno ? errno : EIO;
        png_error(png, strerror(s->err));
    }
}

static void sink_flush(png_structp png)
{
    png_sink *s = png_get_io_ptr(png);
    if (fflush(s->fp) != 0) {
        s->err = errno ? errno : EIO;
        png_error(png, strerror(s->err));
    }
}

/* Encodes into fp; 0 or a negative code with the message set. */
static int encode(FILE *fp, const char *path, const uint8_t *rgb, int width, int height,
                  size_t stride, const png_text *txt, int n_text)
{
    png_err err;
    png_sink sink = {fp, 0};
    err.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error,
                                              on_png_warning);
    if (!png)
        return cs_error(CS_ENOMEM, "png: %s: cannot create the libpng writer", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return cs_error(CS_ENOMEM, "png: %s: cannot create the libpng info", path);
    }
    if (setjmp(err.jb)) {
        int e = errno;   /* libpng's "Write Error" hides why: EFBIG is ulimit -f */
        png_destroy_write_struct(&png, &info);
        if (sink.err) e = sink.err;
        if (sink.err || e == EFBIG || e == ENOSPC || e == EDQUOT || e == EIO)
            return cs_error(CS_EIO, "png: %s: write failed: %s", path, cs_strerror(e));
        return cs_error(CS_EIO, "png: %s: libpng: %s", path, err.msg);
    }
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    errno = 0;
    png_set_write_fn(png, &sink, sink_write, sink_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (n_text > 0)
        png_set_text(png, info, txt, n_text);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, rgb + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

#define TMP_EXTRA 14   /* "." + ".%08x.tmp" around the base name */

int cs_png_check_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path + (slash == path)) : 1, slash ? path : ".");
    long max = pathconf(dir, _PC_NAME_MAX);
    if (max <= 0)
        max = 255;
    if (!*base)
        return cs_error(CS_EARG, "%s: no file name", path);
    if (strlen(base) + TMP_EXTRA > (size_t)max)
        return cs_error(CS_EARG, "%s: the file name is too long (%zu bytes; at most %ld here: %ld less %d for the "
                        "temporary name)", path, strlen(base), max - TMP_EXTRA, max, TMP_EXTRA);
    if (strlen(path) + TMP_EXTRA >= sizeof dir)
        return cs_error(CS_EARG, "%s: the path is too long", path);
    return 0;
}

/* Creates "<dir>/.<base>.<random>" exclusively (mode 0666 & ~umask), on
 * the cleanup list (*hnd) before it exists: listed after the open, a signal
 * ending the process in between would leave it behind. (A name taken by
 * another file is listed only until its open fails.) */
static int open_temp(const char *path, char *tmp, size_t tmp_len, int *hnd)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    static atomic_uint counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned tag = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^
                       ((atomic_fetch_add(&counter, 1) + 1) * 40503u);
        int len = snprintf(tmp, tmp_len, "%.*s.%s.%08x.tmp", dir_len, path, base, tag);
        if (len < 0 || (size_t)len >= tmp_len) {
            errno = ENAMETOOLONG;
            return -1;
        }
        *hnd = cs_cleanup_add(tmp, 0);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        int e = errno;
        cs_cleanup_del(*hnd);
        *hnd = 0;
        errno = e;
        if (e != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Moves tmp to path. Without force the move must not replace anything:
 * renameat2(NOREPLACE) where the system has it, else link+unlink, else an
 * O_EXCL placeholder that only we may then replace. 0 or -errno. */
int cs_out_place(const char *tmp, const char *path, int force)
{
    if (force)
        return rename(tmp, path) ? -errno : 0;
#if defined(__linux__) && defined(RENAME_NOREPLACE)
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
#endif
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return 0;
    }
    if (errno == EEXIST)
        return -EEXIST;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return -errno;
    close(fd);
    return rename(tmp, path) ? -errno : 0;
}

static void sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);   /* best effort: the file itself is already synced */
        close(fd);
    }
}

/* exists: set to 1 when the target was there (and force was off). */
static int write_impl(const char *path, const uint8_t *rgb, int width, int height,
                      size_t stride, const cs_png_text *text, int n_text, int flags,
                      int *exists)
{
    *exists = 0;
    if (!path || !*path)
        return cs_error(CS_EARG, "png: empty output path");
    if (!rgb || width < 1 || height < 1 || stride < 3 * (size_t)width || n_text < 0 ||
        (n_text && !text))
        return cs_error(CS_EARG, "png: %s: bad image (%dx%d, stride %zu) or text list", path,
                        width, height, stride);
    int force = (flags & CS_PNG_FORCE) != 0;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!force) {
            *exists = 1;
            return cs_error(CS_EIO, "png: %s: exists, not overwritten", path);
        }
        /* force replaces a regular file only: never a device, FIFO, socket, link or folder */
        if (!S_ISREG(st.st_mode))
            return cs_error(CS_EIO, "png: %s: not a regular file, not replaced", path);
    }
    png_text *txt = n_text ? calloc((size_t)n_text, sizeof *txt) : NULL;
    if (n_text && !txt)
        return cs_error(CS_ENOMEM, "png: %s: out of memory", path);
    for (int i = 0; i < n_text; i++) {
        int rc = check_key(path, text[i].key);
        if (!rc && !text[i].value)
            rc = cs_error(CS_EARG, "png: %s: text '%s' has no value", path, text[i].key);
        if (rc) {
            free(txt);
            return rc;
        }
        txt[i].key = (char *)text[i].key;
        txt[i].text = (char *)text[i].value;
        if (is_ascii(text[i].value)) {
            txt[i].compression = PNG_TEXT_COMPRESSION_NONE;
            txt[i].text_length = strlen(text[i].value);
        } else {
            txt[i].compression = PNG_ITXT_COMPRESSION_NONE;
            txt[i].itxt_length = strlen(text[i].value);
        }
    }

    char tmp[4096];
    int h = 0;   /* the temporary file on the cleanup list: removed even if a signal ends the process */
    int fd = open_temp(path, tmp, sizeof tmp, &h);
    if (fd < 0) {
        free(txt);
        return cs_error(CS_EIO, "png: %s: cannot create a temporary file beside it: %s", path,
                        strerror(errno));
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        int e = errno;
        close(fd);
        unlink(tmp);
        cs_cleanup_del(h);
        free(txt);
        return cs_error(CS_EIO, "png: %s: %s", path, strerror(e));
    }
    int rc = encode(fp, path, rgb, width, height, stride, txt, n_text);
    free(txt);
    if (!rc && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
        rc = cs_error(CS_EIO, "png: %s: write failed: %s", path, cs_strerror(errno));
    if (fclose(fp) != 0 && !rc)
        rc = cs_error(CS_EIO, "png: %s: close failed: %s", path, cs_strerror(errno));
    if (!rc) {
        int e = cs_out_place(tmp, path, force);
        if (e == -EEXIST) {
            *exists = 1;
            rc = cs_error(CS_EIO, "png: %s: exists, not overwritten", path);
        } else if (e) {
            rc = cs_error(CS_EIO, "png: %s: cannot move the finished file into place: %s", path,
                          strerror(-e));
        }
    }
    if (rc)
        unlink(tmp);
    cs_cleanup_del(h);
    if (rc)
        return rc;
    sync_dir(path);
    return 0;
}

int cs_png_write_rgb8(const char *path, const uint8_t *rgb, int width, int height,
                      size_t stride, const cs_png_text *text, int n_text, int flags)
{
    int exists;
    return write_impl(path, rgb, width, height, stride, text, n_text, flags, &exists);
}

/* ---- output names ------------------------------------------------------ */

static int join(char *out, size_t out_len, const char *dir, const char *prefix, unsigned long long k,
                const char *tail)
{
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    int len = snprintf(out, out_len, "%s%s%s_%05llu%s", dir, sep, prefix, k, tail);
    if (len < 0 || (size_t)len >= out_len)
        return cs_error(CS_EARG, "png: output path in '%s' is too long", dir);
    return 0;
}

/* tail: what follows the number, ".png" (ours) or "_.png" (ComfyUI's) */
static int next_name(const char *dir, const char *prefix, const char *tail, char *out, size_t out_len)
{
    if (!dir || !*dir)
        dir = ".";
    if (!prefix || !*prefix || strchr(prefix, '/') || !out || !out_len)
        return cs_error(CS_EARG, "png: bad output prefix or buffer");
    DIR *d = opendir(dir);
    if (!d)
        return cs_error(CS_EIO, "png: %s: cannot list the folder: %s", dir, strerror(errno));
    size_t plen = strlen(prefix);
    unsigned long long best = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strncmp(nm, prefix, plen) != 0 || nm[plen] != '_')
            continue;
        const char *p = nm + plen + 1, *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        /* numbers widen past 99999 (and past 999999999): up to 18 digits */
        if (q == p || q - p > 18 || strcmp(q, tail) != 0)
            continue;
        unsigned long long v = strtoull(p, NULL, 10);
        if (v > best)
            best = v;
    }
    closedir(d);
    if (best >= 999999999999999999ull)
        return cs_error(CS_EIO, "png: %s: no number left after %s_%llu%s (choose another folder or -o FILE)", dir,
                        prefix, best, tail);
    return join(out, out_len, dir, prefix, best + 1, tail);
}

int cs_out_next_name(const char *dir, const char *prefix, const char *tail, char *out, size_t out_len)
{
    return next_name(dir, prefix, tail, out, out_len);
}

int cs_png_next_name(const char *dir, const char *prefix, char *out, size_t out_len)
{
    return next_name(dir, prefix, ".png", out, out_len);
}

int cs_png_write_next(const char *dir, const char *prefix, const uint8_t *rgb, int width,
                      int height, size_t stride, const cs_png_text *text, int n_text,
                      char *out_path, size_t out_len)
{
    return cs_png_write_next_tail(dir, prefix, ".png", rgb, width, height, stride, text, n_text, out_path, out_len);
}

int cs_png_write_next_tail(const char *dir, const char *prefix, const char *tail, const uint8_t *rgb, int width,
                           int height, size_t stride, const cs_png_text *text, int n_text, char *out_path,
                           size_t out_len)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int rc = next_name(dir, prefix, tail, out_path, out_len), exists;
        if (rc)
            return rc;
        rc = write_impl(out_path, rgb, width, height, stride, text, n_text, 0, &exists);
        if (!rc || !exists)
            return rc;
        /* someone took the name between listing and writing: list again */
    }
    return cs_error(CS_EIO, "png: %s: could not find a free '%s_NNNNN%s' name", dir, prefix, tail);
}
