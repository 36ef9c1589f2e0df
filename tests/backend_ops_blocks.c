/* The cross-backend op test's fused blocks (tests/test_backend_ops.c says
 * how each is compared): a ResBlock / FeedForwardBlock, a TimestepBlock,
 * an AttnBlock and a Stage A ResBlock, whole, through src/blocks.c, so the device's fused op runs
 * where it has one. */
#include "backend_ops.h"

#include "blocks.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "ops.h"
#include "stage_a.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a ResBlock (dw 1) or FeedForwardBlock (dw 0) through src/blocks.c: the
 * device's fused op where it has one, else (and on the CPU) the single ops */
static void t_block(int dw, cs_dtype dt, size_t N, size_t H, size_t W, size_t c, size_t cs)
{
    size_t rows = N * H * W, c4 = 4 * c, cin = c + cs;
    float *sk = rnd(rows * (cs ? cs : 1)), *y[2];
    y[0] = rnd(rows * c), y[1] = dupf(y[0], rows * c);
    cs_resblock b = {.c = (int)c, .c_skip = (int)cs, .has_dw = dw, .k = 3};
    b.dw_w = weight(CS_F32, "dw", (int64_t)c, 1, 3, 3), b.dw_b = weight(CS_F32, "dw.b", (int64_t)c, 0, 0, 0);
    b.fc1_w = weight(dt, "fc1", (int64_t)c4, (int64_t)cin, 0, 0), b.fc1_b = weight(CS_F32, "fc1.b", (int64_t)c4, 0, 0, 0);
    b.gamma = weight(CS_F32, "gamma", 1, 1, 1, (int64_t)c4), b.beta = weight(CS_F32, "beta", 1, 1, 1, (int64_t)c4);
    b.fc2_w = weight(dt, "fc2", (int64_t)c, (int64_t)c4, 0, 0), b.fc2_b = weight(CS_F32, "fc2.b", (int64_t)c, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *ps = cs ? in(sk, rows * cs) : NULL;
        float *py = inout(y[m], rows * c);
        rc[m] = argrc() ? argrc()
                : dw    ? cs_resblock_forward(&b, py, N, H, W, ps, &ws)
                        : cs_ffblock_forward(&b, py, N, H * W, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "mlp_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s %s N=%zu H=%zu W=%zu c=%zu skip=%zu", dw ? "ResBlock" : "FeedForward", dtn(dt), N, H, W,
             c, cs);
    report("mlp_block", s, 1, y[0], y[1], rows * c, rc[0], rc[1]);
    cs_tensor *all[] = {&b.dw_w, &b.dw_b, &b.fc1_w, &b.fc1_b, &b.gamma, &b.beta, &b.fc2_w, &b.fc2_b};
    for (int i = 0; i < 8; i++) drop(all[i]);
    free(sk), free(y[0]), free(y[1]);
}

/* a Stage A ResBlock (c_hidden ch) through src/stage_a.c: the device's
 * fused op where it has one, else (and on the CPU) the single ops */
static void t_sablock(cs_dtype dt, size_t N, size_t H, size_t W, size_t c, size_t ch)
{
    size_t rows = N * H * W;
    float *y[2];
    y[0] = rnd(rows * c), y[1] = dupf(y[0], rows * c);
    cs_sa_resblock b = {.c = (int)c, .c_hidden = (int)ch};
    for (int i = 0; i < 6; i++) b.g[i] = urand();
    b.dw_w = weight(CS_F32, "dw", (int64_t)c, 1, 3, 3), b.dw_b = weight(CS_F32, "dw.b", (int64_t)c, 0, 0, 0);
    b.fc1_w = weight(dt, "fc1", (int64_t)ch, (int64_t)c, 0, 0), b.fc1_b = weight(CS_F32, "fc1.b", (int64_t)ch, 0, 0, 0);
    b.fc2_w = weight(dt, "fc2", (int64_t)c, (int64_t)ch, 0, 0), b.fc2_b = weight(CS_F32, "fc2.b", (int64_t)c, 0, 0, 0);
    pow2_scale(&b.fc1_w, c), pow2_scale(&b.fc2_w, ch);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        begin(m);
        float *py = inout(y[m], rows * c);
        /* scratch sized in this mode, or (device, odd widths) none: the block takes its own if it needs it */
        int given = !m && c % 2 == 0;
        float *work = given ? cs_act_alloc(cs_sa_resblock_work(&b, H * W)) : NULL;
        rc[m] = argrc() ? argrc() : work || !given ? cs_sa_resblock_forward(&b, py, N, H, W, work) : CS_ENOMEM;
        cs_act_free(work);
        rc[m] = end(rc[m], "sa_block");
    }
    char s[160];
    snprintf(s, sizeof s, "Stage A ResBlock %s N=%zu H=%zu W=%zu c=%zu c_hidden=%zu", dtn(dt), N, H, W, c, ch);
    report("sa_block", s, 1, y[0], y[1], rows * c, rc[0], rc[1]);
    cs_tensor *all[] = {&b.dw_w, &b.dw_b, &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b};
    for (int i = 0; i < 6; i++) drop(all[i]);
    free(y[0]), free(y[1]);
}

