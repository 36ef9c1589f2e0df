/* Low-variance inputs, where LayerNorm's eps dominates: rows whose variance
 * is ~1e-7, so eps = 1e-6 (every LayerNorm2d of Stage B/C) and a wrong 1e-5
 * give outputs a factor ~3 apart, while with O(1) inputs (the golden cases)
 * the two differ by ~5e-6 relative and pass any sane tolerance.
 *
 * Checked against double-precision references computed here: cs_layernorm at
 * several widths (vector bodies and tails), and a ResBlock and a
 * FeedForwardBlock forward (depthwise 3x3 -> LN -> Linear -> GELU(erf) -> GRN
 * -> Linear, + residual), at the dispatched level (CASCADE_SIMD).
 *
 * Tolerance rel_l2 <= 1e-4: the inputs are exact floats and the normalised
 * values are O(1), so float32 noise is ~1e-6 (measured below 1e-6); a wrong
 * eps changes the result by O(1). */
#include "blocks.h"
#include "check.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-6

static void fill(float *v, size_t n, double s)
{
    for (size_t i = 0; i < n; i++) v[i] = (float)(check_urand_d() * s);
}

static void compare(const char *what, const double *ref, const float *y, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) d2 += (y[i] - ref[i]) * (y[i] - ref[i]), r2 += ref[i] * ref[i];
    double rel = sqrt(d2 / r2);
    int ok = rel <= 1e-4;   /* also false for NaN */
    printf("%s rel_l2=%.3g%s\n", what, rel, ok ? "" : " FAIL");
    failures += !ok;
}

