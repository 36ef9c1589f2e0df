/* ComfyUI .latent files: reading as LoadLatent does (nodes.py), writing as
 * SaveLatent does, numbered and placed like our PNGs. */
#include "latent.h"

#include "cancel.h"
#include "error.h"
#include "pngout.h"
#include "safetensors.h"
#include "tensor.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MARKER "latent_format_version_0"
#define MAX_SIDE 65536
#define MAX_NUMEL (1ll << 30)

int cs_latent_read(const char *path, cs_latent *out)
{
    memset(out, 0, sizeof *out);
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc)
        return rc;
    const cs_tensor *t = cs_st_find(f, "latent_tensor");
    char sh[96];
    int64_t numel = t ? cs_tensor_numel(t) : 0;
    if (!t)
        rc = cs_error(CS_EFORMAT, "%s: not a ComfyUI latent: no tensor 'latent_tensor'", path);
    else if (t->dtype != CS_F32 && t->dtype != CS_F16 && t->dtype != CS_BF16)
        rc = cs_error(CS_EFORMAT, "%s: latent_tensor is %s; a latent is F32, F16 or BF16", path,
                      cs_dtype_name(t->dtype));
    else if (t->ndim != 4)
        rc = cs_error(CS_EFORMAT, "%s: latent_tensor has shape %s; an image latent is [N, C, H, W]", path,
                      cs_shape_str(t, sh, sizeof sh));
    for (int k = 0; !rc && k < 4; k++)
        if (t->shape[k] < 1 || t->shape[k] > MAX_SIDE || numel > MAX_NUMEL)
            rc = cs_error(CS_EFORMAT, "%s: latent_tensor shape %s is empty or too large", path,
                          cs_shape_str(t, sh, sizeof sh));
    if (!rc && !(out->data = cs_tensor_f32_dup(t)))
        rc = CS_ENOMEM;
    if (!rc) {
        out->n = (int)t->shape[0], out->c = (int)t->shape[1], out->h = (int)t->shape[2], out->w = (int)t->shape[3];
        out->legacy = cs_st_find(f, MARKER) == NULL;
        /* LoadLatent: latent.float() * (1.0 / 0.18215), the scalar as float32 */
        float mul = out->legacy ? (float)(1.0 / 0.18215) : 1.0f;
        for (int64_t i = 0; i < numel; i++) {
            if (!isfinite(out->data[i])) {
                rc = cs_error(CS_EFORMAT, "%s: latent_tensor holds a non-finite value (element %lld)", path,
                              (long long)i);
                break;
            }
            out->data[i] *= mul;
        }
    }
    cs_st_close(f);
    if (rc)
        cs_latent_free(out);
    return rc;
}

void cs_latent_free(cs_latent *l)
{
    if (!l)
        return;
    cs_free(l->data);
    memset(l, 0, sizeof *l);
}

/* "<dir>/.<base>.<tag>.tmp" beside path, not yet taken */
static int temp_name(const char *path, char *tmp, size_t len)
{
    static atomic_uint counter;
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path + 1) : 0;
    for (int i = 0; i < 100; i++) {
        unsigned tag = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^
                       ((atomic_fetch_add(&counter, 1) + 1) * 40503u);
        int n = snprintf(tmp, len, "%.*s.%s.%08x.tmp", dl, path, slash ? slash + 1 : path, tag);
        if (n < 0 || (size_t)n >= len)
            return cs_error(CS_EARG, "%s: the path is too long", path);
        if (access(tmp, F_OK) != 0 && errno == ENOENT)
            return 0;
    }
    return cs_error(CS_EIO, "%s: no free temporary name beside it", path);
}

int cs_latent_write_next(const char *dir, const char *prefix, const float *x, int n, int c, int h, int w,
                         const char *const *meta, int n_meta, char *out, size_t out_len)
{
    static const float none = 0.0f;
    cs_tensor t[2] = {
        {CS_F32, 1, {0}, &none, MARKER},
        {CS_F32, 4, {n, c, h, w}, x, "latent_tensor"},
    };
    for (int attempt = 0; attempt < 1000; attempt++) {
        char tmp[4096];
        int rc = cs_out_next_name(dir, prefix, "_.latent", out, out_len);
        if (!rc)
            rc = temp_name(out, tmp, sizeof tmp);
        if (rc)
            return rc;
        /* cs_st_write renames its own temporary file onto tmp: ours is on
         * the cleanup list first, so a signal never leaves either behind */
        int hnd = cs_cleanup_add(tmp, 0);
        rc = cs_st_write(tmp, t, 2, meta, n_meta);
        int e = rc ? 0 : cs_out_place(tmp, out, 0);
        if (rc || e)
            unlink(tmp);
        cs_cleanup_del(hnd);
        if (rc)
            return rc;
        if (!e)
            return 0;
        if (e != -EEXIST)
            return cs_error(CS_EIO, "%s: cannot move the finished file into place: %s", out, strerror(-e));
        /* another writer took the number between listing and placing: list again */
    }
    return cs_error(CS_EIO, "%s: could not find a free '%s_NNNNN_.latent' name", dir, prefix);
}

void cs_latent_to_comfy(const float *x, int n, int h, int w, int c, int stage_b, float *out)
{
    size_t hw = (size_t)h * w;
    const float scale = (float)(1.0 / 0.43);
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < c; ch++) {
                float v = x[(i * hw + p) * c + ch];
                out[(i * c + ch) * hw + p] = stage_b ? v / scale : v;
            }
}
