/* --prompt-style comfyui: the parser and chunker against ComfyUI's own
 * tokenizer (tests/data/prompt_cases.json, made by
 * tests/ref/make_prompt_cases.py), and the weighting / chunk concatenation /
 * embedding input on the tiny golden CLIP against per-chunk encodings
 * combined by ComfyUI's formula. Exit 77 = skip (shared data missing). */
#include "check.h"
#include "cond.h"
#include "error.h"
#include "prompt.h"
#include "safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *path_of(const char *dir, const char *rel)
{
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static void test_cases(const cs_tokenizer *tok, const char *top)
{
    char *jp = path_of(top, "tests/data/prompt_cases.json"), *ed = path_of(top, "tests/data/embeddings");
    json_error_t err;
    json_t *root = json_load_file(jp, 0, &err);
    CHECK(root, "%s: %s", jp, err.text);
    cs_embeddings *emb = NULL, *emb2 = NULL;
    CHECK(cs_embeddings_new(ed, 1280, &emb) == 0 && cs_embeddings_new(ed, 1280, &emb2) == 0, "%s", cs_last_error());
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) >= 50, "only %zu cases", json_array_size(cases));
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "prompt"));
        json_t *ids = json_object_get(c, "ids"), *ws = json_object_get(c, "weights");
        cs_prompt p;
        int rc = cs_prompt_tokenize(tok, text, emb, NULL, NULL, &p);
        CHECK(rc == 0, "case %zu: %s", i, cs_last_error());
        if (rc) continue;
        int bad = p.n_chunks != json_array_size(ids);
        for (size_t k = 0; !bad && k < p.n_chunks; k++)
            for (size_t j = 0; !bad && j < CS_TOK_CTX; j++) {
                json_t *e = json_array_get(json_array_get(ids, k), j);
                int32_t id = p.ids[k * CS_TOK_CTX + j];
                if (json_is_string(e)) {   /* "name#row" */
                    char name[64];
                    int row;
                    const float *rows;
                    size_t nr;
                    bad = sscanf(json_string_value(e), "%63[^#]#%d", name, &row) != 2 || id < p.vocab ||
                          cs_embeddings_get(emb2, name, &rows, &nr) != 1 || (size_t)row >= nr ||
                          memcmp(p.emb + (size_t)(id - p.vocab) * 1280, rows + (size_t)row * 1280, 1280 * 4);
                } else {
                    bad = id != json_integer_value(e);
                }
                bad |= p.weights[k * CS_TOK_CTX + j] != json_real_value(json_array_get(json_array_get(ws, k), j)) &&
                       p.weights[k * CS_TOK_CTX + j] != json_integer_value(json_array_get(json_array_get(ws, k), j));
            }
        CHECK(!bad, "case %zu (%.60s): chunks/ids/weights differ from ComfyUI (%zu chunks, want %zu)", i, text,
              p.n_chunks, json_array_size(ids));
        cs_prompt_free(&p);
    }
    /* our deliberate difference: non-finite weights are errors */
    const char *badp[] = {"(a:inf)", "(a:-Infinity)", "(a:nan)", "a \xff b"};
    for (int i = 0; i < 4; i++) {
        cs_prompt p;
        CHECK(cs_prompt_tokenize(tok, badp[i], emb, NULL, NULL, &p) == CS_EARG, "'%s' accepted", badp[i]);
    }
    cs_embeddings_free(emb);
    cs_embeddings_free(emb2);
    json_decref(root);
    free(jp);
    free(ed);
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Encodes one 77-token row alone (no batching with other rows). */
static void enc1(const cs_clip *m, const int32_t *ids, const float *extra, size_t n_extra, float *z, float *pool)
{
    int32_t mask[CS_TOK_CTX];
    cs_prompt_mask(ids, mask);
    cs_clip_out co = {z, NULL, pool, NULL};
    CHECK(cs_clip_forward_ext(m, ids, mask, 1, CS_TOK_CTX, extra, n_extra, &co) == 0, "%s", cs_last_error());
}

