#include "device.h"

#include "error.h"
#include "wpack.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Thread_local const cs_dev_ops *cs_dev;
static _Thread_local int dev_rc;

const cs_dev_ops *cs_dev_pick(void)
{
    const cs_backend *b = cs_backend_active();
    return !cs_dev && b && b->ops ? b->ops : NULL;
}

int cs_dev_error(void) { return dev_rc; }

void cs_dev_note(int rc, const char *what)
{
    if (rc && !dev_rc) {
        dev_rc = rc < 0 ? rc : CS_EDEVICE;
        const cs_backend *b = cs_backend_active();
        const char *m = b && b->ops && b->ops->errmsg ? b->ops->errmsg() : NULL;
        cs_error(dev_rc, "%s on the %s device failed: %s", what, b ? b->name : "?", m && *m ? m : "no reason given");
    }
}

float *cs_act_alloc(size_t n)
{
    float *p = cs_dev ? cs_dev->alloc(n * sizeof(float)) : cs_alloc(n * sizeof(float));
    if (!p) cs_oom(cs_dev ? "device memory for activations" : "activations", n * sizeof(float));
    return p;
}

float *cs_act_calloc(size_t n)
{
    if (!cs_dev) {
        float *p = cs_calloc(n * sizeof(float));
        if (!p) cs_oom("activations", n * sizeof(float));
        return p;
    }
    float *p = cs_act_alloc(n);
    if (p) cs_fill(p, 0.0f, n);
    return p;
}

void cs_act_free(float *p)
{
    if (!p) return;
    if (cs_dev) cs_dev->free(p);
    else cs_free(p);
}

int cs_act_upload(float *dst, const float *host, size_t n)
{
    if (!cs_dev) {
        memcpy(dst, host, n * sizeof(float));
        return 0;
    }
    int rc = cs_dev->upload(dst, host, n * sizeof(float));
    cs_dev_note(rc, "a copy to the device");
    return rc ? dev_rc : 0;
}

int cs_act_download(float *host, const float *src, size_t n)
{
    if (!cs_dev) {
        memcpy(host, src, n * sizeof(float));
        return 0;
    }
    int rc = cs_dev->download(host, src, n * sizeof(float));
    cs_dev_note(rc, "a copy from the device");
    return rc ? dev_rc : 0;
}

void cs_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols)
{
    if (cs_dev) {
        double t = cs_dev_prof_start();
        cs_dev_note(cs_dev->copy2d(dst, ldd, src, lds, rows, cols), "a copy");
        cs_dev_prof_stop(t, "a copy");
        return;
    }
    CS_PROF_CPU("a copy");
    if (ldd == cols && lds == cols && rows * cols < (1 << 18)) {
        memcpy(dst, src, rows * cols * sizeof(float));
        return;
    }
    /* large copies (the attention's key/value gather) are split over the threads */
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 18))
    for (size_t r = 0; r < rows; r++) memcpy(dst + r * ldd, src + r * lds, cols * sizeof(float));
}

void cs_copy(float *dst, const float *src, size_t n) { cs_copy2d(dst, n, src, n, 1, n); }

void cs_fill(float *dst, float v, size_t n)
{
    if (cs_dev) {
        cs_dev_note(cs_dev->fill(dst, v, n), "a fill");
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = v;
}

const float *cs_param(const float *host, size_t n)
{
    if (!cs_dev || !host) return host;
    cs_tensor t = {.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)n}, .data = host, .name = "parameter"};
    char err[200] = "";
    const float *p = cs_dev->weight_f32(&t, err, sizeof err);
    if (!p) cs_error(CS_ENOMEM, "%s", err[0] ? err : "out of device memory for parameters");
    return p;
}

void cs_param_forget(const void *host, size_t bytes)
{
    const cs_backend *b = cs_backend_active();
    if (host) cs_wpack_forget(host, bytes);   /* the CPU's packed bf16 copies */
    if (host && b && b->ops) {
        cs_dev_graphs_drop();   /* they may hold the weight's device address */
        b->ops->forget(host, bytes);
    }
}

void cs_param_free(float *host)
{
    cs_param_forget(host, 1);
    cs_free(host);
}

