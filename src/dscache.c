/* The training cache of dscache.h: safetensors files keyed by the XXH64 of
 * a description of their inputs, checked on every read. */
#include "dscache.h"
#include "error.h"
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define MAX_TENSORS 8

int cs_dscache_path(const char *dir, const char *kind, const char *desc, char *out, size_t out_len)
{
    uint64_t h = XXH64(desc, strlen(desc), 0);
    int n = snprintf(out, out_len, "%s/%s-%016" PRIx64 ".safetensors", dir, kind, h);
    if (n < 0 || (size_t)n >= out_len) return cs_error(CS_EARG, "cache folder name too long: %s", dir);
    return 0;
}

void cs_dscache_latent_desc(const cs_ds_image *im, uint64_t model_id, int flip, char *out, size_t out_len)
{
    snprintf(out, out_len, "latent v1 image=%016" PRIx64 " model=%016" PRIx64 " bucket=%dx%d resized=%dx%d flip=%d",
             im->xxh64, model_id, im->bucket_w, im->bucket_h, im->resized_w, im->resized_h, flip ? 1 : 0);
}

void cs_dscache_text_desc(const char *caption, uint64_t model_id, const char *style, char *out, size_t out_len)
{
    size_t n = strlen(caption);
    snprintf(out, out_len, "text v1 caption=%016" PRIx64 ":%zu model=%016" PRIx64 " style=%s",
             (uint64_t)XXH64(caption, n, 0), n, model_id, style);
}

static size_t numel(const cs_dscache_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* 1 if path holds a valid entry for desc with exactly t's tensors (copied
 * into t), 0 if not (missing or bad: *bad = 1 for a bad one) */
static int load(const char *path, const char *desc, cs_dscache_tensor *t, int n, int *bad)
{
    struct stat st;
    *bad = 0;
    if (stat(path, &st)) return 0;
    *bad = 1;
    cs_st_file *f = NULL;
    if (cs_st_open(path, &f)) return 0;
    int ok = cs_st_count(f) == n;
    const char *key = cs_st_meta(f, "key"), *sum = cs_st_meta(f, "xxh64");
    ok = ok && key && !strcmp(key, desc) && sum;
    const cs_tensor *ts[MAX_TENSORS];
    XXH64_state_t *h = XXH64_createState();
    ok = ok && h;
    if (h) XXH64_reset(h, 0);
    for (int i = 0; ok && i < n; i++) {
        ts[i] = cs_st_find(f, t[i].name);
        ok = ts[i] && ts[i]->dtype == CS_F32 && ts[i]->ndim == t[i].ndim;
        for (int d = 0; ok && d < t[i].ndim; d++) ok = ts[i]->shape[d] == t[i].shape[d];
    }
    /* the hash runs in file order, as it was written */
    for (int i = 0; ok && i < n; i++) {
        const cs_tensor *x = cs_st_at(f, i);
        XXH64_update(h, x->data, (size_t)cs_tensor_numel(x) * sizeof(float));
    }
    if (ok) {
        char want[17];
        snprintf(want, sizeof want, "%016" PRIx64, (uint64_t)XXH64_digest(h));
        ok = !strcmp(want, sum);
    }
    for (int i = 0; ok && i < n; i++) memcpy(t[i].data, ts[i]->data, numel(&t[i]) * sizeof(float));
    if (h) XXH64_freeState(h);
    cs_st_close(f);
    if (ok) *bad = 0;
    return ok;
}

int cs_dscache_get(const char *dir, const char *kind, const char *desc, cs_dscache_tensor *t, int n,
                   cs_dscache_fn fn, void *ctx, int *status)
{
    if (status) *status = CS_DSCACHE_MISS;
    if (n < 1 || n > MAX_TENSORS) return cs_error(CS_EARG, "cache: %d tensors (1 to %d)", n, MAX_TENSORS);
    char path[4096];
    int rc = cs_dscache_path(dir, kind, desc, path, sizeof path), bad = 0;
    if (rc) return rc;
    if (load(path, desc, t, n, &bad)) {
        if (status) *status = CS_DSCACHE_HIT;
        return 0;
    }
    cs_clear_error();
    if (status) *status = bad ? CS_DSCACHE_BAD : CS_DSCACHE_MISS;
    if ((rc = fn(ctx, t, n))) return rc;
    if (mkdir(dir, 0755) && errno != EEXIST) return cs_error(CS_EIO, "cache folder %s: %s", dir, cs_strerror(errno));
    cs_tensor ts[MAX_TENSORS];
    XXH64_state_t *h = XXH64_createState();
    if (!h) return cs_oom("hash state", 1);
    XXH64_reset(h, 0);
    for (int i = 0; i < n; i++) {
        memset(&ts[i], 0, sizeof ts[i]);
        ts[i].dtype = CS_F32, ts[i].ndim = t[i].ndim, ts[i].data = t[i].data, ts[i].name = t[i].name;
        memcpy(ts[i].shape, t[i].shape, sizeof t[i].shape);
        XXH64_update(h, t[i].data, numel(&t[i]) * sizeof(float));
    }
    char sum[17];
    snprintf(sum, sizeof sum, "%016" PRIx64, (uint64_t)XXH64_digest(h));
    XXH64_freeState(h);
    const char *meta[] = {"cascade.cache", "1", "key", desc, "xxh64", sum};
    return cs_st_write(path, ts, n, meta, 3);
}
