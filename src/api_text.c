/* Text tools through the public API (cascade.h): the CLIP tokens of a text
 * and the conditioning Stage C gets for it (cond.h). */
#include "api.h"

#include "cancel.h"
#include "clip.h"
#include "cond.h"
#include "error.h"
#include "safetensors.h"
#include "tensor.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

static int load_tokenizer(cascade_ctx *ctx, cs_tokenizer **tok)
{
    const char *dir = cs_api_tokenizer(ctx);
    int rc;
    if (dir) rc = cs_tokenizer_load(dir, tok);
    else if (ctx->demo_tokenizer) rc = cs_tokenizer_bytes(tok);
    else rc = cs_error(CS_EMODEL, "no tokenizer (vocab.json + merges.txt): set CASCADE_P_TOKENIZER, or call "
                                  "cascade_find_models or cascade_use_demo");
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_tokenize(cascade_ctx *ctx, const char *text, int *ids, int max)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!text || (max > 0 && !ids) || max < 0)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_tokenize: %s", !text ? "text is NULL" : "no room for ids"));
    int rc = cs_api_init(ctx);
    cs_tokenizer *tok = NULL;
    if (rc || (rc = load_tokenizer(ctx, &tok)) != 0) return rc;
    int32_t *all = NULL;
    size_t n = 0;
    rc = cs_tokenize(tok, text, &all, &n);
    cs_tokenizer_free(tok);
    if (rc) return cs_api_fail(ctx, rc);
    if (n > 0x7fffffff) {
        free(all);
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_tokenize: %zu tokens is too many", n));
    }
    for (size_t i = 0; i < n && i < (size_t)max; i++) ids[i] = all[i];
    free(all);
    return (int)n;
}

int cascade_encode_text(cascade_ctx *ctx, const char *text, float **hidden, int *tokens, int *width, float **pooled,
                        int *pooled_width)
{
    if (hidden) *hidden = NULL;
    if (pooled) *pooled = NULL;
    if (!ctx) return CASCADE_E_ARG;
    if (!text || !hidden || !tokens || !width || !pooled || !pooled_width)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_encode_text: a NULL argument"));
    const char *path = ctx->model[CASCADE_PART_TEXT_ENCODER];
    if (!path)
        return cs_api_fail(ctx, cs_error(CS_EMODEL, "no text encoder: call cascade_find_models, cascade_use_demo or "
                                                    "cascade_set_model first"));
    int rc = cs_api_compute(ctx);
    cs_tokenizer *tok = NULL;
    if (rc || (rc = load_tokenizer(ctx, &tok)) != 0) return rc;
    cs_st_file *f = NULL;
    cs_clip *clip = NULL;
    cs_embeddings *emb = NULL;
    cs_cond cd = {0};
    cs_cancel_bind(&ctx->cancel);
    /* a combined checkpoint: the text model under its prefix; else the file
     * (and config.json beside it) */
    if (ctx->text_prefix) {
        rc = cs_st_open(path, &f);
        if (!rc) rc = cs_clip_load(f, ctx->text_prefix, NULL, &clip);
    } else {
        rc = cs_clip_open(path, &clip);
    }
    if (!rc && ctx->sv[CASCADE_P_EMBEDDINGS] && ctx->iv[CASCADE_P_PROMPT_STYLE] == CASCADE_PROMPT_COMFYUI)
        rc = cs_embeddings_new(ctx->sv[CASCADE_P_EMBEDDINGS], cs_clip_get_config(clip)->width, &emb);
    if (!rc)
        rc = cs_cond_encode(clip, tok, (cs_prompt_style)ctx->iv[CASCADE_P_PROMPT_STYLE], text, emb, "text",
                            (cs_prompt_warn_fn)ctx->log, ctx->log_user, &cd);
    if (!rc) {
        int w = cs_clip_get_config(clip)->width, pw = cs_clip_get_config(clip)->proj;
        float *h = malloc(cd.Lt * (size_t)w * sizeof(float)), *p = malloc((size_t)pw * sizeof(float));
        if (!h || !p) {
            free(h);
            free(p);
            rc = cs_oom("the text encoding", cd.Lt * (size_t)w * sizeof(float));
        } else {
            memcpy(h, cd.text, cd.Lt * (size_t)w * sizeof(float));
            memcpy(p, cd.pooled, (size_t)pw * sizeof(float));
            *hidden = h, *pooled = p, *tokens = (int)cd.Lt, *width = w, *pooled_width = pw;
        }
    }
    cs_cond_free(&cd);
    cs_embeddings_free(emb);
    cs_clip_free(clip);
    cs_st_close(f);
    cs_tokenizer_free(tok);
    cs_cancel_bind(NULL);
    ctx->cancel = 0;
    return rc ? cs_api_fail(ctx, rc) : 0;
}

