/* Image preprocessing on the host: PyTorch-compatible antialiased bicubic
 * resize and CLIP's preprocessing (short side to 224, centre crop, mean/std).
 *
 * Images are channels-last float32 [H, W, C] (uint8 [H, W, 3] at the input
 * of cs_clip_preprocess). */
#ifndef CS_IMAGE_PREP_H
#define CS_IMAGE_PREP_H

#include <stddef.h>
#include <stdint.h>

/* y[Ho, Wo, C] = x[H, W, C] resized like torch.nn.functional.interpolate(
 * mode="bicubic", antialias=True, align_corners=False) with an explicit
 * size: a separable filter, width first, then height; a dimension whose
 * size does not change is copied. Returns 0 or CS_ENOMEM / CS_EARG. */
int cs_resize_bicubic_aa(const float *x, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo);

/* The same without antialias (torch's plain bicubic, A = -0.75, source
 * x = (i + 0.5) * in / out - 0.5, the 4 taps clamped at the edges): what
 * ComfyUI's common_upscale(..., "bicubic", ...) does, in float. */
int cs_resize_bicubic_torch(const float *x, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo);

/* CLIP's input size and normalisation (openai/clip-vit-large-patch14). */
#define CS_CLIP_IMAGE 224

/* rgb[H, W, 3] uint8 -> out[size, size, 3] float32, channels-last:
 * /255, bicubic-antialias resize so the short side is `size` (the long side
 * int(long*size/short)), centre crop (offsets round-half-even of the
 * excess / 2, as Python's round), then (x - mean) / std per channel. */
int cs_clip_preprocess(const uint8_t *rgb, size_t H, size_t W, int size, float *out);

#endif
