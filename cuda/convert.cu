/* Small kernels of the core files: dtype conversion of weights (mem.c's
 * cache converts on the device, so the bus carries the file's bytes) and
 * the bias add of gemm.c when the GEMM's epilogue cannot do it. */
#include "core.h"

#include "error.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

static __device__ __forceinline__ float load_as_f32(const void *p, int dt, size_t i)
{
    if (dt == CS_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dt == CS_BF16) return __uint_as_float((uint32_t)h << 16);
    return __half2float(__ushort_as_half(h));
}

static __device__ __forceinline__ void store_from_f32(void *p, int dt, size_t i, float v)
{
    if (dt == CS_F32) ((float *)p)[i] = v;
    else if (dt == CS_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);   /* nearest even, NaN stays NaN */
    else ((__half *)p)[i] = __float2half_rn(v);
}

static __global__ void convert_kernel(const void *src, int sdt, void *dst, int ddt, size_t n)
{
    /* bf16 and f16 widen to f32 exactly, so one rounding at the store */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        store_from_f32(dst, ddt, i, load_as_f32(src, sdt, i));
}

static unsigned grid_for(size_t n, unsigned block)
{
    size_t g = (n + block - 1) / block;
    return g > 65535u * 16 ? 65535u * 16 : (unsigned)(g ? g : 1);
}

extern "C" int cs_cuda_convert(const void *src, int sdt, void *dst, int ddt, size_t n)
{
    if (!n) return 0;
    convert_kernel<<<grid_for(n, 256), 256, 0, cs_cuda_stream()>>>(src, sdt, dst, ddt, n);
    return cs_cuda_check_launch("a weight conversion");
}

static __global__ void add_bias_kernel(float *y, size_t ldy, const float *b, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / cols, c = i - r * cols;
        y[r * ldy + c] += b[c];
    }
}

extern "C" int cs_cuda_add_bias(float *y, size_t ldy, const float *b, size_t rows, size_t cols)
{
    if (!rows || !cols) return 0;
    add_bias_kernel<<<grid_for(rows * cols, 256), 256, 0, cs_cuda_stream()>>>(y, ldy, b, rows, cols);
    return cs_cuda_check_launch("a bias add");
}