static void test_weighting(const cs_tokenizer *tok, const char *shared)
{
    char *wp = path_of(shared, "golden/text/clip_tiny_gelu.weights.safetensors");
    cs_clip *m;
    if (cs_clip_open(wp, &m) != 0) {
        fprintf(stderr, "skip weighting: %s\n", cs_last_error());
        free(wp);
        return;
    }
    const size_t L = CS_TOK_CTX, C = 64, P = 48;
    char text[4096] = "a (photo:1.3) of ((a cat)) [x] \\(y\\) (z:0) ";
    for (int i = 0; i < 60; i++) strcat(text, "long words here, ");
    cs_prompt p;
    CHECK(cs_prompt_tokenize(tok, text, NULL, NULL, NULL, &p) == 0 && p.n_chunks >= 2 && p.has_weights,
          "tokenize: %zu chunks", p.n_chunks);
    cs_cond got;
    CHECK(cs_cond_encode(m, tok, CS_PROMPT_COMFYUI, text, NULL, "prompt", NULL, NULL, &got) == 0, "%s",
          cs_last_error());
    CHECK(got.Lt == p.n_chunks * L, "Lt %zu", got.Lt);
    /* reference: each chunk and the empty prompt alone, then the formula */
    float *z = malloc(L * C * sizeof *z), *ze = malloc(L * C * sizeof *ze), pool[48], pool0[48], pe[48];
    int32_t empty[CS_TOK_CTX];
    cs_prompt_empty_ids(empty);
    enc1(m, empty, NULL, 0, ze, pe);
    double worst = 0;
    for (size_t k = 0; k < p.n_chunks; k++) {
        enc1(m, p.ids + k * L, NULL, 0, z, k ? pool : pool0);
        for (size_t j = 0; j < L; j++) {
            float w = (float)p.weights[k * L + j];
            for (size_t c = 0; c < C && w != 1.0f; c++)
                z[j * C + c] = (z[j * C + c] - ze[j * C + c]) * w + ze[j * C + c];
        }
        worst = fmax(worst, max_diff(got.text + k * L * C, z, L * C));
    }
    CHECK(worst < 1e-4, "weighted chunks differ from the formula by %g", worst);
    CHECK(max_diff(got.pooled, pool0, P) < 1e-4, "pooled is not the first chunk's");
    /* no weights, one chunk: same as the official style */
    cs_cond a, b;
    CHECK(cs_cond_encode(m, tok, CS_PROMPT_COMFYUI, "a photo of a cat", NULL, "prompt", NULL, NULL, &a) == 0 &&
              cs_cond_encode(m, tok, CS_PROMPT_OFFICIAL, "a photo of a cat", NULL, "prompt", NULL, NULL, &b) == 0,
          "%s", cs_last_error());
    CHECK(a.Lt == L && b.Lt == L && max_diff(a.text, b.text, L * C) == 0 && max_diff(a.pooled, b.pooled, P) == 0,
          "plain prompt: comfyui != official");
    /* an embedding row equal to a token's own embedding gives that token's result */
    cs_st_file *f;
    CHECK(cs_st_open(wp, &f) == 0, "%s", cs_last_error());
    float *tab = cs_tensor_f32_dup(cs_st_find(f, "text_model.embeddings.token_embedding.weight"));
    int32_t ids1[CS_TOK_CTX], ids2[CS_TOK_CTX];
    memcpy(ids1, a.text ? p.ids : p.ids, sizeof ids1);
    memcpy(ids2, ids1, sizeof ids2);
    ids2[3] = 49408;   /* extra row 0 */
    float *z2 = malloc(L * C * sizeof *z2), pool2[48];
    enc1(m, ids1, NULL, 0, z, pool);
    enc1(m, ids2, tab + (size_t)ids1[3] * C, 1, z2, pool2);
    CHECK(max_diff(z, z2, L * C) == 0 && max_diff(pool, pool2, P) == 0, "embedding row != token row");
    CHECK(cs_cond_common_len(77, 154) == 154 && cs_cond_common_len(154, 231) == 462 &&
              cs_cond_common_len(77, 385) == 0 && cs_cond_common_len(77, 308) == 308,
          "common length");
    cs_free(tab);
    cs_st_close(f);
    cs_cond_free(&got), cs_cond_free(&a), cs_cond_free(&b);
    cs_prompt_free(&p);
    free(z), free(z2), free(ze);
    cs_clip_free(m);
    free(wp);
}

int main(void)
{
    const char *shared = getenv("SHARED_DIR") ? getenv("SHARED_DIR") : "../shared";
    const char *top = getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : ".";
    char *td = path_of(shared, "tokenizer");
    cs_tokenizer *tok;
    if (cs_tokenizer_load(td, &tok) != 0) {
        fprintf(stderr, "skip: %s\n", cs_last_error());
        free(td);
        return check_under_ci() ? 99 : 77;
    }
    test_cases(tok, top);
    test_weighting(tok, shared);
    cs_tokenizer_free(tok);
    free(td);
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
