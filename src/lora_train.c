/* LoRA training of Stage C (lora_train.h): kohya's modules found among the
 * file's tensors, their A/B, the optimizer on A/B (the gradients and the
 * forward's term: lora_grad.c), and kohya's file format. */
#include "lora_train.h"
#include "lora_net.h"

#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "ops.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cs_lora_train_cfg_default(cs_lora_train_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->network_module = "networks.lora";
    c->dim = 4;
    c->alpha = 1.0;
    c->conv_alpha = 1.0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ---- kohya's module order: StageC.named_modules() of
 * library/stable_cascade.py, i.e. registration order at every level ---- */

static const char *const order[] = {
    "clip_txt_mapper", "clip_txt_pooled_mapper", "clip_img_mapper", "embedding", "down_blocks",
    "down_downscalers", "down_repeat_mappers", "up_blocks", "up_upscalers", "up_repeat_mappers", "clf",
    "depthwise", "channelwise", "attention", "kv_mapper", "to_q", "to_k", "to_v", "out_proj", "mapper",
};

static int rank_of(const cs_lora_net *n, const char *c, size_t l)
{
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (strlen(order[i]) == l && !strncmp(order[i], c, l)) return (int)i;
    /* TimestepBlock: mapper, then mapper_<cond> in t_conds order (setattr order) */
    if (l > 7 && !strncmp(c, "mapper_", 7))
        for (int k = 0; k < n->nconds; k++)
            if (strlen(n->conds[k]) == l - 7 && !strncmp(c + 7, n->conds[k], l - 7)) return 100 + k;
    return -1;
}

static int is_num(const char *c, size_t l)
{
    for (size_t i = 0; i < l; i++)
        if (c[i] < '0' || c[i] > '9') return 0;
    return l > 0;
}

static const cs_lora_net *sort_net;   /* qsort has no context argument */

static int cmp_mod(const void *pa, const void *pb)
{
    const char *a = ((const lmod *)pa)->mod, *b = ((const lmod *)pb)->mod;
    while (*a && *b) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        int c = 0;
        if (is_num(a, la) && is_num(b, lb)) {
            long x = strtol(a, NULL, 10), y = strtol(b, NULL, 10);
            c = (x > y) - (x < y);
        } else {
            int ra = rank_of(sort_net, a, la), rb = rank_of(sort_net, b, lb);
            if (ra >= 0 && rb >= 0) c = (ra > rb) - (ra < rb);
            else {
                c = strncmp(a, b, la < lb ? la : lb);
                if (!c) c = (la > lb) - (la < lb);
            }
        }
        if (c) return c;
        a += la + (a[la] == '.'), b += lb + (b[lb] == '.');
    }
    return (*a != 0) - (*b != 0);
}

/* ---- building the network ---- */

static int add_mod(cs_lora_net *n, int *cap, const char *mod, int wi, const cs_tensor *w0, const cs_tensor *wp,
                   int64_t row0, int64_t rows, int rank, double alpha)
{
    if (n->n == *cap) {
        int c = *cap ? 2 * *cap : 128;
        lmod *v = realloc(n->v, (size_t)c * sizeof *v);
        if (!v) return cs_oom("the LoRA modules", (size_t)c * sizeof *v);
        n->v = v, *cap = c;
    }
    lmod *m = &n->v[n->n];
    memset(m, 0, sizeof *m);
    size_t l = strlen(mod);
    m->mod = strdup(mod);
    m->name = malloc(l + 11);
    if (!m->mod || !m->name) {
        free(m->mod), free(m->name);
        return cs_oom("the LoRA modules", l);
    }
    n->n++;
    snprintf(m->name, l + 11, "lora_unet_%s", mod);
    for (char *s = m->name; *s; s++)
        if (*s == '.') *s = '_';
    m->kd = malloc(l + 30), m->ku = malloc(l + 30);
    if (!m->kd || !m->ku) return cs_oom("the LoRA modules", l);
    snprintf(m->kd, l + 30, "%s.lora_down.weight", m->name);
    snprintf(m->ku, l + 30, "%s.lora_up.weight", m->name);
    m->wi = wi, m->w0 = w0, m->wp = wp, m->row0 = row0, m->rows = rows;
    m->K = cs_tensor_numel(w0) / w0->shape[0];
    m->rank = rank;
    /* LoRAModule: alpha 0 (or None) means alpha = rank; scale = alpha / rank */
    m->alpha = (float)(alpha == 0 ? rank : alpha);
    m->scale = m->alpha / (float)rank;   /* as src/lora.c merges it */
    m->ndim = w0->ndim == 4 ? 4 : 2;
    m->dshape[0] = rank, m->dshape[1] = w0->shape[1];
    m->ushape[0] = rows, m->ushape[1] = rank;
    if (m->ndim == 4) {
        m->dshape[2] = w0->shape[2], m->dshape[3] = w0->shape[3];
        m->ushape[2] = m->ushape[3] = 1;
    }
    size_t na = (size_t)(rank * m->K), nb = (size_t)(rows * rank);
    m->A = cs_calloc(na * sizeof(float));
    m->B = cs_calloc(nb * sizeof(float));
    m->gA = cs_calloc(na * sizeof(float));
    m->gB = cs_calloc(nb * sizeof(float));
    if (!m->A || !m->B || !m->gA || !m->gB) return cs_oom("the LoRA matrices", 2 * (na + nb) * sizeof(float));
    return 0;
}

