/* The fake device's fused blocks (see tests/fake_backend.c): a ResBlock /
 * FeedForwardBlock, a TimestepBlock, an AttnBlock and a Stage A ResBlock, each run by the CPU's
 * single ops as the CPU composes them, so the results equal the CPU's bit
 * for bit and the fused op's dispatch is exercised. A block whose weights
 * the device owns (weight_rw: training) is declined with CS_EUNSUP, as the
 * host code here would read stale host weights; the op layer then runs the
 * single ops, which read the device's copies. */
#include "fake_backend.h"

#include "blocks.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "stage_a.h"

#include <stdlib.h>
#include <string.h>

/* a ResBlock / FeedForwardBlock as the CPU's single ops compose it */
static int block_host(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                      const cs_mlp_block *w)
{
    size_t rows = N * H * W, cin = c + cs, c4 = (size_t)w->fc1_w->shape[0];
    float *t = malloc(rows * c * sizeof(float) + 1), *cat = malloc(rows * cin * sizeof(float) + 1),
          *h = malloc(rows * c4 * sizeof(float) + 1);
    const float *g = NULL, *be = NULL;
    int rc = t && cat && h ? 0 : CS_ENOMEM;
    if (!rc && w->dw_w) rc = cs_dwconv3x3(x, t, N, H, W, c, w->dw_w, w->dw_b, 0);
    if (!rc) cs_layernorm(w->dw_w ? t : x, t, rows, c, 1e-6f, NULL, NULL);
    if (!rc && skip) cs_concat_channels(t, c, skip, cs, cat, rows);
    const float *in = skip ? cat : t;
    if (!rc) rc = cs_linear(in, rows, cin, 0, w->fc1_w, w->fc1_b, h, 0, 0);
    if (!rc) cs_gelu(h, h, rows * c4);
    /* after the ops above: their bf16 weights pass through the same scratch slots */
    if (!rc && (!(g = cs_weight_f32(w->gamma, 2)) || !(be = cs_weight_f32(w->beta, 3)))) rc = CS_ENOMEM;
    if (!rc) rc = cs_grn(h, h, N, H * W, c4, g, be);
    if (!rc) rc = cs_linear(h, rows, c4, 0, w->fc2_w, w->fc2_b, x, 0, 1);
    free(t), free(cat), free(h);
    return rc;
}

static int mlp_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *skip, size_t cs,
                     const cs_mlp_block *w)
{
    if (fake_in_rw(w->fc1_w) || fake_in_rw(w->fc2_w) || fake_in_rw(w->gamma) || fake_in_rw(w->beta) || fake_in_rw(w->fc1_b) ||
        fake_in_rw(w->fc2_b) || fake_in_rw(w->dw_w) || fake_in_rw(w->dw_b))
        return CS_EUNSUP;   /* block_host reads host weights: the single ops take the device's */
    fake_call cl = fake_enter("mlp_block");
    size_t rows = N * H * W;
    float *rx = dv(&cl, x, rows * c, "x");
    const float *rs = skip ? dv(&cl, skip, rows * cs, "skip") : NULL;
    fake_host_only(&cl, w->fc1_w->data, "fc1");
    fake_host_only(&cl, w->fc2_w->data, "fc2");
    int rc = 0;
    if (!cl.rc) ON_HOST(rc = block_host(rx, N, H, W, c, rs, cs, w));
    return fake_done(&cl, rc);
}

/* a TimestepBlock through the CPU's single-op forward (bit-equal to the CPU) */
static int ts_block(float *x, size_t N, size_t HW, size_t c, const float *t, size_t ldt, size_t c_r, int nconds,
                    const cs_tensor *w, const cs_tensor *b)
{
    for (int i = 0; i <= nconds; i++)
        if (fake_in_rw(&w[i]) || fake_in_rw(&b[i])) return CS_EUNSUP;
    fake_call cl = fake_enter("ts_block");
    float *rx = dv(&cl, x, N * HW * c, "x");
    const float *rt = dv2(&cl, t, N, c_r * (size_t)(nconds + 1), ldt, "t");
    fake_host_only(&cl, w[0].data, "w");
    cs_tsblock tb = {.c = (int)c, .c_r = (int)c_r, .nconds = nconds};
    for (int i = 0; i <= nconds && i <= CS_MAX_TCONDS; i++) tb.w[i] = w[i], tb.b[i] = b[i];
    cs_ws ws = {0};
    int rc = nconds > CS_MAX_TCONDS ? CS_EUNSUP : 0;
    if (!cl.rc && !rc) ON_HOST(rc = cs_tsblock_forward(&tb, rx, N, HW, rt, ldt, &ws));
    cs_ws_free(&ws);
    return fake_done(&cl, rc);
}

