/* cascade info: what this machine and build offer. */
#include "cli.h"

#include "gemm_bf16.h"

#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"

#include <stdio.h>
#include <string.h>

/* The CUDA plugin and its GPUs: the plugin is loaded only to list them
 * (cs_backend_describe); the active backend is not changed. */
static void print_gpus(void)
{
    static cs_backend_report r;
    if (cs_backend_describe("cuda", &r)) {
#ifdef CS_HAVE_CUDA_PLUGIN
        printf("plugin:    %s\n", cs_last_error());
#else
        printf("plugin:    not built (configure found no nvcc or was given --without-cuda)\n");
#endif
        printf("gpus:      none (no CUDA plugin loaded)\n");
        return;
    }
    const char *file = strrchr(r.path, '/');
    file = file ? file + 1 : r.path;
    printf("plugin:    %s (ABI %d; %s)\n", r.path, r.abi, r.version);
    if (!r.ndev) {
        printf("gpus:      none (%s loaded; %s)\n", file, r.reason);
        return;
    }
    printf("gpus:      %d\n", r.ndev);
    for (int i = 0; i < r.ndev && i < CS_MAX_LISTED; i++) {
        const cs_device_info *d = &r.dev[i];
        printf("  gpu %d:   %s, compute %d.%d, %.1f GiB total, %.1f GiB free, driver %d.%d", i, d->name, d->cc_major,
               d->cc_minor, d->total_bytes / 1073741824.0, d->free_bytes / 1073741824.0, d->driver_version / 1000,
               d->driver_version % 1000 / 10);
        if (d->usable) printf("\n");
        else printf("; not usable: %s\n", d->why);
    }
    if (r.ndev > CS_MAX_LISTED) printf("  (%d more not listed)\n", r.ndev - CS_MAX_LISTED);
}
#ifdef _OPENMP
#include <omp.h>
#endif

int cmd_info(int argc, char **argv)
{
    int levels = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--levels")) levels = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: cascade info [--levels]\n\n"
                   "Prints the CPU model and features, the SIMD level chosen (CASCADE_SIMD forces one),\n"
                   "the native bf16 kernel (AMX or AVX512-BF16; CASCADE_AMX=0 turns AMX off),\n"
                   "how matrix products are computed, OpenMP threads, the CUDA plugin and its GPUs\n"
                   "(name, compute capability, total/free memory, driver; or why none is usable)\n"
                   "and the build options.\n"
                   "--levels prints only the SIMD levels this build can run here, one per line.\n");
            return 0;
        } else {
            fprintf(stderr, "cascade info: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (levels) {
        for (int l = 0; l < CS_SIMD_LEVELS; l++)
            if (cs_simd_supported((cs_simd_level)l)) printf("%s\n", cs_simd_name((cs_simd_level)l));
        return 0;
    }
    int rc = cli_init(0);
    if (rc) return rc;
    printf("cascade %s\n", PACKAGE_VERSION);
    printf("cpu:       %s\n", cs_cpu_model());
    printf("features:  %s\n", cs_cpu_features());
    printf("simd:      %s (available:", cs_simd_name(cs_simd_current()));
    for (int l = 0; l < CS_SIMD_LEVELS; l++)
        if (cs_simd_supported((cs_simd_level)l)) printf(" %s", cs_simd_name((cs_simd_level)l));
    printf(")\n");
    printf("gemm:      %s\n", cs_gemm_info());
    printf("cpu bf16:  %s\n", cs_gemm_bf16_name() ? cs_gemm_bf16_name() : "no native bf16 kernel at this level (--precision bf16 refused on the CPU)");
#ifdef _OPENMP
    printf("openmp:    %d threads (max %d, %d processors)\n", cs_threads_get(), omp_get_max_threads(),
           omp_get_num_procs());
#else
    printf("openmp:    disabled at build time (1 thread)\n");
#endif
    printf("threads:   %d\n", cs_threads_get());
    printf("backend:   %s (CASCADE_BACKEND=cpu|cuda|PATH selects; plugins in $CASCADE_PLUGIN_DIR or %s)\n",
           cs_backend_name(), CS_PLUGIN_DIR);
    print_gpus();
    printf("build:     %s\n", CS_BUILD_OPTIONS);
    return 0;
}
