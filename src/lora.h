/* LoRA and full-delta files merged into a network's weights at load.
 *
 * Key formats recognised (a key is <module><suffix>):
 *   suffixes  .lora_down.weight / .lora_up.weight / .alpha  (kohya, OneTrainer)
 *             .lora_A.weight / .lora_B.weight                (PEFT)
 *             .lora.down.weight / .lora.up.weight            (diffusers LoRA)
 *             .diff / .diff_b                                (full weight / bias delta)
 *             .dora_scale beside up/down                     (DoRA, [1, in(, 1, 1)])
 *   modules   kohya underscore names: lora_unet_<path . -> _>, OneTrainer
 *             lora_prior_unet_<...>; text encoder lora_te_ / lora_te1_ /
 *             lora_prior_te_<...>; or bare dotted module paths, optionally
 *             behind diffusion_model. / model.diffusion_model. / base_model.model.
 *             / text_encoder. / unet. / prior.
 * Underscore names are matched against the network's own parameter names
 * (every float tensor `a.b.c.weight` of the file gives `a_b_c`), never
 * split back into dots. Attention as kohya splits it (...attn.to_q|to_k|to_v,
 * out_proj) targets rows [0,c), [c,2c), [2c,3c) of a packed in_proj_weight
 * (or the split tensors where the checkpoint holds them).
 * The down matrix may be a conv kernel ([rank, in, kh, kw], LoCon) as long
 * as the target has out x in*kh*kw elements.
 *
 * Merge: W' = W + strength * scale * (up @ down) in float32, scale =
 * alpha / rank (no alpha: 1); .diff: W' = W + strength * diff. LoRAs stack
 * in list order. Each touched tensor becomes a float32 host copy (F32 even
 * when the checkpoint is BF16/F16: twice the memory of those tensors only);
 * untouched tensors stay in the mapping.
 * DoRA as ComfyUI: Wc = W + scale * (up @ down), each input channel's
 * columns of Wc rescaled to norm dora_scale[j] (over rows and kernel taps),
 * W' = W + strength * (Wc - W).
 * Not supported (an error naming the key): LoCon Tucker (.lora_mid),
 * LoHa / LoKr (unknown suffixes). */
#ifndef CS_LORA_H
#define CS_LORA_H

#include "safetensors.h"

typedef struct {
    const char *path;
    float strength;
    int changed;   /* out: modules this LoRA changed in the last merge */
} cs_lora;

typedef struct cs_lora_list {
    int n;
    cs_lora *v;
    int lenient;   /* keys that match nothing: a note instead of an error */
    /* one-line notes (modules changed, ignored keys); NULL: none */
    void (*note)(void *ctx, const char *msg);
    void *ctx;
    int dry;       /* match keys only (no copies, no notes): the early check before any work */
} cs_lora_list;

typedef struct cs_lora_patch cs_lora_patch;

/* Merges every LoRA of list into the float tensors of f whose names start
 * with prefix (the network's parameter names follow it). te: 1 for a text
 * encoder (its keys are lora_te*), 0 for a U-Net (lora_unet / lora_prior_unet);
 * the other part's kohya keys are skipped with a note. what names the network
 * in messages ("Stage C"). *out = NULL when the list is empty. */
int cs_lora_merge(cs_st_file *f, const char *prefix, int te, const char *what, cs_lora_list *list,
                  cs_lora_patch **out);
/* Bytes the merge of list will add (the float32 copies of the tensors it
 * touches), from the LoRA files' shapes alone: rows of up x columns of down
 * per module, numel of .diff/.diff_b. Modules that share a tensor (packed
 * q/k/v) count their slices; a module in two LoRAs counts twice (an upper
 * bound). 0 or a CS_E* code (a file that does not open). */
int cs_lora_extra_bytes(const cs_lora_list *list, uint64_t *bytes);
/* A patch that replaces every float tensor of f under prefix by a float32
 * copy: writable master weights for training (doc/training.md §4). */
int cs_lora_patch_f32(cs_st_file *f, const char *prefix, cs_lora_patch **out);
/* The merged tensor that replaces the file's tensor i, or NULL. */
const cs_tensor *cs_lora_patch_at(const cs_lora_patch *p, int i);
/* Merged tensors, bytes of their float32 copies. */
int cs_lora_patch_count(const cs_lora_patch *p);
size_t cs_lora_patch_bytes(const cs_lora_patch *p);
/* Frees the copies (telling a device to drop its cached copies first). */
void cs_lora_patch_free(cs_lora_patch *p);   /* NULL is fine */

#endif
