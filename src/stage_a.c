#include "stage_a.h"

#include "cancel.h"
#include "device.h"
#include "error.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cs_stage_a {
    cs_stage_a_config cfg;
    cs_st_file *owned;
    /* decoder */
    cs_tensor up0_w, up0_b;                       /* up_blocks.0.0: [C, c_latent,1,1] */
    cs_sa_resblock *up_res;                       /* bottleneck + one per lower level */
    cs_tensor upT_w[CS_STAGE_A_MAX_LEVELS], upT_b[CS_STAGE_A_MAX_LEVELS];   /* by target level */
    cs_tensor out_w, out_b;                       /* out_block.0: [12, c0,1,1] */
    /* encoder */
    cs_tensor in_w, in_b;                         /* in_block.1: [c0, 12,1,1] */
    cs_sa_resblock down_res[CS_STAGE_A_MAX_LEVELS];
    cs_tensor down_w[CS_STAGE_A_MAX_LEVELS], down_b[CS_STAGE_A_MAX_LEVELS];   /* by target level */
    cs_tensor lat_w;                              /* [c_latent, C,1,1], no bias */
    float *bn_s, *bn_t;                           /* folded BatchNorm, [c_latent] */
    cs_tensor codebook;                           /* [K, c_latent] or dtype-less if absent */
};

/* ---- ResBlock ---- */

int cs_sa_resblock_bind(cs_sa_resblock *b, cs_wmap *m, const char *prefix, int c, int c_hidden)
{
    char nm[160];
    memset(b, 0, sizeof *b);
    const cs_tensor *t;
    if (c <= 0) {
        snprintf(nm, sizeof nm, "%sdepthwise.1.weight", prefix);
        c = (t = cs_wmap_peek(m, nm)) && t->ndim >= 1 ? (int)t->shape[0] : 0;
    }
    if (c_hidden <= 0) {
        snprintf(nm, sizeof nm, "%schannelwise.0.weight", prefix);
        c_hidden = (t = cs_wmap_peek(m, nm)) && t->ndim >= 1 ? (int)t->shape[0] : 0;
    }
    if (c <= 0 || c_hidden <= 0) {
        cs_wmap_problem(m, "missing %s%sdepthwise.1.weight / channelwise.0.weight", m->prefix, prefix);
        return -1;
    }
    b->c = c;
    b->c_hidden = c_hidden;
    int bad = 0;
    cs_tensor g;
    snprintf(nm, sizeof nm, "%sgammas", prefix);
    bad |= cs_wmap_req(m, &g, nm, 1, (int64_t[]){6});
    if (!bad && cs_tensor_to_f32(&g, b->g)) {
        cs_wmap_problem(m, "%s: cannot read", g.name);
        bad = -1;
    }
    snprintf(nm, sizeof nm, "%sdepthwise.1.weight", prefix);
    bad |= cs_wmap_req(m, &b->dw_w, nm, 4, (int64_t[]){c, 1, 3, 3});
    snprintf(nm, sizeof nm, "%sdepthwise.1.bias", prefix);
    bad |= cs_wmap_req(m, &b->dw_b, nm, 1, (int64_t[]){c});
    snprintf(nm, sizeof nm, "%schannelwise.0.weight", prefix);
    bad |= cs_wmap_req(m, &b->fc1_w, nm, 2, (int64_t[]){c_hidden, c});
    snprintf(nm, sizeof nm, "%schannelwise.0.bias", prefix);
    bad |= cs_wmap_req(m, &b->fc1_b, nm, 1, (int64_t[]){c_hidden});
    snprintf(nm, sizeof nm, "%schannelwise.2.weight", prefix);
    bad |= cs_wmap_req(m, &b->fc2_w, nm, 2, (int64_t[]){c, c_hidden});
    snprintf(nm, sizeof nm, "%schannelwise.2.bias", prefix);
    bad |= cs_wmap_req(m, &b->fc2_b, nm, 1, (int64_t[]){c});
    return bad ? -1 : 0;
}

/* Rows per chunk of the ResBlock MLP: bounds its hidden activations to
 * rows x c_hidden. On the CPU 384 (cache-sized; results do not depend on it:
 * cs_sgemm gives every row the same reduction whatever the call's row
 * count, so tiles of any size decode to the untiled bits). On a device,
 * where every chunk is four queued ops, 16384: 384 made a 1024^2 decode
 * ~11000 small ops (about 0.1 s on an H100). */
