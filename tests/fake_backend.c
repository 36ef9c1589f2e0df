/* A fake device plugin for tests (like hwloc's fake component), with
 * "shadow memory" the host cannot touch, so that CI without a GPU catches
 * what a GPU would punish:
 *   - alloc reserves an address range with PROT_NONE and keeps the bytes in
 *     a second, read/write mapping: a network body that reads or writes
 *     device memory itself dies with SIGSEGV, as it would on a GPU.
 *   - every op looks each device pointer up in the table of allocations
 *     (the range it touches must lie inside one allocation), and refuses a
 *     host pointer with an error instead of running.
 *   - the op itself is libcascade's CPU op, run on the real addresses with
 *     cs_dev set to NULL for the call, so results equal the CPU path bit
 *     for bit; fresh device memory is filled with NaN, as a GPU's is not
 *     zeroed either.
 *   - weights: weight_f32 makes a device copy keyed by the host pointer and
 *     checks on each use that the host bytes did not change since (a cached
 *     copy of freed or rewritten host memory means a missing forget()).
 * It counts op calls (fake_backend_calls, fake_backend_last_op) so tests can
 * tell the device path was taken. Two made-up devices are listed (none, with
 * a reason, under FAKE_BACKEND_NODEV); FAKE_BACKEND_FAIL makes init fail;
 * FAKE_ABI overrides the ABI number and FAKE_NO_EMBED leaves an op out, to
 * test the loader's refusals; FAKE_NO_BACKWARD leaves out the optional
 * backward and optimizer ops (the plugin loads, grad.h's functions give
 * CS_EUNSUP). weight_rw marks a copy writable: views inside its host range
 * are then served from it (as the CUDA plugin does). It links its own static copy of libcascade's
 * engine (libcascade_internal.la) for the CPU ops, since libcascade.so
 * exports only the public API; init() sets up that copy's kernel table. */
#include "backend.h"
#include "blocks.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "grad.h"
#include "kernels.h"
#include "optim.h"
#include "ops.h"
#include "safetensors.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef FAKE_ABI
#define FAKE_ABI CS_BACKEND_ABI
#endif

/* built with -fvisibility=hidden: what the loader and the tests look up is marked */
#define FAKE_VISIBLE __attribute__((visibility("default")))
FAKE_VISIBLE unsigned long fake_backend_calls;        /* ops run (memory management not counted) */
FAKE_VISIBLE const char *fake_backend_last_op = "";   /* the op table's field name of the last op */
int fake_backend_precision;              /* as set; the fake always computes in fp32 */
/* the SIMD level its copy of the engine runs (cs_simd_level; -1 before
 * init): a test comparing bits checks that its own copy runs the same one */
FAKE_VISIBLE int fake_backend_simd = -1;

/* ---- shadow memory ---- */

typedef struct {
    char *base;   /* what the caller sees: PROT_NONE */
    char *real;   /* where the bytes are */
    size_t bytes, len;
} region;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static region *regs;
static size_t nregs, capregs, held, peak;
static int pending;   /* an error to report at the next sync/download (free of a non-device pointer) */
static _Thread_local char errbuf[512];

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

/* the region holding p, or -1 (call with mu held) */
static long find(const void *p)
{
    for (size_t i = 0; i < nregs; i++)
        if ((const char *)p >= regs[i].base && (const char *)p < regs[i].base + regs[i].len) return (long)i;
    return -1;
}

static void *dalloc(size_t bytes)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), len = ((bytes ? bytes : 1) + pg - 1) / pg * pg;
    char *b = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    pthread_mutex_lock(&mu);
    if (nregs == capregs) {
        size_t cap = capregs ? 2 * capregs : 64;
        region *g = realloc(regs, cap * sizeof *g);
        if (g) regs = g, capregs = cap;
    }
    if (b == MAP_FAILED || r == MAP_FAILED || nregs == capregs) {
        pthread_mutex_unlock(&mu);
        if (b != MAP_FAILED) munmap(b, len);
        if (r != MAP_FAILED) munmap(r, len);
        fail(CS_ENOMEM, "fake device: out of memory for %zu bytes", bytes);
        return NULL;
    }
    regs[nregs++] = (region){b, r, bytes, len};
    held += len;
    if (held > peak) peak = held;
    pthread_mutex_unlock(&mu);
    memset(r, 0xff, bytes);   /* NaN: device memory starts as garbage */
    return b;
}

static void dfree(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&mu);
    long i = find(p);
    if (i < 0 || regs[i].base != p) {
        pthread_mutex_unlock(&mu);
        if (!pending) pending = fail(CS_EARG, "fake device: free(%p): not the start of a device allocation", p);
        return;
    }
    region g = regs[i];
    regs[i] = regs[--nregs];
    held -= g.len;
    pthread_mutex_unlock(&mu);
    munmap(g.base, g.len);
    munmap(g.real, g.len);
}

/* One op call: the real address of each device argument, or the first
 * refusal in rc. */
typedef struct {
    const char *op;
    int rc;
} call;

static call enter(const char *op)
{
    __atomic_add_fetch(&fake_backend_calls, 1, __ATOMIC_RELAXED);
    fake_backend_last_op = op;
    return (call){op, 0};
}

