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
 *   one of the demo);
 * - the model scan in detail and the choice (cascade models), on trees of
 *   header-only sparse files that tests/test_models --make-tree writes:
 *   every key of a recognised file, the search folders, the hash and its
 *   cache, the choice's memory figures adding up, forced parts and
 *   variants, cascade_recommend by memory;
 * - setting the thread up (cascade_setup, what the CLI's start-up and
 *   --device/--precision use): each part alone, the line saying what was
 *   chosen and why, the precision in force, messages that name the key,
 *   the fake device plugin (tests/.libs) as $CASCADE_BACKEND and as the
 *   "cuda" plugin of $CASCADE_PLUGIN_DIR;
 * - a signal handler's calls (in a child process: the request stays):
 *   cascade_cancel_all stops every context, its reason, and
 *   cascade_remove_temporaries removing the demo's files. */
#include "check.h"
#include "cascade.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

static int has(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

static void test_models(void)
{
    char tmp[] = "/tmp/cascade-api-tools-XXXXXX", cmd[9000], flat[200], small[200], cache[200];
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(flat, sizeof flat, "%s/flat", tmp);
    snprintf(small, sizeof small, "%s/small", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    /* the tree maker beside the cascade binary, as tests/cli_models.sh finds it */
    const char *bin = getenv("CASCADE_BIN"), *slash = bin ? strrchr(bin, '/') : NULL;
    int dl = slash ? (int)(slash - bin) : 1;
    snprintf(cmd, sizeof cmd, "'%.*s/tests/test_models' --make-tree '%s' flat >/dev/null && '%.*s/tests/test_models' "
             "--make-tree '%s' small >/dev/null", dl, slash ? bin : ".", flat, dl, slash ? bin : ".", small);
    if (system(cmd) != 0) {
        CHECK(0, "could not make the model trees: %s", cmd);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
        return;
    }
    setenv("XDG_CACHE_HOME", cache, 1);
    setenv("CASCADE_MEMORY", "64G", 1);
    unsetenv("CASCADE_MODELS");
    CHECK(cascade_part_name(CASCADE_PART_STAGE_C) && !strcmp(cascade_part_name(CASCADE_PART_STAGE_C), "stage_c") &&
          !strcmp(cascade_part_title(CASCADE_PART_TEXT_ENCODER), "text encoder") &&
          cascade_part_name(CASCADE_PART_COUNT) == NULL && cascade_part_title((cascade_part)-1) == NULL, "part names");

    cascade_ctx *c = cascade_ctx_new();
    cascade_models *m = NULL;
    CHECK(cascade_set_string(c, CASCADE_P_MODELS_DIR, flat) == 0 && cascade_models_scan(c, &m) == 0, "scan: %s",
          cascade_errmsg(c));
    int n = cascade_models_count(m), known = 0;
    for (int i = 0; i < n; i++) {
        int part = cascade_models_part(m, i);
        if (part < 0) continue;
        known++;
        const char *v = cascade_models_string(m, i, CASCADE_MF_VARIANT);
        CHECK((v != NULL) == (part <= CASCADE_PART_STAGE_B), "file %d (%s): variant %s", i, cascade_models_path(m, i), v);
        CHECK(cascade_models_string(m, i, CASCADE_MF_NAMING) && cascade_models_string(m, i, CASCADE_MF_PREFIX),
              "file %d: naming, prefix", i);
        CHECK(has(cascade_models_string(m, i, CASCADE_MF_ROOT), flat), "file %d: root %s", i,
              cascade_models_string(m, i, CASCADE_MF_ROOT));
        CHECK(cascade_models_int(m, i, CASCADE_MF_TENSORS) > 0 && cascade_models_int(m, i, CASCADE_MF_PARAMS) > 0 &&
              cascade_models_int(m, i, CASCADE_MF_WEIGHT_BYTES) >= cascade_models_int(m, i, CASCADE_MF_PARAMS) &&
              cascade_models_int(m, i, CASCADE_MF_EXTRA_TENSORS) == 0 && cascade_models_int(m, i, CASCADE_MF_FOREIGN) == 0,
              "file %d: tensor figures", i);
        CHECK(cascade_models_int(m, i, CASCADE_MF_NAMING) == -1 && cascade_models_string(m, i, CASCADE_MF_TENSORS) == NULL,
              "file %d: a key of the other type answers", i);
    }
    CHECK(known >= 11, "%d of %d files recognised", known, n);
    CHECK(cascade_models_string(m, n, CASCADE_MF_NAMING) == NULL && cascade_models_int(m, -1, CASCADE_MF_PARAMS) == -1,
          "out of range");
    const char *why = NULL, *r = cascade_models_root(m, 0, &why);
    CHECK(has(r, flat) && why && why[0], "root 0: %s (%s)", r, why);
    CHECK(has(cascade_models_looked(m, -1), "looked in:") && cascade_models_looked(m, 0), "looked: %s",
          cascade_models_looked(m, -1));

    /* the choice: the full F32 stages fit in 64G; the parts add up */
    cascade_choice *ch = NULL;
    CHECK(cascade_models_choose(c, m, 1024, 1024, 1, &ch) == 0, "choose: %s", cascade_errmsg(c));
    long long most = 0;
    for (int p = 0; p < CASCADE_PART_COUNT; p++) {
        int f = (int)cascade_choice_int(ch, p, CASCADE_CH_FILE);
        if (f < 0) continue;
        long long need = cascade_choice_int(ch, p, CASCADE_CH_NEED);
        CHECK(need == cascade_choice_int(ch, p, CASCADE_CH_WEIGHTS) + cascade_choice_int(ch, p, CASCADE_CH_SCRATCH) +
                          cascade_choice_int(ch, p, CASCADE_CH_ACTIVATIONS) && cascade_choice_string(ch, p, CASCADE_CH_WHY),
              "part %d: need %lld is not weights + scratch + activations", p, need);
        CHECK(cascade_models_part(m, f) == p, "part %d took file %d of part %d", p, f, cascade_models_part(m, f));
        if (need > most) most = need;
    }
    int fc = (int)cascade_choice_int(ch, CASCADE_PART_STAGE_C, CASCADE_CH_FILE);
    CHECK(fc >= 0 && !strcmp(cascade_models_network(m, fc), "stage_c") && !strcmp(cascade_models_dtype(m, fc), "F32"),
          "64G: Stage C %s", fc >= 0 ? cascade_models_path(m, fc) : "none");
    CHECK(most == cascade_choice_int(ch, 0, CASCADE_CH_NEED_MAX) && cascade_choice_int(ch, 0, CASCADE_CH_HAVE) == 64LL << 30 &&
          cascade_choice_int(ch, 0, CASCADE_CH_FITS) == 1 && cascade_choice_int(ch, 0, CASCADE_CH_ON_DEVICE) == 0 &&
          has(cascade_choice_string(ch, 0, CASCADE_CH_HAVE_SOURCE), "CASCADE_MEMORY"),
          "the whole: need %lld of %lld, source %s", cascade_choice_int(ch, 0, CASCADE_CH_NEED_MAX),
          cascade_choice_int(ch, 0, CASCADE_CH_HAVE), cascade_choice_string(ch, 0, CASCADE_CH_HAVE_SOURCE));
    cascade_choice_free(ch);
    ch = (cascade_choice *)&ch;
    CHECK(cascade_models_choose(c, m, 10, 1024, 1, &ch) == CASCADE_E_ARG && ch == NULL, "width 10 accepted");
    /* one set of limits: the parameter table's, as cascade_generate */
    CHECK(cascade_param_step(CASCADE_P_WIDTH) == 8 && cascade_param_step(CASCADE_P_HEIGHT) == 8 &&
          cascade_param_step(CASCADE_P_BATCH) == 1 && cascade_param_step(CASCADE_P_DEVICE) == CASCADE_E_ARG &&
          cascade_param_step((cascade_param)-1) == CASCADE_E_ARG, "cascade_param_step");
    double lo = 0, hi = 0;
    CHECK(cascade_param_range(CASCADE_P_WIDTH, &lo, &hi, NULL, NULL) == 0 && lo == 8 && hi == 8192, "width range");
    CHECK(cascade_models_choose(c, m, (int)hi + 8, 1024, 1, &ch) == CASCADE_E_ARG && ch == NULL &&
          has(cascade_errmsg(c), "width: 8200 is out of range 8..8192"), "width past the table: %s", cascade_errmsg(c));
    CHECK(cascade_models_choose(c, m, 1024, 1020, 1, &ch) == CASCADE_E_ARG &&
          has(cascade_errmsg(c), "height: 1020 is not a multiple of 8"), "height 1020: %s", cascade_errmsg(c));
    CHECK(cascade_param_range(CASCADE_P_BATCH, &lo, &hi, NULL, NULL) == 0 &&
          cascade_recommend(c, 1024, 1024, (int)hi + 1, &ch) == CASCADE_E_ARG && ch == NULL &&
          has(cascade_errmsg(c), "batch: 65 is out of range 1..64"), "batch past the table: %s", cascade_errmsg(c));
    CHECK(cascade_set_int(c, CASCADE_P_WIDTH, 8200) == CASCADE_E_ARG && has(cascade_errmsg(c), "width: 8200 is out"),
          "set_int and choose differ: %s", cascade_errmsg(c));
    CHECK(cascade_models_choose(c, m, 8, 8, 64, &ch) == 0, "8x8 batch 64 (the table's corner): %s", cascade_errmsg(c));
    cascade_choice_free(ch);
    CHECK(cascade_set_string(c, CASCADE_P_VARIANT_C, "lite-bf16") == 0 && cascade_models_choose(c, m, 2048, 1024, 2, &ch) == 0,
          "choose lite-bf16: %s", cascade_errmsg(c));
    fc = (int)cascade_choice_int(ch, CASCADE_PART_STAGE_C, CASCADE_CH_FILE);
    CHECK(fc >= 0 && !strcmp(cascade_models_network(m, fc), "stage_c_lite") && !strcmp(cascade_models_dtype(m, fc), "BF16"),
          "lite-bf16 asked: %s", fc >= 0 ? cascade_models_path(m, fc) : "none");
    cascade_choice_free(ch);
    cascade_models_free(m);

    /* a part set by the caller is taken as it is; the hash and its cache */
    char forced[300];
    snprintf(forced, sizeof forced, "%s/stage_c_lite.safetensors", flat);
    m = NULL;
    CHECK(cascade_set_string(c, CASCADE_P_VARIANT_C, NULL) == 0 && cascade_set_string(c, CASCADE_P_MODELS_DIR, small) == 0 &&
          cascade_set_model(c, CASCADE_PART_STAGE_C, forced) == 0 && cascade_models_scan(c, &m) == 0, "forced scan: %s",
          cascade_errmsg(c));
    int fi = -1, ai = -1;
    for (int i = 0; i < cascade_models_count(m); i++) {
        if (!strcmp(cascade_models_path(m, i), forced)) fi = i;
        if (cascade_models_part(m, i) == CASCADE_PART_STAGE_A) ai = i;
    }
    CHECK(fi >= 0 && cascade_models_string(m, fi, CASCADE_MF_ROOT) == NULL, "the forced file: %d, root %s", fi,
          fi >= 0 ? cascade_models_string(m, fi, CASCADE_MF_ROOT) : "-");
    CHECK(cascade_models_choose(c, m, 1024, 1024, 1, &ch) < 0 && has(cascade_errmsg(c), "Stage B"),
          "no Stage B in the small tree: %s", cascade_errmsg(c));
    unsigned long long h1 = 0, h2 = 1, h3 = 2;
    CHECK(ai >= 0 && cascade_models_hash(c, m, ai, CASCADE_HASH_CACHED_ONLY, &h1) == 0, "stage_a cached before hashing");
    CHECK(cascade_models_hash(c, m, ai, 0, &h1) == 0 && cascade_models_hash(c, m, ai, CASCADE_HASH_CACHED_ONLY, &h2) == 1 &&
          cascade_models_hash(c, m, ai, 0, &h3) == 1 && h1 == h2 && h2 == h3, "hash %llx, cached %llx, again %llx", h1, h2, h3);
    CHECK(cascade_models_hash(c, m, 999, 0, &h1) == CASCADE_E_ARG, "hash of no file");
    cascade_models_free(m);

    /* without files: what fits this memory */
    CHECK(cascade_recommend(c, 1024, 1024, 1, &ch) == 0 && !strcmp(cascade_choice_string(ch, 0, CASCADE_CH_VARIANT), "full"),
          "64G recommends %s", cascade_choice_string(ch, 0, CASCADE_CH_VARIANT));
    cascade_choice_free(ch);
    setenv("CASCADE_MEMORY", "3G", 1);
    CHECK(cascade_recommend(c, 1024, 1024, 1, &ch) == 0 &&
          !strcmp(cascade_choice_string(ch, 0, CASCADE_CH_VARIANT), "lite-bf16") &&
          cascade_choice_int(ch, 0, CASCADE_CH_HAVE) == 3LL << 30 &&
          cascade_choice_int(ch, 0, CASCADE_CH_FITS) == (cascade_choice_int(ch, 0, CASCADE_CH_NEED_MAX) +
                                                          cascade_choice_int(ch, 0, CASCADE_CH_MARGIN) <=
                                                          cascade_choice_int(ch, 0, CASCADE_CH_HAVE)),
          "3G recommends %s", cascade_choice_string(ch, 0, CASCADE_CH_VARIANT));
    cascade_choice_free(ch);
    setenv("CASCADE_MEMORY", "lots", 1);
    CHECK(cascade_recommend(c, 1024, 1024, 1, &ch) < 0 && has(cascade_errmsg(c), "CASCADE_MEMORY"), "bad memory: %s",
          cascade_errmsg(c));
    unsetenv("CASCADE_MEMORY");
    cascade_choice_free(NULL);
    cascade_models_free(NULL);
    cascade_ctx_free(c);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "%s", cmd);
}

static int starts(const char *s, const char *pre) { return s && !strncmp(s, pre, strlen(pre)); }

static void test_setup(void)
{
    cascade_ctx *c = cascade_ctx_new(), *d = cascade_ctx_new();
    int prec = 7;
    CHECK(!strcmp(cascade_device_chosen(c, &prec), "") && prec == -1, "before any setup: '%s' %d",
          cascade_device_chosen(c, NULL), prec);
    CHECK(!strcmp(cascade_device_chosen(NULL, &prec), "") && prec == -1, "NULL context");
    CHECK(cascade_setup(NULL, CASCADE_SETUP_ALL) == CASCADE_E_ARG, "setup(NULL)");
    CHECK(cascade_setup(c, 8) == CASCADE_E_ARG && has(cascade_errmsg(c), "unknown parts"), "part 8: %s",
          cascade_errmsg(c));
    unsetenv("CASCADE_BACKEND");
    unsetenv("CASCADE_DEVICE");
    unsetenv("CASCADE_PRECISION");

    /* the CPU, threads */
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cpu") == 0 && cascade_set_string(c, CASCADE_P_PRECISION, "fp32") == 0 &&
          cascade_set_int(c, CASCADE_P_THREADS, 2) == 0, "cpu fp32, 2 threads");
    CHECK(cascade_setup(c, CASCADE_SETUP_ALL) == 0 && !strcmp(cascade_device_chosen(c, &prec), "cpu, fp32") &&
          prec == CASCADE_PREC_FP32, "cpu: '%s' %d (%s)", cascade_device_chosen(c, NULL), prec, cascade_errmsg(c));
    CHECK(cascade_info_int(CASCADE_INFO_THREADS) == (cascade_info_int(CASCADE_INFO_OPENMP) ? 2 : 1),
          "threads after setup: %lld", cascade_info_int(CASCADE_INFO_THREADS));
    CHECK(!strcmp(cascade_info_string(CASCADE_INFO_BACKEND), "cpu"), "backend %s", cascade_info_string(CASCADE_INFO_BACKEND));
    CHECK(cascade_set_string(c, CASCADE_P_PRECISION, "fp16") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) == CASCADE_E_UNSUP &&
          !strcmp(cascade_errmsg(c), "precision fp16: the CPU computes in fp32 or bf16 only") &&
          !strcmp(cascade_device_chosen(c, &prec), "") && prec == -1, "cpu fp16: %s", cascade_errmsg(c));
    int bf16 = cascade_info_string(CASCADE_INFO_CPU_BF16) != NULL;
    CHECK(cascade_set_string(c, CASCADE_P_PRECISION, "bf16") == 0 &&
          (bf16 ? cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 && !strcmp(cascade_device_chosen(c, &prec), "cpu, bf16") &&
                      prec == CASCADE_PREC_BF16
                : cascade_setup(c, CASCADE_SETUP_DEVICE) == CASCADE_E_UNSUP && starts(cascade_errmsg(c), "precision bf16: ")),
          "cpu bf16 (native: %d): '%s' %s", bf16, cascade_device_chosen(c, NULL), cascade_errmsg(c));
    cascade_set_string(c, CASCADE_P_PRECISION, NULL);
    CHECK(cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 && !strcmp(cascade_device_chosen(c, NULL), "cpu, fp32"),
          "cpu auto is fp32: %s", cascade_device_chosen(c, NULL));

    /* the environment, each part alone */
    setenv("CASCADE_MEMORY", "nan", 1);
    CHECK(cascade_setup(c, CASCADE_SETUP_KERNELS) == CASCADE_E_ARG && starts(cascade_errmsg(c), "CASCADE_MEMORY='nan'"),
          "CASCADE_MEMORY=nan: %s", cascade_errmsg(c));
    CHECK(cascade_setup(c, CASCADE_SETUP_DEVICE) == 0, "the device part reads no CASCADE_MEMORY");
    unsetenv("CASCADE_MEMORY");
    cascade_set_int(c, CASCADE_P_THREADS, 0);
    setenv("CASCADE_THREADS", "lots", 1);
    CHECK(cascade_setup(c, CASCADE_SETUP_KERNELS) == CASCADE_E_ARG && has(cascade_errmsg(c), "CASCADE_THREADS=lots"),
          "CASCADE_THREADS=lots: %s", cascade_errmsg(c));
    unsetenv("CASCADE_THREADS");
    setenv("CASCADE_BACKEND", "/nonexistent/libcascade-x.so", 1);
    CHECK(cascade_setup(c, CASCADE_SETUP_KERNELS) == 0, "kernels: %s", cascade_errmsg(c));
    CHECK(cascade_setup(c, CASCADE_SETUP_BACKEND) < 0 && starts(cascade_errmsg(c), "backend '/nonexistent/libcascade-x.so': "),
          "a missing $CASCADE_BACKEND: %s", cascade_errmsg(c));
    CHECK(cascade_setup(c, CASCADE_SETUP_ALL) < 0, "generate would stop on it too");

    /* the fake device plugin as $CASCADE_BACKEND: auto keeps it */
    char fake[4096], dir[] = "/tmp/test_api_setup.XXXXXX", link[4200];
    CHECK(realpath("tests/.libs/libcascade-fake.so", fake) != NULL, "the fake plugin (make check builds it)");
    setenv("CASCADE_BACKEND", fake, 1);
    cascade_set_string(c, CASCADE_P_DEVICE, "auto");
    CHECK(cascade_setup(c, CASCADE_SETUP_ALL) == 0 && !strcmp(cascade_device_chosen(c, &prec), "fake, bf16") &&
          prec == CASCADE_PREC_BF16, "fake auto: '%s' (%s)", cascade_device_chosen(c, NULL), cascade_errmsg(c));
    CHECK(!strcmp(cascade_info_string(CASCADE_INFO_BACKEND), "fake"), "backend %s", cascade_info_string(CASCADE_INFO_BACKEND));
    CHECK(cascade_set_string(c, CASCADE_P_PRECISION, "fp16") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 &&
          !strcmp(cascade_device_chosen(c, &prec), "fake, fp16") && prec == CASCADE_PREC_FP16, "fake fp16: '%s'",
          cascade_device_chosen(c, NULL));
    /* another context keeps its own line */
    CHECK(cascade_set_string(d, CASCADE_P_DEVICE, "cpu") == 0 && cascade_setup(d, CASCADE_SETUP_DEVICE) == 0 &&
          !strcmp(cascade_device_chosen(d, NULL), "cpu, fp32") && !strcmp(cascade_device_chosen(c, NULL), "fake, fp16"),
          "two contexts: '%s' / '%s'", cascade_device_chosen(d, NULL), cascade_device_chosen(c, NULL));
    unsetenv("CASCADE_BACKEND");

    /* the fake plugin as "cuda": cuda:N names a device it does not have */
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(link, sizeof link, "%s/libcascade-cuda.so", dir);
    CHECK(symlink(fake, link) == 0, "symlink %s", link);
    setenv("CASCADE_PLUGIN_DIR", dir, 1);
    cascade_set_string(c, CASCADE_P_PRECISION, NULL);
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cuda:3") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) < 0 &&
          !strcmp(cascade_errmsg(c), "device cuda:3: backend 'cuda': it runs on one device only (device 3 asked for)"),
          "cuda:3: %s", cascade_errmsg(c));
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cuda") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 &&
          !strcmp(cascade_device_chosen(c, NULL), "fake, bf16"), "cuda: '%s' (%s)", cascade_device_chosen(c, NULL),
          cascade_errmsg(c));
    setenv("FAKE_BACKEND_FAIL", "1", 1);   /* its init fails: auto says why it took the CPU */
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cpu") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 &&
          cascade_set_string(c, CASCADE_P_DEVICE, "auto") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) == 0 &&
          !strcmp(cascade_device_chosen(c, NULL), "cpu, fp32 (backend 'cuda': not usable here: fake failure (FAKE_BACKEND_FAIL))"),
          "auto, the plugin failing: '%s' (%s)", cascade_device_chosen(c, NULL), cascade_errmsg(c));
    CHECK(cascade_set_string(c, CASCADE_P_DEVICE, "cuda") == 0 && cascade_setup(c, CASCADE_SETUP_DEVICE) < 0 &&
          starts(cascade_errmsg(c), "device cuda: backend 'cuda': not usable here: fake failure"), "cuda failing: %s",
          cascade_errmsg(c));
    unsetenv("FAKE_BACKEND_FAIL");
    unsetenv("CASCADE_PLUGIN_DIR");
    unlink(link);
    rmdir(dir);
    CHECK(!strcmp(cascade_info_string(CASCADE_INFO_BACKEND), "cpu"), "the CPU at the end: %s",
          cascade_info_string(CASCADE_INFO_BACKEND));
    cascade_ctx_free(c);
    cascade_ctx_free(d);
}