static int check_cfg(const cs_lora_train_cfg *c)
{
    const char *mn = c->network_module ? c->network_module : "networks.lora";
    if (strcmp(mn, "networks.lora") && strcmp(mn, "lora"))
        return cs_error(CS_EUNSUP, "network_module '%s': only networks.lora (kohya's LoRA) can be trained", mn);
    if (c->dim < 1) return cs_error(CS_EARG, "network_dim %d: the rank must be at least 1", c->dim);
    if (!(c->alpha >= 0) || !isfinite(c->alpha))
        return cs_error(CS_EARG, "network_alpha %g: must be a finite number >= 0 (0 = network_dim)", c->alpha);
    if (c->conv_dim < 0) return cs_error(CS_EARG, "conv_dim %d: must be >= 0 (0 = off)", c->conv_dim);
    if (c->conv_dim && (!(c->conv_alpha >= 0) || !isfinite(c->conv_alpha)))
        return cs_error(CS_EARG, "conv_alpha %g: must be a finite number >= 0", c->conv_alpha);
    const struct {
        const char *name;
        double v;
    } drop[] = {{"network_dropout", c->dropout}, {"rank_dropout", c->rank_dropout}, {"module_dropout", c->module_dropout}};
    for (int i = 0; i < 3; i++)
        if (drop[i].v != 0)
            return cs_error(CS_EUNSUP, "%s %g: LoRA dropout is not implemented (leave it unset)", drop[i].name, drop[i].v);
    return 0;
}

/* torch's kaiming_uniform_(a=sqrt(5)) on the CPU: U(-bound, bound),
 * bound = sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan_in), each value
 * (double)(u24 * 2^-24) * (to - from) + from rounded to float */
static void kaiming(cs_rng *r, float *p, size_t n, int64_t fan_in)
{
    double a = sqrt(5.0), gain = sqrt(2.0 / (1 + a * a)), bound = sqrt(3.0) * (gain / sqrt((double)fan_in));
    float from = (float)-bound, to = (float)bound;
    for (size_t i = 0; i < n; i++) {
        double x = (double)(cs_rng_u32(r) & 0xFFFFFFu) * 0x1p-24;
        float v = (float)(x * ((double)to - (double)from) + (double)from);
        if (p) p[i] = v;
    }
}

