/* cascade info: what this machine and build offer. */
#include "cli.h"

#include "../../simd/kernels.h"
#include "backend.h"
#include "ops.h"

#include <stdio.h>
#include <string.h>
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
                   "how matrix products are computed, OpenMP threads and the build options.\n"
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
#ifdef _OPENMP
    printf("openmp:    %d threads (max %d, %d processors)\n", cs_threads_get(), omp_get_max_threads(),
           omp_get_num_procs());
#else
    printf("openmp:    disabled at build time (1 thread)\n");
#endif
    printf("threads:   %d\n", cs_threads_get());
    printf("backend:   %s (CASCADE_BACKEND=cpu|cuda|PATH selects; plugins in $CASCADE_PLUGIN_DIR or %s)\n",
           cs_backend_name(), CS_PLUGIN_DIR);
    printf("build:     %s\n", CS_BUILD_OPTIONS);
    return 0;
}
