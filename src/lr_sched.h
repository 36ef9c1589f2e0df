/* Learning-rate schedules of `cascade train` (doc/training.md §8): kohya
 * sd-scripts' --lr_scheduler names, computed as its
 * train_util.get_scheduler_fix hands them to diffusers' get_scheduler
 * (diffusers/optimization.py, the LambdaLR factors):
 *
 *   warmup (every kind but constant): f(s) = s / max(1, W) for s < W
 *   constant              1
 *   constant_with_warmup  1
 *   linear                max(0, (T - s) / max(1, T - W))
 *   cosine                p = (s - W) / max(1, T - W); max(0, (1 + cos(pi * 2 * 0.5 * p)) / 2)
 *   cosine_with_restarts  p as above; 0 if p >= 1, else (1 + cos(pi * ((cycles * p) mod 1))) / 2
 *   polynomial            s > T: end / lr; else ((lr - end) (1 - (s - W) / (T - W))^power + end) / lr,
 *                         end = 1e-7 (diffusers' lr_end; kohya passes none)
 *
 * lr(s) = lr * f(s), s = optimizer steps done (LambdaLR's last_epoch: the
 * first step runs at f(0), and accelerate steps the scheduler once per
 * optimizer step, not per micro-batch). Stateless: the step count alone
 * gives the rate, so a resumed run follows the same curve. Everything in
 * double, as Python's floats. */
#ifndef CS_LR_SCHED_H
#define CS_LR_SCHED_H

#include <stdint.h>

typedef enum {
    CS_LR_CONSTANT,
    CS_LR_CONSTANT_WITH_WARMUP,
    CS_LR_LINEAR,
    CS_LR_COSINE,
    CS_LR_COSINE_WITH_RESTARTS,
    CS_LR_POLYNOMIAL,
} cs_lr_kind;

#define CS_LR_POLY_END 1e-7 /* diffusers' lr_end */

typedef struct {
    cs_lr_kind kind;
    double lr;      /* the base rate (--learning_rate) */
    int64_t warmup; /* W: warmup steps */
    int64_t total;  /* T: kohya's max_train_steps */
    int cycles;     /* cosine_with_restarts (kohya's default 1) */
    double power;   /* polynomial (kohya's default 1) */
} cs_lr_sched;

/* kohya's name -> kind; CS_EARG (naming the known ones) if unknown. */
int cs_lr_kind_parse(const char *name, cs_lr_kind *out);
const char *cs_lr_kind_name(cs_lr_kind k);
/* What diffusers and kohya refuse: a warmup with constant, a negative
 * warmup or total, negative cycles, polynomial with lr <= lr_end. CS_EARG with the reason. */
int cs_lr_sched_check(const cs_lr_sched *s);
/* --lr_warmup_steps as kohya's int_or_float reads it: "N%" or a value
 * below 1 is a ratio (*ratio >= 0, *steps = 0), else a whole number of
 * steps (*ratio = -1). CS_EARG with the reason on anything else, negatives
 * included. */
int cs_lr_warmup_parse(const char *v, int64_t *steps, double *ratio);
/* W for T total steps: kohya's int(ratio * T), or the steps. */
int64_t cs_lr_warmup_resolve(int64_t steps, double ratio, int64_t total);
/* The rate of the optimizer step that follows `step` steps done. */
double cs_lr_at(const cs_lr_sched *s, int64_t step);

#endif