/* the real address of device range [p, p + bytes) */
static void *real_bytes(call *c, const void *p, size_t bytes, const char *arg)
{
    if (c->rc) return NULL;
    if (!p) {
        c->rc = fail(CS_EARG, "fake device: %s: %s is NULL", c->op, arg);
        return NULL;
    }
    pthread_mutex_lock(&mu);
    long i = find(p);
    region g = i >= 0 ? regs[i] : (region){0};
    pthread_mutex_unlock(&mu);
    if (i < 0) {
        c->rc = fail(CS_EARG, "fake device: %s: %s=%p is not a device pointer", c->op, arg, p);
        return NULL;
    }
    size_t off = (size_t)((const char *)p - g.base);
    if (off > g.bytes || bytes > g.bytes - off) {
        c->rc = fail(CS_EARG, "fake device: %s: %s: %zu bytes at offset %zu of a %zu-byte allocation", c->op, arg,
                     bytes, off, g.bytes);
        return NULL;
    }
    return g.real + off;
}

/* n floats at device pointer p; opt: p may be NULL */
static float *dv(call *c, const void *p, size_t n, const char *arg) { return real_bytes(c, p, n * sizeof(float), arg); }
static float *opt(call *c, const void *p, size_t n, const char *arg) { return p ? dv(c, p, n, arg) : NULL; }
/* rows of cols floats, ld apart */
static float *dv2(call *c, const void *p, size_t rows, size_t cols, size_t ld, const char *arg)
{
    return dv(c, p, rows ? (rows - 1) * ld + cols : 0, arg);
}

/* a pointer that must be host memory (weights, ids) */
static void host_only(call *c, const void *p, const char *arg)
{
    if (c->rc || !p) return;
    pthread_mutex_lock(&mu);
    long i = find(p);
    pthread_mutex_unlock(&mu);
    if (i >= 0) c->rc = fail(CS_EARG, "fake device: %s: %s=%p is device memory, expected host memory", c->op, arg, p);
}

/* Runs the CPU op: device mode off for this thread during the call. */
#define ON_HOST(stmt)                         \
    do {                                      \
        const cs_dev_ops *saved_ = cs_dev;    \
        cs_dev = NULL;                        \
        stmt;                                 \
        cs_dev = saved_;                      \
    } while (0)

static int done(call *c, int rc)
{
    if (rc && !c->rc) c->rc = fail(rc, "fake device: %s: %s", c->op, cs_last_error());
    return c->rc;
}

/* ---- memory ---- */

static int upload(void *dst, const void *host, size_t bytes)
{
    call c = {"upload", 0};
    void *r = real_bytes(&c, dst, bytes, "dst");
    host_only(&c, host, "host");
    if (!c.rc) memcpy(r, host, bytes);
    return c.rc;
}

static int download(void *host, const void *src, size_t bytes)
{
    call c = {"download", pending};
    const void *r = real_bytes(&c, src, bytes, "src");
    host_only(&c, host, "host");
    if (!c.rc) memcpy(host, r, bytes);
    pending = 0;
    return c.rc;
}

static int dsync(void)
{
    int rc = pending;
    pending = 0;
    return rc;
}

static int copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols)
{
    call c = enter("copy2d");
    float *d = dv2(&c, dst, rows, cols, ldd, "dst");
    const float *s = dv2(&c, src, rows, cols, lds, "src");
    if (!c.rc) ON_HOST(cs_copy2d(d, ldd, s, lds, rows, cols));
    return c.rc;
}

static int fill(float *dst, float v, size_t n)
{
    call c = enter("fill");
    float *d = dv(&c, dst, n, "dst");
    if (!c.rc) ON_HOST(cs_fill(d, v, n));
    return c.rc;
}

/* ---- weights: one device copy per host pointer ---- */

typedef struct {
    const void *host;
    cs_dtype dtype;
    size_t n, bytes;
    uint64_t sum;
    float *dev;
    int rw;        /* weight_rw: the device owns the values; views inside resolve here */
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
    call c = {"weight_f32", 0};
    host_only(&c, t->data, nm);
    if (c.rc) {
        snprintf(err, errlen, "%s", errbuf);
        return NULL;
    }
    uint64_t sum = checksum(t->data, bytes);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nwc; i++) {   /* a float32 view inside a writable copy */
        const char *h = wc[i].host, *d = t->data;
        if (wc[i].rw && t->dtype == CS_F32 && d >= h && d + bytes <= h + wc[i].bytes && ((size_t)(d - h)) % 4 == 0) {
            float *r = wc[i].dev + (d - h) / 4;
            pthread_mutex_unlock(&mu);
            return r;
        }
    }
    for (size_t i = 0; i < nwc; i++)
        if (wc[i].host == t->data && wc[i].dtype == t->dtype && wc[i].n == n) {
            float *d = wc[i].dev;
            int stale = wc[i].sum != sum;
            pthread_mutex_unlock(&mu);
            if (!stale) return d;
            snprintf(err, errlen, "fake device: %s: host data at %p changed since its device copy was made (no forget())",
                     nm, t->data);
            fail(CS_EARG, "%s", err);
            return NULL;
        }
    pthread_mutex_unlock(&mu);
    float *d = dalloc(n * sizeof(float));
    float *r = d ? dv(&c, d, n, nm) : NULL;
    int rc = r ? cs_tensor_to_f32(t, r) : CS_ENOMEM;
    pthread_mutex_lock(&mu);
    if (!rc && nwc == capwc) {
        size_t cap = capwc ? 2 * capwc : 64;
        wcopy *g = realloc(wc, cap * sizeof *g);
        if (g) wc = g, capwc = cap;
        else rc = CS_ENOMEM;
    }
    if (!rc) wc[nwc++] = (wcopy){t->data, t->dtype, n, bytes, sum, d, 0};
    pthread_mutex_unlock(&mu);
    if (rc) {
        dfree(d);
        snprintf(err, errlen, "fake device: %s: %s", nm, rc == CS_ENOMEM ? "out of device memory" : cs_last_error());
        fail(rc, "%s", err);
        return NULL;
    }
    return d;
}

