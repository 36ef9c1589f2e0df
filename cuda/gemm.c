/* Matrix products of the CUDA plugin on device memory: cs_sgemm and
 * cs_linear semantics (src/ops.h) through cuBLAS and cuBLASLt.
 *
 * Row-major to column-major: cuBLAS is column-major, and a row-major
 * matrix X[r, c] with row stride ld is, read column-major, X^T (c rows, r
 * columns, leading dimension ld). So a row-major C[M,N] = A[M,K] op(B) is
 * computed as the column-major C^T[N,M] = op(B)^T A^T: the operands swap
 * places, the first operand is B (m = N), the second A (n = M), k = K, and
 * each keeps its row stride as its leading dimension:
 *   transB = 1: B is row-major [N,K] = column-major B^T (K x N); we need B
 *               itself, so op = T, ld = ldb;
 *   transB = 0: B is row-major [K,N] = column-major B^T (N x K), which is
 *               what we need: op = N, ld = ldb;
 *   A (row-major [M,K]) = column-major A^T (K x M): op = N, ld = lda;
 *   C (row-major [M,N]) = column-major C^T (N x M): ld = ldc.
 * cs_linear is the transB = 1 case with B = W [N,K] (dense, ld K).
 *
 * Precision (mem.c's cs_cuda_precision): FP32 multiplies in float32 with
 * no TF32 (CUBLAS_DEFAULT_MATH, CUBLAS_COMPUTE_32F), so results compare
 * with the CPU, unless set_precision(CS_PREC_TF32) asked for TF32 products
 * (training with --mixed_precision bf16: cs_cuda_gemm_tf32). BF16 / FP16
 * feed the tensor cores 16-bit operands (weights
 * cached in that dtype, activations converted into scratch) and accumulate
 * in float32; outputs and biases stay float32. */
#include "core.h"

#include "error.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cublasHandle_t blas;
static cublasLtHandle_t lt;
static void *ws, *ws_raw;                         /* shared by cuBLAS and cuBLASLt: one stream, so no overlap */
static const size_t ws_bytes = (size_t)32 << 20;

struct cublasContext *cs_cuda_blas(void) { return blas; }

static int tf32;

int cs_cuda_gemm_tf32(int on)
{
    if (!blas || tf32 == !!on) return 0;
    cublasStatus_t s = cublasSetMathMode(blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) return cs_cuda_blas_fail(s, "setting the math mode");
    tf32 = !!on;
    return 0;
}

int cs_cuda_blas_fail(int s, const char *what)
{
    return cs_cuda_fail_text(s == CUBLAS_STATUS_ALLOC_FAILED ? CS_ENOMEM : CS_EDEVICE, "cuBLAS: %s in %s",
                             cublasGetStatusString((cublasStatus_t)s), what);
}

static int too_big(size_t M, size_t N, size_t K, size_t l1, size_t l2, size_t l3)
{
    if (M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && l1 <= INT_MAX && l2 <= INT_MAX && l3 <= INT_MAX) return 0;
    return cs_cuda_fail_text(CS_EUNSUP, "CUDA: a %zu x %zu x %zu product is past cuBLAS's 32-bit sizes", M, N, K);
}

static size_t max1(size_t v) { return v ? v : 1; }

/* ---- cs_sgemm ---- */

/* rows x cols floats (row stride ld) to dense 16-bit in scratch slot */
static uint16_t *to_half(int prec, int slot, const float *x, size_t rows, size_t cols, size_t ld, int *rc)
{
    uint16_t *h = cs_cuda_scratch(slot, max1(rows * cols) * 2);
    if (!h) {
        *rc = CS_ENOMEM;
        return NULL;
    }
    *rc = prec == CS_PREC_BF16 ? cs_cuda_f32_to_bf16(x, h, rows, cols, ld) : cs_cuda_f32_to_f16(x, h, rows, cols, ld);
    return *rc ? NULL : h;
}

