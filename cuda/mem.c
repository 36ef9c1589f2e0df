/* Device memory of the CUDA plugin: the stream, the stream-ordered pool,
 * host <-> device copies, per-slot scratch, the weight cache, error text
 * and the precision in force.
 *
 * Everything is queued on one non-blocking stream. Memory comes from a pool
 * of our own (cudaMallocFromPoolAsync) whose release threshold is "never":
 * freed blocks stay in the pool for the next allocation, so a forward's
 * alloc/free pairs cost no driver calls and never wait. A map from device
 * pointer to size counts the bytes we hold (mem_peak).
 *
 * The weight cache keeps one device copy of a host weight per dtype asked,
 * in an array sorted by (host pointer, dtype): lookups are a binary search,
 * and forget() of a host range drops a contiguous run of it. A copy made
 * writable (weight_rw, training) moves to a second sorted array: the device
 * owns its values, and every float32 view inside its host range (the q/k/v
 * rows of a packed in_proj) is served from it. */
#include "core.h"

#include "error.h"

#include <cuda_runtime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cudaStream_t stream;
static cudaMemPool_t pool;
static int cc_major, cc_minor;
static int precision = CS_PREC_FP32;
/* guards the maps and the error text (ops normally come from one thread) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

cs_cuda_stream_t cs_cuda_stream(void) { return stream; }

/* ---- errors ---- */

static char err_text[320], err_shown[320];
static int err_unread;

static void record(int force, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&lock);
    if (!err_unread || force) {   /* the first failure wins until errmsg() is read */
        vsnprintf(err_text, sizeof err_text, fmt, ap);
        err_unread = 1;
    }
    pthread_mutex_unlock(&lock);
}

int cs_cuda_fail_text(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(0, fmt, ap);
    va_end(ap);
    return code;
}

/* replaces the text: a weight's failure says more than the CUDA call's */
static void fail_replace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_replace(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(1, fmt, ap);
    va_end(ap);
}

static void peek_error(char *buf, size_t n)
{
    pthread_mutex_lock(&lock);
    snprintf(buf, n, "%s", err_unread ? err_text : "");
    pthread_mutex_unlock(&lock);
}

static int fail_fmt(int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_fmt(int e, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cs_cuda_fail(e, what);
}

int cs_cuda_fail(int e, const char *what)
{
    cudaError_t ce = (cudaError_t)e;
    (void)cudaGetLastError();   /* clear a non-sticky error so later calls start clean */
    int code = ce == cudaErrorMemoryAllocation ? CS_ENOMEM : CS_EDEVICE;
    const char *text = ce == cudaErrorMemoryAllocation ? "out of memory" : cudaGetErrorString(ce);
    return cs_cuda_fail_text(code, "CUDA: %s (%s) in %s", text, cudaGetErrorName(ce), what ? what : "?");
}

int cs_cuda_check_launch(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, what);
}

const char *cs_cuda_errmsg(void)
{
    pthread_mutex_lock(&lock);
    memcpy(err_shown, err_text, sizeof err_shown);
    err_unread = 0;
    pthread_mutex_unlock(&lock);
    return err_shown;
}

/* ---- tiny helpers (the plugin links no libcascade) ---- */

static size_t dtype_bytes(int dt) { return dt == CS_F32 ? 4 : dt == CS_BF16 || dt == CS_F16 ? 2 : 0; }

static const char *dtype_str(int dt)
{
    static const char *const names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8",
                                        "U8", "BOOL", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};
    return dt >= 0 && dt < (int)(sizeof names / sizeof *names) ? names[dt] : "?";
}

static size_t numel(const cs_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i] > 0 ? (size_t)t->shape[i] : 0;
    return n;
}

static double mib(size_t b) { return (double)b / (1024.0 * 1024.0); }

/* ---- allocations and their sizes (open addressing, linear probing) ---- */

typedef struct {
    uintptr_t p;   /* 0: empty slot */
    size_t bytes;
} live_t;
static live_t *live;
static size_t live_cap, live_n, held, peak;

