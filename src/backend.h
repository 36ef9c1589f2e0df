/* Compute backends. The CPU path (src/ops.c: OpenMP, our GEMM and the SIMD
 * kernel table) is always there; other backends are plugins loaded at run
 * time with dlopen (libcascade-<name>.so, e.g. libcascade-cuda.so), so the
 * library never links CUDA. A plugin exports
 *     const cs_backend *cascade_backend_entry(void);
 * returning a table whose abi field must equal CS_BACKEND_ABI. A plugin
 * with an op set runs whole forwards on its device: activations stay in its
 * memory from the network's inputs to its outputs (src/device.h). */
#ifndef CS_BACKEND_H
#define CS_BACKEND_H

#include "optim.h"
#include "tensor.h"

#include <stddef.h>

/* 10: the optional sa_block at the end of cs_dev_ops (a Stage A ResBlock as one op)
 * 9: the optional weight_to_f32 at the end of cs_dev_ops (a LoRA's frozen W0 kept on the device in its
 *    file dtype, widened into W' at each merge)
 * 8: the optional optimizer ops at the end of cs_dev_ops (all or none: weight_rw, sumsq, adamw_update,
 *    adafactor_update): a whole training step on the device
 * 7: the optional backward ops of src/grad.h at the end of cs_dev_ops (training on the device)
 * 6: attn_block and ts_block (a whole AttnBlock, TimestepBlock as one op)
 * 5: attention_cat (keys and values in two row blocks, no gathered copy)
 * 4: r_embed, mlp_block, and the optional graph calls (capture and replay of a forward)
 * 3: device-resident op set (cs_dev_ops); the host-memory sgemm of 1-2 is gone
 * 2: devices() and version added (1 had init, shutdown, sgemm) */
#define CS_BACKEND_ABI 10

/* One device as a plugin sees it (cascade info, and later the choice of a
 * model variant by free memory). */
typedef struct {
    char name[256];
    int cc_major, cc_minor;       /* compute capability, e.g. 9.0 */
    size_t total_bytes, free_bytes;
    int driver_version;           /* e.g. 13000 for 13.0; 0 unknown */
    int usable;                   /* 0: listed, but this plugin cannot run on it */
    char why[96];                 /* if !usable: one line, e.g. "no kernel image for sm_70" */
} cs_device_info;

/* The weights of a ResBlock (dw_w [c,1,3,3], dw_b [c]) or, with dw_w NULL,
 * a FeedForwardBlock: fc1 [4c, c+cs] + [4c], GRN gamma/beta [1,1,1,4c],
 * fc2 [c, 4c] + [c]. */
typedef struct {
    const cs_tensor *dw_w, *dw_b, *fc1_w, *fc1_b, *gamma, *beta, *fc2_w, *fc2_b;
} cs_mlp_block;

/* The weights of an AttnBlock: the q, k, v projections as [c, c] (+ [c])
 * views, and when the file packs them (nn.MultiheadAttention's in_proj)
 * the packed [3c, c] / [3c] too (else NULL), whose k and v rows follow each
 * other; out_proj [c, c] + [c]; the conditioning's kv_mapper [c, c_cond]
 * + [c]. */
typedef struct {
    const cs_tensor *wq, *wk, *wv, *bq, *bk, *bv, *wqkv, *bqkv, *wo, *bo, *kv_w, *kv_b;
} cs_attn_block;

/* Math precision of a device's products (set_precision). TF32: float32
 * data as in FP32, the products on TF32 tensor cores (training with
 * --mixed_precision bf16); a device without them answers CS_EUNSUP. */
enum { CS_PREC_FP32 = 0, CS_PREC_BF16 = 1, CS_PREC_FP16 = 2, CS_PREC_TF32 = 3 };

/* The op set of a device (src/ops.h, same meaning and argument order), on
 * device memory: every float pointer is a device pointer, except where a
 * comment says host. Weights arrive as cs_tensor views of host memory (the
 * checkpoint mapping, or arrays a loader derived); the plugin keeps one
 * device copy of each, made on first use and dropped by forget(). Ops are
 * queued in order on one stream: an op returns 0 or a negative code when it
 * cannot be queued; errors while running surface at download()/sync(). */
