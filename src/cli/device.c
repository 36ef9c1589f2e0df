/* --device and --precision, shared by the commands that compute: which
 * backend runs the networks and at what precision, with one line saying
 * what was chosen and why. The CLI checks the words (bad usage, 2); the
 * library's cascade_setup chooses (a device or precision that cannot be
 * had is an error, 1). */
#include "cli.h"

#include "cascade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_device(const char *cmd, const char *device, const char *precision, int reference, char *said, size_t saidlen,
               int *prec_out)
{
    *prec_out = CASCADE_PREC_FP32;
    if (!device || !*device) device = getenv("CASCADE_DEVICE");
    if (!device || !*device) device = "auto";
    if (!precision || !*precision) precision = getenv("CASCADE_PRECISION");
    if (!precision || !*precision) precision = "auto";
    int index = -1;
    if (!strncmp(device, "cuda:", 5)) {
        if (cli_parse_int(cmd, "--device cuda:N", device + 5, 0, 255, &index)) return CLI_EXIT_USAGE;
    } else if (strcmp(device, "auto") && strcmp(device, "cpu") && strcmp(device, "cuda")) {
        fprintf(stderr, "%s: --device: '%s' is not auto, cpu, cuda or cuda:N\n", cmd, device);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(precision, "auto") && strcmp(precision, "fp32") && strcmp(precision, "bf16") &&
        strcmp(precision, "fp16")) {
        fprintf(stderr, "%s: --precision: '%s' is not auto, fp32, bf16 or fp16\n", cmd, precision);
        return CLI_EXIT_USAGE;
    }
    /* reference work (golden cases) compares against fp32: auto is fp32
     * there, on any device (on the CPU auto is fp32 anyway) */
    if (reference && !strcmp(precision, "auto")) precision = "fp32";
    cascade_ctx *ctx = cli_ctx();
    if (!ctx) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return CLI_EXIT_ERROR;
    }
    char dev[16];   /* cuda:N as the library spells it ("cuda:+1" and "cuda: 1" parse as 1 here) */
    if (index >= 0) snprintf(dev, sizeof dev, "cuda:%d", index);
    if (cascade_set_string(ctx, CASCADE_P_DEVICE, index >= 0 ? dev : device) || cascade_set_string(ctx, CASCADE_P_PRECISION, precision)) {
        fprintf(stderr, "%s: %s\n", cmd, cascade_errmsg(ctx));
        return CLI_EXIT_USAGE;
    }
    if (cascade_setup(ctx, CASCADE_SETUP_DEVICE)) {
        /* the library names the key ("device cuda: ...", "precision bf16:
         * ..."); the CLI says it as the option */
        const char *m = cascade_errmsg(ctx);
        size_t dl = index >= 0 ? strlen(dev) : 0;
        if (dl && !strncmp(m, "device ", 7) && !strncmp(m + 7, dev, dl) && m[7 + dl] == ':')
            fprintf(stderr, "%s: --device %s%s\n", cmd, device, m + 7 + dl);   /* as the user wrote it */
        else
            fprintf(stderr, "%s: %s%s\n", cmd, !strncmp(m, "device ", 7) || !strncmp(m, "precision ", 10) ? "--" : "",
                    m);
        return CLI_EXIT_ERROR;
    }
    snprintf(said, saidlen, "%s", cascade_device_chosen(ctx, prec_out));
    return CLI_EXIT_OK;
}

static void profile_line(void *user, const char *line) { fprintf(user, "%s\n", line); }

void cli_device_report(const char *me, int quiet)
{
    long long peak = cascade_info_int(CASCADE_INFO_DEVICE_PEAK);   /* -1 on the CPU: nothing said */
    if (peak >= 0 && !quiet) fprintf(stderr, "%s: device memory peak %.2f GiB\n", me, (double)peak / 1073741824.0);
    cascade_profile_report(quiet ? NULL : profile_line, stderr);
}
