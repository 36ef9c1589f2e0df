/* The LoRA network's insides, shared by src/lora_train.c (modules, host
 * step, files) and src/lora_dev.c (the step on a device). Not installed. */
#ifndef CS_LORA_NET_H
#define CS_LORA_NET_H

#include "backend.h"
#include "ops.h"
#include "lora_train.h"
#include "optim.h"

typedef cs_opt_state opt_state;

typedef struct {
    char *name, *mod;         /* kohya name; dotted module path (for the order) */
    char *kd, *ku;            /* its file keys <name>.lora_down.weight, <name>.lora_up.weight */
    int wi;                   /* file tensor of the weight */
    const cs_tensor *w0;      /* the file's tensor (frozen) */
    const cs_tensor *wp;      /* the model's float32 W' */
    int64_t row0, rows, K;    /* rows of W this module changes; columns (in * kh * kw) */
    int ndim;
    int64_t dshape[4], ushape[4];
    int rank;
    float alpha, scale;
    float *A, *B, *gA, *gB;   /* [rank, K], [rows, rank] and their gradients (lora_grad.c's sums) */
    opt_state sA, sB;
    size_t off, goff;         /* lora_dev.c: A's place in the device arrays (B follows), dA's */
} lmod;

/* A LoRA step on a device (lora_dev.c): A, B of every module in one
 * device array (module order), dA and dB in another; a host staging array
 * for one copy each way. */
typedef struct {
    const cs_dev_ops *d;      /* NULL: nothing on a device */
    float *par, *grad;        /* device: [npar], [ngrad] */
    float *w0;                /* device: one wrapped weight's W0 widened to float32 (lora_grad.c) */
    float *stage;             /* host: npar floats (>= ngrad) */
    size_t npar, ngrad;
    int dirty;                /* the host's A/B changed since the last upload */
} lora_dev;

struct cs_lora_net {
    cs_stage_c *m;
    cs_lora_train_cfg cfg;
    char module_name[32];
    lmod *v;
    int n;
    int opt;                  /* cs_opt_kind of the states, -1 before the first step */
    char conds[CS_MAX_TCONDS][24];
    int nconds;
    lora_dev dev;
    int gfresh;               /* the next backward starts a step: dA / dB to be zeroed */
    int stale;                /* a step changed A / B since the last merge into the model's W' */
    size_t wmax;              /* floats of the largest wrapped weight tensor (dev.w0's size) */
    int rmax;                 /* the largest rank */
    float *ones;              /* host: nones 1s, the most rows of a wrapped tensor (the bias as an affine op) */
    size_t nones;
    cs_lowrank hook;          /* the forward's term (lora_grad.c), set by the trainer's steps */
};

/* clip_grad_norm_ over every module's gA/gB (as cs_lora_net_grads left
 * them) and the optimizer step on A and B, on the host; no merge */
int cs_lora_net_step(cs_lora_net *n, const cs_train_cfg *cfg, double *grad_norm);
/* lora_grad.c: the sink of the trainer's cs_grads (grad_blocks.h) that
 * runs each wrapped Linear's backward (dx from W0 and the term, dA and dB
 * added); the forward's hook (ops.h, n->hook); zeroing the host's sums */
int cs_lora_net_sink(void *ctx, const cs_tensor *W, const float *x, size_t M, size_t K, size_t ldx, const float *dy,
                     size_t ldy, float *dx, int acc);
int cs_lora_net_linear(void *ctx, const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W,
                       const cs_tensor *b, float *y, size_t ldy, int acc);
void cs_lora_net_zero_grads(cs_lora_net *n);
/* lora_dev.c: the device arrays made and A, B uploaded if stale */
int cs_lora_net_dev_ready(cs_lora_net *n, const cs_dev_ops *d);
/* drops the device pools (lora_dev.c) */
void cs_lora_net_dev_free(cs_lora_net *n);

#endif
