/* Golden handlers for single ops (torch.nn layers and small functions).
 * Each computes its output shape from the inputs and config, checks the
 * reference against it before allocating, then compares. */
#include "golden.h"

#include "device.h"
#include "error.h"
#include "ops.h"

#include <math.h>
#include <string.h>

/* out.y must be NCHW [N,C,H,W]: checked before the result is allocated, so a
 * case cannot make the handler allocate (or write) more than its reference. */
static int want_y(gcase *c, size_t N, size_t C, size_t H, size_t W)
{
    size_t d[4] = {N, C, H, W};
    if (golden_shape_is(golden_tensor(c, "out.y"), 4, d)) return 0;
    return golden_check(c, "out.y", NULL, 4, d);   /* reports the mismatch */
}

/* Optional per-channel vector w.<key>: absent, or exactly C values. */
static int chan_param(gcase *c, const char *key, size_t C, float **out)
{
    const cs_tensor *t = golden_param(c, key);
    *out = NULL;
    if (!t) return 0;
    if ((size_t)cs_tensor_numel(t) != C)
        return cs_error(CS_EFORMAT, "%s: w.%s has %lld values, the op has %zu channels", golden_file(c), key,
                        (long long)cs_tensor_numel(t), C);
    return (*out = cs_tensor_f32_dup(t)) ? 0 : CS_ENOMEM;
}

static int run_layernorm2d(gcase *c)
{
    size_t N, C, H, W;
    float eps = (float)golden_cfg_num(c, "eps", 1e-6, 0.0, 1.0), *wf = NULL, *bf = NULL;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    if (!x) return CS_EFORMAT;
    int rc = golden_cfg_error(c);
    if (!rc) rc = want_y(c, N, C, H, W);
    if (!rc) rc = chan_param(c, "weight", C, &wf);
    if (!rc) rc = chan_param(c, "bias", C, &bf);
    if (!rc) {
        cs_dev_args a;
        size_t n = N * H * W * C;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dx = cs_dev_in(&a, x, n), *dw = cs_dev_in(&a, wf, C), *db = cs_dev_in(&a, bf, C);
        float *dy = cs_dev_out(&a, x, n);
        if (!a.rc) cs_layernorm(dx, dy, N * H * W, C, eps, dw, db);
        rc = cs_dev_args_finish(&a, 0);
        if (!rc) rc = golden_check_nhwc(c, "out.y", x, N, C, H, W);
    }
    cs_free(wf);
    cs_free(bf);
    cs_free(x);
    return rc;
}

static int run_grn(gcase *c)
{
    /* the case's input is already channels-last [N,H,W,C] */
    const cs_tensor *t = golden_tensor(c, "in.x");
    if (!t || t->ndim != 4) return cs_error(CS_EFORMAT, "%s: in.x missing or not [N,H,W,C]", golden_file(c));
    size_t d[4] = {(size_t)t->shape[0], (size_t)t->shape[1], (size_t)t->shape[2], (size_t)t->shape[3]};
    size_t N = d[0], HW = d[1] * d[2], C = d[3];
    const cs_tensor *gt = golden_param(c, "gamma"), *bt = golden_param(c, "beta");
    if (!gt || !bt || cs_tensor_numel(gt) != (int64_t)C || cs_tensor_numel(bt) != (int64_t)C)
        return cs_error(CS_EFORMAT, "%s: w.gamma / w.beta missing or not %zu values", golden_file(c), C);
    if (!golden_shape_is(golden_tensor(c, "out.y"), 4, d)) return golden_check(c, "out.y", NULL, 4, d);
    float *x = golden_f32(c, "in.x", NULL), *g = golden_f32(c, "w.gamma", NULL), *b = golden_f32(c, "w.beta", NULL);
    int rc = x && g && b ? 0 : CS_ENOMEM;
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dx = cs_dev_in(&a, x, N * HW * C), *dg = cs_dev_in(&a, g, C), *db = cs_dev_in(&a, b, C);
        float *dy = cs_dev_out(&a, x, N * HW * C);
        rc = cs_dev_args_finish(&a, a.rc ? a.rc : cs_grn(dx, dy, N, HW, C, dg, db));
    }
    if (!rc) rc = golden_check(c, "out.y", x, 4, d);
    cs_free(x);
    cs_free(g);
    cs_free(b);
    return rc;
}

