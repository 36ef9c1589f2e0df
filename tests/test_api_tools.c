/* The public calls the `cascade` CLI's tool commands are built on (cascade.h
 * only; linked against libcascade.so):
 * - this machine and build (cascade info): every key of the right type
 *   answers, the wrong type and unknown keys give NULL / -1, the level in
 *   use is a usable one and the one $CASCADE_SIMD forces, the build string
 *   agrees with CASCADE_INFO_CUDA_BUILT;
 * - the CUDA plugin's GPU list: loaded or a reason, and its bounds;
 * - tokens with their strings and weights (cascade tokenize): the same ids
 *   as cascade_tokenize, the official and comfyui styles, embeddings, the
 *   log callback, errors (with ../shared's tokenizer; else the byte-level
 *   one of the demo). */
#include "check.h"
#include "cascade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_info(void)
{
    static const cascade_info strs[] = {CASCADE_INFO_CPU_MODEL, CASCADE_INFO_CPU_FEATURES, CASCADE_INFO_SIMD,
                                        CASCADE_INFO_GEMM, CASCADE_INFO_BACKEND, CASCADE_INFO_PLUGIN_DIR,
                                        CASCADE_INFO_BUILD};
    static const cascade_info ints[] = {CASCADE_INFO_THREADS, CASCADE_INFO_OPENMP, CASCADE_INFO_MAX_THREADS,
                                        CASCADE_INFO_PROCESSORS, CASCADE_INFO_CUDA_BUILT};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        CHECK(cascade_info_string(strs[i]) != NULL, "info string key %d: NULL", (int)strs[i]);
        CHECK(cascade_info_int(strs[i]) == -1, "info string key %d read as an int", (int)strs[i]);
    }
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        CHECK(cascade_info_int(ints[i]) >= 0, "info int key %d: %lld", (int)ints[i], cascade_info_int(ints[i]));
        CHECK(cascade_info_string(ints[i]) == NULL, "info int key %d read as a string", (int)ints[i]);
    }
    CHECK(cascade_info_string(CASCADE_INFO_COUNT) == NULL && cascade_info_int(CASCADE_INFO_COUNT) == -1 &&
          cascade_info_string((cascade_info)-1) == NULL, "unknown info keys answer");
    CHECK(cascade_info_int(CASCADE_INFO_MAX_THREADS) >= 1 && cascade_info_int(CASCADE_INFO_PROCESSORS) >= 1,
          "threads max %lld, processors %lld", cascade_info_int(CASCADE_INFO_MAX_THREADS),
          cascade_info_int(CASCADE_INFO_PROCESSORS));
    const char *backend = cascade_info_string(CASCADE_INFO_BACKEND), *env = getenv("CASCADE_BACKEND");
    if (!env || !*env) CHECK(backend && !strcmp(backend, "cpu"), "backend without CASCADE_BACKEND: %s", backend);

    /* the build line tells cuda=yes exactly when the plugin was built */
    const char *build = cascade_info_string(CASCADE_INFO_BUILD);
    int cuda = build && strstr(build, "cuda=yes") != NULL;
    CHECK(cuda == cascade_info_int(CASCADE_INFO_CUDA_BUILT), "build '%s' vs cuda_built %lld", build,
          cascade_info_int(CASCADE_INFO_CUDA_BUILT));

    /* the levels: the reference first and always usable; the one in use is
     * usable, and is $CASCADE_SIMD when that forces one */
    int usable = -1, found = 0, n = 0;
    const char *name, *cur = cascade_info_string(CASCADE_INFO_SIMD);
    CHECK((name = cascade_simd_level(0, &usable)) && !strcmp(name, "scalar") && usable == 1, "level 0: %s %d",
          name, usable);
    for (; (name = cascade_simd_level(n, &usable)) != NULL; n++)
        if (usable && cur && !strcmp(name, cur)) found = 1;
    CHECK(n >= 2 && found, "%d levels; '%s' in use %s", n, cur, found ? "" : "is not a usable one");
    CHECK(cascade_simd_level(-1, &usable) == NULL && usable == 0 && cascade_simd_level(n, NULL) == NULL,
          "levels out of range");
    const char *forced = getenv("CASCADE_SIMD");
    if (forced && *forced) CHECK(cur && !strcmp(cur, forced), "CASCADE_SIMD=%s, level in use %s", forced, cur);
}

