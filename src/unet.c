#include "unet.h"

#include "cancel.h"
#include "grad.h"
#include "grad_blocks.h"
#include "device.h"
#include "error.h"
#include "ops.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- structure inference ---- */

static const cs_tensor *peekf(const cs_wmap *m, const char *p, const char *leaf)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", p, leaf);
    return cs_wmap_peek(m, name);
}

/* block type of module prefix p from its key suffixes, 0 if none */
static char probe_type(const cs_wmap *m, const char *p)
{
    if (peekf(m, p, "depthwise.weight")) return 'C';
    if (peekf(m, p, "mapper.weight")) return 'T';
    if (peekf(m, p, "attention.attn.in_proj_weight") || peekf(m, p, "attention.to_q.weight") ||
        peekf(m, p, "attention.attn.to_q.weight"))
        return 'A';
    if (peekf(m, p, "channelwise.0.weight")) return 'F';
    return 0;
}

/* width a module of type t implies */
static int probe_width(const cs_wmap *m, const char *p, char t)
{
    const cs_tensor *x = NULL;
    switch (t) {
    case 'C': x = peekf(m, p, "depthwise.weight"); return x ? (int)x->shape[0] : 0;
    case 'T': x = peekf(m, p, "mapper.weight"); return x && x->ndim == 2 ? (int)(x->shape[0] / 2) : 0;
    case 'F': x = peekf(m, p, "channelwise.4.weight"); return x ? (int)x->shape[0] : 0;
    case 'A':
        if ((x = peekf(m, p, "attention.attn.in_proj_weight")) && x->ndim == 2) return (int)x->shape[1];
        if ((x = peekf(m, p, "attention.to_q.weight")) && x->ndim == 2) return (int)x->shape[1];
        if ((x = peekf(m, p, "attention.attn.to_q.weight")) && x->ndim == 2) return (int)x->shape[1];
    }
    return 0;
}

/* mapper_<name> suffixes of the TimestepBlock at prefix p: sca, crp first
 * (the official order), then any others in file order */
static int find_conds(const cs_wmap *m, const char *p, char conds[][24])
{
    char full[256];
    snprintf(full, sizeof full, "%s%smapper_", m->prefix, p);
    size_t fl = strlen(full);
    int n = 0;
    static const char *const known[] = {"sca", "crp"};
    for (int k = 0; k < 2; k++) {
        char leaf[32];
        snprintf(leaf, sizeof leaf, "mapper_%s.weight", known[k]);
        if (peekf(m, p, leaf)) snprintf(conds[n++], 24, "%s", known[k]);
    }
    for (int i = 0; i < cs_st_count(m->f); i++) {
        const char *nm = cs_st_at(m->f, i)->name;
        size_t l = strlen(nm);
        if (strncmp(nm, full, fl) || l < fl + 8 || strcmp(nm + l - 7, ".weight") || l - 7 - fl >= 24) continue;
        char c[24];
        snprintf(c, sizeof c, "%.*s", (int)(l - 7 - fl), nm + fl);
        if (strchr(c, '.')) continue;
        int dup = 0;
        for (int j = 0; j < n; j++) dup |= !strcmp(conds[j], c);
        if (!dup && n < CS_MAX_TCONDS) snprintf(conds[n++], 24, "%s", c);
    }
    return n;
}

static int count_modules(const cs_wmap *m, const char *group, int level)
{
    int k = 0;
    char p[128];
    for (;; k++) {
        snprintf(p, sizeof p, "%s.%d.%d.", group, level, k);
        if (!probe_type(m, p)) return k;
    }
}

static int bind_repeat(cs_wmap *m, cs_unet_level *l, const char *group, int i, int64_t c)
{
    int e = 0;
    for (l->nrep = 0;; l->nrep++) {
        char w[128], b[128];
        snprintf(w, sizeof w, "%s.%d.%d.weight", group, i, l->nrep);
        snprintf(b, sizeof b, "%s.%d.%d.bias", group, i, l->nrep);
        if (!cs_wmap_peek(m, w)) break;
        if (l->nrep == CS_UNET_MAX_REPEAT) {
            cs_wmap_problem(m, "%s.%d: more than %d repeat mappers", group, i, CS_UNET_MAX_REPEAT);
            return CS_EMODEL;
        }
        e |= cs_wmap_req(m, &l->rep_w[l->nrep], w, 4, (int64_t[]){c, c, 1, 1});
        e |= cs_wmap_req(m, &l->rep_b[l->nrep], b, 1, (int64_t[]){c});
    }
    return e ? CS_EMODEL : 0;
}

