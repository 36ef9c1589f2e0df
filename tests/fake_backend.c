/* A fake backend plugin for tests (like hwloc's fake component): a naive
 * float64-accumulating sgemm that counts its calls, and two made-up devices
 * (none, with a reason, under FAKE_BACKEND_NODEV). FAKE_ABI overrides the
 * ABI number to test the loader's refusal. */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI
#define FAKE_ABI CS_BACKEND_ABI
#endif

unsigned long fake_backend_calls;

static int init(char *err, size_t n)
{
    (void)err, (void)n;
    return getenv("FAKE_BACKEND_FAIL") ? -1 : 0;
}

static int devices(cs_device_info *out, int max, char *err, size_t n)
{
    if (getenv("FAKE_BACKEND_NODEV")) {
        snprintf(err, n, "no fake device");
        return -6;
    }
    for (int i = 0; i < 2 && i < max; i++) {
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "Fake GPU %d", i);
        out[i].cc_major = 8 + i, out[i].cc_minor = 6 - 6 * i;
        out[i].total_bytes = (size_t)(24 + 56 * i) << 30, out[i].free_bytes = (size_t)(20 + 50 * i) << 30;
        out[i].driver_version = 13000;
        out[i].usable = i == 0;
        if (i) snprintf(out[i].why, sizeof out[i].why, "no kernel image for sm_90");
    }
    return 2;
}

static const cs_backend fake = {.abi = FAKE_ABI, .name = "fake", .version = "fake 1.0", .init = init,
                                .devices = devices};

const cs_backend *cascade_backend_entry(void) { return &fake; }
