/* simd/x86/gemm_amx.c compiled over a software model of the AMX tile
 * instructions it uses, so that its loops, packing and edge handling are
 * checked on every AVX-512 CPU (tests/test_gemm_bf16.c against
 * cs_gemm_bf16_amx_ref), not only where AMX exists. The model is the one
 * simd/gemm_bf16.h states for TDPBF16PS (per 16-pair step an even and an
 * odd chain from +0, then acc + (e + o), DAZ/FTZ throughout), so a kernel
 * that walks its tiles right gives the reference's bits here; the real
 * instructions are checked against the same reference on an AMX CPU. */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef CS_HAVE_AMX   /* the kernel's source is guarded by it; the model needs no AMX compiler */
#define CS_HAVE_AMX 1
#endif
#include "amx_emul.h"
#include "gemm_bf16.h"

static _Thread_local struct {
    uint16_t colsb[8];   /* bytes a row */
    uint8_t rows[8];
    unsigned char t[8][1024];
} emu;

static void emu_loadconfig(const void *cfg)
{
    const unsigned char *c = cfg;
    for (int i = 0; i < 8; i++) {
        memcpy(&emu.colsb[i], c + 16 + 2 * i, 2);
        emu.rows[i] = c[48 + i];
    }
    memset(emu.t, 0, sizeof emu.t);
}

static void emu_release(void) { memset(&emu, 0, sizeof emu); }

static void emu_loadd(int i, const void *base, size_t stride)
{
    memset(emu.t[i], 0, 1024);
    for (int r = 0; r < emu.rows[i]; r++) memcpy(emu.t[i] + 64 * r, (const char *)base + r * stride, emu.colsb[i]);
}

static void emu_stored(int i, void *base, size_t stride)
{
    for (int r = 0; r < emu.rows[i]; r++) memcpy((char *)base + r * stride, emu.t[i] + 64 * r, emu.colsb[i]);
}

static float flush(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

/* C[i][j] += A row i (pairs) . B column j (rows of pairs) */
static void emu_dpbf16ps(int c, int a, int b)
{
    size_t M = emu.rows[c], N = emu.colsb[c] / 4, Q = emu.colsb[a] / 4;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            float e = 0.0f, o = 0.0f, acc;
            for (size_t q = 0; q < Q; q++) {
                uint32_t pa, pb;
                memcpy(&pa, emu.t[a] + 64 * i + 4 * q, 4);
                memcpy(&pb, emu.t[b] + 64 * q + 4 * j, 4);
                e = cs_bf16_dp_step(e, (uint16_t)pa, (uint16_t)pb);
                o = cs_bf16_dp_step(o, (uint16_t)(pa >> 16), (uint16_t)(pb >> 16));
            }
            memcpy(&acc, emu.t[c] + 64 * i + 4 * j, 4);
            acc = flush(flush(acc) + flush(e + o));
            memcpy(emu.t[c] + 64 * i + 4 * j, &acc, 4);
        }
}

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadconfig(cfg) emu_loadconfig(cfg)
#define _tile_release() emu_release()
#define _tile_loadd(i, base, stride) emu_loadd(i, base, (size_t)(stride))
#define _tile_stored(i, base, stride) emu_stored(i, base, (size_t)(stride))
#define _tile_zero(i) memset(emu.t[i], 0, 1024)
#define _tile_dpbf16ps(c, a, b) emu_dpbf16ps(c, a, b)
#define cs_gemm_bf16_amx cs_gemm_bf16_amx_emul
#define cs_gemm_bf16_amx_apacked cs_gemm_bf16_amx_emul_apacked

#include "x86/gemm_amx.c"