static void forget(const void *host, size_t bytes)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nwc;) {
        const char *h = wc[i].host;
        if (h >= (const char *)host && h < (const char *)host + bytes) {
            float *d = wc[i].dev;
            wc[i] = wc[--nwc];
            pthread_mutex_unlock(&mu);
            dfree(d);
            pthread_mutex_lock(&mu);
        } else i++;
    }
    pthread_mutex_unlock(&mu);
}

/* the float32 copy of t, writable; copies of other views in its range go */
static float *weight_rw(const cs_tensor *t, char *err, size_t errlen)
{
    const char *nm = t->name ? t->name : "weight";
    if (t->dtype != CS_F32) {
        snprintf(err, errlen, "fake device: %s: weight_rw of a %s weight (float32 only)", nm, cs_dtype_name(t->dtype));
        fail(CS_EARG, "%s", err);
        return NULL;
    }
    size_t bytes = (size_t)cs_tensor_numel(t) * sizeof(float);
    const char *lo = t->data, *hi = lo + bytes;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nwc;) {
        const char *h = wc[i].host;
        if (wc[i].rw && h == lo && wc[i].bytes == bytes) {
            float *d = wc[i].dev;
            pthread_mutex_unlock(&mu);
            return d;
        }
        if (h >= lo && h < hi && !(h == lo && wc[i].dtype == CS_F32 && wc[i].bytes == bytes)) {
            float *d = wc[i].dev;   /* a view's own copy: it would go stale */
            wc[i] = wc[--nwc];
            pthread_mutex_unlock(&mu);
            dfree(d);
            pthread_mutex_lock(&mu);
        } else i++;
    }
    pthread_mutex_unlock(&mu);
    float *d = (float *)weight_f32(t, err, errlen);
    if (!d) return NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nwc; i++)
        if (wc[i].dev == d) wc[i].rw = 1;
    pthread_mutex_unlock(&mu);
    return d;
}

/* the writable copy holding t's values (its index), or -1; under mu */
static long rw_of(const cs_tensor *t)
{
    if (!t || !t->data || t->dtype != CS_F32) return -1;
    const char *d = t->data;
    size_t bytes = (size_t)cs_tensor_numel(t) * sizeof(float);
    for (size_t i = 0; i < nwc; i++) {
        const char *h = wc[i].host;
        if (wc[i].rw && d >= h && d + bytes <= h + wc[i].bytes) return (long)i;
    }
    return -1;
}

static int in_rw(const cs_tensor *t)
{
    pthread_mutex_lock(&mu);
    long i = rw_of(t);
    pthread_mutex_unlock(&mu);
    return i >= 0;
}

/* Ops that take weights as tensors read them on the host: a weight whose
 * values the device owns (weight_rw) is read from the device copy instead,
 * as a view of its real bytes in tmp. */
static const cs_tensor *rw_sub(const cs_tensor *t, cs_tensor *tmp)
{
    pthread_mutex_lock(&mu);
    long i = rw_of(t);
    if (i >= 0) {
        long r = find(wc[i].dev);
        *tmp = *t;
        tmp->data = regs[r].real + ((const char *)wc[i].dev - regs[r].base) + ((const char *)t->data - (const char *)wc[i].host);
        t = tmp;
    }
    pthread_mutex_unlock(&mu);
    return t;
}

static int set_precision(int prec)
{
    if (prec != CS_PREC_FP32 && prec != CS_PREC_BF16 && prec != CS_PREC_FP16)
        return fail(CS_EUNSUP, "fake device: no precision %d", prec);
    fake_backend_precision = prec;
    return 0;
}

static size_t mem_peak(int reset)
{
    pthread_mutex_lock(&mu);
    size_t p = peak;
    if (reset) peak = held;
    pthread_mutex_unlock(&mu);
    return p;
}

static const char *errmsg(void) { return errbuf; }

static int mem_info(size_t *fr, size_t *tot, char *name, size_t len)
{
    *tot = (size_t)24 << 30;
    pthread_mutex_lock(&mu);
    *fr = *tot - held;
    pthread_mutex_unlock(&mu);
    snprintf(name, len, "Fake GPU 0 (fake:0)");
    return 0;
}

/* ---- ops: each device argument translated, then the CPU op ---- */

static int linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                  size_t ldy, int accumulate)
{
    call c = enter("linear");
    size_t N = (size_t)W->shape[0];
    const float *rx = dv2(&c, x, M, K, ldx, "x");
    float *ry = dv2(&c, y, M, N, ldy, "y");
    host_only(&c, W->data, "W");
    host_only(&c, b ? b->data : NULL, "b");
    int rc = 0;
    cs_tensor tw, tb;
    W = rw_sub(W, &tw), b = rw_sub(b, &tb);
    if (!c.rc) ON_HOST(rc = cs_linear(rx, M, K, ldx, W, b, ry, ldy, accumulate));
    return done(&c, rc);
}

