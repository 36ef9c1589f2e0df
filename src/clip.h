/* CLIP text encoder (HF CLIPTextModelWithProjection), HF modeling_clip.py.
 *
 * Weights keep their file dtype (F32/F16/BF16) and are borrowed, not copied:
 * the tensors (an open safetensors file, or memory) must outlive the model.
 * Only LayerNorm parameters and position embeddings are converted to float32.
 *
 * Config: config.json (or its "text_config" object) when given, else the
 * weights file's __metadata__["config"], else read off the shapes (heads =
 * width/64, layers = number of text_model.encoder.layers.N). hidden_act
 * "gelu" (erf) or "quick_gelu"; anything else is rejected. Every tensor is
 * checked against the config; text_model.embeddings.position_ids is ignored. */
#ifndef CS_CLIP_H
#define CS_CLIP_H

#include "safetensors.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int vocab;          /* vocab_size (49408) */
    int width;          /* hidden_size (1280 for CLIP-G) */
    int layers;         /* num_hidden_layers (32) */
    int heads;          /* num_attention_heads (20) */
    int mlp;            /* intermediate_size (5120) */
    int ctx;            /* max_position_embeddings (77) */
    int proj;           /* projection_dim (1280) */
    float eps;          /* layer_norm_eps (1e-5) */
    int quick_gelu;     /* 1: x*sigmoid(1.702x), 0: erf GELU */
    int32_t eos;        /* eos_token_id; 2 = legacy "pool at argmax(ids)" as in HF */
} cs_clip_config;

typedef struct cs_clip cs_clip;

/* From tensors ts[0..n) (HF names, each preceded by prefix, which may be ""
 * or NULL; tensors without the prefix are ignored). config_json: text of
 * config.json or NULL. source names the weights in messages (a path). */
int cs_clip_from_tensors(const cs_tensor *const *ts, int n, const char *prefix,
                         const char *config_json, const char *source, cs_clip **out);
/* From an open safetensors file (borrowed); config_json NULL = the file's
 * __metadata__["config"] if any, else shapes. */
int cs_clip_load(cs_st_file *f, const char *prefix, const char *config_json, cs_clip **out);
/* Same with the LoRAs of lora (lora.h; NULL or empty: none) merged into the
 * weights (lora_te_ / lora_prior_te_ keys); the model frees the copies. */
struct cs_lora_list;
int cs_clip_load_lora(cs_st_file *f, const char *prefix, const char *config_json, struct cs_lora_list *lora,
                      cs_clip **out);
/* Opens path and reads config.json from the same folder when it exists; the
 * model owns the file. */
int cs_clip_open(const char *path, cs_clip **out);
void cs_clip_free(cs_clip *m);   /* NULL is fine */
const cs_clip_config *cs_clip_get_config(const cs_clip *m);

/* Outputs; any pointer may be NULL (not computed / not copied). */
typedef struct {
    float *clip_text;      /* [N, L, width]: last layer output BEFORE final LN (Stage C input) */
    float *last_hidden;    /* [N, L, width]: after final_layer_norm */
    float *text_embeds;    /* [N, proj]: projection of last_hidden at the pooling position */
    float **hidden;        /* layers+1 buffers [N, L, width]: embeddings, then after each layer */
} cs_clip_out;

/* ids [N, L] (L <= ctx), mask [N, L] with 1 = real token or NULL (causal
 * mask only). Pooling position: the first eos in each row (argmax of ids if
 * the config's eos is 2, HF's legacy rule; position 0 if no eos). */
int cs_clip_forward(const cs_clip *m, const int32_t *ids, const int32_t *mask, size_t N, size_t L,
                    const cs_clip_out *out);

/* Same, with extra input vectors: ids vocab + k (k < n_extra) embed as row k
 * of extra [n_extra, width] (textual inversion, prompt.h). */
int cs_clip_forward_ext(const cs_clip *m, const int32_t *ids, const int32_t *mask, size_t N, size_t L,
                        const float *extra, size_t n_extra, const cs_clip_out *out);
#endif
