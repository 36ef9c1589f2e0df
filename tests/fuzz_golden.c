/* libFuzzer target for the golden case parser: any byte string, written as a
 * case file, must either be refused with an error or run its handler (the op
 * and block handlers need no weights file) without a memory error. Built and
 * run by tests/fuzz.sh (target golden; clang -fsanitize=fuzzer,address,undefined);
 * seed corpus tests/corpus/golden/. */
#include "cpu.h"
#include "golden/golden.h"
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/cs_fuzz_golden_%d", (int)getpid());
        cs_simd_init();
        if (!freopen("/dev/null", "w", stdout)) return 0;   /* the per-output lines */
    }
    char file[96];
    snprintf(file, sizeof file, "%s.io.safetensors", path);
    FILE *f = fopen(file, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    gcase *c;
    if (golden_case_open(path, (int)(size & 1), &c) == 0) {
        if (golden_case_run(c) == 0) golden_case_verdict(c);
        golden_case_close(c);
    }
    return 0;
}