static int sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                 size_t ldb, float beta, float *C, size_t ldc)
{
    call c = enter("sgemm");
    const float *rA = dv2(&c, A, M, K, lda, "A");
    const float *rB = transB ? dv2(&c, B, N, K, ldb, "B") : dv2(&c, B, K, N, ldb, "B");
    float *rC = dv2(&c, C, M, N, ldc, "C");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_sgemm(transB, M, N, K, alpha, rA, lda, rB, ldb, beta, rC, ldc));
    return done(&c, rc);
}

static int layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    call c = enter("layernorm");
    const float *rx = dv(&c, x, rows * C, "x"), *rw = opt(&c, w, C, "w"), *rb = opt(&c, b, C, "b");
    float *ry = dv(&c, y, rows * C, "y");
    if (!c.rc) ON_HOST(cs_layernorm(rx, ry, rows, C, eps, rw, rb));
    return c.rc;
}

static int unary(int kind, const float *x, float *y, size_t n)
{
    call c = enter("unary");
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc && (kind < 0 || kind > 3)) c.rc = fail(CS_EARG, "fake device: unary: no kind %d", kind);
    if (c.rc) return c.rc;
    void (*const f[4])(const float *, float *, size_t) = {cs_gelu, cs_quick_gelu, cs_silu, cs_sigmoid};
    ON_HOST(f[kind](rx, ry, n));
    return 0;
}

static int add(const float *a, const float *b, float *y, size_t n)
{
    call c = enter("add");
    const float *ra = dv(&c, a, n, "a"), *rb = dv(&c, b, n, "b");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc) ON_HOST(cs_add(ra, rb, ry, n));
    return c.rc;
}

static int scale(const float *x, float s, float *y, size_t n)
{
    call c = enter("scale");
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc) ON_HOST(cs_scale(rx, s, ry, n));
    return c.rc;
}

static int axpy(float *y, const float *x, float g, size_t n)
{
    call c = enter("axpy");
    float *ry = dv(&c, y, n, "y");
    const float *rx = dv(&c, x, n, "x");
    if (!c.rc) ON_HOST(cs_axpy(ry, rx, g, n));
    return c.rc;
}

static int grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta)
{
    call c = enter("grn");
    const float *rx = dv(&c, x, N * HW * C, "x"), *rg = dv(&c, gamma, C, "gamma"), *rb = dv(&c, beta, C, "beta");
    float *ry = dv(&c, y, N * HW * C, "y");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_grn(rx, ry, N, HW, C, rg, rb));
    return done(&c, rc);
}

static int modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                    size_t ldab)
{
    call c = enter("modulate");
    const float *rx = dv(&c, x, N * HW * C, "x"), *ra = dv2(&c, a, N, C, ldab, "a"), *rb = dv2(&c, b, N, C, ldab, "b");
    float *ry = dv(&c, y, N * HW * C, "y");
    if (!c.rc) ON_HOST(cs_modulate(rx, ry, N, HW, C, ra, rb, ldab));
    return c.rc;
}

static int channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t)
{
    call c = enter("channel_affine");
    const float *rx = dv(&c, x, rows * C, "x"), *rs = dv(&c, s, C, "s"), *rt = dv(&c, t, C, "t");
    float *ry = dv(&c, y, rows * C, "y");
    if (!c.rc) ON_HOST(cs_channel_affine(rx, ry, rows, C, rs, rt));
    return c.rc;
}

static int dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                     const cs_tensor *bias, int replicate)
{
    call c = enter("dwconv3x3");
    const float *rx = dv(&c, x, N * H * W * C, "x");
    float *ry = dv(&c, y, N * H * W * C, "y");
    host_only(&c, w->data, "w");
    host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    cs_tensor tw, tb;
    w = rw_sub(w, &tw), bias = rw_sub(bias, &tb);
    if (!c.rc) ON_HOST(rc = cs_dwconv3x3(rx, ry, N, H, W, C, w, bias, replicate));
    return done(&c, rc);
}

static int conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w, const cs_tensor *bias,
                  int stride, int pad, int groups, float *y, size_t Ho, size_t Wo)
{
    call c = enter("conv2d");
    const float *rx = dv(&c, x, N * H * W * Cin, "x");
    float *ry = dv(&c, y, N * Ho * Wo * (size_t)w->shape[0], "y");
    host_only(&c, w->data, "w");
    host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    size_t ho = 0, wo = 0;
    cs_tensor tw, tb;
    w = rw_sub(w, &tw), bias = rw_sub(bias, &tb);
    if (!c.rc) ON_HOST(rc = cs_conv2d(rx, N, H, W, Cin, w, bias, stride, pad, groups, ry, &ho, &wo));
    if (!rc && (ho != Ho || wo != Wo)) return fail(CS_EARG, "fake device: conv2d: output %zux%zu given, %zux%zu computed", Ho, Wo, ho, wo);
    return done(&c, rc);
}