static int bind_level(cs_unet *u, cs_wmap *m, cs_unet_level *l, const char *group, int idx, int level, int up)
{
    int n = count_modules(m, group, idx), e = 0, c = u->c[level];
    l->blocks = calloc(n ? (size_t)n : 1, sizeof *l->blocks);
    if (!l->blocks) return cs_oom("the U-Net blocks of a level", (n ? (size_t)n : 1) * sizeof *l->blocks);
    l->nblocks = n;
    const char *conds[CS_MAX_TCONDS];
    for (int i = 0; i < u->nconds; i++) conds[i] = u->conds[i];
    for (int k = 0; k < n; k++) {
        char p[128];
        snprintf(p, sizeof p, "%s.%d.%d.", group, idx, k);
        cs_block *b = &l->blocks[k];
        b->type = probe_type(m, p);
        switch (b->type) {
        case 'C': e |= cs_resblock_bind(&b->u.res, m, p, c, up && idx > 0 && k == 0 ? c : 0); break;
        case 'F': e |= cs_ffblock_bind(&b->u.res, m, p, c); break;
        case 'T': e |= cs_tsblock_bind(&b->u.ts, m, p, c, u->c_r, u->nconds, conds); break;
        case 'A':
            e |= cs_attnblock_bind(&b->u.attn, m, p, c, u->c_cond, u->nhead[level]);
            b->u.attn.self_attn = !u->cross_only;
            break;
        }
    }
    if (n == 0) cs_wmap_problem(m, "missing %s%s.%d.0.* (level %d has no blocks)", m->prefix, group, idx, level);
    e |= bind_repeat(m, l, up ? "up_repeat_mappers" : "down_repeat_mappers", idx, c);
    return e || !n ? CS_EMODEL : 0;
}

int cs_unet_bind(cs_unet *u, cs_wmap *m, int c_cond, const cs_unet_opts *opt)
{
    memset(u, 0, sizeof *u);
    u->c_cond = c_cond;
    char p[128];
    int L = 0;
    for (;; L++) {
        snprintf(p, sizeof p, "down_blocks.%d.0.", L);
        char t = probe_type(m, p);
        if (!t) break;
        if (L == CS_UNET_MAX_LEVELS) {
            cs_wmap_problem(m, "more than %d levels", CS_UNET_MAX_LEVELS);
            return CS_EMODEL;
        }
        u->c[L] = probe_width(m, p, t);
        if (u->c[L] <= 0) {
            cs_wmap_problem(m, "%s%s*: cannot read the level width", m->prefix, p);
            return CS_EMODEL;
        }
    }
    if (!L) {
        cs_wmap_problem(m, "missing %sdown_blocks.0.0.*", m->prefix);
        return CS_EMODEL;
    }
    u->nlevels = L;
    /* c_r and t_conds from the first TimestepBlock */
    u->c_r = 64;
    for (int i = 0; i < L && !u->nconds; i++)
        for (int k = 0;; k++) {
            snprintf(p, sizeof p, "down_blocks.%d.%d.", i, k);
            char t = probe_type(m, p);
            if (!t) break;
            if (t != 'T') continue;
            const cs_tensor *w = peekf(m, p, "mapper.weight");
            if (w && w->ndim == 2) u->c_r = (int)w->shape[1];
            u->nconds = find_conds(m, p, u->conds);
            i = L;
            break;
        }
    if (opt && opt->n_conds) {   /* < 0: an explicit empty list */
        if (opt->n_conds > CS_MAX_TCONDS) return cs_error(CS_EARG, "too many t_conds (%d)", opt->n_conds);
        u->nconds = opt->n_conds > 0 ? opt->n_conds : 0;
        memcpy(u->conds, opt->conds, sizeof u->conds);
    }
    for (int i = 0; i < L; i++) {
        u->nhead[i] = opt && opt->nhead[i] > 0 ? opt->nhead[i] : u->c[i] % 64 ? 1 : u->c[i] / 64;
        u->interp[i] = opt && i < L - 1 ? opt->switch_level[i] > 0 : 0;
    }
    /* transitions: UpDownBlock2d (1x1 conv, key ...1.blocks.N) or strided 2x2 convs (key ...1.weight) */
    u->strided = L > 1 && !cs_wmap_peek(m, "down_downscalers.1.1.blocks.0.weight");
    u->cross_only = opt && opt->self_attn < 0;
    int e = 0, rc;
    for (int i = 0; i < L; i++) {
        if ((rc = bind_level(u, m, &u->down[i], "down_blocks", i, i, 0)) && rc != CS_EMODEL) return rc;
        e |= rc;
        if (i == 0) continue;
        int64_t co = u->c[i], ci = u->c[i - 1];
        if (u->strided) {
            snprintf(p, sizeof p, "down_downscalers.%d.1.weight", i);
            e |= cs_wmap_req(m, &u->dn_w[i], p, 4, (int64_t[]){co, ci, 2, 2});
            snprintf(p, sizeof p, "down_downscalers.%d.1.bias", i);
        } else {
            snprintf(p, sizeof p, "down_downscalers.%d.1.blocks.0.weight", i);
            e |= cs_wmap_req(m, &u->dn_w[i], p, 4, (int64_t[]){co, ci, 1, 1});
            snprintf(p, sizeof p, "down_downscalers.%d.1.blocks.0.bias", i);
        }
        e |= cs_wmap_req(m, &u->dn_b[i], p, 1, (int64_t[]){co});
    }
    for (int ui = 0; ui < L; ui++) {
        int l = L - 1 - ui;
        if ((rc = bind_level(u, m, &u->up[ui], "up_blocks", ui, l, 1)) && rc != CS_EMODEL) return rc;
        e |= rc;
        if (l == 0) continue;
        int64_t ci = u->c[l], co = u->c[l - 1];
        if (u->strided) {
            snprintf(p, sizeof p, "up_upscalers.%d.1.weight", ui);
            e |= cs_wmap_req(m, &u->up_w[ui], p, 4, (int64_t[]){ci, co, 2, 2});
            snprintf(p, sizeof p, "up_upscalers.%d.1.bias", ui);
        } else {
            snprintf(p, sizeof p, "up_upscalers.%d.1.blocks.1.weight", ui);
            e |= cs_wmap_req(m, &u->up_w[ui], p, 4, (int64_t[]){co, ci, 1, 1});
            snprintf(p, sizeof p, "up_upscalers.%d.1.blocks.1.bias", ui);
        }
        e |= cs_wmap_req(m, &u->up_b[ui], p, 1, (int64_t[]){co});
    }
    return e ? CS_EMODEL : 0;
}

