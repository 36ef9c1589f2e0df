/* The convolutions of src/ops.h: depthwise 3x3, general (im2col + GEMM)
 * and transposed. */
#include "ops.h"

#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "ops_dev.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- convolutions ---- */

int cs_dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                 const cs_tensor *bias, int replicate)
{
    if (cs_tensor_numel(w) != (int64_t)C * 9)
        return cs_error(CS_EMODEL, "%s: expected a [%zu,1,3,3] depthwise weight", w->name ? w->name : "dwconv", C);
    ON_DEV_RC(dwconv3x3(x, y, N, H, W, C, w, bias, replicate), "a depthwise convolution");
    const float *wf = cs_weight_f32(w, 2);
    const float *bf = bias ? cs_weight_f32(bias, 3) : NULL;
    if (!wf || (bias && !bf)) return CS_ENOMEM;
    size_t rb = W * C >= CHUNK ? 1 : CHUNK / (W * C);
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C;
        float *yn = y + n * H * W * C;
#pragma omp parallel for schedule(static)
        for (size_t h = 0; h < H; h += rb)
            cs_k.dwconv3x3(xn, yn, H, W, C, wf, bf, replicate, h, h + rb < H ? h + rb : H);
    }
    return 0;
}

/* im2col of output pixels [p0, p1) of one image for group g: columns in the
 * weight's (ci, i, j) order. */
static void im2col(const float *x, size_t H, size_t W, size_t Cin, size_t cg, size_t g, int k, int s, int p,
                   size_t Wo, size_t p0, size_t p1, float *col)
{
    size_t K = cg * (size_t)k * (size_t)k;
#pragma omp parallel for schedule(static)
    for (size_t q = p0; q < p1; q++) {
        long oh = (long)(q / Wo), ow = (long)(q % Wo);
        float *cr = col + (q - p0) * K;
        for (int i = 0; i < k; i++) {
            long hh = oh * s - p + i;
            for (int j = 0; j < k; j++) {
                long ww = ow * s - p + j;
                int in = hh >= 0 && hh < (long)H && ww >= 0 && ww < (long)W;
                const float *src = in ? x + ((size_t)hh * W + (size_t)ww) * Cin + g * cg : NULL;
                for (size_t ci = 0; ci < cg; ci++) cr[ci * (size_t)(k * k) + (size_t)(i * k + j)] = in ? src[ci] : 0.0f;
            }
        }
    }
}

