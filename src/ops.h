/* The op layer: whole-tensor operations over channels-last float32
 * activations, threaded with OpenMP, calling the kernel table (cs_k) and
 * OpenBLAS. Models call only these (and cs_k for small things).
 *
 * Thread policy: one pool, OpenMP's. cs_threads_set(n) sets OpenMP to n
 * threads; cs_sgemm splits each product over them. No BLAS library: the
 * products are ours (simd/gemm_tpl.h), so no library's CPU detection or
 * kernel choice can change a result or its speed.
 *
 * Weights (cs_tensor) may be F32, BF16 or F16 in PyTorch layout, straight
 * from the mmap; ops convert them on the fly into per-thread scratch.
 * All functions return 0 or a negative CS_E* code (with cs_error set).
 *
 * In device mode (src/device.h) each op runs on the device instead, on
 * device pointers; the void ones then report failures through
 * cs_dev_error(). */
#ifndef CS_OPS_H
#define CS_OPS_H

#include "backend.h"
#include "tensor.h"

#include <stddef.h>

void cs_threads_set(int n);        /* n <= 0: all cores */
int cs_threads_get(void);
const char *cs_gemm_info(void);

/* Precision of cs_linear's products on the CPU (CS_PREC_* of backend.h):
 * fp32 (the default) or bf16, which needs the native bf16 kernel
 * (simd/gemm_bf16.h: AVX512-BF16 at the avx512 level). In bf16 the
 * activations are rounded to bf16 per call and each weight is packed once
 * into bf16 panels (wpack.h); sums stay fp32. cs_attention's two products
 * round their operands to bf16 too (src/ops_attn.c). Convolutions that are
 * not 1x1 and cs_sgemm stay fp32. Process-wide; set it before the
 * forwards, not during one. Returns 0 or CS_EUNSUP (cs_error says why). */
int cs_cpu_precision_set(int prec);
int cs_cpu_precision_get(void);    /* how matrix products are computed, for `cascade info` */
/* In fp32, cs_linear reads a BF16 weight from its packed bf16 panels
 * (wpack.h, packed once) with the kernel table's gemm_f32_bf16w: the same
 * bits as converting it to float32 panels per call, without that cost.
 * 0 turns that off for this thread (tests compare the two paths); default 1. */
void cs_linear_bf16_panels(int on);

/* C[M,N] = alpha * A op(B) + beta * C, float32 row-major; op(B) = B^T
 * ([N,K] rows, ldb) when transB, else B ([K,N], ldb). Each C element is one
 * fused multiply-add chain over k in order: it depends only on its row of A,
 * its column of op(B) and K -- never on M, the thread count or the SIMD
 * level. Returns 0 or CS_ENOMEM. */
int cs_sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
             const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* Weight as float32: returns a pointer to float32 data of t (the mmap itself
 * when t is F32 and 4-byte aligned, else converted into scratch, which stays
 * valid until the next call of this function on the same slot). slot 0..3
 * (4 belongs to cs_sgemm). */
const float *cs_weight_f32(const cs_tensor *t, int slot);

/* y[M,N] = x[M,K] W[N,K]^T (+ b[N]); W is a Linear weight [N,K] or a 1x1
 * conv weight [N,K,1,1]; b may be NULL. ldx/ldy: row strides (0 = K / N).
 * accumulate != 0 adds into y instead of overwriting. */
int cs_linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b,
              float *y, size_t ldy, int accumulate);
/* cs_linear (no accumulate), then y = GELU(y): the same bits as cs_linear
 * then cs_gelu, with the bias and the GELU done on each block of y as the
 * products finish it (in cache) instead of in two more passes. */
int cs_linear_gelu(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b,
                   float *y, size_t ldy);

/* A low-rank term added to some Linear weights at run time (LoRA training,
 * src/lora_grad.c: y = W0 x + s B (A x), no merged W0 + s B A). While set on
 * this thread, cs_linear, cs_linear_gelu (the term before the GELU) and a
 * 1x1 cs_conv2d hand every weight to linear first, and the fused block ops
 * step aside (CS_EUNSUP) so that their linears come here too. linear
 * returns 1 for a weight that is not its own (the plain product runs), else
 * 0 or an error, having done y (+)= x W^T + b + the term. NULL, as in every
 * inference, costs one test per Linear. */
typedef struct {
    int (*linear)(void *ctx, const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b,
                  float *y, size_t ldy, int accumulate);
    void *ctx;
} cs_lowrank;
extern _Thread_local const cs_lowrank *cs_lowrank_on;

/* A ResBlock / FeedForwardBlock (src/backend.h cs_mlp_block) as one op
 * where the device in use has it fused in its precision; CS_EUNSUP with
 * nothing done elsewhere (the CPU included): the caller then runs the
 * single ops. */
int cs_mlp_block_fused(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                       const cs_mlp_block *w);

/* A TimestepBlock (src/backend.h ts_block) as one op, the same way. */
int cs_ts_block_fused(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                      const cs_tensor *w, const cs_tensor *b);

/* A Stage A ResBlock (src/backend.h sa_block; g: its six gammas, host
 * floats) as one op, the same way; also CS_EUNSUP on a device without it. */
int cs_sa_block_fused(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w);

