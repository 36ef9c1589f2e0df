/* img2img's input picture resized for the EfficientNet encoder (see
 * init_image.h): the official cover-and-crop, or ComfyUI's crop-and-resize. */
#include "init_image.h"

#include "error.h"
#include "image_prep.h"
#include "models.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

/* ComfyUI's common_upscale(image, Wt, Ht, "bicubic", "center"): the image
 * cropped to the target's aspect (offsets Python-rounded), then torch's
 * plain bicubic to the target size */
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

int cs_init_image_prepare(const uint8_t *rgb, size_t w, size_t h, int width, int height, int comfy, float **out)
{
    *out = NULL;
    /* cover the Stage C latent's pixel size (32 per latent pixel), then centre crop */
    size_t Wt = 32 * (size_t)cs_latent_c(width), Ht = 32 * (size_t)cs_latent_c(height);
    double f = (double)Wt / (double)w > (double)Ht / (double)h ? (double)Wt / (double)w : (double)Ht / (double)h;
    size_t Wr = (size_t)(w * f + 0.5), Hr = (size_t)(h * f + 0.5);
    if (Wr < Wt) Wr = Wt;
    if (Hr < Ht) Hr = Ht;
    if (comfy)
        Wr = Wt, Hr = Ht;
    int rc = 0;
    float *x = cs_alloc(w * h * 3 * sizeof(float)), *y = cs_alloc(Wr * Hr * 3 * sizeof(float));
    float *o = cs_alloc(Wt * Ht * 3 * sizeof(float));
    if (!x || !y || !o) rc = cs_oom("the init image", (w * h + Wr * Hr + Wt * Ht) * 3 * sizeof(float));
    for (size_t i = 0; !rc && i < w * h * 3; i++) x[i] = (float)rgb[i] / 255.0f;
    if (!rc) rc = comfy ? comfy_resize(x, h, w, y, Ht, Wt) : cs_resize_bicubic_aa(x, h, w, 3, y, Hr, Wr);
    size_t top = (Hr - Ht) / 2, left = (Wr - Wt) / 2;
    for (size_t r = 0; !rc && r < Ht; r++)
        memcpy(o + r * Wt * 3, y + ((top + r) * Wr + left) * 3, Wt * 3 * sizeof(float));
    cs_free(x);
    cs_free(y);
    if (rc) cs_free(o);
    else *out = o;
    return rc;
}