int cs_conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w, const cs_tensor *bias,
              int stride, int pad, int groups, float *y, size_t *Ho_out, size_t *Wo_out)
{
    const char *nm = w->name ? w->name : "conv2d";
    if (w->ndim != 4 || w->shape[2] != w->shape[3] || groups < 1 || Cin % (size_t)groups ||
        (size_t)w->shape[1] * (size_t)groups != Cin || w->shape[0] % groups)
        return cs_error(CS_EMODEL, "%s: weight shape does not fit %zu input channels, %d groups", nm, Cin, groups);
    int k = (int)w->shape[2];
    size_t Cout = (size_t)w->shape[0], cg = Cin / (size_t)groups, og = Cout / (size_t)groups;
    if ((long)H + 2 * pad < k || (long)W + 2 * pad < k) return cs_error(CS_EARG, "%s: input %zux%zu smaller than kernel", nm, H, W);
    size_t Ho = (H + 2 * (size_t)pad - (size_t)k) / (size_t)stride + 1, Wo = (W + 2 * (size_t)pad - (size_t)k) / (size_t)stride + 1;
    if (Ho_out) *Ho_out = Ho;
    if (Wo_out) *Wo_out = Wo;
    if (k == 1 && stride == 1 && pad == 0 && groups == 1) return cs_linear(x, N * H * W, Cin, 0, w, bias, y, 0, 0);
    ON_DEV_RC(conv2d(x, N, H, W, Cin, w, bias, stride, pad, groups, y, Ho, Wo), "a convolution");
    const float *bf = bias ? cs_weight_f32(bias, 1) : NULL;
    if (bias && !bf) return CS_ENOMEM;
    if (groups == (int)Cin && og == 1 && k == 3 && stride == 1 && pad == 1)
        return cs_dwconv3x3(x, y, N, H, W, Cin, w, bias, 0);
    size_t K = cg * (size_t)(k * k), P = Ho * Wo;
    size_t blk = P < 4096 ? P : 4096;
    if (groups == 1 && !cs_lowrank_on) {
        /* the weight as a Linear's [Cout, Cin k k] over im2col's columns: its
         * products are cs_linear's (the weight packed once, bf16 math at bf16
         * precision; at fp32 the bits of the float32 product below) */
        cs_tensor w2 = {w->dtype, 2, {(int64_t)Cout, (int64_t)K}, w->data, w->name};
        float *col = cs_alloc(blk * K * sizeof(float));
        if (!col) return cs_error(CS_ENOMEM, "%s: out of memory for im2col", nm);
        int rc = 0;
        for (size_t n = 0; n < N && !rc; n++)
            for (size_t p0 = 0; p0 < P && !rc; p0 += blk) {
                size_t p1 = p0 + blk < P ? p0 + blk : P;
                im2col(x + n * H * W * Cin, H, W, Cin, Cin, 0, k, stride, pad, Wo, p0, p1, col);
                rc = cs_linear(col, p1 - p0, K, 0, &w2, bias, y + (n * P + p0) * Cout, Cout, 0);
            }
        cs_free(col);
        return rc;
    }
    const float *wf = cs_weight_f32(w, 0);
    if (!wf) return CS_ENOMEM;
    if (groups > 1 && og == 1 && cg == 1) {   /* depthwise, any k/stride: direct */
        for (size_t n = 0; n < N; n++)
#pragma omp parallel for schedule(static)
            for (size_t q = 0; q < P; q++) {
                long oh = (long)(q / Wo), ow = (long)(q % Wo);
                float *yr = y + (n * P + q) * Cout;
                for (size_t c = 0; c < Cout; c++) yr[c] = bf ? bf[c] : 0.0f;
                for (int i = 0; i < k; i++) {
                    long hh = oh * stride - pad + i;
                    if (hh < 0 || hh >= (long)H) continue;
                    for (int j = 0; j < k; j++) {
                        long ww = ow * stride - pad + j;
                        if (ww < 0 || ww >= (long)W) continue;
                        const float *xr = x + ((n * H + (size_t)hh) * W + (size_t)ww) * Cin;
                        for (size_t c = 0; c < Cout; c++) yr[c] += wf[c * (size_t)(k * k) + (size_t)(i * k + j)] * xr[c];
                    }
                }
            }
        return 0;
    }
    float *col = cs_alloc(blk * K * sizeof(float));
    if (!col) return cs_error(CS_ENOMEM, "%s: out of memory for im2col", nm);
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * Cin;
        float *yn = y + n * P * Cout;
        for (size_t p0 = 0; p0 < P; p0 += blk) {
            size_t p1 = p0 + blk < P ? p0 + blk : P;
            for (size_t g = 0; g < (size_t)groups; g++) {
                im2col(xn, H, W, Cin, cg, g, k, stride, pad, Wo, p0, p1, col);
                int rc = cs_sgemm(1, p1 - p0, og, K, 1.0f, col, K, wf + g * og * K, K, 0.0f, yn + p0 * Cout + g * og,
                                  Cout);
                if (rc) {
                    cs_free(col);
                    return rc;
                }
            }
        }
        if (bf) cs_ops_bias_rows(yn, P, Cout, Cout, bf);
    }
    cs_free(col);
    return 0;
}