void cs_unet_free(cs_unet *u)
{
    for (int i = 0; i < CS_UNET_MAX_LEVELS; i++) {
        free(u->down[i].blocks);
        free(u->up[i].blocks);
        u->down[i].blocks = u->up[i].blocks = NULL;
    }
    cs_unet_tape_end(u);
    cs_ws_free(&u->ws);
}

int cs_unet_opts_from_json(cs_unet_opts *o, const char *js, const char *what)
{
    json_t *root = js ? json_loads(js, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return cs_error(CS_EFORMAT, "%s: config is not a JSON object", what);
    }
    int rc = 0;
    json_t *nh = json_object_get(root, "nhead"), *tc = json_object_get(root, "t_conds"),
           *sl = json_object_get(root, "switch_level");
    if (json_is_array(sl) && json_array_size(sl) <= CS_UNET_MAX_LEVELS) {
        for (size_t i = 0; i < json_array_size(sl); i++) {
            json_t *v = json_array_get(sl, i);
            if (!json_is_boolean(v)) rc = cs_error(CS_EFORMAT, "%s: config switch_level[%zu] is not a boolean", what, i);
            else o->switch_level[i] = json_is_true(v) ? 1 : -1;
        }
    } else if (sl && !json_is_null(sl)) rc = cs_error(CS_EFORMAT, "%s: config switch_level is not a list", what);
    json_t *sa = json_object_get(root, "self_attn");
    if (json_is_boolean(sa)) o->self_attn = json_is_true(sa) ? 1 : -1;
    else if (sa) rc = cs_error(CS_EFORMAT, "%s: config self_attn is not a boolean", what);
    if (json_is_integer(nh)) {
        for (int i = 0; i < CS_UNET_MAX_LEVELS; i++) o->nhead[i] = (int)json_integer_value(nh);
    } else if (json_is_array(nh) && json_array_size(nh) <= CS_UNET_MAX_LEVELS) {
        for (size_t i = 0; i < json_array_size(nh); i++) {
            json_t *v = json_array_get(nh, i);
            if (!json_is_integer(v)) rc = cs_error(CS_EFORMAT, "%s: config nhead[%zu] is not an integer", what, i);
            else o->nhead[i] = (int)json_integer_value(v);   /* -1 (no attention) = infer */
        }
    } else if (nh) rc = cs_error(CS_EFORMAT, "%s: config nhead is neither an integer nor a list", what);
    if (json_is_array(tc) && json_array_size(tc) <= CS_MAX_TCONDS) {
        o->n_conds = 0;
        for (size_t i = 0; i < json_array_size(tc); i++) {
            const char *s = json_string_value(json_array_get(tc, i));
            if (!s || strlen(s) >= sizeof o->conds[0]) rc = cs_error(CS_EFORMAT, "%s: config t_conds[%zu] is not a name", what, i);
            else snprintf(o->conds[o->n_conds++], sizeof o->conds[0], "%s", s);
        }
        if (!o->n_conds) o->n_conds = -1;   /* explicit empty list */
    } else if (tc) rc = cs_error(CS_EFORMAT, "%s: config t_conds is not a short list", what);
    json_decref(root);
    return rc;
}