static size_t live_slot(uintptr_t p) { return (size_t)((p >> 8) * 0x9E3779B97F4A7C15ull) & (live_cap - 1); }

static int live_put(uintptr_t p, size_t bytes)
{
    if (2 * (live_n + 1) > live_cap) {
        size_t cap = live_cap ? 2 * live_cap : 1024;
        live_t *old = live, *nw = calloc(cap, sizeof *nw);
        if (!nw) return -1;
        size_t oc = live_cap;
        live = nw, live_cap = cap;
        for (size_t i = 0; i < oc; i++)
            if (old[i].p) {
                size_t j = live_slot(old[i].p);
                while (live[j].p) j = (j + 1) & (cap - 1);
                live[j] = old[i];
            }
        free(old);
    }
    size_t j = live_slot(p);
    while (live[j].p) j = (j + 1) & (live_cap - 1);
    live[j].p = p, live[j].bytes = bytes;
    live_n++;
    return 0;
}

/* removes p; returns its size (0 if unknown) */
static size_t live_take(uintptr_t p)
{
    if (!live_cap) return 0;
    size_t j = live_slot(p);
    while (live[j].p && live[j].p != p) j = (j + 1) & (live_cap - 1);
    if (!live[j].p) return 0;
    size_t bytes = live[j].bytes;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t i = j;
    for (;;) {
        live[i].p = 0;
        size_t k = i;
        for (;;) {
            k = (k + 1) & (live_cap - 1);
            if (!live[k].p) {
                live_n--;
                return bytes;
            }
            size_t h = live_slot(live[k].p);
            /* move k into the hole i unless its home lies cyclically in (i, k] */
            if (i <= k ? (h <= i || h > k) : (h <= i && h > k)) break;
        }
        live[i] = live[k];
        i = k;
    }
}

void *cs_cuda_alloc(size_t bytes)
{
    if (!stream) {
        cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
        return NULL;
    }
    if (!bytes) bytes = 4;
    void *p = NULL;
    cudaError_t e = cudaMallocFromPoolAsync(&p, bytes, pool, stream);
    if (e == cudaErrorMemoryAllocation) {
        /* blocks freed by queued work come back once it ran; and trimming
         * returns what the pool holds to the device (fragmentation) */
        (void)cudaGetLastError();
        cudaStreamSynchronize(stream);
        cudaMemPoolTrimTo(pool, 0);
        e = cudaMallocFromPoolAsync(&p, bytes, pool, stream);
    }
    if (e != cudaSuccess) {
        fail_fmt(e, "alloc of %.0f MiB", mib(bytes) < 1 ? 1.0 : mib(bytes));
        return NULL;
    }
    pthread_mutex_lock(&lock);
    if (live_put((uintptr_t)p, bytes)) {
        pthread_mutex_unlock(&lock);
        cudaFreeAsync(p, stream);
        cs_cuda_fail_text(CS_ENOMEM, "CUDA plugin: out of host memory for its allocation map");
        return NULL;
    }
    held += bytes;
    if (held > peak) peak = held;
    pthread_mutex_unlock(&lock);
    return p;
}

void cs_cuda_free(void *p)
{
    if (!p || !stream) return;
    pthread_mutex_lock(&lock);
    held -= live_take((uintptr_t)p);
    pthread_mutex_unlock(&lock);
    /* stream-ordered: the block is reused only after the work queued so far */
    cudaError_t e = cudaFreeAsync(p, stream);
    if (e != cudaSuccess) cs_cuda_fail(e, "free");
}

size_t cs_cuda_mem_peak(int reset)
{
    pthread_mutex_lock(&lock);
    size_t r = peak;
    if (reset) peak = held;
    pthread_mutex_unlock(&lock);
    return r;
}

/* ---- copies ---- */

