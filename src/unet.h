/* The U-Net skeleton shared by Stage C and Stage B (upstream
 * modules/stage_c.py and stage_b.py, _down_encode / _up_decode): levels of C/T/A/F blocks with optional repeat
 * mappers, a down path that keeps every level's output, an up path that
 * feeds the skip into the first ResBlock of every up level but the deepest
 * (bilinearly resizing the running tensor to the skip's size first), and the
 * level transitions, told apart by their keys:
 *   UpDownBlock2d (Stage C, keys ...1.blocks.N.*): LayerNorm2d + 1x1 conv
 *            both ways, with a bilinear x0.5 / x2 resize only where
 *            switch_level says so (never in the released checkpoints; the
 *            flag is not in the weights, so it comes from cs_unet_opts);
 *   strided (Stage B, keys ...1.weight): LayerNorm2d + 2x2 stride-2 conv
 *            down, LayerNorm2d + 2x2 stride-2 transposed conv up.
 * The structure is inferred from the tensor names and shapes (§10). */
#ifndef CS_UNET_H
#define CS_UNET_H

#include "blocks.h"
#include "weights.h"

#define CS_UNET_MAX_LEVELS 6
#define CS_UNET_MAX_REPEAT 8

typedef struct {
    int nblocks;
    cs_block *blocks;
    int nrep;                                   /* repeat mappers: passes = nrep + 1 */
    cs_tensor rep_w[CS_UNET_MAX_REPEAT], rep_b[CS_UNET_MAX_REPEAT];   /* [c,c,1,1], [c] */
} cs_unet_level;

typedef struct {
    int strided;                                /* transition style, see above */
    int interp[CS_UNET_MAX_LEVELS];             /* UpDownBlock2d resize between levels i and i+1 */
    int cross_only;                             /* self_attn=False: keys are the conditioning only */
    int nlevels;
    int c[CS_UNET_MAX_LEVELS];                  /* width per level */
    int nhead[CS_UNET_MAX_LEVELS];              /* heads of the level's AttnBlocks */
    int c_r, c_cond, nconds;
    char conds[CS_MAX_TCONDS][24];              /* t_conds in embedding order */
    cs_unet_level down[CS_UNET_MAX_LEVELS];     /* down[i]: level i */
    cs_unet_level up[CS_UNET_MAX_LEVELS];       /* up[u]: level nlevels-1-u */
    cs_tensor dn_w[CS_UNET_MAX_LEVELS], dn_b[CS_UNET_MAX_LEVELS];  /* into level i > 0 */
    cs_tensor up_w[CS_UNET_MAX_LEVELS], up_b[CS_UNET_MAX_LEVELS];  /* out of up level u < nlevels-1 */
    cs_ws ws;
    struct cs_tape *tape;                       /* training (cs_unet_tape_begin); NULL in inference */
} cs_unet;

/* Optional overrides (NULL / 0 = infer): heads per level, t_conds order. */
typedef struct {
    int nhead[CS_UNET_MAX_LEVELS];              /* 0 = c/64 */
    int n_conds;                                /* > 0: use conds[] as the order */
    char conds[CS_MAX_TCONDS][24];
    int switch_level[CS_UNET_MAX_LEVELS];       /* > 0: UpDownBlock2d i<->i+1 resizes; 0 / < 0: not */
    int self_attn;                              /* < 0: AttnBlocks attend to the conditioning only */
} cs_unet_opts;

/* What a loaded Stage C / Stage B is (for `cascade models`, logs, tests).
 * Per-level arrays: down side by level i; blocks_up/repeat_up by up index u
 * (up_blocks.u handles level nlevels-1-u, deepest first). */
typedef struct cs_net_info_s {
    const char *variant;   /* "full", "lite" or "custom" */
    const char *naming;    /* key spelling found: "official", "diffusers" or "comfyui" */
    const char *prefix;    /* key prefix in the file, "" for none */
    int nlevels;
    int c_hidden[CS_UNET_MAX_LEVELS], nhead[CS_UNET_MAX_LEVELS];
    int blocks_down[CS_UNET_MAX_LEVELS], blocks_up[CS_UNET_MAX_LEVELS];   /* repetitions of level_config */
    int repeat_down[CS_UNET_MAX_LEVELS], repeat_up[CS_UNET_MAX_LEVELS];   /* passes (1 + repeat mappers) */
    char level_config[CS_UNET_MAX_LEVELS][8];                           /* e.g. "CTA" */
    int c_in, c_out, patch_size, c_r, c_cond, c_clip_seq;
    int c_clip_text, c_clip_pooled, c_clip_img;   /* Stage B: c_clip_pooled only (its clip_mapper input) */
    int c_effnet, c_pixels;                       /* Stage B only */
    int nconds;
    char t_conds[CS_MAX_TCONDS][24];
    int dtype;             /* cs_dtype of most weights */
    int64_t nparams;
    int ntensors;
} cs_net_info;

