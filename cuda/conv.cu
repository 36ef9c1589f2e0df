/* Convolutions of the CUDA plugin: depthwise, general (im2col + cuBLAS) and
 * transposed (conventions: cuda/kernels.cu). */
#include "launch.cuh"

/* ---- depthwise convolution, any k / stride / pad: y[n,oh,ow,c] = bias[c] + the
 * taps w[c,i,j] * x[n, oh*s-p+i, ow*s-p+j, c] added in (i, j) order; taps
 * outside are skipped (zero pad) or clamped to the edge (replicate). */

template <int KT>   /* KT: k known at compile time (3), or 0 */
static __global__ void k_dwconv(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho,
                                size_t Wo, int kr, int s, int p, int replicate, const float *w, const float *bias)
{
    const int k = KT ? KT : kr;
    size_t kk = (size_t)k * (size_t)k;
    RC_ROWS(q, N * Ho * Wo)
    {
        size_t ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        const float *xn = x + n * H * W * C;
        RC_COLS(c, C)
        {
            float sum = bias ? bias[c] : 0.0f;
            const float *wc = w + c * kk;
#pragma unroll
            for (int i = 0; i < k; i++) {
                long hh = (long)(oh * (size_t)s) - p + i;
                if (hh < 0 || hh >= (long)H) {
                    if (!replicate) continue;
                    hh = hh < 0 ? 0 : (long)H - 1;
                }
#pragma unroll
                for (int j = 0; j < k; j++) {
                    long ww = (long)(ow * (size_t)s) - p + j;
                    if (ww < 0 || ww >= (long)W) {
                        if (!replicate) continue;
                        ww = ww < 0 ? 0 : (long)W - 1;
                    }
                    sum = __fadd_rn(sum, __fmul_rn(wc[i * k + j], xn[((size_t)hh * W + (size_t)ww) * C + c]));
                }
            }
            y[q * C + c] = sum;
        }
    }
}

static int dwconv(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, size_t Ho, size_t Wo, int k,
                  int s, int p, int replicate, const cs_tensor *w, const cs_tensor *bias)
{
    if (!N || !Ho || !Wo || !C) return 0;
    int rc = 0;
    const float *wf = weight(w, &rc);
    const float *bf = bias ? weight(bias, &rc) : NULL;
    if (!wf || (bias && !bf)) return rc;
    rc_shape sh = rc_launch(N * Ho * Wo, C);
    if (k == 3) k_dwconv<3><<<sh.grid, sh.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, k, s, p, replicate, wf, bf);
    else k_dwconv<0><<<sh.grid, sh.block, 0, stream()>>>(x, y, N, H, W, C, Ho, Wo, k, s, p, replicate, wf, bf);
    return cs_cuda_check_launch("depthwise convolution");
}

extern "C" int cs_cuda_dwconv3x3(const float *x, float *y, size_t N, size_t H, size_t W, size_t C, const cs_tensor *w,
                                 const cs_tensor *bias, int replicate)
{
    return dwconv(x, y, N, H, W, C, H, W, 3, 1, 1, replicate, w, bias);
}

/* ---- general Conv2d: im2col (columns in the weight's (ci, i, j) order) of a
 * chunk of output pixels of all images, then one product per group on the
 * group's rows of the weight, written into its channels of y. */

static __global__ void k_im2col(const float *x, float *col, size_t q0, size_t nq, size_t H, size_t W, size_t Cin,
                                size_t cg, size_t g, int k, int s, int p, size_t Ho, size_t Wo)
{
    unsigned kk = (unsigned)(k * k), K = (unsigned)(cg * kk);
    for (size_t qi = blockIdx.x; qi < nq; qi += gridDim.x) {
        size_t q = q0 + qi, ow = q % Wo, t = q / Wo, oh = t % Ho, n = t / Ho;
        float *cr = col + qi * K;
        for (unsigned e = threadIdx.x; e < K; e += blockDim.x) {
            unsigned ci = e / kk, tap = e - ci * kk, i = tap / (unsigned)k, j = tap - i * (unsigned)k;
            long hh = (long)(oh * (size_t)s) - p + (long)i, ww = (long)(ow * (size_t)s) - p + (long)j;
            float v = 0.0f;
            if (hh >= 0 && hh < (long)H && ww >= 0 && ww < (long)W)
                v = x[((n * H + (size_t)hh) * W + (size_t)ww) * Cin + g * cg + ci];
            cr[e] = v;
        }
    }
}