/* rows [r0, r0 + n) of a 2-D (or 1-D) weight, as a view */
static cs_tensor rows_of(const cs_tensor *t, int64_t r0, int64_t n)
{
    cs_tensor v = *t;
    v.data = (const char *)t->data + (size_t)(r0 * (t->ndim > 1 ? t->shape[1] : 1)) * cs_dtype_size(t->dtype);
    v.shape[0] = n;
    return v;
}

/* a whole TimestepBlock through src/blocks.c, as t_attnblock */
static void t_tsblock(cs_dtype dt, size_t N, size_t HW, size_t c, size_t cr, int nconds, size_t pad)
{
    size_t ldt = cr * (size_t)(nconds + 1) + pad;
    float *t = rnd(N * ldt), *y[2];
    y[0] = rnd(N * HW * c), y[1] = dupf(y[0], N * HW * c);
    cs_tsblock b = {.c = (int)c, .c_r = (int)cr, .nconds = nconds};
    for (int i = 0; i <= nconds; i++)
        b.w[i] = weight(dt, "mapper", 2 * (int64_t)c, (int64_t)cr, 0, 0), b.b[i] = weight(CS_F32, "mapper.b", 2 * (int64_t)c, 0, 0, 0);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *pt = in(t, N * ldt);
        float *py = inout(y[m], N * HW * c);
        rc[m] = argrc() ? argrc() : cs_tsblock_forward(&b, py, N, HW, pt, ldt, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "ts_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu HW=%zu c=%zu c_r=%zu conds=%d ldt=%zu", dtn(dt), N, HW, c, cr, nconds, ldt);
    report("ts_block", s, 1, y[0], y[1], N * HW * c, rc[0], rc[1]);
    for (int i = 0; i <= nconds; i++) drop(&b.w[i]), drop(&b.b[i]);
    free(t), free(y[0]), free(y[1]);
}

/* a whole AttnBlock through src/blocks.c: the device's fused op where it
 * has one, else (and on the CPU) the single ops */
static void t_attnblock(cs_dtype dt, size_t N, size_t HW, size_t c, int nhead, size_t Lc, size_t cc, int packed,
                        int self_attn)
{
    size_t rows = N * HW;
    float *cond = rnd(N * Lc * cc + 1), *y[2];
    y[0] = rnd(rows * c), y[1] = dupf(y[0], rows * c);
    for (size_t i = 0; i < rows * c; i++) y[0][i] = y[1][i] = 4.0f * y[0][i] + 1.0f;   /* LN must remove a mean */
    int64_t C = (int64_t)c;
    cs_attnblock b = {.c = (int)c, .c_cond = (int)cc, .nhead = nhead, .packed = packed, .self_attn = self_attn};
    cs_tensor sep[6] = {0};
    if (packed) {
        b.wqkv = weight(dt, "in_proj", 3 * C, C, 0, 0), b.bqkv = weight(CS_F32, "in_proj.b", 3 * C, 0, 0, 0);
        b.wq = rows_of(&b.wqkv, 0, C), b.wk = rows_of(&b.wqkv, C, C), b.wv = rows_of(&b.wqkv, 2 * C, C);
        b.bq = rows_of(&b.bqkv, 0, C), b.bk = rows_of(&b.bqkv, C, C), b.bv = rows_of(&b.bqkv, 2 * C, C);
    } else {
        for (int i = 0; i < 3; i++)
            sep[i] = weight(dt, "to_qkv", C, C, 0, 0), sep[3 + i] = weight(CS_F32, "to_qkv.b", C, 0, 0, 0);
        b.wq = sep[0], b.wk = sep[1], b.wv = sep[2], b.bq = sep[3], b.bk = sep[4], b.bv = sep[5];
    }
    b.wo = weight(dt, "out_proj", C, C, 0, 0), b.bo = weight(CS_F32, "out_proj.b", C, 0, 0, 0);
    b.kv_w = weight(dt, "kv_mapper", C, (int64_t)cc, 0, 0), b.kv_b = weight(CS_F32, "kv_mapper.b", C, 0, 0, 0);
    /* weights of nn.Linear's scale (about 1/sqrt(fan_in)): with +-1 ones the
     * scores reach +-30 and four chained 16-bit products put the block's
     * error past the tolerance on a GPU with or without its fused form */
    if (packed) pow2_scale(&b.wqkv, c);
    for (int i = 0; i < 3 && !packed; i++) pow2_scale(&sep[i], c);
    pow2_scale(&b.wo, c);
    pow2_scale(&b.kv_w, cc);
    int rc[2];
    for (int m = 0; m < 2; m++) {
        cs_ws ws = {0};
        begin(m);
        const float *pc = Lc ? in(cond, N * Lc * cc) : NULL;
        float *py = inout(y[m], rows * c);
        rc[m] = argrc() ? argrc() : cs_attnblock_forward(&b, py, N, HW, pc, Lc, &ws);
        cs_ws_free(&ws);
        rc[m] = end(rc[m], "attn_block");
    }
    char s[160];
    snprintf(s, sizeof s, "%s N=%zu HW=%zu c=%zu heads=%d Lc=%zu c_cond=%zu packed=%d self=%d", dtn(dt), N, HW, c,
             nhead, Lc, cc, packed, self_attn);
    report("attn_block", s, 1, y[0], y[1], rows * c, rc[0], rc[1]);
    cs_tensor *all[] = {&b.wqkv, &b.bqkv, &b.wo, &b.bo, &b.kv_w, &b.kv_b};
    for (int i = 0; i < 6; i++) drop(all[i]);
    for (int i = 0; i < 6; i++) drop(&sep[i]);
    free(cond), free(y[0]), free(y[1]);
}

