/* The fake device's memory (see tests/fake_backend.c): each allocation is
 * an address range with PROT_NONE, which the caller sees, and a second,
 * read/write mapping that holds the bytes, so host code that touches
 * device memory dies with SIGSEGV as it would on a GPU. Each op checks its
 * device pointers here (they must lie inside one allocation) and refuses
 * host pointers where device memory is expected, and the reverse.
 *
 * Accounting: held and peak count the bytes asked for (as the CUDA
 * plugin's mem_peak does), not the pages behind them. Every allocation is
 * also a record in a history (kind, bytes, a weight's name or the host
 * code that asked, when it came and went), so the live set at the peak can
 * be rebuilt afterwards: fake_backend_mem_at_peak sums it by kind and
 * fake_backend_mem_report lists it. */
#include "fake_backend.h"

#include "error.h"

#include <dlfcn.h>
#include <execinfo.h>
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
    size_t rec;   /* its record in hist */
} region;

/* one allocation, kept after its free until the next reset of the peak */
typedef struct {
    size_t bytes;
    unsigned long born, died;   /* event clock at alloc and at free (0: live) */
    int kind;                   /* FAKE_MEM_* */
    char name[64];              /* a weight's name, else empty */
    void *from[3];              /* host code that asked: return addresses past the plugin */
} mrec;

pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static region *regs;
static size_t nregs, capregs, held, peak;
static mrec *hist;
static size_t nhist, caphist;
static unsigned long clock_, peak_at;   /* events so far; the event that set the peak */
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

/* a new history record for an allocation of bytes (under fake_mu); SIZE_MAX
 * when there is no room (the allocation is then refused) */
static size_t record(size_t bytes, void *const *from, int nfrom)
{
    if (nhist == caphist) {
        size_t cap = caphist ? 2 * caphist : 1024;
        mrec *g = realloc(hist, cap * sizeof *g);
        if (!g) return SIZE_MAX;
        hist = g, caphist = cap;
    }
    mrec *r = &hist[nhist];
    memset(r, 0, sizeof *r);
    r->bytes = bytes, r->born = ++clock_, r->kind = FAKE_MEM_ALLOC;
    for (int i = 0; i < nfrom && i < 3; i++) r->from[i] = from[i];
    return nhist++;
}

void fake_mem_tag(const void *p, int kind, const char *name)
{
    pthread_mutex_lock(&fake_mu);
    long i = find(p);
    if (i >= 0) {
        mrec *r = &hist[regs[i].rec];
        r->kind = kind;
        snprintf(r->name, sizeof r->name, "%s", name ? name : "");
    }
    pthread_mutex_unlock(&fake_mu);
}