void cs_unet_opts_from_file(cs_unet_opts *o, const cs_st_file *f)
{
    memset(o, 0, sizeof *o);
    const char *js = cs_st_meta(f, "config");
    if (!js) return;
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", cs_last_error());
    if (cs_unet_opts_from_json(o, js, cs_st_path(f))) memset(o, 0, sizeof *o);
    cs_error(0, "%s", saved);   /* metadata problems are not errors */
}

int cs_unet_split_attention(const cs_unet *u)
{
    for (int i = 0; i < u->nlevels; i++)
        for (int s = 0; s < 2; s++) {
            const cs_unet_level *l = s ? &u->up[i] : &u->down[i];
            for (int k = 0; k < l->nblocks; k++)
                if (l->blocks[k].type == 'A' && !l->blocks[k].u.attn.packed) return 1;
        }
    return 0;
}

int cs_unet_pattern(const cs_unet_level *l, char *pat, size_t len)
{
    int n = l->nblocks;
    for (int per = 1; per <= n; per++) {
        if (n % per || (size_t)per >= len) continue;
        int ok = 1;
        for (int k = per; k < n && ok; k++) ok = l->blocks[k].type == l->blocks[k % per].type;
        if (!ok) continue;
        for (int k = 0; k < per; k++) pat[k] = l->blocks[k].type;
        pat[per] = 0;
        return n / per;
    }
    if (len) pat[0] = 0;
    return 0;
}

void cs_unet_info_fill(const cs_unet *u, cs_net_info *in)
{
    in->nlevels = u->nlevels;
    in->c_r = u->c_r;
    in->c_cond = u->c_cond;
    in->nconds = u->nconds;
    memcpy(in->t_conds, u->conds, sizeof in->t_conds);
    for (int i = 0; i < u->nlevels; i++) {
        in->c_hidden[i] = u->c[i];
        in->nhead[i] = u->nhead[i];
        in->blocks_down[i] = cs_unet_pattern(&u->down[i], in->level_config[i], sizeof in->level_config[i]);
        char pat[8];
        in->blocks_up[i] = cs_unet_pattern(&u->up[i], pat, sizeof pat);
        in->repeat_down[i] = u->down[i].nrep + 1;
        in->repeat_up[i] = u->up[i].nrep + 1;
    }
}

int cs_unet_bind_info(cs_unet *u, cs_wmap *m, int c_cond, const cs_unet_opts *opt, int64_t c0, const char *what,
                      cs_net_info *in)
{
    int rc = cs_unet_bind(u, m, c_cond, opt);
    if (rc && rc != CS_EMODEL) return rc;   /* CS_EMODEL: the problems are in m, cs_wmap_finish says them */
    if (!rc && u->c[0] != c0)
        cs_wmap_problem(m, "embedding.1.weight: %lld channels but level 0 is %d wide", (long long)c0, u->c[0]);
    if ((rc = cs_wmap_finish(m, what))) return rc;
    cs_unet_info_fill(u, in);
    in->prefix = cs_wmap_prefix(m);
    in->dtype = cs_wmap_dtype(m);
    in->nparams = m->nparams;
    in->ntensors = 0;
    for (int i = 0; i < m->n; i++) in->ntensors += m->used[i];
    return 0;
}

/* ---- forward ---- */

/* remb [N, c_r*(1+nconds)] = emb(r), then emb of each t_cond (sca, crp or 0) */
float *cs_unet_remb(const cs_unet *u, const float *r, size_t N, const float *sca, const float *crp)
{
    size_t cr = (size_t)u->c_r, ld = cr * (size_t)(1 + u->nconds);
    float *e = cs_act_alloc(N * ld), *tmp = e ? cs_act_alloc(N * cr) : NULL, *zero = tmp ? cs_act_calloc(N) : NULL;
    int rc = zero ? 0 : CS_ENOMEM;
    for (int j = 0; j <= u->nconds && !rc; j++) {
        const float *v = j == 0 ? r : !strcmp(u->conds[j - 1], "sca") && sca ? sca
                                    : !strcmp(u->conds[j - 1], "crp") && crp ? crp : zero;
        if (!(rc = cs_r_embedding(v, N, (int)cr, tmp))) cs_copy2d(e + (size_t)j * cr, ld, tmp, cr, N, cr);
    }
    cs_act_free(tmp);
    cs_act_free(zero);
    if (rc) {
        cs_act_free(e);
        return NULL;
    }
    return e;
}