int cs_lora_net_new(cs_stage_c *sm, const cs_lora_train_cfg *cfg, cs_lora_net **out)
{
    *out = NULL;
    int rc = check_cfg(cfg);
    if (rc) return rc;
    if (!cs_stage_c_trainable(sm))
        return cs_error(CS_EARG, "LoRA training: the Stage C model was not loaded for training (float32 weights)");
    cs_lora_net *n = calloc(1, sizeof *n);
    if (!n) return cs_oom("the LoRA network", sizeof *n);
    n->m = sm;
    n->cfg = *cfg;
    snprintf(n->module_name, sizeof n->module_name, "%s", cfg->network_module ? cfg->network_module : "networks.lora");
    n->cfg.network_module = n->module_name;
    n->opt = -1;
    cs_net_info in;
    cs_stage_c_info(sm, &in);
    n->nconds = in.nconds;
    memcpy(n->conds, in.t_conds, sizeof n->conds);
    cs_st_file *f = cs_stage_c_file(sm);
    const char *pre = in.prefix ? in.prefix : "";
    size_t pl = strlen(pre);
    int cap = 0;
    for (int i = 0; i < cs_st_count(f) && !rc; i++) {
        const cs_tensor *t = cs_st_at(f, i), *wp = cs_stage_c_train_weight(sm, i);
        if (!wp || strncmp(t->name, pre, pl) || t->ndim < 2 || strlen(t->name) >= 400) continue;
        const char *p = t->name + pl;
        char mod[420];
        size_t l = strlen(p);
        if (ends_with(p, ".in_proj_weight") && t->ndim == 2 && t->shape[0] % 3 == 0) {
            /* kohya's Attention: to_q/to_k/to_v, the row thirds of in_proj */
            static const char *const qkv[3] = {"to_q", "to_k", "to_v"};
            int64_t c = t->shape[0] / 3;
            for (int j = 0; j < 3 && !rc; j++) {
                snprintf(mod, sizeof mod, "%.*s%s", (int)(l - 14), p, qkv[j]);
                rc = add_mod(n, &cap, mod, i, t, wp, j * c, c, cfg->dim, cfg->alpha);
            }
            continue;
        }
        if (!ends_with(p, ".weight")) continue;   /* biases, GRN gamma/beta */
        snprintf(mod, sizeof mod, "%.*s", (int)(l - 7), p);
        if (ends_with(mod, ".depthwise")) continue;   /* grouped Conv2d: kohya skips it */
        if (t->ndim == 2) {
            rc = add_mod(n, &cap, mod, i, t, wp, 0, t->shape[0], cfg->dim, cfg->alpha);
        } else if (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1) {
            rc = add_mod(n, &cap, mod, i, t, wp, 0, t->shape[0], cfg->dim, cfg->alpha);
        } else if (t->ndim == 4) {
            /* kxk: Conv2d only with conv_dim; the strided up-transition is a
             * ConvTranspose2d (up_upscalers.N.1, no .blocks.), never wrapped */
            int transposed = !strncmp(mod, "up_upscalers.", 13) && !strstr(mod, ".blocks.");
            /* the run-time term (lora_grad.c) is a Linear's; no trainable Stage C has such a conv */
            if (cfg->conv_dim > 0 && !transposed)
                rc = cs_error(CS_EUNSUP, "LoRA training: %s is a %lldx%lld Conv2d (conv_dim): not supported", t->name,
                              (long long)t->shape[2], (long long)t->shape[3]);
        }
    }
    if (!rc && !n->n) rc = cs_error(CS_EMODEL, "LoRA training: no module of the Stage C to wrap");
    if (rc) {
        cs_lora_net_free(n);
        return rc;
    }
    sort_net = n;
    qsort(n->v, (size_t)n->n, sizeof *n->v, cmp_mod);
    sort_net = NULL;
    /* the run-time term's scratch sizes (lora_grad.c) */
    size_t rows = 0;
    for (int i = 0; i < n->n; i++) {
        const lmod *m = &n->v[i];
        size_t w = (size_t)cs_tensor_numel(m->wp);
        if (w > n->wmax) n->wmax = w;
        if ((size_t)m->wp->shape[0] > rows) rows = (size_t)m->wp->shape[0];
        if (m->rank > n->rmax) n->rmax = m->rank;
    }
    if (!(n->ones = cs_alloc(rows * sizeof(float)))) {
        cs_lora_net_free(n);
        return cs_oom("the LoRA network", rows * sizeof(float));
    }
    for (size_t i = 0; i < rows; i++) n->ones[i] = 1.0f;
    n->nones = rows;
    n->hook.linear = cs_lora_net_linear, n->hook.ctx = n;
    /* the init, in kohya's order: Linear/Conv2d(in, r) and (r, out) constructors, then A */
    cs_rng r;
    cs_rng_seed(&r, cfg->seed);
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        size_t na = (size_t)(m->rank * m->K), nb = (size_t)(m->rows * m->rank);
        kaiming(&r, NULL, na, m->K);
        kaiming(&r, NULL, nb, m->rank);
        kaiming(&r, m->A, na, m->K);
    }
    n->dev.dirty = 1;
    n->stale = 1;   /* the model's W' is merged when sampling wants it (B = 0: W0) */
    *out = n;
    return 0;
}

static void free_state(opt_state *s, int opt)
{
    if (opt == CS_OPT_ADAMW) cs_adamw_free(&s->aw);
    else if (opt == CS_OPT_ADAFACTOR) cs_adafactor_free(&s->af);
}

