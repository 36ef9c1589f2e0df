/* cs_linear in fp32 precision on BF16 weights: read from their bf16 panels
 * (wpack.c, packed once) by the kernel table's gemm_f32_bf16w, it must give
 * the bits of the per-call float32 conversion (cs_linear_bf16_panels(0)):
 * odd shapes, 1 and 2 threads, accumulate, bias, ldx/ldy, a row view of a
 * packed weight, NaN/Inf activations, a weight forgotten and changed. And
 * the panels are really used (the cache grows by 2 bytes a weight, once),
 * but not for F16 weights (bf16 panels would round them): those keep the
 * bits of the same values given as an F32 weight. Runs at every SIMD level
 * (tests/levels.sh). */
#include "check.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "tensor.h"
#include "wpack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* y by both paths (y_new, y_old), same inputs, same starting y */
static int both(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y_new,
                float *y_old, const float *y0, size_t ny, size_t ldy, int acc)
{
    memcpy(y_new, y0, ny * 4);
    memcpy(y_old, y0, ny * 4);
    cs_linear_bf16_panels(0);
    int rc = cs_linear(x, M, K, ldx, W, b, y_old, ldy, acc);
    cs_linear_bf16_panels(1);
    if (!rc) rc = cs_linear(x, M, K, ldx, W, b, y_new, ldy, acc);
    return rc;
}

static void test_shapes(void)
{
    static const size_t Ms[] = {1, 3, 17, 72, 201};
    static const size_t Ns[] = {1, 3, 17, 48, 401};
    static const size_t Ks[] = {1, 2, 17, 63, 256, 301};
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                size_t M = Ms[mi], N = Ns[ni], K = Ks[ki], ldx = K + 3, ldy = N + 2, ny = M * ldy;
                float *x = malloc(M * ldx * 4), *y0 = malloc(ny * 4), *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
                uint16_t *w = malloc(N * K * 2), *bias = malloc(N * 2);
                for (size_t i = 0; i < M * ldx; i++) x[i] = check_uni(-2, 2);
                if (M > 2) x[ldx + 1] = NAN, x[2 * ldx] = INFINITY;
                for (size_t i = 0; i < N * K; i++) w[i] = cs_f32_to_bf16(check_uni(-0.5f, 0.5f));
                for (size_t i = 0; i < N; i++) bias[i] = cs_f32_to_bf16(check_uni(-1, 1));
                for (size_t i = 0; i < ny; i++) y0[i] = check_uni(-1, 1);
                cs_tensor W = {.dtype = CS_BF16, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w"};
                cs_tensor B = {.dtype = CS_BF16, .ndim = 1, .shape = {(int64_t)N}, .data = bias, .name = "b"};
                for (int t = 1; t <= 2; t++)
                    for (int acc = 0; acc < 2; acc++) {
                        cs_threads_set(t);
                        int rc = both(x, M, K, ldx, &W, acc ? NULL : &B, y1, y2, y0, ny, ldy, acc);
                        CHECK(rc == 0, "cs_linear %zux%zux%zu: %s", M, N, K, cs_last_error());
                        CHECK(!memcmp(y1, y2, ny * 4), "cs_linear BF16 %zux%zux%zu threads=%d acc=%d: panels differ from "
                              "the float32 conversion", M, N, K, t, acc);
                    }
                cs_param_forget(w, N * K * 2);
                free(x), free(y0), free(y1), free(y2), free(w), free(bias);
            }
}

static void test_cache(void)
{
    const size_t M = 40, N = 96, K = 75;
    float *x = malloc(M * K * 4), *y0 = calloc(M * N, 4), *y1 = malloc(M * N * 4), *y2 = malloc(M * N * 4);
    uint16_t *w = malloc(N * K * 2);
    for (size_t i = 0; i < M * K; i++) x[i] = check_uni(-2, 2);
    for (size_t i = 0; i < N * K; i++) w[i] = cs_f32_to_bf16(check_uni(-0.5f, 0.5f));
    cs_threads_set(2);
    cs_wpack_clear();
    cs_tensor W = {.dtype = CS_BF16, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w"};
    size_t cnt = 0;
    CHECK(both(x, M, K, 0, &W, NULL, y1, y2, y0, M * N, 0, 0) == 0, "%s", cs_last_error());
    size_t bytes = cs_wpack_bytes(&cnt), want = N * (K + 1) / 2 * 4;   /* N multiple of 16 */
    CHECK(cnt == 1 && bytes == want, "BF16 weight in fp32: %zu packed entries of %zu bytes, want 1 of %zu", cnt, bytes, want);
    CHECK(!memcmp(y1, y2, M * N * 4), "cache: panels differ from the float32 conversion");
    /* a view of rows 32..95 uses the entry's panels, no second copy */
    cs_tensor V = {.dtype = CS_BF16, .ndim = 2, .shape = {64, (int64_t)K}, .data = w + 32 * K, .name = "view"};
    CHECK(both(x, M, K, 0, &V, NULL, y1, y2, y0, M * 64, 0, 0) == 0, "%s", cs_last_error());
    CHECK(!memcmp(y1, y2, M * 64 * 4), "view: panels differ from the float32 conversion");
    CHECK(cs_wpack_bytes(&cnt) == bytes && cnt == 1, "a view or a second call packed again (%zu entries)", cnt);
    /* changed weights: forgotten, repacked */
    for (size_t i = 0; i < N * K; i++) w[i] = cs_f32_to_bf16(check_uni(-0.5f, 0.5f));
    cs_param_forget(w, N * K * 2);
    CHECK(both(x, M, K, 0, &W, NULL, y1, y2, y0, M * N, 0, 0) == 0, "%s", cs_last_error());
    CHECK(!memcmp(y1, y2, M * N * 4), "changed weight: stale panels");
    cs_wpack_clear();
    /* F16: not through bf16 panels; the bits of the same values as F32 */
    float *wf = malloc(N * K * 4);
    for (size_t i = 0; i < N * K; i++) {
        w[i] = cs_f32_to_f16(check_uni(-0.5f, 0.5f));
        wf[i] = cs_f16_to_f32(w[i]);
    }
    cs_tensor H = {.dtype = CS_F16, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w16"};
    cs_tensor F = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = wf, .name = "w32"};
    CHECK(cs_linear(x, M, K, 0, &H, NULL, y1, 0, 0) == 0 && cs_linear(x, M, K, 0, &F, NULL, y2, 0, 0) == 0, "%s",
          cs_last_error());
    CHECK(!memcmp(y1, y2, M * N * 4), "F16 weight: not the bits of its exact float32 values");
    CHECK(cs_wpack_bytes(&cnt) == 0 && cnt == 0, "F16/F32 weights in fp32 were packed (%zu entries)", cnt);
    free(x), free(y0), free(y1), free(y2), free(w), free(wf);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "test_linear_bf16w: %s\n", cs_last_error());
        return 99;
    }
    check_seed64(0x5eed5eedull);
    printf("level %s\n", cs_simd_name(cs_simd_current()));
    test_shapes();
    test_cache();
    cs_wpack_clear();
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
