/* MT19937 + torch's two Box-Muller paths; see rng.h and doc/reference.md. */
#include "rng.h"

#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MT_M 397
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu
#define MT_MATRIX_A 0x9908b0dfu

static const double CS_PI = 3.14159265358979323846;

void cs_rng_seed(cs_rng *r, uint64_t seed)
{
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int i = 1; i < CS_MT_N; i++) {
        uint32_t p = r->mt[i - 1];
        r->mt[i] = 1812433253u * (p ^ (p >> 30)) + (uint32_t)i;
    }
    r->mti = CS_MT_N;
    r->has_normal = 0;
    r->next_normal = 0.0;
}

static void mt_twist(cs_rng *r)
{
    uint32_t *mt = r->mt;
    for (int i = 0; i < CS_MT_N; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % CS_MT_N] & MT_LOWER);
        uint32_t v = mt[(i + MT_M) % CS_MT_N] ^ (y >> 1);
        if (y & 1u)
            v ^= MT_MATRIX_A;
        mt[i] = v;
    }
    r->mti = 0;
}

uint32_t cs_rng_u32(cs_rng *r)
{
    if (r->mti >= CS_MT_N)
        mt_twist(r);
    uint32_t y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* torch uniform_real_distribution<float>: low 24 bits of one output. */
static float uniform24(cs_rng *r)
{
    return (float)(cs_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>: 53 low bits of (first << 32 | second). */
static double uniform53(cs_rng *r)
{
    uint64_t hi = cs_rng_u32(r);
    uint64_t lo = cs_rng_u32(r);
    uint64_t v = (hi << 32) | lo;
    return (double)(v & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* Box-Muller over 16 uniforms in place: pairs (k, k+8), float arithmetic
 * except theta, which torch forms in double and rounds. */
static void box_muller16(float *d)
{
    for (int k = 0; k < 8; k++) {
        float u1 = 1.0f - d[k];             /* [0,1) -> (0,1] for the log */
        float u2 = d[k + 8];
        float rad = sqrtf(-2.0f * logf(u1));
        float theta = (float)(2.0 * CS_PI * (double)u2);
        d[k] = rad * cosf(theta);
        d[k + 8] = rad * sinf(theta);
    }
}

static float small_normal(cs_rng *r)
{
    if (r->has_normal) {
        r->has_normal = 0;
        return (float)r->next_normal;
    }
    double u1 = uniform53(r);
    double u2 = uniform53(r);
    double rad = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * CS_PI * u1;
    r->next_normal = rad * sin(theta);
    r->has_normal = 1;
    return (float)(rad * cos(theta));
}

int cs_rng_randn(cs_rng *r, float *out, size_t n)
{
    if (!r || (!out && n))
        return cs_error(CS_EARG, "rng: randn: null generator or buffer");
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            out[i] = small_normal(r);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = uniform24(r);
    for (size_t j = 0; j + 16 <= n; j += 16)
        box_muller16(out + j);
    if (n % 16) {
        /* torch redoes the last 16 outputs from fresh uniforms */
        float *t = out + n - 16;
        for (int i = 0; i < 16; i++)
            t[i] = uniform24(r);
        box_muller16(t);
    }
    return 0;
}

int cs_rng_randn_nhwc(cs_rng *r, float *out, size_t n, size_t c, size_t h, size_t w)
{
    size_t hw = h * w, total = n * c * hw;
    if (!total)
        return cs_rng_randn(r, out, 0);
    if (c == 1 || hw == 1)
        return cs_rng_randn(r, out, total);
    float *tmp = malloc(total * sizeof *tmp);
    if (!tmp)
        return cs_error(CS_ENOMEM, "rng: randn: out of memory for %zu values", total);
    int rc = cs_rng_randn(r, tmp, total);
    if (rc == 0) {
        for (size_t b = 0; b < n; b++) {
            const float *src = tmp + b * c * hw;
            float *dst = out + b * c * hw;
            for (size_t ch = 0; ch < c; ch++)
                for (size_t p = 0; p < hw; p++)
                    dst[p * c + ch] = src[ch * hw + p];
        }
    }
    free(tmp);
    return rc;
}

int cs_rng_noise(void *ctx, float *out, size_t n)
{
    return cs_rng_randn((cs_rng *)ctx, out, n);
}

int cs_rng_noise_nhwc(void *ctx, float *out, size_t n)
{
    cs_rng_nhwc *z = ctx;
    size_t per = z->c * z->h * z->w;
    if (!per || n % per) return cs_error(CS_EARG, "noise: %zu values is not a whole number of images", n);
    return cs_rng_randn_nhwc(z->rng, out, n / per, z->c, z->h, z->w);
}
