/* A whole training step in device mode (doc/training.md §4) against the
 * CPU: the tiny Stage C of the golden set trains STEPS steps on the CPU and
 * again on a device, full fine-tune and LoRA, AdamW and Adafactor (P2 and
 * adaptive weights, grad_accum 1 and 2, clipping active). With the fake
 * plugin (tests/.libs/libcascade-fake.so: device memory the host cannot
 * touch, the CPU's code for every op; its copy of the engine and this
 * process's at the one SIMD level under test) everything must be equal bit
 * for bit: each micro-batch's loss, each step's gradient norm, and after
 * cs_trainer_sync every trained weight (LoRA: A and B) and every optimizer
 * state. A resumed device run (2 steps, synced, states saved and filled
 * back into a new trainer on a fresh model, then 1 step) must end equal to
 * the uninterrupted 3-step run. With the fake, a LoRA step after the first
 * must move less than half the wrapped weights' float32 bytes across the
 * bus (its byte counters: only A, B, dA, dB move), and the device's
 * peak over a run must stay within what training needs (check_mem; with
 * FAKE_MEM_REPORT=N the fake lists what it held at the peak, N largest
 * allocations first); a sampling forward between LoRA steps runs on the
 * device and its copies of the merged W' are dropped after it (check_sample).
 * With $CASCADE_BACKEND (cuda on a GPU
 * machine) the same runs are compared at fp32 tolerance, and every line
 * says where the worst difference is. Needs ../shared (skip 77, CI 99). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include "backend.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "lora_train.h"
#include "stage_c.h"
#include "train_step.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H 4
#define W 3
#define LT 8
#define BATCH 2
#define STEPS 3

static cs_st_file *WF;
/* the fake's counts of bytes across the bus (NULL on a real device) */
enum { NCOUNT = 4 };
static const char *const COUNTERS[NCOUNT] = {"fake_backend_upload_bytes", "fake_backend_download_bytes",
                                            "fake_backend_weight_bytes", "fake_backend_forget_bytes"};
static const unsigned long long *COUNT[NCOUNT];

static unsigned long long moved(void)
{
    unsigned long long s = 0;
    for (int i = 0; i < NCOUNT && COUNT[0]; i++) s += *COUNT[i];
    return s;
}

/* A LoRA step on a device moves A and B and their gradients, not the
 * model: after the first step (which makes the device's copies), the bytes
 * a step moves (copies both ways, weights copied or forgotten, which a GPU
 * copies again) must stay well below the wrapped weights' float32 bytes
 * (before 2026-12, every G came down and every merged W' was forgotten and
 * went up again each step: at least twice their size). */
/* bytes of a float32 W' of the wrapped rows of every weight */
static size_t lora_wp_bytes(cs_lora_net *net)
{
    size_t b = 0;
    for (int i = 0; i < cs_lora_net_count(net); i++) {
        cs_lora_module mo;
        cs_lora_net_module(net, i, &mo);
        int64_t K = mo.down_shape[1] * (mo.ndim == 4 ? mo.down_shape[2] * mo.down_shape[3] : 1);
        b += (size_t)(mo.rows * K) * sizeof(float);
    }
    return b;
}

/* floats of the largest wrapped weight tensor (the LoRA's one widened W0) */
static size_t lora_wmax(cs_lora_net *net)
{
    size_t b = 0;
    for (int i = 0; i < cs_lora_net_count(net); i++) {
        cs_lora_module mo;
        cs_lora_net_module(net, i, &mo);
        size_t n = (size_t)cs_tensor_numel(cs_st_find(WF, mo.target));
        if (n > b) b = n;
    }
    return b;
}

