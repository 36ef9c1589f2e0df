/* Prompt -> Stage C / B text conditioning (see cond.h). */
#include "cond.h"

#include "error.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cs_cond_free(cs_cond *c)
{
    if (!c) return;
    cs_free(c->text);
    cs_free(c->pooled);
    memset(c, 0, sizeof *c);
}

size_t cs_cond_common_len(size_t a, size_t b)
{
    if (a == b) return a;
    size_t x = a, y = b;
    while (y) {
        size_t t = x % y;
        x = y, y = t;
    }
    size_t l = a / x * b, mn = a < b ? a : b;
    return l / mn <= 4 ? l : 0;
}

int cs_cond_check(const cs_tokenizer *tok, cs_prompt_style style, const char *text, cs_embeddings *emb)
{
    if (style == CS_PROMPT_OFFICIAL) {
        int32_t ids[CS_TOK_CTX], mask[CS_TOK_CTX];
        return cs_tokens_77(tok, text, ids, mask, NULL);
    }
    cs_prompt p;
    int rc = cs_prompt_tokenize(tok, text, emb, NULL, NULL, &p);
    cs_prompt_free(&p);
    return rc;
}

static int official(const cs_clip *clip, const cs_tokenizer *tok, const char *text, const char *what,
                    cs_prompt_warn_fn warn, void *wctx, cs_cond *out)
{
    int32_t ids[CS_TOK_CTX], mask[CS_TOK_CTX];
    size_t full = 0;
    int rc = cs_tokens_77(tok, text, ids, mask, &full);
    if (rc) return rc;
    if (full > CS_TOK_CTX && warn) {
        char msg[160];
        snprintf(msg, sizeof msg, "the %s has %zu tokens; only the first %d are used", what, full - 2,
                 CS_TOK_CTX - 2);
        warn(wctx, msg);
    }
    cs_clip_out co = {out->text, NULL, out->pooled, NULL};
    return cs_clip_forward(clip, ids, mask, 1, CS_TOK_CTX, &co);
}

static int comfyui(const cs_clip *clip, const cs_tokenizer *tok, const char *text, cs_embeddings *emb,
                   cs_prompt_warn_fn warn, void *wctx, cs_cond *out)
{
    const cs_clip_config *cfg = cs_clip_get_config(clip);
    const size_t L = CS_TOK_CTX, C = (size_t)cfg->width;
    cs_prompt p;
    int rc = cs_prompt_tokenize(tok, text, emb, warn, wctx, &p);
    if (rc) return rc;
    if (p.n_emb && p.emb_width != cfg->width) {
        rc = cs_error(CS_EMODEL, "prompt: embeddings are %d wide; the text encoder is %d", p.emb_width, cfg->width);
        goto out;
    }
    size_t k = p.n_chunks, rows = k + (p.has_weights ? 1 : 0);
    int32_t *ids = malloc(rows * L * sizeof *ids), *mask = malloc(rows * L * sizeof *mask);
    float *z = rows > k ? cs_alloc(rows * L * C * sizeof *z) : NULL;
    float *pooled = cs_alloc(rows * (size_t)cfg->proj * sizeof *pooled);
    if (!ids || !mask || (rows > k && !z) || !pooled) {
        rc = cs_oom("the prompt encoding", rows * L * (C + 2) * sizeof(float));
    } else {
        memcpy(ids, p.ids, k * L * sizeof *ids);
        if (rows > k) cs_prompt_empty_ids(ids + k * L);
        for (size_t r = 0; r < rows; r++) cs_prompt_mask(ids + r * L, mask + r * L);
        cs_clip_out co = {z ? z : out->text, NULL, pooled, NULL};
        rc = cs_clip_forward_ext(clip, ids, mask, rows, L, p.emb, p.n_emb, &co);
        if (!rc) {
            if (z) {
                cs_prompt_weight(&p, z, z + k * L * C, C);
                memcpy(out->text, z, k * L * C * sizeof *z);
            }
            memcpy(out->pooled, pooled, (size_t)cfg->proj * sizeof *pooled);   /* first chunk */
        }
    }
    free(ids);
    free(mask);
    cs_free(z);
    cs_free(pooled);
out:
    cs_prompt_free(&p);
    return rc;
}

int cs_cond_encode(const cs_clip *clip, const cs_tokenizer *tok, cs_prompt_style style, const char *text,
                   cs_embeddings *emb, const char *what, cs_prompt_warn_fn warn, void *warn_ctx, cs_cond *out)
{
    memset(out, 0, sizeof *out);
    const cs_clip_config *cfg = cs_clip_get_config(clip);
    size_t chunks = 1;
    if (style == CS_PROMPT_COMFYUI) {   /* the chunk count, to size the output */
        cs_prompt p;
        int rc = cs_prompt_tokenize(tok, text, emb, NULL, NULL, &p);
        chunks = p.n_chunks;
        cs_prompt_free(&p);
        if (rc) return rc;
    }
    out->chunks = chunks;
    out->Lt = chunks * CS_TOK_CTX;
    out->text = cs_alloc(out->Lt * (size_t)cfg->width * sizeof(float));
    out->pooled = cs_alloc((size_t)cfg->proj * sizeof(float));
    if (!out->text || !out->pooled) {
        cs_cond_free(out);
        return cs_oom("the text conditioning", (out->Lt * (size_t)cfg->width + (size_t)cfg->proj) * sizeof(float));
    }
    int rc = style == CS_PROMPT_OFFICIAL ? official(clip, tok, text, what, warn, warn_ctx, out)
                                         : comfyui(clip, tok, text, emb, warn, warn_ctx, out);
    if (rc) cs_cond_free(out);
    return rc;
}