void cs_lora_net_free(cs_lora_net *n)
{
    if (!n) return;
    cs_lora_net_dev_free(n);
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        free(m->name), free(m->mod), free(m->kd), free(m->ku);
        cs_free(m->A), cs_free(m->B), cs_free(m->gA), cs_free(m->gB);
        free_state(&m->sA, n->opt), free_state(&m->sB, n->opt);
    }
    cs_param_free(n->ones);
    free(n->v);
    free(n);
}

int cs_lora_net_count(const cs_lora_net *n) { return n ? n->n : 0; }

int64_t cs_lora_net_params(const cs_lora_net *n)
{
    int64_t s = 0;
    for (int i = 0; n && i < n->n; i++) s += n->v[i].rank * (n->v[i].K + n->v[i].rows);
    return s;
}

int cs_lora_net_module(cs_lora_net *n, int i, cs_lora_module *o)
{
    if (!n || i < 0 || i >= n->n) return cs_error(CS_EARG, "LoRA module %d: out of range", i);
    const lmod *m = &n->v[i];
    memset(o, 0, sizeof *o);
    o->name = m->name, o->target = m->w0->name, o->row0 = m->row0, o->rows = m->rows;
    o->rank = m->rank, o->alpha = m->alpha, o->scale = m->scale, o->ndim = m->ndim;
    memcpy(o->down_shape, m->dshape, sizeof o->down_shape);
    memcpy(o->up_shape, m->ushape, sizeof o->up_shape);
    o->down = m->A, o->up = m->B, o->gdown = m->gA, o->gup = m->gB;
    return 0;
}

int cs_lora_net_find(const cs_lora_net *n, const char *name)
{
    for (int i = 0; n && i < n->n; i++)
        if (!strcmp(n->v[i].name, name)) return i;
    return -1;
}

int cs_lora_net_merge(cs_lora_net *n)
{
    n->dev.dirty = 1;   /* A or B may have changed here: the device's are stale */
    n->stale = 0;
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        float *w = (float *)m->wp->data + m->row0 * m->K;
        cs_tensor rows = *m->w0;   /* W0's rows of this module, as a flat view */
        rows.ndim = 1;
        rows.shape[0] = m->rows * m->K;
        rows.data = (const char *)m->w0->data + (size_t)(m->row0 * m->K) * cs_dtype_size(m->w0->dtype);
        int rc = cs_tensor_to_f32(&rows, w);
        if (!rc)
            rc = cs_sgemm(0, (size_t)m->rows, (size_t)m->K, (size_t)m->rank, m->scale, m->B, (size_t)m->rank, m->A,
                          (size_t)m->K, 1.0f, w, (size_t)m->K);
        if (rc) return rc == CS_ENOMEM ? cs_oom("the LoRA merge", 0) : rc;
        cs_param_forget(m->wp->data, (size_t)cs_tensor_numel(m->wp) * sizeof(float));   /* packed copies are stale */
    }
    return 0;
}

int cs_lora_net_attach(cs_lora_net *n, cs_grads *g)
{
    if (g->n || g->sink) return cs_error(CS_EARG, "LoRA training: the gradients already have buffers or a sink");
    /* no buffer of W': lora_grad.c sums dA and dB as the backward goes */
    g->only = 1;
    g->dev = cs_dev;
    g->sink = cs_lora_net_sink, g->sink_ctx = n;
    n->gfresh = 1;
    return 0;
}

static double sumsq(const float *p, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)p[i] * p[i];
    return s;
}

static void scale_by(float *p, size_t n, float c)
{
    for (size_t i = 0; i < n; i++) p[i] *= c;
}

static int step_one(opt_state *s, const cs_train_cfg *cfg, float *p, const float *g, size_t cnt, int ndim,
                    const int64_t *shape, float *u)
{
    if (cfg->opt == CS_OPT_ADAMW) {
        if (!s->aw.m) {
            int rc = cs_adamw_init(&s->aw, cnt);
            if (rc) return rc;
        }
        cs_adamw_step(&s->aw, &cfg->adamw, p, g);
    } else {
        if (!s->af.B) {
            int rc = cs_adafactor_init(&s->af, ndim, shape);
            if (rc) return rc;
        }
        cs_adafactor_step(&s->af, &cfg->adafactor, p, g, u);
    }
    return 0;
}