int cs_cuda_sgemm(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                  size_t ldb, float beta, float *C, size_t ldc)
{
    if (!M || !N) return 0;
    if (!blas) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    if (too_big(M, N, K, lda, ldb, ldc)) return CS_EUNSUP;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    int prec = cs_cuda_precision();
    cublasStatus_t s;
    if (prec == CS_PREC_FP32 || !K) {
        /* the first operand's stored rows: K when op = T, else N */
        s = cublasSgemm(blas, opB, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B, (int)max1(ldb), A, (int)max1(lda),
                        &beta, C, (int)ldc);
        return s == CUBLAS_STATUS_SUCCESS ? 0 : cs_cuda_blas_fail(s, "sgemm");
    }
    /* 16-bit operands, dense: A -> [M,K] (ld K); B -> [N,K] (ld K) or [K,N] (ld N) */
    int rc;
    const uint16_t *Ah = to_half(prec, 0, A, M, K, lda, &rc);
    if (!Ah) return rc;
    size_t br = transB ? N : K, bc = transB ? K : N;
    const uint16_t *Bh = to_half(prec, 1, B, br, bc, ldb, &rc);
    if (!Bh) return rc;
    cudaDataType_t t = prec == CS_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    s = cublasGemmEx(blas, opB, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, Bh, t, (int)bc, Ah, t, (int)K, &beta, C,
                     CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : cs_cuda_blas_fail(s, "sgemm (16-bit operands)");
}

/* ---- cs_linear through cuBLASLt ----
 *
 * y^T (column-major N x M, ld ldy) = W (N x K) * x^T (K x M):
 *   A = W: stored column-major K x N (ld K), TRANSA = T
 *   B = x: stored column-major K x M (ld ldx of the operand), TRANSB = N
 *   C = D = y: column-major N x M (ld ldy), float32
 * The bias epilogue adds a vector of D's row count (N) to every column
 * (every row of the row-major y): one bias value per output feature.
 *
 * A plan (descriptors and the heuristic's algorithm) is kept per shape,
 * dtype, epilogue and pointer alignments: the heuristic assumes 256-byte
 * aligned buffers unless told, and y often starts inside a wider row. */

typedef struct {
    unsigned long stamp;   /* 0: unused; else last use, for eviction */
    int dt, ydt, beta1;    /* operand and output types (cudaDataType_t) */
    int ep;                /* epilogue: EP_BIAS, EP_GELU (or both) */
    int tf32;              /* float32 operands on TF32 tensor cores */
    size_t M, N, K, ldb, ldy;
    uint32_t al[4];        /* alignment of W, x, y, bias */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int have_algo;         /* 0: no algorithm; cublasGemmEx does it */
} plan_t;
#define NPLANS 256
static plan_t plans[NPLANS];
static unsigned long clock_;

static uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}

static void plan_drop(plan_t *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

#define EP_BIAS 1
#define EP_GELU 2

/* $CASCADE_GEMM_LOG=1: a stderr line for each plan made (its shape, types,
 * alignments and the algorithm's id, or none: cublasGemmEx then) */
static void plan_log(const plan_t *p)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("CASCADE_GEMM_LOG");
        on = e && !strcmp(e, "1");
    }
    if (!on) return;
    int id = -1, tile = -1;
    if (p->have_algo) {
        cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, NULL);
        cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, NULL);
    }
    fprintf(stderr, "gemm plan: M %zu N %zu K %zu ldb %zu ldy %zu, type %d -> %d%s, epilogue %d, beta %d, align %u/%u/%u/%u: %s",
            p->M, p->N, p->K, p->ldb, p->ldy, p->dt, p->ydt, p->tf32 ? " tf32" : "", p->ep, p->beta1, p->al[0], p->al[1],
            p->al[2], p->al[3], p->have_algo ? "algorithm" : "none (cublasGemmEx)");
    if (p->have_algo) fprintf(stderr, " %d, tile %d", id, tile);
    fputc('\n', stderr);
}

