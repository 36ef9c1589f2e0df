/* Argument checks shared by the bench programs: whole numbers and reals
 * with a range (no atoi: "4x" or "" must not silently become 4 or 0), and
 * the folder for generated weight files (--dir, else $CASCADE_BENCH_DIR;
 * no default: the files take GBs and belong on a disk the user picks).
 * Each failure prints one line and the program exits with status 2. */
#ifndef CS_BENCH_ARGS_H
#define CS_BENCH_ARGS_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static inline int bench_int(const char *prog, const char *opt, const char *v, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long x = v && *v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a whole number in %ld..%ld\n", prog, opt, v ? v : "", lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static inline int bench_real(const char *prog, const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = v && *v ? strtod(v, &end) : NAN;
    if (!v || !*v || *end || errno || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a number in [%g, %g]\n", prog, opt, v ? v : "", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* *dir: --dir as given, else $CASCADE_BENCH_DIR; it must be a folder. */
static inline int bench_dir(const char *prog, const char **dir)
{
    if (!*dir || !**dir)
        *dir = getenv("CASCADE_BENCH_DIR");
    struct stat st;
    if (!*dir || !**dir) {
        fprintf(stderr, "%s: no folder for the generated weight files: give --dir DIR or set CASCADE_BENCH_DIR "
                        "(several GB, outside the repository)\n", prog);
        return -1;
    }
    if (stat(*dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: --dir %s: not an existing folder\n", prog, *dir);
        return -1;
    }
    return 0;
}

#endif
