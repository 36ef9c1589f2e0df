/* The resampling, layout and lookup ops of src/ops.h. */
#include "ops.h"

#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "ops_dev.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- resampling and layout ---- */

static void interp_axis(size_t in, size_t O, size_t *i0, size_t *i1, float *l1)
{
    float sc = O > 1 ? (float)(in - 1) / (float)(O - 1) : 0.0f;
    for (size_t o = 0; o < O; o++) {
        float src = sc * (float)o;
        size_t a = (size_t)floorf(src);
        if (a > in - 1) a = in - 1;
        i0[o] = a;
        i1[o] = a + 1 < in ? a + 1 : in - 1;
        l1[o] = src - (float)a;
    }
}

void cs_resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo)
{
    ON_DEV(resize_bilinear(x, N, H, W, C, y, Ho, Wo), "a resize");
    size_t *hi = malloc(2 * (Ho + Wo) * sizeof(size_t));
    float *hl = malloc((Ho + Wo) * sizeof(float));
    if (!hi || !hl) {   /* tiny tables; cannot realistically fail */
        free(hi);
        free(hl);
        return;
    }
    size_t *h0 = hi, *h1 = hi + Ho, *w0 = hi + 2 * Ho, *w1 = w0 + Wo;
    float *lh = hl, *lw = hl + Ho;
    interp_axis(H, Ho, h0, h1, lh);
    interp_axis(W, Wo, w0, w1, lw);
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * H * W * C;
        float *yn = y + n * Ho * Wo * C;
#pragma omp parallel for schedule(static)
        for (size_t oh = 0; oh < Ho; oh++)
            for (size_t ow = 0; ow < Wo; ow++) {
                float a1 = lh[oh], a0 = 1.0f - a1, b1 = lw[ow], b0 = 1.0f - b1;
                const float *p00 = xn + (h0[oh] * W + w0[ow]) * C, *p01 = xn + (h0[oh] * W + w1[ow]) * C,
                            *p10 = xn + (h1[oh] * W + w0[ow]) * C, *p11 = xn + (h1[oh] * W + w1[ow]) * C;
                float *d = yn + (oh * Wo + ow) * C;
                for (size_t c = 0; c < C; c++)
                    d[c] = a0 * (b0 * p00[c] + b1 * p01[c]) + a1 * (b0 * p10[c] + b1 * p11[c]);
            }
    }
    free(hi);
    free(hl);
}

void cs_pixel_unshuffle(const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    ON_DEV(pixel_shuffle(0, x, N, H, W, C, r, y), "a pixel unshuffle");
    size_t R = (size_t)r, Ho = H / R, Wo = W / R, Co = C * R * R;
#pragma omp parallel for schedule(static)
    for (size_t nh = 0; nh < N * Ho; nh++) {
        size_t n = nh / Ho, h = nh % Ho;
        for (size_t w = 0; w < Wo; w++) {
            float *d = y + ((n * Ho + h) * Wo + w) * Co;
            for (size_t i = 0; i < R; i++)
                for (size_t j = 0; j < R; j++) {
                    const float *s = x + ((n * H + h * R + i) * W + w * R + j) * C;
                    for (size_t c = 0; c < C; c++) d[c * R * R + i * R + j] = s[c];
                }
        }
    }
}

void cs_pixel_shuffle(const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    ON_DEV(pixel_shuffle(1, x, N, H, W, C, r, y), "a pixel shuffle");
    size_t R = (size_t)r, Ci = C * R * R, Wo = W * R;
#pragma omp parallel for schedule(static)
    for (size_t nh = 0; nh < N * H; nh++) {
        size_t n = nh / H, h = nh % H;
        for (size_t w = 0; w < W; w++) {
            const float *s = x + ((n * H + h) * W + w) * Ci;
            for (size_t i = 0; i < R; i++)
                for (size_t j = 0; j < R; j++) {
                    float *d = y + ((n * H * R + h * R + i) * Wo + w * R + j) * C;
                    for (size_t c = 0; c < C; c++) d[c] = s[c * R * R + i * R + j];
                }
        }
    }
}

