/* Backward passes of the ops Stage C uses (issue 13), float32 on the CPU.
 *
 * Each function takes the upstream gradient dy and what the forward saved
 * (named per function: "saves"), and produces the input gradient and the
 * parameter gradients. Layouts are the forward's (ops.h): channels-last
 * activations, PyTorch-layout weights.
 *
 * Conventions, the same everywhere:
 *   - parameter gradients (dW, db, dgamma, ...) are ADDED into the caller's
 *     buffers (zeroed once per step), so a weight used twice (the k/v rows
 *     of a packed in_proj, shared by image and conditioning tokens) or over
 *     several micro-batches sums up; NULL = not wanted;
 *   - input gradients are written, or added when acc != 0 (residual paths);
 *     NULL = not wanted (e.g. the first layer's input);
 *   - elementwise backwards allow dx == dy (in place).
 * Nothing here depends on the thread count: every reduction runs in a fixed
 * order over a fixed split.
 *
 * Products go through cs_sgemm (ops.h, our own GEMM, like the forward).
 * Device mode (device.h): every function but cs_r_embedding_backward runs
 * the device's op of the same name (cs_dev_ops' optional backward tail,
 * backend.h), on device pointers, in float32; a device without that op
 * gives CS_EUNSUP (the void ones record it for cs_dev_error, as ops.h's
 * do). Parameters (w, gamma, a) are then device pointers too (cs_param,
 * cs_weight_f32); W stays a cs_tensor view as for cs_linear.
 *
 * Residual adds and channel concat need no kernel: the gradient of x + f(x)
 * is dy + f'(dy) (acc = 1), that of [a | b] is the column split of dy
 * (cs_copy2d). */
#ifndef CS_GRAD_H
#define CS_GRAD_H

#include "tensor.h"

#include <stddef.h>

/* dC[M,N] (+)= A^T B with A [K, M] (row stride lda), B [K, N] (ldb); beta 0
 * or 1. The transposed-A product that weight gradients need. */
int cs_sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                float *C, size_t ldc);

/* Linear / 1x1 conv: y[M,N] = x[M,K] W[N,K]^T + b.  Saves x.
 *   dx[M,K] (+)= dy W          (ldx: row stride of x and dx, 0 = K)
 *   dW[N,K] += dy^T x,  db[N] += column sums of dy  (ldy: of dy, 0 = N)
 * W may be F32/BF16/F16 (a frozen bf16 base under LoRA); dW is float32. */
int cs_linear_backward(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                       size_t ldy, float *dx, int acc, float *dW, float *db);

/* LayerNorm over rows of C (eps as the forward; w, b NULL = no affine,
 * Stage C's elementwise_affine=False). Saves x (mean and 1/std are
 * recomputed, C floats per row, cheaper than keeping them).
 *   dx (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * w
 *   dw += sum_rows dy * xhat,  db += sum_rows dy */
int cs_layernorm_backward(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                          const float *w, float *dw, float *db);

/* GELU (erf form, as nn.GELU() and cs_gelu), SiLU: dx = dy * f'(x). Save x. */
void cs_gelu_backward(const float *x, const float *dy, float *dx, size_t n);
void cs_silu_backward(const float *x, const float *dy, float *dx, size_t n);

/* GlobalResponseNorm on x[N, HW, C]: y = gamma*(x*Nx) + beta + x with
 * Nx = G / (mean_c G + 1e-6), G[n,c] = ||x[n,:,c]||_2. Saves x.
 *   dx (written), dgamma[C] +=, dbeta[C] += */
int cs_grn_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                    float *dgamma, float *dbeta);

/* AdaLN modulation y = x*(1+a[n]) + b[n] on x[N, HW, C]. Saves x (the
 * forward runs in place, so the block keeps its input) and a.
 *   dx = dy*(1+a) (written, may be dy); da[n,c], db[n,c] written (row
 *   stride ldab: they land in the [N, 2C] gradient of the mapper output). */
void cs_modulate_backward(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *a,
                          size_t ldab, float *da, float *db);

/* Depthwise k x k conv, stride 1, zero padding k/2: x[N,H,W,C], w[C,1,k,k]
 * (float32). Saves x.  dx (+)=, dw[C*k*k] +=, db[C] += */
int cs_dwconv_backward(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C,
                       int k, const float *w, float *dw, float *db);

/* Multi-head attention core of cs_attention (no mask): saves q, k, v; the
 * probabilities are recomputed head by head (Lq x Lk scratch, not kept).
 *   dq[N,Lq,C] (row stride ldq), dk, dv[N,Lk,C] (ldk, ldv): written, or
 *   added when acc (k/v of the image tokens also feed q's projection rows).
 * do_ [N, Lq, C] with row stride ldo. */
int cs_attention_backward(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                          const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead, float *dq,
                          float *dk, float *dv, int acc);

/* Sinusoidal r-embedding (cs_r_embedding): dr[n] += d emb/d r . demb.
 * Training never needs it (r is data), it completes the chain for tests
 * and for a learned-noise-level experiment. */
int cs_r_embedding_backward(const float *r, size_t N, int c_r, const float *demb, float *dr);

#endif
