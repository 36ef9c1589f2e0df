/* LoRA training of Stage C as kohya's sd-scripts does it (issue 13,
 * doc/training.md §9): `--network_module networks.lora` on the
 * stable-cascade branch, which wraps every Linear and every 1x1 Conv2d of
 * Stage C (attention as to_q/to_k/to_v/out_proj), and kxk Conv2d that are
 * not grouped only with conv_dim (the released Stage C has none; its
 * depthwise convs are grouped and never wrapped).
 *
 * Use (the trainer does the rest, every step):
 *   cs_stage_c_load_train(f, NULL, &m);
 *   cs_lora_train_cfg lc; cs_lora_train_cfg_default(&lc);  lc.dim = 8; ...
 *   cs_lora_net_new(m, &lc, &net);          // A = kaiming init (seed), B = 0
 *   cs_trainer_new(m, &cfg, &tr);  cs_trainer_set_lora(tr, net);
 *   loop: cs_train_step(tr, &batch, &out);  // optimizer on A and B only
 *   cs_lora_net_save(net, "out.safetensors", CS_BF16, meta, nmeta);
 *   cs_trainer_free(tr); cs_lora_net_free(net); cs_stage_c_free(m);
 *
 * How (kohya's forward, no merged weight): while a step runs, every Linear
 * of a wrapped weight computes W0 x + s B (A x) (+ bias; s = alpha / dim, W0
 * the file's tensor, the q/k/v third of in_proj for to_q/to_k/to_v) through
 * the low-rank hook of ops.h, and its backward dx = dy W0 + (s dy B) A with
 * dL/dB += dy^T (s x A^T), dL/dA += (s dy B)^T x (src/lora_grad.c; every
 * other tensor is frozen): no W' = W0 + s B A and no G = dL/dW' exists.
 * Clipping and the optimizer (the trainer's cfg) act on A and B only.
 * The model's own float32 weights are W' only after cs_lora_net_merge
 * (sampling during training: cs_lora_net_sample_begin). Biases and every
 * other tensor stay as loaded.
 *
 * Seeding: cs_lora_net_new gives the A that `torch.manual_seed(seed)`
 * followed by kohya's LoRANetwork(..., unet=StageC) gives on the CPU: for
 * each module in kohya's order, the draws of the nn.Linear/Conv2d
 * constructors of lora_down and lora_up, then kaiming_uniform_(a=sqrt(5)) of
 * lora_down (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's uniform_ formula);
 * B = 0. A kohya run draws from the generator before (model init) as well, so
 * a whole kohya run is not reproduced draw for draw.
 *
 * Float32 (as cs_train_step); on a device see cs_lora_net_apply_dev. */
#ifndef CS_LORA_TRAIN_H
#define CS_LORA_TRAIN_H

#include "ops.h"
#include "stage_c.h"
#include "tensor.h"
#include "train_step.h"

#include <stdint.h>

typedef struct {
    const char *network_module;   /* "networks.lora" (or "lora"); any other is refused */
    int dim;                      /* --network_dim: rank >= 1 (kohya's default 4) */
    double alpha;                 /* --network_alpha (default 1); 0 = dim (scale 1); < 0 refused */
    int conv_dim;                 /* network_args conv_dim: 0 = kxk convs not wrapped (> 0 with one: CS_EUNSUP) */
    double conv_alpha;            /* network_args conv_alpha (default 1) */
    /* --network_dropout and network_args rank_dropout / module_dropout: not
     * implemented, so anything but 0 is refused (CS_EUNSUP) */
    double dropout, rank_dropout, module_dropout;
    uint64_t seed;                /* of the init (torch.manual_seed) */
} cs_lora_train_cfg;

void cs_lora_train_cfg_default(cs_lora_train_cfg *c);   /* networks.lora, dim 4, alpha 1, seed 0 */

typedef struct cs_lora_net cs_lora_net;

/* One wrapped module, as kohya saves it. */
typedef struct {
    const char *name;        /* "lora_unet_down_blocks_0_2_attention_attn_to_q" */
    const char *target;      /* the file's tensor, e.g. "...attention.attn.in_proj_weight" */
    int64_t row0, rows;      /* its rows this module changes */
    int rank;
    float alpha, scale;      /* scale = alpha / rank as float (src/lora.c's merge) */
    int ndim;                /* 2 (Linear) or 4 (Conv2d) */
    int64_t down_shape[4];   /* [rank, in] or [rank, in, kh, kw] */
    int64_t up_shape[4];     /* [out, rank] or [out, rank, 1, 1] */
    float *down, *up;        /* A and B (writable; after changing them call cs_lora_net_merge,
                              * which also tells a device to take them again) */
    /* dL/dA, dL/dB summed by the backward passes (cs_train_accumulate)
     * since the last step; the step clips them in place */
    const float *gdown, *gup;
} cs_lora_module;