int cs_conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                        const cs_tensor *bias, int stride, int pad, float *y, size_t *Ho_out, size_t *Wo_out)
{
    const char *nm = w->name ? w->name : "conv_transpose2d";
    if (w->ndim != 4 || (size_t)w->shape[0] != Cin || w->shape[2] != w->shape[3])
        return cs_error(CS_EMODEL, "%s: expected a [%zu, Cout, k, k] weight", nm, Cin);
    size_t Cout = (size_t)w->shape[1], k = (size_t)w->shape[2], kk = k * k, s = (size_t)stride, p = (size_t)pad;
    if ((H - 1) * s + k < 2 * p + 1 || (W - 1) * s + k < 2 * p + 1) return cs_error(CS_EARG, "%s: output would be empty", nm);
    size_t Ho = (H - 1) * s + k - 2 * p, Wo = (W - 1) * s + k - 2 * p;
    if (Ho_out) *Ho_out = Ho;
    if (Wo_out) *Wo_out = Wo;
    ON_DEV_RC(conv_transpose2d(x, N, H, W, Cin, w, bias, stride, pad, y, Ho, Wo), "a transposed convolution");
    const float *bf = bias ? cs_weight_f32(bias, 1) : NULL;
    if (bias && !bf) return CS_ENOMEM;
    /* the product with the weight as it lies, [Cin, Cout k k] (packed once):
     * a column buffer row holds, per output channel o, its k*k taps */
    cs_tensor w2 = {w->dtype, 2, {(int64_t)Cin, (int64_t)(Cout * kk)}, w->data, w->name};
    size_t rows = H < 16 ? H : 16;   /* input rows per GEMM block, bounds the column buffer */
    float *col = cs_alloc(rows * W * kk * Cout * sizeof(float));
    if (!col)
        return cs_error(CS_ENOMEM, "out of memory: %s: %.1f MiB of column buffer", nm,
                        (double)(rows * W * kk * Cout * sizeof(float)) / 1048576.0);
    for (size_t n = 0; n < N; n++) {
        float *yn = y + n * Ho * Wo * Cout;
        if (bf) {
#pragma omp parallel for schedule(static)
            for (size_t r = 0; r < Ho * Wo; r++) memcpy(yn + r * Cout, bf, Cout * sizeof(float));
        } else memset(yn, 0, Ho * Wo * Cout * sizeof(float));
        for (size_t h0 = 0; h0 < H; h0 += rows) {
            size_t h1 = h0 + rows < H ? h0 + rows : H;
            int rc = cs_matmul_kn(x + (n * H + h0) * W * Cin, (h1 - h0) * W, Cin, &w2, col, kk * Cout);
            if (rc) {
                cs_free(col);
                return rc;
            }
            /* scatter: each output row gathers from the input rows of this block that reach it, in
             * ascending input row (descending i): every output then sums its terms in one order
             * however the rows are blocked, so a tiled Stage A decode equals the untiled one */
            long lo = (long)(h0 * s) - (long)p, hi = (long)((h1 - 1) * s + k) - (long)p;
            if (lo < 0) lo = 0;
            if (hi > (long)Ho) hi = (long)Ho;
#pragma omp parallel for schedule(static)
            for (long oh = lo; oh < hi; oh++)
                for (size_t i = k; i-- > 0;) {
                    long t = oh + (long)p - (long)i;
                    if (t < 0 || t % (long)s) continue;
                    size_t h = (size_t)t / s;
                    if (h < h0 || h >= h1) continue;
                    for (size_t wi = 0; wi < W; wi++)
                        for (size_t j = 0; j < k; j++) {
                            long ow = (long)(wi * s + j) - (long)p;
                            if (ow < 0 || ow >= (long)Wo) continue;
                            const float *src = col + ((h - h0) * W + wi) * kk * Cout + (i * k + j);
                            float *dst = yn + ((size_t)oh * Wo + (size_t)ow) * Cout;
                            for (size_t o = 0; o < Cout; o++) dst[o] += src[o * kk];
                        }
                }
        }
    }
    cs_free(col);
    return 0;
}