extern "C" int cs_cuda_conv2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                              const cs_tensor *bias, int stride, int pad, int groups, float *y, size_t Ho, size_t Wo)
{
    if (w->ndim != 4 || groups < 1 || w->shape[2] != w->shape[3] || Cin % (size_t)groups ||
        (size_t)w->shape[1] * (size_t)groups != Cin || (size_t)w->shape[0] % (size_t)groups || stride < 1)
        return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: the weight's shape does not fit the input");
    int k = (int)w->shape[2];
    size_t Cout = (size_t)w->shape[0], cg = Cin / (size_t)groups, og = Cout / (size_t)groups;
    size_t K = cg * (size_t)k * (size_t)k, P = N * Ho * Wo, es = dtype_bytes(w->dtype);
    if (!P || !Cout) return 0;
    if (groups > 1 && cg == 1 && og == 1)   /* depthwise: direct */
        return dwconv(x, y, N, H, W, Cin, Ho, Wo, k, stride, pad, 0, w, bias);
    if (!es) return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: the weight is not a float type");
    /* the weight rows of group g: [og, K] from row g*og; the bias likewise */
    cs_tensor wv = *w, bv = *w;
    wv.ndim = 2;
    wv.shape[0] = (int64_t)og;
    wv.shape[1] = (int64_t)K;
    size_t bes = 0;
    if (bias) {
        bv = *bias;
        bv.ndim = 1;
        bv.shape[0] = (int64_t)og;
        bes = dtype_bytes(bias->dtype);
        if (!bes || numel(bias) != Cout) return cs_cuda_fail(cudaErrorInvalidValue, "conv2d: bias does not fit");
    }
    if (k == 1 && stride == 1 && pad == 0 && groups == 1 && Ho == H && Wo == W)   /* a per-pixel linear layer */
        return cs_cuda_linear(x, P, Cin, Cin, &wv, bias ? &bv : NULL, y, Cout, 0);
    size_t blk = COL_BYTES / (K * sizeof(float));
    if (blk < 1) blk = 1;
    if (blk > P) blk = P;
    int rc = 0;
    float *col = (float *)scratch(6, blk * K * sizeof(float), "conv2d column buffer", &rc);
    if (!col) return rc;
    unsigned bs = K >= 256 ? 256 : (unsigned)((K + 31) / 32 * 32);
    for (size_t q0 = 0; q0 < P; q0 += blk) {
        size_t nq = P - q0 < blk ? P - q0 : blk;
        for (size_t g = 0; g < (size_t)groups; g++) {
            k_im2col<<<(unsigned)(nq < MAX_GRID_X ? nq : MAX_GRID_X), bs, 0, stream()>>>(x, col, q0, nq, H, W, Cin, cg,
                                                                                        g, k, stride, pad, Ho, Wo);
            if ((rc = cs_cuda_check_launch("im2col"))) return rc;
            wv.data = (const unsigned char *)w->data + g * og * K * es;
            if (bias) bv.data = (const unsigned char *)bias->data + g * og * bes;
            rc = cs_cuda_linear(col, nq, K, K, &wv, bias ? &bv : NULL, y + q0 * Cout + g * og, Cout, 0);
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---- ConvTranspose2d, weight [Cin, Cout, k, k]: col[rows, (i, j, o)] = x[rows, Cin]
 * x Wr[Cin, k*k*Cout] (Wr: the weight reordered so o is contiguous), then each
 * output gathers its terms as ops.c scatters them: from bias (or 0), input
 * rows h ascending (i descending), then columns wi ascending (j descending).
 * Input rows go in chunks (whole images, or rows of one image) that keep the
 * column buffer bounded; chunks ascend in h, so the order holds. */

static __global__ void k_ct_reorder(const float *wf, float *wr, size_t Cin, size_t Cout, size_t kk)
{
    GRID_STRIDE(e, Cin * Cout * kk)
    {   /* e indexes wr: (c, q, o) */
        size_t o = e % Cout, t = e / Cout, q = t % kk, c = t / kk;
        wr[e] = wf[(c * Cout + o) * kk + q];
    }
}

/* I: the index type of the output pixel's decomposition — 32-bit where
 * the pixel count fits (64-bit divisions cost ~4x the gather's memory time
 * at Stage B's 2x upscalers). Pixel rows and columns are far below 2^31:
 * the tap arithmetic is int. */
template <typename I>
static __global__ void k_ct_gather(const float *col, float *y, const float *bias, int acc, size_t n0, size_t nimg,
                                   size_t hlo, size_t hhi, size_t row0, size_t ohlo, size_t ohhi, size_t H, size_t W,
                                   size_t Cout, int k, int s, int p, size_t Ho, size_t Wo)
{
    size_t kkC = (size_t)k * (size_t)k * Cout;
    I nh = (I)(ohhi - ohlo), wo = (I)Wo;
    RC_ROWS(q, nimg * nh * Wo)
    {
        I qq = (I)q, t = qq / wo;
        int ow = (int)(qq - t * wo);
        I tn = t / nh;
        int oh = (int)(ohlo + (size_t)(t - tn * nh));
        size_t n = n0 + (size_t)tn;
        float *yr = y + ((n * Ho + (size_t)oh) * Wo + (size_t)ow) * Cout;
        RC_COLS(o, Cout)
        {
            float sum = acc ? yr[o] : (bias ? bias[o] : 0.0f);
            for (int i = k - 1; i >= 0; i--) {
                int th = oh + p - i;
                if (th < 0 || th % s) continue;
                size_t h = (size_t)(th / s);
                if (h < hlo || h >= hhi) continue;
                const float *cr = col + ((n * H + h - row0) * W) * kkC;
                for (int j = k - 1; j >= 0; j--) {
                    int tw = ow + p - j;
                    if (tw < 0 || tw % s) continue;
                    size_t wi = (size_t)(tw / s);
                    if (wi >= W) continue;
                    sum = __fadd_rn(sum, cr[wi * kkC + (size_t)(i * k + j) * Cout + o]);
                }
            }
            yr[o] = sum;
        }
    }
}

static void ct_gather(rc_shape sh, const float *col, float *y, const float *bias, int acc, size_t n0, size_t nimg,
                      size_t hlo, size_t hhi, size_t row0, size_t ohlo, size_t ohhi, size_t H, size_t W, size_t Cout, int k,
                      int s, int p, size_t Ho, size_t Wo)
{
    if (nimg * (ohhi - ohlo) * Wo < ((size_t)1 << 31))
        k_ct_gather<unsigned><<<sh.grid, sh.block, 0, stream()>>>(col, y, bias, acc, n0, nimg, hlo, hhi, row0, ohlo, ohhi,
                                                                   H, W, Cout, k, s, p, Ho, Wo);
    else
        k_ct_gather<size_t><<<sh.grid, sh.block, 0, stream()>>>(col, y, bias, acc, n0, nimg, hlo, hhi, row0, ohlo, ohhi,
                                                                 H, W, Cout, k, s, p, Ho, Wo);
}

extern "C" int cs_cuda_conv_transpose2d(const float *x, size_t N, size_t H, size_t W, size_t Cin, const cs_tensor *w,
                                        const cs_tensor *bias, int stride, int pad, float *y, size_t Ho, size_t Wo)
{
    if (w->ndim != 4 || (size_t)w->shape[0] != Cin || w->shape[2] != w->shape[3] || stride < 1)
        return cs_cuda_fail(cudaErrorInvalidValue, "conv_transpose2d: the weight's shape does not fit the input");
    size_t Cout = (size_t)w->shape[1], kk = (size_t)(w->shape[2] * w->shape[3]);
    int k = (int)w->shape[2], rc = 0;
    if (!N || !Ho || !Wo || !Cout) return 0;
    const float *wf = weight(w, &rc);
    const float *bf = bias ? weight(bias, &rc) : NULL;
    if (!wf || (bias && !bf)) return rc;
    size_t rowf = W * kk * Cout, R = COL_BYTES / (rowf * sizeof(float)), rows = N * H;
    if (R < 1) R = 1;
    if (R > rows) R = rows;
    if (R >= H) R = R / H * H;   /* whole images */
    float *wr = (float *)scratch(7, Cin * kk * Cout * sizeof(float), "conv_transpose2d weights", &rc);
    if (!wr) return rc;
    float *col = (float *)scratch(6, R * rowf * sizeof(float), "conv_transpose2d column buffer", &rc);
    if (!col) return rc;
    k_ct_reorder<<<grid_1d(Cin * kk * Cout, BLOCK), BLOCK, 0, stream()>>>(wf, wr, Cin, Cout, kk);
    if ((rc = cs_cuda_check_launch("conv_transpose2d weight reorder"))) return rc;
    int one = R >= rows;   /* one chunk: each output written once, from the bias */
    if (!one) {            /* several: every output starts from the bias, chunks add */
        rc_shape s = rc_launch(N * Ho * Wo, Cout);
        if (bf) {   /* a gather with no rows in range: the bias alone */
            ct_gather(s, col, y, bf, 0, 0, N, 0, 0, 0, 0, Ho, H, W, Cout, k, stride, pad, Ho, Wo);
            rc = cs_cuda_check_launch("conv_transpose2d bias");
        } else rc = cs_cuda_fill(y, 0.0f, N * Ho * Wo * Cout);
        if (rc) return rc;
    }
    for (size_t g0 = 0; g0 < rows;) {
        size_t n0 = g0 / H, h0 = g0 % H, g1, nimg, hlo, hhi, ohlo, ohhi;
        if (R >= H) {   /* whole images n0 .. */
            g1 = g0 + R < rows ? g0 + R : rows;
            nimg = (g1 - g0) / H;
            hlo = 0, hhi = H, ohlo = 0, ohhi = Ho;
        } else {   /* rows h0 .. of image n0 */
            g1 = g0 + R < (n0 + 1) * H ? g0 + R : (n0 + 1) * H;
            nimg = 1;
            hlo = h0, hhi = g1 - n0 * H;
            long lo = (long)(hlo * (size_t)stride) - pad, hi = (long)((hhi - 1) * (size_t)stride) + k - pad;
            ohlo = lo < 0 ? 0 : (size_t)lo;
            ohhi = hi > (long)Ho ? Ho : hi < 0 ? 0 : (size_t)hi;
        }
        rc = cs_cuda_sgemm(0, (g1 - g0) * W, kk * Cout, Cin, 1.0f, x + g0 * W * Cin, Cin, wr, kk * Cout, 0.0f, col,
                           kk * Cout);
        if (rc) return rc;
        if (ohhi > ohlo) {
            rc_shape s = rc_launch(nimg * (ohhi - ohlo) * Wo, Cout);
            ct_gather(s, col, y, bf, !one, n0, nimg, hlo, hhi, g0, ohlo, ohhi, H, W, Cout, k, stride, pad, Ho, Wo);
            if ((rc = cs_cuda_check_launch("conv_transpose2d gather"))) return rc;
        }
        g0 = g1;
    }
    return 0;
}
