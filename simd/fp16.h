/* Scalar conversions between float32 and the 16-bit float types (the
 * vector versions are in the kernel table, simd/kernels.h). */
#ifndef CS_FP16_H
#define CS_FP16_H

#include <stdint.h>

static inline float cs_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
uint16_t cs_f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */
float cs_f16_to_f32(uint16_t h);
uint16_t cs_f32_to_f16(float f);    /* round to nearest even */

#endif
