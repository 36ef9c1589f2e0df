/* Resampling, layout, embedding lookups and the timestep embedding of the
 * CUDA plugin (conventions: cuda/kernels.cu). */
#include "launch.cuh"

/* ---- resampling and layout ---- */

/* align_corners=True: the step between source positions, (in - 1) / (O - 1)
 * rounded once in float (on the host, the same IEEE quotient as ops.c's) */
static float interp_scale(size_t in, size_t O) { return O > 1 ? (float)(in - 1) / (float)(O - 1) : 0.0f; }

/* as ops.c interp_axis: the source position of output o */
static __device__ __forceinline__ void interp(size_t in, float sc, size_t o, size_t *i0, size_t *i1, float *l1)
{
    float src = __fmul_rn(sc, (float)o);
    size_t a = (size_t)floorf(src);
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a + 1 < in ? a + 1 : in - 1;
    *l1 = __fsub_rn(src, (float)a);
}

/* I: the type of the output pixel's decomposition (32-bit where the pixel
 * count fits: 64-bit divisions made it compute-bound at Stage B's 128^2) */
template <typename I>
static __global__ void k_resize(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho, size_t Wo,
                                float sh, float sw)
{
    RC_ROWS(q, N * Ho * Wo)
    {
        I t = (I)q / (I)Wo, n = t / (I)Ho;
        size_t ow = (size_t)((I)q - t * (I)Wo), oh = (size_t)(t - n * (I)Ho), h0, h1, w0, w1;
        float a1, b1;
        interp(H, sh, oh, &h0, &h1, &a1);
        interp(W, sw, ow, &w0, &w1, &b1);
        float a0 = __fsub_rn(1.0f, a1), b0 = __fsub_rn(1.0f, b1);
        const float *xn = x + (size_t)n * H * W * C;
        const float *p00 = xn + (h0 * W + w0) * C, *p01 = xn + (h0 * W + w1) * C, *p10 = xn + (h1 * W + w0) * C,
                    *p11 = xn + (h1 * W + w1) * C;
        RC_COLS(c, C)
        {
            float top = __fadd_rn(__fmul_rn(b0, p00[c]), __fmul_rn(b1, p01[c]));
            float bot = __fadd_rn(__fmul_rn(b0, p10[c]), __fmul_rn(b1, p11[c]));
            y[q * C + c] = __fadd_rn(__fmul_rn(a0, top), __fmul_rn(a1, bot));
        }
    }
}

extern "C" int cs_cuda_resize_bilinear(const float *x, size_t N, size_t H, size_t W, size_t C, float *y, size_t Ho,
                                       size_t Wo)
{
    if (!N || !Ho || !Wo || !C || !H || !W) return 0;
    rc_shape s = rc_launch(N * Ho * Wo, C);
    float sh = interp_scale(H, Ho), sw = interp_scale(W, Wo);
    if (N * Ho * Wo < ((size_t)1 << 31)) k_resize<unsigned><<<s.grid, s.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, sh, sw);
    else k_resize<size_t><<<s.grid, s.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, sh, sw);
    return cs_cuda_check_launch("bilinear resize");
}

/* up = 1: PixelShuffle, y[n, h*r+i, w*r+j, c] = x[n, h, w, c*r*r + i*r + j];
 * up = 0: PixelUnshuffle, the inverse. Threads over the output. */
static __global__ void k_shuffle(int up, const float *x, float *y, size_t N, size_t H, size_t W, size_t C, unsigned r)
{
    unsigned rr = r * r;
    size_t Ho = up ? H * r : H / r, Wo = up ? W * r : W / r, Co = up ? C : C * rr;
    RC_ROWS(q, N * Ho * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        float *yr = y + q * Co;
        if (up) {
            const float *xr = x + ((n * H + oh / r) * W + ow / r) * C * rr + (oh % r) * r + ow % r;
            RC_COLS(c, Co) yr[c] = xr[c * rr];
        } else {
            RC_COLS(co, Co)
            {
                size_t c = co / rr;
                unsigned ij = (unsigned)(co - c * rr), i = ij / r, j = ij - i * r;
                yr[co] = x[((n * H + oh * r + i) * W + ow * r + j) * C + c];
            }
        }
    }
}

extern "C" int cs_cuda_pixel_shuffle(int up, const float *x, size_t N, size_t H, size_t W, size_t C, int r, float *y)
{
    if (r < 1) return cs_cuda_fail(cudaErrorInvalidValue, "pixel shuffle: factor below 1");
    size_t R = (size_t)r, pix = up ? N * H * R * W * R : N * (H / R) * (W / R), Co = up ? C : C * R * R;
    if (!pix || !Co) return 0;
    rc_shape s = rc_launch(pix, Co);
    k_shuffle<<<s.grid, s.block, 0, stream()>>>(up, x, y, N, H, W, C, (unsigned)r);
    return cs_cuda_check_launch(up ? "pixel shuffle" : "pixel unshuffle");
}

