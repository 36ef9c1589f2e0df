/* Backward of the elementwise and local ops (grad.h): GELU, SiLU, AdaLN
 * modulation, depthwise convolution, the sinusoidal r-embedding. */
#include "grad.h"

#include "device.h"
#include "error.h"
#include "ops_dev.h"

#include <math.h>

#define NO_DEV(what) \
    do { if (cs_dev) return cs_error(CS_EUNSUP, "%s backward: not available on the device yet", what); } while (0)

/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
void cs_gelu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    ON_DEV_OPT(gelu_backward, (x, dy, dx, n), "GELU backward");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float d = 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * d;
    }
}

/* d/dx [x s(x)] = s (1 + x (1 - s)) */
void cs_silu_backward(const float *x, const float *dy, float *dx, size_t n)
{
    ON_DEV_OPT(silu_backward, (x, dy, dx, n), "SiLU backward");
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
    }
}

void cs_modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *a,
                          size_t ldab, float *da, float *db)
{
    ON_DEV_OPT(modulate_backward, (x, dy, dx, N, HW, C, a, ldab, da, db), "modulation backward");
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * HW * C, *gn = dy + n * HW * C, *an = a + n * ldab;
        /* the per-image sums first: dx may overwrite dy */
        if (da || db) {
#pragma omp parallel for schedule(static) if (HW * C >= PAR_MIN)
            for (size_t c = 0; c < C; c++) {
                double sa = 0, sb = 0;
                for (size_t r = 0; r < HW; r++) {
                    sa += (double)gn[r * C + c] * xn[r * C + c];
                    sb += gn[r * C + c];
                }
                if (da) da[n * ldab + c] = (float)sa;
                if (db) db[n * ldab + c] = (float)sb;
            }
        }
        if (!dx) continue;
        float *dn = dx + n * HW * C;
#pragma omp parallel for schedule(static) if (HW * C >= PAR_MIN)
        for (size_t r = 0; r < HW; r++)
            for (size_t c = 0; c < C; c++) dn[r * C + c] = gn[r * C + c] * (1.0f + an[c]);
    }
}

/* y[h,w,c] = b[c] + sum_ij w[c,i,j] x[h+i-p, w+j-p, c]: each x pixel feeds
 * k*k outputs, so dx is the correlation of dy with the flipped kernel;
 * written as a gather (no races, parallel over rows). */
int cs_dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C,
                       int k, const float *w, float *dw, float *db)
{
    if (k <= 0 || !(k & 1)) return cs_error(CS_EARG, "depthwise backward: kernel size %d is not odd", k);
    ON_DEV_OPT_RC(dwconv_backward, (x, dy, dx, acc, N, H, W, C, k, w, dw, db), "depthwise convolution backward");
    long p = k / 2, Hl = (long)H, Wl = (long)W;
    size_t kk = (size_t)k * (size_t)k;
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C, *gn = dy + n * H * W * C;
        if (dx) {
            float *dn = dx + n * H * W * C;
#pragma omp parallel for schedule(static) if (H * W * C * kk >= PAR_MIN)
            for (long h = 0; h < Hl; h++)
                for (long wi = 0; wi < Wl; wi++)
                    for (size_t c = 0; c < C; c++) {
                        float s = 0;
                        for (long i = 0; i < k; i++) {
                            long oh = h - i + p;   /* the output row that read x[h] through tap i */
                            if (oh < 0 || oh >= Hl) continue;
                            for (long j = 0; j < k; j++) {
                                long ow = wi - j + p;
                                if (ow < 0 || ow >= Wl) continue;
                                s += w[c * kk + (size_t)(i * k + j)] * gn[((size_t)oh * W + (size_t)ow) * C + c];
                            }
                        }
                        float *d = dn + ((size_t)h * W + (size_t)wi) * C + c;
                        *d = acc ? *d + s : s;
                    }
        }
        if (dw || db) {
#pragma omp parallel for schedule(static) if (H * W * C * kk >= PAR_MIN)
            for (size_t c = 0; c < C; c++) {
                double sb = 0;
                for (size_t r = 0; r < H * W; r++) sb += gn[r * C + c];
                if (db) db[c] += (float)sb;
                if (!dw) continue;
                for (long i = 0; i < k; i++)
                    for (long j = 0; j < k; j++) {
                        double s = 0;
                        for (long h = 0; h < Hl; h++) {
                            long ih = h + i - p;
                            if (ih < 0 || ih >= Hl) continue;
                            for (long wi = 0; wi < Wl; wi++) {
                                long iw = wi + j - p;
                                if (iw < 0 || iw >= Wl) continue;
                                s += (double)gn[((size_t)h * W + (size_t)wi) * C + c] * xn[((size_t)ih * W + (size_t)iw) * C + c];
                            }
                        }
                        dw[c * kk + (size_t)(i * k + j)] += (float)s;
                    }
            }
        }
    }
    return 0;
}

/* emb[k] = sin(1e4 r f_k), emb[half+k] = cos(1e4 r f_k), f_k = exp(-k ln(1e4)/(half-1)) */
int cs_r_embedding_backward(const float *r, size_t N, int c_r, const float *demb, float *dr)
{
    NO_DEV("r-embedding");
    int half = c_r / 2;
    if (half < 2) return cs_error(CS_EARG, "r-embedding backward: c_r %d is too small", c_r);
    double e = log(10000.0) / (double)(half - 1);
    for (size_t n = 0; n < N; n++) {
        const float *d = demb + n * (size_t)c_r;
        double s = 0;
        for (int k = 0; k < half; k++) {
            double f = 10000.0 * exp(-e * k), ph = (double)r[n] * f;
            s += f * ((double)d[k] * cos(ph) - (double)d[half + k] * sin(ph));
        }
        dr[n] += (float)s;
    }
    return 0;
}
