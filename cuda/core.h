/* Declarations shared by the plugin's core files (mem.c, gemm.c,
 * attention.cu, convert.cu, plugin.c) beyond cuda/plugin.h, which stays the
 * interface with kernels.cu. */
#ifndef CS_CUDA_CORE_H
#define CS_CUDA_CORE_H

#include "plugin.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- mem.c: the table entries that are not ops ---- */
int cs_cuda_upload(void *dst, const void *host, size_t bytes);
int cs_cuda_download(void *host, const void *src, size_t bytes);
int cs_cuda_sync(void);
const float *cs_cuda_weight_f32(const cs_tensor *t, char *err, size_t n);
/* cs_dev_ops.weight_rw: the float32 copy made writable (the device owns its values) */
float *cs_cuda_weight_rw(const cs_tensor *t, char *err, size_t n);
void cs_cuda_forget(const void *host, size_t bytes);
/* cs_dev_ops.weight_to_f32: [off, off + n) of t widened from its copy in t's own dtype */
int cs_cuda_weight_to_f32(const cs_tensor *t, size_t off, size_t n, float *dst, char *err, size_t errlen);
int cs_cuda_set_precision(int prec);
/* float32 products on TF32 tensor cores (1) or in float32 (0): the cuBLAS
 * handle's math mode and the cuBLASLt plans' compute type */
int cs_cuda_gemm_tf32(int on);
/* a side-by-side timing switch: 0 when $name is "0", else 1 (read once
 * into *cache, which starts at -1) */
int cs_cuda_env_on(const char *name, int *cache);
size_t cs_cuda_mem_peak(int reset);
const char *cs_cuda_errmsg(void);
/* why this thread's last cs_cuda_weight() returned NULL (a CS_E* code) */
int cs_cuda_weight_rc(void);
/* the device's compute capability as 10 * major + minor (90 for sm_90) */
int cs_cuda_cc(void);
/* like cs_cuda_fail for failures that are no cudaError_t (cuBLAS, bad
 * sizes): records the printf-style text as is, returns code */
int cs_cuda_fail_text(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* graphs (cs_dev_ops' optional calls) */
int cs_cuda_graph_begin(void);
int cs_cuda_graph_end(void **graph);
int cs_cuda_graph_launch(void *graph);
void cs_cuda_graph_free(void *graph);

/* ---- gemv.cu ---- */
#define CS_CUDA_SMALL_M 8
/* longer rows go to cuBLASLt: a warp's serial walk along K is bound by the
 * loads' latency (H100, Stage B lite's K = 1152, M = 8 mappers: 19-36 us a
 * call under ncu, 3 ms of a forward; bench/RESULTS-cuda.md) */
#define CS_CUDA_SMALL_K 256
/* y = x W^T (+ y if accumulate) (+ b) for M <= CS_CUDA_SMALL_M rows in one
 * kernel: x float32 (row stride ldx), w the cached [N, K] weight in wdt
 * (CS_BF16 or CS_F16), b float32 or NULL, y float32 (row stride ldy);
 * CS_EUNSUP (nothing queued) otherwise */
int cs_cuda_linear_small(const float *x, size_t M, size_t K, size_t ldx, const void *w, int wdt, const float *b,
                         float *y, size_t ldy, size_t N, int accumulate);

/* cs_dev_ops.ts_block in bf16/fp16 (the mappers in one kernel, then the
 * modulation); CS_EUNSUP (nothing queued) in fp32 or past N = CS_CUDA_SMALL_M */
int cs_cuda_ts_block(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                     const cs_tensor *w, const cs_tensor *b);

/* ---- upload.c ---- */
/* dst (device) = bytes of host, stream-ordered, through pinned staging from
 * 4 MiB on; the host data may go when it returns */
int cs_cuda_upload_staged(void *dst, const void *host, size_t bytes);
void cs_cuda_upload_shutdown(void);

/* ---- gemm.c: the cuBLAS handle (on cs_cuda_stream), for attention.cu ---- */
struct cublasContext;
struct cublasContext *cs_cuda_blas(void);
/* records "cuBLAS: <status> in what"; CS_ENOMEM for allocation failures,
 * else CS_EDEVICE. s is a cublasStatus_t. */
int cs_cuda_blas_fail(int s, const char *what);

/* y = x16 W^T (+ y if accumulate) (+ b): x16 dense [M, K] in the 16-bit
 * type of the precision in force; y float32, or bf16 (ybf16, bf16
 * precision only, bias then rounded to bf16). CS_EUNSUP (nothing queued)
 * in fp32 precision or when no cuBLASLt algorithm takes a bf16 output. */
int cs_cuda_linear16(const uint16_t *x16, size_t M, size_t K, const cs_tensor *W, const cs_tensor *b, void *y,
                     int ybf16, size_t ldy, int accumulate);
/* the same with gelu: y = GELU(x16 W^T + b) in cuBLASLt's epilogue (its
 * tanh form: within 5e-4 of erf's, below a bf16 output's rounding), or
 * CS_EUNSUP (nothing queued) where no algorithm has it */
int cs_cuda_linear16_gelu(const uint16_t *x16, size_t M, size_t K, const cs_tensor *W, const cs_tensor *b, void *y,
                          int ybf16, size_t ldy, int accumulate, int gelu);
/* y (float32, row stride ldy) (+)= x16 [M, K] w^T + bias, w a bf16 [N, K]
 * device matrix (not a weight tensor: e.g. one scaled per call), bias
 * float32 [N] or NULL; bf16 operands whatever the precision in force */
int cs_cuda_gemm_bf16(const uint16_t *x16, size_t M, size_t K, const uint16_t *w, size_t N, const float *bias,
                      float *y, size_t ldy, int accumulate);
/* cs_dev_ops.mlp_block and attn_block, in bf16 (fused.cu) */
int cs_cuda_mlp_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                      const cs_mlp_block *w);
int cs_cuda_attn_block(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond,
                       size_t Lc, size_t cc, const cs_attn_block *w);
/* cs_dev_ops.sa_block, in bf16 (stage_a.cu; fused.cu's scratch slots 8, 9, 12, 20, 21) */
int cs_cuda_sa_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w);

