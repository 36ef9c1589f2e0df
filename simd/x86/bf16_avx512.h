/* Helpers shared by the AVX-512 bf16 GEMM kernels (gemm_bf16_avx512.c,
 * gemm_amx.c); include only from files compiled with AVX-512 enabled. */
#ifndef CS_SIMD_BF16_AVX512_H
#define CS_SIMD_BF16_AVX512_H

#include <immintrin.h>
#include <stddef.h>

/* a mask of the first r lanes, 0 <= r <= 16 */
static inline __mmask16 tmask(size_t r) { return (__mmask16)((1u << r) - 1u); }

/* 16 floats rounded to bf16, to nearest even, NaN quieted (as
 * cs_f32_to_bf16: (u >> 16) | 0x40), in the high halves of the lanes (the
 * low halves are garbage: shift or mask them off) */
static inline __m512i round_bf16_hi(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
}

/* 16 floats -> 16 bf16 (as round_bf16_hi) */
static inline __m256i round_bf16(__m512 x) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(round_bf16_hi(x), 16)); }

#endif
