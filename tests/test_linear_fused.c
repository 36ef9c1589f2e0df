/* cs_linear's epilogue (src/ops.c): the bias, and the GELU of
 * cs_linear_gelu, are applied to each block of y as the products finish
 * it. They must give the bits of the separate passes: cs_linear without a
 * bias, then y + b element by element, then cs_gelu over the whole output.
 * Odd shapes (N not a multiple of 16 or of a task's columns), ldx/ldy wider
 * than the rows, accumulate (bias only), NaN/Inf activations, 1 to 3
 * threads; weights F32 (fp32 panels), BF16 (bf16 panels), F16 (converted
 * per call), and bf16 precision with the native kernel where the CPU has
 * one. Runs at every SIMD level (tests/levels.sh). */
#include "check.h"
#include "backend.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "fp16.h"
#include "kernels.h"
#include "ops.h"
#include "tensor.h"
#include "wpack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void one(size_t M, size_t N, size_t K, cs_dtype dt, int prec)
{
    size_t ldx = K + 3, ldy = N + 5, ny = M * ldy;
    float *x = malloc(M * ldx * 4), *y0 = malloc(ny * 4), *ref = malloc(ny * 4), *y = malloc(ny * 4),
          *bias = malloc(N * 4);
    void *w = malloc(N * K * 4);
    for (size_t i = 0; i < M * ldx; i++) x[i] = check_uni(-2, 2);
    if (M > 2) x[ldx + 1] = NAN, x[2 * ldx] = INFINITY;
    for (size_t i = 0; i < N * K; i++) {
        float f = check_uni(-0.5f, 0.5f);
        if (dt == CS_F32) ((float *)w)[i] = f;
        else ((uint16_t *)w)[i] = dt == CS_BF16 ? cs_f32_to_bf16(f) : cs_f32_to_f16(f);
    }
    for (size_t i = 0; i < N; i++) bias[i] = check_uni(-1, 1);
    for (size_t i = 0; i < ny; i++) y0[i] = check_uni(-1, 1);
    cs_tensor W = {.dtype = dt, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w"};
    cs_tensor B = {.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)N}, .data = bias, .name = "b"};
    CHECK(cs_cpu_precision_set(prec) == 0, "%s", cs_last_error());
    for (int t = 1; t <= 3; t++) {
        cs_threads_set(t);
        for (int mode = 0; mode < 3; mode++) {   /* 0: bias, 1: bias + accumulate, 2: bias + GELU */
            memcpy(ref, y0, ny * 4);
            memcpy(y, y0, ny * 4);
            int rc = cs_linear(x, M, K, ldx, &W, NULL, ref, ldy, mode == 1);
            for (size_t r = 0; r < M; r++)
                for (size_t j = 0; j < N; j++) ref[r * ldy + j] += bias[j];
            if (mode == 2)
                for (size_t r = 0; r < M; r++) cs_gelu(ref + r * ldy, ref + r * ldy, N);
            if (!rc) rc = mode == 2 ? cs_linear_gelu(x, M, K, ldx, &W, &B, y, ldy) : cs_linear(x, M, K, ldx, &W, &B, y, ldy, mode == 1);
            CHECK(rc == 0, "%s", cs_last_error());
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < ny; i++)
                if (memcmp(y + i, ref + i, 4) && !bad++) first = i;
            CHECK(!bad, "%s %zux%zux%zu %s weight, %s, threads %d: %zu of %zu differ from the separate passes "
                  "(first %zu: %.9g vs %.9g)", mode == 2 ? "cs_linear_gelu" : mode ? "cs_linear accumulate" : "cs_linear",
                  M, N, K, cs_dtype_name(dt), prec == CS_PREC_BF16 ? "bf16" : "fp32", t, bad, ny, first,
                  bad ? y[first] : 0, bad ? ref[first] : 0);
        }
    }
    cs_param_forget(w, N * K * 4);
    cs_cpu_precision_set(CS_PREC_FP32);
    free(x), free(y0), free(ref), free(y), free(bias), free(w);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "test_linear_fused: %s\n", cs_last_error());
        return 99;
    }
    check_seed64(0xf05edull);
    int bf16_ok = cs_cpu_precision_set(CS_PREC_BF16) == 0;
    cs_cpu_precision_set(CS_PREC_FP32);
    printf("level %s, bf16 precision %s\n", cs_simd_name(cs_simd_current()), bf16_ok ? "too" : "not available");
    static const size_t shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {37, 401, 33}, {200, 785, 64}};
    static const cs_dtype dts[] = {CS_F32, CS_BF16, CS_F16};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int p = 0; p <= bf16_ok; p++)
            for (size_t d = 0; d < 3; d++)
                one(shapes[i][0], shapes[i][1], shapes[i][2], dts[d], p ? CS_PREC_BF16 : CS_PREC_FP32);
    cs_wpack_clear();
    printf("%s\n", failures ? "FAILED" : "ok");
    return check_exit();
}