static int check_moved(const char *name, unsigned long long bytes, int steps, cs_lora_net *net)
{
    size_t wb = lora_wp_bytes(net);
    double per = (double)bytes / steps;
    int bad = !(per < wb / 2.0);
    printf("%s: %s: %.0f bytes moved a step after the first (the trained W': %zu bytes)\n", bad ? "FAIL" : "ok", name,
           per, wb);
    return bad;
}
/* the fake's accounting of its memory (NULL on a real device) */
enum { MEM_KINDS = 5 };   /* tests/fake_backend.h: FAKE_MEM_* */
static size_t (*MEM_BY_KIND)(size_t out[MEM_KINDS], int reset);
static void (*MEM_REPORT)(FILE *f, int top);
static int MEM_FAIL;

static int EXACT = 1;   /* the fake plugin: bit for bit */
static double TOL = 2e-4;
/* TF32 products (10-bit mantissas, 2^-11 relative rounding of their inputs) */
#define TOL_TF32 4e-3

/* everything a run produced, flattened in a fixed order */
typedef struct {
    float loss[STEPS * 2 * BATCH];
    double norm[STEPS];
    int nloss, nnorm;
    float *w;   /* trained values, then optimizer states (and their steps as floats) */
    size_t nw, capw;
    /* where each tensor starts in w and its name: a failure names the worst */
    size_t *seg_off;
    char **seg_name;
    int nseg, capseg;
    /* a saved state to resume from: the weights of the model (or the LoRA's
     * A and B) and the optimizer views */
} result;

static const result ZERO;

static void put(result *r, const float *p, size_t n);

/* put, recording the tensor's name */
static void put_named(result *r, const char *name, const char *part, const float *p, size_t n)
{
    if (r->nseg == r->capseg) {
        int cap = r->capseg ? 2 * r->capseg : 256;
        size_t *o = realloc(r->seg_off, (size_t)cap * sizeof *o);
        if (o) r->seg_off = o;
        char **nm = realloc(r->seg_name, (size_t)cap * sizeof *nm);
        if (nm) r->seg_name = nm;
        if (!o || !nm) exit(99);
        r->capseg = cap;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", name ? name : "?", part);
    r->seg_off[r->nseg] = r->nw;
    if (!(r->seg_name[r->nseg++] = strdup(buf))) exit(99);
    put(r, p, n);
}

static void result_free(result *r)
{
    for (int i = 0; i < r->nseg; i++) free(r->seg_name[i]);
    free(r->seg_name), free(r->seg_off), free(r->w);
}

static void put(result *r, const float *p, size_t n)
{
    if (r->nw + n > r->capw) {
        size_t cap = 2 * (r->nw + n);
        float *q = realloc(r->w, cap * sizeof *q);
        if (!q) exit(99);
        r->w = q, r->capw = cap;
    }
    memcpy(r->w + r->nw, p, n * sizeof *p);
    r->nw += n;
}

typedef struct {
    cs_opt_kind opt;
    int lora, accum, adaptive;
    const char *name;
    int tf32;   /* cfg.tf32: products on TF32 tensor cores where the device has them */
    int fused;  /* cfg.fused: each tensor clipped alone and stepped during the backward */
    int noclip; /* max_grad_norm 0 */
} run_cfg;

/* The fake's peak over the steps against what training needs to hold: the
 * trained weights (full: every weight, writable; LoRA: no W' = W0 + s B A,
 * the file's W0 in its own dtype and one wrapped weight widened to float32
 * at a time), their gradients (full only: a LoRA sums dA and dB without a
 * gradient of W'), the optimizer states, plus the rest (frozen weights, the
 * tape, activations, scratch) within a quarter of the trained weights'
 * float32 bytes. A second copy of the weights (a cached float32 copy beside
 * the writable one, a scratch array per tensor kept between steps, a LoRA's
 * G, a LoRA's merged W' or W0 widened to float32 for every wrapped weight)
 * goes past it.
 * Fused: the gradients are the buffers it reuses (all back in its spares
 * after a step), which must stay below half the weights. */
static int check_mem(const run_cfg *c, const cs_trainer *t, cs_lora_net *net)
{
    size_t k[MEM_KINDS], peak = MEM_BY_KIND(k, 0), w = 0, st = 0, gb = 0;
    const cs_grads *g = cs_trainer_grads(t);
    for (int i = 0; i < g->n; i++) w += g->e[i].n * sizeof(float), gb += g->e[i].g ? g->e[i].n * sizeof(float) : 0;
    for (int i = 0; i < g->nspare; i++) gb += g->spare[i].cap * sizeof(float);
    if (net) w = lora_wp_bytes(net);   /* no gradient entries: what W' would take */
    int nst = net ? 0 : cs_trainer_opt_count(t);   /* a LoRA's states are host arrays */
    for (int i = 0; i < nst; i++) {
        cs_trainer_opt_view v;
        cs_trainer_opt_at(t, i, &v);
        for (int j = 0; j < v.n; j++) st += v.len[j] * sizeof(float);
    }
    size_t w0 = net ? w / sizeof(float) * cs_dtype_size(cs_st_at(WF, 0)->dtype) : 0,
           held = net ? w0 + lora_wmax(net) * sizeof(float) : w, need = held + gb + st, margin = w / 4;
    int bad = peak > need + margin || (c->fused && gb > w / 2);
    printf("%s: %s: device peak %zu bytes: %s %zu + gradients %zu, states %zu, margin %zu; at the peak: "
           "allocations %zu, float32 weight copies %zu (of bf16 %zu), writable %zu, in the file's dtype %zu\n",
           bad ? "FAIL" : "ok", c->name, peak, net ? "W0 and one widened weight" : "weights", held, gb, st, margin,
           k[0], k[1], k[2], k[3], k[4]);
    if (bad || getenv("FAKE_MEM_REPORT")) MEM_REPORT(stdout, bad ? 20 : atoi(getenv("FAKE_MEM_REPORT")));
    return bad;
}

/* a saved optimizer state: views copied out, filled back in by name */
typedef struct {
    int n;
    char **name;
    int64_t *step;
    float **data[2];
} saved;

static int fill(void *ctx, cs_trainer_opt_view *v)
{
    saved *s = ctx;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], v->tensor)) {
            for (int j = 0; j < v->n; j++) memcpy(v->data[j], s->data[j][i], v->len[j] * sizeof(float));
            v->step = s->step[i];
            return 0;
        }
    return cs_error(CS_EARG, "no saved state for %s", v->tensor);
}