/* in a child: the request stays for the rest of the process */
static int cancel_all_child(void)
{
    cascade_ctx *a = cascade_ctx_new(), *b = cascade_ctx_new();
    cascade_images *im = NULL;
    struct stat st;
    CHECK(cascade_cancel_reason() == 0, "a reason before any request: %d", cascade_cancel_reason());
    CHECK(cascade_use_demo(a) == 0 && cascade_use_demo(b) == 0, "demo: %s", cascade_errmsg(a));
    const char *file = cascade_get_model(a, CASCADE_PART_STAGE_C);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file ? file : "");
    if (strrchr(dir, '/')) *strrchr(dir, '/') = 0;
    CHECK(file && stat(file, &st) == 0 && stat(dir, &st) == 0, "the demo's files exist");
    cascade_set_int(a, CASCADE_P_STEPS_C, 1);
    cascade_set_int(a, CASCADE_P_STEPS_B, 1);
    cascade_cancel_all(SIGTERM);
    cascade_cancel_all(SIGINT);   /* the first reason wins */
    CHECK(cascade_cancel_reason() == SIGTERM, "reason %d", cascade_cancel_reason());
    CHECK(cascade_generate(a, "x", NULL, &im) == CASCADE_E_INTR && im == NULL, "context a generated: %s",
          cascade_errmsg(a));
    CHECK(cascade_generate(b, "x", NULL, &im) == CASCADE_E_INTR && im == NULL, "context b generated: %s",
          cascade_errmsg(b));
    CHECK(cascade_generate(a, "x", NULL, &im) == CASCADE_E_INTR, "the request stays");
    cascade_remove_temporaries();
    CHECK(stat(file, &st) != 0 && stat(dir, &st) != 0, "the demo's files after cascade_remove_temporaries");
    cascade_ctx_free(a);   /* its files are gone already: nothing to fail */
    cascade_ctx_free(b);
    return failures;
}

static void test_cancel_all(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) _exit(cancel_all_child() ? 1 : 0);
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "the cancel_all child failed (status %d)", st);
}

int main(void)
{
    test_cancel_all();   /* first: the child forks before any OpenMP thread exists */
    test_info();
    test_gpus();
    test_tokens();
    test_models();
    test_setup();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