int cs_lora_net_apply(cs_lora_net *n, const cs_grads *g, const cs_train_cfg *cfg, double *grad_norm)
{
    (void)g;   /* the sums are the net's (lora_grad.c) */
    if (n->gfresh) cs_lora_net_zero_grads(n);   /* no backward reached a module */
    n->gfresh = 1;
    n->stale = 1;   /* the model's W' (used by sampling only) */
    return cs_lora_net_step(n, cfg, grad_norm);
}

const cs_lowrank *cs_lora_net_hook(cs_lora_net *n) { return &n->hook; }

int cs_lora_net_sample_begin(cs_lora_net *n)
{
    cs_lora_net_dev_free(n);   /* W0, A, B and the scratch: made again by the next step */
    return n->stale ? cs_lora_net_merge(n) : 0;
}

void cs_lora_net_sample_end(cs_lora_net *n)
{
    /* the device's (and the CPU's packed) copies of W' that sampling made */
    for (int i = 0; i < n->n; i++)
        if (!i || n->v[i].wp != n->v[i - 1].wp)   /* q/k/v: one tensor */
            cs_param_forget(n->v[i].wp->data, (size_t)cs_tensor_numel(n->v[i].wp) * sizeof(float));
}

int cs_lora_net_step(cs_lora_net *n, const cs_train_cfg *cfg, double *grad_norm)
{
    if (n->opt >= 0 && n->opt != (int)cfg->opt)
        return cs_error(CS_EARG, "LoRA training: the optimizer changed between steps");
    int rc = 0;
    /* clip_grad_norm_ over network.get_trainable_params() (each module's
     * lora_down, lora_up): the norm of the per-tensor norms, in float */
    double tot = 0;
    for (int i = 0; i < n->n; i++) {
        lmod *m = &n->v[i];
        double a = (float)sqrt(sumsq(m->gA, (size_t)(m->rank * m->K))), b = (float)sqrt(sumsq(m->gB, (size_t)(m->rows * m->rank)));
        tot += a * a + b * b;
    }
    tot = (float)sqrt(tot);
    if (grad_norm) *grad_norm = tot;
    float coef = cfg->max_grad_norm > 0 ? (float)(cfg->max_grad_norm / (tot + 1e-6)) : 1.0f;
    n->opt = (int)cfg->opt;
    size_t nu = 0;   /* Adafactor's scratch: the largest A or B */
    for (int i = 0; i < n->n && cfg->opt == CS_OPT_ADAFACTOR; i++) {
        size_t na = (size_t)(n->v[i].rank * n->v[i].K), nb = (size_t)(n->v[i].rows * n->v[i].rank);
        nu = na > nu ? na : nu, nu = nb > nu ? nb : nu;
    }
    float *u = nu ? cs_alloc(nu * sizeof(float)) : NULL;
    if (nu && !u) return cs_oom("Adafactor's update scratch", nu * sizeof(float));
    for (int i = 0; i < n->n && !rc; i++) {
        lmod *m = &n->v[i];
        size_t na = (size_t)(m->rank * m->K), nb = (size_t)(m->rows * m->rank);
        if (coef < 1.0f) scale_by(m->gA, na, coef), scale_by(m->gB, nb, coef);
        rc = step_one(&m->sA, cfg, m->A, m->gA, na, m->ndim, m->dshape, u);
        if (!rc) rc = step_one(&m->sB, cfg, m->B, m->gB, nb, m->ndim, m->ushape, u);
    }
    cs_free(u);
    return rc;
}

/* ---- resuming ---- */

int cs_lora_net_opt_count(const cs_lora_net *n) { return n && n->opt >= 0 ? 2 * n->n : 0; }

void cs_lora_net_opt_at(const cs_lora_net *n, int i, cs_trainer_opt_view *v)
{
    const lmod *m = &n->v[i / 2];
    cs_opt_state_view(i % 2 ? &m->sB : &m->sA, (cs_opt_kind)n->opt, i % 2 ? m->ku : m->kd, v);
}

