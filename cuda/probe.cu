/* A kernel that does nothing, kept to ask the runtime whether this fat
 * binary holds code for the current GPU: cudaFuncGetAttributes fails with
 * "no kernel image" on an architecture we built neither SASS nor usable
 * PTX for (e.g. sm_70 with CUDA 13, which dropped Volta). */
#include "plugin.h"

#include <cuda_runtime.h>
#include <stdio.h>

static __global__ void probe_kernel(int *p)
{
    if (p) *p = 1;
}

extern "C" int cs_cuda_has_image(char *why, size_t n)
{
    cudaFuncAttributes a;
    cudaError_t e = cudaFuncGetAttributes(&a, probe_kernel);
    if (e == cudaSuccess) return 1;
    (void)cudaGetLastError();   /* not sticky, but leave none behind */
    snprintf(why, n, "no kernel image for this GPU in the plugin (built for %s): %s", CS_CUDA_ARCHS,
             cudaGetErrorString(e));
    return 0;
}
