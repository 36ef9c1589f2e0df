/* The CUDA plugin's sgemm (cuBLAS, host memory: a temporary proof) against
 * the CPU cs_sgemm at odd sizes (1, 3, 17, 63, 1025 rows / columns / depth),
 * every transposition, leading dimensions past the width, alpha and beta,
 * by rel_l2. Without a usable GPU it checks that selecting the plugin fails
 * with one line and leaves the CPU active, and skips (77) saying why.
 * Usage: test_cuda_sgemm [PLUGIN] (default cuda/.libs/libcascade-cuda.so) */
#include "backend.h"
#include "error.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t sizes[] = {1, 3, 17, 63, 1025};

static void fill(float *x, size_t n, unsigned s)
{
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

int main(int argc, char **argv)
{
    const char *plugin = argc > 1 ? argv[1] : "cuda/.libs/libcascade-cuda.so";
    if (cs_backend_select(plugin)) {
        const char *e = cs_last_error();
        if (!strstr(e, "not usable here: ") || strchr(e, '\n') || strcmp(cs_backend_name(), "cpu")) {
            printf("FAIL: loading %s: %s\n", plugin, e);
            return 1;
        }
        printf("SKIP: no usable GPU here (%s)\n", e);
        return 77;
    }
    if (strcmp(cs_backend_name(), "cuda")) {
        printf("FAIL: active backend %s\n", cs_backend_name());
        return 1;
    }
    const cs_backend *gpu = cs_backend_active();
    int fails = 0, runs = 0;
    double worst = 0;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++)
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 5; j++) {
                    size_t M = sizes[i], N = sizes[j], K = sizes[(i + j + tA + 2 * tB) % 5];
                    size_t ar = tA ? K : M, ac = tA ? M : K, br = tB ? N : K, bc = tB ? K : N;
                    size_t lda = ac + 3, ldb = bc + 1, ldc = N + 2;
                    float alpha = 0.75f, beta = (i + j) % 2 ? 0.5f : 0.0f;
                    float *A = malloc(ar * lda * 4), *B = malloc(br * ldb * 4), *C0 = malloc(M * ldc * 4),
                          *C1 = malloc(M * ldc * 4), *At = NULL;
                    if (!A || !B || !C0 || !C1) return 99;
                    fill(A, ar * lda, 1 + i), fill(B, br * ldb, 7 + j), fill(C0, M * ldc, 3);
                    memcpy(C1, C0, M * ldc * 4);
                    /* the CPU reference takes A untransposed: transpose it here */
                    const float *Ar = A;
                    size_t ldr = lda;
                    if (tA) {
                        At = malloc(M * K * 4);
                        if (!At) return 99;
                        for (size_t r = 0; r < M; r++)
                            for (size_t k = 0; k < K; k++) At[r * K + k] = A[k * lda + r];
                        Ar = At, ldr = K;
                    }
                    int rc = gpu->sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
                    cs_backend_select("cpu");
                    int rc0 = cs_sgemm(tB, M, N, K, alpha, Ar, ldr, B, ldb, beta, C0, ldc);
                    if (cs_backend_select(plugin)) {
                        printf("FAIL: reloading the plugin: %s\n", cs_last_error());
                        return 1;
                    }
                    gpu = cs_backend_active();
                    double d = 0, r = 0;
                    int pad_ok = 1;
                    for (size_t m = 0; m < M; m++) {
                        for (size_t n = 0; n < N; n++) {
                            double e = (double)C1[m * ldc + n] - C0[m * ldc + n];
                            d += e * e, r += (double)C0[m * ldc + n] * C0[m * ldc + n];
                        }
                        for (size_t n = N; n < ldc; n++) pad_ok &= C1[m * ldc + n] == C0[m * ldc + n];
                    }
                    double rel = sqrt(d / (r > 0 ? r : 1));
                    runs++;
                    if (rel > worst) worst = rel;
                    if (rc || rc0 || !(rel < 1e-5) || !pad_ok) {
                        printf("FAIL: M=%zu N=%zu K=%zu transA=%d transB=%d beta=%g: rc %d/%d, rel_l2 %.3g%s\n", M, N,
                               K, tA, tB, beta, rc, rc0, rel, pad_ok ? "" : ", wrote past N");
                        fails++;
                    }
                    free(A), free(B), free(C0), free(C1), free(At);
                }
    cs_backend_release();
    printf("%d products, worst rel_l2 %.3g (limit 1e-5): %s\n", runs, worst, fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