int cs_cuda_upload(void *dst, const void *host, size_t bytes)
{
    if (!bytes) return 0;
    cudaError_t e = cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream);
    /* the host buffer may be reused as soon as we return */
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    return e == cudaSuccess ? 0 : fail_fmt(e, "upload of %zu bytes", bytes);
}

int cs_cuda_download(void *host, const void *src, size_t bytes)
{
    cudaError_t e = bytes ? cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream) : cudaSuccess;
    cudaError_t s = cudaStreamSynchronize(stream);
    if (e == cudaSuccess) e = s;
    return e == cudaSuccess ? 0 : fail_fmt(e, "download of %zu bytes", bytes);
}

int cs_cuda_sync(void)
{
    cudaError_t e = cudaStreamSynchronize(stream);
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, "the queued work");
}

/* ---- graphs: between graph_begin and graph_end the stream records ---- */

static int capturing;
/* bumped whenever a scratch block moves: a graph recorded before holds the old address */
static unsigned long scratch_gen;

typedef struct {
    cudaGraphExec_t x;
    unsigned long gen;   /* scratch_gen when recorded */
} graph_t;

int cs_cuda_graph_begin(void)
{
    if (!stream) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    /* thread-local: a call that cannot be recorded fails here, not elsewhere */
    cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return cs_cuda_fail(e, "starting a graph");
    capturing = 1;
    return 0;
}

int cs_cuda_graph_end(void **out)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    capturing = 0;
    *out = NULL;
    cudaError_t e = cudaStreamEndCapture(stream, &g);
    /* a block the forward forgot to free is freed at the next launch */
    if (e == cudaSuccess) e = cudaGraphInstantiateWithFlags(&x, g, cudaGraphInstantiateFlagAutoFreeOnLaunch);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        /* not an error of the forward's: it runs op by op instead */
        (void)cudaGetLastError();
        pthread_mutex_lock(&lock);
        err_unread = 0, err_text[0] = 0;
        pthread_mutex_unlock(&lock);
        return CS_EUNSUP;
    }
    graph_t *h = malloc(sizeof *h);
    if (!h) {
        cudaGraphExecDestroy(x);
        return CS_ENOMEM;
    }
    h->x = x, h->gen = scratch_gen;
    *out = h;
    return 0;
}

int cs_cuda_graph_launch(void *graph)
{
    graph_t *h = graph;
    if (h->gen != scratch_gen) return CS_EUNSUP;   /* stale: the caller drops it */
    cudaError_t e = cudaGraphLaunch(h->x, stream);
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, "a graph launch");
}

void cs_cuda_graph_free(void *graph)
{
    graph_t *h = graph;
    if (!h) return;
    cudaStreamSynchronize(stream);
    cudaGraphExecDestroy(h->x);
    free(h);
    int dev;
    /* what the graph's own allocations held goes back to the device */
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGraphMemTrim(dev);
}

/* ---- scratch ---- */

static struct {
    void *p;
    size_t cap;
} scratch[CS_CUDA_SCRATCH_SLOTS];

void *cs_cuda_scratch(int slot, size_t bytes)
{
    if (slot < 0 || slot >= CS_CUDA_SCRATCH_SLOTS) {
        cs_cuda_fail_text(CS_EARG, "CUDA plugin: scratch slot %d out of range", slot);
        return NULL;
    }
    if (bytes <= scratch[slot].cap) return scratch[slot].p;
    if (capturing) {
        /* a graph would own the new block: the first run grows it instead */
        cs_cuda_fail_text(CS_EUNSUP, "CUDA plugin: scratch grows while recording a graph");
        return NULL;
    }
    /* the old block goes back stream-ordered, after the work that uses it */
    scratch_gen++;
    cs_cuda_free(scratch[slot].p);
    scratch[slot].p = NULL, scratch[slot].cap = 0;
    size_t want = (bytes + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);   /* whole MiB: fewer regrowths */
    void *p = cs_cuda_alloc(want);
    if (!p) return NULL;
    scratch[slot].p = p, scratch[slot].cap = want;
    return p;
}