void cs_dev_args_begin(cs_dev_args *a, const cs_dev_ops *d)
{
    memset(a, 0, sizeof *a);
    a->d = d;
    if (!d) return;   /* the CPU: arguments pass through */
    a->prev = cs_dev;
    cs_dev = d;
    dev_rc = 0;
}

static void key_mix(cs_dev_args *a, unsigned long long v)
{
    /* FNV-1a over the value's bytes */
    for (int i = 0; i < 8; i++, v >>= 8) a->key = (a->key ^ (v & 0xff)) * 0x100000001b3ULL;
}

static float *add_arg(cs_dev_args *a, float *host, size_t n)
{
    if (a->rc) return NULL;
    if (a->n == CS_DEV_MAX_ARGS) {
        a->rc = cs_error(CS_EARG, "device forward: more than %d arguments", CS_DEV_MAX_ARGS);
        return NULL;
    }
    float *p = cs_act_alloc(n ? n : 1);
    if (!p) {
        a->rc = CS_ENOMEM;
        return NULL;
    }
    a->a[a->n].dev = p, a->a[a->n].host = host, a->a[a->n].n = n;
    a->n++;
    return p;
}

const float *cs_dev_in(cs_dev_args *a, const float *host, size_t n)
{
    if (a->graph) key_mix(a, host ? 2 * (unsigned long long)n + 1 : 0);
    if (!host || !a->d) return host;
    float *p = add_arg(a, NULL, n);
    if (p && n && cs_act_upload(p, host, n)) a->rc = dev_rc;
    return p;
}

float *cs_dev_out(cs_dev_args *a, float *host, size_t n)
{
    if (a->graph) key_mix(a, host ? 2 * (unsigned long long)n + 2 : 1);
    return host && a->d ? add_arg(a, host, n) : host;
}

int cs_dev_args_finish(cs_dev_args *a, int rc)
{
    if (!a->d) return rc;
    if (!rc) rc = a->rc;
    if (!rc) rc = dev_rc;
    for (int i = 0; i < a->n && !rc; i++)
        if (a->a[i].host && a->a[i].n) rc = cs_act_download(a->a[i].host, a->a[i].dev, a->a[i].n);
    if (!rc) {
        int s = a->d->sync();
        if (s) cs_dev_note(s, "the forward");
        rc = dev_rc;
    }
    for (int i = 0; i < a->n; i++)
        if (!a->a[i].kept) cs_act_free(a->a[i].dev);
    cs_dev = a->prev;
    return rc;
}

/* ---- graphs ---- */

#define GRAPH_SLOTS 8
enum { G_FREE, G_SEEN, G_READY, G_NEVER };
static struct {
    unsigned long long key;
    int state;
    const cs_dev_ops *d;
    void *g;
    int n;
    float *buf[CS_DEV_MAX_ARGS];   /* the recorded addresses of the arguments */
    int out[CS_DEV_MAX_ARGS];
    unsigned long stamp;
    unsigned long moved;   /* buffers_moved when recorded */
    int stale;             /* times it went stale */
} slots[GRAPH_SLOTS];
static unsigned long graph_clock, buffers_moved;
static _Thread_local int recording;

int cs_dev_recording(void) { return recording; }

void cs_dev_buffers_moved(void) { buffers_moved++; }
static int graphs_on = -1;

/* $CASCADE_GRAPH_LOG=1: a stderr line for each graph event (recorded, failed,
 * stale, dropped), to see why a sampler's steps would run op by op */