/* Fills the level fields, c_r, c_cond, t_conds of info. */
void cs_unet_info_fill(const cs_unet *u, cs_net_info *info);

/* Infers and binds the levels of the file behind m. c_cond: width of the
 * conditioning tokens (from the caller's clip mappers). Problems go to m;
 * returns 0, CS_EMODEL when it recorded problems in m (cs_wmap_finish turns
 * them into the message), or another negative CS_E* code with cs_error set
 * (out of memory, bad options). */
int cs_unet_bind(cs_unet *u, cs_wmap *m, int c_cond, const cs_unet_opts *opt);
/* The end of a Stage B / C load: cs_unet_bind, then checks level 0 against
 * the embedding width c0, finishes m (every problem, reported as `what`) and
 * fills info from the net and the map: all but naming and variant.
 * Returns 0 or a negative CS_E* code (the message from cs_wmap_finish). */
int cs_unet_bind_info(cs_unet *u, cs_wmap *m, int c_cond, const cs_unet_opts *opt, int64_t c0, const char *what,
                      cs_net_info *info);
void cs_unet_free(cs_unet *u);
/* The smallest grid side (after the embedding) that the level transitions
 * accept: 2^(halving transitions). Checked before any work is done. */
size_t cs_unet_min_side(const cs_unet *u);

/* Reads overrides from a JSON object string (a `config` as in the golden
 * files: "nhead" int or list, "t_conds" list, "switch_level" list of
 * booleans, "self_attn" boolean); missing keys are left alone.
 * Returns 0, or CS_EFORMAT for malformed JSON / wrong types. */
int cs_unet_opts_from_json(cs_unet_opts *o, const char *json, const char *what);

/* Overrides from the file's __metadata__["config"] if it is a JSON object
 * with well-formed nhead / t_conds; otherwise o is left zeroed. */
void cs_unet_opts_from_file(cs_unet_opts *o, const cs_st_file *f);

/* Key spelling of the bound attention ("official" packed, or "diffusers"). */
int cs_unet_split_attention(const cs_unet *u);

/* remb [N, c_r*(1+nconds)] = emb(r), then emb of each t_cond: sca / crp
 * values for those names (NULL = 0), 0 for any other name; in the current
 * mode's memory (src/device.h): cs_act_free it. */
float *cs_unet_remb(const cs_unet *u, const float *r, size_t N, const float *sca, const float *crp);

/* h: in [N,H,W,c[0]] (the embedded input, cs_act_alloc'd; ownership passes in),
 * out *h_out [N,H,W,c[0]] (cs_act_alloc'd, caller frees). remb: [N, ldr] with
 * c_r*(1+nconds) used; cond: [N, Lc, c_cond]. */
int cs_unet_forward(cs_unet *u, float *h, size_t N, size_t H, size_t W, const float *remb, size_t ldr,
                    const float *cond, size_t Lc, float **h_out);

/* ---- training (doc/training.md §3) ----
 * A tape records, during cs_unet_forward, a copy of the input of every block
 * and level transition (and of a ResBlock's skip input): one activation per
 * block, the checkpoints of per-block gradient checkpointing. The backward
 * walks the network in reverse and recomputes each block from its checkpoint
 * (cs_block_backward). Host only; the released Stage C layout only: packed
 * attention, UpDownBlock2d transitions without resize, no repeat mappers
 * (anything else: CS_EUNSUP at begin). */
/* Starts recording: the next cs_unet_forward fills the tape. */
int cs_unet_tape_begin(cs_unet *u);
/* Frees the tape (recording stops). */
void cs_unet_tape_end(cs_unet *u);
struct cs_grads;
/* After a recorded forward: d [N,H,W,c0] in: dL/d(output), out: dL/d(input h).
 * remb/cond as given to the forward; dcond [N,Lc,c_cond] += (NULL: not
 * wanted); parameter gradients are added into g. */
int cs_unet_backward(cs_unet *u, float *d, size_t N, size_t H, size_t W, const float *remb, size_t ldr,
                     const float *cond, size_t Lc, float *dcond, struct cs_grads *g);

/* Floating-point operations (multiply-add = 2) of one forward at H x W. */
double cs_unet_flops(const cs_unet *u, size_t N, size_t H, size_t W, size_t Lc);

/* Blocks per level as a pattern: e.g. "CTA" and its repetitions; 0 if the
 * level is not a whole repetition of its first period. */
int cs_unet_pattern(const cs_unet_level *l, char *pat, size_t len);

#endif
