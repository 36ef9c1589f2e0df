/* Backward passes of whole blocks (blocks.h) and the parameter gradients
 * they produce (issue 13, doc/training.md §3).
 *
 * Each block backward recomputes its block's forward from the saved input
 * (gradient checkpointing per block): it runs the inference forward
 * (cs_block_forward) on a copy of x with a keeping cs_ws (blocks.h: keep),
 * then chains the kernels of grad.h through the kept intermediates. There is
 * no second description of a block.
 *
 * Parameter gradients go to a cs_grads: one float32 buffer per weight
 * tensor, keyed by the tensor's data (so a row view of a packed in_proj
 * lands in the in_proj's buffer), made zeroed on first use and added into
 * afterwards. A cs_grads with `only` set gives gradients only to tensors it
 * already holds (the trainable ones); the others are frozen. Its buffers
 * live where its first one was made: host memory, or in device mode
 * (device.h) the device's (then g is a device pointer, and a later call in
 * the other mode is an error). */
#ifndef CS_GRAD_BLOCKS_H
#define CS_GRAD_BLOCKS_H

#include "blocks.h"

typedef struct {
    const void *key;   /* the tensor's data */
    const char *name;  /* the tensor's name (not owned) */
    size_t n;          /* floats */
    float *g;          /* NULL: released by cs_grads_done (fused) */
    size_t cap;        /* floats in g's buffer (a reused one may be larger) */
    int pend;          /* touched since the last cs_grads_done */
    unsigned gen;      /* the pass it was stepped in (fused) */
} cs_grad_ent;

typedef struct cs_grads {
    cs_grad_ent *e;
    int n, cap;
    int only;          /* 1: no new entries (frozen tensors give NULL) */
    const void *dev;   /* the cs_dev_ops the buffers came from (NULL: host) */
    /* A low-rank sink (LoRA, lora_grad.c): a Linear backward of a weight
     * without a buffer goes to it first with its input x, output gradient
     * dy and dx (row stride ldx; NULL: not wanted); for a weight of its own
     * it writes (acc: adds) dx = dy (W0 + s B A) and takes the factors'
     * gradients, without a gradient of the weight's size, and returns 0 or
     * an error; 1 where the weight is not its own (the plain backward runs). */
    int (*sink)(void *ctx, const cs_tensor *W, const float *x, size_t M, size_t K, size_t ldx, const float *dy,
                size_t ldy, float *dx, int acc);
    void *sink_ctx;
    /* Fused backward (doc/training.md §4): with done set, cs_grads_done
     * hands done the entries touched since its last call (idx[n]) as
     * complete, then releases their buffers to a spare list that later
     * entries reuse (zeroed), so that only a block's gradients are live at
     * a time. A weight touched again in the same pass (gen) is an error:
     * its gradient was not complete when it was stepped. */
    int (*done)(void *ctx, struct cs_grads *g, const int *idx, int n);
    void *done_ctx;
    unsigned gen;      /* the current pass; the caller bumps it per backward */
    int *pend, npend, cappend;
    struct cs_grad_spare { float *p; size_t cap; } *spare;
    int nspare, capspare;
} cs_grads;

/* The gradient buffer of t (numel floats), made zeroed if new; NULL when
 * frozen (only), on allocation failure (then cs_error is set and *rc, if
 * rc, is CS_ENOMEM) or when called in another mode than the buffers'
 * (*rc CS_EARG). */
float *cs_grads_of(cs_grads *g, const cs_tensor *t, int *rc);
/* By tensor name (as in the file); NULL if none. */
const cs_grad_ent *cs_grads_find(const cs_grads *g, const char *name);
/* 0, or a negative code when the device could not queue the fill */
int cs_grads_zero(cs_grads *g);
void cs_grads_free(cs_grads *g);
/* Fused: the touched entries are complete (see done); 0 without done. Call
 * in the mode of the buffers (device mode for device ones). */
int cs_grads_done(cs_grads *g);

/* g's sink where dW is NULL and it owns W, else cs_linear_backward (grad.h) */
int cs_linear_backward_g(cs_grads *g, const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W,
                         const float *dy, size_t ldy, float *dx, int acc, float *dW, float *db);

/* Backward of one block, on the host or in device mode (then every pointer
 * is a device pointer, and g's buffers are the device's).
 *   x       [N,H,W,c] the block's input (not changed)
 *   d       in: dL/dy [N,H,W,c]; out: dL/dx (in place)
 *   skip    ResBlock's skip input or NULL; dskip [N,H,W,c_skip] += its gradient
 *   t, ldt  TimestepBlock's embedding; dt [N, ldt] += (NULL: not wanted)
 *   cond    AttnBlock's conditioning [N,Lc,c_cond]; dcond += (NULL: not wanted)
 *   ws      kept forward intermediates (its keep flag is set here);
 *   bws     backward scratch. The two must be distinct. */
int cs_block_backward(const cs_block *b, const float *x, float *d, size_t N, size_t H, size_t W, const float *skip,
                      float *dskip, const float *t, size_t ldt, float *dt, const float *cond, size_t Lc, float *dcond,
                      cs_grads *g, cs_ws *ws, cs_ws *bws);

#endif
