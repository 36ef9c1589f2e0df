/* One Stage C training step (issue 13, doc/training.md §5): what
 * train/train_c.py of the official code does per batch, and kohya's
 * stable_cascade_train_stage_c.py with it (same gdf; §6 lists where kohya
 * differs, and we follow kohya):
 *
 *   logSNR = CosineSchedule(t) (s = 0.008, variance clamped to [1e-4, 0.9999],
 *            then to the schedule's own limits at t = 1 and t = 0)
 *   a, b   = sqrt(sigmoid(logSNR)), sqrt(1 - sigmoid(logSNR))     (VPScaler)
 *   noised = a x0 + b eps, target = eps                        (EpsilonTarget)
 *   r      = CosineTNoiseCond(logSNR) (t back from the variance)
 *   weight = P2: 1 / (1 + e^logSNR), or adaptive: 1 / bucket_losses[i]
 *            clamped to [1e-7, 1e7], i = searchsorted(linspace(-10, 10, 299), logSNR)
 *   pred   = StageC(noised, r, clip)
 *   loss_n = mean_CHW (pred - target)^2, loss_adjusted = mean_n(loss_n weight_n) / grad_accum
 *   adaptive: bucket_losses[i_n] = 0.99 bucket_losses[i_n] + 0.01 loss_n
 *   backward of loss_adjusted; on the last micro-batch of grad_accum:
 *   clip_grad_norm_(max_grad_norm), optimizer step, zero the gradients.
 *
 * Scalars follow PyTorch's float32 operations one by one (float libm), so a
 * step matches the reference to float rounding. The random draws come in
 * (t, eps), so that no RNG has to match; cs_train_draw makes them with the
 * torch-CPU generator in the order the official code draws them.
 *
 * Float32 master weights (cs_stage_c_load_train), on the host or on a
 * device (cs_trainer_sync). */
#ifndef CS_TRAIN_STEP_H
#define CS_TRAIN_STEP_H

#include "optim.h"
#include "rng.h"
#include "stage_c.h"

#include <stddef.h>

#define CS_TRAIN_BUCKETS 300   /* AdaptiveLossWeight's buckets (299 edges) */

typedef enum { CS_OPT_ADAFACTOR, CS_OPT_ADAMW } cs_opt_kind;
typedef enum { CS_LOSS_P2, CS_LOSS_ADAPTIVE } cs_loss_weight_kind;

typedef struct {
    cs_opt_kind opt;
    cs_adafactor_cfg adafactor;     /* used with CS_OPT_ADAFACTOR */
    cs_adamw_cfg adamw;             /* used with CS_OPT_ADAMW */
    cs_loss_weight_kind loss_weight;
    int grad_accum;                 /* >= 1: micro-batches per optimizer step */
    double max_grad_norm;           /* 1.0 in both codes; 0 = no clipping */
    int tf32;                       /* on a device: float32 products on TF32 tensor cores where it
                                       has them (--mixed_precision bf16), else exact float32 */
    int fused;                      /* kohya's --fused_backward_pass: each tensor clipped by its own
                                       norm and stepped as soon as its gradient is complete (when
                                       its block's backward ends), its buffer then reused: the
                                       gradients of one block live at a time, not the model's.
                                       Adafactor only, grad_accum 1, no LoRA (as kohya) */
} cs_train_cfg;

/* cfg for an optimizer at lr: the seed recipe's Adafactor (or torch's AdamW
 * defaults), P2, no accumulation, clipping at 1. */
void cs_train_cfg_default(cs_train_cfg *c, cs_opt_kind opt, double lr);

/* One micro-batch, channels-last like the engine. */
typedef struct {
    size_t B, h, w;
    const float *x0;          /* [B, h, w, c_in] latents */
    const float *noise;       /* [B, h, w, c_in] eps */
    const float *t;           /* [B] noise levels in [0, 1] */
    const float *clip_text;   /* [B, Lt, c_clip_text] */
    size_t Lt;
    const float *pooled;      /* [B, 1, c_clip_pooled] */
    const float *clip_img;    /* [B, M, c_clip_img], NULL = zeros, M = 1 (kohya) */
    size_t M;
} cs_train_batch;

/* What a micro-batch gave; every array is optional (NULL) and has B entries. */
typedef struct {
    float *loss;              /* loss_n */
    float *logsnr, *r, *weight;
    float *pred;              /* [B, h, w, c_out] */
    float loss_adjusted;
    int stepped;              /* cs_train_step: 1 when the optimizer ran */
    double grad_norm;         /* total norm before clipping, when stepped */
} cs_train_out;

typedef struct cs_trainer cs_trainer;

