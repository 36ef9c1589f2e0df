/* A fake backend plugin for tests (like hwloc's fake component): a naive
 * float64-accumulating sgemm that counts its calls. FAKE_ABI overrides the
 * ABI number to test the loader's refusal. */
#include "backend.h"

#include <stdlib.h>

#ifndef FAKE_ABI
#define FAKE_ABI CS_BACKEND_ABI
#endif

unsigned long fake_backend_calls;

static int init(char *err, size_t n)
{
    (void)err, (void)n;
    return getenv("FAKE_BACKEND_FAIL") ? -1 : 0;
}

static int sgemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                 const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    fake_backend_calls++;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = (float)(alpha * s + (beta != 0.0f ? (double)beta * C[i * ldc + j] : 0.0));
        }
    return 0;
}

static const cs_backend fake = {FAKE_ABI, "fake", init, NULL, sgemm};

const cs_backend *cascade_backend_entry(void) { return &fake; }