/* ---- the training tape ---- */

typedef struct {
    float *x, *skip;   /* copies of the input and of the skip input (or NULL) */
} tape_rec;

/* The checkpoints live in the memory of the mode the forward ran in (device
 * memory in device mode, device.h); dev remembers which, so that the tape
 * can be freed outside that mode. */
struct cs_tape {
    tape_rec *r;
    int n, cap;
    const cs_dev_ops *dev;
    cs_ws bws;         /* backward scratch */
};

static void mem_free(const cs_dev_ops *d, float *p)
{
    if (!p) return;
    if (d) d->free(p);
    else cs_free(p);
}

static int tape_push(struct cs_tape *t, const float *x, size_t n, const float *skip, size_t ns)
{
    if (t->dev != cs_dev) return cs_error(CS_EARG, "training: the tape was begun in another mode (host/device)");
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        tape_rec *r = realloc(t->r, (size_t)cap * sizeof *r);
        if (!r) return cs_oom("the training tape", (size_t)cap * sizeof *r);
        t->r = r, t->cap = cap;
    }
    float *a = cs_act_alloc(n ? n : 1), *b = skip && a ? cs_act_alloc(ns ? ns : 1) : NULL;
    if (!a || (skip && !b)) {
        cs_act_free(a), cs_act_free(b);
        return cs_oom("a training checkpoint", (n + ns) * sizeof *a);
    }
    cs_copy(a, x, n);
    if (skip) cs_copy(b, skip, ns);
    t->r[t->n++] = (tape_rec){a, b};
    return 0;
}

static void tape_clear(struct cs_tape *t)
{
    for (int i = 0; i < t->n; i++) mem_free(t->dev, t->r[i].x), mem_free(t->dev, t->r[i].skip);
    t->n = 0;
}

int cs_unet_tape_begin(cs_unet *u)
{
    if (u->strided) return cs_error(CS_EUNSUP, "training: strided level transitions (Stage B) are not supported yet");
    for (int i = 0; i < u->nlevels; i++) {
        if (u->interp[i]) return cs_error(CS_EUNSUP, "training: switch_level resizes are not supported yet");
        if (u->down[i].nrep || u->up[i].nrep) return cs_error(CS_EUNSUP, "training: repeat mappers are not supported yet");
    }
    if (cs_unet_split_attention(u))
        return cs_error(CS_EUNSUP, "training: split attention weights (to_q/to_k/to_v) are not supported yet");
    if (u->tape) cs_unet_tape_end(u);
    if (!(u->tape = calloc(1, sizeof *u->tape))) return cs_oom("the training tape", sizeof *u->tape);
    u->tape->dev = cs_dev;
    return 0;
}

void cs_unet_tape_end(cs_unet *u)
{
    if (!u->tape) return;
    tape_clear(u->tape);
    free(u->tape->r);
    cs_ws_free(&u->tape->bws);   /* frees with the allocator it came from */
    free(u->tape);
    u->tape = NULL;
    u->ws.keep = 0;
}

static int run_level(cs_unet *u, const cs_unet_level *l, float *h, size_t N, size_t H, size_t W, int c,
                     const float *skip, const float *remb, size_t ldr, const float *cond, size_t Lc)
{
    size_t rows = N * H * W;
    for (int q = 0; q <= l->nrep; q++) {
        for (int k = 0; k < l->nblocks; k++) {
            const cs_block *b = &l->blocks[k];
            int rc = cs_cancel_check();   /* a Stage C block at 1024^2 is well under a second */
            if (rc) return rc;
            const float *sk = b->type == 'C' && k == 0 ? skip : NULL;
            if (u->tape && (rc = tape_push(u->tape, h, N * H * W * (size_t)c, sk, sk ? N * H * W * (size_t)b->u.res.c_skip : 0)))
                return rc;
            rc = cs_block_forward(b, h, N, H, W, sk, remb, ldr, cond, Lc, &u->ws);
            if (rc) return rc;
        }
        if (q < l->nrep) {   /* repeat mapper: 1x1 conv, then the next pass */
            float *t = cs_ws_get(&u->ws, 0, rows * (size_t)c);
            if (!t) return CS_ENOMEM;
            int rc = cs_linear(h, rows, (size_t)c, 0, &l->rep_w[q], &l->rep_b[q], t, 0, 0);
            if (rc) return rc;
            cs_copy(h, t, rows * (size_t)c);
        }
    }
    return 0;
}