int cs_cuda_env_on(const char *name, int *cache)
{
    if (*cache < 0) {
        const char *e = getenv(name);
        *cache = !(e && !strcmp(e, "0"));
    }
    return *cache;
}

/* ---- precision ---- */

int cs_cuda_precision(void) { return precision; }

int cs_cuda_set_precision(int prec)
{
    if (prec == CS_PREC_TF32 && cc_major >= 8) {   /* FP32 data; gemm.c's products on TF32 */
        precision = CS_PREC_FP32;
        return cs_cuda_gemm_tf32(1);
    }
    if (prec == CS_PREC_FP32 || (prec == CS_PREC_BF16 && cc_major >= 8) || (prec == CS_PREC_FP16 && cc_major >= 7)) {
        precision = prec;
        return cs_cuda_gemm_tf32(0);
    }
    if (prec == CS_PREC_TF32) {
        fail_replace("CUDA: tf32 needs a GPU of compute capability 8.0 or newer (this one is %d.%d)", cc_major, cc_minor);
        return CS_EUNSUP;
    }
    /* answered at once, so this text replaces any older one */
    if (prec != CS_PREC_BF16 && prec != CS_PREC_FP16) {
        fail_replace("CUDA plugin: unknown precision %d", prec);
        return CS_EARG;
    }
    fail_replace("CUDA: %s needs a GPU of compute capability %s or newer (this one is %d.%d)",
                 prec == CS_PREC_BF16 ? "bf16" : "fp16", prec == CS_PREC_BF16 ? "8.0" : "7.0", cc_major, cc_minor);
    return CS_EUNSUP;
}

/* ---- the weight cache ---- */

typedef struct {
    const void *host;
    int dtype;        /* of the device copy */
    int src_dtype;    /* of the host data it was made from */
    size_t n;         /* elements */
    void *dev;
} wentry;
static wentry *wc;
static size_t wc_n, wc_cap;
static _Thread_local int weight_rc;

/* writable float32 copies (weight_rw), sorted by host, not overlapping */
typedef struct {
    const char *host;
    size_t bytes;
    float *dev;
} rwentry;
static rwentry *rw;
static size_t rw_n, rw_cap;

/* the writable copy holding host bytes [p, p + bytes), or -1; under lock */
static long rw_find(const void *p, size_t bytes)
{
    size_t lo = 0, hi = rw_n;   /* first entry with host > p */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)rw[mid].host <= (uintptr_t)p) lo = mid + 1;
        else hi = mid;
    }
    if (!lo) return -1;
    const rwentry *e = &rw[lo - 1];
    uintptr_t a = (uintptr_t)p, h = (uintptr_t)e->host;
    return a + bytes <= h + e->bytes && (a - h) % sizeof(float) == 0 ? (long)(lo - 1) : -1;
}

int cs_cuda_weight_rc(void) { return weight_rc; }
int cs_cuda_cc(void) { return cc_major * 10 + cc_minor; }

