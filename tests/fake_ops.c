/* The fake device's forward single ops (see tests/fake_backend.c): each
 * device argument is translated to its real address (and refused unless it
 * lies inside one allocation), then libcascade's CPU op runs on the real
 * bytes, so the results equal the CPU path bit for bit. */
#include "fake_backend.h"

#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols)
{
    fake_call c = fake_enter("copy2d");
    float *d = dv2(&c, dst, rows, cols, ldd, "dst");
    const float *s = dv2(&c, src, rows, cols, lds, "src");
    if (!c.rc) ON_HOST(cs_copy2d(d, ldd, s, lds, rows, cols));
    return c.rc;
}

static int fill(float *dst, float v, size_t n)
{
    fake_call c = fake_enter("fill");
    float *d = dv(&c, dst, n, "dst");
    if (!c.rc) ON_HOST(cs_fill(d, v, n));
    return c.rc;
}

static int linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                  size_t ldy, int accumulate)
{
    fake_call c = fake_enter("linear");
    size_t N = (size_t)W->shape[0];
    const float *rx = dv2(&c, x, M, K, ldx, "x");
    float *ry = dv2(&c, y, M, N, ldy, "y");
    fake_host_only(&c, W->data, "W");
    fake_host_only(&c, b ? b->data : NULL, "b");
    int rc = 0;
    cs_tensor tw, tb;
    W = fake_rw_sub(W, &tw), b = fake_rw_sub(b, &tb);
    if (!c.rc) ON_HOST(rc = cs_linear(rx, M, K, ldx, W, b, ry, ldy, accumulate));
    return fake_done(&c, rc);
}

static int sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                 size_t ldb, float beta, float *C, size_t ldc)
{
    fake_call c = fake_enter("sgemm");
    const float *rA = dv2(&c, A, M, K, lda, "A");
    const float *rB = transB ? dv2(&c, B, N, K, ldb, "B") : dv2(&c, B, K, N, ldb, "B");
    float *rC = dv2(&c, C, M, N, ldc, "C");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_sgemm(transB, M, N, K, alpha, rA, lda, rB, ldb, beta, rC, ldc));
    return fake_done(&c, rc);
}

static int layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b)
{
    fake_call c = fake_enter("layernorm");
    const float *rx = dv(&c, x, rows * C, "x"), *rw = opt(&c, w, C, "w"), *rb = opt(&c, b, C, "b");
    float *ry = dv(&c, y, rows * C, "y");
    if (!c.rc) ON_HOST(cs_layernorm(rx, ry, rows, C, eps, rw, rb));
    return c.rc;
}

static int unary(int kind, const float *x, float *y, size_t n)
{
    fake_call c = fake_enter("unary");
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc && (kind < 0 || kind > 3)) c.rc = fake_fail(CS_EARG, "fake device: unary: no kind %d", kind);
    if (c.rc) return c.rc;
    void (*const f[4])(const float *, float *, size_t) = {cs_gelu, cs_quick_gelu, cs_silu, cs_sigmoid};
    ON_HOST(f[kind](rx, ry, n));
    return 0;
}

static int add(const float *a, const float *b, float *y, size_t n)
{
    fake_call c = fake_enter("add");
    const float *ra = dv(&c, a, n, "a"), *rb = dv(&c, b, n, "b");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc) ON_HOST(cs_add(ra, rb, ry, n));
    return c.rc;
}

static int scale(const float *x, float s, float *y, size_t n)
{
    fake_call c = fake_enter("scale");
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (!c.rc) ON_HOST(cs_scale(rx, s, ry, n));
    return c.rc;
}

static int axpy(float *y, const float *x, float g, size_t n)
{
    fake_call c = fake_enter("axpy");
    float *ry = dv(&c, y, n, "y");
    const float *rx = dv(&c, x, n, "x");
    if (!c.rc) ON_HOST(cs_axpy(ry, rx, g, n));
    return c.rc;
}

static int grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta)
{
    fake_call c = fake_enter("grn");
    const float *rx = dv(&c, x, N * HW * C, "x"), *rg = dv(&c, gamma, C, "gamma"), *rb = dv(&c, beta, C, "beta");
    float *ry = dv(&c, y, N * HW * C, "y");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_grn(rx, ry, N, HW, C, rg, rb));
    return fake_done(&c, rc);
}