/* output size of a transition out of an H x W grid */
static size_t trans_size(const cs_unet *u, size_t n, int interp, int up)
{
    if (u->strided) return up ? 2 * n : n / 2;
    return interp ? (up ? 2 * n : n / 2) : n;   /* nn.Upsample(scale_factor 2 / 0.5) floors */
}

size_t cs_unet_min_side(const cs_unet *u)
{
    /* each halving transition floors n / 2, which must stay >= 1 */
    size_t n = 1;
    for (int i = u->nlevels - 1; i >= 1; i--)
        if (trans_size(u, 2, u->interp[i - 1], 0) == 1)
            n *= 2;
    return n;
}

/* LayerNorm2d, then the level transition (il: interp flag of the switch); returns a new buffer
 *   strided:  down Conv2d k2 s2, up ConvTranspose2d k2 s2
 *   UpDownBlock2d: down conv1x1 then resize, up resize then conv1x1 (resize only if switch_level) */
static float *transition(cs_unet *u, const float *h, size_t N, size_t H, size_t W, int cin, const cs_tensor *w,
                         const cs_tensor *b, int up, int il, size_t *Ho, size_t *Wo)
{
    size_t rows = N * H * W, cout = (size_t)(up && u->strided ? w->shape[1] : w->shape[0]);
    size_t oh = trans_size(u, H, il, up), ow = trans_size(u, W, il, up);
    if (!oh || !ow) {
        cs_error(CS_EARG, "a %zux%zu grid is too small for the level transitions", H, W);
        return NULL;
    }
    size_t big = (oh * ow > H * W ? oh * ow : H * W) * N;
    float *t = cs_ws_get(&u->ws, 0, rows * (size_t)cin), *y = cs_act_alloc(big * cout);
    float *r = !u->strided && il ? cs_ws_get(&u->ws, 1, big * (size_t)(cin > (int)cout ? (size_t)cin : cout)) : NULL;
    if (!t || !y || (!u->strided && il && !r)) {
        cs_act_free(y);
        return NULL;
    }
    cs_layernorm(h, t, rows, (size_t)cin, 1e-6f, NULL, NULL);
    int rc;
    if (u->strided && up) rc = cs_conv_transpose2d(t, N, H, W, (size_t)cin, w, b, 2, 0, y, Ho, Wo);
    else if (u->strided) rc = cs_conv2d(t, N, H, W, (size_t)cin, w, b, 2, 0, 1, y, Ho, Wo);
    else if (!il) rc = cs_conv2d(t, N, H, W, (size_t)cin, w, b, 1, 0, 1, y, Ho, Wo);
    else if (up) {
        cs_resize_bilinear(t, N, H, W, (size_t)cin, r, oh, ow);
        rc = cs_conv2d(r, N, oh, ow, (size_t)cin, w, b, 1, 0, 1, y, Ho, Wo);
    } else {
        rc = cs_conv2d(t, N, H, W, (size_t)cin, w, b, 1, 0, 1, r, NULL, NULL);
        if (!rc) cs_resize_bilinear(r, N, H, W, cout, y, oh, ow);
        *Ho = oh, *Wo = ow;
    }
    if (rc) {
        cs_act_free(y);
        return NULL;
    }
    return y;
}

