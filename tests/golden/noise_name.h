/* The names of a golden case's recorded random draws, in the order a
 * sampler asks for them: <prefix>noise_init, then <prefix>noise_step_NN
 * (shared/golden/README.md). Shared by the golden runner's sampling
 * handlers and tests/test_pipeline_golden.c, which replay them. */
#ifndef CS_GOLDEN_NOISE_NAME_H
#define CS_GOLDEN_NOISE_NAME_H

#include <stdio.h>

/* step < 0: the initial draw; else the draw of that step. */
static inline void golden_noise_name(char *name, size_t len, const char *prefix, int step)
{
    if (step < 0)
        snprintf(name, len, "%snoise_init", prefix);
    else
        snprintf(name, len, "%snoise_step_%02d", prefix, step);
}

#endif
