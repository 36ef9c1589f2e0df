/* Stage A: the Paella VQGAN of Stable Cascade (upstream modules/stage_a.py).
 * decode: Stage-B latent [N,h,w,4] -> image [N,4h,4w,3] (unclamped, ~[0,1]);
 * encode: image [N,H,W,3] in [0,1] -> latent [N,H/4,W/4,4] (quantize=False
 * path), optionally snapped to the codebook.
 *
 * Activations are channels-last float32. Weights stay views into the
 * checkpoint mapping (F32/BF16/F16); only the six gammas of each ResBlock and
 * the encoder BatchNorm are converted at load. The structure (c_hidden,
 * levels, bottleneck blocks, MLP widths) is read off the tensors and every
 * tensor is checked; the file must outlive the model.
 *
 * Accepted spellings: the official state_dict names, diffusers' PaellaVQModel
 * (codebook "vquantizer.embedding.weight"), and any prefix such as ComfyUI's
 * "vae." (Stage B combined checkpoints). Files with no encoder tensors load
 * as decoder-only models (encode then fails with CS_EUNSUP).
 *
 * Tiled decode: every op of the decoder is per pixel except the depthwise 3x3
 * convs (one pixel of reach per ResBlock, at that level's resolution) and the
 * transposed convs (reach one input pixel). A core tile of the latent grid
 * therefore needs cs_stage_a_halo() latent pixels of context on each side
 * (13 for the released model: 12 bottleneck blocks + 1 for the transposed
 * conv and the last ResBlock); everything a tile computes wrongly at its own
 * borders (ReplicationPad there, missing transposed-conv contributions) stays
 * inside that halo and is cropped away, while at the true image borders the
 * tile's border is the image's, so the padding is the real one. The tiled
 * result is bit-identical to the untiled one (tests/test_stage_a_tiles.c),
 * because every product element is one FMA chain in k order whatever the
 * call's size (src/ops.c) and the transposed conv sums each output's terms
 * in a fixed order. */
#ifndef CS_STAGE_A_H
#define CS_STAGE_A_H

#include "safetensors.h"
#include "tensor.h"
#include "weights.h"

#include <stddef.h>
#include <stdint.h>

#define CS_STAGE_A_SCALE 0.43f     /* official / ComfyUI; diffusers uses 0.3764 */
#define CS_STAGE_A_MAX_LEVELS 6
#define CS_STAGE_A_MIN_TILE 16     /* tile side the planner falls back to when nothing fits */

/* Stage-A ResBlock(c, c_hidden) (§5.1); parameters under "<prefix>". */
typedef struct {
    int c, c_hidden;
    float g[6];                        /* gammas */
    cs_tensor dw_w, dw_b;              /* depthwise.1: [c,1,3,3], [c] */
    cs_tensor fc1_w, fc1_b;            /* channelwise.0: [c_hidden, c], [c_hidden] */
    cs_tensor fc2_w, fc2_b;            /* channelwise.2: [c, c_hidden], [c] */
} cs_sa_resblock;

/* Binds "<prefix>gammas", "<prefix>depthwise.1.*", "<prefix>channelwise.{0,2}.*".
 * c and c_hidden <= 0: read off the tensors. Problems are recorded in m;
 * returns 0 or -1 (see cs_wmap_finish for the message). */
int cs_sa_resblock_bind(cs_sa_resblock *b, cs_wmap *m, const char *prefix, int c, int c_hidden);
/* Floats of scratch cs_sa_resblock_forward needs for images of HW pixels. */
size_t cs_sa_resblock_work(const cs_sa_resblock *b, size_t HW);
/* x [N,H,W,c] updated in place; work: cs_sa_resblock_work(b, H*W) floats, asked in the
 * same mode (CPU or device: src/device.h) as the forward, or NULL: taken for the call
 * when the single ops run (a device's fused form, where it has one, needs none). */
int cs_sa_resblock_forward(const cs_sa_resblock *b, float *x, size_t N, size_t H, size_t W, float *work);

typedef struct {
    int levels;             /* 2 */
    int bottleneck_blocks;  /* 12 */
    int c_hidden;           /* 384 = widest level */
    int c_latent;           /* 4 */
    int codebook_size;      /* 8192, 0 if the file has no codebook */
    int c_levels[CS_STAGE_A_MAX_LEVELS];   /* [192, 384] */
    int has_encoder;
} cs_stage_a_config;

typedef struct cs_stage_a cs_stage_a;

/* From an open file (borrowed). prefix NULL: the first of "", "vae.",
 * "first_stage_model.", "vqgan." under which up_blocks.0.0.weight exists. */
int cs_stage_a_load(cs_st_file *f, const char *prefix, cs_stage_a **out);
/* Opens path; the model owns the file. */
int cs_stage_a_open(const char *path, cs_stage_a **out);
void cs_stage_a_free(cs_stage_a *m);   /* NULL is fine */
const cs_stage_a_config *cs_stage_a_get_config(const cs_stage_a *m);

/* Latent pixels of context a decode tile needs on each side (13). */
int cs_stage_a_halo(const cs_stage_a *m);
/* Up-sampling factor latent -> image (4). */
int cs_stage_a_factor(const cs_stage_a *m);
/* Peak bytes of scratch decoding one tile of th x tw latent pixels (its
 * halo included) needs. */
size_t cs_stage_a_decode_bytes(const cs_stage_a *m, size_t th, size_t tw);
/* Core tile for an h x w latent under a scratch budget of max_bytes: the
 * whole image (tile = h x w) if it fits, else the tallest full-width strips or
 * the largest square tiles that fit, whichever recomputes less halo; if
 * nothing fits, CS_STAGE_A_MIN_TILE squares. max_bytes 0: untiled. */
void cs_stage_a_plan_tiles(const cs_stage_a *m, size_t h, size_t w, size_t max_bytes, size_t *tile_h,
                           size_t *tile_w);

/* z [N,h,w,c_latent] -> img [N,f*h,f*w,3] (f = cs_stage_a_factor), computes
 * decode(z) = up(z * scale). tile_h / tile_w: core tile in latent pixels
 * (0 = the whole extent). The result does not depend on the tiling. */
int cs_stage_a_decode(const cs_stage_a *m, const float *z, size_t N, size_t h, size_t w, float scale,
                      size_t tile_h, size_t tile_w, float *img);

/* img [N,H,W,3] (H, W multiples of f) -> z [N,H/f,W/f,c_latent] = down(img) / scale.
 * indices: NULL (quantize=False), or [N*H/f*W/f] codebook rows; then z is
 * the codebook vectors / scale (quantize=True). */
int cs_stage_a_encode(const cs_stage_a *m, const float *img, size_t N, size_t H, size_t W, float scale,
                      float *z, int32_t *indices);

#endif