int cs_unet_forward(cs_unet *u, float *h, size_t N, size_t H, size_t W, const float *remb, size_t ldr,
                    const float *cond, size_t Lc, float **h_out)
{
    int L = u->nlevels, rc = 0;
    float *skip[CS_UNET_MAX_LEVELS] = {0};
    size_t sh[CS_UNET_MAX_LEVELS], sw[CS_UNET_MAX_LEVELS];
    *h_out = NULL;
    /* down: level i's output stays alive as skip[i]; the transition makes a new buffer */
    for (int i = 0; i < L && !rc; i++) {
        if (i > 0) {
            if (u->tape && (rc = tape_push(u->tape, skip[i - 1], N * H * W * (size_t)u->c[i - 1], NULL, 0))) break;
            h = transition(u, skip[i - 1], N, H, W, u->c[i - 1], &u->dn_w[i], &u->dn_b[i], 0, u->interp[i - 1], &H, &W);
            if (!h) {
                rc = CS_ENOMEM;
                break;
            }
        }
        skip[i] = h, sh[i] = H, sw[i] = W;
        rc = run_level(u, &u->down[i], h, N, H, W, u->c[i], NULL, remb, ldr, cond, Lc);
    }
    /* up: start from the deepest output (its buffer is reused in place) */
    for (int ui = 0; ui < L && !rc; ui++) {
        int l = L - 1 - ui;
        const float *s = ui > 0 ? skip[l] : NULL;
        if (s && (H != sh[l] || W != sw[l])) {
            float *r = cs_act_alloc(N * sh[l] * sw[l] * (size_t)u->c[l]);
            if (!r) {
                rc = CS_ENOMEM;
                break;
            }
            cs_resize_bilinear(h, N, H, W, (size_t)u->c[l], r, sh[l], sw[l]);
            cs_act_free(h);
            h = r, H = sh[l], W = sw[l];
        }
        rc = run_level(u, &u->up[ui], h, N, H, W, u->c[l], s, remb, ldr, cond, Lc);
        if (ui > 0) {
            cs_act_free(skip[l]);
            skip[l] = NULL;
        } else skip[l] = NULL;   /* h itself */
        if (rc || l == 0) break;
        if (u->tape && (rc = tape_push(u->tape, h, N * H * W * (size_t)u->c[l], NULL, 0))) break;
        float *nh = transition(u, h, N, H, W, u->c[l], &u->up_w[ui], &u->up_b[ui], 1, u->interp[l - 1], &H, &W);
        cs_act_free(h);
        h = nh;
        if (!h) rc = CS_ENOMEM;
    }
    for (int i = 0; i < L; i++)
        if (skip[i] && skip[i] != h) cs_act_free(skip[i]);
    if (rc) {
        cs_act_free(h);
        return rc;
    }
    *h_out = h;
    return 0;
}

/* ---- backward ---- */

/* pops the next record (in reverse) */
static tape_rec *tape_pop(struct cs_tape *t, int *i)
{
    if (*i <= 0) {
        cs_error(CS_EARG, "training: the tape is shorter than the network (no recorded forward?)");
        return NULL;
    }
    return &t->r[--*i];
}

/* blocks of level l in reverse; d in/out. First ResBlock of an up level gets skip/dskip. */
static int level_backward(cs_unet *u, const cs_unet_level *l, int *i, float *d, size_t N, size_t H, size_t W,
                          float *dskip, const float *remb, size_t ldr, float *dremb, const float *cond, size_t Lc,
                          float *dcond, cs_grads *g)
{
    for (int k = l->nblocks - 1; k >= 0; k--) {
        tape_rec *r = tape_pop(u->tape, i);
        if (!r) return CS_EARG;
        int rc = cs_cancel_check();
        if (!rc)
            rc = cs_block_backward(&l->blocks[k], r->x, d, N, H, W, r->skip, r->skip ? dskip : NULL, remb, ldr, dremb,
                                   cond, Lc, dcond, g, &u->ws, &u->tape->bws);
        if (!rc) rc = cs_grads_done(g);   /* fused: no weight is shared between blocks */
        if (rc) return rc;
    }
    return 0;
}

/* UpDownBlock2d without resize: y = conv1x1(LN(x)); d [rows, cout] -> dx [rows, cin] (written) */
static int transition_backward(cs_unet *u, const float *x, size_t rows, size_t cin, const cs_tensor *w,
                               const cs_tensor *b, const float *d, float *dx, cs_grads *g)
{
    float *t = cs_ws_get(&u->tape->bws, 0, rows * cin), *dt = cs_ws_get(&u->tape->bws, 1, rows * cin);
    if (!t || !dt) return CS_ENOMEM;
    int rc = 0;
    float *gw = cs_grads_of(g, w, &rc), *gb = cs_grads_of(g, b, &rc);
    if (rc) return rc;
    cs_layernorm(x, t, rows, cin, 1e-6f, NULL, NULL);
    if ((rc = cs_linear_backward_g(g, t, rows, cin, 0, w, d, 0, dt, 0, gw, gb)) || (rc = cs_grads_done(g))) return rc;
    return cs_layernorm_backward(x, dt, dx, 0, rows, cin, 1e-6f, NULL, NULL, NULL);
}

