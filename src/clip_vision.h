/* CLIP ViT vision tower (HF CLIPVisionModelWithProjection), the image
 * encoder of Stable Cascade's image variation: its image_embeds are Stage
 * C's clip_img tokens (one per image).
 *
 * Names: HF's vision_model.* and visual_projection.weight (the layout of
 * openai/clip-vit-large-patch14 and of ComfyUI's clip_vision files); the
 * text half of a full CLIPModel file (text_model.*, text_projection,
 * logit_scale) and vision_model.embeddings.position_ids are ignored.
 * Weights keep their file dtype and are borrowed from the open file; only
 * the class token, positions and LayerNorm parameters become float32.
 *
 * Config: config_json when given (or its "vision_config" object), else the
 * file's __metadata__["config"], else the shapes (heads = width/64, image =
 * patch * sqrt(positions - 1), eps 1e-5, quick_gelu as in ViT-L/14). */
#ifndef CS_CLIP_VISION_H
#define CS_CLIP_VISION_H

#include "safetensors.h"

#include <stddef.h>

typedef struct {
    int width;       /* hidden_size (1024 for ViT-L/14) */
    int layers;      /* num_hidden_layers (24) */
    int heads;       /* num_attention_heads (16) */
    int mlp;         /* intermediate_size (4096) */
    int image;       /* image_size (224) */
    int patch;       /* patch_size (14) */
    int proj;        /* projection_dim (768) */
    int channels;    /* num_channels (3) */
    float eps;       /* layer_norm_eps (1e-5) */
    int quick_gelu;  /* 1: x*sigmoid(1.702x) (ViT-L/14), 0: erf GELU */
} cs_clip_vision_config;

typedef struct cs_clip_vision cs_clip_vision;

/* True if the file holds a CLIP vision tower (by its tensor names). */
int cs_clip_vision_probe(cs_st_file *f);

/* From an open safetensors file (borrowed: it must outlive the model). */
int cs_clip_vision_load(cs_st_file *f, const char *config_json, cs_clip_vision **out);
/* Opens path; the model owns the file. */
int cs_clip_vision_open(const char *path, cs_clip_vision **out);
void cs_clip_vision_free(cs_clip_vision *m);   /* NULL is fine */
const cs_clip_vision_config *cs_clip_vision_get_config(const cs_clip_vision *m);

/* Outputs in host memory; any pointer may be NULL (not copied). T = number
 * of tokens = (image/patch)^2 + 1. */
typedef struct {
    float *image_embeds;   /* [N, proj]: visual_projection(post_layernorm(last[:, 0])) */
    float *last_hidden;    /* [N, T, width]: last layer output, no post LN */
    float **hidden;        /* layers+1 buffers [N, T, width]: after pre_layrnorm, then each layer */
} cs_clip_vision_out;

/* pixels: [N, image, image, channels] channels-last float32 host memory,
 * already normalised (clip_preprocess). Runs on the device when one is in use. */
int cs_clip_vision_forward(const cs_clip_vision *m, const float *pixels, size_t N, const cs_clip_vision_out *out);

#endif