/* config size [h, w] or scale_factor (number or pair) -> output size */
static int interp_size(gcase *c, size_t H, size_t W, size_t *Ho, size_t *Wo)
{
    json_t *cfg = golden_config(c), *size = cfg ? json_object_get(cfg, "size") : NULL;
    json_t *sf = cfg ? json_object_get(cfg, "scale_factor") : NULL;
    if (size && !json_is_null(size)) {
        json_t *a = json_array_get(size, 0), *b = json_array_get(size, 1);
        if (json_array_size(size) != 2 || !json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 1 ||
            json_integer_value(b) < 1 || json_integer_value(a) > GOLDEN_MAX_DIM || json_integer_value(b) > GOLDEN_MAX_DIM)
            return golden_cfg_bad(c, "size", "is not a pair of sizes 1..2^20");
        *Ho = (size_t)json_integer_value(a), *Wo = (size_t)json_integer_value(b);
        return 0;
    }
    json_t *a = json_is_array(sf) ? json_array_get(sf, 0) : sf, *b = json_is_array(sf) ? json_array_get(sf, 1) : sf;
    if ((json_is_array(sf) && json_array_size(sf) != 2) || !json_is_number(a) || !json_is_number(b) ||
        !(json_number_value(a) > 0 && json_number_value(a) <= 64) || !(json_number_value(b) > 0 && json_number_value(b) <= 64))
        return golden_cfg_bad(c, "scale_factor", "is not a number (or pair) in (0, 64], and no size is given");
    /* torch: out = floor(in * scale); with align_corners the taps depend on sizes only */
    *Ho = (size_t)floor((double)H * json_number_value(a));
    *Wo = (size_t)floor((double)W * json_number_value(b));
    if (!*Ho || !*Wo) return golden_cfg_bad(c, "scale_factor", "gives an empty output");
    return 0;
}

