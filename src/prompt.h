/* ComfyUI-style prompts ("--prompt-style comfyui"): the prompt syntax and
 * the 77-token chunking of ComfyUI's SDTokenizer as configured for Stable
 * Cascade's CLIP-G (comfy/sd1_clip.py + comfy/sdxl_clip.py,
 * StableCascadeClipGTokenizer). Written from reading that code, checked
 * against it by tests/data/prompt_cases.json (tests/ref/make_prompt_cases.py).
 *
 * Syntax:
 *   (text)        weight x 1.1 (nesting multiplies: ((a)) = 1.1 * 1.1)
 *   (text:W)      weight W (replaces, does not multiply, the outer weight);
 *                 W is what Python's float() reads; the last ':' counts, and
 *                 only if it is not the first character. A W that does not
 *                 parse leaves "text:W" as the text with weight x 1.1.
 *   \( \)         literal parentheses
 *   [text]        NOT special (ComfyUI has no down-weighting brackets)
 *   embedding:NAME  textual inversion vectors from the embeddings folder
 *                 (prompt_embed.c); a missing one is dropped with a warning.
 * Unbalanced parentheses are not errors; they follow ComfyUI's scanner.
 *
 * Each weighted segment is tokenized as a whole (BPE, tokenizer.h), without
 * BOS/EOS; each segment or embedding is one "word" group. Chunks are BOS +
 * at most 75 tokens + EOS, padded with EOS (49407) to 77. A group that does
 * not fit in the current chunk moves whole to the next one if it has fewer
 * than 8 tokens, else it is split at the chunk end. BOS/EOS/pad have
 * weight 1. Deviation: non-finite weights (inf, nan) are rejected. */
#ifndef CS_PROMPT_H
#define CS_PROMPT_H

#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { CS_PROMPT_OFFICIAL = 0, CS_PROMPT_COMFYUI = 1 } cs_prompt_style;
const char *cs_prompt_style_name(cs_prompt_style s);   /* "official" / "comfyui" */
int cs_prompt_style_parse(const char *s);              /* -1 if unknown */

/* One (text, weight) piece of a prompt, escapes already resolved. */
typedef struct {
    char *text;
    double weight;
} cs_prompt_seg;

/* Splits text into weighted segments (ComfyUI's token_weights). *segs is
 * malloc'ed; free with cs_prompt_segs_free. Empty text gives n = 0. */
int cs_prompt_segments(const char *text, cs_prompt_seg **segs, size_t *n);
void cs_prompt_segs_free(cs_prompt_seg *segs, size_t n);

/* Textual-inversion vectors (prompt_embed.c). */
typedef struct cs_embeddings cs_embeddings;
/* dir: folder of NAME.safetensors files; width: the text encoder's width. */
int cs_embeddings_new(const char *dir, int width, cs_embeddings **out);
void cs_embeddings_free(cs_embeddings *e);   /* NULL is fine */
/* Looks NAME up: DIR/NAME, then with .safetensors added. Returns 1 and
 * sets rows, n (owned by e, [n, width]) if found, 0 if no such file, < 0
 * on a bad file (wrong key, width, dtype). */
int cs_embeddings_get(cs_embeddings *e, const char *name, const float **rows, size_t *n);
int cs_embeddings_width(const cs_embeddings *e);
/* The files used so far (for the metadata): name, path; i < count. */
size_t cs_embeddings_count(const cs_embeddings *e);
const char *cs_embeddings_name(const cs_embeddings *e, size_t i);

/* A tokenized prompt: n_chunks x 77 tokens. ids >= vocab (cs_tokenizer_size)
 * are embedding vectors: row (id - vocab) of emb [n_emb, emb_width] (the
 * numbering ComfyUI gives them). */
typedef struct {
    size_t n_chunks;
    int32_t *ids;          /* [n_chunks * 77] */
    double *weights;       /* [n_chunks * 77] */
    int has_weights;       /* some weight != 1.0 */
    float *emb;            /* [n_emb, emb_width] or NULL */
    size_t n_emb;
    int emb_width;
    int32_t vocab;         /* first embedding id */
} cs_prompt;

typedef void (*cs_prompt_warn_fn)(void *ctx, const char *msg);

/* Tokenizes text the ComfyUI way. emb may be NULL (no embeddings folder:
 * every embedding:NAME is dropped with a warning, as ComfyUI does with a
 * name it cannot find). warn may be NULL. */
int cs_prompt_tokenize(const cs_tokenizer *t, const char *text, cs_embeddings *emb,
                       cs_prompt_warn_fn warn, void *warn_ctx, cs_prompt *out);
void cs_prompt_free(cs_prompt *p);   /* clears *p; NULL is fine */

/* Attention mask of a chunk as ComfyUI's Stable Cascade CLIP-G uses it:
 * 1 up to and including the first EOS, 0 after. */
void cs_prompt_mask(const int32_t ids[CS_TOK_CTX], int32_t mask[CS_TOK_CTX]);

/* Applies ComfyUI's weighting to encoded chunks in place:
 * z[k,j] = (z[k,j] - z_empty[j]) * w[k,j] + z_empty[j] for every w != 1.
 * z [n_chunks, 77, width] (float32 math, as torch does with a Python float
 * weight), z_empty [77, width]: the encoding of BOS, EOS, pad... */
void cs_prompt_weight(const cs_prompt *p, float *z, const float *z_empty, size_t width);

/* The empty prompt's tokens (what the weighting is relative to). */
void cs_prompt_empty_ids(int32_t ids[CS_TOK_CTX]);

#endif
