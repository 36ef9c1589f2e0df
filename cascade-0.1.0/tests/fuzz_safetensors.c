/* libFuzzer target for the safetensors reader: any byte string must either
 * open (and every tensor be looked up and converted) or fail cleanly. Built
 * and run by tests/fuzz.sh (clang -fsanitize=fuzzer,address,undefined). */
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void cleanup(void) { unlink(path); }   /* libFuzzer ends with exit() */

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/cs_fuzz_%d.safetensors", (int)getpid());
        atexit(cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    cs_st_file *st;
    if (cs_st_open(path, &st) == 0) {
        for (int i = 0; i < cs_st_count(st); i++) {
            const cs_tensor *t = cs_st_at(st, i);
            if (cs_st_find(st, t->name) != t) abort();
            int64_t n = cs_tensor_numel(t);
            if (n > 0 && n < (1 << 20)) {
                float *buf = malloc((size_t)n * sizeof(float));
                if (buf) cs_tensor_to_f32(t, buf);
                free(buf);
            }
        }
        cs_st_close(st);
    }
    return 0;
}