static int plan_make(plan_t *p, const void *bias)
{
    cudaDataType_t t = (cudaDataType_t)p->dt;
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    cublasStatus_t s = cublasLtMatmulDescCreate(&p->desc, p->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!s) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT);
    if (!s) s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN);
    if (!s && p->ep) {
        cublasLtEpilogue_t ep = p->ep == (EP_BIAS | EP_GELU) ? CUBLASLT_EPILOGUE_GELU_BIAS
                                : p->ep == EP_GELU            ? CUBLASLT_EPILOGUE_GELU
                                                              : CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = p->ydt;   /* a bf16 output takes a bf16 bias (as PyTorch's autocast rounds it) */
        s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
        if (!s && (p->ep & EP_BIAS))
            s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
        /* the heuristic reads the pointer's alignment from here */
        if (!s && (p->ep & EP_BIAS))
            s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    }
    /* layouts describe the stored matrices (before TRANSA/TRANSB) */
    if (!s) s = cublasLtMatrixLayoutCreate(&p->la, t, p->K, p->N, (int64_t)p->K);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->lb, t, p->K, p->M, (int64_t)p->ldb);
    if (!s) s = cublasLtMatrixLayoutCreate(&p->lc, (cudaDataType_t)p->ydt, p->N, p->M, (int64_t)p->ldy);
    if (!s) s = cublasLtMatmulPreferenceCreate(&pref);
    if (!s)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                 sizeof ws_bytes);
    static const cublasLtMatmulPreferenceAttributes_t al_attr[3] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                                     CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                                     CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES};
    for (int i = 0; i < 3 && !s; i++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &p->al[i], sizeof p->al[i]);
    if (!s)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p->al[2],
                                                 sizeof p->al[2]);
    if (!s) {
        cublasLtMatmulHeuristicResult_t r;
        int found = 0;
        memset(&r, 0, sizeof r);
        cublasStatus_t h = cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &r, &found);
        /* none (or "not supported"): the plan says so and GemmEx serves it */
        if (h == CUBLAS_STATUS_SUCCESS && found > 0 && r.state == CUBLAS_STATUS_SUCCESS) {
            p->algo = r.algo;
            p->have_algo = 1;
        }
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    plan_log(p);
    if (s) {
        plan_drop(p);
        return cs_cuda_blas_fail(s, "setting up a cuBLASLt product");
    }
    return 0;
}

/* a plan's compute type: TF32 for float32 operands when asked */
static int tf32_of(int dt) { return tf32 && dt == (int)CUDA_R_32F; }

static plan_t *plan_get(int dt, int ydt, int ep, int beta1, size_t M, size_t N, size_t K, size_t ldb, size_t ldy,
                        const uint32_t al[4], const void *bptr, int *rc)
{
    plan_t *old = &plans[0];
    for (int i = 0; i < NPLANS; i++) {
        plan_t *p = &plans[i];
        if (p->stamp && p->dt == dt && p->tf32 == tf32_of(dt) && p->ydt == ydt && p->ep == ep && p->beta1 == beta1 && p->M == M && p->N == N && p->K == K &&
            p->ldb == ldb && p->ldy == ldy && !memcmp(p->al, al, sizeof p->al)) {
            p->stamp = ++clock_;
            return p;
        }
        if (p->stamp < old->stamp) old = p;
    }
    plan_drop(old);
    *old = (plan_t){.dt = dt, .tf32 = tf32_of(dt), .ydt = ydt, .ep = ep, .beta1 = beta1, .M = M, .N = N, .K = K, .ldb = ldb, .ldy = ldy};
    memcpy(old->al, al, sizeof old->al);
    if ((*rc = plan_make(old, bptr))) return NULL;
    old->stamp = ++clock_;
    return old;
}

/* y = xb w^T (+ y) (+ bias) with xb and w already in the operand type t,
 * y of type yt (float32, or bf16 with bf16 operands: no fallback for that
 * without an algorithm, CS_EUNSUP), bias of y's type. gelu: y = GELU(xb w^T
 * + bias) in cuBLASLt's epilogue (y overwritten; CS_EUNSUP, nothing
 * queued, where no algorithm does it) */
