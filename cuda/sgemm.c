/* TEMPORARY: cs_backend.sgemm through cuBLAS on host memory, a correctness
 * proof of the plugin's build and loading only. Every product copies A, B
 * (and C) across PCIe and back, so it is slower than the CPU for the
 * networks' products; the device-resident op set of issue 15 replaces it.
 *
 * Row-major trick: a row-major C[M,N] is the column-major C^T[N,M], and
 * C^T = op(B)^T op(A)^T, so cuBLAS computes it with the operands swapped
 * and the same transposition flags. */
#include "plugin.h"

#include "error.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <stdio.h>

static cublasHandle_t blas;

int cs_cuda_sgemm_init(char *err, size_t n)
{
    cublasStatus_t s = cublasCreate(&blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, n, "cuBLAS: cannot start (%s)", cublasGetStatusString(s));
        blas = NULL;
        return CS_EUNSUP;
    }
    /* plain fp32: no TF32 unless asked, so results compare with the CPU */
    cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH);
    return 0;
}

void cs_cuda_sgemm_shutdown(void)
{
    if (blas) cublasDestroy(blas);
    blas = NULL;
}

/* rows x cols row-major with leading dimension ld, host <-> dense device */
static int up(float *d, const float *h, size_t rows, size_t cols, size_t ld)
{
    return cudaMemcpy2D(d, cols * 4, h, ld * 4, cols * 4, rows, cudaMemcpyHostToDevice) != cudaSuccess;
}

int cs_cuda_sgemm(int transA, int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                  const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    /* declined (the CPU computes it): no handle, sizes past cuBLAS's int */
    if (!blas || !K || M > INT_MAX || N > INT_MAX || K > INT_MAX) return CS_EUNSUP;
    size_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
    float *dA = NULL, *dB = NULL, *dC = NULL;
    int rc = CS_EUNSUP;
    if (cudaMalloc((void **)&dA, ar * ac * 4) || cudaMalloc((void **)&dB, br * bc * 4) ||
        cudaMalloc((void **)&dC, M * N * 4))
        goto out;
    if (up(dA, A, ar, ac, lda) || up(dB, B, br, bc, ldb) || (beta != 0.0f && up(dC, C, M, N, ldc))) goto out;
    if (cublasSgemm(blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                    (int)K, &alpha, dB, (int)bc, dA, (int)ac, &beta, dC, (int)N) != CUBLAS_STATUS_SUCCESS)
        goto out;
    if (cudaMemcpy2D(C, ldc * 4, dC, N * 4, N * 4, M, cudaMemcpyDeviceToHost) != cudaSuccess) goto out;
    rc = 0;
out:
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
    (void)cudaGetLastError();
    return rc;
}
