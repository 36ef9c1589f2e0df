/* What the parts of the fake device plugin share (tests/fake_backend.c
 * says what the plugin is for):
 *   fake_mem.c      shadow memory, the checks of each op's device pointers,
 *                   upload/download/sync and the memory report
 *   fake_weights.c  device copies of host weights (weight_f32, weight_rw,
 *                   forget)
 *   fake_ops.c      the forward single ops
 *   fake_blocks.c   the fused blocks (mlp_block, ts_block, attn_block)
 *   fake_train.c    the backward and optimizer ops (not under FAKE_NO_BACKWARD)
 *   fake_backend.c  the op table and the plugin's entry
 * Each part fills its fields of the op table (fake_*_ops). Everything here
 * is hidden (-fvisibility=hidden) but for what fake_backend.c marks. */
#ifndef CS_TESTS_FAKE_BACKEND_H
#define CS_TESTS_FAKE_BACKEND_H

#include "backend.h"
#include "device.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

/* built with -fvisibility=hidden: what the loader and the tests look up is marked */
#define FAKE_VISIBLE __attribute__((visibility("default")))

extern unsigned long fake_backend_calls;
extern const char *fake_backend_last_op;
extern unsigned long long fake_backend_upload_bytes, fake_backend_download_bytes, fake_backend_weight_bytes,
    fake_backend_forget_bytes;

/* guards the allocations and the weight copies */
extern pthread_mutex_t fake_mu;
/* between init and shutdown: allocations fail outside it, as the CUDA plugin's do */
extern int fake_backend_started;

/* records the error (the plugin's errmsg) and returns code */
int fake_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* the last error recorded by this thread (the op table's errmsg) */
const char *fake_errmsg(void);

/* device memory: fake_dalloc's bytes start as NaN (0xff), as a GPU's are
 * not zeroed either */
void *fake_dalloc(size_t bytes);
void fake_dfree(void *p);

/* What holds device memory (fake_mem_tag, fake_mem_peak_by_kind): plain
 * allocations of the host code, and the weight copies of fake_weights.c */
enum { FAKE_MEM_ALLOC, FAKE_MEM_W32, FAKE_MEM_WCONV, FAKE_MEM_WRW, FAKE_MEM_WRAW, FAKE_MEM_KINDS };
/* marks the allocation at p as a weight copy of that kind, named */
void fake_mem_tag(const void *p, int kind, const char *name);
/* For tests (dlsym): the bytes live at the last peak by kind, and the peak
 * (reset: a new peak period starts); a listing of the live set at the peak
 * (totals by kind, then the top largest allocations with their names or
 * the host code that asked for them) */
FAKE_VISIBLE size_t fake_backend_mem_peak_by_kind(size_t out[FAKE_MEM_KINDS], int reset);
FAKE_VISIBLE void fake_backend_mem_report(FILE *f, int top);

/* the real address of device pointer p (the bytes behind it), or NULL when p
 * is not device memory; call with fake_mu held */
char *fake_real_locked(const void *p);

/* One op call: the real address of each device argument, or the first
 * refusal in rc. */
typedef struct {
    const char *op;
    int rc;
} fake_call;

/* counts the op call (fake_backend_calls, fake_backend_last_op) */
fake_call fake_enter(const char *op);
/* the real address of device range [p, p + bytes), or NULL with c->rc set */
void *fake_real_bytes(fake_call *c, const void *p, size_t bytes, const char *arg);
/* a pointer that must be host memory (weights, ids) */
void fake_host_only(fake_call *c, const void *p, const char *arg);
/* the call's result: its first refusal, else the CPU op's rc (with its message) */
int fake_done(fake_call *c, int rc);

/* n floats at device pointer p; opt: p may be NULL */
static inline float *dv(fake_call *c, const void *p, size_t n, const char *arg)
{
    return fake_real_bytes(c, p, n * sizeof(float), arg);
}
static inline float *opt(fake_call *c, const void *p, size_t n, const char *arg)
{
    return p ? dv(c, p, n, arg) : NULL;
}
/* rows of cols floats, ld apart */
static inline float *dv2(fake_call *c, const void *p, size_t rows, size_t cols, size_t ld, const char *arg)
{
    return dv(c, p, rows ? (rows - 1) * ld + cols : 0, arg);
}

/* Runs the CPU op: device mode off for this thread during the call. */
#define ON_HOST(stmt)                         \
    do {                                      \
        const cs_dev_ops *saved_ = cs_dev;    \
        cs_dev = NULL;                        \
        stmt;                                 \
        cs_dev = saved_;                      \
    } while (0)

/* whether t's values live in a writable device copy (weight_rw) */
int fake_in_rw(const cs_tensor *t);
/* t, or (its values owned by the device) a view of the device copy's real
 * bytes in tmp, for ops that read weights as tensors on the host */
const cs_tensor *fake_rw_sub(const cs_tensor *t, cs_tensor *tmp);

/* the op table, filled part by part */
void fake_mem_ops(cs_dev_ops *o);
void fake_weight_ops(cs_dev_ops *o);
void fake_forward_ops(cs_dev_ops *o);
void fake_block_ops(cs_dev_ops *o);
void fake_train_ops(cs_dev_ops *o);

/* shutdown: every allocation and every weight copy dropped */
void fake_mem_release(void);
void fake_weights_release(void);

#endif