void cs_nchw_to_nhwc(const float *x, float *y, size_t N, size_t C, size_t HW)
{
    ON_DEV(transpose(1, x, y, N, C, HW), "a transpose");
    for (size_t n = 0; n < N; n++)
#pragma omp parallel for schedule(static)
        for (size_t p = 0; p < HW; p++)
            for (size_t c = 0; c < C; c++) y[(n * HW + p) * C + c] = x[(n * C + c) * HW + p];
}

void cs_nhwc_to_nchw(const float *x, float *y, size_t N, size_t C, size_t HW)
{
    ON_DEV(transpose(0, x, y, N, C, HW), "a transpose");
    for (size_t n = 0; n < N; n++)
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < C; c++)
            for (size_t p = 0; p < HW; p++) y[(n * C + c) * HW + p] = x[(n * HW + p) * C + c];
}

void cs_concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows)
{
    ON_DEV(concat_channels(a, Ca, b, Cb, y, rows), "a concat");
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        memcpy(y + r * (Ca + Cb), a + r * Ca, Ca * sizeof(float));
        memcpy(y + r * (Ca + Cb) + Ca, b + r * Cb, Cb * sizeof(float));
    }
}

/* Correctly rounded float32 exp(-k ln(1e4)/31), k = 0..31: the frequencies of the
 * official gen_r_embedding (modules/stage_c.py) for c_r = 64. */
static const uint32_t remb_freq32[32] = {
    0x3f800000, 0x3f3e32e3, 0x3f0d4f93, 0x3ed1fa4b, 0x3e9c0180, 0x3e67d040, 0x3e2c3aa3, 0x3dffeb81,
    0x3dbe23a9, 0x3d8d4443, 0x3d51e97d, 0x3d1bf503, 0x3ce7bdb1, 0x3cac2cda, 0x3c7fd703, 0x3c3e1470,
    0x3c0d38f4, 0x3bd1d8af, 0x3b9be888, 0x3b67ab26, 0x3b2c1f14, 0x3affc287, 0x3abe0537, 0x3a8d2da5,
    0x3a51c7e2, 0x3a1bdc0d, 0x39e7989a, 0x39ac1146, 0x397fae0d, 0x393df601, 0x390d2257, 0x38d1b716,
};

/* the half = c_r / 2 frequencies (at most 256) into f; returns half */
static int r_freqs(int c_r, float f[256])
{
    int half = c_r / 2;
    if (half > 256) half = 256;
    if (half == 32) {
        memcpy(f, remb_freq32, sizeof remb_freq32);
    } else {
        float e = (float)(log(10000.0) / (double)(half - 1));
        for (int k = 0; k < half; k++) f[k] = expf((float)k * -e);
    }
    return half;
}

int cs_r_embedding(const float *r, size_t N, int c_r, float *emb)
{
    float f[256];
    int half = r_freqs(c_r, f);
    /* on a device: the same frequencies, the sines in double there (glibc's
     * sinf/cosf are within an ulp of that) */
    ON_DEV_RC(r_embed(r, N, c_r, f, emb), "the timestep embedding");
    for (size_t n = 0; n < N; n++) {
        float u = r[n] * 10000.0f, *d = emb + n * (size_t)c_r;
        for (int k = 0; k < half; k++) {
            float ph = u * f[k];
            d[k] = sinf(ph);
            d[half + k] = cosf(ph);
        }
        if (c_r & 1) d[c_r - 1] = 0.0f;
    }
    return 0;
}


int cs_embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out)
{
    int64_t V = table->ndim == 2 ? table->shape[0] : 0;
    size_t C = table->ndim == 2 ? (size_t)table->shape[1] : 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return cs_error(CS_EARG, "%s: token id %d outside 0..%lld", table->name ? table->name : "embedding", ids[i],
                            (long long)V - 1);
    ON_DEV_RC(embed_rows(table, ids, n, out), "an embedding lookup");
    for (size_t i = 0; i < n; i++) {
        cs_tensor row = *table;
        row.ndim = 1;
        row.shape[0] = (int64_t)C;
        row.data = (const unsigned char *)table->data + (size_t)ids[i] * C * cs_dtype_size(table->dtype);
        int rc = cs_tensor_to_f32(&row, out + i * C);
        if (rc) return rc;
    }
    return 0;
}
