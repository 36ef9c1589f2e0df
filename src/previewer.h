/* Previewer (upstream modules/previewer.py): Stage-C latent [N,h,w,16] -> small RGB
 * preview [N,8h,8w,3] (nominal [0,1], unclamped). A fixed nn.Sequential of
 * 25 layers: every conv is followed by GELU then BatchNorm (eval, eps 1e-5,
 * affine), except the last 1x1 conv. Widths c_in, c_hidden, c_out are read
 * off blocks.0 / blocks.24 and every tensor is checked against them.
 *
 * Weights stay views into the file (F32/BF16/F16); the BatchNorms are folded
 * into per-channel scale/shift floats at load. Accepted prefixes: none,
 * "vae.previewer.", "previewer." (ComfyUI Stage C combined checkpoints). */
#ifndef CS_PREVIEWER_H
#define CS_PREVIEWER_H

#include "safetensors.h"
#include "tensor.h"

#include <stddef.h>

typedef struct {
    int c_in, c_hidden, c_out;   /* 16, 512, 3 */
} cs_previewer_config;

typedef struct cs_previewer cs_previewer;

/* From an open file (borrowed); prefix NULL = detect. */
int cs_previewer_load(cs_st_file *f, const char *prefix, cs_previewer **out);
/* Opens path; the model owns the file. */
int cs_previewer_open(const char *path, cs_previewer **out);
void cs_previewer_free(cs_previewer *m);   /* NULL is fine */
const cs_previewer_config *cs_previewer_get_config(const cs_previewer *m);

/* x [N,h,w,c_in] -> y [N,8h,8w,c_out]. */
int cs_previewer_forward(const cs_previewer *m, const float *x, size_t N, size_t h, size_t w, float *y);

#endif
