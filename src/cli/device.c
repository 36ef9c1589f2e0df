/* --device and --precision, shared by the commands that compute: which
 * backend runs the networks and at what precision, with one line saying
 * what was chosen and why. */
#include "cli.h"

#include "api.h"
#include "backend.h"
#include "device.h"
#include "error.h"
#include "models.h"
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prec_name[] = {"fp32", "bf16", "fp16"};

int cli_device(const char *cmd, const char *device, const char *precision, int reference, char *said, size_t saidlen,
               int *prec_out)
{
    *prec_out = CS_PREC_FP32;
    if (!device || !*device) device = getenv("CASCADE_DEVICE");
    if (!device || !*device) device = "auto";
    if (!precision || !*precision) precision = getenv("CASCADE_PRECISION");
    if (!precision || !*precision) precision = "auto";
    int index = -1, prec = -1;
    if (!strncmp(device, "cuda:", 5)) {
        if (cli_parse_int(cmd, "--device cuda:N", device + 5, 0, 255, &index)) return CLI_EXIT_USAGE;
    } else if (strcmp(device, "auto") && strcmp(device, "cpu") && strcmp(device, "cuda")) {
        fprintf(stderr, "%s: --device: '%s' is not auto, cpu, cuda or cuda:N\n", cmd, device);
        return CLI_EXIT_USAGE;
    }
    for (int i = 0; i < 3; i++)
        if (!strcmp(precision, prec_name[i])) prec = i;
    if (prec < 0 && strcmp(precision, "auto")) {
        fprintf(stderr, "%s: --precision: '%s' is not auto, fp32, bf16 or fp16\n", cmd, precision);
        return CLI_EXIT_USAGE;
    }
    char why[600] = "";
    if (!strcmp(device, "cpu")) {
        cs_backend_select("cpu");
    } else if (!strncmp(device, "cuda", 4)) {
        if (cs_backend_select_device("cuda", index)) {
            fprintf(stderr, "%s: --device %s: %s\n", cmd, device, cs_last_error());
            return CLI_EXIT_ERROR;
        }
    } else if (!cs_backend_active()) {   /* auto: a GPU when one is usable ($CASCADE_BACKEND may have chosen) */
        if (cs_backend_select("cuda")) snprintf(why, sizeof why, " (%s)", cs_last_error());
    }
    const cs_backend *b = cs_backend_active();
    if (!b || !b->ops) {
        /* the CPU: fp32, or bf16 products where it has a native bf16 dot
         * product (AVX512-BF16). auto stays fp32 until bf16's effect on
         * whole images is measured (README). */
        if (prec == CS_PREC_FP16) {
            fprintf(stderr, "%s: --precision fp16: the CPU computes in fp32 or bf16 only\n", cmd);
            return CLI_EXIT_ERROR;
        }
        if (cs_cpu_precision_set(prec == CS_PREC_BF16 ? CS_PREC_BF16 : CS_PREC_FP32)) {
            fprintf(stderr, "%s: --precision %s: %s\n", cmd, precision, cs_last_error());
            return CLI_EXIT_ERROR;
        }
        *prec_out = prec == CS_PREC_BF16 ? CS_PREC_BF16 : CS_PREC_FP32;
        snprintf(said, saidlen, "cpu, %s%s", prec_name[*prec_out], why);
        return 0;
    }
    /* auto: fp32 for reference work (golden cases), else bf16, else fp16 */
    int tried[3] = {prec, prec < 0 && !reference ? CS_PREC_FP16 : -1, -1};
    if (prec < 0) tried[0] = reference ? CS_PREC_FP32 : CS_PREC_BF16, tried[2] = CS_PREC_FP32;
    for (int i = 0; i < 3; i++) {
        if (tried[i] < 0) continue;
        if (b->ops->set_precision(tried[i]) == 0) {
            cs_dev_graphs_drop();   /* recorded in another precision */
            cs_api_note_precision(tried[i]);   /* for cascade_models_choose */
            snprintf(said, saidlen, "%s, %s", b->name, prec_name[tried[i]]);
            *prec_out = tried[i];
            return 0;
        }
        if (prec >= 0) {
            fprintf(stderr, "%s: --precision %s: the %s device does not support it\n", cmd, precision, b->name);
            return CLI_EXIT_ERROR;
        }
    }
    fprintf(stderr, "%s: the %s device supports no precision this build knows\n", cmd, b->name);
    return CLI_EXIT_ERROR;
}

void cli_device_req(cs_choice_req *req, int prec)
{
    const cs_backend *b = cs_backend_active();
    size_t fr = 0, tot = 0;
    if (!b || !b->ops || !b->ops->mem_info) return;
    if (b->ops->mem_info(&fr, &tot, req->dev_name, sizeof req->dev_name)) return;
    req->dev_prec = prec;
    req->dev_have = fr;
}