static int modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                    size_t ldab)
{
    fake_call c = fake_enter("modulate");
    const float *rx = dv(&c, x, N * HW * C, "x"), *ra = dv2(&c, a, N, C, ldab, "a"), *rb = dv2(&c, b, N, C, ldab, "b");
    float *ry = dv(&c, y, N * HW * C, "y");
    if (!c.rc) ON_HOST(cs_modulate(rx, ry, N, HW, C, ra, rb, ldab));
    return c.rc;
}

static int channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t)
{
    fake_call c = fake_enter("channel_affine");
    const float *rx = dv(&c, x, rows * C, "x"), *rs = dv(&c, s, C, "s"), *rt = dv(&c, t, C, "t");
    float *ry = dv(&c, y, rows * C, "y");
    if (!c.rc) ON_HOST(cs_channel_affine(rx, ry, rows, C, rs, rt));
    return c.rc;
}

static int dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                     const cs_tensor *bias, int replicate)
{
    fake_call c = fake_enter("dwconv3x3");
    const float *rx = dv(&c, x, N * H * W * C, "x");
    float *ry = dv(&c, y, N * H * W * C, "y");
    fake_host_only(&c, w->data, "w");
    fake_host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    cs_tensor tw, tb;
    w = fake_rw_sub(w, &tw), bias = fake_rw_sub(bias, &tb);
    if (!c.rc) ON_HOST(rc = cs_dwconv3x3(rx, ry, N, H, W, C, w, bias, replicate));
    return fake_done(&c, rc);
}

static int conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w, const cs_tensor *bias,
                  int stride, int pad, int groups, float *y, size_t Ho, size_t Wo)
{
    fake_call c = fake_enter("conv2d");
    const float *rx = dv(&c, x, N * H * W * Cin, "x");
    float *ry = dv(&c, y, N * Ho * Wo * (size_t)w->shape[0], "y");
    fake_host_only(&c, w->data, "w");
    fake_host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    size_t ho = 0, wo = 0;
    cs_tensor tw, tb;
    w = fake_rw_sub(w, &tw), bias = fake_rw_sub(bias, &tb);
    if (!c.rc) ON_HOST(rc = cs_conv2d(rx, N, H, W, Cin, w, bias, stride, pad, groups, ry, &ho, &wo));
    if (!rc && (ho != Ho || wo != Wo)) return fake_fail(CS_EARG, "fake device: conv2d: output %zux%zu given, %zux%zu computed", Ho, Wo, ho, wo);
    return fake_done(&c, rc);
}

static int conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                            const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo)
{
    fake_call c = fake_enter("conv_transpose2d");
    const float *rx = dv(&c, x, N * H * W * Cin, "x");
    float *ry = dv(&c, y, N * Ho * Wo * (size_t)w->shape[1], "y");
    fake_host_only(&c, w->data, "w");
    fake_host_only(&c, bias ? bias->data : NULL, "bias");
    int rc = 0;
    size_t ho = 0, wo = 0;
    if (!c.rc) ON_HOST(rc = cs_conv_transpose2d(rx, N, H, W, Cin, w, bias, stride, pad, ry, &ho, &wo));
    if (!rc && (ho != Ho || wo != Wo))
        return fake_fail(CS_EARG, "fake device: conv_transpose2d: output %zux%zu given, %zux%zu computed", Ho, Wo, ho, wo);
    return fake_done(&c, rc);
}

static int attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                     size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo)
{
    fake_call c = fake_enter("attention");
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk = dv2(&c, k, N * Lk, C, ldk, "k"),
                *rv = dv2(&c, v, N * Lk, C, ldv, "v"), *rm = opt(&c, mask, N * Lq * Lk, "mask");
    float *ro = dv2(&c, o, N * Lq, C, ldo, "o");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_attention(rq, ldq, rk, ldk, rv, ldv, N, Lq, Lk, C, nhead, rm, ro, ldo));
    return fake_done(&c, rc);
}

/* keys/values gathered on the host as the CPU path gathers them, so the
 * results equal the CPU's bit for bit */