static int run_interpolate(gcase *c)
{
    json_t *cfg = golden_config(c);
    const char *mode = cfg ? json_string_value(json_object_get(cfg, "mode")) : NULL;
    if (!mode || strcmp(mode, "bilinear") || !json_is_true(json_object_get(cfg, "align_corners")))
        return cs_error(CS_EUNSUP, "%s: only bilinear with align_corners=True is supported", golden_file(c));
    size_t N, C, H, W, Ho = 0, Wo = 0;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *y = NULL;
    if (!x) return CS_EFORMAT;
    int rc = interp_size(c, H, W, &Ho, &Wo);
    if (!rc) rc = want_y(c, N, C, Ho, Wo);
    if (!rc && !(y = cs_alloc(N * C * Ho * Wo * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dx = cs_dev_in(&a, x, N * H * W * C);
        float *dy = cs_dev_out(&a, y, N * Ho * Wo * C);
        if (!a.rc) cs_resize_bilinear(dx, N, H, W, C, dy, Ho, Wo);
        rc = cs_dev_args_finish(&a, 0);
        if (!rc) rc = golden_check_nhwc(c, "out.y", y, N, C, Ho, Wo);
    }
    cs_free(x);
    cs_free(y);
    return rc;
}

static int run_shuffle(gcase *c, int down)
{
    const char *key = down ? "downscale_factor" : "upscale_factor";
    int r = golden_cfg_int(c, key, 0, 1, 64);
    size_t N, C, H, W, R = (size_t)r;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *y = NULL;
    if (!x) return CS_EFORMAT;
    int rc = golden_cfg_error(c);
    if (!rc && (r < 1 || (down && (H % R || W % R)) || (!down && C % (R * R))))
        rc = golden_cfg_bad(c, key, "is missing or does not fit the input");
    size_t Co = 0, Ho = 0, Wo = 0;
    if (!rc) {
        Co = down ? C * R * R : C / (R * R), Ho = down ? H / R : H * R, Wo = down ? W / R : W * R;
        rc = want_y(c, N, Co, Ho, Wo);
    }
    if (!rc && !(y = cs_alloc(N * C * H * W * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dx = cs_dev_in(&a, x, N * H * W * C);
        float *dy = cs_dev_out(&a, y, N * H * W * C);
        if (!a.rc && down) cs_pixel_unshuffle(dx, N, H, W, C, r, dy);
        else if (!a.rc) cs_pixel_shuffle(dx, N, H, W, Co, r, dy);
        rc = cs_dev_args_finish(&a, 0);
        if (!rc) rc = golden_check_nhwc(c, "out.y", y, N, Co, Ho, Wo);
    }
    cs_free(x);
    cs_free(y);
    return rc;
}

static int run_unshuffle(gcase *c) { return run_shuffle(c, 1); }
static int run_pshuffle(gcase *c) { return run_shuffle(c, 0); }

static int run_conv(gcase *c, int transposed)
{
    const cs_tensor *w = golden_param(c, "weight"), *b = golden_param(c, "bias");
    if (!w || w->ndim != 4 || w->shape[2] != w->shape[3])
        return cs_error(CS_EFORMAT, "%s: w.weight missing or not [*, *, k, k]", golden_file(c));
    int stride = golden_cfg_int(c, "stride", 1, 1, 64), pad = golden_cfg_int(c, "padding", 0, 0, 64),
        groups = golden_cfg_int(c, "groups", 1, 1, GOLDEN_MAX_DIM);
    /* options the ops do not take: refuse rather than compute something else */
    if (golden_cfg_int(c, "dilation", 1, 1, 1) != 1 || golden_cfg_int(c, "output_padding", 0, 0, 0) != 0 ||
        (transposed && groups != 1))
        return cs_error(CS_EUNSUP, "%s: only dilation 1, output_padding 0 (and groups 1 when transposed) are supported",
                        golden_file(c));
    int rc = golden_cfg_error(c);
    if (rc) return rc;
    size_t N, C, H, W, Ho, Wo, hy = 0, wy = 0, k = (size_t)w->shape[2], s = (size_t)stride, p2 = 2 * (size_t)pad;
    size_t Cout = (size_t)(transposed ? w->shape[1] : w->shape[0]);
    if (b && cs_tensor_numel(b) != (int64_t)Cout)
        return cs_error(CS_EFORMAT, "%s: w.bias has %lld values, the weight %zu outputs", golden_file(c),
                        (long long)cs_tensor_numel(b), Cout);
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *y = NULL;
    if (!x) return CS_EFORMAT;
    if (transposed ? (H - 1) * s + k <= p2 || (W - 1) * s + k <= p2 : H + p2 < k || W + p2 < k)
        rc = cs_error(CS_EFORMAT, "%s: kernel %zu, stride %zu, padding %d give an empty output for %zux%zu",
                      golden_file(c), k, s, pad, H, W);
    Ho = transposed ? (H - 1) * s + k - p2 : (H + p2 - k) / s + 1;
    Wo = transposed ? (W - 1) * s + k - p2 : (W + p2 - k) / s + 1;
    if (!rc) rc = want_y(c, N, Cout, Ho, Wo);
    if (!rc && !(y = cs_alloc(N * Cout * Ho * Wo * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    if (!rc) {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dx = cs_dev_in(&a, x, N * H * W * C);
        float *dy = cs_dev_out(&a, y, N * Cout * Ho * Wo);
        if (!(rc = a.rc))
            rc = transposed ? cs_conv_transpose2d(dx, N, H, W, C, w, b, stride, pad, dy, &hy, &wy)
                            : cs_conv2d(dx, N, H, W, C, w, b, stride, pad, groups, dy, &hy, &wy);
        rc = cs_dev_args_finish(&a, rc);
    }
    if (!rc && (hy != Ho || wy != Wo))
        rc = cs_error(CS_EFORMAT, "%s: the op made %zux%zu, expected %zux%zu", golden_file(c), hy, wy, Ho, Wo);
    if (!rc) rc = golden_check_nhwc(c, "out.y", y, N, Cout, Ho, Wo);
    cs_free(x);
    cs_free(y);
    return rc;
}

static int run_conv2d(gcase *c) { return run_conv(c, 0); }
static int run_convt(gcase *c) { return run_conv(c, 1); }

static int run_r_embedding(gcase *c)
{
    int c_r = golden_cfg_int(c, "c_r", 64, 1, 1 << 16);
    if (golden_cfg_int(c, "max_positions", 10000, 1, 1 << 30) != 10000)
        return cs_error(CS_EUNSUP, "%s: only max_positions 10000 is supported", golden_file(c));
    int rc = golden_cfg_error(c);
    if (rc) return rc;
    const cs_tensor *t;
    float *r = golden_f32(c, "in.r", &t), *e = NULL;
    if (!r) return CS_EFORMAT;
    size_t d[2] = {(size_t)cs_tensor_numel(t), (size_t)c_r};
    if (!golden_shape_is(golden_tensor(c, "out.emb"), 2, d)) rc = golden_check(c, "out.emb", NULL, 2, d);
    else if (!(e = cs_alloc(d[0] * d[1] * sizeof(float)))) rc = cs_error(CS_ENOMEM, "out of memory");
    else {
        cs_dev_args a;
        cs_dev_args_begin(&a, cs_dev_pick());
        const float *dr = cs_dev_in(&a, r, d[0]);
        float *de = cs_dev_out(&a, e, d[0] * d[1]);
        rc = cs_dev_args_finish(&a, a.rc ? a.rc : cs_r_embedding(dr, d[0], c_r, de));
        if (!rc) rc = golden_check(c, "out.emb", e, 2, d);
    }
    cs_free(r);
    cs_free(e);
    return rc;
}

const golden_handler golden_ops_handlers[] = {
    {"modules.common.LayerNorm2d", run_layernorm2d},
    {"modules.common.GlobalResponseNorm", run_grn},
    {"torch.nn.functional.interpolate", run_interpolate},
    {"torch.nn.PixelUnshuffle", run_unshuffle},
    {"torch.nn.PixelShuffle", run_pshuffle},
    {"torch.nn.Conv2d", run_conv2d},
    {"torch.nn.ConvTranspose2d", run_convt},
    {"modules.stage_c.StageC.gen_r_embedding", run_r_embedding},
    {NULL, NULL},
};
