/* The kernel table picks its level itself (simd/table.c, cs_simd_ensure):
 * before any use every entry is a stub; the first calls, from several
 * threads at once, install $CASCADE_SIMD's level (else the best this CPU
 * has) exactly once and compute right; afterwards the table is that level's
 * own (no stub left in front of a kernel); a level chosen explicitly before
 * first use is kept, and cs_simd_use still switches after it. */
#include "kernels.h"

#include "check.h"

#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 8, N = 1003 };

static float a[THREADS][N], b[THREADS][N], y[THREADS][N];

static void *first_use(void *arg)
{
    size_t t = (size_t)arg;
    cs_k.add(a[t], b[t], y[t], N);
    return NULL;
}

/* the level cs_simd_pick should choose, worked out from the environment */
static int expected_level(void)
{
    const char *env = getenv("CASCADE_SIMD");
    if (env && *env) {
        for (int l = 0; l < CS_SIMD_LEVELS; l++)
            if (!strcmp(env, cs_simd_name((cs_simd_level)l))) return cs_simd_supported((cs_simd_level)l) ? l : -1;
        return -1;
    }
    for (int l = CS_SIMD_LEVELS - 1; l > 0; l--)
        if (cs_simd_supported((cs_simd_level)l)) return l;
    return CS_SIMD_SCALAR;
}

/* the table cs_simd_use builds for a level, put together here */
static void level_table(cs_simd_level l, cs_kernels *k)
{
    cs_kernels_ref(k);
#ifdef CS_HAVE_AVX2
    if (l == CS_SIMD_AVX2 || l == CS_SIMD_AVX512) cs_kernels_avx2(k);
#endif
#ifdef CS_HAVE_AVX512
    if (l == CS_SIMD_AVX512) cs_kernels_avx512(k);
#endif
#ifdef CS_HAVE_NEON
    if (l == CS_SIMD_NEON) cs_kernels_neon(k);
#endif
}

int main(void)
{
    int want = expected_level();
    if (want < 0) {
        printf("SKIP: CASCADE_SIMD=%s is not a level this CPU and build run\n", getenv("CASCADE_SIMD"));
        return 77;
    }
    printf("level expected: %s\n", cs_simd_name((cs_simd_level)want));
    CHECK(cs_kernels_untouched(), "the table is not the stub table before first use");

    /* an explicit choice before first use is kept (in a child: this
     * process's table must stay untouched for the rest) */
    pid_t pid = fork();
    if (pid == 0) {
        float x[3] = {1, 2, 3}, z[3];
        int ok = cs_simd_use(CS_SIMD_SCALAR) == 0;
        cs_k.add(x, x, z, 3);
        ok = ok && cs_simd_current() == CS_SIMD_SCALAR && z[2] == 6;
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "cs_simd_use(scalar) before first use was not kept");

    for (size_t t = 0; t < THREADS; t++)
        for (size_t i = 0; i < N; i++) {
            a[t][i] = check_urand();
            b[t][i] = check_urand();
        }
    pthread_t th[THREADS];
    for (size_t t = 0; t < THREADS; t++) CHECK(!pthread_create(&th[t], NULL, first_use, (void *)t), "pthread_create");
    for (size_t t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    size_t bad = 0;
    for (size_t t = 0; t < THREADS; t++)
        for (size_t i = 0; i < N; i++) bad += y[t][i] != a[t][i] + b[t][i];
    CHECK(!bad, "%zu sums wrong after first use from %d threads", bad, THREADS);

    CHECK(!cs_kernels_untouched(), "first use left the stub table");
    CHECK((int)cs_simd_current() == want, "first use picked %s, expected %s", cs_simd_name(cs_simd_current()),
          cs_simd_name((cs_simd_level)want));
    cs_kernels k;
    level_table((cs_simd_level)want, &k);
    CHECK(!memcmp(&k, &cs_k, sizeof k), "the table after first use is not %s's own (a stub left in it?)",
          cs_simd_name((cs_simd_level)want));

    /* explicit choices still switch, and a later ensure does not undo them */
    CHECK(cs_simd_use(CS_SIMD_SCALAR) == 0, "cs_simd_use(scalar): %s", cs_simd_why());
    cs_simd_ensure();
    level_table(CS_SIMD_SCALAR, &k);
    CHECK(cs_simd_current() == CS_SIMD_SCALAR && !memcmp(&k, &cs_k, sizeof k), "cs_simd_use(scalar) undone");
    CHECK(cs_simd_pick() == 0 && (int)cs_simd_current() == want, "cs_simd_pick after use: %s",
          cs_simd_name(cs_simd_current()));
    return check_exit();
}
