/* Files for programs that write their own (cascade.h): PNGs with any text
 * chunks, numbered as cascade or ComfyUI's SaveImage do, ComfyUI .latent
 * files, and the xxh64 of any file through the hash cache. */
#include "api.h"

#include "error.h"
#include "image_in.h"
#include "infile.h"
#include "latent.h"
#include "models.h"
#include "pngout.h"
#include "tensor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT 256

/* text pairs as the writers' chunks; *out malloc'd (NULL for none) */
static int chunks_of(cascade_ctx *ctx, const char *const *text, int n, cs_png_text **out)
{
    *out = NULL;
    if (n < 0 || n > MAX_TEXT || (n && !text))
        return cs_api_fail(ctx, cs_error(CS_EARG, "%d text chunks: 0..%d key/value pairs", n, MAX_TEXT));
    if (!n) return 0;
    cs_png_text *t = malloc((size_t)n * sizeof *t);
    if (!t) return cs_api_fail(ctx, cs_oom("the text chunks", (size_t)n * sizeof *t));
    for (int i = 0; i < n; i++) {
        if (!text[2 * i] || !*text[2 * i] || !text[2 * i + 1]) {
            free(t);
            return cs_api_fail(ctx, cs_error(CS_EARG, "text chunk %d: %s", i,
                                             !text[2 * i] || !*text[2 * i] ? "no key" : "no value"));
        }
        t[i] = (cs_png_text){text[2 * i], text[2 * i + 1]};
    }
    *out = t;
    return 0;
}

/* DIR/PREFIX into its folder and prefix */
static int split(cascade_ctx *ctx, const char *path, char *dir, size_t len, const char **prefix)
{
    const char *slash = strrchr(path, '/');
    *prefix = slash ? slash + 1 : path;
    if (!**prefix) return cs_api_fail(ctx, cs_error(CS_EARG, "%s: no file name prefix after the folder", path));
    int n = slash ? snprintf(dir, len, "%.*s", slash == path ? 1 : (int)(slash - path), path) : snprintf(dir, len, ".");
    if (n < 0 || (size_t)n >= len) return cs_api_fail(ctx, cs_error(CS_EARG, "%s: the path is too long", path));
    return 0;
}

int cascade_png_write(cascade_ctx *ctx, const unsigned char *rgb, int width, int height, size_t stride,
                      const char *const *text, int n_text, const char *path, int flags, char *written, size_t len)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!rgb || !path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_png_write: %s is NULL",
                                                        !rgb ? "the image" : "the path"));
    if (flags & ~(CASCADE_PNG_FORCE | CASCADE_PNG_NUMBERED | CASCADE_PNG_COMFY_NAMES))
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_png_write %s: unknown flags 0x%x", path, (unsigned)flags));
    if ((flags & CASCADE_PNG_COMFY_NAMES) && !(flags & CASCADE_PNG_NUMBERED))
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_png_write %s: CASCADE_PNG_COMFY_NAMES needs "
                                                  "CASCADE_PNG_NUMBERED", path));
    cs_png_text *t;
    int rc = chunks_of(ctx, text, n_text, &t);
    if (rc) return rc;
    char dir[4096], mine[4096];
    const char *prefix;
    if (!written || !len) written = mine, len = sizeof mine;
    if (!(flags & CASCADE_PNG_NUMBERED)) {
        rc = cs_png_write_rgb8(path, rgb, width, height, stride, t, n_text, flags & CASCADE_PNG_FORCE ? CS_PNG_FORCE : 0);
        if (!rc) snprintf(written, len, "%s", path);
    } else if ((rc = split(ctx, path, dir, sizeof dir, &prefix)) != 0) {
        free(t);
        return rc;
    } else if (flags & CASCADE_PNG_COMFY_NAMES) {
        rc = cs_png_write_next_tail(dir, prefix, "_.png", rgb, width, height, stride, t, n_text, written, len);
    } else {
        rc = cs_png_write_next(dir, prefix, rgb, width, height, stride, t, n_text, written, len);
    }
    free(t);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_check_output_name(cascade_ctx *ctx, const char *path)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_check_output_name: the path is NULL"));
    int rc = cs_png_check_name(path);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_latent_side(int px, int which)
{
    if (px < 1) return CASCADE_E_ARG;
    if (which == CASCADE_LATENT_C) return cs_latent_c(px);
    if (which == CASCADE_LATENT_B) return cs_latent_b(px);
    return CASCADE_E_ARG;
}

