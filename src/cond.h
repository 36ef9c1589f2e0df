/* Text conditioning of one prompt for Stage C (clip_text) and Stage B/C
 * (pooled), in either prompt style (prompt.h).
 *
 * official: BOS + first 75 tokens + EOS, padded with EOS to 77 (longer
 *   prompts are cut, with a warning); clip_text = last layer before the
 *   final LayerNorm, pooled = projected text_embeds.
 * comfyui: ComfyUI's ClipTokenWeightEncoder for Stable Cascade's CLIP-G:
 *   every 77-token chunk is encoded (one batch, mask up to the first EOS);
 *   if any weight != 1 the empty prompt (BOS, EOS, pad...) is encoded too
 *   and each weighted token becomes z_empty + (z - z_empty) * w; the chunks
 *   are concatenated along the token axis (Lt = 77 * chunks); pooled comes
 *   from the first chunk, unweighted. */
#ifndef CS_COND_H
#define CS_COND_H

#include "clip.h"
#include "prompt.h"

typedef struct {
    float *text;     /* [Lt, width], cs_alloc'ed */
    size_t Lt;       /* 77 * chunks */
    float *pooled;   /* [proj], cs_alloc'ed */
    size_t chunks;
} cs_cond;

/* what names the text in warnings ("prompt", "negative prompt"). */
int cs_cond_encode(const cs_clip *clip, const cs_tokenizer *tok, cs_prompt_style style, const char *text,
                   cs_embeddings *emb, const char *what, cs_prompt_warn_fn warn, void *warn_ctx, cs_cond *out);
/* Tokenizes only (errors early, before the text encoder loads). */
int cs_cond_check(const cs_tokenizer *tok, cs_prompt_style style, const char *text, cs_embeddings *emb);
void cs_cond_free(cs_cond *c);   /* clears; NULL is fine */

/* ComfyUI's batching of a conditional and an unconditional text of
 * different lengths (comfy/conds.py CONDCrossAttn): both are repeated along
 * the token axis to lcm(a, b) when lcm / min(a, b) <= 4; otherwise they run
 * as separate batches with their own lengths (returns 0 then). */
size_t cs_cond_common_len(size_t a, size_t b);

#endif
