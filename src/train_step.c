/* One Stage C training step (train_step.h): the official gdf loss, the
 * backward through cs_stage_c_backward, clipping and the optimizer. */
#include "train_step.h"

#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "lora_net.h"
#include "lora_train.h"
#include "ops.h"
#include "tensor.h"
#include "wpack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef cs_opt_state opt_state;

struct cs_trainer {
    cs_stage_c *m;
    cs_train_cfg cfg;
    cs_grads g;
    opt_state *st;           /* [nst], one per cs_grads entry, same index */
    int nst;
    int micro;               /* micro-batches accumulated since the last step */
    cs_lora_net *lora;       /* LoRA training: the optimizer updates its A and B only */
    float buckets[CS_TRAIN_BUCKETS];
    float edges[CS_TRAIN_BUCKETS - 1];
    cs_trainer_opt_fill fill;   /* resuming: fills states as they are made */
    void *fill_ctx;
    /* device mode (g.dev set, doc/training.md §4): each state's arrays in
     * device memory beside the host ones (which a sync brings up to date)
     * and the per-tensor squared norms (a LoRA keeps its own: lora_dev.c) */
    struct dev_state { float *a, *b; } *ds;   /* [nst]: m|row|v, v|col */
    double *dnorm;           /* device [g.n] */
    int ndnorm;
    /* Adafactor's update scratch, one for all tensors (the largest one's
     * size), where the steps run (device memory in device mode): one per
     * tensor, kept between steps, was a second copy of the model */
    float *du;
    size_t ndu;
    int stale;               /* host weights and states behind the device's */
    double *fnorm;           /* fused: [nfnorm] each entry's norm in this pass (0: not stepped) */
    int nfnorm;
};

void cs_train_cfg_default(cs_train_cfg *c, cs_opt_kind opt, double lr)
{
    memset(c, 0, sizeof *c);
    c->opt = opt;
    cs_adafactor_cfg_default(&c->adafactor, lr);
    cs_adamw_cfg_default(&c->adamw, lr);
    c->loss_weight = CS_LOSS_P2;
    c->grad_accum = 1;
    c->max_grad_norm = 1.0;
}

/* ---- the schedule (gdf/schedulers.py, scalers.py, noise_conditions.py) ----
 * Float32 step by step as PyTorch evaluates the tensors; a Python float
 * meeting a float32 tensor is rounded to float first. */

static const float S = 0.008f;   /* CosineSchedule / CosineTNoiseCond s */
#define HALF_PI_F ((float)M_PI)  /* `* torch.pi * 0.5`: two float products */

static float min_var(void)
{
    float c = cosf(S / (1.0f + S) * HALF_PI_F * 0.5f);
    return c * c;
}

