/* What the parts of the cross-backend op test share (tests/test_backend_ops.c
 * says what it checks):
 *   backend_ops_run.c     inputs, one run on the CPU or the device, the report
 *   backend_ops_fwd.c     the forward single ops     (forward_ops)
 *   backend_ops_blocks.c  the fused blocks            (block_ops)
 *   backend_ops_grad.c    the backward ops of grad.h and the optimizer ops (grad_ops)
 *   test_backend_ops.c    main: the backend, its precision, the runs
 * An op's test t_X runs the op with begin(0) ... end() on the CPU, then the
 * same with begin(1) in device mode on the same inputs, and hands both
 * results to report(). */
#ifndef CS_TESTS_BACKEND_OPS_H
#define CS_TESTS_BACKEND_OPS_H

#include "backend.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

extern const cs_dev_ops *D;         /* the device's op set */
extern double tol_prod, tol_other;  /* rel_l2 tolerance of products, of every other op */
extern unsigned long *fake_calls;   /* the fake plugin's counters; NULL for another backend */
extern const char **fake_last;
extern int fails, runs;

/* ---- inputs (a fixed xorshift stream, uniform in [-1, 1)) ---- */
float urand(void);
float *rnd(size_t n);                      /* n random floats (exit 99 when out of memory) */
float *dupf(const float *x, size_t n);      /* a copy of x */
/* a weight [s0, s1, s2, s3] (trailing zeros dropped) of dtype dt */
cs_tensor weight(cs_dtype dt, const char *name, int64_t s0, int64_t s1, int64_t s2, int64_t s3);
void pow2_scale(cs_tensor *t, size_t fan_in);   /* t *= 2^-e, 2^e about sqrt(fan_in) */
void drop(cs_tensor *t);                   /* frees t (and the device's copy of it) */
const char *dtn(cs_dtype t);               /* "f32w", "bf16w", "f16w" */

/* ---- one run on the CPU (m = 0) or in device mode (m = 1) ---- */
void begin(int m);
const float *in(const float *x, size_t n);   /* an input as the mode sees it */
float *out(float *y, size_t n);              /* an output, downloaded into y by end() */
float *inout(float *y, size_t n);            /* an output whose prior content counts */
int argrc(void);                             /* the first failure of in/out/inout */
int end(int rc, const char *want);           /* want: the fake's op expected to run (NULL: none) */
/* what else went wrong in the run, printed (and failed) by the next report */
extern char opmiss[160];

/* compares the CPU's ref with the device's got (n floats) by rel_l2; prod:
 * a product (tol_prod); rc0, rc1: the two runs' results */
void report(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n, int rc0,
            int rc1);
/* the same with the error's norm over sqrt(den2) (den2 < 0: ref's norm) */
void report_den(const char *op, const char *shape, int prod, const float *ref, const float *got, size_t n, int rc0,
                int rc1, double den2);

/* the cases, part by part */
void forward_ops(void);
void block_ops(void);
void grad_ops(void);

#endif
