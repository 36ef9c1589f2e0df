/* The public calls the `cascade` CLI's tool commands are built on (cascade.h
 * only; linked against libcascade.so):
 * - this machine and build (cascade info): every key of the right type
 *   answers, the wrong type and unknown keys give NULL / -1, the level in
 *   use is a usable one and the one $CASCADE_SIMD forces, the build string
 *   agrees with CASCADE_INFO_CUDA_BUILT;
 * - the CUDA plugin's GPU list: loaded or a reason, and its bounds. */
#include "check.h"
#include "cascade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    test_info();
    test_gpus();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    return check_exit();
}
