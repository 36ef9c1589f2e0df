/* What the plugin's kernel files (kernels.cu, conv.cu, layout.cu) share:
 * launch shapes, grid-stride loops, warp and block sums, weight and scratch
 * lookups with their error reports. Conventions: cuda/kernels.cu's head. */
#ifndef CS_CUDA_LAUNCH_CUH
#define CS_CUDA_LAUNCH_CUH

#include "plugin.h"

extern "C" {
#include "error.h"
}

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- launch helpers ---- */

static inline cudaStream_t stream(void) { return (cudaStream_t)cs_cuda_stream(); }

#define BLOCK 256
#define MAX_GRID_X ((size_t)1 << 20)   /* blocks of a grid-stride launch; the loop does the rest */
#define MAX_GRID_YZ ((size_t)65535)
/* column buffers of the convolutions stay under this */
#ifndef COL_BYTES   /* tests shrink it to reach the chunked paths */
#define COL_BYTES ((size_t)256 << 20)
#endif

static inline unsigned grid_1d(size_t n, unsigned block)
{
    size_t g = (n + block - 1) / block;
    if (g < 1) g = 1;
    return (unsigned)(g < MAX_GRID_X ? g : MAX_GRID_X);
}

/* A launch over rows x cols (threads along the contiguous cols, several
 * rows per block when the rows are short); kernels stride over the rest. */
struct rc_shape {
    dim3 grid, block;
};

static inline rc_shape rc_launch(size_t rows, size_t cols)
{
    unsigned bx = 1;   /* a power of two: short rows share a warp (and stay coalesced, rows being contiguous) */
    while (bx < cols && bx < BLOCK) bx *= 2;
    unsigned by = BLOCK / bx;
    size_t gx = (cols + bx - 1) / bx, gy = (rows + by - 1) / by;
    if (gx > MAX_GRID_YZ) gx = MAX_GRID_YZ;
    if (gy > MAX_GRID_YZ) gy = MAX_GRID_YZ;
    rc_shape s;
    s.grid = dim3((unsigned)(gx ? gx : 1), (unsigned)(gy ? gy : 1));
    s.block = dim3(bx, by);
    return s;
}

#define RC_ROWS(r, rows) \
    for (size_t r = (size_t)blockIdx.y * blockDim.y + threadIdx.y; r < (rows); r += (size_t)gridDim.y * blockDim.y)
#define RC_COLS(c, cols) \
    for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < (cols); c += (size_t)gridDim.x * blockDim.x)
#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static inline int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static inline size_t dtype_bytes(int dt)
{
    switch (dt) {
    case CS_F64: return 8;
    case CS_F32: return 4;
    case CS_F16:
    case CS_BF16: return 2;
    case CS_F8_E4M3:
    case CS_F8_E5M2: return 1;
    default: return 0;
    }
}

static inline size_t numel(const cs_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* A weight's device float32 copy; on failure the reason is recorded for
 * errmsg() (the first failure wins, so one cs_cuda_weight already recorded
 * stays) and *rc is set. */
static inline const float *weight(const cs_tensor *t, int *rc)
{
    char err[200] = "";
    const float *p = (const float *)cs_cuda_weight(t, CS_F32, err, sizeof err);
    if (!p) {
        char what[300];
        snprintf(what, sizeof what, "%s: %s", t->name ? t->name : "weight", err[0] ? err : "no device copy");
        *rc = cs_cuda_fail(strstr(err, "memory") ? cudaErrorMemoryAllocation : cudaErrorInvalidValue, what);
    }
    return p;
}

static inline void *scratch(int slot, size_t bytes, const char *what, int *rc)
{
    void *p = cs_cuda_scratch(slot, bytes);
    if (!p) {
        char m[200];
        snprintf(m, sizeof m, "%s (%.1f MiB of scratch)", what, (double)bytes / 1048576.0);
        *rc = cs_cuda_fail(cudaErrorMemoryAllocation, m);
    }
    return p;
}

/* as many blocks of `threads` as stay resident with smem bytes each (a
 * memory-bound pass wants every warp slot busy), at most `want` */
template <typename K> static unsigned resident_grid(K kern, size_t want, int threads, size_t smem)
{
    static int sms = 0;
    if (!sms) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            v = 80, cudaGetLastError();
        sms = v > 0 ? v : 80;
    }
    int occ = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, threads, smem) != cudaSuccess || occ < 1)
        occ = 4, cudaGetLastError();
    size_t most = (size_t)sms * (size_t)occ;
    return (unsigned)(want < most ? (want ? want : 1) : most);
}

/* GELU, erf form (the fused kernels' epilogue-less passes) */
static __device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* ---- reductions ---- */

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;   /* the same bits in every lane (float addition commutes) */
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets it. sh: 32 floats of shared memory. */
static __device__ __forceinline__ float block_sum(float v, float *sh)
{
    unsigned lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float t = lane < nw ? sh[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();   /* sh is free again for the next call */
    return t;
}

#endif