/* An AttnBlock (src/backend.h attn_block) as one op, the same way. */
int cs_attn_block_fused(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond,
                        size_t Lc, size_t cc, const cs_attn_block *w);

/* Attention (no mask) whose keys/values per image are two row blocks, L1
 * rows of k1/v1 then L2 rows of k2/v2 (src/backend.h attention_cat), read
 * where they are: on the CPU the bits of cs_attention on the gathered rows;
 * on a device that has it, its own; CS_EUNSUP with nothing done on a device
 * without it: the caller then gathers the rows and calls cs_attention. */
int cs_attention_cat(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                     const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                     int nhead, float *o, size_t ldo);

/* Row-wise LayerNorm of rows x C (LayerNorm2d on channels-last = this). */
void cs_layernorm(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b);

/* Element-wise activations over n floats (in place if x == y). */
void cs_gelu(const float *x, float *y, size_t n);
void cs_quick_gelu(const float *x, float *y, size_t n);
void cs_silu(const float *x, float *y, size_t n);
void cs_sigmoid(const float *x, float *y, size_t n);
void cs_add(const float *a, const float *b, float *y, size_t n);
void cs_scale(const float *x, float s, float *y, size_t n);

/* GlobalResponseNorm on x[N, HW, C] (channels-last), in place if x == y.
 * gamma, beta: [C] float32. */
int cs_grn(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta);
/* x[N*HW, Nout] += GRN(h) W^T + b (h [N, HW, C], W [Nout, C]; a ResBlock's
 * GRN and fc2 in inference) with GRN applied to h's rows while the product
 * packs them, so GRN's output is never written out: the bits of cs_grn then
 * cs_linear (accumulate). bf16 products on the CPU only; elsewhere (a device,
 * fp32 products, a kernel without a pre-packed A, a low-rank term) CS_EUNSUP
 * with nothing done: the caller runs those two. h is read, not changed. */
int cs_grn_linear(const float *h, size_t N, size_t HW, size_t C, const float *gamma, const float *beta,
                  const cs_tensor *W, const cs_tensor *b, float *x);

/* x[N, HW, C] -> y: y = x*(1+a[n,c]) + b[n,c]; a, b: [N, C] (row stride ldab). */
void cs_modulate(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                 size_t ldab);
/* y[rows,C] = x*s[c] + t[c] (BatchNorm in eval mode once folded). */
void cs_channel_affine(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t);

/* Depthwise 3x3, stride 1: x[N,H,W,C] -> y[N,H,W,C]; w [C,1,3,3]; bias [C] or
 * NULL. replicate = 0: zero padding 1; 1: ReplicationPad2d(1) + valid conv. */
int cs_dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                 const cs_tensor *bias, int replicate);

/* General Conv2d: x[N,H,W,Cin] -> y[N,Ho,Wo,Cout], weight [Cout, Cin/groups, k, k],
 * bias [Cout] or NULL, zero padding. Ho = (H + 2p - k)/s + 1. With one group
 * (and no low-rank term) the products are cs_linear's on im2col's rows. */
int cs_conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w, const cs_tensor *bias,
              int stride, int pad, int groups, float *y, size_t *Ho, size_t *Wo);
/* ConvTranspose2d: x[N,H,W,Cin] -> y[N,Ho,Wo,Cout], weight [Cin, Cout, k, k],
 * Ho = (H-1)s - 2p + k. */
int cs_conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                        const cs_tensor *bias, int stride, int pad, float *y, size_t *Ho, size_t *Wo);

/* Multi-head attention core (projections done by the caller):
 * q[N,Lq,ldq-strided rows of C], k,v[N,Lk,C] -> o[N,Lq,C]; heads of C/nhead
 * consecutive features; scale 1/sqrt(C/nhead). mask: NULL, or additive
 * [N, Lq, Lk] float (0 / -inf), e.g. CLIP's causal + padding mask. */
int cs_attention(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                 size_t N, size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo);

/* Bilinear resize, align_corners=True: x[N,H,W,C] -> y[N,Ho,Wo,C]. */
void cs_resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo);
/* PixelUnshuffle(r): x[N,H,W,C] -> y[N,H/r,W/r,C*r*r] with PyTorch channel order c*r*r + i*r + j. */
void cs_pixel_unshuffle(const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y);
/* PixelShuffle(r): x[N,H,W,C*r*r] -> y[N,H*r,W*r,C]. */
void cs_pixel_shuffle(const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y);
/* Layout changes at the edges: NCHW <-> NHWC (per image: [C,HW] <-> [HW,C]). */
void cs_nchw_to_nhwc(const float *x, float *y, size_t N, size_t C, size_t HW);
void cs_nhwc_to_nchw(const float *x, float *y, size_t N, size_t C, size_t HW);
/* Channel concat: y[rows, Ca+Cb] = [a | b]. */
void cs_concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows);

/* Sinusoidal r-embedding of upstream StageC.gen_r_embedding (c_r may be odd: zero column appended). */
int cs_r_embedding(const float *r, size_t N, int c_r, float *emb);

/* y += x * g (the product rounded, then the sum, as torch does it). */
void cs_axpy(float *y, const float *x, float g, size_t n);

/* out[i, :] = table[ids[i], :] as float32; table [V, C]; ids in host memory. */
int cs_embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out);

#endif