static int conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                            const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo)
{
    call c = enter("conv_transpose2d");
    const float *rx = dv(&c, x, N * H * W * Cin, "x");
    float *ry = dv(&c, y, N * Ho * Wo * (size_t)w->shape[1], "y");
    host_only(&c, w->data, "w");
    host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    size_t ho = 0, wo = 0;
    if (!c.rc) ON_HOST(rc = cs_conv_transpose2d(rx, N, H, W, Cin, w, bias, stride, pad, ry, &ho, &wo));
    if (!rc && (ho != Ho || wo != Wo))
        return fail(CS_EARG, "fake device: conv_transpose2d: output %zux%zu given, %zux%zu computed", Ho, Wo, ho, wo);
    return done(&c, rc);
}

static int attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                     size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo)
{
    call c = enter("attention");
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk = dv2(&c, k, N * Lk, C, ldk, "k"),
                *rv = dv2(&c, v, N * Lk, C, ldv, "v"), *rm = opt(&c, mask, N * Lq * Lk, "mask");
    float *ro = dv2(&c, o, N * Lq, C, ldo, "o");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_attention(rq, ldq, rk, ldk, rv, ldv, N, Lq, Lk, C, nhead, rm, ro, ldo));
    return done(&c, rc);
}

/* keys/values gathered on the host as the CPU path gathers them, so the
 * results equal the CPU's bit for bit */
static int attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                         const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                         int nhead, float *o, size_t ldo)
{
    call c = enter("attention_cat");
    size_t Lk = L1 + L2;
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk1 = L1 ? dv2(&c, k1, N * L1, C, ld1, "k1") : NULL,
                *rv1 = L1 ? dv2(&c, v1, N * L1, C, ld1, "v1") : NULL, *rk2 = L2 ? dv2(&c, k2, N * L2, C, ld2, "k2") : NULL,
                *rv2 = L2 ? dv2(&c, v2, N * L2, C, ld2, "v2") : NULL;
    float *ro = dv2(&c, o, N * Lq, C, ldo, "o");
    float *kv = malloc(N * Lk * 2 * C * sizeof(float) + 1);
    if (!kv) return fail(CS_ENOMEM, "fake device: attention_cat: out of memory");
    for (size_t n = 0; n < N && !c.rc; n++)
        for (size_t j = 0; j < Lk; j++) {
            int s = j >= L1;
            size_t r = n * (s ? L2 : L1) + (s ? j - L1 : j), ld = s ? ld2 : ld1;
            memcpy(kv + (n * Lk + j) * 2 * C, (s ? rk2 : rk1) + r * ld, C * sizeof(float));
            memcpy(kv + (n * Lk + j) * 2 * C + C, (s ? rv2 : rv1) + r * ld, C * sizeof(float));
        }
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_attention(rq, ldq, kv, 2 * C, kv + C, 2 * C, N, Lq, Lk, C, nhead, NULL, ro, ldo));
    free(kv);
    return done(&c, rc);
}

static int resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo)
{
    call c = enter("resize_bilinear");
    const float *rx = dv(&c, x, N * H * W * C, "x");
    float *ry = dv(&c, y, N * Ho * Wo * C, "y");
    if (!c.rc) ON_HOST(cs_resize_bilinear(rx, N, H, W, C, ry, Ho, Wo));
    return c.rc;
}

static int pixel_shuffle(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    call c = enter("pixel_shuffle");
    size_t n = N * H * W * C * (up ? (size_t)(r * r) : 1);
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (c.rc) return c.rc;
    if (up) ON_HOST(cs_pixel_shuffle(rx, N, H, W, C, r, ry));
    else ON_HOST(cs_pixel_unshuffle(rx, N, H, W, C, r, ry));
    return 0;
}

static int transpose(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW)
{
    call c = enter("transpose");
    const float *rx = dv(&c, x, N * C * HW, "x");
    float *ry = dv(&c, y, N * C * HW, "y");
    if (c.rc) return c.rc;
    if (to_nhwc) ON_HOST(cs_nchw_to_nhwc(rx, ry, N, C, HW));
    else ON_HOST(cs_nhwc_to_nchw(rx, ry, N, C, HW));
    return 0;
}

static int concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows)
{
    call c = enter("concat_channels");
    const float *ra = dv(&c, a, rows * Ca, "a"), *rb = dv(&c, b, rows * Cb, "b");
    float *ry = dv(&c, y, rows * (Ca + Cb), "y");
    if (!c.rc) ON_HOST(cs_concat_channels(ra, Ca, rb, Cb, ry, rows));
    return c.rc;
}

__attribute__((unused)) static int embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out)
{
    call c = enter("embed_rows");
    float *ro = dv(&c, out, n * (size_t)(table->ndim == 2 ? table->shape[1] : 0), "out");
    host_only(&c, table->data, "table");
    host_only(&c, ids, "ids");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_embed_rows(table, ids, n, ro));
    return done(&c, rc);
}

static int r_embed(const float *r, size_t N, int c_r, const float *freq, float *emb)
{
    call c = enter("r_embed");
    const float *rr = dv(&c, r, N, "r");
    float *re = dv(&c, emb, N * (size_t)c_r, "emb");
    host_only(&c, freq, "freq");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_r_embedding(rr, N, c_r, re));
    return done(&c, rc);
}

/* a ResBlock / FeedForwardBlock as the CPU's single ops compose it (so
 * results stay equal to the CPU's bit for bit), to exercise the fused
 * op's dispatch */
