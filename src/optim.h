/* Optimizers for training (issue 13), on float32 parameters and gradients.
 *
 * Adafactor as transformers.optimization.Adafactor with a given lr and
 * scale_parameter=False, relative_step=False, warmup_init=False, beta1=None
 * (kohya's Stable Cascade recipe): second moments factored into row and
 * column means for tensors of 2 or more dims (over the last two; leading
 * dims are a batch, so a 1x1 conv [O,I,1,1] is factored over its 1x1),
 * a full second moment for 1-D tensors, beta2_t = 1 - t^decay_rate, the
 * update clipped to RMS clip_threshold. eps2 (1e-3) only scales the lr when
 * scale_parameter is on, so it is not a field here.
 *
 * AdamW as torch.optim.AdamW (amsgrad off): decoupled weight decay
 * p *= 1 - lr*wd, then Adam with bias corrections.
 *
 * Scalars are computed in double and rounded to float where PyTorch rounds
 * them (a Python float meeting a float32 tensor); tensor arithmetic is
 * float32 with double sums. One state per parameter tensor; the state is
 * plain arrays so that a resumable checkpoint can save it as tensors. */
#ifndef CS_OPTIM_H
#define CS_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double lr;              /* required */
    double eps1;            /* 1e-30: added to grad^2 */
    double clip_threshold;  /* 1.0 */
    double decay_rate;      /* -0.8 */
    double weight_decay;    /* 0 */
} cs_adafactor_cfg;

typedef struct {
    int factored;
    size_t B, R, C;         /* shape as [B, R, C] (factored) or [1, 1, n]; B 0 before init */
    int64_t step;
    float *row;             /* [B, R]: exp_avg_sq_row (factored) */
    float *col;             /* [B, C]: exp_avg_sq_col (factored) */
    float *v;               /* [n]: exp_avg_sq (not factored) */
} cs_adafactor;

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;   /* torch defaults: 1e-3, 0.9, 0.999, 1e-8, 1e-2 */
} cs_adamw_cfg;

typedef struct {
    size_t n;
    int64_t step;
    float *m, *v;           /* exp_avg, exp_avg_sq */
} cs_adamw;

void cs_adafactor_cfg_default(cs_adafactor_cfg *c, double lr);
void cs_adamw_cfg_default(cs_adamw_cfg *c, double lr);

/* State for a tensor of that shape (ndim 1..8); 0 or CS_ENOMEM/CS_EARG. */
int cs_adafactor_init(cs_adafactor *s, int ndim, const int64_t *shape);
int cs_adamw_init(cs_adamw *s, size_t n);
void cs_adafactor_free(cs_adafactor *s);   /* zeroed struct is fine */
void cs_adamw_free(cs_adamw *s);

/* One step: p updated in place from g (same element count as the state).
 * Adafactor's u: the caller's scratch of at least that many floats (one
 * for all of a model's tensors: kept per tensor it was a second copy of
 * the model; taken per call it was a page-faulted allocation a tensor a
 * step). */
void cs_adafactor_step(cs_adafactor *s, const cs_adafactor_cfg *c, float *p, const float *g, float *u);
void cs_adamw_step(cs_adamw *s, const cs_adamw_cfg *c, float *p, const float *g);

/* A step split in two, so that a device can run the second half on its
 * own copies (backend.h's optimizer ops): _coef advances the step count and
 * computes the step's float scalars on the host, _update runs the
 * per-element part. cs_*_step is _coef then _update on the state's arrays.
 * Adafactor: row/col given (factored) or v (row NULL); u is n floats of
 * scratch. */
typedef struct {
    float b2, a2, e1, clip, lr, wd;   /* beta2t, 1 - beta2t, eps1, clip_threshold, lr, -wd lr */
    int decay;                        /* weight_decay != 0 */
} cs_adafactor_k;
typedef struct {
    float decay, w1, b2, a2, eps, bc2s, step;   /* 1 - lr wd, 1 - b1, b2, 1 - b2, eps, sqrt(1 - b2^t), lr / (1 - b1^t) */
} cs_adamw_k;
void cs_adafactor_coef(cs_adafactor *s, const cs_adafactor_cfg *c, cs_adafactor_k *k);
void cs_adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g, float *row,
                         float *col, float *v, float *u);
void cs_adamw_coef(cs_adamw *s, const cs_adamw_cfg *c, cs_adamw_k *k);
void cs_adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v);

/* sum of x^2 in double, in index order (clip_grad_norm_'s per-tensor norm) */
double cs_sumsq(const float *x, size_t n);

#endif