/* the batch of micro-batch k: fixed inputs, draws from a seeded generator */
typedef struct {
    float *x0, *noise, *t, *txt, *pool;
} batch;

static void make_batch(const cs_net_info *in, int k, batch *b)
{
    cs_rng r;
    cs_rng_seed(&r, 1000 + (uint64_t)k);
    size_t n = BATCH * H * W * (size_t)in->c_in, nt = BATCH * LT * (size_t)in->c_clip_text,
           np = BATCH * (size_t)in->c_clip_pooled;
    b->x0 = malloc(n * sizeof(float)), b->noise = malloc(n * sizeof(float)), b->t = malloc(BATCH * sizeof(float));
    b->txt = malloc(nt * sizeof(float)), b->pool = malloc(np * sizeof(float));
    if (!b->x0 || !b->noise || !b->t || !b->txt || !b->pool || cs_rng_randn(&r, b->x0, n) ||
        cs_rng_randn(&r, b->txt, nt) || cs_rng_randn(&r, b->pool, np) ||
        cs_train_draw(&r, BATCH, (size_t)in->c_in, H, W, b->noise, b->t))
        exit(99);
}

static void free_batch(batch *b) { free(b->x0), free(b->noise), free(b->t), free(b->txt), free(b->pool); }

/* Sampling between LoRA steps (cs_lora_net_sample_begin / _end): a device
 * forward on the merged W' runs, and the end tells the device to drop
 * every copy of W' it may have made (the fake's blocks read host weights,
 * so its forget count is what shows it), so the steps never hold a W'. */