static int block_host(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                      const cs_mlp_block *w)
{
    size_t rows = N * H * W, cin = c + cs, c4 = (size_t)w->fc1_w->shape[0];
    float *t = malloc(rows * c * sizeof(float) + 1), *cat = malloc(rows * cin * sizeof(float) + 1),
          *h = malloc(rows * c4 * sizeof(float) + 1);
    const float *g = NULL, *be = NULL;
    int rc = t && cat && h ? 0 : CS_ENOMEM;
    if (!rc && w->dw_w) rc = cs_dwconv3x3(x, t, N, H, W, c, w->dw_w, w->dw_b, 0);
    if (!rc) cs_layernorm(w->dw_w ? t : x, t, rows, c, 1e-6f, NULL, NULL);
    if (!rc && skip) cs_concat_channels(t, c, skip, cs, cat, rows);
    const float *in = skip ? cat : t;
    if (!rc) rc = cs_linear(in, rows, cin, 0, w->fc1_w, w->fc1_b, h, 0, 0);
    if (!rc) cs_gelu(h, h, rows * c4);
    /* after the ops above: their bf16 weights pass through the same scratch slots */
    if (!rc && (!(g = cs_weight_f32(w->gamma, 2)) || !(be = cs_weight_f32(w->beta, 3)))) rc = CS_ENOMEM;
    if (!rc) rc = cs_grn(h, h, N, H * W, c4, g, be);
    if (!rc) rc = cs_linear(h, rows, c4, 0, w->fc2_w, w->fc2_b, x, 0, 1);
    free(t), free(cat), free(h);
    return rc;
}

static int mlp_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                     const cs_mlp_block *w)
{
    if (in_rw(w->fc1_w) || in_rw(w->fc2_w) || in_rw(w->gamma) || in_rw(w->beta) || in_rw(w->fc1_b) ||
        in_rw(w->fc2_b) || in_rw(w->dw_w) || in_rw(w->dw_b))
        return CS_EUNSUP;   /* block_host reads host weights: the single ops take the device's */
    call cl = enter("mlp_block");
    size_t rows = N * H * W;
    float *rx = dv(&cl, x, rows * c, "x");
    const float *rs = skip ? dv(&cl, skip, rows * cs, "skip") : NULL;
    host_only(&cl, w->fc1_w->data, "fc1");
    host_only(&cl, w->fc2_w->data, "fc2");
    int rc = 0;
    if (!cl.rc) ON_HOST(rc = block_host(rx, N, H, W, c, rs, cs, w));
    return done(&cl, rc);
}

/* a TimestepBlock through the CPU's single-op forward (bit-equal to the CPU) */
static int ts_block(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                    const cs_tensor *w, const cs_tensor *b)
{
    for (int i = 0; i <= nconds; i++)
        if (in_rw(&w[i]) || in_rw(&b[i])) return CS_EUNSUP;
    call cl = enter("ts_block");
    float *rx = dv(&cl, x, N * HW * c, "x");
    const float *rt = dv2(&cl, t, N, c_r * (size_t)(nconds + 1), ldt, "t");
    host_only(&cl, w[0].data, "w");
    cs_tsblock tb = {.c = (int)c, .c_r = (int)c_r, .nconds = nconds};
    for (int i = 0; i <= nconds && i <= CS_MAX_TCONDS; i++) tb.w[i] = w[i], tb.b[i] = b[i];
    cs_ws ws = {0};
    int rc = nconds > CS_MAX_TCONDS ? CS_EUNSUP : 0;
    if (!cl.rc && !rc) ON_HOST(rc = cs_tsblock_forward(&tb, rx, N, HW, rt, ldt, &ws));
    cs_ws_free(&ws);
    return done(&cl, rc);
}

/* an AttnBlock through the CPU's single-op forward (bit-equal to the CPU) */
static int attn_block(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond, size_t Lc,
                      size_t cc, const cs_attn_block *w)
{
    if (in_rw(w->wq) || in_rw(w->wk) || in_rw(w->wv) || in_rw(w->wo) || in_rw(w->bo) || in_rw(w->kv_w) ||
        in_rw(w->kv_b) || in_rw(w->bq) || in_rw(w->bk) || in_rw(w->bv))
        return CS_EUNSUP;
    call cl = enter("attn_block");
    float *rx = dv(&cl, x, N * HW * c, "x");
    const float *rc_ = Lc ? dv(&cl, cond, N * Lc * cc, "cond") : NULL;
    host_only(&cl, w->wq->data, "wq");
    host_only(&cl, w->wo->data, "wo");
    cs_attnblock b = {.c = (int)c, .c_cond = (int)cc, .nhead = nhead, .packed = w->wqkv != NULL,
                      .self_attn = self_attn, .wq = *w->wq, .wk = *w->wk, .wv = *w->wv, .bq = *w->bq,
                      .bk = *w->bk, .bv = *w->bv, .wo = *w->wo, .bo = *w->bo, .kv_w = *w->kv_w, .kv_b = *w->kv_b};
    if (w->wqkv) b.wqkv = *w->wqkv, b.bqkv = *w->bqkv;
    cs_ws ws = {0};
    int rc = 0;
    if (!cl.rc) ON_HOST(rc = cs_attnblock_forward(&b, rx, N, HW, rc_, Lc, &ws));
    cs_ws_free(&ws);
    return done(&cl, rc);
}

