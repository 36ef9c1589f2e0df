/* Helpers shared by the C tests (tests/test_*.c), so each test holds only
 * what it checks:
 *   CHECK(cond, fmt, ...)  counts a failure and prints "FAIL file:line: ..."
 *                          on stderr (the first CHECK_PRINT_MAX of them, each
 *                          after check_tag, e.g. the SIMD level), then goes on;
 *   check_exit()           the exit status: 0, or 1 after any failure;
 *   check_urand()          uniform floats in [-1, 1) from a seeded xorshift64
 *                          (check_urand_d: doubles, 52 bits), check_seed();
 *   check_rnd64()          splitmix64 integers, check_uni(a, b) floats in [a, b),
 *                          check_seed64();
 *   check_rel_l2()         ||y - ref|| / ||ref|| in double.
 *   check_max_rel()        max |y - ref| / max |ref| in double.
 * Everything is static: each test program has its own counter and streams.
 * Fixed seeds, so a failure repeats exactly. */
#ifndef CS_TESTS_CHECK_H
#define CS_TESTS_CHECK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
static const char *check_tag __attribute__((unused)) = "";
#define CHECK_PRINT_MAX 50

#define CHECK(cond, ...) \
    do { \
        if (!(cond) && ++failures <= CHECK_PRINT_MAX) { \
            fprintf(stderr, "FAIL %s%s:%d: ", check_tag, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
    } while (0)

static inline int check_exit(void) { return failures ? 1 : 0; }

/* under CI (CI set and not empty) missing data is an error, not a skip */
static inline int check_under_ci(void)
{
    const char *c = getenv("CI");
    return c && *c;
}

/* dir/name in one of 4 rotating buffers: valid until 4 more calls */
static inline const char *check_path(const char *dir, const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* test data that is missing (what: the reason): under CI an error (exit
 * status 99), elsewhere a skip (77), with one line saying which */
static inline int check_missing(const char *what)
{
    if (check_under_ci()) {
        fprintf(stderr, "ERROR: %s\n", what);
        return 99;
    }
    printf("SKIP: %s\n", what);
    return 77;
}

/* xorshift64 (Marsaglia): cheap, and the same numbers on every machine */
static uint64_t check_rs = 0x9E3779B97F4A7C15ull;
static inline void check_seed(uint64_t s) { check_rs = s ? s : 0x9E3779B97F4A7C15ull; }
static inline uint64_t check_xorshift(void)
{
    check_rs ^= check_rs << 13, check_rs ^= check_rs >> 7, check_rs ^= check_rs << 17;
    return check_rs;
}
static inline float check_urand(void) { return (float)((check_xorshift() >> 40) * (1.0 / 8388608.0)) - 1.0f; }
static inline double check_urand_d(void) { return (double)(check_xorshift() >> 11) / 4503599627370496.0 - 1.0; }

/* splitmix64 (its own state): independent of the xorshift stream */
static uint64_t check_sm = 0x243f6a8885a308d3ull;
static inline void check_seed64(uint64_t s) { check_sm = s; }
static inline uint64_t check_rnd64(void)
{
    uint64_t z = (check_sm += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline float check_uni(float a, float b) { return a + (b - a) * (float)((check_rnd64() >> 40) * 0x1p-24); }

static inline double check_rel_l2(const float *y, const float *ref, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)y[i] - ref[i];
        d += e * e, s += (double)ref[i] * ref[i];
    }
    return s > 0 ? sqrt(d / s) : sqrt(d);
}

/* max |y - ref| / max |ref| in double (a NaN in y counts as infinite error) */
static inline double check_max_rel(const float *y, const float *ref, size_t n)
{
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
        double d = fabs((double)y[i] - ref[i]);
        if (!(d <= e)) e = d;
    }
    return e / (mx > 0 ? mx : 1);
}

#endif
