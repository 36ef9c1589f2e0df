/* cs_grn and cs_modulate run all images in one parallel region (src/ops.c);
 * they must give the bits of the image-by-image form: GRN's sums of squares
 * over fixed blocks of 256 rows added in block order, the norms, the apply;
 * the modulation row by row. Batches of 1 and 3, rows that leave a short
 * last block, odd channel counts, in place and not, 1 to 3 threads. Runs at
 * every SIMD level (tests/levels.sh). */
#include "check.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grn_ref(const float *x, float *y, size_t N, size_t HW, size_t C, const float *g, const float *b)
{
    size_t nb = (HW + 255) / 256;
    float *part = calloc(nb * C, 4), *nx = malloc(C * 4);
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * HW * C;
        memset(part, 0, nb * C * 4);
        for (size_t k = 0; k < nb; k++) {
            size_t r0 = k * 256, r1 = r0 + 256 < HW ? r0 + 256 : HW;
            cs_k.sumsq_cols(xn + r0 * C, r1 - r0, C, part + k * C);
        }
        double mean = 0;
        for (size_t c = 0; c < C; c++) {
            float s = 0;
            for (size_t k = 0; k < nb; k++) s += part[k * C + c];
            nx[c] = sqrtf(s);
            mean += nx[c];
        }
        float m = (float)(mean / (double)C) + 1e-6f;
        for (size_t c = 0; c < C; c++) nx[c] = nx[c] / m;
        cs_k.grn_apply(xn, y + n * HW * C, HW, C, nx, g, b);
    }
    free(part), free(nx);
}

static void one(size_t N, size_t HW, size_t C)
{
    size_t n = N * HW * C;
    float *x = malloc(n * 4), *ref = malloc(n * 4), *y = malloc(n * 4), *g = malloc(C * 4), *b = malloc(C * 4),
          *ab = malloc(N * 3 * C * 4);
    for (size_t i = 0; i < n; i++) x[i] = check_uni(-2, 2);
    for (size_t i = 0; i < C; i++) g[i] = check_uni(-1, 1), b[i] = check_uni(-1, 1);
    for (size_t i = 0; i < N * 3 * C; i++) ab[i] = check_uni(-1, 1);
    for (int t = 1; t <= 3; t++) {
        cs_threads_set(t);
        grn_ref(x, ref, N, HW, C, g, b);
        CHECK(cs_grn(x, y, N, HW, C, g, b) == 0, "%s", cs_last_error());
        CHECK(!memcmp(y, ref, n * 4), "cs_grn N=%zu HW=%zu C=%zu threads=%d: not the bits of image by image", N, HW, C, t);
        memcpy(y, x, n * 4);
        CHECK(cs_grn(y, y, N, HW, C, g, b) == 0, "%s", cs_last_error());
        CHECK(!memcmp(y, ref, n * 4), "cs_grn in place N=%zu HW=%zu C=%zu threads=%d: differs", N, HW, C, t);
        for (size_t k = 0; k < N; k++)   /* a, b: [N, C] rows of 3C */
            cs_k.modulate(x + k * HW * C, ref + k * HW * C, HW, C, ab + k * 3 * C, ab + k * 3 * C + C);
        cs_modulate(x, y, N, HW, C, ab, ab + C, 3 * C);
        CHECK(!memcmp(y, ref, n * 4), "cs_modulate N=%zu HW=%zu C=%zu threads=%d: differs", N, HW, C, t);
    }
    free(x), free(ref), free(y), free(g), free(b), free(ab);
}

int main(void)
{
    if (cs_simd_init()) {
        fprintf(stderr, "test_grn_modulate: %s\n", cs_last_error());
        return 99;
    }
    check_seed64(0x6e11ull);
    printf("level %s\n", cs_simd_name(cs_simd_current()));
    one(1, 7, 5);
    one(3, 600, 37);      /* 3 blocks of sums, the last short */
    one(3, 1030, 129);
    one(2, 96, 6144);     /* Stage C lite's GRN width */
    printf("%s\n", failures ? "FAILED" : "ok");
    return check_exit();
}