static void test_gpus(void)
{
    cascade_ctx *c = cascade_ctx_new();
    cascade_gpus *g = (cascade_gpus *)&g;   /* must come back NULL on failure */
    CHECK(cascade_gpus_list(NULL, &g) == CASCADE_E_ARG && g == NULL, "gpus_list(NULL ctx)");
    CHECK(cascade_gpus_list(c, NULL) == CASCADE_E_ARG, "gpus_list(NULL out)");
    int rc = cascade_gpus_list(c, &g);
    if (rc) {   /* no plugin here (or not built): a negative code and why */
        CHECK(rc < 0 && g == NULL && cascade_errmsg(c)[0], "no plugin: rc %d, message '%s'", rc, cascade_errmsg(c));
        printf("no CUDA plugin: %s\n", cascade_errmsg(c));
    } else {
        long long n = cascade_gpus_int(g, 0, CASCADE_GPUS_COUNT), listed = cascade_gpus_int(g, 0, CASCADE_GPUS_LISTED);
        CHECK(cascade_gpus_string(g, 0, CASCADE_GPUS_PLUGIN) && cascade_gpus_string(g, 0, CASCADE_GPUS_VERSION) &&
              cascade_gpus_int(g, 0, CASCADE_GPUS_ABI) > 0, "plugin path, version, ABI");
        CHECK(n >= 0 && listed == (n < 16 ? n : 16), "count %lld, listed %lld", n, listed);
        CHECK((n == 0) == (cascade_gpus_string(g, 0, CASCADE_GPUS_REASON) != NULL), "a reason exactly without GPUs");
        for (int i = 0; i < listed; i++) {
            int ok = cascade_gpus_int(g, i, CASCADE_GPU_USABLE) == 1;
            CHECK(cascade_gpus_string(g, i, CASCADE_GPU_NAME) && cascade_gpus_int(g, i, CASCADE_GPU_TOTAL_BYTES) > 0,
                  "gpu %d: name and memory", i);
            CHECK(ok == (cascade_gpus_string(g, i, CASCADE_GPU_WHY) == NULL), "gpu %d: why exactly when unusable", i);
        }
        CHECK(cascade_gpus_string(g, (int)listed, CASCADE_GPU_NAME) == NULL &&
              cascade_gpus_int(g, (int)listed, CASCADE_GPU_CC_MAJOR) == -1 &&
              cascade_gpus_int(g, 0, CASCADE_GPUS_PLUGIN) == -1, "out of range or wrong type answers");
        printf("CUDA plugin: %lld GPUs\n", n);
    }
    CHECK(cascade_gpus_string(NULL, 0, CASCADE_GPUS_PLUGIN) == NULL && cascade_gpus_int(NULL, 0, CASCADE_GPUS_COUNT) == -1,
          "NULL list answers");
    cascade_gpus_free(g);
    cascade_gpus_free(NULL);
    cascade_ctx_free(c);
}

static int notices;
static void count_notice(void *user, const char *msg)
{
    (void)user;
    if (strstr(msg, "embedding:missing")) notices++;
}