typedef struct {
    /* memory: alloc returns NULL when the device is full */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    int (*upload)(void *dst, const void *host, size_t bytes);
    int (*download)(void *host, const void *src, size_t bytes);   /* waits for queued work */
    int (*sync)(void);
    /* rows x cols floats between row strides (in floats) lds and ldd */
    int (*copy2d)(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);
    int (*fill)(float *dst, float v, size_t n);
    /* the device copy of a weight as float32 (NULL + reason in err on failure) */
    const float *(*weight_f32)(const cs_tensor *t, char *err, size_t errlen);
    /* drops cached copies of weights whose host data starts in [host, host + bytes) */
    void (*forget)(const void *host, size_t bytes);
    int (*set_precision)(int prec);   /* CS_PREC_*; CS_EUNSUP if this device lacks it */
    size_t (*mem_peak)(int reset);    /* bytes held at most since the last reset */
    const char *(*errmsg)(void);      /* one line on the last failure ("CUDA: out of memory ...") */
    /* the device in use: free and total memory now, its name ("NVIDIA H100 80GB HBM3 (cuda:0)") */
    int (*mem_info)(size_t *free_bytes, size_t *total_bytes, char *name, size_t namelen);

    int (*linear)(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const cs_tensor *b, float *y,
                  size_t ldy, int accumulate);
    int (*sgemm)(int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                 size_t ldb, float beta, float *C, size_t ldc);
    int (*layernorm)(const float *x, float *y, size_t rows, size_t C, float eps, const float *w, const float *b);
    /* kind: 0 gelu (erf), 1 quick_gelu, 2 silu, 3 sigmoid */
    int (*unary)(int kind, const float *x, float *y, size_t n);
    int (*add)(const float *a, const float *b, float *y, size_t n);
    int (*scale)(const float *x, float s, float *y, size_t n);
    int (*axpy)(float *y, const float *x, float g, size_t n);   /* y += x * g (product rounded, then the sum) */
    int (*grn)(const float *x, float *y, size_t N, size_t HW, size_t C, const float *gamma, const float *beta);
    int (*modulate)(const float *x, float *y, size_t N, size_t HW, size_t C, const float *a, const float *b,
                    size_t ldab);
    int (*channel_affine)(const float *x, float *y, size_t rows, size_t C, const float *s, const float *t);
    int (*dwconv3x3)(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                     const cs_tensor *bias, int replicate);
    /* Ho, Wo: the output size, computed by the caller */
    int (*conv2d)(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w, const cs_tensor *bias,
                  int stride, int pad, int groups, float *y, size_t Ho, size_t Wo);
    int (*conv_transpose2d)(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                            const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo);
    int (*attention)(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv, size_t N,
                     size_t Lq, size_t Lk, size_t C, int nhead, const float *mask, float *o, size_t ldo);
    int (*resize_bilinear)(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho, size_t Wo);
    /* up = 0: PixelUnshuffle(r) of x[N,H,W,C]; 1: PixelShuffle(r) of x[N,H,W,C*r*r] */
    int (*pixel_shuffle)(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y);
    /* to_nhwc = 1: [N,C,HW] -> [N,HW,C]; 0: back */
    int (*transpose)(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW);
    int (*concat_channels)(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows);
    /* out[i] = row ids[i] of table [V, C] (ids: host memory, checked < V by the caller) */
    int (*embed_rows)(const cs_tensor *table, const int32_t *ids, size_t n, float *out);
    /* emb[n, k] = sin(r[n] * 1e4 * freq[k]), emb[n, half + k] = the cos, half = c_r / 2,
     * a zero last column if c_r is odd; freq: half host floats */
    int (*r_embed)(const float *r, size_t N, int c_r, const float *freq, float *emb);
    /* A ResBlock or FeedForwardBlock as one fused op (weights below): x[N,H,W,c] +=
     * fc2(GRN(GELU(fc1([LN(dwconv3x3(x)) | skip])))), skip [N,H,W,cs] or NULL
     * (cs 0); with dw_w NULL LN(x) replaces LN(dwconv3x3(x)). CS_EUNSUP with
     * nothing done when the device has no fused form in its precision (the
     * caller runs the single ops). */
    int (*mlp_block)(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                     const cs_mlp_block *w);
    /* attention (no mask) whose keys and values per image are two row
     * blocks: L1 rows of k1/v1 (row stride ld1, image n at row n * L1), then
     * L2 rows of k2/v2 (ld2). CS_EUNSUP with nothing done when the device has
     * no such form in its precision (the caller gathers the rows and calls
     * attention). */
    int (*attention_cat)(const float *q, size_t ldq, const float *k1, const float *v1, size_t ld1, size_t L1,
                         const float *k2, const float *v2, size_t ld2, size_t L2, size_t N, size_t Lq, size_t C,
                         int nhead, float *o, size_t ldo);
    /* An AttnBlock as one fused op: with xn = LN(x) (eps 1e-6, no affine)
     * and ckv = kv_mapper(SiLU(cond)) (cond [N, Lc, cc]; Lc 0: none),
     * x[N, HW, c] += out_proj(MHA(xn Wq, keys/values [xn Wk|Wv if self_attn,
     * then ckv Wk|Wv])) with nhead heads. CS_EUNSUP with nothing done as
     * for mlp_block. */
    int (*attn_block)(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond,
                      size_t Lc, size_t cc, const cs_attn_block *w);
    /* A TimestepBlock as one fused op: ab[N, 2c] = sum over i <= nconds of
     * t[:, i*c_r .. (i+1)*c_r) w[i]^T + b[i] (w[i] [2c, c_r], t's row stride
     * ldt), then x[N, HW, c] = x * (1 + ab[:, :c]) + ab[:, c:]. CS_EUNSUP
     * with nothing done as for mlp_block. */
    int (*ts_block)(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                    const cs_tensor *w, const cs_tensor *b);
    /* Optional (all NULL or all set): graphs. Between graph_begin and
     * graph_end ops are recorded, not run; graph_end returns the recording
     * (NULL + a code when the recording failed: an op that cannot be
     * recorded, e.g. a weight not yet on the device). graph_launch queues
     * the recorded ops again on the same addresses, or returns CS_EUNSUP
     * with nothing queued when the recording went stale (buffers of the
     * device's own that it used have moved since); graph_free drops it. */
    int (*graph_begin)(void);
    int (*graph_end)(void **graph);
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    /* Optional, each on its own (NULL: the device has none; grad.h's function
     * then returns CS_EUNSUP in device mode): the backward ops of src/grad.h,
     * same meaning, argument order and conventions (parameter gradients added
     * into, input gradients written or added with acc, NULL = not wanted,
     * dx == dy allowed where grad.h allows it). Float32 whatever
     * set_precision says: training runs in fp32 on the device. Parameters
     * (w, gamma, a) are device pointers; linear_backward's W is a weight view
     * as in linear (the device's cached float32 copy is used). Shapes were
     * checked by the caller. */
    int (*sgemm_tn)(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                    float *C, size_t ldc);
    int (*linear_backward)(const float *x, size_t M, size_t K, size_t ldx, const cs_tensor *W, const float *dy,
                           size_t ldy, float *dx, int acc, float *dW, float *db);
    int (*layernorm_backward)(const float *x, const float *dy, float *dx, int acc, size_t rows, size_t C, float eps,
                              const float *w, float *dw, float *db);
    int (*gelu_backward)(const float *x, const float *dy, float *dx, size_t n);
    int (*silu_backward)(const float *x, const float *dy, float *dx, size_t n);
    int (*grn_backward)(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *gamma,
                        float *dgamma, float *dbeta);
    int (*modulate_backward)(const float *x, const float *dy, float *dx, size_t N, size_t HW, size_t C, const float *a,
                             size_t ldab, float *da, float *db);
    int (*dwconv_backward)(const float *x, const float *dy, float *dx, int acc, size_t N, size_t H, size_t W, size_t C,
                           int k, const float *w, float *dw, float *db);
    int (*attention_backward)(const float *q, size_t ldq, const float *k, size_t ldk, const float *v, size_t ldv,
                              const float *do_, size_t ldo, size_t N, size_t Lq, size_t Lk, size_t C, int nhead,
                              float *dq, float *dk, float *dv, int acc);
    /* Optional, all or none: the optimizer on the device (doc/training.md
     * §4), float32 whatever set_precision says.
     * weight_rw: the cached float32 copy of a float32 host weight (made if
     * absent), writable: what the caller writes there is what later ops read
     * for that tensor and for every weight view inside its host range (the
     * q/k/v rows of a packed in_proj); the host data stays as it was until
     * the caller downloads the copy (then forget() it). NULL + reason in err
     * on failure. */
    float *(*weight_rw)(const cs_tensor *t, char *err, size_t errlen);
    /* *out (one device double) = the sum of x[i]^2; the split of the sum is
     * fixed by n (the same bits run to run) */
    int (*sumsq)(const float *x, size_t n, double *out);
    /* optim.h's cs_adamw_update / cs_adafactor_update on device arrays (k:
     * host memory, read before the call returns; Adafactor: row NULL for a
     * full second moment v; u: n floats of scratch) */
    int (*adamw_update)(const cs_adamw_k *k, size_t n, float *p, const float *g, float *m, float *v);
    int (*adafactor_update)(const cs_adafactor_k *k, size_t B, size_t R, size_t C, float *p, const float *g,
                            float *row, float *col, float *v, float *u);
    /* Optional (NULL: the caller widens weight_f32's copy): elements
     * [off, off + n) of weight t as float32 into device array dst, from the
     * device's copy of t in t's own dtype (made on first use, kept and
     * dropped as weight_f32's copies are): a bf16 tensor is held in 2 bytes
     * an element, not 4. 0, or a negative code + reason in err. */
    int (*weight_to_f32)(const cs_tensor *t, size_t off, size_t n, float *dst, char *err, size_t errlen);
    /* Optional (NULL: the caller runs the single ops): a Stage A ResBlock
     * (src/stage_a.h) as one op, g its six gammas (host floats), w its
     * dw_w, dw_b, fc1, fc2 (gamma, beta NULL): with LN eps 1e-6, no affine,
     *     x += g2 dwconv3x3(LN(x) (1 + g0) + g1)   (replicate padding)
     *     x += g5 fc2(GELU(fc1(LN(x) (1 + g3) + g4)))
     * on x[N, H, W, c]. CS_EUNSUP with nothing done as for mlp_block. */
    int (*sa_block)(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w);
} cs_dev_ops;

