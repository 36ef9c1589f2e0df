/* Stage B, the decoder (upstream modules/stage_b.py): predicts the noise of a 4-channel
 * Stage-A latent conditioned on the Stage-C latent ("effnet"), the pooled
 * CLIP text embedding and an optional 8x8 "pixels" map.
 *
 * Configuration, overrides (__metadata__["config"] nhead / t_conds), key
 * spellings and strict validation as for Stage C (stage_c.h); in addition
 * diffusers' clip_txt_pooled_mapper is accepted for clip_mapper. The patch
 * size is sqrt(embedding in-channels / 4) (c_in = c_out = 4), i.e. 2.
 *
 * Weights stay in the mapping of the cs_st_file, which must outlive the model.
 * A model's forward is not re-entrant (it owns its scratch buffers). */
#ifndef CS_STAGE_B_H
#define CS_STAGE_B_H

#include "safetensors.h"
#include "unet.h"

typedef struct cs_stage_b cs_stage_b;

int cs_stage_b_load(cs_st_file *f, cs_stage_b **out);
int cs_stage_b_load_opts(cs_st_file *f, const cs_unet_opts *opt, cs_stage_b **out);
/* With the LoRAs of lora (lora.h; NULL or empty: none) merged into the
 * weights; the model owns the merged copies and frees them. */
struct cs_lora_list;
int cs_stage_b_load_lora(cs_st_file *f, const cs_unet_opts *opt, struct cs_lora_list *lora, cs_stage_b **out);
void cs_stage_b_free(cs_stage_b *m);   /* NULL is fine */
void cs_stage_b_info(const cs_stage_b *m, cs_net_info *info);
/* Smallest latent side the network accepts (patch size x cs_unet_min_side). */
size_t cs_stage_b_min_side(const cs_stage_b *m);

/* One forward pass (official StageB.forward), channels-last:
 *   x       [N, H, W, c_in]      noisy latent; H, W multiples of the patch size (2)
 *   r       [N]
 *   effnet  [N, hc, wc, c_effnet] Stage-C latent (zeros for the unconditional half)
 *   clip    [N, 1, c_clip_pooled] pooled CLIP text embedding
 *   pixels  [N, ph, pw, c_pixels] or NULL = zeros 8 x 8 (official default)
 *   sca     [N] or NULL (= 0)
 *   eps     [N, H, W, c_out]      output: predicted noise */
int cs_stage_b_forward(cs_stage_b *m, const float *x, size_t N, size_t H, size_t W, const float *r,
                       const float *effnet, size_t hc, size_t wc, const float *clip, const float *pixels, size_t ph,
                       size_t pw, const float *sca, float *eps);

double cs_stage_b_flops(const cs_stage_b *m, size_t N, size_t H, size_t W);
size_t cs_stage_b_scratch_bytes(const cs_stage_b *m);
void cs_stage_b_trim(cs_stage_b *m);

#endif