int cs_lora_net_opt_restore(cs_lora_net *n, cs_opt_kind opt, cs_trainer_opt_fill fn, void *ctx)
{
    for (int i = 0; i < n->n; i++) free_state(&n->v[i].sA, n->opt), free_state(&n->v[i].sB, n->opt);
    n->opt = (int)opt;
    int rc = 0;
    for (int i = 0; i < 2 * n->n && !rc; i++) {
        lmod *m = &n->v[i / 2];
        opt_state *s = i % 2 ? &m->sB : &m->sA;
        memset(s, 0, sizeof *s);
        if (opt == CS_OPT_ADAMW) rc = cs_adamw_init(&s->aw, (size_t)(m->rank * (i % 2 ? m->rows : m->K)));
        else rc = cs_adafactor_init(&s->af, m->ndim, i % 2 ? m->ushape : m->dshape);
        if (rc) return rc == CS_ENOMEM ? cs_oom("the LoRA optimizer states", 0) : rc;
        cs_trainer_opt_view v;
        cs_lora_net_opt_at(n, i, &v);
        if ((rc = fn(ctx, &v))) return rc;
        if (opt == CS_OPT_ADAMW) s->aw.step = v.step;
        else s->af.step = v.step;
    }
    return 0;
}

/* x as the file's dtype holds it */
static float in_dtype(float x, cs_dtype dt)
{
    if (dt == CS_BF16) return cs_bf16_to_f32(cs_f32_to_bf16(x));
    if (dt == CS_F16) return cs_f16_to_f32(cs_f32_to_f16(x));
    return x;
}

static int same_shape(const cs_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) return 0;
    for (int k = 0; k < ndim; k++)
        if (t->shape[k] != shape[k]) return 0;
    return 1;
}

static int load_from(cs_lora_net *n, cs_st_file *f, const char *path)
{
    /* every key of the file is one of ours */
    for (int i = 0; i < cs_st_count(f); i++) {
        const char *k = cs_st_at(f, i)->name, *dot = strchr(k, '.');
        int found = 0;
        for (int j = 0; dot && j < n->n && !found; j++)
            found = strlen(n->v[j].name) == (size_t)(dot - k) && !strncmp(n->v[j].name, k, (size_t)(dot - k)) &&
                    (!strcmp(dot, ".lora_down.weight") || !strcmp(dot, ".lora_up.weight") || !strcmp(dot, ".alpha"));
        if (!found)
            return cs_error(CS_EMODEL, "%s: %s is not a module of this LoRA of the Stage C (another model or network_args?)",
                            path, k);
    }
    for (int j = 0; j < n->n; j++) {
        lmod *m = &n->v[j];
        const cs_tensor *d = cs_st_find(f, m->kd), *u = cs_st_find(f, m->ku);
        char ka[512];
        snprintf(ka, sizeof ka, "%s.alpha", m->name);
        const cs_tensor *a = cs_st_find(f, ka);
        if (!d || !u) return cs_error(CS_EMODEL, "%s: no %s (a LoRA of another network_args?)", path, d ? m->ku : m->kd);
        if (!same_shape(d, m->ndim, m->dshape) || !same_shape(u, m->ndim, m->ushape))
            return cs_error(CS_EMODEL, "%s: %s / lora_up of shapes other than network_dim %d gives", path, m->kd, m->rank);
        float al = m->alpha;
        if (a && (cs_tensor_numel(a) != 1 || cs_tensor_to_f32(a, &al) || al != in_dtype(m->alpha, a->dtype)))
            return cs_error(CS_EMODEL, "%s: %s is %g, but network_alpha gives %g", path, ka, al, m->alpha);
        int rc = cs_tensor_to_f32(d, m->A);
        if (!rc) rc = cs_tensor_to_f32(u, m->B);
        if (rc) return cs_error(CS_EFORMAT, "%s: %s: not a float tensor", path, m->kd);
    }
    n->dev.dirty = 1;   /* the device's A and B, the model's W' */
    n->stale = 1;
    return 0;
}

int cs_lora_net_load(cs_lora_net *n, const char *path)
{
    cs_st_file *f;
    int rc = cs_st_open(path, &f);
    if (rc) return rc;
    rc = load_from(n, f, path);
    cs_st_close(f);
    return rc;
}

/* ---- saving ---- */

/* Python's str() of a float: the shortest repr that reads back, ".0" if integral */
static void py_float(char *buf, size_t len, double v)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, len, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", len - strlen(buf) - 1);
}