/* an AttnBlock through the CPU's single-op forward (bit-equal to the CPU) */
static int attn_block(float *x, size_t N, size_t HW, size_t c, int nhead, int self_attn, const float *cond, size_t Lc,
                      size_t cc, const cs_attn_block *w)
{
    if (fake_in_rw(w->wq) || fake_in_rw(w->wk) || fake_in_rw(w->wv) || fake_in_rw(w->wo) || fake_in_rw(w->bo) || fake_in_rw(w->kv_w) ||
        fake_in_rw(w->kv_b) || fake_in_rw(w->bq) || fake_in_rw(w->bk) || fake_in_rw(w->bv))
        return CS_EUNSUP;
    fake_call cl = fake_enter("attn_block");
    float *rx = dv(&cl, x, N * HW * c, "x");
    const float *rc_ = Lc ? dv(&cl, cond, N * Lc * cc, "cond") : NULL;
    fake_host_only(&cl, w->wq->data, "wq");
    fake_host_only(&cl, w->wo->data, "wo");
    cs_attnblock b = {.c = (int)c, .c_cond = (int)cc, .nhead = nhead, .packed = w->wqkv != NULL,
                      .self_attn = self_attn, .wq = *w->wq, .wk = *w->wk, .wv = *w->wv, .bq = *w->bq,
                      .bk = *w->bk, .bv = *w->bv, .wo = *w->wo, .bo = *w->bo, .kv_w = *w->kv_w, .kv_b = *w->kv_b};
    if (w->wqkv) b.wqkv = *w->wqkv, b.bqkv = *w->bqkv;
    cs_ws ws = {0};
    int rc = 0;
    if (!cl.rc) ON_HOST(rc = cs_attnblock_forward(&b, rx, N, HW, rc_, Lc, &ws));
    cs_ws_free(&ws);
    return fake_done(&cl, rc);
}

/* a Stage A ResBlock as the CPU runs it (its scratch sized for the CPU's row chunks) */
static int sa_host(cs_sa_resblock *b, float *x, size_t N, size_t H, size_t W)
{
    float *work = malloc(cs_sa_resblock_work(b, H * W) * sizeof(float) + 1);
    int rc = work ? cs_sa_resblock_forward(b, x, N, H, W, work) : CS_ENOMEM;
    free(work);
    return rc;
}

static int sa_block(float *x, size_t N, size_t H, size_t W, size_t c, const float *g, const cs_mlp_block *w)
{
    if (fake_in_rw(w->dw_w) || fake_in_rw(w->dw_b) || fake_in_rw(w->fc1_w) || fake_in_rw(w->fc1_b) ||
        fake_in_rw(w->fc2_w) || fake_in_rw(w->fc2_b))
        return CS_EUNSUP;
    fake_call cl = fake_enter("sa_block");
    float *rx = dv(&cl, x, N * H * W * c, "x");
    fake_host_only(&cl, w->fc1_w->data, "fc1");
    fake_host_only(&cl, w->fc2_w->data, "fc2");
    cs_sa_resblock b = {.c = (int)c, .c_hidden = (int)w->fc1_w->shape[0], .dw_w = *w->dw_w, .dw_b = *w->dw_b,
                        .fc1_w = *w->fc1_w, .fc1_b = *w->fc1_b, .fc2_w = *w->fc2_w, .fc2_b = *w->fc2_b};
    memcpy(b.g, g, sizeof b.g);
    int rc = 0;
    if (!cl.rc) ON_HOST(rc = sa_host(&b, rx, N, H, W));
    return fake_done(&cl, rc);
}

void fake_block_ops(cs_dev_ops *o)
{
    o->mlp_block = mlp_block, o->ts_block = ts_block, o->attn_block = attn_block;
#ifndef FAKE_NO_BACKWARD   /* the plugin with fewer optional ops: Stage A's single ops on a device */
    o->sa_block = sa_block;
#endif
}
