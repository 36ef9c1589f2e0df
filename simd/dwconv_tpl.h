/* One body of the depthwise 3x3 convolution (kernels.h dwconv3x3), included
 * by each ISA file after it defines its vector macros (as for gemm_tpl.h:
 * VF, VLOAD(p), VSTORE(p, v), VFMA(a, b, c) = a*b + c fused; L floats a
 * vector) and:
 *   DW_CB       channels a block (their weights transposed on the stack)
 *   DW_ALIGN    the stack copies' alignment
 *   DW_MASK     the type of a tail mask, DW_TAILMASK(n) the mask of n lanes
 *   dw_pixel(xp, tk, nt, wt, bt, yp, cb, tm)   channels [0, cb) of one
 *               output pixel from its nt taps xp[t] (tap index tk[t])
 *
 * Channels are done in blocks of DW_CB whose weights are transposed to
 * wt[9][DW_CB] on the stack (PyTorch's [C][3][3] would need gathers). Each
 * output sums bias, then the valid taps in the reference's order, with FMA
 * (the reference rounds the products: results differ by summation rounding
 * only, and every output is computed the same way whatever rows a thread
 * gets). Interior columns take the taps at fixed offsets, two vectors of
 * channels at a time (weights from the stack copy, in L1); border pixels
 * list their taps one by one. Keeping one vector's 9 weights in registers
 * while sweeping a row was slower (a pixel stride per load defeats the
 * prefetchers). */

/* columns [1, W-1) of one output row from three input rows (each at column
 * 0 of this channel block): taps at fixed offsets, weights from L1 */
#define DW_TAP(k, p, o)                                                \
    s0 = VFMA(VLOAD(wt + (k) * DW_CB + c), VLOAD((p) + (o) + c), s0); \
    s1 = VFMA(VLOAD(wt + (k) * DW_CB + c + L), VLOAD((p) + (o) + c + L), s1)
static void dw_interior_row(const float *const *r, float *yrow, size_t W, size_t C, size_t cb, const float *wt,
                            const float *bt, DW_MASK tm)
{
    static const int all9[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t wi = 1; wi + 1 < W; wi++) {
        const float *p0 = r[0] + (wi - 1) * C, *p1 = r[1] + (wi - 1) * C, *p2 = r[2] + (wi - 1) * C;
        float *yp = yrow + wi * C;
        size_t c = 0;
        for (; c + 2 * L <= cb; c += 2 * L) {
            VF s0 = VLOAD(bt + c), s1 = VLOAD(bt + c + L);
            DW_TAP(0, p0, 0); DW_TAP(1, p0, C); DW_TAP(2, p0, 2 * C);
            DW_TAP(3, p1, 0); DW_TAP(4, p1, C); DW_TAP(5, p1, 2 * C);
            DW_TAP(6, p2, 0); DW_TAP(7, p2, C); DW_TAP(8, p2, 2 * C);
            VSTORE(yp + c, s0);
            VSTORE(yp + c + L, s1);
        }
        if (c < cb) {
            const float *xp[9] = {p0 + c, p0 + C + c, p0 + 2 * C + c, p1 + c, p1 + C + c,
                                  p1 + 2 * C + c, p2 + c, p2 + C + c, p2 + 2 * C + c};
            dw_pixel(xp, all9, 9, wt + c, bt + c, yp + c, cb - c, tm);
        }
    }
}
#undef DW_TAP

static void dwconv3x3(const float *x, float *y, size_t H, size_t W, size_t C, const float *w, const float *bias,
                      int replicate, size_t h0, size_t h1)
{
    float wt[9 * DW_CB] __attribute__((aligned(DW_ALIGN)));
    float bt[DW_CB] __attribute__((aligned(DW_ALIGN)));
    static const int all9[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    memset(wt, 0, sizeof wt);   /* lanes past the last block's channels are loaded (masked off) */
    memset(bt, 0, sizeof bt);
    for (size_t c0 = 0; c0 < C; c0 += DW_CB) {
        size_t cb = C - c0 < DW_CB ? C - c0 : DW_CB;
        DW_MASK tm = DW_TAILMASK(cb % L ? cb % L : L);
        for (size_t c = 0; c < cb; c++) {
            for (int k = 0; k < 9; k++) wt[k * DW_CB + c] = w[(c0 + c) * 9 + (size_t)k];
            bt[c] = bias ? bias[c0 + c] : 0.0f;
        }
        for (size_t h = h0; h < h1; h++) {
            const float *rowp[3];
            for (int i = 0; i < 3; i++) {
                long hh = (long)h + i - 1;
                if (hh < 0 || hh >= (long)H) hh = replicate ? (hh < 0 ? 0 : (long)H - 1) : -1;
                rowp[i] = hh < 0 ? NULL : x + (size_t)hh * W * C + c0;
            }
            float *yrow = y + h * W * C + c0;
            int all_rows = rowp[0] && rowp[2];
            if (all_rows && W > 2) dw_interior_row(rowp, yrow, W, C, cb, wt, bt, tm);
            for (size_t wi = 0; wi < W; wi++) {
                if (all_rows && wi > 0 && wi + 1 < W) continue;   /* done above */
                const float *xp[9];
                int tk[9], nt = 0;
                for (int i = 0; i < 3; i++) {
                    if (!rowp[i]) continue;
                    for (int j = 0; j < 3; j++) {
                        long ww = (long)wi + j - 1;
                        if (ww < 0 || ww >= (long)W) {
                            if (!replicate) continue;
                            ww = ww < 0 ? 0 : (long)W - 1;
                        }
                        xp[nt] = rowp[i] + (size_t)ww * C;
                        tk[nt++] = i * 3 + j;
                    }
                }
                float *yp = yrow + wi * C;
                if (nt == 9) dw_pixel(xp, all9, 9, wt, bt, yp, cb, tm);   /* constant count: unrolled */
                else dw_pixel(xp, tk, nt, wt, bt, yp, cb, tm);
            }
        }
    }
}
