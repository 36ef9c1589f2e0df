/* What a generation starts from besides the prompt (cascade.h): LoRAs per
 * part, image-variation images, the img2img init image, and the demo's
 * extra networks they need; turned into the pipeline's parameters by
 * cascade_generate (cs_api_inputs_apply). */
#include "api.h"

#include "cancel.h"
#include "demo_vision.h"
#include "error.h"
#include "image_prep.h"
#include "init_image.h"
#include "tensor.h"
#include "weights.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int lora_slot(cascade_part part)
{
    return part == CASCADE_PART_STAGE_C ? 0 : part == CASCADE_PART_STAGE_B ? 1
                                        : part == CASCADE_PART_TEXT_ENCODER ? 2 : -1;
}

int cascade_add_lora(cascade_ctx *ctx, cascade_part part, const char *path, double strength)
{
    if (!ctx) return CASCADE_E_ARG;
    int k = lora_slot(part);
    if (k < 0)
        return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_add_lora: part %d takes no LoRA (Stage C, Stage B or "
                                                  "the text encoder)", (int)part));
    if (!path || !*path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_add_lora: no file name"));
    if (!isfinite(strength) || fabs(strength) > 1000)
        return cs_api_fail(ctx, cs_error(CS_EARG, "LoRA %s: strength %g is not a number in -1000..1000", path,
                                         strength));
    cs_lora_list *l = &ctx->lora_list[k];
    if (l->n == CS_API_MAX_LORA)
        return cs_api_fail(ctx, cs_error(CS_EARG, "LoRA %s: more than %d LoRAs for the %s", path, CS_API_MAX_LORA,
                                         cascade_part_title(part)));
    char *p = strdup(path);
    if (!p) return cs_api_fail(ctx, cs_oom("a LoRA path", strlen(path) + 1));
    ctx->lora[k][l->n] = (cs_lora){p, (float)strength, 0};
    l->v = ctx->lora[k];
    l->n++;
    ctx->pl_stale = 1;
    return 0;
}

void cascade_clear_loras(cascade_ctx *ctx)
{
    if (!ctx) return;
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < ctx->lora_list[k].n; i++) free((char *)ctx->lora[k][i].path);
        ctx->lora_list[k].n = 0;
    }
    ctx->pl_stale = 1;
}

int cs_api_lora_bytes(cascade_ctx *ctx, cs_choice_req *req)
{
    static const cs_part part[3] = {CS_PART_STAGE_C, CS_PART_STAGE_B, CS_PART_TEXT};
    for (int k = 0; k < 3; k++) {
        int rc = cs_lora_extra_bytes(&ctx->lora_list[k], &req->extra[part[k]]);
        if (rc) return cs_api_fail(ctx, rc);
    }
    return 0;
}

static int strength_ok(cascade_ctx *ctx, const char *what, double s)
{
    if (!isfinite(s) || s < -10 || s > 10)
        return cs_api_fail(ctx, cs_error(CS_EARG, "image %s: strength %g is not a number in -10..10", what, s));
    return 0;
}

/* a copy of rgb rows stride apart as a tight cs_image */
static int image_from_rgb(cascade_ctx *ctx, const unsigned char *rgb, int w, int h, size_t stride, cs_image *im)
{
    memset(im, 0, sizeof *im);
    if (!rgb || w < 1 || h < 1 || w > CS_IMAGE_MAX_SIDE || h > CS_IMAGE_MAX_SIDE || stride < (size_t)w * 3)
        return cs_api_fail(ctx, cs_error(CS_EARG, "RGB image %dx%d with stride %zu: not an image (1..%d pixels a "
                                                  "side, stride at least 3 x width)", w, h, stride, CS_IMAGE_MAX_SIDE));
    if (!(im->rgb = cs_alloc((size_t)w * h * 3))) return cs_api_fail(ctx, cs_oom("an RGB image", (size_t)w * h * 3));
    for (int r = 0; r < h; r++) memcpy(im->rgb + (size_t)r * w * 3, rgb + (size_t)r * stride, (size_t)w * 3);
    im->w = (size_t)w, im->h = (size_t)h;
    im->format = "RGB";
    return 0;
}

