/* img2img's input picture (doc/reference.md): an RGB image made into the
 * [32*hc, 32*wc, 3] floats in [0,1] that the EfficientNet encoder reads
 * for a width x height output (hc, wc: the Stage C latent size). */
#ifndef CS_INIT_IMAGE_H
#define CS_INIT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* rgb [h, w, 3]. comfy 0: resized with bicubic + antialias so it covers
 * that size, then centre-cropped (the official notebook's preprocessing);
 * comfy 1: as ComfyUI's StableCascade_StageC_VAEEncode (cropped to the
 * aspect, then plain bicubic, values not clamped). *out: cs_alloc'ed. */
int cs_init_image_prepare(const uint8_t *rgb, size_t w, size_t h, int width, int height, int comfy, float **out);

#endif