void *fake_dalloc(size_t bytes)
{
    /* who asked: the frames past this function and the op table's alloc */
    void *bt[6];
    int nbt = backtrace(bt, 6);
    nbt = nbt > 1 ? nbt - 1 : 0;
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
    size_t rec = nregs < capregs ? record(bytes, bt + 1, nbt) : SIZE_MAX;
    if (b == MAP_FAILED || r == MAP_FAILED || nregs == capregs || rec == SIZE_MAX) {
        pthread_mutex_unlock(&fake_mu);
        if (b != MAP_FAILED) munmap(b, len);
        if (r != MAP_FAILED) munmap(r, len);
        fake_fail(CS_ENOMEM, "fake device: out of memory for %zu bytes", bytes);
        return NULL;
    }
    regs[nregs++] = (region){b, r, bytes, len, rec};
    held += bytes;
    if (held > peak) peak = held, peak_at = clock_;
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
    held -= g.bytes;
    hist[g.rec].died = ++clock_;
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

/* a new peak period: the records of freed allocations go (under fake_mu) */
static void restart(void)
{
    size_t *to = malloc((nhist + 1) * sizeof *to), k = 0;
    if (to) {   /* else the history just grows */
        for (size_t i = 0; i < nhist; i++)
            if (!hist[i].died) to[i] = k, hist[k++] = hist[i];
        for (size_t j = 0; j < nregs; j++) regs[j].rec = to[regs[j].rec];
        nhist = k;
        free(to);
    }
    peak = held, peak_at = clock_;
}

static size_t mem_peak(int reset)
{
    pthread_mutex_lock(&fake_mu);
    size_t p = peak;
    if (reset) restart();
    pthread_mutex_unlock(&fake_mu);
    return p;
}

/* ---- what held the peak (for tests: dlsym'd from the plugin) ---- */

static int live_at_peak(const mrec *r) { return r->born <= peak_at && (!r->died || r->died > peak_at); }

size_t fake_backend_mem_peak_by_kind(size_t out[FAKE_MEM_KINDS], int reset)
{
    pthread_mutex_lock(&fake_mu);
    for (int k = 0; k < FAKE_MEM_KINDS; k++) out[k] = 0;
    for (size_t i = 0; i < nhist; i++)
        if (live_at_peak(&hist[i])) out[hist[i].kind] += hist[i].bytes;
    size_t p = peak;
    if (reset) restart();
    pthread_mutex_unlock(&fake_mu);
    return p;
}

static const char *const kind_name[FAKE_MEM_KINDS] = {
    "allocations (activations, tape, gradients, states, scratch)", "float32 copies of float32 weights",
    "float32 copies of bf16/f16 weights", "writable float32 weights (weight_rw)",
    "weights in their own dtype (weight_to_f32)"};

/* where a return address lies: function+offset, else object+offset (for addr2line) */
static void where(const void *a, char *buf, size_t n)
{
    Dl_info di;
    if (a && dladdr(a, &di) && di.dli_sname)
        snprintf(buf, n, "%s+0x%zx", di.dli_sname, (size_t)((const char *)a - (const char *)di.dli_saddr));
    else if (a && dladdr(a, &di) && di.dli_fname) {
        const char *b = strrchr(di.dli_fname, '/');
        snprintf(buf, n, "%s+0x%zx", b ? b + 1 : di.dli_fname, (size_t)((const char *)a - (const char *)di.dli_fbase));
    } else
        snprintf(buf, n, "?");
}

static int by_bytes(const void *a, const void *b)
{
    const mrec *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

void fake_backend_mem_report(FILE *f, int top)
{
    pthread_mutex_lock(&fake_mu);
    size_t n = 0, sum[FAKE_MEM_KINDS] = {0}, cnt[FAKE_MEM_KINDS] = {0};
    mrec *v = malloc((nhist + 1) * sizeof *v);
    for (size_t i = 0; i < nhist && v; i++)
        if (live_at_peak(&hist[i])) v[n++] = hist[i];
    fprintf(f, "# fake device: peak %zu bytes (%zu live allocations then), now %zu\n", peak, n, held);
    if (!v) {
        pthread_mutex_unlock(&fake_mu);
        return;
    }
    qsort(v, n, sizeof *v, by_bytes);
    for (size_t i = 0; i < n; i++) sum[v[i].kind] += v[i].bytes, cnt[v[i].kind]++;
    for (int k = 0; k < FAKE_MEM_KINDS; k++)
        fprintf(f, "#   %10zu bytes in %5zu: %s\n", sum[k], cnt[k], kind_name[k]);
    for (size_t i = 0; i < n && (int)i < top; i++) {
        char w[3][96];
        for (int j = 0; j < 3; j++) where(v[i].from[j], w[j], sizeof w[j]);
        fprintf(f, "#   %10zu %s %s%s%s < %s < %s\n", v[i].bytes, v[i].kind ? "weight" : "alloc ",
                v[i].name[0] ? v[i].name : "", v[i].name[0] ? " from " : "", w[0], w[1], w[2]);
    }
    free(v);
    pthread_mutex_unlock(&fake_mu);
}

const char *fake_errmsg(void) { return errbuf; }

static int mem_info(size_t *fr, size_t *tot, char *name, size_t len)
{
    const char *e = getenv("FAKE_MEM_TOTAL");   /* a smaller device: tests of memory decisions */
    *tot = e && *e ? (size_t)strtoull(e, NULL, 10) : (size_t)24 << 30;
    pthread_mutex_lock(&fake_mu);
    *fr = held < *tot ? *tot - held : 0;
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
    free(hist);
    hist = NULL;
    nhist = caphist = 0;
    clock_ = peak_at = 0;
    pending = 0;
    pthread_mutex_unlock(&fake_mu);
}