static int attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                         const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                         int nhead, float *o, size_t ldo)
{
    fake_call c = fake_enter("attention_cat");
    size_t Lk = L1 + L2;
    const float *rq = dv2(&c, q, N * Lq, C, ldq, "q"), *rk1 = L1 ? dv2(&c, k1, N * L1, C, ld1, "k1") : NULL,
                *rv1 = L1 ? dv2(&c, v1, N * L1, C, ld1, "v1") : NULL, *rk2 = L2 ? dv2(&c, k2, N * L2, C, ld2, "k2") : NULL,
                *rv2 = L2 ? dv2(&c, v2, N * L2, C, ld2, "v2") : NULL;
    float *ro = dv2(&c, o, N * Lq, C, ldo, "o");
    float *kv = malloc(N * Lk * 2 * C * sizeof(float) + 1);
    if (!kv) return fake_fail(CS_ENOMEM, "fake device: attention_cat: out of memory");
    for (size_t n = 0; n < N && !c.rc; n++)
        for (size_t j = 0; j < Lk; j++) {
            int s = j >= L1;
            size_t r = n * (s ? L2 : L1) + (s ? j - L1 : j), ld = s ? ld2 : ld1;
            memcpy(kv + (n * Lk + j) * 2 * C, (s ? rk2 : rk1) + r * ld, C * sizeof(float));
            memcpy(kv + (n * Lk + j) * 2 * C + C, (s ? rv2 : rv1) + r * ld, C * sizeof(float));
        }
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_attention(rq, ldq, kv, 2 * C, kv + C, 2 * C, N, Lq, Lk, C, nhead, NULL, ro, ldo));
    free(kv);
    return fake_done(&c, rc);
}

static int resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo)
{
    fake_call c = fake_enter("resize_bilinear");
    const float *rx = dv(&c, x, N * H * W * C, "x");
    float *ry = dv(&c, y, N * Ho * Wo * C, "y");
    if (!c.rc) ON_HOST(cs_resize_bilinear(rx, N, H, W, C, ry, Ho, Wo));
    return c.rc;
}

static int pixel_shuffle(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    fake_call c = fake_enter("pixel_shuffle");
    size_t n = N * H * W * C * (up ? (size_t)(r * r) : 1);
    const float *rx = dv(&c, x, n, "x");
    float *ry = dv(&c, y, n, "y");
    if (c.rc) return c.rc;
    if (up) ON_HOST(cs_pixel_shuffle(rx, N, H, W, C, r, ry));
    else ON_HOST(cs_pixel_unshuffle(rx, N, H, W, C, r, ry));
    return 0;
}

static int transpose(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW)
{
    fake_call c = fake_enter("transpose");
    const float *rx = dv(&c, x, N * C * HW, "x");
    float *ry = dv(&c, y, N * C * HW, "y");
    if (c.rc) return c.rc;
    if (to_nhwc) ON_HOST(cs_nchw_to_nhwc(rx, ry, N, C, HW));
    else ON_HOST(cs_nhwc_to_nchw(rx, ry, N, C, HW));
    return 0;
}

static int concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows)
{
    fake_call c = fake_enter("concat_channels");
    const float *ra = dv(&c, a, rows * Ca, "a"), *rb = dv(&c, b, rows * Cb, "b");
    float *ry = dv(&c, y, rows * (Ca + Cb), "y");
    if (!c.rc) ON_HOST(cs_concat_channels(ra, Ca, rb, Cb, ry, rows));
    return c.rc;
}

__attribute__((unused)) static int embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out)
{
    fake_call c = fake_enter("embed_rows");
    float *ro = dv(&c, out, n * (size_t)(table->ndim == 2 ? table->shape[1] : 0), "out");
    fake_host_only(&c, table->data, "table");
    fake_host_only(&c, ids, "ids");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_embed_rows(table, ids, n, ro));
    return fake_done(&c, rc);
}

static int r_embed(const float *r, size_t N, int c_r, const float *freq, float *emb)
{
    fake_call c = fake_enter("r_embed");
    const float *rr = dv(&c, r, N, "r");
    float *re = dv(&c, emb, N * (size_t)c_r, "emb");
    fake_host_only(&c, freq, "freq");
    int rc = 0;
    if (!c.rc) ON_HOST(rc = cs_r_embedding(rr, N, c_r, re));
    return fake_done(&c, rc);
}

void fake_forward_ops(cs_dev_ops *o)
{
    o->copy2d = copy2d, o->fill = fill, o->linear = linear, o->sgemm = sgemm, o->layernorm = layernorm;
    o->unary = unary, o->add = add, o->scale = scale, o->axpy = axpy, o->grn = grn, o->modulate = modulate;
    o->channel_affine = channel_affine, o->dwconv3x3 = dwconv3x3, o->conv2d = conv2d;
    o->conv_transpose2d = conv_transpose2d, o->attention = attention, o->attention_cat = attention_cat;
    o->resize_bilinear = resize_bilinear, o->pixel_shuffle = pixel_shuffle, o->transpose = transpose;
    o->concat_channels = concat_channels, o->r_embed = r_embed;
#ifndef FAKE_NO_EMBED   /* a plugin with a gap in its op set, which the loader refuses */
    o->embed_rows = embed_rows;
#endif
}