static int add_image(cascade_ctx *ctx, cs_image *im, const char *path, double strength)
{
    int rc = 0;
    size_t S = CS_CLIP_IMAGE, per = S * S * 3;
    if (ctx->n_img == CS_GEN_MAX_IMAGES)
        rc = cs_error(CS_EARG, "image %s: at most %d images", path ? path : "buffer", CS_GEN_MAX_IMAGES);
    float *px = rc ? NULL : realloc(ctx->img_pixels, (size_t)(ctx->n_img + 1) * per * sizeof(float));
    if (!rc && !px) rc = cs_oom("the input images", (size_t)(ctx->n_img + 1) * per * sizeof(float));
    if (px) ctx->img_pixels = px;
    if (!rc) rc = cs_clip_preprocess(im->rgb, im->h, im->w, (int)S, ctx->img_pixels + (size_t)ctx->n_img * per);
    if (!rc) {
        cs_api_input *in = &ctx->img[ctx->n_img];
        snprintf(in->file, sizeof in->file, "%s", path ? cs_basename(path) : "");
        in->xxh64 = path ? im->xxh64 : 0;
        in->w = (int)im->w, in->h = (int)im->h;
        in->strength = strength;
        ctx->img_strength[ctx->n_img++] = (float)strength;
    }
    cs_image_free(im);
    return rc ? cs_api_fail(ctx, rc) : 0;
}

int cascade_add_image(cascade_ctx *ctx, const char *path, double strength)
{
    if (!ctx) return CASCADE_E_ARG;
    if (!path) return cs_api_fail(ctx, cs_error(CS_EARG, "cascade_add_image: the path is NULL"));
    int rc = strength_ok(ctx, path, strength);
    cs_image im;
    if (rc) return rc;
    if ((rc = cs_image_read(path, &im)) != 0) return cs_api_fail(ctx, rc);
    return add_image(ctx, &im, path, strength);
}

int cascade_add_image_rgb(cascade_ctx *ctx, const unsigned char *rgb, int width, int height, size_t stride,
                          double strength)
{
    if (!ctx) return CASCADE_E_ARG;
    cs_image im;
    int rc = strength_ok(ctx, "buffer", strength);
    if (rc || (rc = image_from_rgb(ctx, rgb, width, height, stride, &im)) != 0) return rc;
    return add_image(ctx, &im, NULL, strength);
}

static void set_init(cascade_ctx *ctx, cs_image *im, const char *path)
{
    cs_image_free(&ctx->init);
    ctx->init = *im;
    cs_api_input *in = &ctx->init_info;
    snprintf(in->file, sizeof in->file, "%s", path ? cs_basename(path) : "");
    in->xxh64 = path ? im->xxh64 : 0;
    in->w = (int)im->w, in->h = (int)im->h;
}

int cascade_set_init_image(cascade_ctx *ctx, const char *path)
{
    if (!ctx) return CASCADE_E_ARG;
    cs_image im;
    if (!path) {
        cs_image_free(&ctx->init);
        return 0;
    }
    int rc = cs_image_read(path, &im);
    if (rc) return cs_api_fail(ctx, rc);
    set_init(ctx, &im, path);
    return 0;
}

int cascade_set_init_image_rgb(cascade_ctx *ctx, const unsigned char *rgb, int width, int height, size_t stride)
{
    if (!ctx) return CASCADE_E_ARG;
    cs_image im;
    int rc = image_from_rgb(ctx, rgb, width, height, stride, &im);
    if (rc) return rc;
    set_init(ctx, &im, NULL);
    return 0;
}

void cascade_clear_images(cascade_ctx *ctx)
{
    if (!ctx) return;
    free(ctx->img_pixels);
    ctx->img_pixels = NULL;
    ctx->n_img = 0;
    cs_image_free(&ctx->init);
}

/* the init image takes part: a KSampler's denoise decides, else a strength below 1 */
static int init_used(const cascade_ctx *ctx)
{
    return ctx->init.rgb && (ctx->sv[CASCADE_P_KSAMPLER_C] || ctx->fv[CASCADE_P_STRENGTH] < 1);
}

static json_t *input_obj(const cs_api_input *in, double strength)
{
    char hx[20] = "", size[48], st[32];
    if (in->file[0]) snprintf(hx, sizeof hx, "%016llx", in->xxh64);
    snprintf(size, sizeof size, "%dx%d", in->w, in->h);
    snprintf(st, sizeof st, "%g", strength);   /* 0.8, not 0.800000011920929 */
    return json_pack("{s:s, s:s, s:s, s:f}", "file", in->file, "xxh64", hx, "size", size, "strength",
                     strtod(st, NULL));
}

