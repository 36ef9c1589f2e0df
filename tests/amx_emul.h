/* The AMX kernel over a software model of its tile instructions
 * (tests/amx_emul.c): needs AVX-512 (its packing), not AMX. */
#ifndef CS_TESTS_AMX_EMUL_H
#define CS_TESTS_AMX_EMUL_H

#include "gemm_bf16.h"

void cs_gemm_bf16_amx_emul(size_t M, size_t N, size_t K, const float *A, size_t lda, const uint32_t *Bp,
                           size_t pstride, float *C, size_t ldc, int cont);
extern const cs_gemm_bf16_apacked cs_gemm_bf16_amx_emul_apacked;

#endif