/* Wraps the modules of m (from cs_stage_c_load_train; official in_proj
 * keys, as the Stage C backward needs) and initialises A and B. Bad values
 * in cfg: CS_EARG / CS_EUNSUP with a one-line message naming the option. */
int cs_lora_net_new(cs_stage_c *m, const cs_lora_train_cfg *cfg, cs_lora_net **out);
void cs_lora_net_free(cs_lora_net *n);   /* NULL is fine; the model keeps W' as it is */

int cs_lora_net_count(const cs_lora_net *n);
int64_t cs_lora_net_params(const cs_lora_net *n);   /* trainable values (A and B) */
/* Module i (kohya's order), or CS_EARG; find: the index of a name, or -1. */
int cs_lora_net_module(cs_lora_net *n, int i, cs_lora_module *out);
int cs_lora_net_find(const cs_lora_net *n, const char *name);

/* The model's float32 weights of every module made W' = W0 + s B A (what
 * an inference forward reads), on the host; the device takes A and B again.
 * Training reads neither: the step adds the term at run time. */
int cs_lora_net_merge(cs_lora_net *n);
/* What cs_train_apply does for a trainer with a LoRA: clip_grad_norm_ over
 * the sums of dL/dA, dL/dB, the optimizer step on A and B (no merge).
 * *grad_norm (if not NULL): the norm before clipping. */
int cs_lora_net_apply(cs_lora_net *n, const struct cs_grads *g, const cs_train_cfg *cfg, double *grad_norm);
/* The same with g on a device (g->dev; the trainer's device mode,
 * src/lora_dev.c): dA and dB summed there, downloaded, A and B stepped on
 * the host and uploaded. Same bits as cs_lora_net_apply where the device
 * computes as the CPU does. */
int cs_lora_net_apply_dev(cs_lora_net *n, const struct cs_grads *g, const cs_train_cfg *cfg, double *grad_norm);
/* The forward's term (ops.h): the trainer sets it on its thread while a
 * micro-batch's forward and backward run. */
const cs_lowrank *cs_lora_net_hook(cs_lora_net *n);
/* Sampling with the trained LoRA between steps: begin merges W' into the
 * model's float32 weights if a step changed A or B, and drops the device's
 * copies of W0, A and B (the next step makes them again); end drops the
 * copies of W' that the sampler's forward made (a device's float32 copy,
 * the CPU's packed panels), so none is alive during the training steps. */
int cs_lora_net_sample_begin(cs_lora_net *n);
void cs_lora_net_sample_end(cs_lora_net *n);
/* Makes g give no tensor a gradient buffer and hand every wrapped Linear's
 * backward to the net (g->sink), in the current mode (host or device). */
int cs_lora_net_attach(cs_lora_net *n, struct cs_grads *g);

/* ---- resuming (cascade train's state) ----
 * The optimizer states of A and B, as the trainer's (train_step.h): view i
 * (0 <= i < cs_lora_net_opt_count, 0 before the first step) is module i/2's
 * lora_down (even i) or lora_up (odd i), named "<name>.lora_down.weight" /
 * "<name>.lora_up.weight". cs_lora_net_opt_restore makes every state for opt
 * now (zeroed) and has fn fill each; a state of the same values gives the
 * same next steps as the one it was saved from (the states are independent
 * of each other; the clipping norm depends on the gradients only). */
int cs_lora_net_opt_count(const cs_lora_net *n);
void cs_lora_net_opt_at(const cs_lora_net *n, int i, cs_trainer_opt_view *v);
int cs_lora_net_opt_restore(cs_lora_net *n, cs_opt_kind opt, cs_trainer_opt_fill fn, void *ctx);

/* Sets A and B from a LoRA file in kohya's format (what cs_lora_net_save
 * writes, any float dtype): kohya's --network_weights (no merge). Every key
 * of the file must be a module of n with the same shapes and alpha, and
 * every module must be in the file (a file of other network_dim /
 * network_alpha / conv_dim, or of another model, is refused naming the
 * key): CS_EFORMAT / CS_EMODEL. */
int cs_lora_net_load(cs_lora_net *n, const char *path);

/* Writes the LoRA as kohya does (safetensors, atomically): per module
 * <name>.lora_down.weight, <name>.lora_up.weight, <name>.alpha (a scalar),
 * all in dtype (CS_F32, CS_BF16 or CS_F16: --save_precision), and the
 * metadata ss_network_module, ss_network_dim, ss_network_alpha,
 * ss_network_dropout (and ss_network_args with conv_dim) as kohya's str(),
 * then the caller's pairs meta[0..2*nmeta) (which replace ours of the same key). */
int cs_lora_net_save(const cs_lora_net *n, const char *path, cs_dtype dtype, const char *const *meta, int nmeta);

#endif
