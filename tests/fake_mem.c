/* The fake device's memory (see tests/fake_backend.c): each allocation is
 * an address range with PROT_NONE, which the caller sees, and a second,
 * read/write mapping that holds the bytes, so host code that touches
 * device memory dies with SIGSEGV as it would on a GPU. Each op checks its
 * device pointers here (they must lie inside one allocation) and refuses
 * host pointers where device memory is expected, and the reverse. */
#include "fake_backend.h"

#include "error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *base;   /* what the caller sees: PROT_NONE */
    char *real;   /* where the bytes are */
    size_t bytes, len;
} region;

pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static region *regs;
static size_t nregs, capregs, held, peak;
static int pending;   /* an error to report at the next sync/download (free of a non-device pointer) */
static _Thread_local char errbuf[512];

int fake_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

/* the region holding p, or -1 (call with fake_mu held) */
static long find(const void *p)
{
    for (size_t i = 0; i < nregs; i++)
        if ((const char *)p >= regs[i].base && (const char *)p < regs[i].base + regs[i].len) return (long)i;
    return -1;
}

char *fake_real_locked(const void *p)
{
    long i = find(p);
    return i < 0 ? NULL : regs[i].real + ((const char *)p - regs[i].base);
}

void *fake_dalloc(size_t bytes)
{
    if (!fake_backend_started) {
        fake_fail(CS_EDEVICE, "fake device: alloc while the plugin is shut down");
        return NULL;
    }
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), len = ((bytes ? bytes : 1) + pg - 1) / pg * pg;
    char *b = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    pthread_mutex_lock(&fake_mu);
    if (nregs == capregs) {
        size_t cap = capregs ? 2 * capregs : 64;
        region *g = realloc(regs, cap * sizeof *g);
        if (g) regs = g, capregs = cap;
    }
    if (b == MAP_FAILED || r == MAP_FAILED || nregs == capregs) {
        pthread_mutex_unlock(&fake_mu);
        if (b != MAP_FAILED) munmap(b, len);
        if (r != MAP_FAILED) munmap(r, len);
        fake_fail(CS_ENOMEM, "fake device: out of memory for %zu bytes", bytes);
        return NULL;
    }
    regs[nregs++] = (region){b, r, bytes, len};
    held += len;
    if (held > peak) peak = held;
    pthread_mutex_unlock(&fake_mu);
    memset(r, 0xff, bytes);   /* NaN: device memory starts as garbage */
    return b;
}

void fake_dfree(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&fake_mu);
    long i = find(p);
    if (i < 0 || regs[i].base != p) {
        pthread_mutex_unlock(&fake_mu);
        if (!pending) pending = fake_fail(CS_EARG, "fake device: free(%p): not the start of a device allocation", p);
        return;
    }
    region g = regs[i];
    regs[i] = regs[--nregs];
    held -= g.len;
    pthread_mutex_unlock(&fake_mu);
    munmap(g.base, g.len);
    munmap(g.real, g.len);
}

fake_call fake_enter(const char *op)
{
    __atomic_add_fetch(&fake_backend_calls, 1, __ATOMIC_RELAXED);
    fake_backend_last_op = op;
    return (fake_call){op, 0};
}

/* the real address of device range [p, p + bytes) */
void *fake_real_bytes(fake_call *c, const void *p, size_t bytes, const char *arg)
{
    if (c->rc) return NULL;
    if (!p) {
        c->rc = fake_fail(CS_EARG, "fake device: %s: %s is NULL", c->op, arg);
        return NULL;
    }
    pthread_mutex_lock(&fake_mu);
    long i = find(p);
    region g = i >= 0 ? regs[i] : (region){0};
    pthread_mutex_unlock(&fake_mu);
    if (i < 0) {
        c->rc = fake_fail(CS_EARG, "fake device: %s: %s=%p is not a device pointer", c->op, arg, p);
        return NULL;
    }
    size_t off = (size_t)((const char *)p - g.base);
    if (off > g.bytes || bytes > g.bytes - off) {
        c->rc = fake_fail(CS_EARG, "fake device: %s: %s: %zu bytes at offset %zu of a %zu-byte allocation", c->op, arg,
                     bytes, off, g.bytes);
        return NULL;
    }
    return g.real + off;
}


/* a pointer that must be host memory (weights, ids) */
void fake_host_only(fake_call *c, const void *p, const char *arg)
{
    if (c->rc || !p) return;
    pthread_mutex_lock(&fake_mu);
    long i = find(p);
    pthread_mutex_unlock(&fake_mu);
    if (i >= 0) c->rc = fake_fail(CS_EARG, "fake device: %s: %s=%p is device memory, expected host memory", c->op, arg, p);
}

int fake_done(fake_call *c, int rc)
{
    if (rc && !c->rc) c->rc = fake_fail(rc, "fake device: %s: %s", c->op, cs_last_error());
    return c->rc;
}

static int upload(void *dst, const void *host, size_t bytes)
{
    fake_call c = {"upload", 0};
    void *r = fake_real_bytes(&c, dst, bytes, "dst");
    fake_host_only(&c, host, "host");
    if (!c.rc) memcpy(r, host, bytes);
    if (!c.rc) __atomic_add_fetch(&fake_backend_upload_bytes, bytes, __ATOMIC_RELAXED);
    return c.rc;
}

static int download(void *host, const void *src, size_t bytes)
{
    fake_call c = {"download", pending};
    const void *r = fake_real_bytes(&c, src, bytes, "src");
    fake_host_only(&c, host, "host");
    if (!c.rc) memcpy(host, r, bytes);
    if (!c.rc) __atomic_add_fetch(&fake_backend_download_bytes, bytes, __ATOMIC_RELAXED);
    pending = 0;
    return c.rc;
}

static int dsync(void)
{
    int rc = pending;
    pending = 0;
    return rc;
}

static size_t mem_peak(int reset)
{
    pthread_mutex_lock(&fake_mu);
    size_t p = peak;
    if (reset) peak = held;
    pthread_mutex_unlock(&fake_mu);
    return p;
}

const char *fake_errmsg(void) { return errbuf; }

static int mem_info(size_t *fr, size_t *tot, char *name, size_t len)
{
    *tot = (size_t)24 << 30;
    pthread_mutex_lock(&fake_mu);
    *fr = *tot - held;
    pthread_mutex_unlock(&fake_mu);
    snprintf(name, len, "Fake GPU 0 (fake:0)");
    return 0;
}

void fake_mem_ops(cs_dev_ops *o)
{
    o->alloc = fake_dalloc, o->free = fake_dfree, o->upload = upload, o->download = download, o->sync = dsync;
    o->mem_peak = mem_peak, o->errmsg = fake_errmsg, o->mem_info = mem_info;
}

void fake_mem_release(void)
{
    pthread_mutex_lock(&fake_mu);
    for (size_t i = 0; i < nregs; i++) {
        munmap(regs[i].base, regs[i].len);
        munmap(regs[i].real, regs[i].len);
    }
    free(regs);
    regs = NULL;
    nregs = capregs = held = peak = 0;
    pending = 0;
    pthread_mutex_unlock(&fake_mu);
}
