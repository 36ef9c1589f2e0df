/* `cascade generate --image FILE[:STRENGTH]`: the input images of an image
 * variation, read and CLIP-preprocessed before any model is loaded (a bad
 * image fails fast), and described for the PNG metadata. */
#include "generate.h"

#include "error.h"
#include "image_in.h"
#include "image_prep.h"
#include "tensor.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gen_image_arg(const char *arg, char *path, size_t len, float *strength)
{
    /* FILE:STRENGTH when what follows the last ':' looks like a number (so
     * file names with colons still work); a number out of range is an error */
    const char *colon = strrchr(arg, ':');
    *strength = 1.0f;
    size_t n = strlen(arg);
    if (colon && colon[1] && strspn(colon + 1, "0123456789.+-eE") == strlen(colon + 1)) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (*end || !isfinite(v) || v < GEN_IMAGE_MIN_STRENGTH || v > GEN_IMAGE_MAX_STRENGTH) {
            fprintf(stderr, "cascade generate: --image %s: strength '%s' is not a number in %g..%g\n", arg, colon + 1,
                    GEN_IMAGE_MIN_STRENGTH, GEN_IMAGE_MAX_STRENGTH);
            return -1;
        }
        *strength = (float)v;
        n = (size_t)(colon - arg);
    }
    if (!n || n >= len) {
        fprintf(stderr, "cascade generate: --image '%s': %s\n", arg, n ? "path too long" : "no file name");
        return -1;
    }
    memcpy(path, arg, n);
    path[n] = 0;
    return 0;
}

int gen_images_load(char (*paths)[GEN_PATH], const float *strength, int n, gen_images *out)
{
    memset(out, 0, sizeof *out);
    size_t S = CS_CLIP_IMAGE, per = S * S * 3;
    out->pixels = cs_alloc((size_t)n * per * sizeof(float));
    json_t *arr = json_array();
    if (!out->pixels || !arr) {
        json_decref(arr);
        gen_images_free(out);
        return cs_oom("the input images", (size_t)n * per * sizeof(float));
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        cs_image im;
        if ((rc = cs_image_read(paths[i], &im)) != 0) break;
        rc = cs_clip_preprocess(im.rgb, im.h, im.w, (int)S, out->pixels + (size_t)i * per);
        char hx[20], size[48], st[32];
        snprintf(st, sizeof st, "%g", (double)strength[i]);   /* 0.8, not 0.800000011920929 */
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)im.xxh64);
        snprintf(size, sizeof size, "%zux%zu", im.w, im.h);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:f}", "file", cs_basename(paths[i]), "xxh64", hx,
                                             "size", size, "strength", strtod(st, NULL)));
        out->strength[i] = strength[i];
        cs_image_free(&im);
    }
    out->json = rc ? NULL : json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(arr);
    if (!rc && !out->json) rc = cs_oom("the image metadata", 0);
    if (rc) {
        gen_images_free(out);
        return rc;
    }
    out->n = n;
    out->size = (int)S;
    return 0;
}

void gen_images_free(gen_images *im)
{
    cs_free(im->pixels);
    free(im->json);
    memset(im, 0, sizeof *im);
}

/* ComfyUI's StableCascade_StageC_VAEEncode: common_upscale(image, Wt, Ht,
 * "bicubic", "center"): the image cropped to the target's aspect (offsets
 * Python-rounded), then torch's plain bicubic to the target size */
static int comfy_resize(const float *x, size_t H, size_t W, float *y, size_t Ht, size_t Wt)
{
    double oa = (double)W / (double)H, na = (double)Wt / (double)Ht;
    size_t cx = 0, cy = 0;
    if (oa > na)
        cx = (size_t)nearbyint((W - W * (na / oa)) / 2);
    else if (oa < na)
        cy = (size_t)nearbyint((H - H * (oa / na)) / 2);
    size_t h = H - 2 * cy, w = W - 2 * cx;
    float *c = cs_alloc(h * w * 3 * sizeof(float));
    if (!c)
        return cs_oom("the init image", h * w * 3 * sizeof(float));
    for (size_t r = 0; r < h; r++)
        memcpy(c + r * w * 3, x + ((cy + r) * W + cx) * 3, w * 3 * sizeof(float));
    int rc = cs_resize_bicubic_torch(c, h, w, 3, y, Ht, Wt);
    cs_free(c);
    return rc;
}

int gen_init_image_load(const char *path, double strength, int width, int height, int comfy, gen_init *out)
{
    memset(out, 0, sizeof *out);
    cs_image im;
    int rc = cs_image_read(path, &im);
    if (rc) return rc;
    /* cover the Stage C latent's pixel size (32 per latent pixel), then centre crop */
    size_t Wt = 32 * (size_t)cs_latent_c(width), Ht = 32 * (size_t)cs_latent_c(height);
    double f = (double)Wt / (double)im.w > (double)Ht / (double)im.h ? (double)Wt / (double)im.w
                                                                        : (double)Ht / (double)im.h;
    size_t Wr = (size_t)(im.w * f + 0.5), Hr = (size_t)(im.h * f + 0.5);
    if (Wr < Wt) Wr = Wt;
    if (Hr < Ht) Hr = Ht;
    if (comfy)
        Wr = Wt, Hr = Ht;
    float *x = cs_alloc(im.w * im.h * 3 * sizeof(float)), *y = cs_alloc(Wr * Hr * 3 * sizeof(float));
    out->rgb = cs_alloc(Wt * Ht * 3 * sizeof(float));
    if (!x || !y || !out->rgb) rc = cs_oom("the init image", (im.w * im.h + Wr * Hr + Wt * Ht) * 3 * sizeof(float));
    for (size_t i = 0; !rc && i < im.w * im.h * 3; i++) x[i] = (float)im.rgb[i] / 255.0f;
    if (!rc) rc = comfy ? comfy_resize(x, im.h, im.w, y, Ht, Wt) : cs_resize_bicubic_aa(x, im.h, im.w, 3, y, Hr, Wr);
    size_t top = (Hr - Ht) / 2, left = (Wr - Wt) / 2;
    for (size_t r = 0; !rc && r < Ht; r++)
        memcpy(out->rgb + r * Wt * 3, y + ((top + r) * Wr + left) * 3, Wt * 3 * sizeof(float));
    char hx[20], size[48], st[32];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)im.xxh64);
    snprintf(size, sizeof size, "%zux%zu", im.w, im.h);
    snprintf(st, sizeof st, "%g", strength);
    json_t *o = rc ? NULL : json_pack("{s:s, s:s, s:s, s:f}", "file", cs_basename(path), "xxh64", hx, "size", size,
                                      "strength", strtod(st, NULL));
    out->json = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    if (!rc && !out->json) rc = cs_oom("the image metadata", 0);
    cs_free(x);
    cs_free(y);
    cs_image_free(&im);
    if (rc) gen_init_free(out);
    return rc;
}

void gen_init_free(gen_init *g)
{
    cs_free(g->rgb);
    free(g->json);
    memset(g, 0, sizeof *g);
}
