/* The fake device's weights (see tests/fake_backend.c): weight_f32 makes
 * one float32 device copy per host pointer and checks on each use that the
 * host bytes did not change since (a cached copy of freed or rewritten host
 * memory means a missing forget()); weight_rw marks a copy writable, and
 * views inside its host range are then served from it, as the CUDA plugin
 * does; weight_to_f32 widens from a copy in the host tensor's own dtype
 * (raw: its bytes as they are). */
#include "fake_backend.h"

#include "error.h"
#include "wpack.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const void *host;
    cs_dtype dtype;
    size_t n, bytes;
    uint64_t sum;
    float *dev;
    int rw;        /* weight_rw: the device owns the values; views inside resolve here */
    int raw;       /* weight_to_f32's copy: the host bytes in their dtype, not float32 */
} wcopy;

static wcopy *wc;
static size_t nwc, capwc;

static uint64_t checksum(const void *p, size_t bytes)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < bytes; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static const float *weight_f32(const cs_tensor *t, char *err, size_t errlen)
{
    const char *nm = t->name ? t->name : "weight";
    size_t n = (size_t)cs_tensor_numel(t), bytes = n * cs_dtype_size(t->dtype);
    fake_call c = {"weight_f32", 0};
    fake_host_only(&c, t->data, nm);
    if (c.rc) {
        snprintf(err, errlen, "%s", fake_errmsg());
        return NULL;
    }
    uint64_t sum = checksum(t->data, bytes);
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nwc; i++) {   /* a float32 view inside a writable copy */
        const char *h = wc[i].host, *d = t->data;
        if (wc[i].rw && !wc[i].raw && t->dtype == CS_F32 && d >= h && d + bytes <= h + wc[i].bytes && ((size_t)(d - h)) % 4 == 0) {
            float *r = wc[i].dev + (d - h) / 4;
            pthread_mutex_unlock(&fake_mu);
            return r;
        }
    }
    for (size_t i = 0; i < nwc; i++)
        if (wc[i].host == t->data && wc[i].dtype == t->dtype && wc[i].n == n && !wc[i].raw) {
            float *d = wc[i].dev;
            int stale = wc[i].sum != sum;
            pthread_mutex_unlock(&fake_mu);
            if (!stale) return d;
            snprintf(err, errlen, "fake device: %s: host data at %p changed since its device copy was made (no forget())",
                     nm, t->data);
            fake_fail(CS_EARG, "%s", err);
            return NULL;
        }
    pthread_mutex_unlock(&fake_mu);
    float *d = fake_dalloc(n * sizeof(float));
    float *r = d ? dv(&c, d, n, nm) : NULL;
    int rc = r ? cs_tensor_to_f32(t, r) : CS_ENOMEM;
    pthread_mutex_lock(&fake_mu);
    if (!rc && nwc == capwc) {
        size_t cap = capwc ? 2 * capwc : 64;
        wcopy *g = realloc(wc, cap * sizeof *g);
        if (g) wc = g, capwc = cap;
        else rc = CS_ENOMEM;
    }
    if (!rc) wc[nwc++] = (wcopy){t->data, t->dtype, n, bytes, sum, d, 0, 0};
    pthread_mutex_unlock(&fake_mu);
    if (!rc) fake_mem_tag(d, t->dtype == CS_F32 ? FAKE_MEM_W32 : FAKE_MEM_WCONV, nm);
    pthread_mutex_lock(&fake_mu);
    if (!rc) fake_backend_weight_bytes += bytes;   /* under fake_mu */
    pthread_mutex_unlock(&fake_mu);
    if (rc) {
        fake_dfree(d);
        snprintf(err, errlen, "fake device: %s: %s", nm, rc == CS_ENOMEM ? "out of device memory" : cs_last_error());
        fake_fail(rc, "%s", err);
        return NULL;
    }
    return d;
}

/* Drops the device copies of host range [lo, lo + bytes), but for keep's
 * own float32 copy (keep may be NULL). */
static void drop_copies(const void *lo, size_t bytes, const cs_tensor *keep)
{
    const char *l = lo;
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nwc;) {
        const char *h = wc[i].host;
        int kept = keep && h == keep->data && wc[i].dtype == CS_F32 && wc[i].bytes == bytes && !wc[i].raw;
        if (h >= l && h < l + bytes && !kept) {
            float *d = wc[i].dev;
            wc[i] = wc[--nwc];
            pthread_mutex_unlock(&fake_mu);
            fake_dfree(d);
            pthread_mutex_lock(&fake_mu);
        } else i++;
    }
    pthread_mutex_unlock(&fake_mu);
}

/* The host's cs_param_forget reaches the host engine's packed bf16 copies
 * and this op; the ops here run this plugin's own copy of the engine, whose
 * packed copies must go too, or a weight later allocated at the same address
 * is multiplied by the old one's values. */
static void forget(const void *host, size_t bytes)
{
    drop_copies(host, bytes, NULL);
    cs_wpack_forget(host, bytes);
    __atomic_add_fetch(&fake_backend_forget_bytes, bytes, __ATOMIC_RELAXED);
}

/* the float32 copy of t, writable; copies of other views in its range go */
__attribute__((unused)) static float *weight_rw(const cs_tensor *t, char *err, size_t errlen)
{
    const char *nm = t->name ? t->name : "weight";
    if (t->dtype != CS_F32) {
        snprintf(err, errlen, "fake device: %s: weight_rw of a %s weight (float32 only)", nm, cs_dtype_name(t->dtype));
        fake_fail(CS_EARG, "%s", err);
        return NULL;
    }
    size_t bytes = (size_t)cs_tensor_numel(t) * sizeof(float);
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nwc; i++)
        if (wc[i].rw && wc[i].host == t->data && wc[i].bytes == bytes) {
            float *d = wc[i].dev;
            pthread_mutex_unlock(&fake_mu);
            return d;
        }
    pthread_mutex_unlock(&fake_mu);
    drop_copies(t->data, bytes, t);   /* the views' own copies: they would go stale */
    float *d = (float *)weight_f32(t, err, errlen);
    if (!d) return NULL;
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nwc; i++)
        if (wc[i].dev == d) wc[i].rw = 1;
    pthread_mutex_unlock(&fake_mu);
    fake_mem_tag(d, FAKE_MEM_WRW, nm);
    return d;
}

