/* Tensors, dtypes, their conversions and aligned memory.
 *
 * Internal layout (all activations): float32, channels-last.
 *   images  [N, H, W, C]   row-major, C contiguous
 *   tokens  [N, L, C]      row-major, C contiguous
 * Why: Stage B/C are mostly per-pixel Linear layers over channels, which are
 * then a single GEMM over N*H*W rows with no transposes; LayerNorm2d,
 * depthwise convs and the modulations all vectorise along contiguous C; the
 * attention tokens are the pixel rows themselves. NCHW appears only at the
 * edges (golden files, PyTorch-layout weights are read as they are).
 *
 * Weights stay in the file's dtype (F32/BF16/F16), pointing into the mmap. */
#ifndef CS_TENSOR_H
#define CS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CS_F32, CS_F16, CS_BF16, CS_F64,
    CS_I64, CS_I32, CS_I16, CS_I8, CS_U8, CS_BOOL,
    CS_U16, CS_U32, CS_U64, CS_F8_E4M3, CS_F8_E5M2,
    CS_DTYPE_COUNT
} cs_dtype;

#define CS_MAX_DIMS 8

/* A view of n-d data it does not own (weights in an mmap, or activations). */
typedef struct {
    cs_dtype dtype;
    int ndim;
    int64_t shape[CS_MAX_DIMS];
    const void *data;   /* may be unaligned (safetensors gives no alignment promise) */
    const char *name;   /* tensor name, for messages; may be NULL */
} cs_tensor;

size_t cs_dtype_size(cs_dtype t);
const char *cs_dtype_name(cs_dtype t);        /* safetensors spelling: "F32", "BF16", ... */
int cs_dtype_from_name(const char *s);        /* -1 if unknown */
int64_t cs_tensor_numel(const cs_tensor *t);
/* "[a,b,c]" into buf. */
const char *cs_shape_str(const cs_tensor *t, char *buf, size_t len);
/* Converts a float tensor (F32/BF16/F16) to float32 into out (numel floats).
 * Integer tensors (I64/I32/U8) are converted by value. */
int cs_tensor_to_f32(const cs_tensor *t, float *out);
/* Same, allocated with cs_alloc (free with cs_free); NULL + cs_error on failure. */
float *cs_tensor_f32_dup(const cs_tensor *t);

/* Scalar conversions: simd/fp16.h (the vector versions are in the kernel table). */
#include "fp16.h"

/* 64-byte aligned heap memory. */
void *cs_alloc(size_t bytes);           /* NULL on failure */
void *cs_calloc(size_t bytes);
void cs_free(void *p);

#endif