static void glog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void glog(const char *fmt, ...)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("CASCADE_GRAPH_LOG");
        on = e && !strcmp(e, "1");
    }
    if (!on) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("graph: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int prof_enabled(void);

static void slot_clear(int i)
{
    if (slots[i].g) slots[i].d->graph_free(slots[i].g);
    for (int j = 0; j < slots[i].n; j++)
        if (slots[i].buf[j]) slots[i].d->free(slots[i].buf[j]);
    memset(&slots[i], 0, sizeof slots[i]);
}

void cs_dev_graphs_drop(void)
{
    int n = 0;
    for (int i = 0; i < GRAPH_SLOTS; i++)
        if (slots[i].state != G_FREE) slot_clear(i), n++;
    if (n) glog("%d dropped", n);
}

void cs_dev_args_graph(cs_dev_args *a, const void *net, size_t tag1, size_t tag2)
{
    if (graphs_on < 0) {
        const char *e = getenv("CASCADE_GRAPHS");
        graphs_on = !(e && !strcmp(e, "0"));
    }
    if (!a->d || !a->d->graph_begin || !graphs_on || prof_enabled()) return;
    a->graph = 1;
    a->key = 0xcbf29ce484222325ULL;
    key_mix(a, (unsigned long long)(uintptr_t)net);
    key_mix(a, tag1);
    key_mix(a, tag2);
}

/* the slot of a's key, or a new one (G_SEEN, the oldest evicted if full) */
static int slot_for(const cs_dev_args *a, int *fresh)
{
    int old = 0;
    *fresh = 0;
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        if (slots[i].state != G_FREE && slots[i].key == a->key && slots[i].d == a->d) {
            slots[i].stamp = ++graph_clock;
            return i;
        }
        if (slots[i].stamp < slots[old].stamp) old = i;
    }
    slot_clear(old);
    slots[old].key = a->key, slots[old].d = a->d, slots[old].state = G_SEEN, slots[old].stamp = ++graph_clock;
    *fresh = 1;
    return old;
}

/* A recording whose buffers moved: dropped, to be recorded again (after
 * STALE_MAX times, the forward runs op by op for good). */
#define STALE_MAX 3
static void slot_stale(int i)
{
    int n = slots[i].stale + 1;
    unsigned long long key = slots[i].key;
    const cs_dev_ops *d = slots[i].d;
    slot_clear(i);
    slots[i].key = key, slots[i].d = d, slots[i].stale = n, slots[i].stamp = ++graph_clock;
    slots[i].state = n >= STALE_MAX ? G_NEVER : G_SEEN;
    glog("slot %d stale (%d times)%s", i, n, n >= STALE_MAX ? ": op by op from now on" : "");
}

/* the recorded forward on copies of a's inputs; its outputs into a's.
 * 1: stale, nothing done (the body must run) */
static int replay(cs_dev_args *a, int i, int *rc)
{
    if (slots[i].n != a->n) {
        *rc = cs_error(CS_EARG, "device graph: %d arguments recorded, %d given", slots[i].n, a->n);
        return 0;
    }
    if (slots[i].moved != buffers_moved) {
        glog("slot %d: a workspace moved", i);
        slot_stale(i);
        return 1;
    }
    for (int j = 0; j < a->n; j++)
        if (!slots[i].out[j]) cs_copy(slots[i].buf[j], a->a[j].dev, a->a[j].n);
    int l = a->d->graph_launch(slots[i].g);
    if (l == CS_EUNSUP) {   /* the device's own buffers moved */
        glog("slot %d: the device's scratch moved", i);
        slot_stale(i);
        return 1;
    }
    cs_dev_note(l, "a recorded forward");
    for (int j = 0; j < a->n; j++)
        if (slots[i].out[j]) cs_copy(a->a[j].dev, slots[i].buf[j], a->a[j].n);
    *rc = dev_rc;
    return 0;
}