void block_ops(void)
{
    t_block(1, CS_F32, 2, 3, 5, 1, 0);
    t_block(1, CS_BF16, 2, 7, 9, 17, 3);
    t_block(1, CS_F32, 1, 33, 31, 24, 40);
    t_block(0, CS_F32, 2, 1, 17, 63, 0);
    t_block(0, CS_BF16, 1, 1, 1025, 3, 0);
    /* the float4 form of the depthwise conv + norm (c % 4 == 0): a partly
     * used last group of lanes (c/4 = 80), c = 1536 with a skip, the widest
     * template (c = 2048), the FeedForward form, and more pixels than the
     * resident blocks hold (each warp walks several) */
    t_block(1, CS_BF16, 2, 5, 7, 320, 0);
    t_block(1, CS_F32, 1, 4, 3, 1536, 1536);
    t_block(1, CS_BF16, 1, 3, 5, 2048, 0);
    t_block(0, CS_BF16, 2, 1, 9, 64, 0);
    t_block(1, CS_BF16, 2, 131, 67, 84, 0);
    t_block(0, CS_BF16, 1, 1, 40000, 32, 0);
    t_tsblock(CS_F32, 2, 17, 63, 64, 2, 0);
    t_tsblock(CS_BF16, 2, 1025, 17, 3, 0, 5);
    t_tsblock(CS_F32, 1, 3, 128, 17, 4, 1);
    t_tsblock(CS_BF16, 9, 2, 5, 8, 1, 0);   /* past the device's 8 rows: single ops */
    t_tsblock(CS_BF16, 2, 7, 1536, 64, 2, 3);   /* Stage C's mappers (K = 64) */
    t_attnblock(CS_F32, 2, 17, 64, 1, 9, 24, 1, 1);
    t_attnblock(CS_BF16, 2, 100, 128, 2, 85, 40, 1, 1);   /* a Stage C AttnBlock's shapes, smaller */
    t_attnblock(CS_F32, 1, 65, 192, 3, 77, 17, 0, 1);     /* diffusers' separate q, k, v */
    t_attnblock(CS_BF16, 2, 63, 128, 2, 0, 0, 1, 1);      /* no conditioning */
    t_attnblock(CS_F32, 1, 33, 64, 1, 5, 8, 1, 0);        /* cross-attention only */
    t_attnblock(CS_F32, 1, 17, 24, 3, 3, 5, 0, 1);        /* 8-wide heads: single ops on a GPU */
    /* Stage A's ResBlock: odd sizes (c % 8 != 0: single ops on a GPU), then its levels' widths */
    t_sablock(CS_F32, 2, 3, 5, 1, 4);
    t_sablock(CS_BF16, 1, 7, 9, 3, 12);
    t_sablock(CS_BF16, 2, 5, 1, 17, 68);
    t_sablock(CS_F32, 1, 1, 33, 63, 252);
    t_sablock(CS_BF16, 2, 9, 7, 8, 32);
    t_sablock(CS_BF16, 1, 31, 17, 192, 768);   /* Stage A's 512^2 level, smaller */
    t_sablock(CS_BF16, 2, 13, 11, 384, 1536);   /* its 256^2 level */
    t_sablock(CS_F32, 1, 130, 3, 64, 256);     /* past the CPU's 384-row chunks */
}