/* first index whose (host, dtype) is >= the key */
static size_t wc_lower(const void *host, int dtype)
{
    size_t lo = 0, hi = wc_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const wentry *e = &wc[mid];
        if ((uintptr_t)e->host < (uintptr_t)host || (e->host == host && e->dtype < dtype)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Fills dev (n elements of dtype dt) from host data of dtype sdt: a staged
 * copy (upload.c) when the dtypes match, else raw chunks through a device
 * staging buffer and convert.cu. The host data may be unaligned: the copies
 * move bytes, and the staging buffer is aligned. When this returns the host
 * data has been read (it may go); the device copy is stream-ordered. */
static int fill_weight(void *dev, int dt, const void *host, int sdt, size_t n)
{
    size_t sb = dtype_bytes(sdt), db = dtype_bytes(dt);
    if (sdt == dt) return cs_cuda_upload_staged(dev, host, n * sb);
    const size_t chunk = (size_t)16 << 20;   /* elements per round */
    size_t m = n < chunk ? n : chunk;
    void *stage = cs_cuda_alloc(m * sb);
    if (!stage) return CS_ENOMEM;
    int rc = 0;
    /* stream order: each round's copy waits for the previous conversion */
    for (size_t o = 0; o < n && !rc; o += chunk) {
        size_t k = n - o < chunk ? n - o : chunk;
        rc = cs_cuda_upload_staged(stage, (const unsigned char *)host + o * sb, k * sb);
        if (!rc) rc = cs_cuda_convert(stage, sdt, (unsigned char *)dev + o * db, dt, k);
    }
    cs_cuda_free(stage);   /* stream-ordered: after the last conversion */
    return rc;
}

const void *cs_cuda_weight(const cs_tensor *t, int dtype, char *err, size_t errlen)
{
    const char *name = t->name ? t->name : "weight";
    if (!dtype_bytes(t->dtype)) {
        snprintf(err, errlen, "%s: weight dtype %s is not a float type", name, dtype_str(t->dtype));
        fail_replace("%s", err);
        weight_rc = CS_EUNSUP;
        return NULL;
    }
    if (!dtype_bytes(dtype)) {
        snprintf(err, errlen, "%s: no device copy as %s", name, dtype_str(dtype));
        fail_replace("%s", err);
        weight_rc = CS_EARG;
        return NULL;
    }
    size_t n = numel(t);
    pthread_mutex_lock(&lock);
    if (dtype == CS_F32 && t->dtype == CS_F32 && rw_n) {   /* values the device owns */
        long k = rw_find(t->data, n * sizeof(float));
        if (k >= 0) {
            float *d = rw[k].dev + ((const char *)t->data - rw[k].host) / sizeof(float);
            pthread_mutex_unlock(&lock);
            return d;
        }
    }
    size_t i = wc_lower(t->data, dtype);
    if (i < wc_n && wc[i].host == t->data && wc[i].dtype == dtype) {
        if (wc[i].src_dtype == (int)t->dtype && wc[i].n == n) {
            void *d = wc[i].dev;
            pthread_mutex_unlock(&lock);
            return d;
        }
        /* same address, other contents (a view we did not expect): redo */
        void *old = wc[i].dev;
        memmove(wc + i, wc + i + 1, (wc_n - i - 1) * sizeof *wc);
        wc_n--;
        pthread_mutex_unlock(&lock);
        cs_cuda_free(old);
        pthread_mutex_lock(&lock);
        i = wc_lower(t->data, dtype);
    }
    if (wc_n == wc_cap) {
        size_t cap = wc_cap ? 2 * wc_cap : 256;
        wentry *nw = realloc(wc, cap * sizeof *nw);
        if (!nw) {
            pthread_mutex_unlock(&lock);
            snprintf(err, errlen, "%s: out of host memory for the weight cache", name);
            fail_replace("%s", err);
            weight_rc = CS_ENOMEM;
            return NULL;
        }
        wc = nw, wc_cap = cap;
    }
    pthread_mutex_unlock(&lock);

    if (capturing) {
        /* an upload waits for the host: not recordable (the first run uploads) */
        snprintf(err, errlen, "%s: first used while recording a graph", name);
        weight_rc = CS_EUNSUP;
        return NULL;
    }
    size_t bytes = n * dtype_bytes(dtype);
    void *dev = cs_cuda_alloc(bytes);
    int rc = dev ? fill_weight(dev, dtype, t->data, t->dtype, n) : CS_ENOMEM;
    if (rc) {
        cs_cuda_free(dev);
        /* err and errmsg() both say which weight, then the CUDA text */
        char m[320];
        peek_error(m, sizeof m);
        snprintf(err, errlen, "%s: no device copy (%.1f MiB as %s): %s", name, mib(bytes), dtype_str(dtype),
                 *m ? m : "CUDA failure");
        fail_replace("%s", err);
        weight_rc = rc;
        return NULL;
    }
    pthread_mutex_lock(&lock);
    i = wc_lower(t->data, dtype);   /* another thread may have moved things */
    memmove(wc + i + 1, wc + i, (wc_n - i) * sizeof *wc);
    wc[i] = (wentry){.host = t->data, .dtype = dtype, .src_dtype = t->dtype, .n = n, .dev = dev};
    wc_n++;
    pthread_mutex_unlock(&lock);
    return dev;
}

const float *cs_cuda_weight_f32(const cs_tensor *t, char *err, size_t n)
{
    return (const float *)cs_cuda_weight(t, CS_F32, err, n);
}

int cs_cuda_weight_to_f32(const cs_tensor *t, size_t off, size_t n, float *dst, char *err, size_t errlen)
{
    const char *name = t->name ? t->name : "weight";
    size_t all = numel(t), b = dtype_bytes(t->dtype);
    if (off > all || n > all - off) {
        snprintf(err, errlen, "%s: elements [%zu, %zu) of %zu", name, off, off + n, all);
        fail_replace("%s", err);
        return CS_EARG;
    }
    /* a float32 host tensor: its float32 copy (a writable one if there is one) */
    const void *src = cs_cuda_weight(t, t->dtype, err, errlen);
    if (!src) return weight_rc ? weight_rc : CS_EDEVICE;
    return n ? cs_cuda_convert((const char *)src + off * b, t->dtype, dst, CS_F32, n) : 0;
}

float *cs_cuda_weight_rw(const cs_tensor *t, char *err, size_t errlen)
{
    const char *name = t->name ? t->name : "weight";
    if (t->dtype != CS_F32) {
        snprintf(err, errlen, "%s: a writable copy of a %s weight (float32 only)", name, dtype_str(t->dtype));
        fail_replace("%s", err);
        return NULL;
    }
    size_t n = numel(t), bytes = n * sizeof(float);
    pthread_mutex_lock(&lock);
    long k = rw_find(t->data, bytes);
    if (k >= 0 && rw[k].host == (const char *)t->data && rw[k].bytes == bytes) {
        float *d = rw[k].dev;
        pthread_mutex_unlock(&lock);
        return d;
    }
    if (k >= 0) {   /* inside another writable copy: not a tensor of its own */
        pthread_mutex_unlock(&lock);
        snprintf(err, errlen, "%s: lies inside another tensor's writable copy", name);
        fail_replace("%s", err);
        return NULL;
    }
    if (rw_n == rw_cap) {
        size_t cap = rw_cap ? 2 * rw_cap : 256;
        rwentry *r = realloc(rw, cap * sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&lock);
            snprintf(err, errlen, "%s: out of host memory for the weight cache", name);
            fail_replace("%s", err);
            return NULL;
        }
        rw = r, rw_cap = cap;
    }
    pthread_mutex_unlock(&lock);
    /* the float32 copy (made now if absent) moves to rw; the copies of views
     * inside the range and other dtypes of it would go stale: dropped */
    float *d = (float *)cs_cuda_weight(t, CS_F32, err, errlen);
    if (!d) return NULL;
    pthread_mutex_lock(&lock);
    uintptr_t lo = (uintptr_t)t->data, hi = lo + bytes;
    size_t a = wc_lower(t->data, -1), b = a;
    while (b < wc_n && (uintptr_t)wc[b].host < hi) b++;
    void **drop = b > a ? malloc((b - a) * sizeof *drop) : NULL;
    if (b > a && !drop) {
        pthread_mutex_unlock(&lock);
        snprintf(err, errlen, "%s: out of host memory for the weight cache", name);
        fail_replace("%s", err);
        return NULL;
    }
    size_t nd = 0;
    for (size_t i = a; i < b; i++)
        if (wc[i].dev != d) drop[nd++] = wc[i].dev;
    memmove(wc + a, wc + b, (wc_n - b) * sizeof *wc);
    wc_n -= b - a;
    size_t at = 0;
    while (at < rw_n && (uintptr_t)rw[at].host < lo) at++;
    memmove(rw + at + 1, rw + at, (rw_n - at) * sizeof *rw);
    rw[at] = (rwentry){(const char *)t->data, bytes, d};
    rw_n++;
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < nd; i++) cs_cuda_free(drop[i]);
    free(drop);
    return d;
}