/* flash.cu: attention in bf16/fp16 for 64-wide heads without a score
 * matrix, and cs_dev_ops.attention_cat; CS_EUNSUP (nothing queued) for
 * anything else. cs_cuda_flash16 takes and writes 16-bit rows (the type of
 * the precision in force; row strides in elements, rows 16-byte aligned). */
int cs_cuda_flash_fits(size_t N, size_t Lq, size_t Lk, size_t C, int nhead);   /* 1: the sizes are taken */
int cs_cuda_flash16(const uint16_t *q, size_t ldq, const uint16_t *k1, const uint16_t *v1, size_t ld1, size_t L1,
                    const uint16_t *k2, const uint16_t *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                    int nhead, uint16_t *o, size_t ldo);
int cs_cuda_flash_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                            size_t N, size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o,
                            size_t ldo);
int cs_cuda_attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                          const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                          int nhead, float *o, size_t ldo);

/* ---- grad.cu: the backward ops of src/grad.h (cs_dev_ops' optional
 * tail), float32 whatever the precision in force ---- */
int cs_cuda_sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                     float *C, size_t ldc);
int cs_cuda_linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                            size_t ldy, float *dx, int acc, float *dW, float *db);
int cs_cuda_layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                               const float *w, float *dw, float *db);
int cs_cuda_gelu_backward(const float *x, const float *dy, float *dx, size_t n);
int cs_cuda_silu_backward(const float *x, const float *dy, float *dx, size_t n);
int cs_cuda_grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                         float *dgamma, float *dbeta);
int cs_cuda_modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C,
                              const float *a, size_t ldab, float *da, float *db);
int cs_cuda_dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W,
                            size_t C, int k, const float *w, float *dw, float *db);
int cs_cuda_attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                               const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                               float *dq, float *dk, float *dv, int acc);

/* ---- optim.cu: the optimizer ops (cs_dev_ops' optional tail), float32 ---- */
int cs_cuda_sumsq(const float *x, size_t n, double *out);
int cs_cuda_adamw_update(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v);
int cs_cuda_adafactor_update(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g,
                             float *row, float *col, float *v, float *u);

/* ---- convert.cu ---- */
/* n elements from src (dtype sdt) to dst (dtype ddt), both device memory;
 * dtypes CS_F32, CS_BF16, CS_F16; rounding to nearest even */
int cs_cuda_convert(const void *src, int sdt, void *dst, int ddt, size_t n);
/* y[r * ldy + c] += b[c] for r < rows, c < cols */
int cs_cuda_add_bias(float *y, size_t ldy, const float *b, size_t rows, size_t cols);

#ifdef __cplusplus
}
#endif

#endif
