/* Stage C, the text-conditional prior (upstream modules/stage_c.py): predicts the
 * noise of a 16-channel EfficientNet latent from CLIP text/image embeddings.
 *
 * The configuration is read from the tensors alone (§10): level widths and
 * block lists, repeat mappers, c_cond and the CLIP widths, t_conds, c_r,
 * the depthwise kernel size and the level-transition style. Heads =
 * width/64 (every released checkpoint). What the weights cannot tell comes
 * from overrides, read from the file's __metadata__["config"] (a JSON
 * object, as the golden weight files carry) or passed in cs_unet_opts:
 * "nhead" (int or per-level list; -1 or 0 entries = width/64), "t_conds"
 * (list: the embedding order, default sca then crp), "switch_level" (list of
 * booleans, default all false as released), "self_attn" (default true).
 * Other metadata is ignored, and so is malformed metadata.
 * Accepted key spellings: official, ComfyUI-prefixed
 * (model.diffusion_model.), diffusers / ComfyUI split attention
 * (to_q/to_k/to_v, to_out.0). Validation is strict: any missing,
 * unexpected or mis-shaped tensor fails the load with one message.
 *
 * Weights stay in the mapping of the cs_st_file, which must outlive the model.
 * A model's forward is not re-entrant (it owns its scratch buffers). */
#ifndef CS_STAGE_C_H
#define CS_STAGE_C_H

#include "safetensors.h"
#include "unet.h"

typedef struct cs_stage_c cs_stage_c;

int cs_stage_c_load(cs_st_file *f, cs_stage_c **out);
/* opt: overrides (NULL = the file's metadata, if any). */
int cs_stage_c_load_opts(cs_st_file *f, const cs_unet_opts *opt, cs_stage_c **out);
/* With the LoRAs of lora (lora.h; NULL or empty: none) merged into the
 * weights; the model owns the merged copies and frees them. */
struct cs_lora_list;
int cs_stage_c_load_lora(cs_st_file *f, const cs_unet_opts *opt, struct cs_lora_list *lora, cs_stage_c **out);
/* For training: every float weight becomes a float32 copy owned by the model
 * (the fp32 master weights of doc/training.md §4), so that an optimizer can
 * update in place the tensors cs_stage_c_backward gives gradients for: the
 * data pointer of a cs_grads entry (its key) is then writable float32. */
int cs_stage_c_load_train(cs_st_file *f, const cs_unet_opts *opt, cs_stage_c **out);
/* 1 iff m was loaded by cs_stage_c_load_train. */
int cs_stage_c_trainable(const cs_stage_c *m);
/* The float32 copy that stands for the file's tensor i in a model from
 * cs_stage_c_load_train (writable: its data is the key of its cs_grads
 * entry), or NULL (not trainable, not a float tensor of the network). */
const cs_tensor *cs_stage_c_train_weight(const cs_stage_c *m, int i);
/* The weights file m was loaded from (tensor shapes by name). */
cs_st_file *cs_stage_c_file(const cs_stage_c *m);
/* The current value of the file's tensor i (header order): the model's own
 * copy (training master weights, merged LoRAs) if it has one, else the
 * file's tensor. For saving a trained model in the file's key layout. */
const cs_tensor *cs_stage_c_weight(const cs_stage_c *m, int i);
void cs_stage_c_free(cs_stage_c *m);   /* NULL is fine */
void cs_stage_c_info(const cs_stage_c *m, cs_net_info *info);
/* Smallest latent side the network accepts (patch size x cs_unet_min_side). */
size_t cs_stage_c_min_side(const cs_stage_c *m);

/* One forward pass (official StageC.forward), channels-last:
 *   x         [N, h, w, c_in]        noisy latent (h, w: any size >= 1)
 *   r         [N]                    noise condition
 *   clip_text [N, Lt, c_clip_text]
 *   pooled    [N, 1, c_clip_pooled]
 *   clip_img  [N, M, c_clip_img]     NULL = zeros with M = 1 (official default)
 *   sca, crp  [N] or NULL (= 0)      values for the t_conds of those names
 *   eps       [N, h, w, c_out]       output: predicted noise
 * The conditioning is 85 tokens for Lt = 77, M = 1: text, 4 pooled, 4 image. */
int cs_stage_c_forward(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r,
                       const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                       const float *sca, const float *crp, float *eps);

/* ---- training (doc/training.md §3, §4) ----
 * cs_stage_c_forward_train: cs_stage_c_forward that also keeps what the
 * backward needs (copies of the inputs, the pre-norm activations of the
 * embedding, clf and clip_norm, and the U-Net tape: one activation per
 * block). cs_stage_c_backward: deps = dL/deps [N,h,w,c_out]; adds every
 * parameter gradient into g (grad_blocks.h: by tensor, `only` for a subset)
 * and writes dL/dx into dx (NULL: not wanted). One backward per recorded
 * forward: it frees what was kept (so does cs_stage_c_train_end, to drop a
 * step, and cs_stage_c_free). In between, cs_stage_c_forward refuses to run
 * (it would record onto the tape). Both take and give host arrays; with a
 * device backend active (cs_dev_pick) the forward runs in device mode, its
 * checkpoints stay in device memory, the backward runs there too and g's
 * buffers are the device's (grad_blocks.h). */
struct cs_grads;
int cs_stage_c_forward_train(cs_stage_c *m, const float *x, size_t N, size_t h, size_t w, const float *r,
                             const float *clip_text, size_t Lt, const float *pooled, const float *clip_img, size_t M,
                             const float *sca, const float *crp, float *eps);
int cs_stage_c_backward(cs_stage_c *m, const float *deps, struct cs_grads *g, float *dx);
void cs_stage_c_train_end(cs_stage_c *m);

/* Floating-point operations of one forward (multiply-add = 2). */
double cs_stage_c_flops(const cs_stage_c *m, size_t N, size_t h, size_t w, size_t Lt, size_t M);
/* Bytes of scratch the model holds now (grows to the largest pass so far). */
size_t cs_stage_c_scratch_bytes(const cs_stage_c *m);
/* Frees the scratch buffers (they are re-made by the next forward). */
void cs_stage_c_trim(cs_stage_c *m);

#endif