void cs_cuda_forget(const void *host, size_t bytes)
{
    if (!host) return;
    uintptr_t lo = (uintptr_t)host, hi = lo + (bytes ? bytes : 1);
    if (hi < lo) hi = UINTPTR_MAX;
    pthread_mutex_lock(&lock);
    /* writable copies starting in the range go too (their values with them) */
    for (size_t i = 0; i < rw_n;) {
        uintptr_t h = (uintptr_t)rw[i].host;
        if (h >= lo && h < hi) {
            float *d = rw[i].dev;
            memmove(rw + i, rw + i + 1, (rw_n - i - 1) * sizeof *rw);
            rw_n--;
            pthread_mutex_unlock(&lock);
            cs_cuda_free(d);
            pthread_mutex_lock(&lock);
        } else i++;
    }
    size_t a = wc_lower(host, -1), b = a;
    while (b < wc_n && (uintptr_t)wc[b].host < hi) b++;
    void **drop = b > a ? malloc((b - a) * sizeof *drop) : NULL;
    size_t nd = 0;
    if (drop)
        for (size_t i = a; i < b; i++) drop[nd++] = wc[i].dev;
    else
        b = a;   /* no room to remember them: keep the entries (a leak beats a dangling copy) */
    memmove(wc + a, wc + b, (wc_n - b) * sizeof *wc);
    wc_n -= b - a;
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < nd; i++) cs_cuda_free(drop[i]);
    free(drop);
}