int cascade_latent_write(cascade_ctx *ctx, const float *x, int n, int c, int h, int w, const char *const *text,
                         int n_text, const char *path, char *written, size_t len)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!x || !path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_latent_write: %s is NULL",
                                                      !x ? "the latent" : "the path"));
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return cs_api_fail(ctx, cs_error(CS_EARG, "latent %s: shape [%d, %d, %d, %d] is empty", path, n, c, h, w));
    if (n_text < 0 || n_text > MAX_TEXT || (n_text && !text))
        return cs_api_fail(ctx, cs_error(CS_EARG, "latent %s: %d metadata pairs (0..%d)", path, n_text, MAX_TEXT));
    for (int i = 0; i < 2 * n_text; i++)
        if (!text[i]) return cs_api_fail(ctx, cs_error(CS_EARG, "latent %s: metadata %d is NULL", path, i));
    char dir[4096], mine[4096];
    const char *prefix;
    if (!written || !len) written = mine, len = sizeof mine;
    int rc = split(ctx, path, dir, sizeof dir, &prefix);
    if (rc) return rc;
    rc = cs_latent_write_next(dir, prefix, x, n, c, h, w, text, n_text, written, len);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_latent_read(cascade_ctx *ctx, const char *path, float **x, int *n, int *c, int *h, int *w)
{
    if (!ctx) return CASCADE_E_ARG;
    if (x) *x = NULL;
    if (!path || !x || !n || !c || !h || !w)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_latent_read: a NULL argument"));
    cs_latent l;
    int rc = cs_latent_read(path, &l);
    if (rc) return cs_api_fail(ctx, rc);
    size_t bytes = (size_t)l.n * l.c * l.h * l.w * sizeof(float);
    float *d = malloc(bytes);   /* cascade_free's, not cs_alloc's */
    if (!d) {
        cs_latent_free(&l);
        return cs_api_fail(ctx, cs_oom("a latent", bytes));
    }
    memcpy(d, l.data, bytes);
    *x = d, *n = l.n, *c = l.c, *h = l.h, *w = l.w;
    cs_latent_free(&l);
    return 0;
}

/* the hash cache is one file: its reads and writes in this process one at a time */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

int cascade_file_hash(cascade_ctx *ctx, const char *path, int flags, unsigned long long *hash)
{
    if (!path || !hash) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_file_hash: a NULL argument"));
    if (flags & ~(CASCADE_HASH_CACHED_ONLY | CASCADE_HASH_NO_CACHE))
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_file_hash %s: unknown flags 0x%x", path, (unsigned)flags));
    uint64_t h = 0;
    int hit = 0;
    if (!(flags & CASCADE_HASH_NO_CACHE)) {
        pthread_mutex_lock(&cache_lock);
        hit = cs_file_xxh64_cached(path, &h);
        pthread_mutex_unlock(&cache_lock);
        if (hit) {
            *hash = h;
            return 1;
        }
        if (flags & CASCADE_HASH_CACHED_ONLY) return 0;
    }
    cs_file_stamp st;
    int rc = cs_file_xxh64_compute(path, &h, &st);
    if (rc) return cs_api_fail(ctx, rc);
    if (!(flags & CASCADE_HASH_NO_CACHE)) {
        pthread_mutex_lock(&cache_lock);
        cs_file_xxh64_remember(path, &st, h);
        pthread_mutex_unlock(&cache_lock);
    }
    *hash = h;
    return 0;
}

int cascade_file_read(cascade_ctx *ctx, const char *path, const char *what, unsigned long long max, char **buf,
                      size_t *len)
{
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!path || !what || !buf) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_file_read: a NULL argument"));
    int rc = cs_infile_read(path, what, (uint64_t)max, buf, len);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_image_size(cascade_ctx *ctx, const char *path, int *width, int *height)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!path || !width || !height) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_image_size: a NULL argument"));
    cs_image im;
    int rc = cs_image_read(path, &im);
    if (rc) return cs_api_fail(ctx, rc);
    *width = (int)im.w, *height = (int)im.h;   /* at most CS_IMAGE_MAX_SIDE */
    cs_image_free(&im);
    return 0;
}