static int check_sample(const char *name, cs_stage_c *m, cs_lora_net *net, const cs_net_info *in)
{
    size_t wb = lora_wp_bytes(net), nout = BATCH * H * W * (size_t)in->c_out;
    batch b;
    make_batch(in, 99, &b);
    float *eps = malloc(nout * sizeof(float));
    if (!eps) exit(99);
    int rc = cs_lora_net_sample_begin(net), finite = 1;
    if (!rc) rc = cs_stage_c_forward(m, b.x0, BATCH, H, W, b.t, b.txt, LT, b.pool, NULL, 1, NULL, NULL, eps);
    for (size_t i = 0; i < nout && !rc; i++) finite &= isfinite(eps[i]);
    unsigned long long f0 = *COUNT[3];
    cs_lora_net_sample_end(net);
    unsigned long long dropped = *COUNT[3] - f0;
    int bad = rc || !finite || dropped < wb;
    printf("%s: %s: sampling forward on the device %s; W' copies dropped after it: %llu bytes (W' %zu)%s%s\n",
           bad ? "FAIL" : "ok", name, rc ? "failed" : finite ? "ran" : "gave non-finite values", dropped, wb,
           rc ? ": " : "", rc ? cs_last_error() : "");
    free(eps);
    free_batch(&b);
    return bad;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        if (call) {                                                                                \
            printf("FAIL: %s: %s (%s line %d): %s\n", c->name, dev ? "device" : "cpu", #call, __LINE__, \
                   cs_last_error());                                                               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Runs steps [from, to) of c on the CPU (dev 0) or the selected device.
 * in_w / in_st: resume from these (weights by tensor index, states);
 * out_w / out_st (not NULL): save the weights and states at the end. */
static int run(const run_cfg *c, int dev, int from, int to, const result *in_w, saved *in_st, result *out,
               result *save_w, saved *save_st)
{
    cs_stage_c *m;
    if (dev && MEM_BY_KIND) {   /* a new peak period */
        size_t k[MEM_KINDS];
        MEM_BY_KIND(k, 1);
    }
    TRY(cs_stage_c_load_train(WF, NULL, &m));
    cs_net_info in;
    cs_stage_c_info(m, &in);
    if (in_w) {   /* the saved weights into the model's float32 copies */
        size_t off = 0;
        for (int i = 0; cs_stage_c_train_weight(m, i); i++) {
            const cs_tensor *t = cs_stage_c_train_weight(m, i);
            size_t n = (size_t)cs_tensor_numel(t);
            memcpy((void *)t->data, in_w->w + off, n * sizeof(float));
            off += n;
        }
    }
    cs_train_cfg cfg;
    cs_train_cfg_default(&cfg, c->opt, c->opt == CS_OPT_ADAMW ? 1e-3 : 1e-2);
    cfg.grad_accum = c->accum;
    cfg.max_grad_norm = c->noclip ? 0 : 0.05;   /* below the gradients' norm: clipping scales */
    cfg.fused = c->fused;
    cfg.loss_weight = c->adaptive ? CS_LOSS_ADAPTIVE : CS_LOSS_P2;
    cfg.tf32 = c->tf32;
    cs_trainer *t;
    TRY(cs_trainer_new(m, &cfg, &t));
    cs_lora_net *net = NULL;
    if (c->lora) {
        cs_lora_train_cfg lc;
        cs_lora_train_cfg_default(&lc);
        lc.dim = 2;
        TRY(cs_lora_net_new(m, &lc, &net));
        for (int i = 0; i < cs_lora_net_count(net); i++) {   /* B != 0, so that dA is not 0 */
            cs_lora_module mod;
            cs_lora_net_module(net, i, &mod);
            for (int64_t j = 0; j < mod.rows * mod.rank; j++) mod.up[j] = 0.01f * (float)((j * 7 + i) % 11 - 5);
        }
        TRY(cs_lora_net_merge(net));
        TRY(cs_trainer_set_lora(t, net));
    }
    if (in_st) cs_trainer_opt_restore(t, fill, in_st);
    unsigned long long moved0 = 0;
    for (int s = from; s < to; s++) {
        if (s == from + 1) moved0 = moved();
        cs_trainer_set_lr(t, (c->opt == CS_OPT_ADAMW ? 1e-3 : 1e-2) * (1.0 - 0.2 * s));
        for (int k = 0; k < c->accum; k++) {
            batch b;
            make_batch(&in, s * c->accum + k, &b);
            cs_train_batch tb = {BATCH, H, W, b.x0, b.noise, b.t, b.txt, LT, b.pool, NULL, 1};
            float loss[BATCH];
            cs_train_out o = {.loss = loss};
            TRY(cs_train_step(t, &tb, &o));
            free_batch(&b);
            for (int n = 0; n < BATCH; n++) out->loss[out->nloss++] = loss[n];
            if (o.stepped) out->norm[out->nnorm++] = o.grad_norm;
        }
    }
    const cs_grads *g = cs_trainer_grads(t);
    if (dev && !g->dev) {
        printf("FAIL: %s: the device run kept its gradients in host memory\n", c->name);
        return 1;
    }
    if (dev && net && COUNT[0] && to - from > 1 && check_moved(c->name, moved() - moved0, to - from - 1, net)) return 1;
    if (dev && MEM_BY_KIND) MEM_FAIL |= check_mem(c, t, net);
    if (dev && net && COUNT[0]) MEM_FAIL |= check_sample(c->name, m, net, &in);
    TRY(cs_trainer_sync(t));
    /* trained values: the weights with a gradient, or A and B */
    if (net) {
        for (int i = 0; i < cs_lora_net_count(net); i++) {
            cs_lora_module mod;
            cs_lora_net_module(net, i, &mod);
            put_named(out, mod.name, " (lora down)", mod.down,
                      (size_t)(mod.rank * mod.down_shape[1] * (mod.ndim == 4 ? mod.down_shape[2] * mod.down_shape[3] : 1)));
            put_named(out, mod.name, " (lora up)", mod.up, (size_t)(mod.rows * mod.rank));
        }
    } else {
        for (int i = 0; i < g->n; i++) put_named(out, g->e[i].name, "", g->e[i].key, g->e[i].n);
    }
    int nst = net ? cs_lora_net_opt_count(net) : cs_trainer_opt_count(t);
    for (int i = 0; i < nst; i++) {
        cs_trainer_opt_view v;
        if (net) cs_lora_net_opt_at(net, i, &v);
        else cs_trainer_opt_at(t, i, &v);
        for (int j = 0; j < v.n; j++) put_named(out, v.tensor, j ? " (state b)" : " (state a)", v.data[j], v.len[j]);
        float st = (float)v.step;
        put(out, &st, 1);
    }
    if (save_w)
        for (int i = 0; cs_stage_c_train_weight(m, i); i++) {
            const cs_tensor *w = cs_stage_c_train_weight(m, i);
            put(save_w, w->data, (size_t)cs_tensor_numel(w));
        }
    if (save_st) {
        save_st->n = nst;
        save_st->name = calloc((size_t)nst + 1, sizeof *save_st->name);
        save_st->step = calloc((size_t)nst + 1, sizeof *save_st->step);
        for (int j = 0; j < 2; j++) save_st->data[j] = calloc((size_t)nst + 1, sizeof(float *));
        for (int i = 0; i < nst; i++) {
            cs_trainer_opt_view v;
            cs_trainer_opt_at(t, i, &v);
            save_st->name[i] = strdup(v.tensor);
            save_st->step[i] = v.step;
            for (int j = 0; j < v.n; j++) {
                save_st->data[j][i] = malloc(v.len[j] * sizeof(float) + 1);
                memcpy(save_st->data[j][i], v.data[j], v.len[j] * sizeof(float));
            }
        }
    }
    cs_trainer_free(t);
    cs_lora_net_free(net);
    cs_stage_c_free(m);
    return 0;
}

/* a against b: exact (fake) or within TOL relative to b's largest value */
static int same(const char *name, const char *what, const float *a, const float *b, size_t n)
{
    double worst = 0, big = 0;
    size_t at = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (memcmp(&a[i], &b[i], sizeof(float))) diff++;
        if (d > worst || d != d) worst = d, at = i;
        if (fabs(b[i]) > big) big = fabs(b[i]);
    }
    int bad = EXACT ? diff != 0 : !(worst <= TOL * (big > 1e-30 ? big : 1));
    printf("%s: %s %s: %zu values, %zu differ, worst |d| %.3g at %zu (%.9g vs %.9g), max |ref| %.3g\n",
           bad ? "FAIL" : "ok", name, what, n, diff, worst, at, n ? a[at] : 0.0, n ? b[at] : 0.0, big);
    return bad;
}

/* the tensors that differ most, each against its own largest value: where
 * to look when the weights or states fail */
static void worst_tensors(const result *d, const result *h)
{
    enum { SHOW = 6 };
    int best[SHOW];
    double rel[SHOW];
    for (int k = 0; k < SHOW; k++) best[k] = -1, rel[k] = -1;
    for (int i = 0; i < h->nseg; i++) {
        size_t lo = h->seg_off[i], hi = i + 1 < h->nseg ? h->seg_off[i + 1] : h->nw;
        double worst = 0, big = 0;
        for (size_t j = lo; j < hi; j++) {
            double df = fabs((double)d->w[j] - h->w[j]);
            if (df > worst || df != df) worst = df;
            if (fabs(h->w[j]) > big) big = fabs(h->w[j]);
        }
        double r = worst / (big > 1e-30 ? big : 1);
        for (int k = 0; k < SHOW; k++)
            if (r > rel[k]) {
                memmove(best + k + 1, best + k, (SHOW - 1 - k) * sizeof *best);
                memmove(rel + k + 1, rel + k, (SHOW - 1 - k) * sizeof *rel);
                best[k] = i, rel[k] = r;
                break;
            }
    }
    for (int k = 0; k < SHOW && best[k] >= 0 && rel[k] > 0; k++)
        printf("  worst: %s (%zu values): |d| / max |ref| %.3g\n", h->seg_name[best[k]],
               (best[k] + 1 < h->nseg ? h->seg_off[best[k] + 1] : h->nw) - h->seg_off[best[k]], rel[k]);
}

/* The key third of an attention's packed in_proj_bias has a zero gradient
 * (adding a constant to every key adds the same q.b to every score of a
 * query: the softmax does not change), so what the backward computes for it
 * is rounding noise (~1e-9 against ~1e-2 for the query and value thirds),
 * different noise on each device. AdamW's eps (1e-8) mutes such a gradient;
 * Adafactor's (1e-30, added to g^2) does not: it normalises the noise to
 * updates of about +-lr, as PyTorch's Adafactor does, so those values are
 * arbitrary on either device. They are held to that bound (at most a few lr
 * a step each way) and then left out of the comparison. */
static int mask_key_bias(const char *name, result *d, const result *h, double lr)
{
    int bad = 0, masked = 0;
    for (int i = 0; i < h->nseg && i < d->nseg; i++) {
        const char *nm = h->seg_name[i], *at = strstr(nm, "in_proj_bias");
        if (!at) continue;
        int weight = !strcmp(at, "in_proj_bias");
        size_t lo = h->seg_off[i], hi = i + 1 < h->nseg ? h->seg_off[i + 1] : h->nw, third = (hi - lo) / 3;
        for (size_t j = lo + third; j < lo + 2 * third; j++) {
            if (weight && !(fabs((double)d->w[j] - h->w[j]) <= 2 * STEPS * 4 * lr)) bad++;
            d->w[j] = h->w[j];
            masked++;
        }
    }
    printf("%s: %s: %d values of the key biases (zero gradient) left out%s\n", bad ? "FAIL" : "ok", name, masked,
           bad ? ", some moved further than noise updates can" : "");
    return bad;
}

static int compare(const char *name, const result *d, const result *h)
{
    int fail = 0;
    if (d->nloss != h->nloss || d->nnorm != h->nnorm || d->nw != h->nw) {
        printf("FAIL: %s: %d/%d losses, %d/%d norms, %zu/%zu values (device/cpu)\n", name, d->nloss, h->nloss,
               d->nnorm, h->nnorm, d->nw, h->nw);
        return 1;
    }
    fail |= same(name, "losses", d->loss, h->loss, (size_t)h->nloss);
    float dn[STEPS], hn[STEPS];
    for (int i = 0; i < h->nnorm; i++) dn[i] = (float)d->norm[i], hn[i] = (float)h->norm[i];
    fail |= same(name, "grad norms", dn, hn, (size_t)h->nnorm);
    int wf = same(name, "weights and optimizer states", d->w, h->w, h->nw);
    if (wf && d->nseg == h->nseg) worst_tensors(d, h);
    return fail | wf;
}

static void saved_free(saved *s)
{
    for (int i = 0; i < s->n; i++) free(s->name[i]), free(s->data[0][i]), free(s->data[1][i]);
    free(s->name), free(s->step), free(s->data[0]), free(s->data[1]);
}

int main(void)
{
    /* The CPU side at the level under test (tests/levels.sh): the fake's
     * copy of the engine picks its level in its own init (CASCADE_SIMD, else
     * the best), this process's table stays the scalar reference until
     * cs_simd_init, and the reductions (layer norm, softmax, ...) round
     * differently from level to level. */
    if (cs_simd_init()) {
        printf("FAIL: %s\n", cs_last_error());
        return 1;
    }
    const char *sd = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    if (cs_st_open(path, &WF)) return check_missing(cs_last_error());
    static const run_cfg cfgs[] = {
        {CS_OPT_ADAMW, 0, 1, 0, "full AdamW"},
        {CS_OPT_ADAFACTOR, 0, 2, 1, "full Adafactor, adaptive, accum 2"},
        /* Adafactor without accumulation, AdamW with it */
        {CS_OPT_ADAFACTOR, 0, 1, 0, "full Adafactor"},
        {CS_OPT_ADAMW, 0, 2, 0, "full AdamW, accum 2"},
        {CS_OPT_ADAMW, 1, 2, 0, "LoRA AdamW, accum 2"},
        {CS_OPT_ADAFACTOR, 1, 1, 1, "LoRA Adafactor, adaptive"},
        /* --mixed_precision bf16: TF32 products on a GPU (within TOL_TF32 of
         * the CPU's float32), float32 on the fake (bit for bit) */
        {CS_OPT_ADAMW, 0, 2, 0, "full AdamW, accum 2, TF32 products", 1},
        /* fused backward pass (per-tensor clipping; the same bits as unfused without clipping) */
        {CS_OPT_ADAFACTOR, 0, 1, 0, "full Adafactor, fused", 0, 1, 0},
        {CS_OPT_ADAFACTOR, 0, 1, 1, "full Adafactor, adaptive, no clipping", 0, 0, 1},
        {CS_OPT_ADAFACTOR, 0, 1, 1, "full Adafactor, adaptive, no clipping, fused", 0, 1, 1},
    };
    enum { FUSED = 7 };   /* the index of the first fused one */
    enum { NC = sizeof cfgs / sizeof cfgs[0] };
    static result cpu[NC];
    int fail = 0;
    for (int i = 0; i < NC; i++)
        if (run(&cfgs[i], 0, 0, STEPS, NULL, NULL, &cpu[i], NULL, NULL)) return 1;
    /* without clipping the fused steps are the unfused ones, bit for bit */
    fail |= compare("fused against unfused, no clipping (CPU)", &cpu[FUSED + 2], &cpu[FUSED + 1]);

    const char *env = getenv("CASCADE_BACKEND");
    const char *name = env && *env ? env : "tests/.libs/libcascade-fake.so";
    EXACT = !(env && *env);
    if (cs_backend_select(name)) return check_missing(cs_last_error());
    const cs_dev_ops *d = cs_dev_pick();
    if (!d || d->set_precision(CS_PREC_FP32)) return check_missing("the backend has no op set or no fp32");
    if (EXACT) {   /* bits are comparable only between two runs at one SIMD level */
        void *h = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
        const int *lvl = h ? dlsym(h, "fake_backend_simd") : NULL;
        int same_level = lvl && *lvl == (int)cs_simd_current();
        for (int i = 0; i < NCOUNT && same_level; i++)
            if (!(COUNT[i] = dlsym(h, COUNTERS[i]))) {
                printf("FAIL: the fake plugin has no %s\n", COUNTERS[i]);
                same_level = 0;
            }
        *(void **)&MEM_BY_KIND = h ? dlsym(h, "fake_backend_mem_peak_by_kind") : NULL;
        *(void **)&MEM_REPORT = h ? dlsym(h, "fake_backend_mem_report") : NULL;
        if (same_level && (!MEM_BY_KIND || !MEM_REPORT)) {
            printf("FAIL: the fake plugin has no memory accounting\n");
            same_level = 0;
        }
        if (!same_level)
            printf("FAIL: the fake computes at SIMD level %s, this process at %s\n",
                   lvl && *lvl >= 0 ? cs_simd_name((cs_simd_level)*lvl) : "(unknown)", cs_simd_name(cs_simd_current()));
        if (h) dlclose(h);
        if (!same_level) return 1;
    }
    printf("# device: %s (%s)\n", cs_backend_name(), EXACT ? "bit for bit" : "fp32 tolerance");
    for (int i = 0; i < NC; i++) {
        result r = ZERO;
        int e = run(&cfgs[i], 1, 0, STEPS, NULL, NULL, &r, NULL, NULL);
        if (!e && !EXACT && cfgs[i].opt == CS_OPT_ADAFACTOR && !cfgs[i].lora) e = mask_key_bias(cfgs[i].name, &r, &cpu[i], 1e-2);
        double tol = TOL;
        if (cfgs[i].tf32) TOL = TOL_TF32;
        fail |= e || compare(cfgs[i].name, &r, &cpu[i]);
        TOL = tol;
        result_free(&r);
    }
    /* resume: 2 steps, save, then the third in a fresh trainer on a fresh model */
    static const int resumed[] = {0, 1, FUSED};
    for (int ri = 0; ri < 3; ri++) {
        int i = resumed[ri];
        const run_cfg *c = &cfgs[i];
        result a = ZERO, w = ZERO, b = ZERO, full;
        saved st = {0};
        int e = run(c, 1, 0, 2, NULL, NULL, &a, &w, &st) || run(c, 1, 2, STEPS, &w, &st, &b, NULL, NULL);
        if (!e) {   /* the uninterrupted run's last step, and its end state */
            full = cpu[i];
            full.nloss = b.nloss, full.nnorm = b.nnorm;
            memcpy(full.loss, cpu[i].loss + a.nloss, sizeof(float) * (size_t)b.nloss);
            memcpy(full.norm, cpu[i].norm + a.nnorm, sizeof(double) * (size_t)b.nnorm);
            char nm[128];
            snprintf(nm, sizeof nm, "%s, resumed after step 2", c->name);
            if (!EXACT && c->opt == CS_OPT_ADAFACTOR && !c->lora) e = mask_key_bias(nm, &b, &full, 1e-2);
            e = e || compare(nm, &b, &full);
        }
        fail |= e;
        saved_free(&st);
        result_free(&a), result_free(&w), result_free(&b);
    }
    for (int i = 0; i < NC; i++) result_free(&cpu[i]);
    fail |= MEM_FAIL;
    cs_backend_release();
    cs_st_close(WF);
    return fail;
}