/* ---- the backward ops (grad.h), run by the CPU's functions ---- */
#ifndef FAKE_NO_BACKWARD

static int sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                    float *C, size_t ldc)
{
    call c = enter("sgemm_tn");
    const float *rA = dv2(&c, A, K, M, lda, "A"), *rB = dv2(&c, B, K, N, ldb, "B");
    float *rC = dv2(&c, C, M, N, ldc, "C");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_sgemm_tn(M, N, K, rA, lda, rB, ldb, beta, rC, ldc));
    return done(&c, rc);
}

static int linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                           size_t ldy, float *dx, int acc, float *dW, float *db)
{
    call c = enter("linear_backward");
    size_t N = (size_t)W->shape[0], lx = ldx ? ldx : K, ly = ldy ? ldy : N;
    const float *rx = dW ? dv2(&c, x, M, K, lx, "x") : opt(&c, x, 0, "x"), *rdy = dv2(&c, dy, M, N, ly, "dy");
    float *rdx = dx ? dv2(&c, dx, M, K, lx, "dx") : NULL, *rdW = opt(&c, dW, N * K, "dW"), *rdb = opt(&c, db, N, "db");
    host_only(&c, W->data, "W");
    int rc = 0;
    cs_tensor tw;
    W = rw_sub(W, &tw);
    if (!c.rc) ON_HOST(rc = cs_linear_backward(rx, M, K, ldx, W, rdy, ldy, rdx, acc, rdW, rdb));
    return done(&c, rc);
}

static int layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                              const float *w, float *dw, float *db)
{
    call c = enter("layernorm_backward");
    const float *rx = dv(&c, x, rows * C, "x"), *rdy = dv(&c, dy, rows * C, "dy"), *rw = opt(&c, w, C, "w");
    float *rdx = opt(&c, dx, rows * C, "dx"), *rdw = opt(&c, dw, C, "dw"), *rdb = opt(&c, db, C, "db");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_layernorm_backward(rx, rdy, rdx, acc, rows, C, eps, rw, rdw, rdb));
    return done(&c, rc);
}

static int gelu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    call c = enter("gelu_backward");
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy");
    float *rdx = dv(&c, dx, n, "dx");
    if (!c.rc) ON_HOST(cs_gelu_backward(rx, rdy, rdx, n));
    return c.rc;
}

static int silu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    call c = enter("silu_backward");
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy");
    float *rdx = dv(&c, dx, n, "dx");
    if (!c.rc) ON_HOST(cs_silu_backward(rx, rdy, rdx, n));
    return c.rc;
}

static int grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                        float *dgamma, float *dbeta)
{
    call c = enter("grn_backward");
    size_t n = N * HW * C;
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy"), *rg = dv(&c, gamma, C, "gamma");
    float *rdx = opt(&c, dx, n, "dx"), *rdg = opt(&c, dgamma, C, "dgamma"), *rdb = opt(&c, dbeta, C, "dbeta");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_grn_backward(rx, rdy, rdx, N, HW, C, rg, rdg, rdb));
    return done(&c, rc);
}

static int modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *a,
                             size_t ldab, float *da, float *db)
{
    call c = enter("modulate_backward");
    size_t n = N * HW * C;
    const float *rx = dv(&c, x, n, "x"), *rdy = dv(&c, dy, n, "dy"),
                *ra = dx ? dv2(&c, a, N, C, ldab, "a") : NULL;
    float *rdx = opt(&c, dx, n, "dx"), *rda = da ? dv2(&c, da, N, C, ldab, "da") : NULL,
          *rdb = db ? dv2(&c, db, N, C, ldab, "db") : NULL;
    if (!c.rc) ON_HOST(cs_modulate_backward(rx, rdy, rdx, N, HW, C, ra, ldab, rda, rdb));
    return c.rc;
}

static int dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C,
                           int k, const float *w, float *dw, float *db)
{
    call c = enter("dwconv_backward");
    size_t n = N * H * W * C, kk = (size_t)k * (size_t)k;
    const float *rx = dw ? dv(&c, x, n, "x") : NULL, *rdy = dv(&c, dy, n, "dy"), *rw = dx ? dv(&c, w, C * kk, "w") : NULL;
    float *rdx = opt(&c, dx, n, "dx"), *rdw = opt(&c, dw, C * kk, "dw"), *rdb = opt(&c, db, C, "db");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_dwconv_backward(rx, rdy, rdx, acc, N, H, W, C, k, rw, rdw, rdb));
    return done(&c, rc);
}

static int attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                              const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                              float *dq, float *dk, float *dv, int acc)
{
    call c = enter("attention_backward");
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk = dv2(&c, k, N * Lk, C, ldk, "k"),
                *rv = dv2(&c, v, N * Lk, C, ldv, "v"), *rdo = dv2(&c, do_, N * Lq, C, ldo, "do");
    float *rdq = dq ? dv2(&c, dq, N * Lq, C, ldq, "dq") : NULL, *rdk = dk ? dv2(&c, dk, N * Lk, C, ldk, "dk") : NULL,
          *rdv = dv ? dv2(&c, dv, N * Lk, C, ldv, "dv") : NULL;
    int rc = 0;
    if (!c.rc)
        ON_HOST(rc = cs_attention_backward(rq, ldq, rk, ldk, rv, ldv, rdo, ldo, N, Lq, Lk, C, nhead, rdq, rdk, rdv, acc));
    return done(&c, rc);
}

