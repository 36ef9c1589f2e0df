/* The four building blocks of Stage C and Stage B (upstream modules/common.py):
 * ResBlock 'C', TimestepBlock 'T', AttnBlock 'A', FeedForwardBlock 'F'.
 *
 * Activations are channels-last float32 ([N,H,W,c] = N images of HW rows of
 * c floats) and are updated in place. Weights are cs_tensor views into the
 * checkpoint mapping (F32/BF16/F16, PyTorch layout), bound by name through a
 * cs_wmap with strict shape checks; nothing is copied at load time.
 *
 * Scratch comes from a cs_ws (a few growing buffers owned by the caller and
 * reused block after block), so a forward pass does not malloc per block.
 * A cs_ws must not be shared by two forwards running at the same time. */
#ifndef CS_BLOCKS_H
#define CS_BLOCKS_H

#include "tensor.h"
#include "weights.h"

#include <stddef.h>

#define CS_WS_SLOTS 9
#define CS_MAX_TCONDS 4

/* keep != 0 (training, src/grad_blocks.h): the forwards write every
 * intermediate a backward needs into its own slot instead of overwriting it
 * in place, and never use a device's fused block. Slots after a forward:
 *   ResBlock/FF  0 depthwise out (FF: LN out), 8 LN out (ResBlock), 1 [LN|skip],
 *                2 fc1 out, 6 GELU out, 7 GRN out
 *   Timestep     0 the mapper sum [N, 2c] (a | b)
 *   Attn         0 LN out, 1 qkv, 2 k|v of cond, 3 SiLU(cond), 4 kv_mapper out,
 *                5 gathered k|v, 6 attention out
 * Inference (keep = 0) uses slots 0-5 only and the in-place paths. */
typedef struct {
    float *p[CS_WS_SLOTS];
    size_t cap[CS_WS_SLOTS];   /* floats */
    const void *dev;           /* the cs_dev_ops its buffers came from (NULL: host) */
    int keep;
} cs_ws;

/* Slot `slot` grown to at least n floats (contents not kept), in the
 * current mode's memory (src/device.h); NULL + cs_error. */
float *cs_ws_get(cs_ws *ws, int slot, size_t n);
void cs_ws_free(cs_ws *ws);
size_t cs_ws_bytes(const cs_ws *ws);

/* ResBlock(c, c_skip) and FeedForwardBlock(c) (which has no depthwise part). */
typedef struct {
    int c, c_skip;
    int has_dw;                        /* 1: ResBlock, 0: FeedForwardBlock */
    int k;                             /* depthwise kernel size (odd; 3 in every release) */
    cs_tensor dw_w, dw_b;              /* depthwise.weight [c,1,k,k], .bias [c] */
    cs_tensor fc1_w, fc1_b;            /* channelwise.0: [4c, c+c_skip], [4c] */
    cs_tensor gamma, beta;             /* channelwise.2 (GRN): [1,1,1,4c] */
    cs_tensor fc2_w, fc2_b;            /* channelwise.4: [c, 4c], [c] */
} cs_resblock;

/* TimestepBlock(c, c_r, conds): t = [emb(r), emb(cond_1), ...] of c_r each. */
typedef struct {
    int c, c_r, nconds;
    cs_tensor w[1 + CS_MAX_TCONDS], b[1 + CS_MAX_TCONDS];   /* mapper, mapper_<cond_i>: [2c, c_r], [2c] */
} cs_tsblock;

/* AttnBlock(c, c_cond, nhead, self_attn=True). q/k/v are row views of the
 * packed in_proj [3c, c] (packed = 1) or diffusers/ComfyUI split matrices. */
typedef struct {
    int c, c_cond, nhead, packed;
    int self_attn;                     /* 1 (every release): keys = [x tokens, cond]; 0: cond only */
    cs_tensor wqkv, bqkv;              /* packed only: [3c, c], [3c] */
    cs_tensor wq, wk, wv, bq, bk, bv;  /* [c, c], [c] */
    cs_tensor wo, bo;                  /* out_proj [c, c], [c] */
    cs_tensor kv_w, kv_b;              /* kv_mapper.1: [c, c_cond], [c] */
} cs_attnblock;

typedef struct {
    char type;   /* 'C', 'T', 'A', 'F' */
    union {
        cs_resblock res;   /* 'C' and 'F' */
        cs_tsblock ts;
        cs_attnblock attn;
    } u;
} cs_block;

/* Binding: p is the module prefix ending in '.', e.g. "down_blocks.0.3.".
 * Problems (missing / mis-shaped) are recorded in m; returns 0 or -1. */
int cs_resblock_bind(cs_resblock *b, cs_wmap *m, const char *p, int c, int c_skip);
int cs_ffblock_bind(cs_resblock *b, cs_wmap *m, const char *p, int c);
/* conds: names of the extra mappers in t order (mapper_<name>), may be 0. */
int cs_tsblock_bind(cs_tsblock *b, cs_wmap *m, const char *p, int c, int c_r, int nconds,
                    const char *const *conds);
int cs_attnblock_bind(cs_attnblock *b, cs_wmap *m, const char *p, int c, int c_cond, int nhead);

/* Forwards, all in place on x [N, H, W, c] (HW = H*W rows per image). */
/* skip: [N, H, W, c_skip] or NULL (must match b->c_skip != 0). */
int cs_resblock_forward(const cs_resblock *b, float *x, size_t N, size_t H, size_t W, const float *skip, cs_ws *ws);
int cs_ffblock_forward(const cs_resblock *b, float *x, size_t N, size_t HW, cs_ws *ws);
/* t: [N, ldt] of which the first c_r*(1+nconds) are used. */
int cs_tsblock_forward(const cs_tsblock *b, float *x, size_t N, size_t HW, const float *t, size_t ldt, cs_ws *ws);
/* cond: [N, Lc, c_cond] (the normalised conditioning tokens). */
int cs_attnblock_forward(const cs_attnblock *b, float *x, size_t N, size_t HW, const float *cond, size_t Lc,
                         cs_ws *ws);

/* Dispatch on type (skip only for 'C'; t for 'T'; cond for 'A'). */
int cs_block_forward(const cs_block *b, float *x, size_t N, size_t H, size_t W, const float *skip, const float *t,
                     size_t ldt, const float *cond, size_t Lc, cs_ws *ws);

/* FLOPs (2 per multiply-add) of one forward of a block on N*HW rows: GEMMs,
 * convs and attention products; norms and activations not counted. */
double cs_block_flops(const cs_block *b, size_t N, size_t HW, size_t Lc);

#endif
