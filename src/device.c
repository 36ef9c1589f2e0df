#include "device.h"

#include "error.h"
#include "wpack.h"

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
    if (host && b && b->ops) b->ops->forget(host, bytes);
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
    if (!host || !a->d) return host;
    float *p = add_arg(a, NULL, n);
    if (p && n && cs_act_upload(p, host, n)) a->rc = dev_rc;
    return p;
}

float *cs_dev_out(cs_dev_args *a, float *host, size_t n)
{
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
    for (int i = 0; i < a->n; i++) cs_act_free(a->a[i].dev);
    cs_dev = a->prev;
    return rc;
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

double cs_dev_prof_start(void)
{
    if (prof_on < 0) {
        const char *e = getenv("CASCADE_PROFILE");
        prof_on = e && *e && strcmp(e, "0");
    }
    if (!prof_on || !cs_dev) return 0;
    cs_dev->sync();
    return now_s();
}

void cs_dev_prof_stop(double t0, const char *what)
{
    if (t0 == 0 || !cs_dev) return;
    cs_dev->sync();
    double d = now_s() - t0;
    for (int i = 0; i < PROF_KINDS; i++)
        if (!prof[i].what || !strcmp(prof[i].what, what)) {
            prof[i].what = what;
            prof[i].s += d;
            prof[i].n++;
            return;
        }
}

void cs_dev_prof_report(void *file)
{
    FILE *f = file;
    double tot = 0;
    for (int i = 0; i < PROF_KINDS && prof[i].what; i++) tot += prof[i].s;
    if (tot == 0 || !f) {
        memset(prof, 0, sizeof prof);
        return;
    }
    fprintf(f, "device op profile (each op waited for):\n");
    for (int i = 0; i < PROF_KINDS && prof[i].what; i++)
        fprintf(f, "  %-26s %8ld calls %9.2f ms %5.1f%%\n", prof[i].what, prof[i].n, prof[i].s * 1e3,
                100.0 * prof[i].s / tot);
    fprintf(f, "  %-26s %8s       %9.2f ms\n", "total", "", tot * 1e3);
    memset(prof, 0, sizeof prof);
}
