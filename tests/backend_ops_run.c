/* The harness of the cross-backend op test (tests/test_backend_ops.c says
 * what it checks): random inputs and weights, one run of an op on the CPU
 * or in device mode, and the comparison of the two results. */
#include "backend_ops.h"

#include "cpu.h"
#include "device.h"
#include "error.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cs_dev_ops *D;
double tol_prod, tol_other = 1e-5;
unsigned long *fake_calls;   /* the fake plugin's counters; NULL for another backend */
const char **fake_last;
int fails, runs;

/* ---- inputs ---- */

static uint64_t rs = 0x9E3779B97F4A7C15ull;

float urand(void)   /* uniform in [-1, 1) */
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)(rs >> 40) / (float)(1u << 23) - 1.0f;
}

float *rnd(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "test_backend_ops: out of memory\n");
        exit(99);
    }
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

float *dupf(const float *x, size_t n)
{
    float *p = rnd(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* A weight [s0, s1, s2, s3] (trailing zeros dropped) of dtype dt. */
cs_tensor weight(cs_dtype dt, const char *name, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    cs_tensor t = {.dtype = dt, .ndim = 1, .shape = {s0}, .name = name};
    if (s1) t.shape[t.ndim++] = s1;
    if (s2) t.shape[t.ndim++] = s2;
    if (s3) t.shape[t.ndim++] = s3;
    size_t n = (size_t)cs_tensor_numel(&t);
    if (dt == CS_F32) {
        t.data = rnd(n);
        return t;
    }
    uint16_t *h = (uint16_t *)rnd(n / 2 + 1);
    for (size_t i = 0; i < n; i++) {
        float v = urand();
        uint32_t b;
        memcpy(&b, &v, 4);
        if (dt == CS_BF16) h[i] = (uint16_t)(b >> 16);
        else   /* f16: sign, exponent 2^-5..2^0, random mantissa */
            h[i] = (uint16_t)((b & 0x80000000u) >> 16 | (uint32_t)(10 + (b >> 3) % 6) << 10 | (b & 0x3ff));
    }
    t.data = h;
    return t;
}

/* t *= 2^-e with 2^e about sqrt(fan_in): exact in every dtype */
void pow2_scale(cs_tensor *t, size_t fan_in)
{
    int e = 0;
    while ((size_t)1 << (2 * (e + 1)) <= fan_in) e++;
    size_t n = (size_t)cs_tensor_numel(t);
    float f = ldexpf(1.0f, -e);
    if (t->dtype == CS_F32) {
        for (size_t i = 0; i < n; i++) ((float *)t->data)[i] *= f;
    } else if (t->dtype == CS_BF16) {
        uint16_t *h = (uint16_t *)t->data;
        for (size_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)h[i] << 16;
            float v;
            memcpy(&v, &b, 4);
            v *= f;
            memcpy(&b, &v, 4);
            h[i] = (uint16_t)(b >> 16);
        }
    }
}

/* the device may hold a copy of it: dropped before the host memory goes */
void drop(cs_tensor *t)
{
    if (!t || !t->data) return;
    cs_param_forget(t->data, (size_t)cs_tensor_numel(t) * cs_dtype_size(t->dtype));
    free((void *)t->data);
    t->data = NULL;
}

const char *dtn(cs_dtype t) { return t == CS_BF16 ? "bf16w" : t == CS_F16 ? "f16w" : "f32w"; }

/* ---- one run on the CPU (m = 0) or in device mode (m = 1) ---- */

static cs_dev_args A;
static int dev;
static unsigned long calls0;

void begin(int m)
{
    dev = m;
    if (dev) {
        cs_dev_args_begin(&A, D);
        if (fake_calls) calls0 = *fake_calls;
    }
    cs_clear_error();
}

/* host array x as the current mode sees it: uploaded in device mode */
const float *in(const float *x, size_t n) { return dev ? cs_dev_in(&A, x, n) : x; }
/* an output, downloaded into y at the end */
float *out(float *y, size_t n) { return dev ? cs_dev_out(&A, y, n) : y; }
/* an output whose prior content counts (accumulation, gaps between strided rows) */
float *inout(float *y, size_t n)
{
    if (!dev) return y;
    float *p = cs_dev_out(&A, y, n);
    if (p && !A.rc && cs_act_upload(p, y, n)) A.rc = cs_dev_error();
    return p;
}
int argrc(void) { return dev ? A.rc : 0; }

char opmiss[160];

/* ends the run; want: the fake's op expected to have run (NULL: no op) */
int end(int rc, const char *want)
{
    if (!dev) return rc;
    rc = cs_dev_args_finish(&A, rc);
    if (fake_calls && !rc) {
        unsigned long n = *fake_calls - calls0;
        if (want && (!n || strcmp(*fake_last, want)))
            snprintf(opmiss, sizeof opmiss, "device op %s did not run (%lu op calls, last %s)", want, n, *fake_last);
        if (!want && n) snprintf(opmiss, sizeof opmiss, "%lu unexpected device op calls (last %s)", n, *fake_last);
    }
    return rc;
}


/* compares CPU result ref with device result got (n floats) by rel_l2 */
void report(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n, int rc0,
                   int rc1)
{
    report_den(op, shape, prod, ref, got, n, rc0, rc1, -1.0);
}

/* the same with the error's norm over sqrt(den2) instead of ref's (den2 < 0:
 * ref's) */
void report_den(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n,
                       int rc0, int rc1, double den2)
{
    runs++;
    if (rc0 || rc1) {
        printf("FAIL %s %s: %s run failed: %s\n", op, shape, rc0 ? "CPU" : "device", cs_last_error());
        fails++;
        opmiss[0] = 0;
        return;
    }
    double d = 0, r = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(ref[i]) != isfinite(got[i]) || (!isfinite(ref[i]) && memcmp(&ref[i], &got[i], 4))) bad = 1;
        if (!isfinite(ref[i]) || !isfinite(got[i])) continue;
        d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    if (den2 >= 0) r = den2;
    double rel = r > 0 ? sqrt(d / r) : sqrt(d);
    double tol = prod ? tol_prod : tol_other;
    int ok = !bad && rel <= tol && !(fake_calls && d != 0) && !opmiss[0];
    printf("%s %s %s rel_l2=%.1e%s%s%s\n", ok ? "ok" : "FAIL", op, shape, rel, bad ? " (non-finite values differ)" : "",
           fake_calls && d != 0 ? " (the fake plugin must match the CPU exactly)" : "", opmiss);
    if (!ok) fails++;
    opmiss[0] = 0;
}