/* m must come from cs_stage_c_load_train; cfg is copied. */
int cs_trainer_new(cs_stage_c *m, const cs_train_cfg *cfg, cs_trainer **out);
void cs_trainer_free(cs_trainer *t);   /* NULL is fine */

/* AdaptiveLossWeight's bucket losses [CS_TRAIN_BUCKETS] (ones when new): read
 * or set them to resume. */
float *cs_trainer_buckets(cs_trainer *t);
/* The accumulated gradients (grad_blocks.h), by tensor name. */
const struct cs_grads *cs_trainer_grads(const cs_trainer *t);

/* ---- optimizer state, for a resumable checkpoint ----
 * One state per tensor with a gradient (made at its first optimizer step),
 * as named float arrays: Adafactor "row", "col" (factored) or "v"; AdamW
 * "m", "v"; and the tensor's step count. */
typedef struct {
    const char *tensor;             /* the weight's name */
    int64_t step;
    int n;
    const char *part[2];
    float *data[2];
    size_t len[2];
} cs_trainer_opt_view;

/* one tensor's optimizer state (optim.h), and its view */
typedef union {
    cs_adafactor af;
    cs_adamw aw;
} cs_opt_state;
void cs_opt_state_view(const cs_opt_state *s, cs_opt_kind opt, const char *tensor, cs_trainer_opt_view *v);

int cs_trainer_opt_count(const cs_trainer *t);
void cs_trainer_opt_at(const cs_trainer *t, int i, cs_trainer_opt_view *v);
/* Resuming: a state made from now on is filled by fn (ctx, its view): the
 * arrays are allocated and zeroed, fn copies the saved values in and sets
 * step; a non-zero return (a CS_E* code with cs_error set) fails the step. */
typedef int (*cs_trainer_opt_fill)(void *ctx, cs_trainer_opt_view *v);
void cs_trainer_opt_restore(cs_trainer *t, cs_trainer_opt_fill fn, void *ctx);
/* Micro-batches accumulated since the last optimizer step. */
int cs_trainer_pending(const cs_trainer *t);

/* LoRA training (lora_train.h): gradients for net's wrapped weights only,
 * and cs_train_apply steps net's A and B (cs_lora_net_apply) instead of the
 * weights. Before the first step; net must outlive t. */
struct cs_lora_net;
int cs_trainer_set_lora(cs_trainer *t, struct cs_lora_net *net);

/* Device mode (doc/training.md §4): with a device backend active
 * (cs_dev_pick) when the first micro-batch runs, the forward, the backward
 * and the gradients are on the device, and so are clipping and the
 * optimizer (the device's optimizer ops: state in device memory, the
 * weights updated in the device's writable copies). The model's host
 * weights and the host optimizer states (cs_trainer_opt_at) then fall
 * behind: cs_trainer_sync brings them up to date (before a save, a sample
 * on the CPU or anything that reads them). A LoRA's A and B step on the
 * host from downloaded gradients. 0 on the CPU or when nothing changed. */
int cs_trainer_sync(cs_trainer *t);

/* The learning rate of the next optimizer steps (a schedule, lr_sched.h). */
void cs_trainer_set_lr(cs_trainer *t, double lr);

/* The micro-batch's forward and backward: gradients added, buckets updated. */
int cs_train_accumulate(cs_trainer *t, const cs_train_batch *b, cs_train_out *o);
/* Clipping, the optimizer step on every tensor with a gradient, zeroed
 * gradients; *grad_norm (if not NULL) = the norm before clipping. Fused
 * (cfg.fused): the steps ran during cs_train_accumulate's backward; this
 * only gives the norm (the same total over the per-tensor norms). A
 * failure during a fused backward leaves the tensors stepped before it
 * stepped. */
int cs_train_apply(cs_trainer *t, double *grad_norm);
/* cs_train_accumulate, then cs_train_apply on every grad_accum-th call. */
int cs_train_step(cs_trainer *t, const cs_train_batch *b, cs_train_out *o);

/* The official draws for a batch (gdf.diffuse with epsilon=None, t=None):
 * first eps = randn_like(x0) (B*C*h*w normals in NCHW order, stored
 * [B, h, w, C]), then t = clamp(1 - rand(B) + 0.001, 0.001, 1), from r
 * (seeded with cs_rng_seed as torch.manual_seed; the stream continues). */
int cs_train_draw(cs_rng *r, size_t B, size_t C, size_t h, size_t w, float *noise, float *t);

/* The schedule for one t (float32 as PyTorch): logSNR, a, b, r and the P2
 * weight. */
void cs_train_schedule(float t, float *logsnr, float *a, float *b, float *r, float *p2);

#endif
