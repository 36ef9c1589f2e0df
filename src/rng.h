/* torch-CPU-compatible normal random numbers (doc/reference.md).
 *
 * cs_rng_seed(&r, S) followed by cs_rng_randn(&r, buf, n) reproduces
 * `torch.manual_seed(S); torch.randn(n)` on PyTorch's CPU generator, float32,
 * with successive calls continuing the stream like successive torch.randn
 * calls. Values agree to ~1e-6 (libm log/sin/cos rounding), the stream itself
 * is exact.
 *
 * Two paths, as in torch:
 *   n >= 16: n 24-bit uniforms, then float Box-Muller over blocks of 16
 *            (u[k] with u[k+8]); if n % 16 != 0 the last 16 outputs are redone
 *            from 16 fresh uniforms.
 *   n <  16: one value at a time from a double Box-Muller on 53-bit uniforms;
 *            the pair's second value is cached in the generator and used by
 *            the next small draw (seeding clears it).
 *
 * Layout: values come out in the order torch fills a contiguous tensor, i.e.
 * NCHW for image-shaped draws. cs_rng_randn_nhwc() draws in that order and
 * stores channels-last, so an NHWC engine sees the same noise per pixel. */
#ifndef CS_RNG_H
#define CS_RNG_H

#include <stddef.h>
#include <stdint.h>

#define CS_MT_N 624

typedef struct {
    uint32_t mt[CS_MT_N];
    int mti;             /* next index into mt; CS_MT_N = regenerate */
    int has_normal;      /* cached second value of the small-draw path */
    double next_normal;
} cs_rng;

/* Seeds like torch.manual_seed: MT19937 init_genrand(seed & 0xFFFFFFFF). */
void cs_rng_seed(cs_rng *r, uint64_t seed);
/* Next raw 32-bit MT19937 output. */
uint32_t cs_rng_u32(cs_rng *r);
/* n standard normals in torch's order. Returns 0 or CS_EARG. */
int cs_rng_randn(cs_rng *r, float *out, size_t n);
/* Draws n*c*h*w normals in NCHW order and stores them as [n,h,w,c]. */
int cs_rng_randn_nhwc(cs_rng *r, float *out, size_t n, size_t c, size_t h, size_t w);

/* Noise-source adapter for the sampler (cs_noise_fn): ctx is a cs_rng *. */
int cs_rng_noise(void *ctx, float *out, size_t n);
/* The same for latents of c channels at h x w, drawn in NCHW order (as
 * torch.randn of the official code) and stored as [n,h,w,c]: ctx is a
 * cs_rng_nhwc; n must be a whole number of latents. */
typedef struct {
    cs_rng *rng;
    size_t c, h, w;
} cs_rng_nhwc;
int cs_rng_noise_nhwc(void *ctx, float *out, size_t n);

#endif
