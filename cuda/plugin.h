/* Internals of the CUDA plugin (libcascade-cuda.so), shared by its files. */
#ifndef CS_CUDA_PLUGIN_H
#define CS_CUDA_PLUGIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* probe.cu: 1 if this plugin's fat binary has code the current device can
 * run (SASS for its architecture, or PTX it can compile), else 0 and why. */
int cs_cuda_has_image(char *why, size_t n);

#ifdef __cplusplus
}
#endif

#ifndef __cplusplus
#include "backend.h"

/* sgemm.c: the temporary host-memory product through cuBLAS */
int cs_cuda_sgemm(int transA, int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                  const float *B, size_t ldb, float beta, float *C, size_t ldc);
int cs_cuda_sgemm_init(char *err, size_t n);
void cs_cuda_sgemm_shutdown(void);
#endif

#endif
