/* This machine and this build through the public API (cascade.h): CPU,
 * kernel level, threads, build options, and the GPUs the CUDA plugin sees,
 * which is what `cascade info` prints. */
#include "api.h"

#include "backend.h"
#include "device.h"
#include "error.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "ops.h"

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef CS_HAVE_CUDA_PLUGIN
#define CUDA_BUILT 1
#else
#define CUDA_BUILT 0
#endif

const char *cascade_info_string(cascade_info key)
{
    cs_api_init(NULL);   /* the level in force; a bad $CASCADE_SIMD leaves the reference */
    switch (key) {
    case CASCADE_INFO_CPU_MODEL: return cs_cpu_model();
    case CASCADE_INFO_CPU_FEATURES: return cs_cpu_features();
    case CASCADE_INFO_SIMD: return cs_simd_name(cs_simd_current());
    case CASCADE_INFO_GEMM: return cs_gemm_info();
    case CASCADE_INFO_CPU_BF16: return cs_gemm_bf16_name();
    case CASCADE_INFO_BACKEND: return cs_backend_name();
    case CASCADE_INFO_PLUGIN_DIR: return CS_PLUGIN_DIR;
    case CASCADE_INFO_BUILD: return CS_BUILD_OPTIONS;
    default: return NULL;
    }
}

long long cascade_info_int(cascade_info key)
{
    cs_api_init(NULL);
    switch (key) {
    case CASCADE_INFO_THREADS: return cs_threads_get();
#ifdef _OPENMP
    case CASCADE_INFO_OPENMP: return 1;
    case CASCADE_INFO_MAX_THREADS: return omp_get_max_threads();
    case CASCADE_INFO_PROCESSORS: return omp_get_num_procs();
#else
    case CASCADE_INFO_OPENMP: return 0;
    case CASCADE_INFO_MAX_THREADS: return 1;
    case CASCADE_INFO_PROCESSORS: return 1;
#endif
    case CASCADE_INFO_CUDA_BUILT: return CUDA_BUILT;
    case CASCADE_INFO_DEVICE_PEAK: {
        const cs_backend *b = cs_backend_active();
        return b && b->ops && b->ops->mem_peak ? (long long)b->ops->mem_peak(0) : -1;
    }
    default: return -1;
    }
}

const char *cascade_simd_level(int i, int *usable)
{
    if (usable) *usable = 0;
    if (i < 0 || i >= CS_SIMD_LEVELS) return NULL;
    if (usable) *usable = cs_simd_supported((cs_simd_level)i);
    return cs_simd_name((cs_simd_level)i);
}

/* ---- the CUDA plugin's GPUs ---- */
struct cascade_gpus {
    cs_backend_report r;
};

int cascade_gpus_list(cascade_ctx *ctx, cascade_gpus **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return CASCADE_E_ARG;
    int rc = cs_api_init(ctx);
    if (rc) return rc;
    cascade_gpus *g = calloc(1, sizeof *g);
    if (!g) return cs_api_fail(ctx, cs_oom("the GPU list", sizeof *g));
    if ((rc = cs_backend_describe("cuda", &g->r)) != 0) {
        free(g);
        return cs_api_fail(ctx, rc);
    }
    *out = g;
    return 0;
}

static const cs_device_info *gpu_at(const cascade_gpus *g, int i)
{
    return g && i >= 0 && i < g->r.ndev && i < CS_MAX_LISTED ? &g->r.dev[i] : NULL;
}

const char *cascade_gpus_string(const cascade_gpus *g, int i, cascade_gpu_key key)
{
    if (!g) return NULL;
    const cs_device_info *d = gpu_at(g, i);
    switch (key) {
    case CASCADE_GPUS_PLUGIN: return g->r.path;
    case CASCADE_GPUS_VERSION: return g->r.version;
    case CASCADE_GPUS_REASON: return g->r.ndev ? NULL : g->r.reason;
    case CASCADE_GPU_NAME: return d ? d->name : NULL;
    case CASCADE_GPU_WHY: return d && !d->usable ? d->why : NULL;
    default: return NULL;
    }
}

long long cascade_gpus_int(const cascade_gpus *g, int i, cascade_gpu_key key)
{
    if (!g) return -1;
    const cs_device_info *d = gpu_at(g, i);
    switch (key) {
    case CASCADE_GPUS_ABI: return g->r.abi;
    case CASCADE_GPUS_COUNT: return g->r.ndev;
    case CASCADE_GPUS_LISTED: return g->r.ndev < CS_MAX_LISTED ? g->r.ndev : CS_MAX_LISTED;
    default: break;
    }
    if (!d) return -1;
    switch (key) {
    case CASCADE_GPU_CC_MAJOR: return d->cc_major;
    case CASCADE_GPU_CC_MINOR: return d->cc_minor;
    case CASCADE_GPU_TOTAL_BYTES: return (long long)d->total_bytes;
    case CASCADE_GPU_FREE_BYTES: return (long long)d->free_bytes;
    case CASCADE_GPU_DRIVER: return d->driver_version;
    case CASCADE_GPU_USABLE: return d->usable;
    default: return -1;
    }
}

void cascade_gpus_free(cascade_gpus *g) { free(g); }

_Static_assert(CS_MAX_LISTED == 16, "cascade.h documents CASCADE_GPUS_LISTED as at most 16");

void cascade_profile_report(cascade_log_fn fn, void *user) { cs_dev_prof_lines(fn, user); }
