/* Training inputs through the encoders: an image at its bucket through
 * EffNet, a caption through CLIP-G (dscache.h). */
#include "dscache.h"
#include "cond.h"
#include "effnet.h"
#include "error.h"
#include "image_in.h"
#include "image_prep.h"
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

int cs_ds_effnet_input(const cs_ds_image *im, int flip, float *x)
{
    size_t bw = (size_t)im->bucket_w, bh = (size_t)im->bucket_h, rw = (size_t)im->resized_w, rh = (size_t)im->resized_h;
    if (!bw || !bh || rw < bw || rh < bh) return cs_error(CS_EARG, "%s: no bucket assigned", im->path);
    cs_image img;
    int rc = cs_image_read(im->path, &img);
    if (rc) return rc;
    if (img.xxh64 != im->xxh64 || img.w != (size_t)im->width || img.h != (size_t)im->height) {
        cs_image_free(&img);
        return cs_error(CS_EIO, "%s: the file changed since the data set was scanned", im->path);
    }
    size_t n = img.w * img.h * 3;
    float *a = malloc(n * sizeof *a), *r = a;
    if (!a) {
        cs_image_free(&img);
        return cs_oom("image", n * sizeof *a);
    }
    for (size_t i = 0; i < n; i++) a[i] = img.rgb[i] / 255.0f;
    cs_image_free(&img);
    if (rw != (size_t)im->width || rh != (size_t)im->height) {
        if (!(r = malloc(rw * rh * 3 * sizeof *r))) rc = cs_oom("image", rw * rh * 3 * sizeof *r);
        else rc = cs_resize_bicubic_aa(a, (size_t)im->height, (size_t)im->width, 3, r, rh, rw);
    }
    if (!rc) {
        size_t ox = (rw - bw) / 2, oy = (rh - bh) / 2;
        for (size_t y = 0; y < bh; y++)
            for (size_t c = 0; c < bw; c++) {
                size_t sx = ox + (flip ? bw - 1 - c : c);
                memcpy(x + (y * bw + c) * 3, r + ((oy + y) * rw + sx) * 3, 3 * sizeof *x);
            }
        cs_effnet_preprocess(x, x, bw * bh);
    }
    if (r != a) free(r);
    free(a);
    return rc;
}

int cs_ds_latent(const cs_effnet *m, const cs_ds_image *im, int flip, float *latent)
{
    size_t n = (size_t)im->bucket_w * (size_t)im->bucket_h * 3;
    float *x = cs_alloc(n * sizeof *x);
    if (!x) return cs_oom("EffNet input", n * sizeof *x);
    int rc = cs_ds_effnet_input(im, flip, x);
    if (!rc) rc = cs_effnet_forward(m, x, 1, (size_t)im->bucket_h, (size_t)im->bucket_w, latent);
    cs_free(x);
    return rc;
}

int cs_ds_text(const cs_clip *m, const cs_tokenizer *tok, const char *caption, float *text, float *pooled)
{
    cs_cond c;
    memset(&c, 0, sizeof c);
    int rc = cs_cond_encode(m, tok, CS_PROMPT_OFFICIAL, caption, NULL, "caption", NULL, NULL, &c);
    if (rc) return rc;
    const cs_clip_config *cfg = cs_clip_get_config(m);
    memcpy(text, c.text, c.Lt * (size_t)cfg->width * sizeof *text);
    memcpy(pooled, c.pooled, (size_t)cfg->proj * sizeof *pooled);
    cs_cond_free(&c);
    return 0;
}
