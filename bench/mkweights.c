/* Writes a model file with random weights in the exact layout of a spec
 * manifest, for running whole generations where the real weights cannot be
 * downloaded (the device machine, benchmarks):
 *   make bench/mkweights && bench/mkweights MANIFEST.json OUT.safetensors [f32|bf16|f16] [SEED]
 * The file is written as OUT.part and renamed when complete. */
#include "../tests/manifest_st.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: bench/mkweights MANIFEST.json OUT.safetensors [f32|bf16|f16] [SEED]\n");
        return 2;
    }
    const char *d = argc > 3 ? argv[3] : "f32";
    cs_dtype dt = !strcmp(d, "f32") ? CS_F32 : !strcmp(d, "bf16") ? CS_BF16 : !strcmp(d, "f16") ? CS_F16 : CS_DTYPE_COUNT;
    char *end = NULL;
    unsigned long long seed = argc > 4 ? strtoull(argv[4], &end, 10) : 1234;
    if (dt == CS_DTYPE_COUNT || (end && *end)) {
        fprintf(stderr, "bench/mkweights: dtype must be f32, bf16 or f16 and SEED a number\n");
        return 2;
    }
    ms_tensor *t;
    int n;
    if (ms_load(argv[1], &t, &n)) return 1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.part", argv[2]);
    int rc = ms_write(tmp, t, n, dt, "", MS_OFFICIAL, strstr(argv[1], "stage_b") != NULL, 1, seed);
    free(t);
    if (!rc && rename(tmp, argv[2])) {
        perror(argv[2]);
        rc = -1;
    }
    if (rc) remove(tmp);
    return rc ? 1 : 0;
}
