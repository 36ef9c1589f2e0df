/* Golden handlers for single ops (torch.nn layers and small functions). */
#include "golden.h"

#include "error.h"
#include "ops.h"

#include <math.h>
#include <string.h>

/* Runs f(x_nhwc, y_nhwc) on in.x and checks out.y; y has Cy channels and Hy x Wy. */
static int check_image(gcase *c, float *y, size_t N, size_t Cy, size_t Hy, size_t Wy)
{
    const cs_tensor *ref = golden_tensor(c, "out.y");
    if (!ref || ref->ndim != 4 || (size_t)ref->shape[0] != N || (size_t)ref->shape[1] != Cy ||
        (size_t)ref->shape[2] != Hy || (size_t)ref->shape[3] != Wy)
        return cs_error(CS_EFORMAT, "%s: out.y shape does not match the computed [%zu,%zu,%zu,%zu]",
                        golden_path(c), N, Cy, Hy, Wy);
    return golden_check_nhwc(c, "out.y", y);
}

static int run_layernorm2d(gcase *c)
{
    size_t N, C, H, W;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    if (!x) return CS_EFORMAT;
    float eps = (float)golden_cfg_num(c, "eps", 1e-6);
    const cs_tensor *w = golden_param(c, "weight"), *b = golden_param(c, "bias");
    float *wf = w ? cs_tensor_f32_dup(w) : NULL, *bf = b ? cs_tensor_f32_dup(b) : NULL;
    cs_layernorm(x, x, N * H * W, C, eps, wf, bf);
    int rc = check_image(c, x, N, C, H, W);
    cs_free(wf);
    cs_free(bf);
    cs_free(x);
    return rc;
}

static int run_grn(gcase *c)
{
    /* the case's input is already channels-last [N,H,W,C] */
    const cs_tensor *t;
    float *x = golden_f32(c, "in.x", &t);
    if (!x) return CS_EFORMAT;
    float *g = golden_f32(c, "w.gamma", NULL), *b = golden_f32(c, "w.beta", NULL);
    int rc = CS_EFORMAT;
    if (g && b && t->ndim == 4) {
        size_t N = (size_t)t->shape[0], HW = (size_t)(t->shape[1] * t->shape[2]), C = (size_t)t->shape[3];
        rc = cs_grn(x, x, N, HW, C, g, b);
        if (!rc) rc = golden_check(c, "out.y", x, N * HW * C);
    }
    cs_free(x);
    cs_free(g);
    cs_free(b);
    return rc;
}

static int run_interpolate(gcase *c)
{
    json_t *cfg = golden_config(c), *size = cfg ? json_object_get(cfg, "size") : NULL;
    json_t *sf = cfg ? json_object_get(cfg, "scale_factor") : NULL;
    const char *mode = cfg ? json_string_value(json_object_get(cfg, "mode")) : NULL;
    int by_size = json_array_size(size) == 2, by_scale = !by_size && (json_is_number(sf) || json_array_size(sf) == 2);
    if (!mode || strcmp(mode, "bilinear") || !json_is_true(json_object_get(cfg, "align_corners")) || (!by_size && !by_scale))
        return cs_error(CS_EUNSUP, "%s: only bilinear, align_corners=True with a size or scale_factor is supported",
                        golden_path(c));
    size_t N, C, H, W, Ho = 0, Wo = 0;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W), *y = NULL;
    if (by_size) {
        Ho = (size_t)json_integer_value(json_array_get(size, 0));
        Wo = (size_t)json_integer_value(json_array_get(size, 1));
    } else if (x) {   /* torch: out = floor(in * scale); with align_corners the taps depend on sizes only */
        double sh = json_number_value(json_is_number(sf) ? sf : json_array_get(sf, 0));
        double sw = json_number_value(json_is_number(sf) ? sf : json_array_get(sf, 1));
        Ho = (size_t)floor((double)H * sh);
        Wo = (size_t)floor((double)W * sw);
    }
    if (x && (!Ho || !Wo)) {
        cs_free(x);
        return cs_error(CS_EFORMAT, "%s: output size %zux%zu", golden_path(c), Ho, Wo);
    }
    if (x) y = cs_alloc(N * C * Ho * Wo * sizeof(float));
    int rc = CS_ENOMEM;
    if (x && y) {
        cs_resize_bilinear(x, N, H, W, C, y, Ho, Wo);
        rc = check_image(c, y, N, C, Ho, Wo);
    }
    cs_free(x);
    cs_free(y);
    return rc;
}