static size_t sa_rows(void) { return cs_dev ? 16384 : 384; }

size_t cs_sa_resblock_work(const cs_sa_resblock *b, size_t HW)
{
    size_t R = sa_rows() < HW ? sa_rows() : HW;
    return 2 * HW * (size_t)b->c + R * (size_t)b->c_hidden + 4 * (size_t)b->c;
}

int cs_sa_resblock_forward(const cs_sa_resblock *b, float *x, size_t N, size_t H, size_t W, float *work)
{
    /* x: [N, H, W, c]; per image: t, d: [HW, c], hid: [R, c_hidden] */
    cs_mlp_block fw = {&b->dw_w, &b->dw_b, &b->fc1_w, &b->fc1_b, NULL, NULL, &b->fc2_w, &b->fc2_b};
    int frc = cs_sa_block_fused(x, N, H, W, (size_t)b->c, b->g, &fw);   /* the device's whole-block form */
    if (frc != CS_EUNSUP) return frc;
    float *own = NULL;
    if (!work && !(work = own = cs_act_alloc(cs_sa_resblock_work(b, H * W))))
        return cs_error(CS_ENOMEM, "Stage A ResBlock: out of %smemory for %zu MB of scratch", cs_dev ? "device " : "",
                        cs_sa_resblock_work(b, H * W) * sizeof(float) >> 20);
    size_t c = (size_t)b->c, ch = (size_t)b->c_hidden, HW = H * W, R = sa_rows() < HW ? sa_rows() : HW;
    float *t = work, *d = t + HW * c, *hid = d + HW * c, *a1 = hid + R * ch, *b1 = a1 + c,
          *a2 = b1 + c, *b2 = a2 + c;
    cs_fill(a1, 1.0f + b->g[0], c);
    cs_fill(b1, b->g[1], c);
    cs_fill(a2, 1.0f + b->g[3], c);
    cs_fill(b2, b->g[4], c);
    int rc = 0;
    for (size_t n = 0; n < N && !rc; n++) {
        float *xn = x + n * HW * c;
        cs_layernorm(xn, t, HW, c, 1e-6f, a1, b1);
        if ((rc = cs_dwconv3x3(t, d, 1, H, W, c, &b->dw_w, &b->dw_b, 1))) break;
        cs_axpy(xn, d, b->g[2], HW * c);
        cs_layernorm(xn, t, HW, c, 1e-6f, a2, b2);
        /* per-pixel MLP in chunks of R rows; fc2 overwrites its rows of t */
        for (size_t r0 = 0; r0 < HW; r0 += R) {
            size_t m = HW - r0 < R ? HW - r0 : R;
            float *tr = t + r0 * c;
            if ((rc = cs_linear(tr, m, c, 0, &b->fc1_w, &b->fc1_b, hid, 0, 0))) break;
            cs_gelu(hid, hid, m * ch);
            if ((rc = cs_linear(hid, m, ch, 0, &b->fc2_w, &b->fc2_b, tr, 0, 0))) break;
            cs_axpy(xn + r0 * c, tr, b->g[5], m * c);
        }
    }
    cs_act_free(own);
    return rc;
}

/* ---- loading ---- */

static int find_prefix(cs_st_file *f, const char *probe, char *out, size_t len)
{
    static const char *const cand[] = {"", "vae.", "first_stage_model.", "vqgan."};
    char nm[192];
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++) {
        snprintf(nm, sizeof nm, "%s%s", cand[i], probe);
        if (cs_st_find(f, nm)) return snprintf(out, len, "%s", cand[i]), 1;
    }
    return 0;
}

