/* cascade info: what this machine and build offer. */
#include "cli.h"

#include "cascade.h"

#include <stdio.h>
#include <string.h>

/* The CUDA plugin and its GPUs: the plugin is loaded only to list them
 * (cascade_gpus_list); the backend in use is not changed. Returns 0, or 1
 * when out of memory. */
static int print_gpus(void)
{
    cascade_ctx *ctx = cascade_ctx_new();
    cascade_gpus *g = NULL;
    if (!ctx) {
        fprintf(stderr, "cascade info: out of memory\n");
        return 1;
    }
    if (cascade_gpus_list(ctx, &g)) {
        if (cascade_info_int(CASCADE_INFO_CUDA_BUILT) == 1)
            printf("plugin:    %s\n", cascade_errmsg(ctx));
        else
            printf("plugin:    not built (configure found no nvcc or was given --without-cuda)\n");
        printf("gpus:      none (no CUDA plugin loaded)\n");
        cascade_ctx_free(ctx);
        return 0;
    }
    const char *path = cascade_gpus_string(g, 0, CASCADE_GPUS_PLUGIN), *file = strrchr(path, '/');
    file = file ? file + 1 : path;
    int n = (int)cascade_gpus_int(g, 0, CASCADE_GPUS_COUNT), listed = (int)cascade_gpus_int(g, 0, CASCADE_GPUS_LISTED);
    printf("plugin:    %s (ABI %lld; %s)\n", path, cascade_gpus_int(g, 0, CASCADE_GPUS_ABI),
           cascade_gpus_string(g, 0, CASCADE_GPUS_VERSION));
    if (!n) {
        printf("gpus:      none (%s loaded; %s)\n", file, cascade_gpus_string(g, 0, CASCADE_GPUS_REASON));
    } else {
        printf("gpus:      %d\n", n);
        for (int i = 0; i < listed; i++) {
            long long drv = cascade_gpus_int(g, i, CASCADE_GPU_DRIVER);
            printf("  gpu %d:   %s, compute %lld.%lld, %.1f GiB total, %.1f GiB free, driver %lld.%lld", i,
                   cascade_gpus_string(g, i, CASCADE_GPU_NAME), cascade_gpus_int(g, i, CASCADE_GPU_CC_MAJOR),
                   cascade_gpus_int(g, i, CASCADE_GPU_CC_MINOR),
                   cascade_gpus_int(g, i, CASCADE_GPU_TOTAL_BYTES) / 1073741824.0,
                   cascade_gpus_int(g, i, CASCADE_GPU_FREE_BYTES) / 1073741824.0, drv / 1000, drv % 1000 / 10);
            if (cascade_gpus_int(g, i, CASCADE_GPU_USABLE)) printf("\n");
            else printf("; not usable: %s\n", cascade_gpus_string(g, i, CASCADE_GPU_WHY));
        }
        if (n > listed) printf("  (%d more not listed)\n", n - listed);
    }
    cascade_gpus_free(g);
    cascade_ctx_free(ctx);
    return 0;
}

/* the SIMD levels this build can run here, each between sep and end */
static void print_levels(const char *sep, const char *end)
{
    int usable;
    const char *name;
    for (int l = 0; (name = cascade_simd_level(l, &usable)) != NULL; l++)
        if (usable) printf("%s%s%s", sep, name, end);
}

int cmd_info(int argc, char **argv)
{
    int levels = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--levels")) levels = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: cascade info [--levels]\n\n"
                   "Prints the CPU model and features, the SIMD level chosen (CASCADE_SIMD forces one),\n"
                   "the native bf16 kernel (AMX or AVX512-BF16; CASCADE_AMX=0 turns AMX off,\n"
                   "CASCADE_BF16_FMA=0|1 picks vdpbf16ps or its two-FMA form),\n"
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
        print_levels("", "\n");
        return 0;
    }
    int rc = cli_init(0);
    if (rc) return rc;
    printf("cascade %s\n", cascade_version());
    printf("cpu:       %s\n", cascade_info_string(CASCADE_INFO_CPU_MODEL));
    printf("features:  %s\n", cascade_info_string(CASCADE_INFO_CPU_FEATURES));
    printf("simd:      %s (available:", cascade_info_string(CASCADE_INFO_SIMD));
    print_levels(" ", "");
    printf(")\n");
    printf("gemm:      %s\n", cascade_info_string(CASCADE_INFO_GEMM));
    const char *bf16 = cascade_info_string(CASCADE_INFO_CPU_BF16);
    printf("cpu bf16:  %s\n", bf16 ? bf16 : "no native bf16 kernel at this level (--precision bf16 refused on the CPU)");
    long long threads = cascade_info_int(CASCADE_INFO_THREADS);
    if (cascade_info_int(CASCADE_INFO_OPENMP) == 1)
        printf("openmp:    %lld threads (max %lld, %lld processors)\n", threads,
               cascade_info_int(CASCADE_INFO_MAX_THREADS), cascade_info_int(CASCADE_INFO_PROCESSORS));
    else
        printf("openmp:    disabled at build time (1 thread)\n");
    printf("threads:   %lld\n", threads);
    printf("backend:   %s (CASCADE_BACKEND=cpu|cuda|PATH selects; plugins in $CASCADE_PLUGIN_DIR or %s)\n",
           cascade_info_string(CASCADE_INFO_BACKEND), cascade_info_string(CASCADE_INFO_PLUGIN_DIR));
    if (print_gpus()) return 1;
    printf("build:     %s\n", cascade_info_string(CASCADE_INFO_BUILD));
    return 0;
}