int cs_unet_backward(cs_unet *u, float *d, size_t N, size_t H, size_t W, const float *remb, size_t ldr,
                     const float *cond, size_t Lc, float *dcond, cs_grads *g)
{
    if (!u->tape) return cs_error(CS_EARG, "training: backward without a recorded forward");
    if (u->tape->dev != cs_dev) return cs_error(CS_EARG, "training: the backward runs in another mode (host/device) than its forward");
    int L = u->nlevels, i = u->tape->n, rc = 0, cmax = 0;
    size_t rows = N * H * W;   /* every level runs at the input size (no resize, checked at begin) */
    for (int l = 0; l < L; l++) cmax = u->c[l] > cmax ? u->c[l] : cmax;
    float *dskip[CS_UNET_MAX_LEVELS] = {0}, *tmp = cs_act_alloc(rows * (size_t)cmax + 1);
    if (!tmp) return CS_ENOMEM;
    for (int l = 0; l < L - 1 && !rc; l++)
        if (!(dskip[l] = cs_act_calloc(rows * (size_t)u->c[l] + 1))) rc = CS_ENOMEM;
    /* d holds the gradient at the current point, at most cmax wide */
    float *dd = rc ? NULL : cs_act_alloc(rows * (size_t)cmax + 1);
    if (!rc && !dd) rc = CS_ENOMEM;
    if (!rc) cs_copy(dd, d, rows * (size_t)u->c[0]);
    /* up path in reverse: the transition out of up level ui, then its blocks */
    for (int ui = L - 1; ui >= 0 && !rc; ui--) {
        int l = L - 1 - ui;
        if (l > 0) {
            tape_rec *r = tape_pop(u->tape, &i);
            if (!r) rc = CS_EARG;
            else rc = transition_backward(u, r->x, rows, (size_t)u->c[l], &u->up_w[ui], &u->up_b[ui], dd, tmp, g);
            if (!rc) cs_copy(dd, tmp, rows * (size_t)u->c[l]);
        }
        if (!rc)
            rc = level_backward(u, &u->up[ui], &i, dd, N, H, W, ui > 0 ? dskip[l] : NULL, remb, ldr, NULL, cond, Lc,
                                dcond, g);
    }
    /* down path in reverse: blocks, then the transition into the level (its input also fed the skip) */
    for (int l = L - 1; l >= 0 && !rc; l--) {
        rc = level_backward(u, &u->down[l], &i, dd, N, H, W, NULL, remb, ldr, NULL, cond, Lc, dcond, g);
        if (rc || l == 0) break;
        tape_rec *r = tape_pop(u->tape, &i);
        if (!r) rc = CS_EARG;
        else rc = transition_backward(u, r->x, rows, (size_t)u->c[l - 1], &u->dn_w[l], &u->dn_b[l], dd, tmp, g);
        if (rc) break;
        cs_add(tmp, dskip[l - 1], dd, rows * (size_t)u->c[l - 1]);
    }
    if (!rc && i != 0) rc = cs_error(CS_EARG, "training: %d tape records left after the backward", i);
    if (!rc) cs_copy(d, dd, rows * (size_t)u->c[0]);
    for (int l = 0; l < L; l++) cs_act_free(dskip[l]);
    cs_act_free(tmp), cs_act_free(dd);
    if (!rc) rc = cs_dev_error();   /* a device op that failed (device mode) */
    return rc;
}

double cs_unet_flops(const cs_unet *u, size_t N, size_t H, size_t W, size_t Lc)
{
    double f = 0;
    int L = u->nlevels;
    size_t sh[CS_UNET_MAX_LEVELS], sw[CS_UNET_MAX_LEVELS];
    for (int i = 0; i < L; i++) {
        if (i > 0) {   /* the conv runs at the output size (strided, or 1x1 before a resize) */
            size_t ch = u->strided ? H / 2 : H, cw = u->strided ? W / 2 : W;
            f += 2.0 * N * ch * cw * (double)u->c[i] * u->c[i - 1] * (u->strided ? 4 : 1);
            H = trans_size(u, H, u->interp[i - 1], 0), W = trans_size(u, W, u->interp[i - 1], 0);
        }
        sh[i] = H, sw[i] = W;
        const cs_unet_level *l = &u->down[i];
        for (int k = 0; k < l->nblocks; k++) f += (l->nrep + 1) * cs_block_flops(&l->blocks[k], N, H * W, Lc);
        f += l->nrep * 2.0 * N * H * W * (double)u->c[i] * u->c[i];
    }
    for (int ui = 0; ui < L; ui++) {
        int lv = L - 1 - ui;
        if (ui > 0) H = sh[lv], W = sw[lv];
        const cs_unet_level *l = &u->up[ui];
        for (int k = 0; k < l->nblocks; k++) f += (l->nrep + 1) * cs_block_flops(&l->blocks[k], N, H * W, Lc);
        f += l->nrep * 2.0 * N * H * W * (double)u->c[lv] * u->c[lv];
        if (lv > 0) {
            size_t oh = trans_size(u, H, u->interp[lv - 1], 1), ow = trans_size(u, W, u->interp[lv - 1], 1);
            f += 2.0 * N * (u->strided ? H * W * 4 : oh * ow) * (double)u->c[lv] * u->c[lv - 1];
            H = oh, W = ow;
        }
    }
    return f;
}