/* CosineSchedule.schedule, without the limits */
static float cosine_logsnr(float t)
{
    t = fminf(fmaxf(t, 0.0f), 1.0f);   /* BaseSchedule.__call__ clamps t */
    float c = cosf((S + t) / (1.0f + S) * HALF_PI_F * 0.5f);
    c = fminf(fmaxf(c, 0.0f), 1.0f);
    float var = c * c / min_var();
    var = fminf(fmaxf(var, 1e-4f), 0.9999f);
    return logf(var / (1.0f - var));
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void cs_train_schedule(float t, float *logsnr, float *a, float *b, float *r, float *p2)
{
    /* limits: the schedule at t = 1 (min) and t = 0 (max) (reset_limits) */
    float lo = cosine_logsnr(1.0f), hi = cosine_logsnr(0.0f);
    float l = fminf(fmaxf(cosine_logsnr(t), lo), hi);
    float a2 = sigmoidf(l);
    *logsnr = l;
    *a = sqrtf(a2);
    *b = sqrtf(1.0f - a2);
    /* CosineTNoiseCond: var clamped to [0, 1], t = acos(sqrt(var min_var)) / (pi/2) (1 + s) - s */
    float var = fminf(fmaxf(a2, 0.0f), 1.0f);
    *r = acosf(sqrtf(var * min_var())) / (float)(M_PI * 0.5) * (1.0f + S) - S;
    *p2 = 1.0f / (1.0f + expf(l));   /* P2LossWeight k = gamma = s = 1: pow(., -1) */
}

/* torch.searchsorted(edges, x) (side left): the number of edges < x */
static int bucket_of(const float *edges, float x)
{
    int lo = 0, hi = CS_TRAIN_BUCKETS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (edges[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* ---- the trainer ---------------------------------------------------------- */

static int fused_done(void *ctx, cs_grads *g, const int *idx, int n);

int cs_trainer_new(cs_stage_c *m, const cs_train_cfg *cfg, cs_trainer **out)
{
    *out = NULL;
    if (!cs_stage_c_trainable(m))
        return cs_error(CS_EARG, "training: the Stage C model was not loaded for training (float32 weights)");
    if (cfg->grad_accum < 1 || !(cfg->max_grad_norm >= 0) || !isfinite(cfg->max_grad_norm))
        return cs_error(CS_EARG, "training: grad_accum %d / max_grad_norm %g out of range", cfg->grad_accum,
                        cfg->max_grad_norm);
    double lr = cfg->opt == CS_OPT_ADAMW ? cfg->adamw.lr : cfg->adafactor.lr;
    if (!(lr >= 0) || !isfinite(lr)) return cs_error(CS_EARG, "training: learning rate %g out of range", lr);
    /* kohya's get_optimizer refuses the same two */
    if (cfg->fused && cfg->opt != CS_OPT_ADAFACTOR)
        return cs_error(CS_EARG, "training: fused_backward_pass works with the Adafactor optimizer only (as kohya's)");
    if (cfg->fused && cfg->grad_accum > 1)
        return cs_error(CS_EARG, "training: fused_backward_pass does not work with gradient_accumulation_steps > 1 (as kohya's)");
    cs_trainer *t = calloc(1, sizeof *t);
    if (!t) return cs_oom("the trainer", sizeof *t);
    t->m = m;
    t->cfg = *cfg;
    for (int i = 0; i < CS_TRAIN_BUCKETS; i++) t->buckets[i] = 1.0f;
    if (cfg->fused) t->g.done = fused_done, t->g.done_ctx = t;
    /* torch.linspace(-10, 10, 299) in float32: equal to these within an
     * ulp, which moves a bucket edge by 1e-6 of logSNR at most */
    for (int i = 0; i < CS_TRAIN_BUCKETS - 1; i++)
        t->edges[i] = (float)(-10.0 + 20.0 * i / (CS_TRAIN_BUCKETS - 2));
    *out = t;
    return 0;
}

static void free_state(cs_trainer *t, int i)
{
    if (t->cfg.opt == CS_OPT_ADAMW) cs_adamw_free(&t->st[i].aw);
    else cs_adafactor_free(&t->st[i].af);
}

static void dev_free(cs_trainer *t)
{
    const cs_dev_ops *d = t->g.dev;
    for (int i = 0; d && t->ds && i < t->nst; i++) {
        float *p[2] = {t->ds[i].a, t->ds[i].b};
        for (int j = 0; j < 2; j++)
            if (p[j]) d->free(p[j]);
    }
    if (d && t->dnorm) d->free(t->dnorm);
    if (t->du) d ? d->free(t->du) : cs_free(t->du);
    free(t->ds);
    t->ds = NULL, t->dnorm = NULL, t->ndnorm = 0, t->du = NULL, t->ndu = 0;
    if (t->lora) cs_lora_net_dev_free(t->lora);   /* while the plugin is surely up */
}

void cs_trainer_free(cs_trainer *t)
{
    if (!t) return;
    dev_free(t);
    for (int i = 0; i < t->nst; i++) free_state(t, i);
    free(t->st);
    free(t->fnorm);
    cs_grads_free(&t->g);
    free(t);
}

float *cs_trainer_buckets(cs_trainer *t) { return t->buckets; }
const cs_grads *cs_trainer_grads(const cs_trainer *t) { return &t->g; }

int cs_train_accumulate(cs_trainer *t, const cs_train_batch *bt, cs_train_out *o)
{
    cs_net_info in;
    cs_stage_c_info(t->m, &in);
    size_t B = bt->B, hw = bt->h * bt->w, ci = (size_t)in.c_in, co = (size_t)in.c_out;
    if (!B || !hw || !bt->x0 || !bt->noise || !bt->t || !bt->clip_text || !bt->pooled)
        return cs_error(CS_EARG, "training: an empty batch or a missing input");
    if (ci != co) return cs_error(CS_EUNSUP, "training: c_in %zu != c_out %zu (the eps target needs them equal)", ci, co);
    for (size_t n = 0; n < B; n++)
        if (!(bt->t[n] >= 0.0f && bt->t[n] <= 1.0f))
            return cs_error(CS_EARG, "training: t[%zu] = %g is not in [0, 1]", n, (double)bt->t[n]);
    /* on a device, training runs in float32 (doc/training.md §4): the
     * forward reads the writable float32 copies the optimizer updates; with
     * tf32 its products run on TF32 tensor cores where the device has them */
    const cs_dev_ops *d = cs_dev_pick();
    int tf = -1;   /* 0: TF32 products in force */
    if (d && t->cfg.tf32 && (tf = d->set_precision(CS_PREC_TF32)) != 0)
        (void)d->errmsg();   /* refused: no failure, and its text must not linger */
    if (d && tf != 0 && d->set_precision(CS_PREC_FP32))
        return cs_error(CS_EUNSUP, "training: the %s device cannot compute in float32: %s", cs_backend_name(), d->errmsg());
    size_t ne = B * hw * ci;
    float *noised = cs_alloc(ne * sizeof(float)), *pred = cs_alloc(ne * sizeof(float)),
          *sc = cs_alloc(6 * B * sizeof(float));
    int *idx = malloc(B * sizeof *idx);
    double *loss = malloc(B * sizeof *loss);
    int rc = 0;
    if (!noised || !pred || !sc || !idx || !loss) rc = cs_oom("a training batch", 2 * ne * sizeof(float));
    float *L = sc, *A = sc + B, *Bs = sc + 2 * B, *R = sc + 3 * B, *Wt = sc + 4 * B, *nb = sc + 5 * B;
    for (size_t n = 0; !rc && n < B; n++) {
        float p2;
        cs_train_schedule(bt->t[n], &L[n], &A[n], &Bs[n], &R[n], &p2);
        idx[n] = bucket_of(t->edges, L[n]);
        /* AdaptiveLossWeight.weight: 1 / bucket_losses[i] clamped to [1e-7, 1e7] */
        Wt[n] = t->cfg.loss_weight == CS_LOSS_ADAPTIVE ? fminf(fmaxf(1.0f / t->buckets[idx[n]], 1e-7f), 1e7f) : p2;
        const float *x = bt->x0 + n * hw * ci, *e = bt->noise + n * hw * ci;
        float *y = noised + n * hw * ci;
        for (size_t i = 0; i < hw * ci; i++) y[i] = x[i] * A[n] + e[i] * Bs[n];
    }
    const cs_lowrank *lr0 = cs_lowrank_on;
    if (t->lora) cs_lowrank_on = cs_lora_net_hook(t->lora);   /* W0 x + s B (A x): no merged W' */
    if (!rc)
        rc = cs_stage_c_forward_train(t->m, noised, B, bt->h, bt->w, R, bt->clip_text, bt->Lt, bt->pooled,
                                      bt->clip_img, bt->clip_img ? bt->M : 1, NULL, NULL, pred);
    if (!rc) {
        /* loss_n = mean (pred - eps)^2; loss_adjusted = mean_n(loss_n w_n) / accum,
         * so dL/dpred = 2 (pred - eps) w_n / (B * C*H*W * accum), kept in pred's place */
        double la = 0, per = (double)hw * ci, den = (double)B * per * t->cfg.grad_accum;
        for (size_t n = 0; n < B; n++) {
            float *y = pred + n * hw * ci;
            const float *e = bt->noise + n * hw * ci;
            double s = 0;
            for (size_t i = 0; i < hw * ci; i++) s += ((double)y[i] - e[i]) * ((double)y[i] - e[i]);
            loss[n] = (float)(s / per);
            la += (double)(float)loss[n] * Wt[n];
            if (o && o->pred) memcpy(o->pred + n * hw * ci, y, hw * ci * sizeof(float));
            for (size_t i = 0; i < hw * ci; i++) y[i] = (float)(2.0 * ((double)y[i] - e[i]) * Wt[n] / den);
        }
        if (o) o->loss_adjusted = (float)(la / (double)B / t->cfg.grad_accum);
        t->g.gen++;   /* fused: a new pass */
        for (int i = 0; i < t->nfnorm; i++) t->fnorm[i] = 0;
        rc = cs_stage_c_backward(t->m, pred, &t->g, NULL);
    } else {
        cs_stage_c_train_end(t->m);
    }
    cs_lowrank_on = lr0;
    if (!rc && t->cfg.loss_weight == CS_LOSS_ADAPTIVE) {
        /* update_buckets: every new value from the old state, then written in
         * batch order (a bucket two samples share keeps the later one's, as
         * PyTorch's index_put on the CPU does) */
        for (size_t n = 0; n < B; n++) nb[n] = t->buckets[idx[n]] * 0.99f + (float)loss[n] * (float)(1 - 0.99);
        for (size_t n = 0; n < B; n++) t->buckets[idx[n]] = nb[n];
    }
    if (!rc) t->micro++;
    if (!rc && o) {
        for (size_t n = 0; n < B; n++) {
            if (o->loss) o->loss[n] = (float)loss[n];
            if (o->logsnr) o->logsnr[n] = L[n];
            if (o->r) o->r[n] = R[n];
            if (o->weight) o->weight[n] = Wt[n];
        }
    }
    cs_free(noised), cs_free(pred), cs_free(sc);
    free(idx), free(loss);
    return rc;
}

int cs_trainer_pending(const cs_trainer *t) { return t->micro; }
int cs_trainer_opt_count(const cs_trainer *t) { return t->nst; }

void cs_opt_state_view(const cs_opt_state *s, cs_opt_kind opt, const char *tensor, cs_trainer_opt_view *v)
{
    memset(v, 0, sizeof *v);
    v->tensor = tensor;
    if (opt == CS_OPT_ADAMW) {
        v->step = s->aw.step, v->n = 2;
        v->part[0] = "m", v->data[0] = s->aw.m, v->len[0] = s->aw.n;
        v->part[1] = "v", v->data[1] = s->aw.v, v->len[1] = s->aw.n;
    } else if (s->af.factored) {
        v->step = s->af.step, v->n = 2;
        v->part[0] = "row", v->data[0] = s->af.row, v->len[0] = s->af.B * s->af.R;
        v->part[1] = "col", v->data[1] = s->af.col, v->len[1] = s->af.B * s->af.C;
    } else {
        v->step = s->af.step, v->n = 1;
        v->part[0] = "v", v->data[0] = s->af.v, v->len[0] = s->af.B * s->af.R * s->af.C;
    }
}

void cs_trainer_opt_at(const cs_trainer *t, int i, cs_trainer_opt_view *v)
{
    cs_opt_state_view(&t->st[i], t->cfg.opt, t->g.e[i].name, v);
}

void cs_trainer_opt_restore(cs_trainer *t, cs_trainer_opt_fill fn, void *ctx)
{
    t->fill = fn;
    t->fill_ctx = ctx;
}

/* a new state i: the saved values when resuming */
static int state_filled(cs_trainer *t, int i, int rc)
{
    if (rc || !t->fill) return rc;
    cs_trainer_opt_view v;
    cs_trainer_opt_at(t, i, &v);
    rc = t->fill(t->fill_ctx, &v);
    if (!rc && t->cfg.opt == CS_OPT_ADAMW) t->st[i].aw.step = v.step;
    else if (!rc) t->st[i].af.step = v.step;
    return rc;
}

/* room for a state per gradient entry (each made on first use) */
static int states_fit(cs_trainer *t)
{
    if (t->nst >= t->g.n) return 0;
    opt_state *s = realloc(t->st, (size_t)t->g.n * sizeof *s);
    if (!s) return cs_oom("optimizer states", (size_t)t->g.n * sizeof *s);
    memset(s + t->nst, 0, (size_t)(t->g.n - t->nst) * sizeof *s);
    t->st = s;
    if (t->g.dev) {   /* and their device arrays */
        struct dev_state *q = realloc(t->ds, (size_t)t->g.n * sizeof *q);
        if (!q) return cs_oom("optimizer states", (size_t)t->g.n * sizeof *q);
        memset(q + t->nst, 0, (size_t)(t->g.n - t->nst) * sizeof *q);
        t->ds = q;
    }
    t->nst = t->g.n;
    return 0;
}

/* the optimizer state of gradient entry i, made on first use */
static int state_of(cs_trainer *t, int i, opt_state **out)
{
    int rc = i >= t->nst ? states_fit(t) : 0;
    if (rc) return rc;
    opt_state *s = &t->st[i];
    const cs_grad_ent *e = &t->g.e[i];
    if (t->cfg.opt == CS_OPT_ADAMW) {
        *out = s;
        return s->aw.m ? 0 : state_filled(t, i, cs_adamw_init(&s->aw, e->n));
    }
    *out = s;
    if (s->af.B) return 0;
    const cs_tensor *w = cs_st_find(cs_stage_c_file(t->m), e->name);
    if (!w || (size_t)cs_tensor_numel(w) != e->n)
        return cs_error(CS_EMODEL, "training: no weight of %zu values named %s", e->n, e->name);
    return state_filled(t, i, cs_adafactor_init(&s->af, w->ndim, w->shape));
}

int cs_trainer_set_lora(cs_trainer *t, cs_lora_net *net)
{
    if (t->g.n || t->micro) return cs_error(CS_EARG, "training: a LoRA must be set before the first step");
    if (t->cfg.fused) return cs_error(CS_EARG, "training: fused_backward_pass is for a full fine-tune, not a LoRA (as kohya's)");
    /* the gradient buffers live where the steps will run (device.h) */
    cs_dev_args a;
    cs_dev_args_begin(&a, cs_dev_pick());
    int rc = cs_dev_args_finish(&a, cs_lora_net_attach(net, &t->g));
    if (!rc) t->lora = net;
    return rc;
}

void cs_trainer_set_lr(cs_trainer *t, double lr)
{
    t->cfg.adafactor.lr = lr;
    t->cfg.adamw.lr = lr;
}

/* ---- device mode: clipping and the optimizer on the device ---- */

/* the float32 weight of gradient entry i as a tensor view */
static cs_tensor weight_view(const cs_grad_ent *e)
{
    return (cs_tensor){.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)e->n}, .data = e->key, .name = e->name};
}

/* device arrays of state i, made from the host state (zeros, or what a
 * resume filled in); in device mode */
static int dev_state_of(cs_trainer *t, int i)
{
    if (!t->ds || i >= t->nst) return cs_error(CS_EARG, "training: no optimizer state %d", i);
    struct dev_state *q = &t->ds[i];
    if (q->a) return 0;
    cs_trainer_opt_view v;
    cs_trainer_opt_at(t, i, &v);
    float **dst[2] = {&q->a, &q->b};
    for (int j = 0; j < v.n; j++)
        if (!(*dst[j] = cs_act_alloc(v.len[j] + 1)) || cs_act_upload(*dst[j], v.data[j], v.len[j])) return CS_ENOMEM;
    return 0;
}

/* Adafactor's scratch for the largest tensor (cs_act_alloc: on the device
 * in device mode, else in host memory) */
static int step_scratch(cs_trainer *t)
{
    size_t n = 0;
    for (int i = 0; i < t->g.n; i++)
        if (t->g.e[i].n > n) n = t->g.e[i].n;
    if (t->cfg.opt != CS_OPT_ADAFACTOR || n <= t->ndu) return 0;
    cs_act_free(t->du);
    t->ndu = 0;
    if (!(t->du = cs_act_alloc(n + 1))) return CS_ENOMEM;
    t->ndu = n;
    return 0;
}

/* cs_train_apply's steps with every array on the device: the per-tensor
 * squared norms there (summed on the host in the CPU's order), scaling by
 * the scale op, the updates on weight_rw's copies. Same scalars, same
 * formulas: with the fake plugin (the CPU's code) the bits equal the CPU's. */
/* clip_grad_norm_'s factor for a norm: min(1, max / (norm + 1e-6)) in float */
static float clip_coef(const cs_trainer *t, double norm)
{
    float coef = t->cfg.max_grad_norm > 0 ? (float)(t->cfg.max_grad_norm / (norm + 1e-6)) : 1.0f;
    return coef < 1.0f ? coef : 1.0f;
}

/* the optimizer step of entry i on the host: the model's own float32 copy
 * (cs_stage_c_load_train) is writable; its packed or device copies go stale */
static int step_host(cs_trainer *t, int i)
{
    opt_state *s = NULL;
    int rc = state_of(t, i, &s);
    if (rc) return rc;
    float *p = (float *)t->g.e[i].key;
    if (t->cfg.opt == CS_OPT_ADAMW) cs_adamw_step(&s->aw, &t->cfg.adamw, p, t->g.e[i].g);
    else cs_adafactor_step(&s->af, &t->cfg.adafactor, p, t->g.e[i].g, t->du);
    cs_param_forget(p, t->g.e[i].n * sizeof(float));
    return 0;
}

/* the optimizer step of entry i on the device's writable copy (in device mode) */
static int step_dev(cs_trainer *t, int i)
{
    const cs_dev_ops *d = t->g.dev;
    const cs_grad_ent *e = &t->g.e[i];
    opt_state *s = NULL;
    int rc;
    if ((rc = state_of(t, i, &s)) || (rc = dev_state_of(t, i))) return rc;
    cs_tensor w = weight_view(e);
    char err[256] = "";
    float *p = d->weight_rw(&w, err, sizeof err);
    if (!p) return cs_error(CS_EDEVICE, "training: %s", err[0] ? err : "no writable device copy of a weight");
    struct dev_state *q = &t->ds[i];
    if (t->cfg.opt == CS_OPT_ADAMW) {
        cs_adamw_k k;
        cs_adamw_coef(&s->aw, &t->cfg.adamw, &k);
        cs_dev_note(d->adamw_update(&k, e->n, p, e->g, q->a, q->b), "the AdamW step");
    } else {
        cs_adafactor_k k;
        cs_adafactor_coef(&s->af, &t->cfg.adafactor, &k);
        int f = s->af.factored;
        cs_dev_note(d->adafactor_update(&k, s->af.B, s->af.R, s->af.C, p, e->g, f ? q->a : NULL, f ? q->b : NULL,
                                        f ? NULL : q->a, t->du),
                    "the Adafactor step");
    }
    t->stale = 1;
    return 0;
}

static int dev_has_optim(const cs_dev_ops *d)
{
    if (d->sumsq && d->weight_rw && d->adamw_update && d->adafactor_update) return 0;
    return cs_error(CS_EUNSUP, "training: the device's op set has no optimizer ops (an older plugin)");
}

/* squared norms of entries idx[0..n) on the device, into h (host doubles) */
static int dev_sumsq(cs_trainer *t, const int *idx, int n, double *h)
{
    const cs_dev_ops *d = t->g.dev;
    int need = t->g.n > n ? t->g.n : n, rc = 0;
    if (need > t->ndnorm) {
        if (t->dnorm) d->free(t->dnorm);
        t->ndnorm = 0;
        if (!(t->dnorm = d->alloc((size_t)need * sizeof(double))))
            return cs_oom("device memory for the gradient norms", (size_t)need * 8);
        t->ndnorm = need;
    }
    for (int k = 0; k < n && !rc; k++) {
        const cs_grad_ent *e = &t->g.e[idx ? idx[k] : k];
        rc = d->sumsq(e->g, e->n, t->dnorm + k);
        if (rc) cs_dev_note(rc, "the gradient norm");
    }
    if (!rc && d->download(h, t->dnorm, (size_t)n * sizeof *h)) rc = cs_dev_error() ? cs_dev_error() : CS_EDEVICE;
    return rc;
}

/* cs_train_apply's steps with every array on the device: the per-tensor
 * squared norms there (summed on the host in the CPU's order), scaling by
 * the scale op, the updates on weight_rw's copies. Same scalars, same
 * formulas: with the fake plugin (the CPU's code) the bits equal the CPU's. */
static int apply_dev(cs_trainer *t, double *grad_norm)
{
    int n = t->g.n, rc = dev_has_optim(t->g.dev);
    if (rc) return rc;
    double *hn = malloc((size_t)n * sizeof *hn + 1);
    if (!hn) return cs_oom("the gradient norms", (size_t)n * sizeof *hn);
    rc = states_fit(t);
    cs_dev_args a;
    cs_dev_args_begin(&a, t->g.dev);   /* device mode: ops and failures as in a forward */
    if (!rc) rc = dev_sumsq(t, NULL, n, hn);
    double tot = 0;
    for (int i = 0; i < n && !rc; i++) {   /* the CPU's order (cs_train_apply) */
        double nrm = (float)sqrt(hn[i]);
        tot += nrm * nrm;
    }
    tot = (float)sqrt(tot);
    if (!rc && grad_norm) *grad_norm = tot;
    float coef = clip_coef(t, tot);
    for (int i = 0; i < n && !rc && coef < 1.0f; i++) cs_scale(t->g.e[i].g, coef, t->g.e[i].g, t->g.e[i].n);
    if (!rc) rc = step_scratch(t);
    for (int i = 0; i < n && !rc; i++) rc = step_dev(t, i);
    rc = cs_dev_args_finish(&a, rc);
    free(hn);
    if (!rc) rc = cs_grads_zero(&t->g);
    t->micro = 0;
    return rc;
}

/* Fused backward (cfg.fused, cs_grads' done): entries idx[0..n) are
 * complete. Each is clipped by its own norm (kohya's hook calls
 * clip_grad_norm_ on the one tensor) and stepped now; cs_grads_done then
 * reuses its buffer. Runs in the gradients' mode (inside the backward). */
static int fused_done(void *ctx, cs_grads *g, const int *idx, int n)
{
    cs_trainer *t = ctx;
    if (g->n > t->nfnorm) {
        double *f = realloc(t->fnorm, (size_t)g->n * sizeof *f);
        if (!f) return cs_oom("the gradient norms", (size_t)g->n * sizeof *f);
        memset(f + t->nfnorm, 0, (size_t)(g->n - t->nfnorm) * sizeof *f);
        t->fnorm = f, t->nfnorm = g->n;
    }
    int rc = states_fit(t);
    if (!rc) rc = step_scratch(t);
    if (!rc && g->dev) rc = dev_has_optim(g->dev);
    double *h = rc || !g->dev ? NULL : malloc((size_t)n * sizeof *h);
    if (!rc && g->dev && !h) rc = cs_oom("the gradient norms", (size_t)n * sizeof *h);
    if (!rc && g->dev) rc = dev_sumsq(t, idx, n, h);
    for (int k = 0; k < n && !rc; k++) {
        cs_grad_ent *e = &g->e[idx[k]];
        double s = h ? h[k] : cs_sumsq(e->g, e->n);
        double nrm = (float)sqrt(s);
        t->fnorm[idx[k]] = nrm;
        /* one tensor's clip_grad_norm_: its total norm is its norm */
        float coef = clip_coef(t, (float)sqrt(nrm * nrm));
        if (coef < 1.0f) cs_scale(e->g, coef, e->g, e->n);
        rc = g->dev ? step_dev(t, idx[k]) : step_host(t, idx[k]);
    }
    free(h);
    return rc;
}

int cs_trainer_sync(cs_trainer *t)
{
    const cs_dev_ops *d = t->g.dev;
    if (!d || !t->stale) return 0;
    if (t->lora) {   /* A, B and their states are the host's; W' is merged for sampling only */
        t->stale = 0;
        return 0;
    }
    for (int i = 0; i < t->nst && t->ds; i++) {
        if (!t->ds[i].a) continue;
        const cs_grad_ent *e = &t->g.e[i];
        cs_tensor w = weight_view(e);
        char err[256] = "";
        float *p = d->weight_rw(&w, err, sizeof err);
        if (!p) return cs_error(CS_EDEVICE, "training: %s", err[0] ? err : "no device copy of a weight");
        cs_trainer_opt_view v;
        cs_trainer_opt_at(t, i, &v);
        /* the model's own float32 copy: writable; the device copy stays the
         * one in use (weight_rw), now equal to it */
        int rc = d->download((void *)e->key, p, e->n * sizeof(float));
        float *src[2] = {t->ds[i].a, t->ds[i].b};
        for (int j = 0; j < v.n && !rc; j++) rc = d->download(v.data[j], src[j], v.len[j] * sizeof(float));
        if (rc) return cs_error(CS_EDEVICE, "training: bringing %s back from the device failed: %s", e->name, d->errmsg());
        cs_wpack_forget(e->key, e->n * sizeof(float));   /* the CPU's packed copies */
    }
    t->stale = 0;
    return 0;
}

int cs_train_apply(cs_trainer *t, double *grad_norm)
{
    if (t->g.dev && !t->lora && !t->cfg.fused) return apply_dev(t, grad_norm);
    if (t->lora) {
        /* LoRA on a device: dA/dB were summed there, only they and A/B
         * cross the bus (lora_dev.c); no W' is merged */
        int rc = t->g.dev ? cs_lora_net_apply_dev(t->lora, &t->g, &t->cfg, grad_norm)
                          : cs_lora_net_apply(t->lora, &t->g, &t->cfg, grad_norm);
        cs_grads_zero(&t->g);
        t->micro = 0;
        return rc;
    }
    if (t->cfg.fused) {   /* stepped in the backward: the norm over its per-tensor norms */
        double tot = 0;
        for (int i = 0; i < t->nfnorm; i++) tot += t->fnorm[i] * t->fnorm[i];
        if (grad_norm) *grad_norm = (float)sqrt(tot);
        t->micro = 0;
        return 0;
    }
    /* clip_grad_norm_: the norm of the per-tensor norms; every gradient times
     * min(1, max / (norm + 1e-6)) in float */
    double tot = 0;
    for (int i = 0; i < t->g.n; i++) {
        double nrm = (float)sqrt(cs_sumsq(t->g.e[i].g, t->g.e[i].n));
        tot += nrm * nrm;
    }
    tot = (float)sqrt(tot);
    if (grad_norm) *grad_norm = tot;
    float coef = clip_coef(t, tot);
    for (int i = 0; i < t->g.n && coef < 1.0f; i++) cs_scale(t->g.e[i].g, coef, t->g.e[i].g, t->g.e[i].n);
    int rc = step_scratch(t);   /* cs_act_alloc said what failed */
    for (int i = 0; i < t->g.n && !rc; i++) rc = step_host(t, i);
    if (rc) return rc;
    cs_grads_zero(&t->g);
    t->micro = 0;
    return 0;
}

int cs_train_step(cs_trainer *t, const cs_train_batch *b, cs_train_out *o)
{
    int rc = cs_train_accumulate(t, b, o);
    if (o) o->stepped = 0;
    if (rc || t->micro < t->cfg.grad_accum) return rc;
    double gn;
    rc = cs_train_apply(t, &gn);
    if (!rc && o) o->stepped = 1, o->grad_norm = gn;
    return rc;
}

int cs_train_draw(cs_rng *r, size_t B, size_t C, size_t h, size_t w, float *noise, float *t)
{
    int rc = cs_rng_randn_nhwc(r, noise, B, C, h, w);
    if (rc) return rc;
    for (size_t n = 0; n < B; n++) {
        /* torch.rand on the CPU: 24 bits of one MT output, times 2^-24 */
        float u = (float)(cs_rng_u32(r) & 0xFFFFFFu) * 0x1p-24f;
        t[n] = fminf(fmaxf(1.0f - u + 0.001f, 0.001f), 1.0f);
    }
    return 0;
}