const char *cascade_input_json(cascade_ctx *ctx, int which)
{
    if (!ctx || (which != CASCADE_INPUT_IMAGES && which != CASCADE_INPUT_INIT)) return NULL;
    free(ctx->input_json[which]);
    ctx->input_json[which] = NULL;
    json_t *j = NULL;
    if (which == CASCADE_INPUT_IMAGES && ctx->n_img) {
        j = json_array();
        for (int i = 0; j && i < ctx->n_img; i++)
            json_array_append_new(j, input_obj(&ctx->img[i], (double)ctx->img_strength[i]));
    } else if (which == CASCADE_INPUT_INIT && init_used(ctx)) {
        j = input_obj(&ctx->init_info, ctx->fv[CASCADE_P_STRENGTH]);
    }
    if (j) ctx->input_json[which] = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(j);
    return ctx->input_json[which];
}

/* ---- the demo's extra networks ---- */

static int demo_extra(cascade_ctx *ctx, int k, const char *name, int (*write)(const char *), cascade_part part)
{
    if (ctx->demo_extra[k]) return 0;
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/%s", ctx->demo->dir, name);
    if (!(ctx->demo_extra[k] = strdup(path))) return cs_oom("a demo file name", strlen(path) + 1);
    ctx->demo_extra_hnd[k] = cs_cleanup_add(path, 0);
    int rc = write(path);
    if (!rc && !(ctx->model[part] = strdup(path))) rc = cs_oom("a demo file name", strlen(path) + 1);
    return rc;
}

int cs_api_demo_extras(cascade_ctx *ctx, int images, int init)
{
    if (!ctx->demo) return 0;
    int rc = 0;
    if (images && !ctx->model[CASCADE_PART_CLIP_VISION])
        rc = demo_extra(ctx, 0, "clip_vision_demo.safetensors", cs_demo_clip_vision_write, CASCADE_PART_CLIP_VISION);
    if (!rc && init && !ctx->model[CASCADE_PART_EFFNET])
        rc = demo_extra(ctx, 1, "effnet_demo.safetensors", cs_demo_effnet_write, CASCADE_PART_EFFNET);
    if (images || init) ctx->pl_stale = 1;
    return rc;
}

/* ---- into the pipeline's parameters ---- */

int cs_api_inputs_apply(cascade_ctx *ctx, cs_gen_params *g, float **init_rgb)
{
    *init_rgb = NULL;
    int rc = cs_api_demo_extras(ctx, ctx->n_img > 0, init_used(ctx));
    if (rc) return rc;
    if (ctx->n_img) {
        if (!ctx->model[CASCADE_PART_CLIP_VISION])
            return cs_error(CS_EMODEL, "image variation needs a CLIP vision model (ViT-L/14; "
                                       "cascade_set_model CASCADE_PART_CLIP_VISION) and none is set");
        g->n_images = ctx->n_img;
        g->image_size = CS_CLIP_IMAGE;
        g->image_pixels = ctx->img_pixels;
        g->image_strength = ctx->img_strength;
    }
    if (init_used(ctx)) {
        if (!ctx->model[CASCADE_PART_EFFNET])
            return cs_error(CS_EMODEL, "img2img needs the EfficientNet encoder (effnet_encoder.safetensors; "
                                       "cascade_set_model CASCADE_PART_EFFNET) and none is set");
        if ((rc = cs_init_image_prepare(ctx->init.rgb, ctx->init.w, ctx->init.h, g->width, g->height,
                                        ctx->iv[CASCADE_P_INIT_RESIZE] == CASCADE_RESIZE_COMFYUI, init_rgb)) != 0)
            return rc;
        g->init_rgb = *init_rgb;
        g->init_strength = ctx->fv[CASCADE_P_STRENGTH];
    }
    return 0;
}

void cs_api_inputs_free(cascade_ctx *ctx)
{
    cascade_clear_loras(ctx);
    cascade_clear_images(ctx);
    for (int k = 0; k < 2; k++) {
        free(ctx->input_json[k]);
        if (ctx->demo_extra[k]) {
            unlink(ctx->demo_extra[k]);
            cs_cleanup_del(ctx->demo_extra_hnd[k]);
            free(ctx->demo_extra[k]);
        }
    }
}