typedef struct {
    int abi;            /* CS_BACKEND_ABI */
    const char *name;
    const char *version;  /* what the plugin was built with, one line */
    /* 0 if usable here; else a negative code and a one-line reason in err
     * ("no CUDA device", "CUDA driver not found", "driver too old: ...") */
    int (*init)(char *err, size_t errlen);
    void (*shutdown)(void);
    /* Lists up to max devices into out without init; returns how many
     * exist (may exceed max), or a negative code and a one-line reason in
     * err when none can be listed. May be NULL (no devices to list). */
    int (*devices)(cs_device_info *out, int max, char *err, size_t errlen);
    /* the device's op set; NULL: the plugin computes nothing (the CPU does) */
    const cs_dev_ops *ops;
    /* after init: run on device `index` (as devices() lists them) instead of
     * the first usable one; NULL when there is only ever one */
    int (*use_device)(int index, char *err, size_t errlen);
} cs_backend;

/* The active backend is per thread (the selecting thread's forwards use it).
 * Selects a backend by name ("cpu", "cuda", ...) or by a path to a plugin
 * file; NULL means $CASCADE_BACKEND, else "cpu". Plugins are looked for in
 * $CASCADE_PLUGIN_DIR, then the install's plugin folder. */
int cs_backend_select(const char *name);
/* Same, then device `index` of the plugin (-1: its first usable one). */
int cs_backend_select_device(const char *name, int index);
const cs_backend *cs_backend_active(void);   /* NULL: the CPU path */
const char *cs_backend_name(void);
void cs_backend_release(void);

/* Loads plugin NAME (as cs_backend_select finds it) without making it active
 * and lists its devices. Returns 0 when the plugin loaded: then ndev devices
 * are in dev (ndev may exceed CS_MAX_LISTED) or, with ndev 0, reason says
 * why none is usable. Else a negative code and cs_error say why it did not
 * load ("plugin not found ..."). */
#define CS_MAX_LISTED 16
typedef struct {
    char path[1024];
    int abi;
    char version[128];
    int ndev;
    cs_device_info dev[CS_MAX_LISTED];
    char reason[256];
} cs_backend_report;
int cs_backend_describe(const char *name, cs_backend_report *r);

#endif
