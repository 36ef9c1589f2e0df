/* Internals of the CUDA plugin (libcascade-cuda.so), shared by its files.
 *
 * Everything runs on one stream (cs_cuda_stream) in queue order; device
 * memory comes from the stream-ordered pool (cudaMallocAsync), so freeing
 * never waits. A failing CUDA call is recorded once (cs_cuda_fail): its
 * text is what the table's errmsg() returns. */
#ifndef CS_CUDA_PLUGIN_H
#define CS_CUDA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"

/* probe.cu: 1 if this plugin's fat binary has code the current device can
 * run (SASS for its architecture, or PTX it can compile), else 0 and why. */
int cs_cuda_has_image(char *why, size_t n);

/* ---- mem.c: memory, the weight cache, errors, precision ---- */
typedef struct CUstream_st *cs_cuda_stream_t;
cs_cuda_stream_t cs_cuda_stream(void);
int cs_cuda_mem_init(char *err, size_t n);     /* after cudaSetDevice */
void cs_cuda_mem_shutdown(void);
/* records "what: CUDA error text" (first failure wins until errmsg is read);
 * returns CS_ENOMEM for allocation failures, else CS_EDEVICE. e is a cudaError_t. */
int cs_cuda_fail(int e, const char *what);
/* 0 if the last launch queued fine, else cs_cuda_fail(..., what) */
int cs_cuda_check_launch(const char *what);
/* device copy of weight t converted to dtype (CS_F32, CS_BF16 or CS_F16),
 * made once, kept until forget(); NULL + reason in err */
const void *cs_cuda_weight(const cs_tensor *t, int dtype, char *err, size_t n);
/* per-slot scratch that grows (stream-ordered, contents not kept) */
void *cs_cuda_scratch(int slot, size_t bytes);
#define CS_CUDA_SCRATCH_SLOTS 22   /* 0-3: gemm.c, 4-5: attention, 6-7: kernels.cu (im2col, col), 8-10, 12-16,
                                      20-21: fused.cu (8, 9, 12, 20, 21 also stage_a.cu), 11: flash.cu, 17-18: grad.cu, 19: gemv.cu */
int cs_cuda_precision(void);               /* CS_PREC_* in force */
void *cs_cuda_alloc(size_t bytes);
void cs_cuda_free(void *p);

/* ---- gemm.c: products through cuBLASLt ---- */
int cs_cuda_gemm_init(char *err, size_t n);
void cs_cuda_gemm_shutdown(void);
int cs_cuda_linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                   size_t ldy, int accumulate);
int cs_cuda_sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                  size_t ldb, float beta, float *C, size_t ldc);

/* ---- attention.cu ---- */
int cs_cuda_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                      size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo);

/* ---- kernels.cu: everything else of cs_dev_ops ---- */
int cs_cuda_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);
int cs_cuda_fill(float *dst, float v, size_t n);
int cs_cuda_layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b);
int cs_cuda_unary(int kind, const float *x, float *y, size_t n);
int cs_cuda_add(const float *a, const float *b, float *y, size_t n);
int cs_cuda_scale(const float *x, float s, float *y, size_t n);
int cs_cuda_axpy(float *y, const float *x, float g, size_t n);
int cs_cuda_grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta);
int cs_cuda_modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                     size_t ldab);
int cs_cuda_channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t);
int cs_cuda_dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                      const cs_tensor *bias, int replicate);
int cs_cuda_conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                   const cs_tensor *bias, int stride, int pad, int groups, float *y, size_t Ho, size_t Wo);
int cs_cuda_conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                             const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo);
int cs_cuda_resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo);
int cs_cuda_pixel_shuffle(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y);
int cs_cuda_transpose(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW);
int cs_cuda_concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows);
int cs_cuda_embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out);
int cs_cuda_r_embed(const float *r, size_t N, int c_r, const float *freq, float *emb);
/* float32 -> bf16 / f16 (gemm.c and attention.cu feed tensor cores with it) */
int cs_cuda_f32_to_bf16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx);
int cs_cuda_f32_to_f16(const float *x, uint16_t *y, size_t rows, size_t cols, size_t ldx);

#ifdef __cplusplus
}
#endif

#endif