static int run_shuffle(gcase *c, int down)
{
    int r = golden_cfg_int(c, down ? "downscale_factor" : "upscale_factor", 0);
    size_t N, C, H, W;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    if (!x) return CS_EFORMAT;
    if (r < 1 || (down && (H % (size_t)r || W % (size_t)r)) || (!down && C % (size_t)(r * r))) {
        cs_free(x);
        return cs_error(CS_EFORMAT, "%s: factor %d does not fit the input", golden_path(c), r);
    }
    float *y = cs_alloc(N * C * H * W * sizeof(float));
    int rc = CS_ENOMEM;
    size_t R = (size_t)r;
    if (y && down) {
        cs_pixel_unshuffle(x, N, H, W, C, r, y);
        rc = check_image(c, y, N, C * R * R, H / R, W / R);
    } else if (y) {
        cs_pixel_shuffle(x, N, H, W, C / (R * R), r, y);
        rc = check_image(c, y, N, C / (R * R), H * R, W * R);
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
    if (!w || w->ndim != 4) return cs_error(CS_EFORMAT, "%s: missing w.weight", golden_path(c));
    int stride = golden_cfg_int(c, "stride", 1), pad = golden_cfg_int(c, "padding", 0),
        groups = golden_cfg_int(c, "groups", 1);
    /* options the ops do not take: refuse rather than compute something else */
    if (stride < 1 || pad < 0 || golden_cfg_int(c, "dilation", 1) != 1 || golden_cfg_int(c, "output_padding", 0) != 0 ||
        (transposed && groups != 1))
        return cs_error(CS_EUNSUP, "%s: only dilation 1, output_padding 0 (and groups 1 when transposed) are supported",
                        golden_path(c));
    size_t N, C, H, W, Ho, Wo;
    float *x = golden_nhwc(c, "in.x", &N, &C, &H, &W);
    if (!x) return CS_EFORMAT;
    size_t Cout = (size_t)(transposed ? w->shape[1] : w->shape[0]), k = (size_t)w->shape[2];
    /* padding can make a conv's output larger than its input */
    size_t P2 = 2 * (size_t)pad,
           maxo = transposed ? ((H - 1) * (size_t)stride + k) * ((W - 1) * (size_t)stride + k) : (H + P2) * (W + P2);
    float *y = cs_alloc(N * Cout * maxo * sizeof(float));
    int rc = CS_ENOMEM;
    if (y) {
        rc = transposed ? cs_conv_transpose2d(x, N, H, W, C, w, b, stride, pad, y, &Ho, &Wo)
                        : cs_conv2d(x, N, H, W, C, w, b, stride, pad, groups, y, &Ho, &Wo);
        if (!rc) rc = check_image(c, y, N, Cout, Ho, Wo);
    }
    cs_free(x);
    cs_free(y);
    return rc;
}

static int run_conv2d(gcase *c) { return run_conv(c, 0); }
static int run_convt(gcase *c) { return run_conv(c, 1); }

static int run_r_embedding(gcase *c)
{
    const cs_tensor *t;
    float *r = golden_f32(c, "in.r", &t);
    if (!r) return CS_EFORMAT;
    int c_r = golden_cfg_int(c, "c_r", 64);
    size_t N = (size_t)cs_tensor_numel(t);
    float *e = cs_alloc(N * (size_t)c_r * sizeof(float));
    int rc = CS_ENOMEM;
    if (e && golden_cfg_int(c, "max_positions", 10000) != 10000)
        rc = cs_error(CS_EUNSUP, "%s: only max_positions 10000 is supported", golden_path(c));
    else if (e) {
        cs_r_embedding(r, N, c_r, e);
        rc = golden_check(c, "out.emb", e, N * (size_t)c_r);
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