/* per image [A, B] -> [B, A] through a 32 x 32 tile in shared memory */
#define TT 32
static __global__ void k_transpose(const float *x, float *y, size_t N, size_t A, size_t B)
{
    __shared__ float tile[TT][TT + 1];
    for (size_t n = blockIdx.z; n < N; n += gridDim.z)
        for (size_t a0 = (size_t)blockIdx.y * TT; a0 < A; a0 += (size_t)gridDim.y * TT)
            for (size_t b0 = (size_t)blockIdx.x * TT; b0 < B; b0 += (size_t)gridDim.x * TT) {
                const float *xn = x + n * A * B;
                float *yn = y + n * A * B;
                for (unsigned i = threadIdx.y; i < TT; i += blockDim.y) {
                    size_t a = a0 + i, b = b0 + threadIdx.x;
                    if (a < A && b < B) tile[i][threadIdx.x] = xn[a * B + b];
                }
                __syncthreads();
                for (unsigned i = threadIdx.y; i < TT; i += blockDim.y) {
                    size_t b = b0 + i, a = a0 + threadIdx.x;
                    if (a < A && b < B) yn[b * A + a] = tile[threadIdx.x][i];
                }
                __syncthreads();
            }
}

extern "C" int cs_cuda_transpose(int to_nhwc, const float *x, float *y, size_t N, size_t C, size_t HW)
{
    if (!N || !C || !HW) return 0;
    size_t A = to_nhwc ? C : HW, B = to_nhwc ? HW : C;   /* x is [A, B] per image */
    size_t gx = (B + TT - 1) / TT, gy = (A + TT - 1) / TT;
    dim3 grid((unsigned)(gx < MAX_GRID_X ? gx : MAX_GRID_X), (unsigned)(gy < MAX_GRID_YZ ? gy : MAX_GRID_YZ),
              (unsigned)(N < MAX_GRID_YZ ? N : MAX_GRID_YZ));
    k_transpose<<<grid, dim3(TT, 8), 0, stream()>>>(x, y, N, A, B);
    return cs_cuda_check_launch("transpose");
}

extern "C" int cs_cuda_concat_channels(const float *a, size_t Ca, const float *b, size_t Cb, float *y, size_t rows)
{
    int rc = cs_cuda_copy2d(y, Ca + Cb, a, Ca, rows, Ca);
    return rc ? rc : cs_cuda_copy2d(y + Ca, Ca + Cb, b, Cb, rows, Cb);
}

/* ---- embedding rows: ids travel in the launch's parameters (a few KiB a
 * launch), so nothing waits for a host copy and the caller's array may go. */

#define EMB_IDS 960
struct emb_ids {
    int32_t v[EMB_IDS];
};

static __global__ void k_embed(const float *tab, size_t C, emb_ids ids, size_t n, float *out)
{
    for (size_t i = blockIdx.y; i < n; i += gridDim.y) {
        const float *src = tab + (size_t)ids.v[i] * C;
        RC_COLS(c, C) out[i * C + c] = src[c];
    }
}

extern "C" int cs_cuda_embed_rows(const cs_tensor *table, const int32_t *ids, size_t n, float *out)
{
    if (!n) return 0;
    if (table->ndim != 2) return cs_cuda_fail(cudaErrorInvalidValue, "embedding: the table is not 2-d");
    size_t C = (size_t)table->shape[1];
    if (!C) return 0;
    int rc = 0;
    const float *tab = weight(table, &rc);
    if (!tab) return rc;
    size_t gx = (C + BLOCK - 1) / BLOCK;
    for (size_t i0 = 0; i0 < n; i0 += EMB_IDS) {
        size_t m = n - i0 < EMB_IDS ? n - i0 : EMB_IDS;
        emb_ids v;
        memcpy(v.v, ids + i0, m * sizeof(int32_t));
        k_embed<<<dim3((unsigned)(gx < MAX_GRID_YZ ? gx : MAX_GRID_YZ), (unsigned)m), BLOCK, 0, stream()>>>(
            tab, C, v, m, out + i0 * C);
        if ((rc = cs_cuda_check_launch("embedding lookup"))) return rc;
    }
    return 0;
}

/* ---- timestep embedding: the host's frequencies, sines in double ---- */

struct remb_freqs {
    float f[256];
};

static __global__ void k_r_embed(const float *r, size_t N, int c_r, int half, remb_freqs fq, float *emb)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < N * (size_t)c_r;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / (size_t)c_r;
        int k = (int)(i % (size_t)c_r);
        float v = 0.0f;
        if (k < 2 * half) {
            float u = __fmul_rn(r[n], 10000.0f);
            float ph = __fmul_rn(u, fq.f[k < half ? k : k - half]);
            v = (float)(k < half ? sin((double)ph) : cos((double)ph));
        }
        emb[i] = v;
    }
}

extern "C" int cs_cuda_r_embed(const float *r, size_t N, int c_r, const float *freq, float *emb)
{
    int half = c_r / 2;
    if (!N || c_r <= 0) return 0;
    if (half > 256) return cs_cuda_fail(cudaErrorInvalidValue, "timestep embedding: more than 512 channels");
    remb_freqs fq;
    memset(&fq, 0, sizeof fq);
    memcpy(fq.f, freq, (size_t)half * sizeof(float));
    size_t n = N * (size_t)c_r;
    k_r_embed<<<grid_1d(n, BLOCK), BLOCK, 0, stream()>>>(r, N, c_r, half, fq, emb);
    return cs_cuda_check_launch("timestep embedding");
}