static int lt_run(cudaDataType_t t, const void *xb, size_t ldb, size_t M, size_t N, size_t K, const void *w,
                  const void *bias, void *y, cudaDataType_t yt, size_t ldy, int accumulate, int gelu)
{
    int prec = cs_cuda_precision(), rc = 0;
    if (gelu && accumulate) return CS_EUNSUP;
    /* fp32: the bias rides in the epilogue only when y is overwritten (with
     * accumulate, y + xW^T first and then + b, as the CPU rounds it); in
     * 16-bit math that order is below the rounding anyway */
    int ep_bias = bias && (!accumulate || prec != CS_PREC_FP32);
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    uint32_t al[4] = {align_of(w), align_of(xb), align_of(y), ep_bias ? align_of(bias) : 256};
    plan_t *p = plan_get((int)t, (int)yt, (ep_bias ? EP_BIAS : 0) | (gelu ? EP_GELU : 0), accumulate != 0, M, N, K, ldb,
                         ldy, al, bias, &rc);
    if (!p) return rc;
    if (gelu && !p->have_algo) return CS_EUNSUP;
    cublasStatus_t s = CUBLAS_STATUS_NOT_SUPPORTED;
    if (p->have_algo) {
        if (ep_bias)
            s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (!ep_bias || s == CUBLAS_STATUS_SUCCESS)
            s = cublasLtMatmul(lt, p->desc, &alpha, w, p->la, xb, p->lb, &beta, y, p->lc, y, p->lc, &p->algo, ws,
                               ws_bytes, cs_cuda_stream());
        if (s == CUBLAS_STATUS_SUCCESS)
            return bias && !ep_bias ? cs_cuda_add_bias((float *)y, ldy, (const float *)bias, M, N) : 0;
        if (s != CUBLAS_STATUS_NOT_SUPPORTED) return cs_cuda_blas_fail(s, "a linear layer (cuBLASLt)");
        p->have_algo = 0;   /* refused after all: GemmEx from now on */
        if (gelu) return CS_EUNSUP;
    }
    if (yt != CUDA_R_32F) return CS_EUNSUP;
    /* the same product through cuBLAS (see the mapping at the top) */
    s = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, w, t, (int)K, xb, t, (int)ldb,
                     &beta, y, CUDA_R_32F, (int)ldy, tf32_of((int)t) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return cs_cuda_blas_fail(s, "a linear layer");
    return bias ? cs_cuda_add_bias((float *)y, ldy, (const float *)bias, M, N) : 0;
}

/* lt_run with W and b as device copies in the operand's and y's types */
static int lt_linear(cudaDataType_t t, const void *xb, size_t ldb, size_t M, size_t N, size_t K, const cs_tensor *W,
                     const cs_tensor *b, void *y, cudaDataType_t yt, size_t ldy, int accumulate, int gelu)
{
    char err[256];
    int wdt = t == CUDA_R_16BF ? CS_BF16 : t == CUDA_R_16F ? CS_F16 : CS_F32;
    const void *w = cs_cuda_weight(W, wdt, err, sizeof err);
    if (!w) return cs_cuda_weight_rc();
    const void *bias = NULL;
    if (b && !(bias = cs_cuda_weight(b, yt == CUDA_R_16BF ? CS_BF16 : CS_F32, err, sizeof err)))
        return cs_cuda_weight_rc();
    return lt_run(t, xb, ldb, M, N, K, w, bias, y, yt, ldy, accumulate, gelu);
}

int cs_cuda_linear(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                   size_t ldy, int accumulate)
{
    /* the shape was checked by cs_linear: W is [N, K] or [N, K, 1, 1] */
    size_t N = W->ndim >= 1 && W->shape[0] > 0 ? (size_t)W->shape[0] : 0;
    if (!ldx) ldx = K;
    if (!ldy) ldy = N;
    if (!M || !N) return 0;
    if (!lt) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    if (too_big(M, N, K, ldx, ldy, 0)) return CS_EUNSUP;
    int rc;
    if (!K) {
        /* an empty sum: y = (accumulate ? y : 0) + b */
        char err[256];
        const float *bias = NULL;
        if (b && !(bias = cs_cuda_weight(b, CS_F32, err, sizeof err))) return cs_cuda_weight_rc();
        cudaError_t e = accumulate ? cudaSuccess
                                   : cudaMemset2DAsync(y, ldy * sizeof(float), 0, N * sizeof(float), M, cs_cuda_stream());
        if (e != cudaSuccess) return cs_cuda_fail(e, "a linear layer");
        return bias ? cs_cuda_add_bias(y, ldy, bias, M, N) : 0;
    }
    int prec = cs_cuda_precision();
    if (prec != CS_PREC_FP32 && M <= CS_CUDA_SMALL_M && K <= CS_CUDA_SMALL_K) {
        /* a few short rows (the timestep mappers): one kernel, no conversion pass */
        char err[256];
        int wdt = prec == CS_PREC_BF16 ? CS_BF16 : CS_F16;
        const void *w = cs_cuda_weight(W, wdt, err, sizeof err);
        const float *bias = NULL;
        if (!w || (b && !(bias = cs_cuda_weight(b, CS_F32, err, sizeof err)))) return cs_cuda_weight_rc();
        return cs_cuda_linear_small(x, M, K, ldx, w, wdt, bias, y, ldy, N, accumulate);
    }
    cudaDataType_t t = prec == CS_PREC_BF16 ? CUDA_R_16BF : prec == CS_PREC_FP16 ? CUDA_R_16F : CUDA_R_32F;
    const void *xb = x;   /* the B operand and its leading dimension */
    size_t ldb = ldx;
    if (prec != CS_PREC_FP32) {
        if (!(xb = to_half(prec, 0, x, M, K, ldx, &rc))) return rc;
        ldb = K;
    }
    return lt_linear(t, xb, ldb, M, N, K, W, b, y, CUDA_R_32F, ldy, accumulate, 0);
}

