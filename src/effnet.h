/* EfficientNet encoder (upstream modules/effnet.py): image -> Stage-C latent.
 * backbone = torchvision EfficientNetV2-S .features (stem, six stages of
 * FusedMBConv / MBConv+SE blocks, head), BatchNorm eps 1e-3, SiLU; then
 * mapper = Conv1x1(1280 -> 16, no bias) + BatchNorm(affine=False, eps 1e-5).
 *
 * Structure from the tensor names: the number of blocks of every stage
 * (backbone.<s>.<i>.*), the block type (SE present => MBConv), the expansion
 * and all widths come from the file, so reduced-depth test networks load too.
 * Strides cannot be read from weights: they are V2-S's (stage 1..6: 1 2 2 2 1 2,
 * stem 2), which fixes the stage count at six.
 *
 * Weights stay views into the file (F32/BF16/F16); BatchNorms are folded to
 * per-channel scale/shift at load. Accepted prefixes: none, "vae.encoder.",
 * "encoder." (ComfyUI's StageC_coder; its extra mean/std are ignored). */
#ifndef CS_EFFNET_H
#define CS_EFFNET_H

#include "safetensors.h"
#include "tensor.h"

#include <stddef.h>

#define CS_EFFNET_STAGES 6

typedef struct {
    int c_latent;                      /* 16 */
    int c_stem, c_head;                /* 24, 1280 */
    int blocks[CS_EFFNET_STAGES];      /* 2 4 4 6 9 15 for the released file */
    int c_out[CS_EFFNET_STAGES];       /* 24 48 64 128 160 256 */
} cs_effnet_config;

typedef struct cs_effnet cs_effnet;

int cs_effnet_load(cs_st_file *f, const char *prefix, cs_effnet **out);
int cs_effnet_open(const char *path, cs_effnet **out);
void cs_effnet_free(cs_effnet *m);   /* NULL is fine */
const cs_effnet_config *cs_effnet_get_config(const cs_effnet *m);

/* Official effnet_preprocess (§7.1): rgb in [0,1], n pixels of 3 channels
 * (channels-last) -> (x - ImageNet mean) / ImageNet std. In place is fine. */
void cs_effnet_preprocess(const float *rgb, float *x, size_t n);

/* Output side for an input side: five stride-2 steps, ceil(n / 32). */
size_t cs_effnet_out_size(size_t n);

/* x [N,H,W,3] (already preprocessed) -> y [N,ceil(H/32),ceil(W/32),c_latent]. */
int cs_effnet_forward(const cs_effnet *m, const float *x, size_t N, size_t H, size_t W, float *y);

#endif
