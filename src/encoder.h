/* The pre-LN transformer encoder layer of CLIP's text and vision towers
 * (transformers' CLIPEncoderLayer): src/clip.c and src/clip_vision.c. */
#ifndef CS_ENCODER_H
#define CS_ENCODER_H

#include "tensor.h"

#include <stddef.h>

typedef struct {
    /* views of the checkpoint's (or a LoRA merge's) tensors */
    cs_tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, fc1_w, fc1_b, fc2_w, fc2_b;
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;   /* float32 copies, owned (cs_param_free) */
} cs_enc_layer;

typedef struct {
    size_t width, mlp;
    int heads, quick_gelu;   /* quick_gelu: x sigmoid(1.702 x), else erf GELU */
    float eps;               /* the LayerNorms' */
} cs_enc_dims;

/* One layer in place on h [N*L, width], in the current mode (CPU or device):
 *   h += out_proj(MHA(LN1(h)) + mask);  h += fc2(act(fc1(LN2(h))))
 * mask: [N, L, L] additive or NULL; x, q, k, v, a: [N*L, width] scratch,
 * f: [N*L, mlp]. */
int cs_enc_layer_forward(const cs_enc_layer *w, const cs_enc_dims *d, float *h, size_t N, size_t L,
                         const float *mask, float *x, float *q, float *k, float *v, float *a, float *f);
/* frees the LayerNorm copies (the views are not owned) */
void cs_enc_layer_free(cs_enc_layer *w);

#endif
