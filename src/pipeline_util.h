/* What pipeline.c and pipeline_sample.c share: a monotonic clock, the
 * cancel check (the caller's flag or a signal's) and Stage C sampling with
 * every option. */
#ifndef CS_PIPELINE_UTIL_H
#define CS_PIPELINE_UTIL_H

#include "cancel.h"
#include "error.h"
#include "pipeline.h"

#include <signal.h>
#include <time.h>

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int cancelled(volatile sig_atomic_t *c)
{
    return (c && *c) || cs_cancel_pending();   /* the caller's flag or a signal's */
}

#define CANCEL_ERR() cs_error(CS_EINTR, "interrupted")

/* cs_pipe_sample_c_img with an unconditional text of its own (uncond_text
 * [N, Lu, ct]; NULL: rows N.. of clip_text) and the pooled width cp */
int cs_pipe_sample_c_ext(struct cs_stage_c *m, const cs_sample_params *sp, size_t N, size_t h, size_t w,
                         const float *clip_text, size_t Lt, const float *uncond_text, size_t Lu, const float *pooled,
                         size_t cp, const float *clip_img, size_t M, const cs_stage_io *io, float *x, float *result);

#endif
