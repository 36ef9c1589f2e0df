/* `tests/golden/cascade-golden [--threads N] [--device D] [--precision P] [--strict] PATH/CASE...`:
 * runs golden cases (golden_case.c) and prints one line per compared output,
 * then PASS or FAIL per case. Exit 0 iff every case passes; 1 for a failing or
 * malformed case (one line naming the case file and the problem); 2 for bad
 * usage. A developer tool built by `make` and never installed: it calls the
 * engine's internal functions, and shares --threads/--device/--precision and
 * start-up with the CLI (src/cli/parse.c, device.c, init.c). */
#include "golden.h"

#include "cli.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_line[] =
    "usage: cascade-golden [--threads N] [--device D] [--precision P] [--strict] PATH/CASE...\n";

static int run_case(const char *arg, int strict)
{
    gcase *c;
    int ok = 0;
    if (golden_case_open(arg, strict, &c) || golden_case_run(c)) {
        /* one line that names the case, whichever layer wrote the message */
        const char *msg = cs_last_error();
        if (strstr(msg, arg) || (c && strstr(msg, golden_path(c))))
            fprintf(stderr, "cascade-golden: %s\n", msg);
        else
            fprintf(stderr, "cascade-golden: %s: %s\n", c ? golden_file(c) : arg, msg);
    } else
        ok = golden_case_verdict(c);
    printf("%s\n", ok ? "PASS" : "FAIL");
    golden_case_close(c);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    int threads = 0, strict = 0, first = 1;
    const char *device = NULL, *precision = NULL;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("%s\n"
               "Runs golden cases (CASE.io.safetensors, weights found through its metadata) and\n"
               "prints one line per compared output and PASS or FAIL. Exit 0 iff all pass.\n\n"
               "  --threads N  worker threads (default: CASCADE_THREADS or all cores)\n"
               "  --device D   auto (default: a usable CUDA GPU, else the CPU), cpu, cuda or\n"
               "               cuda:N (default: $CASCADE_DEVICE)\n"
               "  --precision P  auto (default: fp32, the golden data's own), fp32, bf16 or\n"
               "               fp16 (GPU only; compare at a looser tolerance, see README)\n"
               "  --strict     limit every output with a recorded float32-vs-float64 error to\n"
               "               %g times that error (floor %g of the reference), never more than\n"
               "               the case's own tolerance\n",
               usage_line, GOLDEN_STRICT_FACTOR, GOLDEN_STRICT_FLOOR);
        return 0;
    }
    while (first < argc && !strncmp(argv[first], "--", 2)) {
        if (!strcmp(argv[first], "--strict")) {
            strict = 1;
            first++;
        } else if (!strcmp(argv[first], "--threads") && first + 1 < argc) {
            if (cli_parse_threads("cascade-golden", "--threads", argv[first + 1], &threads)) return 2;
            first += 2;
        } else if (!strcmp(argv[first], "--device") && first + 1 < argc) {
            device = argv[first + 1];
            first += 2;
        } else if (!strcmp(argv[first], "--precision") && first + 1 < argc) {
            precision = argv[first + 1];
            first += 2;
        } else {
            fprintf(stderr, "cascade-golden: unknown or incomplete option '%s'\n%s", argv[first], usage_line);
            return 2;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "%s", usage_line);
        return 2;
    }
    int irc = cli_init(threads);
    if (irc) return irc;
    char said[700];
    if ((irc = cli_device("cascade-golden", device, precision, 1, said, sizeof said, &golden_precision)))
        return irc;
    int fails = 0;
    for (int i = first; i < argc; i++) {
        if (argc - first > 1) printf("== %s\n", argv[i]);
        fails += run_case(argv[i], strict) != 0;
    }
    return fails ? 1 : 0;
}