static int bind_encoder(cs_stage_a *s, cs_wmap *m)
{
    cs_stage_a_config *c = &s->cfg;
    int L = c->levels, bad = 0;
    char nm[96];
    bad |= cs_wmap_req(m, &s->in_w, "in_block.1.weight", 4, (int64_t[]){c->c_levels[0], 12, 1, 1});
    bad |= cs_wmap_req(m, &s->in_b, "in_block.1.bias", 1, (int64_t[]){c->c_levels[0]});
    for (int i = 0; i < L; i++) {
        if (i > 0) {
            int64_t cin = c->c_levels[i - 1], cout = c->c_levels[i];
            snprintf(nm, sizeof nm, "down_blocks.%d.weight", 2 * i - 1);
            bad |= cs_wmap_req(m, &s->down_w[i], nm, 4, (int64_t[]){cout, cin, 4, 4});
            snprintf(nm, sizeof nm, "down_blocks.%d.bias", 2 * i - 1);
            bad |= cs_wmap_req(m, &s->down_b[i], nm, 1, (int64_t[]){cout});
        }
        snprintf(nm, sizeof nm, "down_blocks.%d.", 2 * i);
        bad |= cs_sa_resblock_bind(&s->down_res[i], m, nm, c->c_levels[i], 0);
    }
    int last = 2 * L - 1;
    cs_tensor bw, bb, bm, bv;
    snprintf(nm, sizeof nm, "down_blocks.%d.0.weight", last);
    bad |= cs_wmap_req(m, &s->lat_w, nm, 4, (int64_t[]){c->c_latent, c->c_hidden, 1, 1});
    const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    cs_tensor *dst[4] = {&bw, &bb, &bm, &bv};
    for (int k = 0; k < 4; k++) {
        snprintf(nm, sizeof nm, "down_blocks.%d.1.%s", last, part[k]);
        bad |= cs_wmap_req(m, dst[k], nm, 1, (int64_t[]){c->c_latent});
    }
    snprintf(nm, sizeof nm, "down_blocks.%d.1.num_batches_tracked", last);
    cs_wmap_find(m, nm);   /* optional, unused */
    if (bad) return -1;
    size_t cl = (size_t)c->c_latent;
    float *v = malloc(4 * cl * sizeof(float));
    s->bn_s = malloc(2 * cl * sizeof(float));
    if (!v || !s->bn_s) {
        free(v);
        cs_wmap_problem(m, "out of memory");
        return -1;
    }
    s->bn_t = s->bn_s + cl;
    for (int k = 0; k < 4; k++) cs_tensor_to_f32(dst[k], v + (size_t)k * cl);
    for (size_t i = 0; i < cl; i++) {   /* eval BatchNorm, eps 1e-5: y = x*s + t */
        double sc = (double)v[i] / sqrt((double)v[3 * cl + i] + 1e-5);
        s->bn_s[i] = (float)sc;
        s->bn_t[i] = (float)((double)v[cl + i] - (double)v[2 * cl + i] * sc);
    }
    free(v);
    return 0;
}

/* Reads the structure off the tensor names (models.md §5, §10) and binds
 * everything; one message listing the first problems. */
