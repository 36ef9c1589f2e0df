/* `cascade dev golden [--threads N] [--device D] [--precision P] [--strict] PATH/CASE...`: runs golden
 * cases (golden_case.c) and prints one line per compared output, then PASS or
 * FAIL per case. Exit 0 iff every case passes; 1 for a failing or malformed
 * case (one line naming the case file and the problem); 2 for bad usage. */
#include "golden.h"

#include "cli.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_line[] =
    "usage: cascade dev golden [--threads N] [--device D] [--precision P] [--strict] PATH/CASE...\n";

static int run_case(const char *arg, int strict)
{
    gcase *c;
    int ok = 0;
    if (golden_case_open(arg, strict, &c) || golden_case_run(c)) {
        /* one line that names the case, whichever layer wrote the message */
        const char *msg = cs_last_error();
        if (strstr(msg, arg) || (c && strstr(msg, golden_path(c))))
            fprintf(stderr, "cascade dev golden: %s\n", msg);
        else
            fprintf(stderr, "cascade dev golden: %s: %s\n", c ? golden_file(c) : arg, msg);
    } else
        ok = golden_case_verdict(c);
    printf("%s\n", ok ? "PASS" : "FAIL");
    golden_case_close(c);
    return ok ? 0 : 1;
}

int cmd_golden(int argc, char **argv)
{
    int threads = 0, strict = 0, first = 1;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("%s\n"
               "Runs golden cases (CASE.io.safetensors, weights found through its metadata) and\n"
               "prints one line per compared output and PASS or FAIL. Exit 0 iff all pass.\n\n"
               "  --threads N  worker threads (default: CASCADE_THREADS or all cores)\n"
               "  --device D   auto (default), cpu, cuda or cuda:N; golden cases run on the CPU\n"
               "               only for now, so cuda is refused with a message\n"
               "  --precision P  auto (default), fp32, bf16 or fp16; the CPU computes in fp32,\n"
               "               so auto = fp32 and bf16/fp16 are refused with a message\n"
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
            if (cli_parse_threads("cascade dev golden", "--threads", argv[first + 1], &threads)) return 2;
            first += 2;
        } else if (!strcmp(argv[first], "--device") && first + 1 < argc) {
            const char *d = argv[first + 1];
            int n = 0;
            if (!strncmp(d, "cuda:", 5)) {
                if (cli_parse_int("cascade dev golden", "--device cuda:N", d + 5, 0, 255, &n)) return 2;
            } else if (strcmp(d, "auto") && strcmp(d, "cpu") && strcmp(d, "cuda")) {
                fprintf(stderr, "cascade dev golden: --device: '%s' is not auto, cpu, cuda or cuda:N\n", d);
                return 2;
            }
            if (!strncmp(d, "cuda", 4)) {
                fprintf(stderr, "cascade dev golden: --device %s: golden cases run only on the CPU in this build\n", d);
                return 1;
            }
            first += 2;
        } else if (!strcmp(argv[first], "--precision") && first + 1 < argc) {
            const char *p = argv[first + 1];
            if (strcmp(p, "auto") && strcmp(p, "fp32") && strcmp(p, "bf16") && strcmp(p, "fp16")) {
                fprintf(stderr, "cascade dev golden: --precision: '%s' is not auto, fp32, bf16 or fp16\n", p);
                return 2;
            }
            if (strcmp(p, "auto") && strcmp(p, "fp32")) {
                fprintf(stderr, "cascade dev golden: --precision %s: the CPU computes in fp32 only\n", p);
                return 1;
            }
            first += 2;
        } else {
            fprintf(stderr, "cascade dev golden: unknown or incomplete option '%s'\n%s", argv[first], usage_line);
            return 2;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "%s", usage_line);
        return 2;
    }
    int irc = cli_init(threads);
    if (irc) return irc;
    int fails = 0;
    for (int i = first; i < argc; i++) {
        if (argc - first > 1) printf("== %s\n", argv[i]);
        fails += run_case(argv[i], strict) != 0;
    }
    return fails ? 1 : 0;
}

int cmd_dev(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "golden")) return cmd_golden(argc - 1, argv + 1);
    fprintf(stderr, "usage: cascade dev golden PATH/CASE...\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}