static int conv_out(const float *src, size_t cnt, cs_dtype dt, void **out)
{
    size_t es = cs_dtype_size(dt);
    void *p = malloc(cnt ? cnt * es : 1);
    if (!p) return cs_oom("the LoRA file", cnt * es);
    for (size_t i = 0; i < cnt; i++) {
        if (dt == CS_F32) ((float *)p)[i] = src[i];
        else if (dt == CS_BF16) ((uint16_t *)p)[i] = cs_f32_to_bf16(src[i]);
        else ((uint16_t *)p)[i] = cs_f32_to_f16(src[i]);
    }
    *out = p;
    return 0;
}

int cs_lora_net_save(const cs_lora_net *n, const char *path, cs_dtype dtype, const char *const *meta, int nmeta)
{
    if (dtype != CS_F32 && dtype != CS_BF16 && dtype != CS_F16)
        return cs_error(CS_EARG, "%s: save_precision %s: use float, bf16 or fp16", path, cs_dtype_name(dtype));
    int nt = 3 * n->n, rc = 0;
    cs_tensor *t = calloc((size_t)nt, sizeof *t);
    char **names = calloc((size_t)nt, sizeof *names);
    void **bufs = calloc((size_t)nt, sizeof *bufs);
    float *alphas = calloc((size_t)n->n, sizeof *alphas);
    if (!t || !names || !bufs || !alphas) rc = cs_oom("the LoRA file", (size_t)nt * sizeof *t);
    for (int i = 0; i < n->n && !rc; i++) {
        const lmod *m = &n->v[i];
        static const char *const suf[3] = {".lora_down.weight", ".lora_up.weight", ".alpha"};
        alphas[i] = m->alpha;
        const float *src[3] = {m->A, m->B, &alphas[i]};
        size_t cnt[3] = {(size_t)(m->rank * m->K), (size_t)(m->rows * m->rank), 1};
        for (int j = 0; j < 3 && !rc; j++) {
            cs_tensor *x = &t[3 * i + j];
            size_t l = strlen(m->name) + strlen(suf[j]) + 1;
            if (!(names[3 * i + j] = malloc(l))) {
                rc = cs_oom("the LoRA file", l);
                break;
            }
            snprintf(names[3 * i + j], l, "%s%s", m->name, suf[j]);
            rc = conv_out(src[j], cnt[j], dtype, &bufs[3 * i + j]);
            x->dtype = dtype;
            x->name = names[3 * i + j];
            x->data = bufs[3 * i + j];
            x->ndim = j == 2 ? 0 : m->ndim;   /* alpha: torch.tensor(alpha), a scalar */
            for (int k = 0; j < 2 && k < m->ndim; k++) x->shape[k] = j == 0 ? m->dshape[k] : m->ushape[k];
        }
    }
    /* kohya's metadata: str() of the argparse values */
    char dim[32], alpha[48], args[160] = "";
    snprintf(dim, sizeof dim, "%d", n->cfg.dim);
    py_float(alpha, sizeof alpha, n->cfg.alpha);
    if (n->cfg.conv_dim > 0) {
        char ca[48];
        py_float(ca, sizeof ca, n->cfg.conv_alpha);
        snprintf(args, sizeof args, "{\"conv_dim\": \"%d\", \"conv_alpha\": \"%s\"}", n->cfg.conv_dim, ca);
    }
    const char *ours[] = {"ss_network_module", n->module_name, "ss_network_dim", dim, "ss_network_alpha", alpha,
                          "ss_network_dropout", "None", "ss_network_args", args};
    int nours = args[0] ? 5 : 4;
    const char **md = rc ? NULL : malloc((size_t)(2 * (nours + (nmeta > 0 ? nmeta : 0)) + 1) * sizeof *md);
    if (!rc && !md) rc = cs_oom("the LoRA metadata", 0);
    int nm = 0;
    for (int i = 0; !rc && i < nours; i++) {
        int dup = 0;
        for (int k = 0; k < nmeta && !dup; k++) dup = !strcmp(meta[2 * k], ours[2 * i]);
        if (!dup) md[2 * nm] = ours[2 * i], md[2 * nm + 1] = ours[2 * i + 1], nm++;
    }
    for (int k = 0; !rc && k < nmeta; k++) md[2 * nm] = meta[2 * k], md[2 * nm + 1] = meta[2 * k + 1], nm++;
    if (!rc) rc = cs_st_write(path, t, nt, md, nm);
    for (int i = 0; names && bufs && i < nt; i++) free(names[i]), free(bufs[i]);
    free(t), free(names), free(bufs), free(alphas), free((void *)md);
    return rc;
}