static int bind_model(cs_stage_a *s, cs_wmap *m)
{
    cs_stage_a_config *c = &s->cfg;
    const cs_tensor *t = cs_wmap_peek(m, "up_blocks.0.0.weight");
    if (!t || t->ndim != 4 || t->shape[2] != 1 || t->shape[3] != 1) {
        cs_wmap_problem(m, "missing %sup_blocks.0.0.weight [C, c_latent, 1, 1]", m->prefix);
        return cs_wmap_finish(m, "Stage A");
    }
    c->c_hidden = (int)t->shape[0];
    c->c_latent = (int)t->shape[1];
    /* up_blocks.1.. : ResBlocks (have gammas) and transposed convs (weight only) */
    int nres = 0, nconv = 0, bott = -1, ok = 1;
    char nm[96];
    for (int i = 1;; i++) {
        snprintf(nm, sizeof nm, "up_blocks.%d.gammas", i);
        if (cs_wmap_peek(m, nm)) {
            nres++;
            continue;
        }
        snprintf(nm, sizeof nm, "up_blocks.%d.weight", i);
        if (!cs_wmap_peek(m, nm)) break;
        if (bott < 0) bott = nres;
        else if (nres != bott + nconv) ok = 0;   /* one ResBlock between transposed convs */
        nconv++;
    }
    if (bott < 0) bott = nres;
    c->levels = nconv + 1;
    c->bottleneck_blocks = bott;
    if (!ok || bott < 1 || nres != bott + nconv || c->levels > CS_STAGE_A_MAX_LEVELS ||
        c->c_hidden % (1 << nconv) || c->c_latent < 1) {
        cs_wmap_problem(m, "up_blocks: %d ResBlocks and %d transposed convs do not form a Stage A decoder "
                        "(B bottleneck blocks, then a transposed conv + 1 ResBlock per extra level, at most %d levels)",
                        nres, nconv, CS_STAGE_A_MAX_LEVELS);
        return cs_wmap_finish(m, "Stage A");
    }
    int L = c->levels;
    for (int i = 0; i < L; i++) c->c_levels[i] = c->c_hidden >> (L - 1 - i);
    s->up_res = calloc((size_t)nres, sizeof *s->up_res);
    if (!s->up_res) return cs_error(CS_ENOMEM, "Stage A: out of memory");

    int bad = 0;
    bad |= cs_wmap_req(m, &s->up0_w, "up_blocks.0.0.weight", 4, (int64_t[]){c->c_hidden, c->c_latent, 1, 1});
    bad |= cs_wmap_req(m, &s->up0_b, "up_blocks.0.0.bias", 1, (int64_t[]){c->c_hidden});
    int idx = 1, r = 0;
    for (int lv = L - 1; lv >= 0; lv--) {
        int nb = lv == L - 1 ? bott : 1;
        for (int j = 0; j < nb; j++, idx++) {
            snprintf(nm, sizeof nm, "up_blocks.%d.", idx);
            bad |= cs_sa_resblock_bind(&s->up_res[r++], m, nm, c->c_levels[lv], 0);
        }
        if (lv > 0) {
            snprintf(nm, sizeof nm, "up_blocks.%d.weight", idx);
            bad |= cs_wmap_req(m, &s->upT_w[lv - 1], nm, 4, (int64_t[]){c->c_levels[lv], c->c_levels[lv - 1], 4, 4});
            snprintf(nm, sizeof nm, "up_blocks.%d.bias", idx++);
            bad |= cs_wmap_req(m, &s->upT_b[lv - 1], nm, 1, (int64_t[]){c->c_levels[lv - 1]});
        }
    }
    bad |= cs_wmap_req(m, &s->out_w, "out_block.0.weight", 4, (int64_t[]){12, c->c_levels[0], 1, 1});
    bad |= cs_wmap_req(m, &s->out_b, "out_block.0.bias", 1, (int64_t[]){12});

    c->has_encoder = cs_wmap_peek(m, "in_block.1.weight") != NULL;
    if (c->has_encoder) bad |= bind_encoder(s, m);
    const cs_tensor *cb = cs_wmap_peek(m, "vquantizer.codebook.weight");
    const char *cbn = "vquantizer.codebook.weight";
    if (!cb) cb = cs_wmap_peek(m, cbn = "vquantizer.embedding.weight");   /* diffusers */
    if (cb) {
        int64_t K = cb->ndim == 2 ? cb->shape[0] : 0;
        if (!cs_wmap_req(m, &s->codebook, cbn, 2, (int64_t[]){K > 0 ? K : 1, c->c_latent})) c->codebook_size = (int)K;
    }
    (void)bad;
    return cs_wmap_finish(m, "Stage A");
}

