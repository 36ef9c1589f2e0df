/* Cross-backend op test (like ggml's test-backend-ops): every op of a
 * device's op set (src/backend.h cs_dev_ops), reached through the op layer
 * (src/ops.h, src/device.h) as a network body reaches it, runs once on the
 * CPU and once in device mode on the same random inputs at odd sizes; the
 * results are compared by relative L2 error.
 *
 * Backend: $CASCADE_BACKEND (a name such as cuda, or a plugin path); unset,
 * the fake plugin of tests/fake_backend.c (argv[1]: its folder, default
 * tests/.libs). Precision of the device's products: $CASCADE_PRECISION =
 * fp32 (default) | bf16 | fp16, tolerance 1e-5 | 2e-2 | 5e-3 on products
 * (linear, sgemm, convolutions, attention); every other op, and the
 * backward ops of grad.h and the optimizer steps (float32 on the device always), at 1e-5. The
 * fake plugin runs the CPU code itself, so there every result must be
 * identical, and its op counter must show that the expected device op ran.
 * Exit: 0 all ok, 1 a failure, 2 bad $CASCADE_PRECISION, 77 no usable
 * device (the reason is printed). See tests/README-backend-ops.md. */
#include "backend_ops.h"

#include "backend.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "kernels.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the fused blocks after the single ops they are made of */
static void all_ops(void)
{
    forward_ops();
    block_ops();
    grad_ops();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a crash shows the op it was in */
    const char *env = getenv("CASCADE_BACKEND");
    char fake[1024];
    snprintf(fake, sizeof fake, "%s/libcascade-fake.so", argc > 1 ? argv[1] : "tests/.libs");
    const char *name = env && *env ? env : fake;
    const char *ps = getenv("CASCADE_PRECISION");
    int prec = !ps || !*ps || !strcmp(ps, "fp32") ? CS_PREC_FP32 : !strcmp(ps, "bf16") ? CS_PREC_BF16
                                                                : !strcmp(ps, "fp16") ? CS_PREC_FP16 : -1;
    if (prec < 0) {
        fprintf(stderr, "test_backend_ops: CASCADE_PRECISION=%s: expected fp32, bf16 or fp16\n", ps);
        return 2;
    }
    /* the CPU side at the level under test; the fake plugin's own copy of
     * the engine picks the same one (its init follows CASCADE_SIMD too) */
    if (cs_simd_init()) {
        fprintf(stderr, "test_backend_ops: %s\n", cs_last_error());
        return 1;
    }
    tol_prod = prec == CS_PREC_BF16 ? 2e-2 : prec == CS_PREC_FP16 ? 5e-3 : 1e-5;
    if (!strcmp(name, "cpu")) {
        printf("SKIP: CASCADE_BACKEND=cpu: no device backend to compare with the CPU\n");
        return 77;
    }
    static cs_backend_report rep;
    if (cs_backend_describe(name, &rep)) {
        printf("test_backend_ops: %s\n", cs_last_error());
        return 1;
    }
    int usable = 0;
    for (int i = 0; i < rep.ndev && i < CS_MAX_LISTED; i++) usable |= rep.dev[i].usable;
    if (!usable) {
        printf("SKIP: backend %s: no usable device: %s\n", name,
               rep.ndev ? rep.dev[0].why : rep.reason[0] ? rep.reason : "none listed");
        return 77;
    }
    if (cs_backend_select(name)) {
        int skip = strstr(cs_last_error(), "not usable here") != NULL;
        printf("%s%s\n", skip ? "SKIP: " : "test_backend_ops: ", cs_last_error());
        return skip ? 77 : 1;
    }
    D = cs_dev_pick();
    if (!D) {
        printf("SKIP: backend %s has no op set (the CPU computes)\n", name);
        return 77;
    }
    int rc = D->set_precision(prec);
    if (rc) {
        const char *m = D->errmsg ? D->errmsg() : "";
        printf("%s%s: precision %s: %s\n", rc == CS_EUNSUP ? "SKIP: " : "FAIL ", cs_backend_name(), ps, m);
        return rc == CS_EUNSUP ? 77 : 1;
    }
    void *h = dlopen(rep.path, RTLD_NOW | RTLD_NOLOAD);
    fake_calls = h ? dlsym(h, "fake_backend_calls") : NULL;
    fake_last = h ? dlsym(h, "fake_backend_last_op") : NULL;
    if (!fake_last) fake_calls = NULL;
    printf("# backend %s (%s, %s), device %s, precision %s%s\n", cs_backend_name(), rep.path, rep.version,
           rep.dev[0].name, ps && *ps ? ps : "fp32", fake_calls ? "; the fake plugin: results must be identical" : "");
    D->mem_peak(1);
    all_ops();
    printf("# device memory peak %.1f MiB\n", (double)D->mem_peak(0) / 1048576.0);
    printf("%s: %d of %d op runs %s on %s\n", fails ? "FAIL" : "PASS", fails ? fails : runs, runs,
           fails ? "failed" : "ok", cs_backend_name());
    if (h) dlclose(h);
    cs_backend_release();
    return fails ? 1 : 0;
}