static void test_tokens(void)
{
    cascade_ctx *c = cascade_ctx_new();
    char tokdir[4200] = "", embdir[4200] = "", vocab[4300];
    const char *shared = getenv("SHARED_DIR"), *top = getenv("TOP_SRCDIR");
    snprintf(tokdir, sizeof tokdir, "%s/tokenizer", shared ? shared : "../shared");
    snprintf(vocab, sizeof vocab, "%s/vocab.json", tokdir);
    snprintf(embdir, sizeof embdir, "%s/tests/data/embeddings", top ? top : ".");
    int real = access(vocab, R_OK) == 0;
    CHECK(real ? cascade_set_string(c, CASCADE_P_TOKENIZER, tokdir) == 0 : cascade_use_demo(c) == 0, "tokenizer: %s",
          cascade_errmsg(c));
    printf("tokens: %s\n", real ? tokdir : "the demo's byte-level tokenizer");
    cascade_tokens *t = (cascade_tokens *)&t;
    CHECK(cascade_tokens_new(c, NULL, &t) == CASCADE_E_ARG && t == NULL, "NULL text");
    CHECK(cascade_tokens_new(NULL, "a", &t) == CASCADE_E_ARG && cascade_tokens_new(c, "a", NULL) == CASCADE_E_ARG,
          "NULL ctx or out");

    /* official: one run, the ids of cascade_tokenize, weight 1 */
    const char *text = "a photo of a cat, ab";
    int ids[128], n = cascade_tokenize(c, text, ids, 128);
    CHECK(cascade_set_int(c, CASCADE_P_PROMPT_STYLE, CASCADE_PROMPT_OFFICIAL) == 0, "style");
    CHECK(cascade_tokens_new(c, text, &t) == 0, "official: %s", cascade_errmsg(c));
    CHECK(n > 2 && cascade_tokens_count(t) == n && cascade_tokens_chunks(t) == 0, "official: %d tokens, tokenize %d",
          cascade_tokens_count(t), n);
    for (int i = 0; i < n && i < 128; i++)
        CHECK(cascade_tokens_id(t, i) == ids[i] && cascade_tokens_weight(t, i) == 1 && cascade_tokens_text(t, i),
              "official token %d: %d vs %d", i, cascade_tokens_id(t, i), ids[i]);
    CHECK(cascade_tokens_id(t, n) == -1 && cascade_tokens_id(t, -1) == -1 && !cascade_tokens_text(t, n) &&
          cascade_tokens_weight(t, n) == 0, "out of range");
    if (real)
        CHECK(!strcmp(cascade_tokens_text(t, 0), "<|startoftext|>") && !strcmp(cascade_tokens_text(t, 5), "cat</w>"),
              "texts %s %s", cascade_tokens_text(t, 0), cascade_tokens_text(t, 5));
    cascade_tokens_free(t);

    /* comfyui: 77-token chunks, weights, embeddings, the log callback */
    cascade_set_log(c, count_notice, NULL);
    CHECK(cascade_set_int(c, CASCADE_P_PROMPT_STYLE, CASCADE_PROMPT_COMFYUI) == 0 &&
          cascade_set_string(c, CASCADE_P_EMBEDDINGS, embdir) == 0, "comfyui settings");
    CHECK(cascade_tokens_new(c, "(a cat:1.5) embedding:one x embedding:missing", &t) == 0, "comfyui: %s",
          cascade_errmsg(c));
    CHECK(cascade_tokens_chunks(t) == 1 && cascade_tokens_count(t) == CASCADE_TOKEN_CHUNK, "comfyui: %d chunks, %d",
          cascade_tokens_chunks(t), cascade_tokens_count(t));
    CHECK(cascade_tokens_weight(t, 0) == 1 && cascade_tokens_weight(t, 1) == 1.5, "weights %g %g",
          cascade_tokens_weight(t, 0), cascade_tokens_weight(t, 1));
    int emb = 0;
    for (int i = 0; i < cascade_tokens_count(t); i++)
        if (cascade_tokens_text(t, i) && !strcmp(cascade_tokens_text(t, i), "<embedding>")) {
            emb++;
            CHECK(cascade_tokens_id(t, i) >= 49408, "embedding id %d", cascade_tokens_id(t, i));
        }
    CHECK(emb >= 1, "no embedding vector among the tokens");
    CHECK(notices == 1, "%d notices of the missing embedding", notices);
    CHECK(cascade_tokens_id(t, CASCADE_TOKEN_CHUNK - 1) == 49407, "padding %d", cascade_tokens_id(t, 76));
    cascade_tokens_free(t);
    t = (cascade_tokens *)&t;
    CHECK(cascade_tokens_new(c, "(a:inf)", &t) < 0 && t == NULL && strstr(cascade_errmsg(c), "finite"),
          "weight inf: %s", cascade_errmsg(c));
    CHECK(cascade_set_string(c, CASCADE_P_TOKENIZER, "/nonexistent") == 0 && cascade_tokens_new(c, "a", &t) < 0 &&
          strstr(cascade_errmsg(c), "/nonexistent"), "missing tokenizer: %s", cascade_errmsg(c));
    cascade_tokens_free(NULL);
    cascade_ctx_free(c);
}

int main(void)
{
    test_info();
    test_gpus();
    test_tokens();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