/* [off, off + n) of t as float32 into dst: a float32 tensor from its
 * float32 copy, others from a copy of their bytes (made once, checked
 * against the host's as weight_f32's are) widened by the CPU's code */
__attribute__((unused)) static int weight_to_f32(const cs_tensor *t, size_t off, size_t n, float *dst, char *err,
                                                 size_t errlen)
{
    const char *nm = t->name ? t->name : "weight";
    size_t all = (size_t)cs_tensor_numel(t), es = cs_dtype_size(t->dtype), bytes = all * es;
    fake_call c = fake_enter("weight_to_f32");
    float *rd = dv(&c, dst, n, "dst");
    if (!c.rc && (off > all || n > all - off))
        c.rc = fake_fail(CS_EARG, "fake device: weight_to_f32: %s: elements [%zu, %zu) of %zu", nm, off, off + n, all);
    if (c.rc) {
        snprintf(err, errlen, "%s", fake_errmsg());
        return c.rc;
    }
    if (t->dtype == CS_F32) {
        const float *s = weight_f32(t, err, errlen);
        float *rs = s ? dv(&c, s + off, n, nm) : NULL;
        if (!rs) return c.rc ? c.rc : CS_EDEVICE;
        memcpy(rd, rs, n * sizeof(float));
        return 0;
    }
    uint64_t sum = checksum(t->data, bytes);
    void *d = NULL;
    int stale = 0;
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nwc && !d; i++)
        if (wc[i].raw && wc[i].host == t->data && wc[i].dtype == t->dtype && wc[i].n == all)
            d = wc[i].dev, stale = wc[i].sum != sum;
    pthread_mutex_unlock(&fake_mu);
    if (stale) {
        snprintf(err, errlen, "fake device: %s: host data at %p changed since its device copy was made (no forget())",
                 nm, t->data);
        return fake_fail(CS_EARG, "%s", err);
    }
    if (!d) {   /* the copy, as the host holds it */
        int rc = 0;
        char *r = (d = fake_dalloc(bytes)) ? fake_real_bytes(&c, d, bytes, nm) : NULL;
        if (r) memcpy(r, t->data, bytes);
        pthread_mutex_lock(&fake_mu);
        if (r && nwc == capwc) {
            size_t cap = capwc ? 2 * capwc : 64;
            wcopy *g = realloc(wc, cap * sizeof *g);
            if (g) wc = g, capwc = cap;
        }
        if (!r || nwc == capwc) rc = CS_ENOMEM;
        else wc[nwc++] = (wcopy){t->data, t->dtype, all, bytes, sum, d, 0, 1}, fake_backend_weight_bytes += bytes;
        pthread_mutex_unlock(&fake_mu);
        if (rc) {
            fake_dfree(d);
            snprintf(err, errlen, "fake device: %s: out of device memory", nm);
            return fake_fail(rc, "%s", err);
        }
        fake_mem_tag(d, FAKE_MEM_WRAW, nm);
    }
    cs_tensor v = {.dtype = t->dtype, .ndim = 1, .shape = {(int64_t)n}, .name = nm};
    char *rs = fake_real_bytes(&c, d, bytes, nm);
    if (!rs) return c.rc;
    v.data = rs + off * es;
    int rc = 0;
    ON_HOST(rc = cs_tensor_to_f32(&v, rd));
    return fake_done(&c, rc);
}

/* the writable copy holding t's values (its index), or -1; under fake_mu */
static long rw_of(const cs_tensor *t)
{
    if (!t || !t->data || t->dtype != CS_F32) return -1;
    const char *d = t->data;
    size_t bytes = (size_t)cs_tensor_numel(t) * sizeof(float);
    for (size_t i = 0; i < nwc; i++) {
        const char *h = wc[i].host;
        if (wc[i].rw && !wc[i].raw && d >= h && d + bytes <= h + wc[i].bytes) return (long)i;
    }
    return -1;
}

int fake_in_rw(const cs_tensor *t)
{
    pthread_mutex_lock(&fake_mu);
    long i = rw_of(t);
    pthread_mutex_unlock(&fake_mu);
    return i >= 0;
}

/* ops that take weights as tensors read them on the host: a weight whose
 * values the device owns (weight_rw) is read from the device copy instead */
const cs_tensor *fake_rw_sub(const cs_tensor *t, cs_tensor *tmp)
{
    pthread_mutex_lock(&fake_mu);
    long i = rw_of(t);
    if (i >= 0) {
        *tmp = *t;
        tmp->data = fake_real_locked(wc[i].dev) + ((const char *)t->data - (const char *)wc[i].host);
        t = tmp;
    }
    pthread_mutex_unlock(&fake_mu);
    return t;
}

void fake_weight_ops(cs_dev_ops *o)
{
    o->weight_f32 = weight_f32, o->forget = forget;
#ifndef FAKE_NO_BACKWARD   /* with the training ops */
    o->weight_rw = weight_rw;
    o->weight_to_f32 = weight_to_f32;
#endif
}

void fake_weights_release(void)
{
    pthread_mutex_lock(&fake_mu);
    free(wc);
    wc = NULL;
    nwc = capwc = 0;
    pthread_mutex_unlock(&fake_mu);
}
