/* Antialiased bicubic resize and CLIP preprocessing.
 *
 * The resize follows the semantics of PyTorch's antialiased interpolation
 * (so CLIP sees the same pixels as in ComfyUI and the official notebooks):
 * each output sample o of a dimension of scale s = in/out has its centre at
 * s*(o + 0.5) in input coordinates. When shrinking (s > 1) the cubic kernel
 * (Keys, a = -0.5, support 2) is stretched by s, so it covers 4*s input
 * samples and acts as a low-pass filter; when enlarging it keeps support 2.
 * The taps are the input samples j whose centre j + 0.5 lies within the
 * support, clipped to the image, and their weights are normalised to sum
 * 1, which also handles the edges (no padding or clamping of indices). */
#include "image_prep.h"

#include "error.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keys' cubic with a = -0.5, evaluated in float like the reference, whose
 * weights (and so its rounding) we want to reproduce, not improve on. */
static float cubic(float x)
{
    const float a = -0.5f;
    x = fabsf(x);
    if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    if (x < 2.0f) return ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
    return 0.0f;
}

/* Taps of one dimension: for output o, first[o] and count[o] input indices
 * with weights w[o * maxk ...]. */
typedef struct {
    size_t *first, *count;
    float *w;
    size_t maxk;
} taps;

static void taps_free(taps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

static int taps_make(taps *t, size_t in, size_t out)
{
    float scale = (float)in / (float)out;
    float support = scale >= 1.0f ? 2.0f * scale : 2.0f;
    float inv = scale >= 1.0f ? 1.0f / scale : 1.0f;
    t->maxk = (size_t)ceilf(support) * 2 + 1;
    t->first = malloc(out * sizeof *t->first);
    t->count = malloc(out * sizeof *t->count);
    t->w = malloc(out * t->maxk * sizeof *t->w);
    if (!t->first || !t->count || !t->w) {
        taps_free(t);
        return cs_error(CS_ENOMEM, "resize: out of memory for %zu taps", out * t->maxk);
    }
    for (size_t o = 0; o < out; o++) {
        float centre = scale * ((float)o + 0.5f);
        /* truncation toward zero as in the reference; negative starts clip to 0 */
        float lo = centre - support + 0.5f, hi = centre + support + 0.5f;
        size_t a = lo > 0 ? (size_t)lo : 0;
        size_t b = hi > 0 ? (size_t)hi : 0;
        if (b > in) b = in;
        if (b <= a) b = a + 1 <= in ? a + 1 : in, a = b - 1;   /* never empty */
        if (b - a > t->maxk) b = a + t->maxk;
        float *w = t->w + o * t->maxk, sum = 0.0f;
        for (size_t j = a; j < b; j++) sum += w[j - a] = cubic(((float)j - centre + 0.5f) * inv);
        if (sum != 0.0f)
            for (size_t j = a; j < b; j++) w[j - a] /= sum;
        t->first[o] = a;
        t->count[o] = b - a;
    }
    return 0;
}

/* y[rows, out, C] from x[rows, in, C] along the middle axis (stride C) with
 * an outer stride: used for the width pass (rows = H) and, with the rows
 * being whole image rows, for the height pass (rows = 1, C = W*C). */
static void apply(const float *x, size_t rows, size_t in, size_t C, const taps *t, float *y, size_t out)
{
#pragma omp parallel for schedule(static) if (rows * out * C > 65536)
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            const float *w = t->w + o * t->maxk;
            const float *src = x + (r * in + t->first[o]) * C;
            float *dst = y + (r * out + o) * C;
            for (size_t c = 0; c < C; c++) dst[c] = src[c] * w[0];
            for (size_t k = 1; k < t->count[o]; k++)
                for (size_t c = 0; c < C; c++) dst[c] += src[k * C + c] * w[k];
        }
}

int cs_resize_bicubic_aa(const float *x, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo)
{
    if (!H || !W || !C || !Ho || !Wo) return cs_error(CS_EARG, "resize: empty image (%zux%zu -> %zux%zu)", W, H, Wo, Ho);
    if (H == Ho && W == Wo) {
        memcpy(y, x, H * W * C * sizeof *x);
        return 0;
    }
    taps th = {0}, tw = {0};
    float *mid = NULL;
    int rc = 0;
    if (W != Wo && H != Ho) {
        mid = cs_alloc(H * Wo * C * sizeof *mid);
        if (!mid) return cs_oom("the resize buffer", H * Wo * C * sizeof *mid);
    }
    if (W != Wo) {
        if (!(rc = taps_make(&tw, W, Wo))) apply(x, H, W, C, &tw, mid ? mid : y, Wo);
    }
    if (!rc && H != Ho) {
        if (!(rc = taps_make(&th, H, Ho))) apply(mid ? mid : x, 1, H, Wo * C, &th, y, Ho);
    }
    if (W != Wo) taps_free(&tw);
    if (H != Ho) taps_free(&th);
    cs_free(mid);
    return rc;
}