int cs_dev_pass(cs_dev_args *a, int *rc)
{
    enum { START, PLAIN, RECORDING, DONE };
    if (a->pass == START) {
        a->pass = DONE;
        if (a->rc) {
            *rc = a->rc;
            return 0;
        }
        a->pass = PLAIN;
        if (!a->graph) return 1;
        int fresh, i = slot_for(a, &fresh);
        a->slot = i;
        if (slots[i].state == G_READY) {
            if (replay(a, i, rc)) return 1;   /* stale: run the body (recorded again next time) */
            a->pass = DONE;
            return 0;
        }
        if (fresh || slots[i].state == G_NEVER) return 1;
        if (a->d->graph_begin() == 0) a->pass = RECORDING, recording = 1;
        else slots[i].state = G_NEVER;
        return 1;
    }
    if (a->pass == RECORDING) {
        int i = a->slot;
        void *g = NULL;
        recording = 0;
        int e = a->d->graph_end(&g);
        if (!*rc && !e && g && !dev_rc) {
            slots[i].g = g, slots[i].state = G_READY, slots[i].n = a->n, slots[i].moved = buffers_moved;
            for (int j = 0; j < a->n; j++) {
                slots[i].buf[j] = a->a[j].dev, slots[i].out[j] = a->a[j].host != NULL;
                a->a[j].kept = 1;
            }
            glog("slot %d recorded", i);
            /* recording ran nothing: now it runs */
            cs_dev_note(a->d->graph_launch(g), "a recorded forward");
            *rc = dev_rc;
            a->pass = DONE;
            return 0;
        }
        if (g) a->d->graph_free(g);
        recording = 0;
        glog("slot %d: recording failed (%s)", i, *rc || dev_rc ? cs_last_error() : "graph_end refused");
        slot_stale(i);   /* e.g. a weight first used, a workspace that grew: next time, or never */
        dev_rc = 0;   /* what failed was the recording: run the body for real */
        *rc = 0;
        a->pass = PLAIN;
        return 1;
    }
    a->pass = DONE;
    return 0;
}

/* ---- profile ($CASCADE_PROFILE) ---- */

#define PROF_KINDS 48
static struct {
    const char *what;
    double s;
    long n;
} prof[PROF_KINDS];
static int prof_on = -1;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int prof_enabled(void)
{
    if (prof_on < 0) {
        const char *e = getenv("CASCADE_PROFILE");
        prof_on = e && *e && strcmp(e, "0");
    }
    return prof_on;
}

double cs_dev_prof_start(void)
{
    if (!prof_enabled() || !cs_dev) return 0;
    cs_dev->sync();
    return now_s();
}

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;

static void prof_add(const char *what, double d)
{
    pthread_mutex_lock(&prof_lock);
    for (int i = 0; i < PROF_KINDS; i++)
        if (!prof[i].what || !strcmp(prof[i].what, what)) {
            prof[i].what = what;
            prof[i].s += d;
            prof[i].n++;
            break;
        }
    pthread_mutex_unlock(&prof_lock);
}

void cs_dev_prof_stop(double t0, const char *what)
{
    if (t0 == 0 || !cs_dev) return;
    cs_dev->sync();
    prof_add(what, now_s() - t0);
}

static _Thread_local int prof_depth;   /* CPU ops open on this thread */

cs_prof_scope cs_prof_cpu_begin(const char *what)
{
    cs_prof_scope s = {0, what};
    if (prof_enabled() && prof_depth++ == 0) s.t0 = now_s();
    return s;
}

void cs_prof_cpu_end(cs_prof_scope *s)
{
    if (!prof_enabled()) return;
    prof_depth--;
    if (s->t0 != 0) prof_add(s->what, now_s() - s->t0);
}

void cs_dev_prof_lines(void (*fn)(void *user, const char *line), void *user)
{
    pthread_mutex_lock(&prof_lock);
    double tot = 0;
    for (int i = 0; i < PROF_KINDS && prof[i].what; i++) tot += prof[i].s;
    if (tot == 0 || !fn) {
        memset(prof, 0, sizeof prof);
        pthread_mutex_unlock(&prof_lock);
        return;
    }
    char line[160];
    fn(user, "op profile (device ops waited for; on the CPU the outermost op):");
    for (int i = 0; i < PROF_KINDS && prof[i].what; i++) {
        snprintf(line, sizeof line, "  %-26s %8ld calls %9.2f ms %5.1f%%", prof[i].what, prof[i].n, prof[i].s * 1e3,
                 100.0 * prof[i].s / tot);
        fn(user, line);
    }
    snprintf(line, sizeof line, "  %-26s %8s       %9.2f ms", "total", "", tot * 1e3);
    fn(user, line);
    memset(prof, 0, sizeof prof);
    pthread_mutex_unlock(&prof_lock);
}

static void line_to_file(void *f, const char *line) { fprintf(f, "%s\n", line); }

void cs_dev_prof_report(void *file) { cs_dev_prof_lines(file ? line_to_file : NULL, file); }