int cs_cuda_linear16(const uint16_t *x16, size_t M, size_t K, const cs_tensor *W, const cs_tensor *b, void *y,
                     int ybf16, size_t ldy, int accumulate)
{
    return cs_cuda_linear16_gelu(x16, M, K, W, b, y, ybf16, ldy, accumulate, 0);
}

int cs_cuda_linear16_gelu(const uint16_t *x16, size_t M, size_t K, const cs_tensor *W, const cs_tensor *b, void *y,
                          int ybf16, size_t ldy, int accumulate, int gelu)
{
    size_t N = W->ndim >= 1 && W->shape[0] > 0 ? (size_t)W->shape[0] : 0;
    if (!ldy) ldy = N;
    if (!M || !N || !K) return CS_EUNSUP;
    if (!lt) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    if (too_big(M, N, K, K, ldy, 0)) return CS_EUNSUP;
    int prec = cs_cuda_precision();
    if (prec == CS_PREC_FP32 || (ybf16 && prec != CS_PREC_BF16)) return CS_EUNSUP;
    cudaDataType_t t = prec == CS_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    return lt_linear(t, x16, K, M, N, K, W, b, y, ybf16 ? CUDA_R_16BF : CUDA_R_32F, ldy, accumulate, gelu);
}

int cs_cuda_gemm_bf16(const uint16_t *x16, size_t M, size_t K, const uint16_t *w, size_t N, const float *bias,
                      float *y, size_t ldy, int accumulate)
{
    if (!ldy) ldy = N;
    if (!M || !N || !K) return CS_EUNSUP;
    if (!lt) return cs_cuda_fail_text(CS_EDEVICE, "CUDA: the plugin is not initialised");
    if (too_big(M, N, K, K, ldy, 0)) return CS_EUNSUP;
    return lt_run(CUDA_R_16BF, x16, K, M, N, K, w, bias, y, CUDA_R_32F, ldy, accumulate, 0);
}

/* ---- start and end ---- */

int cs_cuda_gemm_init(char *err, size_t n)
{
    cublasStatus_t s = cublasCreate(&blas);
    if (!s) s = cublasLtCreate(&lt);
    if (s) {
        snprintf(err, n, "cuBLAS: cannot start (%s)", cublasGetStatusString(s));
        cs_cuda_gemm_shutdown();
        return CS_EUNSUP;
    }
    /* both libraries want a 256-byte aligned workspace */
    if (!(ws_raw = cs_cuda_alloc(ws_bytes + 256))) {
        snprintf(err, n, "CUDA: out of memory for the 32 MiB cuBLAS workspace");
        cs_cuda_gemm_shutdown();
        return CS_ENOMEM;
    }
    ws = (void *)(((uintptr_t)ws_raw + 255) & ~(uintptr_t)255);
    /* plain fp32: no TF32, so results compare with the CPU; the workspace
     * is set after the stream (setting a stream resets it) */
    s = cublasSetStream(blas, cs_cuda_stream());
    if (!s) s = cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH);
    tf32 = 0;
    if (!s) s = cublasSetWorkspace(blas, ws, ws_bytes);
    if (s) {
        snprintf(err, n, "cuBLAS: cannot set it up (%s)", cublasGetStatusString(s));
        cs_cuda_gemm_shutdown();
        return CS_EUNSUP;
    }
    return 0;
}

void cs_cuda_gemm_shutdown(void)
{
    for (int i = 0; i < NPLANS; i++) plan_drop(&plans[i]);
    clock_ = 0;
    if (lt) cublasLtDestroy(lt);
    if (blas) cublasDestroy(blas);
    lt = NULL, blas = NULL;
    cs_cuda_free(ws_raw);
    ws = ws_raw = NULL;
}