/* torch's get_cubic_upsample_coefficients (A = -0.75) for fraction t */
static void cubic_coeffs(float t, float c[4])
{
    const float A = -0.75f;
    float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    c[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    c[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    c[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    c[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
}

/* per output index: the first tap (before clamping) and its 4 weights */
static void torch_taps(size_t in, size_t out, long *first, float (*w)[4])
{
    float scale = (float)in / (float)out;
    for (size_t o = 0; o < out; o++) {
        float src = scale * ((float)o + 0.5f) - 0.5f, f = floorf(src);
        first[o] = (long)f - 1;
        cubic_coeffs(src - f, w[o]);
    }
}

static size_t clampi(long i, size_t n)
{
    return i < 0 ? 0 : (size_t)i >= n ? n - 1 : (size_t)i;
}

int cs_resize_bicubic_torch(const float *x, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo)
{
    if (!H || !W || !C || !Ho || !Wo) return cs_error(CS_EARG, "resize: empty image (%zux%zu -> %zux%zu)", W, H, Wo, Ho);
    long *fx = malloc(Wo * sizeof *fx), *fy = malloc(Ho * sizeof *fy);
    float (*wx)[4] = malloc(Wo * sizeof *wx), (*wy)[4] = malloc(Ho * sizeof *wy);
    if (!fx || !fy || !wx || !wy) {
        free(fx), free(fy), free(wx), free(wy);
        return cs_oom("the resize taps", (Wo + Ho) * (sizeof(long) + 4 * sizeof(float)));
    }
    torch_taps(W, Wo, fx, wx);
    torch_taps(H, Ho, fy, wy);
    /* as torch: each of the 4 rows interpolated along x, then those along y */
    for (size_t oy = 0; oy < Ho; oy++)
        for (size_t ox = 0; ox < Wo; ox++)
            for (size_t c = 0; c < C; c++) {
                float row[4];
                for (int i = 0; i < 4; i++) {
                    const float *r = x + clampi(fy[oy] + i, H) * W * C + c;
                    row[i] = r[clampi(fx[ox], W) * C] * wx[ox][0] + r[clampi(fx[ox] + 1, W) * C] * wx[ox][1] +
                             r[clampi(fx[ox] + 2, W) * C] * wx[ox][2] + r[clampi(fx[ox] + 3, W) * C] * wx[ox][3];
                }
                y[(oy * Wo + ox) * C + c] = row[0] * wy[oy][0] + row[1] * wy[oy][1] + row[2] * wy[oy][2] +
                                            row[3] * wy[oy][3];
            }
    free(fx), free(fy), free(wx), free(wy);
    return 0;
}

/* Python's round() of d / 2 for an integer d >= 0: halves go to even. */
static size_t half_round_even(size_t d)
{
    size_t k = d / 2;
    return (d % 2 && k % 2) ? k + 1 : k;
}

int cs_clip_preprocess(const uint8_t *rgb, size_t H, size_t W, int size, float *out)
{
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    if (!H || !W || size <= 0) return cs_error(CS_EARG, "clip preprocess: empty image (%zux%zu)", W, H);
    size_t S = (size_t)size, Ho, Wo;
    /* the short side becomes S, the long side int(long * S / short), at least S */
    if (H <= W) {
        Ho = S;
        Wo = (size_t)((double)(W * S) / (double)H);
    } else {
        Wo = S;
        Ho = (size_t)((double)(H * S) / (double)W);
    }
    if (Ho < S) Ho = S;
    if (Wo < S) Wo = S;
    float *x = cs_alloc(H * W * 3 * sizeof *x), *y = cs_alloc(Ho * Wo * 3 * sizeof *y);
    if (!x || !y) {
        cs_free(x);
        cs_free(y);
        return cs_oom("the image being prepared for CLIP", (H * W + Ho * Wo) * 3 * sizeof(float));
    }
    for (size_t i = 0; i < H * W * 3; i++) x[i] = (float)rgb[i] / 255.0f;
    int rc = cs_resize_bicubic_aa(x, H, W, 3, y, Ho, Wo);
    if (!rc) {
        size_t top = half_round_even(Ho - S), left = half_round_even(Wo - S);
        for (size_t i = 0; i < S; i++)
            for (size_t j = 0; j < S; j++)
                for (int c = 0; c < 3; c++)
                    out[(i * S + j) * 3 + c] = (y[((top + i) * Wo + left + j) * 3 + c] - mean[c]) / std[c];
    }
    cs_free(x);
    cs_free(y);
    return rc;
}
