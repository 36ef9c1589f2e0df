/* Backward of the normalisations: LayerNorm (rows) and GlobalResponseNorm
 * (grad.h). Sums run in double in a fixed order: the gradients of a norm
 * are differences of nearly equal terms, and double keeps them near the
 * float64 reference without costing much next to the products. */
#include "grad.h"

#include "device.h"
#include "error.h"
#include "ops_dev.h"

#include <math.h>

/* mean and 1/sqrt(var + eps) of one row, as the forward computes them (float) */
static void row_stats(const float *x, size_t C, float eps, float *mean, float *rstd)
{
    float m = 0, v = 0;
    for (size_t c = 0; c < C; c++) m += x[c];
    m /= (float)C;
    for (size_t c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= (float)C;
    *mean = m, *rstd = 1.0f / sqrtf(v + eps);
}

int cs_layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                          const float *w, float *dw, float *db)
{
    if (!dx && !dw && !db) return 0;
    ON_DEV_OPT_RC(layernorm_backward, (x, dy, dx, acc, rows, C, eps, w, dw, db), "LayerNorm backward");
    float *st = cs_alloc(2 * rows * sizeof(float) + 1);
    if (!st) return cs_oom("LayerNorm backward statistics", 2 * rows * sizeof(float));
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *g = dy + r * C;
        float m, rs;
        row_stats(xr, C, eps, &m, &rs);
        st[2 * r] = m, st[2 * r + 1] = rs;
        if (!dx) continue;
        double sg = 0, sgx = 0;
        for (size_t c = 0; c < C; c++) {
            double gc = w ? (double)g[c] * w[c] : g[c];
            sg += gc;
            sgx += gc * ((double)(xr[c] - m) * rs);
        }
        sg /= (double)C, sgx /= (double)C;
        float *d = dx + r * C;
        for (size_t c = 0; c < C; c++) {
            double gc = w ? (double)g[c] * w[c] : g[c], xh = (double)(xr[c] - m) * rs;
            float v = (float)(rs * (gc - sg - xh * sgx));
            d[c] = acc ? d[c] + v : v;
        }
    }
    if (dw || db) {
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
        for (size_t c = 0; c < C; c++) {
            double sw = 0, sb = 0;
            for (size_t r = 0; r < rows; r++) {
                double g = dy[r * C + c];
                sw += g * ((double)(x[r * C + c] - st[2 * r]) * st[2 * r + 1]);
                sb += g;
            }
            if (dw) dw[c] += (float)sw;
            if (db) db[c] += (float)sb;
        }
    }
    cs_free(st);
    return 0;
}

/* Per image n, with a[c] = gamma[c] * sum_hw dy x (the gradient reaching Nx[c])
 * and m = mean_c G + 1e-6:
 *   dG[j] = a[j] / m - sum_c a[c] G[c] / (m^2 C)
 *   dx = dy + gamma Nx dy + dG * x / G      (0 where G = 0, as torch.norm) */
int cs_grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                    float *dgamma, float *dbeta)
{
    ON_DEV_OPT_RC(grn_backward, (x, dy, dx, N, HW, C, gamma, dgamma, dbeta), "GRN backward");
    double *t = cs_alloc(4 * C * sizeof(double) + 1);
    if (!t) return cs_oom("GRN backward", 4 * C * sizeof(double));
    double *G = t, *a = t + C, *nx = t + 2 * C, *dG = t + 3 * C;
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * HW * C, *gn = dy + n * HW * C;
#pragma omp parallel for schedule(static) if (HW * C >= 16384)
        for (size_t c = 0; c < C; c++) {
            double ss = 0, sdx = 0, sd = 0;
            for (size_t r = 0; r < HW; r++) {
                double v = xn[r * C + c], g = gn[r * C + c];
                ss += v * v, sdx += g * v, sd += g;
            }
            G[c] = sqrt(ss), a[c] = sdx, dG[c] = sd;   /* dG holds sum dy until below */
        }
        double m = 0, aG = 0;
        for (size_t c = 0; c < C; c++) m += G[c];
        m = m / (double)C + 1e-6;
        for (size_t c = 0; c < C; c++) {
            nx[c] = G[c] / m;
            if (dgamma) dgamma[c] += (float)(a[c] * nx[c]);
            if (dbeta) dbeta[c] += (float)dG[c];
            a[c] *= gamma[c];
            aG += a[c] * G[c];
        }
        for (size_t c = 0; c < C; c++) dG[c] = G[c] > 0 ? (a[c] / m - aG / (m * m * (double)C)) / G[c] : 0;
        if (!dx) continue;
        float *dn = dx + n * HW * C;
#pragma omp parallel for schedule(static) if (HW * C >= 16384)
        for (size_t r = 0; r < HW; r++)
            for (size_t c = 0; c < C; c++) {
                double g = gn[r * C + c], v = xn[r * C + c];
                dn[r * C + c] = (float)(g + gamma[c] * nx[c] * g + dG[c] * v);
            }
    }
    cs_free(t);
    return 0;
}