int cs_stage_a_load(cs_st_file *f, const char *prefix, cs_stage_a **out)
{
    *out = NULL;
    char pre[64] = "";
    if (prefix) snprintf(pre, sizeof pre, "%s", prefix);
    else if (!find_prefix(f, "up_blocks.0.0.weight", pre, sizeof pre))
        return cs_error(CS_EMODEL, "%s: not a Stage A checkpoint: no up_blocks.0.0.weight (with or without a vae. prefix)",
                        cs_basename(cs_st_path(f)));
    cs_stage_a *s = calloc(1, sizeof *s);
    if (!s) return cs_error(CS_ENOMEM, "Stage A: out of memory");
    cs_wmap m;
    int rc = cs_wmap_init(&m, f, pre);
    if (!rc) {
        rc = bind_model(s, &m);
        cs_wmap_free(&m);
    }
    if (rc) {
        cs_stage_a_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int cs_stage_a_open(const char *path, cs_stage_a **out)
{
    cs_st_file *f;
    *out = NULL;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    if ((rc = cs_stage_a_load(f, NULL, out))) {
        cs_st_close(f);
        return rc;
    }
    (*out)->owned = f;
    return 0;
}

void cs_stage_a_free(cs_stage_a *s)
{
    if (!s) return;
    free(s->up_res);
    free(s->bn_s);
    cs_st_close(s->owned);
    free(s);
}

const cs_stage_a_config *cs_stage_a_get_config(const cs_stage_a *s) { return &s->cfg; }

int cs_stage_a_factor(const cs_stage_a *s) { return 2 << (s->cfg.levels - 1); }

/* Walk the decoder backwards from the output: a ResBlock needs one more
 * pixel of its input, a transposed conv (k4 s2 p1) needs floor(h/2)+1 input
 * pixels for h output pixels of context. */
int cs_stage_a_halo(const cs_stage_a *s)
{
    int h = 0, L = s->cfg.levels;
    for (int lv = 0; lv < L; lv++) {
        h += lv == L - 1 ? s->cfg.bottleneck_blocks : 1;
        if (lv < L - 1) h = h / 2 + 1;
    }
    return h;
}

/* ---- decode ---- */

/* Scratch layout of one tile (floats). The current activation sits at one
 * end of a single block and everything else at the other end; each
 * transposed conv writes its output to the opposite end, so the block only
 * has to hold the largest live set of any phase. */
typedef struct {
    size_t zt, arena, col;   /* z tile, whole block (floats), transposed-conv column buffer (floats) */
} tile_plan;

static size_t res_work_max(const cs_stage_a *s, int lv, size_t P)
{
    const cs_stage_a_config *c = &s->cfg;
    size_t r0 = 0, mx = 0;
    for (int l = c->levels - 1; l > lv; l--) r0 += l == c->levels - 1 ? (size_t)c->bottleneck_blocks : 1;
    size_t nb = lv == c->levels - 1 ? (size_t)c->bottleneck_blocks : 1;
    for (size_t j = 0; j < nb; j++) {
        size_t w = cs_sa_resblock_work(&s->up_res[r0 + j], P);
        if (w > mx) mx = w;
    }
    return mx;
}

/* res: count the ResBlocks' scratch (the CPU's; in device mode a block
 * takes its own only when the device's fused form declines) */
static tile_plan plan_tile(const cs_stage_a *s, size_t th, size_t tw, int res)
{
    const cs_stage_a_config *c = &s->cfg;
    int L = c->levels;
    tile_plan p = {0, 0, 0};
    size_t P = th * tw;
    p.zt = P * (size_t)c->c_latent;
    size_t need = p.zt + P * (size_t)c->c_levels[L - 1];
    for (int lv = L - 1; lv >= 0; lv--) {
        size_t sh = (size_t)(L - 1 - lv), H = th << sh, W = tw << sh, Pl = H * W, x = Pl * (size_t)c->c_levels[lv];
        size_t a = x + (res ? res_work_max(s, lv, Pl) : 0);
        if (a > need) need = a;
        if (lv > 0) {
            size_t nx = 4 * Pl * (size_t)c->c_levels[lv - 1];
            if (x + nx > need) need = x + nx;
            size_t col = (H < 16 ? H : 16) * W * 16 * (size_t)c->c_levels[lv - 1];
            if (col > p.col) p.col = col;
        } else {   /* out_block: 12 channels and the shuffled copy */
            size_t o = x + 24 * Pl;
            if (o > need) need = o;
        }
    }
    p.arena = need;
    return p;
}

size_t cs_stage_a_decode_bytes(const cs_stage_a *s, size_t th, size_t tw)
{
    tile_plan p = plan_tile(s, th, tw, 1);
    return (p.arena + p.col) * sizeof(float);
}

/* Bytes of a core tile of th x tw with its halo, clipped to the image. */
static size_t tile_bytes(const cs_stage_a *s, size_t th, size_t tw, size_t h, size_t w)
{
    size_t halo = (size_t)cs_stage_a_halo(s);
    return cs_stage_a_decode_bytes(s, th + 2 * halo < h ? th + 2 * halo : h, tw + 2 * halo < w ? tw + 2 * halo : w);
}

void cs_stage_a_plan_tiles(const cs_stage_a *s, size_t h, size_t w, size_t max_bytes, size_t *tile_h, size_t *tile_w)
{
    size_t halo = (size_t)cs_stage_a_halo(s), th = 0, t = 0;
    *tile_h = h;
    *tile_w = w;
    if (!max_bytes || cs_stage_a_decode_bytes(s, h, w) <= max_bytes) return;
    /* the tallest full-width strip and the largest square tile that fit */
    for (size_t k = h; k >= 1 && !th; k--)
        if (tile_bytes(s, k, w, h, w) <= max_bytes) th = k;
    for (size_t k = h < w ? h : w; k >= 1 && !t; k--)
        if (tile_bytes(s, k, k, h, w) <= max_bytes) t = k;
    /* pick the one that recomputes less (input area per core area) */
    double rs = th ? (double)(th + 2 * halo < h ? th + 2 * halo : h) / (double)th : INFINITY;
    double rq = t ? (double)(t + 2 * halo < h ? t + 2 * halo : h) * (double)(t + 2 * halo < w ? t + 2 * halo : w) /
                        ((double)t * (double)t)
                  : INFINITY;
    size_t ch = th, cw = w;
    if (rq < rs) ch = cw = t;
    if (!ch) {   /* nothing fits: smallest sensible tiles, best effort */
        ch = CS_STAGE_A_MIN_TILE < h ? CS_STAGE_A_MIN_TILE : h;
        cw = CS_STAGE_A_MIN_TILE < w ? CS_STAGE_A_MIN_TILE : w;
    }
    size_t nh = (h + ch - 1) / ch, nw = (w + cw - 1) / cw;
    *tile_h = (h + nh - 1) / nh;   /* balanced: same count, no sliver at the end */
    *tile_w = (w + nw - 1) / nw;
}

typedef struct {
    size_t r0, r1, c0, c1;   /* input region (latent pixels, halo included) */
    size_t a0, a1, b0, b1;   /* core region written to the image */
} tile_box;

/* Decodes one tile of image zn [h, w, c_latent] into imgn [f*h, f*w, 3]. */
static int decode_tile(const cs_stage_a *s, const float *zn, size_t w, float scale, const tile_box *t, float *arena,
                       size_t asize, float *imgn)
{
    const cs_stage_a_config *c = &s->cfg;
    int L = c->levels, rc = 0;
    size_t H = t->r1 - t->r0, W = t->c1 - t->c0, cl = (size_t)c->c_latent, f = (size_t)cs_stage_a_factor(s);
    size_t xs = H * W * (size_t)c->c_hidden;
    float *x = arena + asize - xs, *zt = arena;
    int top = 1;
    /* torch: decode(z) starts with z * scale_factor */
    cs_copy2d(zt, W * cl, zn + (t->r0 * w + t->c0) * cl, w * cl, H, W * cl);
    cs_scale(zt, scale, zt, H * W * cl);
    if ((rc = cs_linear(zt, H * W, cl, 0, &s->up0_w, &s->up0_b, x, 0, 0))) return rc;
    const cs_sa_resblock *rb = s->up_res;
    for (int lv = L - 1; lv >= 0; lv--) {
        int nb = lv == L - 1 ? c->bottleneck_blocks : 1;
        float *work = cs_dev ? NULL : top ? arena : x + xs;
        for (int j = 0; j < nb; j++)   /* checked per block: an untiled 1024^2 decode takes seconds */
            if ((rc = cs_cancel_check()) || (rc = cs_sa_resblock_forward(rb++, x, 1, H, W, work))) return rc;
        if (lv == 0) break;
        if ((rc = cs_cancel_check())) return rc;
        size_t ns = 4 * H * W * (size_t)c->c_levels[lv - 1], Ho, Wo;
        float *nx = top ? arena : arena + asize - ns;
        if ((rc = cs_conv_transpose2d(x, 1, H, W, (size_t)c->c_levels[lv], &s->upT_w[lv - 1], &s->upT_b[lv - 1], 2, 1, nx,
                                      &Ho, &Wo)))
            return rc;
        x = nx;
        xs = ns;
        top = !top;
        H = Ho;
        W = Wo;
    }
    float *y12 = top ? arena : x + xs, *y3 = y12 + H * W * 12;
    if ((rc = cs_linear(x, H * W, (size_t)c->c_levels[0], 0, &s->out_w, &s->out_b, y12, 0, 0))) return rc;
    cs_pixel_shuffle(y12, 1, H, W, 3, 2, y3);
    size_t Wl = 2 * W, Wi = f * w, rows = (t->a1 - t->a0) * f, cols = (t->b1 - t->b0) * f;
    cs_copy2d(imgn + (t->a0 * f * Wi + t->b0 * f) * 3, Wi * 3,
              y3 + ((t->a0 - t->r0) * f * Wl + (t->b0 - t->c0) * f) * 3, Wl * 3, rows, cols * 3);
    return 0;
}

/* z and img in the current mode's memory */
static int decode(const cs_stage_a *s, const float *z, size_t N, size_t h, size_t w, float scale, size_t tile_h,
                  size_t tile_w, float *img)
{
    size_t th = tile_h && tile_h < h ? tile_h : h, tw = tile_w && tile_w < w ? tile_w : w;
    size_t halo = (size_t)cs_stage_a_halo(s), f = (size_t)cs_stage_a_factor(s), cl = (size_t)s->cfg.c_latent;
    size_t TH = th + 2 * halo < h ? th + 2 * halo : h, TW = tw + 2 * halo < w ? tw + 2 * halo : w;
    tile_plan p = plan_tile(s, TH, TW, !cs_dev);
    float *arena = cs_act_alloc(p.arena);
    if (!arena)
        return cs_error(CS_ENOMEM, "Stage A decode: out of %smemory for %zu MB of scratch (tile %zux%zu)",
                        cs_dev ? "device " : "", p.arena * sizeof(float) >> 20, th, tw);
    int rc = 0;
    for (size_t n = 0; n < N && !rc; n++)
        for (size_t a = 0; a < h && !rc; a += th)
            for (size_t b = 0; b < w && !rc; b += tw) {
                tile_box t = {a > halo ? a - halo : 0, a + th + halo < h ? a + th + halo : h,
                              b > halo ? b - halo : 0, b + tw + halo < w ? b + tw + halo : w,
                              a, a + th < h ? a + th : h, b, b + tw < w ? b + tw : w};
                rc = cs_cancel_check();
                if (!rc) rc = decode_tile(s, z + n * h * w * cl, w, scale, &t, arena, p.arena, img + n * f * h * f * w * 3);
            }
    cs_act_free(arena);
    return rc;
}

int cs_stage_a_decode(const cs_stage_a *s, const float *z, size_t N, size_t h, size_t w, float scale, size_t tile_h,
                      size_t tile_w, float *img)
{
    if (!N || !h || !w) return cs_error(CS_EARG, "Stage A decode: empty latent %zux%zux%zu", N, h, w);
    const cs_dev_ops *d = cs_dev_pick();
    if (!d) return decode(s, z, N, h, w, scale, tile_h, tile_w, img);
    size_t f = (size_t)cs_stage_a_factor(s);
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    const float *dz = cs_dev_in(&a, z, N * h * w * (size_t)s->cfg.c_latent);
    float *di = cs_dev_out(&a, img, N * f * h * f * w * 3);
    int rc = a.rc ? a.rc : decode(s, dz, N, h, w, scale, tile_h, tile_w, di);
    return cs_dev_args_finish(&a, rc);
}

/* ---- encode ---- */

/* Nearest codebook row of every latent vector (squared L2 in torch's
 * expanded form |c|^2 + |x|^2 - 2 x.c, first minimum on ties); x replaced. */
static int quantize(const cs_stage_a *s, float *x, size_t P, int32_t *idx)
{
    size_t K = (size_t)s->cfg.codebook_size, cl = (size_t)s->cfg.c_latent;
    float *cb = cs_tensor_f32_dup(&s->codebook), *cn = cs_alloc(K * sizeof(float));
    if (!cb || !cn) {
        cs_free(cb);
        cs_free(cn);
        return cs_error(CS_ENOMEM, "Stage A encode: out of memory for the codebook");
    }
    for (size_t k = 0; k < K; k++) {
        float a = 0;
        for (size_t j = 0; j < cl; j++) a += cb[k * cl + j] * cb[k * cl + j];
        cn[k] = a;
    }
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        float *xp = x + p * cl, xn = 0, best = INFINITY;
        size_t bi = 0;
        for (size_t j = 0; j < cl; j++) xn += xp[j] * xp[j];
        for (size_t k = 0; k < K; k++) {
            float dot = 0;
            for (size_t j = 0; j < cl; j++) dot += xp[j] * cb[k * cl + j];
            float d = (cn[k] + xn) + -2.0f * dot;
            if (d < best) best = d, bi = k;
        }
        idx[p] = (int32_t)bi;
        memcpy(xp, cb + bi * cl, cl * sizeof(float));
    }
    cs_free(cb);
    cs_free(cn);
    return 0;
}

int cs_stage_a_encode(const cs_stage_a *s, const float *img, size_t N, size_t H, size_t W, float scale, float *z,
                      int32_t *indices)
{
    const cs_stage_a_config *c = &s->cfg;
    if (!c->has_encoder) return cs_error(CS_EUNSUP, "Stage A: this checkpoint has no encoder (decoder-only file)");
    if (indices && !c->codebook_size) return cs_error(CS_EUNSUP, "Stage A: this checkpoint has no codebook to quantize with");
    if (!N || H < 4 || W < 4 || H % 2 || W % 2)
        return cs_error(CS_EARG, "Stage A encode: image %zux%zu must have even sides of at least 4", H, W);
    int L = c->levels, rc = 0;
    size_t cl = (size_t)c->c_latent, H2 = H / 2, W2 = W / 2, P2 = H2 * W2;
    /* largest activation, scratch of any ResBlock, and the unshuffled image */
    size_t big = P2 * (size_t)c->c_levels[0], work = 0;
    for (int i = 0; i < L; i++) {
        size_t Pi = (H2 >> i) * (W2 >> i), wk = cs_sa_resblock_work(&s->down_res[i], Pi);
        if (Pi * (size_t)c->c_levels[i] > big) big = Pi * (size_t)c->c_levels[i];
        if (wk > work) work = wk;
    }
    float *xa = cs_alloc(big * sizeof(float)), *xb = cs_alloc(big * sizeof(float)),
          *ws = cs_alloc((work > P2 * 12 ? work : P2 * 12) * sizeof(float));
    if (!xa || !xb || !ws) rc = cs_error(CS_ENOMEM, "Stage A encode: out of memory for a %zux%zu image", H, W);
    for (size_t n = 0; n < N && !rc; n++) {
        /* img [H,W,3] -> unshuffle [H/2,W/2,12] -> in_block 1x1 -> [H/2,W/2,c0] */
        size_t h = H2, w = W2, Ho, Wo;
        cs_pixel_unshuffle(img + n * H * W * 3, 1, H, W, 3, 2, ws);
        if ((rc = cs_linear(ws, P2, 12, 0, &s->in_w, &s->in_b, xa, 0, 0))) break;
        for (int i = 0; i < L && !rc; i++) {
            if (i > 0) {   /* Conv2d k4 s2 p1: [h,w,c_{i-1}] -> [h/2,w/2,c_i] */
                if ((rc = cs_conv2d(xa, 1, h, w, (size_t)c->c_levels[i - 1], &s->down_w[i], &s->down_b[i], 2, 1, 1, xb,
                                    &Ho, &Wo)))
                    break;
                float *tmp = xa;
                xa = xb;
                xb = tmp;
                h = Ho;
                w = Wo;
            }
            rc = cs_sa_resblock_forward(&s->down_res[i], xa, 1, h, w, ws);
        }
        if (rc) break;
        /* 1x1 conv (no bias) -> BatchNorm -> [quantize] -> / scale */
        float *zn = z + n * h * w * cl;
        if ((rc = cs_linear(xa, h * w, (size_t)c->c_hidden, 0, &s->lat_w, NULL, zn, 0, 0))) break;
        cs_channel_affine(zn, zn, h * w, cl, s->bn_s, s->bn_t);
        if (indices && (rc = quantize(s, zn, h * w, indices + n * h * w))) break;
        for (size_t i = 0; i < h * w * cl; i++) zn[i] = zn[i] / scale;
    }
    cs_free(xa);
    cs_free(xb);
    cs_free(ws);
    return rc;
}