/* ---- the tokens with their strings and weights (cascade tokenize) ---- */
struct cascade_tokens {
    cs_tokenizer *tok;   /* kept: the strings point into it */
    int32_t *ids;
    double *weights;     /* NULL: all 1 (official) */
    int n, chunks;
    int32_t vocab;       /* the first embedding id (comfyui) */
};

int cascade_tokens_new(cascade_ctx *ctx, const char *text, cascade_tokens **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return CASCADE_E_ARG;
    if (!text) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_tokens_new: text is NULL"));
    /* no cs_api_init: tokens need no kernels, so a bad $CASCADE_SIMD does not stop them */
    int rc;
    cascade_tokens *t = calloc(1, sizeof *t);
    if (!t) return cs_api_fail(ctx, cs_oom("the token list", sizeof *t));
    if ((rc = load_tokenizer(ctx, &t->tok)) != 0) {
        free(t);
        return rc;
    }
    if (ctx->iv[CASCADE_P_PROMPT_STYLE] == CASCADE_PROMPT_OFFICIAL) {
        size_t n = 0;
        rc = cs_tokenize(t->tok, text, &t->ids, &n);
        if (!rc && n > 0x7fffffff) rc = cs_error(CS_EARG, "cascade_tokens_new: %zu tokens is too many", n);
        t->n = (int)n;
    } else {
        /* CLIP-G's width: the embeddings' shape is checked without loading the encoder */
        cs_embeddings *emb = NULL;
        cs_prompt p = {0};
        const char *dir = ctx->sv[CASCADE_P_EMBEDDINGS];
        rc = dir ? cs_embeddings_new(dir, 1280, &emb) : 0;
        if (!rc) rc = cs_prompt_tokenize(t->tok, text, emb, (cs_prompt_warn_fn)ctx->log, ctx->log_user, &p);
        if (!rc && p.n_chunks > 0x7fffffff / CS_TOK_CTX)
            rc = cs_error(CS_EARG, "cascade_tokens_new: %zu chunks is too many", p.n_chunks);
        if (!rc) {   /* take the two arrays over */
            t->ids = p.ids, t->weights = p.weights, p.ids = NULL, p.weights = NULL;
            t->chunks = (int)p.n_chunks;
            t->n = t->chunks * CS_TOK_CTX;
            t->vocab = p.vocab;
        }
        cs_prompt_free(&p);
        cs_embeddings_free(emb);
    }
    if (rc) {
        cascade_tokens_free(t);
        return cs_api_fail(ctx, rc);
    }
    *out = t;
    return 0;
}

int cascade_tokens_count(const cascade_tokens *t) { return t ? t->n : 0; }
int cascade_tokens_chunks(const cascade_tokens *t) { return t ? t->chunks : 0; }
int cascade_tokens_id(const cascade_tokens *t, int i) { return t && i >= 0 && i < t->n ? t->ids[i] : -1; }

double cascade_tokens_weight(const cascade_tokens *t, int i)
{
    return !t || i < 0 || i >= t->n ? 0 : t->weights ? t->weights[i] : 1;
}

const char *cascade_tokens_text(const cascade_tokens *t, int i)
{
    if (!t || i < 0 || i >= t->n) return NULL;
    if (t->chunks && t->ids[i] >= t->vocab) return "<embedding>";
    return cs_token_str(t->tok, t->ids[i]);
}

void cascade_tokens_free(cascade_tokens *t)
{
    if (!t) return;
    cs_tokenizer_free(t->tok);
    free(t->ids);
    free(t->weights);
    free(t);
}

_Static_assert(CASCADE_TOKEN_CHUNK == CS_TOK_CTX, "cascade.h's chunk is CLIP's context");
