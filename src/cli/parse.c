/* One parser for every numeric option and environment variable of the CLI,
 * so they all refuse the same things: empty text, trailing garbage ("4x"),
 * overflow ("1e999"), NaN/Inf, values that round to Inf or 0 as a float,
 * and anything outside the documented range. Each failure is one line on
 * stderr naming the option or variable; the caller exits with status 2. */
#include "cli.h"

#include "cascade.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_parse_int(const char *cmd, const char *what, const char *v, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long x = v && *v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a whole number in %ld..%ld\n", cmd, what, v ? v : "", lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int cli_parse_param(const char *cmd, const char *what, const char *v, int key, int *out)
{
    double lo = 0, hi = 0;
    int step = cascade_param_step((cascade_param)key);
    if (step < 1 || cascade_param_range((cascade_param)key, &lo, &hi, NULL, NULL)) {
        fprintf(stderr, "%s: %s: no such integer parameter (key %d)\n", cmd, what, key);
        return -1;
    }
    if (cli_parse_int(cmd, what, v, (long)lo, (long)hi, out)) return -1;
    if (*out % step) {
        fprintf(stderr, "%s: %s: %d is not a multiple of %d\n", cmd, what, *out, step);
        return -1;
    }
    return 0;
}

int cli_parse_real(const char *cmd, const char *what, const char *v, double lo, double hi, int lo_open,
                   float *out)
{
    char *end = NULL;
    errno = 0;
    double x = v && *v ? strtod(v, &end) : NAN;
    /* ERANGE covers 1e999 and denormal underflow; the float checks catch
     * 1e39 (finite double, Inf float) and 1e-50 (non-zero, 0 as a float) */
    int ok = v && *v && !*end && !errno && isfinite(x) && fabs(x) <= FLT_MAX &&
             !(x != 0.0 && (float)x == 0.0f);
    if (ok && (x < lo || x > hi || (lo_open && x == lo)))
        ok = 0;
    if (!ok) {
        char range[96];
        if (hi >= FLT_MAX && lo <= -FLT_MAX)
            snprintf(range, sizeof range, "a finite number");
        else
            snprintf(range, sizeof range, "a number in %s%g..%g]", lo_open ? "(" : "[", lo, hi);
        fprintf(stderr, "%s: %s: '%s' is not %s\n", cmd, what, v ? v : "", range);
        return -1;
    }
    *out = (float)x;
    return 0;
}

int cli_parse_u64(const char *cmd, const char *what, const char *v, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    /* digits only: strtoull would take " 5", "+5" and wrap "-5" */
    unsigned long long x = v && v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (!end || *end || errno || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a whole number in 0..%llu\n", cmd, what, v ? v : "",
                (unsigned long long)hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_threads_max(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    long m = 4 * n;
    return (int)(m > CLI_THREADS_CAP ? CLI_THREADS_CAP : m);
}

int cli_parse_threads(const char *cmd, const char *what, const char *v, int *out)
{
    char *end = NULL;
    errno = 0;
    long x = v && *v ? strtol(v, &end, 10) : 0, hi = cli_threads_max();
    if (!v || !*v || *end || errno || x < 1 || x > hi) {
        fprintf(stderr, "%s: %s: '%s' is not a whole number in 1..%ld (at most 4 per processor, %d in all)\n",
                cmd, what, v ? v : "", hi, CLI_THREADS_CAP);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int cli_env_threads(const char *cmd, int *out)
{
    const char *t = getenv("CASCADE_THREADS");
    *out = 0;
    if (!t || !*t)
        return 0;   /* empty is the same as unset */
    return cli_parse_threads(cmd, "CASCADE_THREADS", t, out);
}