/* ---- start and end ---- */

int cs_cuda_mem_init(char *err, size_t n)
{
    int dev = 0, pools = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev);
    if (e == cudaSuccess && !pools) {
        snprintf(err, n, "CUDA: this GPU or driver has no stream-ordered memory pools (needed by the plugin)");
        return CS_EUNSUP;
    }
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
        struct cudaMemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = cudaMemAllocationTypePinned;
        props.handleTypes = cudaMemHandleTypeNone;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = dev;
        e = cudaMemPoolCreate(&pool, &props);
    }
    if (e == cudaSuccess) {
        /* keep freed memory in the pool: a forward frees and allocates the
         * same sizes over and over */
        uint64_t keep = UINT64_MAX;
        e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    if (e != cudaSuccess) {
        snprintf(err, n, "CUDA: %s (%s) while setting up the stream and memory pool", cudaGetErrorString(e),
                 cudaGetErrorName(e));
        (void)cudaGetLastError();
        cs_cuda_mem_shutdown();
        return e == cudaErrorMemoryAllocation ? CS_ENOMEM : CS_EDEVICE;
    }
    precision = CS_PREC_FP32;
    held = peak = 0;
    err_unread = 0, err_text[0] = 0;
    return 0;
}

void cs_cuda_mem_shutdown(void)
{
    /* a pool with blocks still out outlives its destroy call: give back
     * every block first (weights, scratch, activations left behind) */
    if (stream)
        for (size_t i = 0; i < live_cap; i++)
            if (live[i].p) cudaFreeAsync((void *)live[i].p, stream);
    if (stream) cudaStreamSynchronize(stream);
    if (pool) cudaMemPoolDestroy(pool);
    if (stream) cudaStreamDestroy(stream);
    (void)cudaGetLastError();
    pool = NULL, stream = NULL;
    free(wc);
    wc = NULL, wc_n = wc_cap = 0;
    free(rw);
    rw = NULL, rw_n = rw_cap = 0;
    free(live);
    live = NULL, live_cap = live_n = 0;
    held = peak = 0;
    memset(scratch, 0, sizeof scratch);
    precision = CS_PREC_FP32;
}