/* ---- the optimizer ops (optim.h), run by the CPU's functions ---- */

static int sumsq(const float *x, size_t n, double *out)
{
    call c = enter("sumsq");
    const float *rx = dv(&c, x, n, "x");
    double *ro = real_bytes(&c, out, sizeof(double), "out");
    if (!c.rc) *ro = cs_sumsq(rx, n);
    return c.rc;
}

static int adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v)
{
    call c = enter("adamw_update");
    host_only(&c, k, "k");
    float *rp = dv(&c, p, n, "p"), *rm = dv(&c, m, n, "m"), *rv = dv(&c, v, n, "v");
    const float *rg = dv(&c, g, n, "g");
    if (!c.rc) cs_adamw_update(k, n, rp, rg, rm, rv);
    return c.rc;
}

static int adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g,
                            float *row, float *col, float *v, float *u)
{
    call c = enter("adafactor_update");
    size_t n = B * R * C;
    host_only(&c, k, "k");
    float *rp = dv(&c, p, n, "p"), *ru = dv(&c, u, n, "u");
    const float *rg = dv(&c, g, n, "g");
    float *rr = row ? dv(&c, row, B * R, "row") : NULL, *rc = row ? dv(&c, col, B * C, "col") : NULL,
          *rv = row ? NULL : dv(&c, v, n, "v");
    if (!c.rc) cs_adafactor_update(k, B, R, C, rp, rg, rr, rc, rv, ru);
    return c.rc;
}
#endif

static const cs_dev_ops ops = {
    .alloc = dalloc, .free = dfree, .upload = upload, .download = download, .sync = dsync,
    .copy2d = copy2d, .fill = fill, .weight_f32 = weight_f32, .forget = forget,
    .set_precision = set_precision, .mem_peak = mem_peak, .errmsg = errmsg, .mem_info = mem_info,
    .linear = linear, .sgemm = sgemm, .layernorm = layernorm, .unary = unary, .add = add, .scale = scale,
    .axpy = axpy, .grn = grn, .modulate = modulate, .channel_affine = channel_affine, .dwconv3x3 = dwconv3x3,
    .conv2d = conv2d, .conv_transpose2d = conv_transpose2d, .attention = attention,
    .resize_bilinear = resize_bilinear, .pixel_shuffle = pixel_shuffle, .transpose = transpose,
    .concat_channels = concat_channels, .r_embed = r_embed, .mlp_block = mlp_block, .attention_cat = attention_cat,
    .attn_block = attn_block, .ts_block = ts_block,
#ifndef FAKE_NO_EMBED   /* a plugin with a gap in its op set, which the loader refuses */
    .embed_rows = embed_rows,
#endif
#ifndef FAKE_NO_BACKWARD   /* the backward ops are optional: a plugin without them loads */
    .sgemm_tn = sgemm_tn, .linear_backward = linear_backward, .layernorm_backward = layernorm_backward,
    .gelu_backward = gelu_backward, .silu_backward = silu_backward, .grn_backward = grn_backward,
    .modulate_backward = modulate_backward, .dwconv_backward = dwconv_backward,
    .attention_backward = attention_backward,
    .weight_rw = weight_rw, .sumsq = sumsq, .adamw_update = adamw_update, .adafactor_update = adafactor_update,
#endif
};

/* ---- the plugin ---- */

static int init(char *err, size_t n)
{
    if (getenv("FAKE_BACKEND_FAIL")) {
        snprintf(err, n, "fake failure (FAKE_BACKEND_FAIL)");
        return -1;
    }
    /* the CPU ops run in this plugin's copy of the engine: same SIMD level
     * as the host (both follow CASCADE_SIMD, else the best level) */
    if (cs_simd_init()) {
        snprintf(err, n, "fake: %s", cs_last_error());
        return -1;
    }
    fake_backend_simd = (int)cs_simd_current();
    return 0;
}

/* drops every device copy and allocation */
static void shutdown_(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nregs; i++) {
        munmap(regs[i].base, regs[i].len);
        munmap(regs[i].real, regs[i].len);
    }
    free(regs);
    free(wc);
    regs = NULL, wc = NULL;
    nregs = capregs = nwc = capwc = held = peak = 0;
    pending = 0;
    pthread_mutex_unlock(&mu);
}

static int devices(cs_device_info *out, int max, char *err, size_t n)
{
    if (getenv("FAKE_BACKEND_NODEV")) {
        snprintf(err, n, "no fake device");
        return -6;
    }
    for (int i = 0; i < 2 && i < max; i++) {
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "Fake GPU %d", i);
        out[i].cc_major = 8 + i, out[i].cc_minor = 6 - 6 * i;
        out[i].total_bytes = (size_t)(24 + 56 * i) << 30, out[i].free_bytes = (size_t)(20 + 50 * i) << 30;
        out[i].driver_version = 13000;
        out[i].usable = i == 0;
        if (i) snprintf(out[i].why, sizeof out[i].why, "no kernel image for sm_90");
    }
    return 2;
}

static const cs_backend fake = {.abi = FAKE_ABI, .name = "fake", .version = "fake 1.0", .init = init,
                                .shutdown = shutdown_, .devices = devices, .ops = &ops};

FAKE_VISIBLE const cs_backend *cascade_backend_entry(void) { return &fake; }
