/* cascade train (issue 13, doc/training.md §8): kohya's options (train.c)
 * set on a cascade_trainer of the public API; the run and what it says
 * (train_run.c). */
#ifndef CS_CLI_TRAIN_H
#define CS_CLI_TRAIN_H

#include "cascade.h"

#define TR_ME "cascade train"

/* What the CLI itself needs beside the trainer's keys. */
typedef struct {
    cascade_trainer *t;
    int quiet;                        /* -q */
    int threads;                      /* --threads (0: $CASCADE_THREADS, else all) */
    const char *device;               /* --device (NULL: the CPU) */
    int mixed_bf16;                   /* --mixed_precision bf16: said once, after the checks */
    const char *resume, *network_weights;
} tr_cli;

/* The run after the options: start-up, prepare, device, train; prints
 * what the trainer reports. Returns the exit status. */
int tr_run(tr_cli *c);

#endif