/* LayerNorm over the last dim, biased variance, in double */
static void ln_ref(const float *x, double *y, size_t rows, size_t C)
{
    for (size_t r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (size_t c = 0; c < C; c++) m += x[r * C + c];
        m /= (double)C;
        for (size_t c = 0; c < C; c++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
        v /= (double)C;
        for (size_t c = 0; c < C; c++) y[r * C + c] = (x[r * C + c] - m) / sqrt(v + EPS);
    }
}

static cs_tensor tens(float *d, int ndim, const int64_t *shape)
{
    cs_tensor t = {CS_F32, ndim, {0}, d, NULL};
    memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    return t;
}

enum { N = 2, H = 5, W = 7, C = 24, HW = H * W, ROWS = N * HW };

/* The block's MLP in double on LN'd rows h [ROWS, C], plus the residual x. */
static void mlp_ref(const double *h, const float *x, const float *w1, const float *b1, const float *g,
                    const float *be, const float *w2, const float *b2, double *y)
{
    static double u[ROWS * 4 * C], gx[N][4 * C];
    for (size_t r = 0; r < ROWS; r++)
        for (int o = 0; o < 4 * C; o++) {
            double s = b1[o];
            for (int i = 0; i < C; i++) s += (double)w1[o * C + i] * h[r * C + i];
            u[r * 4 * C + o] = 0.5 * s * (1.0 + erf(s / sqrt(2.0)));
        }
    for (int n = 0; n < N; n++) {   /* GRN: L2 over the pixels per channel */
        double mean = 0;
        for (int o = 0; o < 4 * C; o++) {
            double s = 0;
            for (int p = 0; p < HW; p++) s += u[(n * HW + p) * 4 * C + o] * u[(n * HW + p) * 4 * C + o];
            gx[n][o] = sqrt(s);
            mean += gx[n][o] / (4 * C);
        }
        for (int p = 0; p < HW; p++)
            for (int o = 0; o < 4 * C; o++) {
                double *v = &u[(n * HW + p) * 4 * C + o];
                *v = g[o] * (*v * gx[n][o] / (mean + 1e-6)) + be[o] + *v;
            }
    }
    for (size_t r = 0; r < ROWS; r++)
        for (int o = 0; o < C; o++) {
            double s = b2[o];
            for (int i = 0; i < 4 * C; i++) s += (double)w2[o * 4 * C + i] * u[r * 4 * C + i];
            y[r * C + o] = s + x[r * C + o];
        }
}

static void test_blocks(void)
{
    static float x[ROWS * C], y[ROWS * C], dw[C * 9], dwb[C], w1[4 * C * C], b1[4 * C], g[4 * C], be[4 * C],
        w2[C * 4 * C], b2[C], t[ROWS * C];
    static double h[ROWS * C], ref[ROWS * C];
    fill(x, ROWS * C, 3e-4);   /* variance ~3e-8 per row: eps dominates */
    fill(dw, C * 9, 1.0 / 3.0);
    fill(w1, 4 * C * C, 1.0 / sqrt(C)), fill(b1, 4 * C, 0.1), fill(g, 4 * C, 0.5), fill(be, 4 * C, 0.5);
    fill(w2, C * 4 * C, 1.0 / sqrt(4 * C)), fill(b2, C, 0.1);
    cs_resblock b;
    memset(&b, 0, sizeof b);
    b.c = C, b.has_dw = 1, b.k = 3;
    b.dw_w = tens(dw, 4, (int64_t[]){C, 1, 3, 3}), b.dw_b = tens(dwb, 1, (int64_t[]){C});   /* zero bias */
    b.fc1_w = tens(w1, 2, (int64_t[]){4 * C, C}), b.fc1_b = tens(b1, 1, (int64_t[]){4 * C});
    b.gamma = tens(g, 4, (int64_t[]){1, 1, 1, 4 * C}), b.beta = tens(be, 4, (int64_t[]){1, 1, 1, 4 * C});
    b.fc2_w = tens(w2, 2, (int64_t[]){C, 4 * C}), b.fc2_b = tens(b2, 1, (int64_t[]){C});
    cs_ws ws = {0};

    /* ResBlock: depthwise 3x3 (pad 1) in float (exact enough: same op both
     * sides, the difference under test is the norm), then LN and MLP */
    for (int n = 0; n < N; n++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++)
                for (int c = 0; c < C; c++) {
                    double s = dwb[c];
                    for (int a = 0; a < 3; a++)
                        for (int e = 0; e < 3; e++) {
                            int ii = i + a - 1, jj = j + e - 1;
                            if (ii >= 0 && ii < H && jj >= 0 && jj < W)
                                s += (double)dw[c * 9 + a * 3 + e] * x[((n * H + ii) * W + jj) * C + c];
                        }
                    t[((n * H + i) * W + j) * C + c] = (float)s;
                }
    ln_ref(t, h, ROWS, C);
    mlp_ref(h, x, w1, b1, g, be, w2, b2, ref);
    memcpy(y, x, sizeof y);
    if (cs_resblock_forward(&b, y, N, H, W, NULL, &ws)) {
        printf("ResBlock forward failed: %s\n", cs_last_error());
        failures++;
    } else {
        compare("ResBlock, LN input variance ~1e-8", ref, y, ROWS * C);
    }

    /* FeedForwardBlock: LN straight on x */
    ln_ref(x, h, ROWS, C);
    mlp_ref(h, x, w1, b1, g, be, w2, b2, ref);
    memcpy(y, x, sizeof y);
    b.has_dw = 0;
    if (cs_ffblock_forward(&b, y, N, HW, &ws)) {
        printf("FeedForwardBlock forward failed: %s\n", cs_last_error());
        failures++;
    } else {
        compare("FeedForwardBlock, row variance ~3e-8", ref, y, ROWS * C);
    }
    cs_ws_free(&ws);
}

int main(void)
{
    check_seed(0x2545F4914F6CDD1Dull);
    if (cs_simd_init()) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 99;
    }
    static const size_t widths[] = {8, 15, 32, 64, 96, 257};
    for (size_t k = 0; k < sizeof widths / sizeof *widths; k++) {
        size_t C2 = widths[k], rows = 37, n = rows * C2;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        double *ref = malloc(n * sizeof *ref);
        if (!x || !y || !ref) return 99;
        for (size_t r = 0; r < rows; r++) {   /* offset mean, std ~3e-4 */
            double m = check_urand_d() * 0.01;
            for (size_t c = 0; c < C2; c++) x[r * C2 + c] = (float)(m + check_urand_d() * 5e-4);
        }
        ln_ref(x, ref, rows, C2);
        cs_layernorm(x, y, rows, C2, 1e-6f, NULL, NULL);
        char what[64];
        snprintf(what, sizeof what, "LayerNorm C=%zu, row variance ~8e-8", C2);
        compare(what, ref, y, n);
        free(x), free(y), free(ref);
    }
    test_blocks();
    return check_exit();
}
