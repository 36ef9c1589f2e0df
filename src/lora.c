/* LoRA merge at load (see lora.h for the formats). Two tables: the
 * network's targets by every name a LoRA may use for them (dotted and
 * kohya's underscore spelling, built from the file's own tensor names), and
 * the LoRA file's tensors grouped by module. Each group is one delta. */
#include "lora.h"

#include "device.h"
#include "error.h"
#include "ops.h"
#include "weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cs_lora_patch {
    int n;          /* tensors in the base file */
    cs_tensor *t;   /* [n]; data NULL = not merged */
    int count;
    size_t bytes;
};

/* a weight (rows [row0, row0 + rows) of it; rows 0 = all) and its bias */
typedef struct {
    char *key;
    int w, b;
    int64_t row0, rows;
} target;

typedef struct {
    target *v;
    int n, cap;
} tmap;

enum { R_DOWN, R_UP, R_ALPHA, R_DIFF, R_DIFF_B, R_DORA, R_MID, R_COUNT };

static const struct {
    const char *suffix;
    int role;
} suffixes[] = {
    {".lora_down.weight", R_DOWN}, {".lora_up.weight", R_UP},   {".lora_A.weight", R_DOWN},
    {".lora_B.weight", R_UP},      {".lora.down.weight", R_DOWN}, {".lora.up.weight", R_UP},
    {".alpha", R_ALPHA},           {".diff_b", R_DIFF_B},       {".diff", R_DIFF},
    {".dora_scale", R_DORA},       {".lora_mid.weight", R_MID},
};

/* kohya-style name prefixes: part 0 = U-Net, 1 = text encoder */
static const struct {
    const char *p;
    int te;
} kohya[] = {
    {"lora_unet_", 0}, {"lora_prior_unet_", 0}, {"lora_te_", 1}, {"lora_te1_", 1}, {"lora_prior_te_", 1},
};
/* dotted prefixes in front of bare module paths (-1: either part) */
static const struct {
    const char *p;
    int te;
} dotted[] = {
    {"model.diffusion_model.", 0}, {"diffusion_model.", 0}, {"base_model.model.", -1}, {"unet.", 0},
    {"prior.", 0}, {"text_encoder.", 1}, {"lora_unet.", 0}, {"lora_te.", 1},
};

typedef struct {
    char *module;
    int role;
    const cs_tensor *t;
} lkey;

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static int add_target(tmap *m, const char *key, int w, int b, int64_t row0, int64_t rows)
{
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 256;
        target *v = realloc(m->v, (size_t)cap * sizeof *v);
        if (!v) return cs_oom("the LoRA target table", (size_t)cap * sizeof *v);
        m->v = v, m->cap = cap;
    }
    char *k = strdup(key);
    if (!k) return cs_oom("the LoRA target table", strlen(key));
    m->v[m->n++] = (target){k, w, b, row0, rows};
    return 0;
}

/* dotted name and its underscore spelling */
static int add_both(tmap *m, const char *mod, int w, int b, int64_t row0, int64_t rows)
{
    char u[512];
    snprintf(u, sizeof u, "%s", mod);
    for (char *s = u; *s; s++)
        if (*s == '.') *s = '_';
    int rc = add_target(m, mod, w, b, row0, rows);
    return rc ? rc : strcmp(u, mod) ? add_target(m, u, w, b, row0, rows) : 0;
}

static int find_index(cs_st_file *f, const char *prefix, const char *a, const char *b)
{
    char nm[600];
    snprintf(nm, sizeof nm, "%s%s%s", prefix, a, b);
    const cs_tensor *t = cs_st_find(f, nm);
    return t ? (int)(t - cs_st_at(f, 0)) : -1;
}

static int is_float(const cs_tensor *t) { return t->dtype == CS_F32 || t->dtype == CS_BF16 || t->dtype == CS_F16; }

static int cmp_target(const void *a, const void *b) { return strcmp(((const target *)a)->key, ((const target *)b)->key); }

static int build_targets(cs_st_file *f, const char *prefix, tmap *m)
{
    size_t pl = strlen(prefix);
    int rc = 0;
    for (int i = 0; i < cs_st_count(f) && !rc; i++) {
        const cs_tensor *t = cs_st_at(f, i);
        if (strncmp(t->name, prefix, pl) || !is_float(t) || t->ndim < 1 || strlen(t->name) >= 500) continue;
        char mod[512];
        const char *p = t->name + pl;
        size_t l = strlen(p);
        if (ends_with(p, ".weight")) {
            snprintf(mod, sizeof mod, "%.*s", (int)(l - 7), p);
            int b = find_index(f, prefix, mod, ".bias");
            rc = add_both(m, mod, i, b, 0, 0);
            /* diffusers / ComfyUI split attention: out_proj is to_out.0 */
            if (!rc && ends_with(mod, ".attn.to_out.0")) {
                mod[strlen(mod) - 8] = 0;
                strcat(mod, "out_proj");
                rc = add_both(m, mod, i, b, 0, 0);
            }
        } else if (ends_with(p, ".in_proj_weight") && t->ndim == 2 && t->shape[0] % 3 == 0) {
            /* packed MultiheadAttention: q, k, v row blocks */
            static const char *const qkv[3] = {"to_q", "to_k", "to_v"};
            int64_t c = t->shape[0] / 3;
            char base[512];
            snprintf(base, sizeof base, "%.*s", (int)(l - 14), p);
            int b = find_index(f, prefix, base, "in_proj_bias");
            for (int j = 0; j < 3 && !rc; j++) {
                snprintf(mod, sizeof mod, "%s%s", base, qkv[j]);
                rc = add_both(m, mod, i, b, j * c, c);
            }
        }
    }
    if (!rc) qsort(m->v, (size_t)m->n, sizeof *m->v, cmp_target);
    return rc;
}

static const target *lookup(const tmap *m, const char *key)
{
    target k = {(char *)key, 0, 0, 0, 0};
    return bsearch(&k, m->v, (size_t)m->n, sizeof *m->v, cmp_target);
}

/* the target of a LoRA module name; *foreign = 1 when the name is the other part's */
static const target *resolve(const tmap *m, const char *mod, int te, int *foreign)
{
    *foreign = 0;
    for (size_t i = 0; i < sizeof kohya / sizeof *kohya; i++)
        if (starts_with(mod, kohya[i].p)) {
            if (kohya[i].te != te) {
                *foreign = 1;
                return NULL;
            }
            return lookup(m, mod + strlen(kohya[i].p));
        }
    const target *t = lookup(m, mod);
    for (size_t i = 0; !t && i < sizeof dotted / sizeof *dotted; i++)
        if (starts_with(mod, dotted[i].p)) {
            if (dotted[i].te >= 0 && dotted[i].te != te) {
                *foreign = 1;
                return NULL;
            }
            t = lookup(m, mod + strlen(dotted[i].p));
        }
    return t;
}

static int cmp_lkey(const void *a, const void *b)
{
    const lkey *x = a, *y = b;
    int c = strcmp(x->module, y->module);
    return c ? c : x->role - y->role;
}

/* float32 copy of file tensor i, made on first use */
static float *merged(cs_lora_patch *p, cs_st_file *f, int i)
{
    if (p->t[i].data) return (float *)p->t[i].data;
    const cs_tensor *t = cs_st_at(f, i);
    float *d = cs_tensor_f32_dup(t);
    if (!d) return NULL;
    p->t[i] = *t;
    p->t[i].dtype = CS_F32;
    p->t[i].data = d;
    p->count++;
    p->bytes += (size_t)cs_tensor_numel(t) * sizeof(float);
    return d;
}

static int fits_up(const cs_tensor *u, int64_t rows, int64_t r)
{
    if (cs_tensor_numel(u) != rows * r || u->shape[0] != rows) return 0;
    return (u->ndim == 2 && u->shape[1] == r) || (u->ndim == 4 && u->shape[1] == r && u->shape[2] == 1 && u->shape[3] == 1);
}

/* DoRA as ComfyUI's weight_decompose: Wc = W + scale * up @ down, each input
 * channel's column group of Wc rescaled to norm dora_scale[j] (norm over all
 * rows and kernel taps), then W += strength * (Wc - W). w: [rows, K], K =
 * nin * taps. *tmp gets the buffer (the caller frees it). */
static int dora(float *w, int64_t rows, int64_t K, int64_t nin, const float *up, const float *down, int64_t rk,
                float scale, float strength, const cs_tensor *ds, float **tmp)
{
    float *m = cs_tensor_f32_dup(ds);
    float *wc = m ? cs_alloc((size_t)(rows * K) * sizeof(float)) : NULL;
    *tmp = wc;
    if (!wc) {
        cs_free(m);
        return CS_ENOMEM;
    }
    memcpy(wc, w, (size_t)(rows * K) * sizeof(float));
    int rc = cs_sgemm(0, (size_t)rows, (size_t)K, (size_t)rk, scale, up, (size_t)rk, down, (size_t)K, 1.0f, wc,
                      (size_t)K);
    int64_t taps = K / nin;
    for (int64_t j = 0; !rc && j < nin; j++) {
        double ss = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t t = 0; t < taps; t++) ss += (double)wc[i * K + j * taps + t] * wc[i * K + j * taps + t];
        /* a zero column stays zero (ComfyUI would divide by zero) */
        float g = ss > 0 ? (float)(m[j] / sqrt(ss)) : 0.0f;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t t = 0; t < taps; t++) {
                float *x = &w[i * K + j * taps + t];
                *x += strength * (wc[i * K + j * taps + t] * g - *x);
            }
    }
    cs_free(m);
    return rc;
}

/* one module's delta into the patch */
static int apply(cs_lora_patch *p, cs_st_file *f, const target *tg, const lkey *k, int nk, float strength,
                 const char *lname)
{
    const cs_tensor *r[R_COUNT] = {0};
    for (int i = 0; i < nk; i++) r[k[i].role] = k[i].t;
    char a[96], b[96], c[96];
    if (r[R_MID])
        return cs_error(CS_EUNSUP, "%s: %s: LoCon Tucker decomposition (.lora_mid) is not supported", lname,
                        k[0].module);
    if (r[R_DORA] && !r[R_UP])
        return cs_error(CS_EFORMAT, "%s: %s.dora_scale without up/down matrices", lname, k[0].module);
    if (!r[R_UP] != !r[R_DOWN])
        return cs_error(CS_EFORMAT, "%s: %s has %s but no %s", lname, k[0].module, r[R_UP] ? "an up" : "a down",
                        r[R_UP] ? "down matrix" : "up matrix");
    const cs_tensor *W = cs_st_at(f, tg->w);
    int64_t rows = tg->rows ? tg->rows : W->shape[0], K = cs_tensor_numel(W) / W->shape[0];
    int rc = 0;
    float *up = NULL, *down = NULL, *d = NULL;
    if (r[R_UP]) {
        const cs_tensor *u = r[R_UP], *dn = r[R_DOWN];
        int64_t rk = dn->ndim >= 1 ? dn->shape[0] : 0;
        if (rk < 1 || dn->ndim < 2 || cs_tensor_numel(dn) != rk * K || !fits_up(u, rows, rk))
            return cs_error(CS_EMODEL, "%s: %s: up %s and down %s do not fit %s %s%s", lname, k[0].module,
                            cs_shape_str(u, a, sizeof a), cs_shape_str(dn, b, sizeof b), W->name,
                            cs_shape_str(W, c, sizeof c), tg->rows ? " (a third of its rows)" : "");
        float scale = 1.0f;
        if (r[R_ALPHA]) {
            float al;
            if (cs_tensor_numel(r[R_ALPHA]) != 1 || cs_tensor_to_f32(r[R_ALPHA], &al))
                return cs_error(CS_EFORMAT, "%s: %s.alpha is not one number", lname, k[0].module);
            scale = al / (float)rk;
        }
        int64_t nin = W->ndim >= 2 ? W->shape[1] : 0;
        if (r[R_DORA] && (nin < 1 || K % nin || cs_tensor_numel(r[R_DORA]) != nin))
            return cs_error(CS_EMODEL, "%s: %s.dora_scale is %s, want one value per input channel of %s %s", lname,
                            k[0].module, cs_shape_str(r[R_DORA], a, sizeof a), W->name, cs_shape_str(W, b, sizeof b));
        up = cs_tensor_f32_dup(u);
        down = up ? cs_tensor_f32_dup(dn) : NULL;
        float *w = down ? merged(p, f, tg->w) : NULL;
        if (!w) rc = CS_ENOMEM;
        else if (!r[R_DORA])
            rc = cs_sgemm(0, (size_t)rows, (size_t)K, (size_t)rk, strength * scale, up, (size_t)rk, down, (size_t)K,
                          1.0f, w + tg->row0 * K, (size_t)K);
        else
            rc = dora(w + tg->row0 * K, rows, K, nin, up, down, rk, scale, strength, r[R_DORA], &d);
        cs_free(d);
        d = NULL;
    }
    if (!rc && r[R_DIFF]) {
        if (cs_tensor_numel(r[R_DIFF]) != rows * K)
            rc = cs_error(CS_EMODEL, "%s: %s.diff is %s, does not fit %s %s", lname, k[0].module,
                          cs_shape_str(r[R_DIFF], a, sizeof a), W->name, cs_shape_str(W, b, sizeof b));
        float *w = rc ? NULL : merged(p, f, tg->w);
        if (!rc && !(d = w ? cs_tensor_f32_dup(r[R_DIFF]) : NULL)) rc = CS_ENOMEM;
        for (int64_t i = 0; !rc && i < rows * K; i++) w[tg->row0 * K + i] += strength * d[i];
    }
    if (!rc && r[R_DIFF_B]) {
        const cs_tensor *B = tg->b >= 0 ? cs_st_at(f, tg->b) : NULL;
        if (!B || cs_tensor_numel(r[R_DIFF_B]) != rows)
            rc = cs_error(CS_EMODEL, "%s: %s.diff_b does not fit %s", lname, k[0].module, B ? B->name : "(no bias)");
        float *bb = rc ? NULL : merged(p, f, tg->b);
        cs_free(d);
        d = NULL;
        if (!rc && !(d = bb ? cs_tensor_f32_dup(r[R_DIFF_B]) : NULL)) rc = CS_ENOMEM;
        for (int64_t i = 0; !rc && i < rows; i++) bb[tg->row0 + i] += strength * d[i];
    }
    if (rc == CS_ENOMEM && !*cs_last_error()) cs_error(CS_ENOMEM, "%s: out of memory merging %s", lname, k[0].module);
    cs_free(up), cs_free(down), cs_free(d);
    return rc;
}

static void note(const cs_lora_list *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const cs_lora_list *l, const char *fmt, ...)
{
    if (!l->note || l->dry) return;
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    l->note(l->ctx, msg);
}

/* one LoRA file into p */
static int merge_one(cs_lora_patch *p, cs_st_file *f, const tmap *tm, int te, const char *what, cs_lora_list *list,
                     cs_lora *lo)
{
    cs_st_file *lf;
    int rc = cs_st_open(lo->path, &lf);
    if (rc) return rc;
    const char *lname = cs_basename(lo->path);
    int n = cs_st_count(lf), nk = 0;
    lkey *k = calloc((size_t)(n ? n : 1), sizeof *k);
    if (!k) {
        cs_st_close(lf);
        return cs_oom("the LoRA key table", (size_t)n * sizeof *k);
    }
    int nunknown = 0, nunmatched = 0, nforeign = 0, changed = 0;
    char list_s[800] = "";
    for (int i = 0; i < n && !rc; i++) {
        const cs_tensor *t = cs_st_at(lf, i);
        size_t j = 0;
        while (j < sizeof suffixes / sizeof *suffixes && !ends_with(t->name, suffixes[j].suffix)) j++;
        if (j == sizeof suffixes / sizeof *suffixes || !is_float(t)) {
            nunknown++;
            continue;
        }
        size_t ml = strlen(t->name) - strlen(suffixes[j].suffix);
        if (!(k[nk].module = strndup(t->name, ml))) rc = cs_oom("the LoRA key table", ml);
        k[nk].role = suffixes[j].role;
        k[nk++].t = t;
    }
    if (!rc && !nk)
        rc = cs_error(CS_EFORMAT, "%s: not a LoRA file: no .lora_down/.lora_up, .lora_A/.lora_B or .diff keys among its %d tensors",
                      lname, n);
    /* keys with an unknown suffix are unmatched too */
    for (int i = 0; i < n && !rc && nunknown; i++) {
        const cs_tensor *t = cs_st_at(lf, i);
        int known = 0;
        for (int j = 0; j < nk && !known; j++) known = k[j].t == t;
        if (known) continue;
        nunmatched++;
        if (nunmatched <= 10)
            snprintf(list_s + strlen(list_s), sizeof list_s - strlen(list_s), "%s%s", nunmatched > 1 ? ", " : "",
                     t->name);
    }
    if (!rc) qsort(k, (size_t)nk, sizeof *k, cmp_lkey);
    for (int i = 0; i < nk && !rc;) {
        int j = i + 1;
        while (j < nk && !strcmp(k[j].module, k[i].module)) j++;
        int foreign;
        const target *tg = resolve(tm, k[i].module, te, &foreign);
        int only_alpha = j - i == 1 && k[i].role == R_ALPHA;
        if (foreign) {
            nforeign++;
        } else if (!tg) {
            for (int q = i; q < j; q++) {
                nunmatched++;
                if (nunmatched <= 10)
                    snprintf(list_s + strlen(list_s), sizeof list_s - strlen(list_s), "%s%s", nunmatched > 1 ? ", " : "",
                             k[q].t->name);
            }
        } else if (!only_alpha) {
            if (!list->dry) rc = apply(p, f, tg, k + i, j - i, lo->strength, lname);
            changed++;
        }
        i = j;
    }
    if (!rc && nunmatched && (!list->lenient || !changed)) {
        if (changed || nforeign)
            rc = cs_error(CS_EMODEL, "%s: %d LoRA key%s match%s no %s weight: %s%s", lname, nunmatched,
                          nunmatched > 1 ? "s" : "", nunmatched > 1 ? "" : "es", what, list_s,
                          nunmatched > 10 ? ", ..." : "");
        else
            rc = cs_error(CS_EMODEL, "%s: no key matches a %s weight (%d keys): %s%s", lname, what, nunmatched, list_s,
                          nunmatched > 10 ? ", ..." : "");
    }
    if (!rc && !changed)
        rc = cs_error(CS_EMODEL, "%s: no module for the %s: its %d modules are all for the %s", lname, what, nforeign,
                      te ? "U-Net" : "text encoder");
    if (!rc) {
        lo->changed = changed;
        note(list, "lora %s: %d modules of %s changed (strength %g)", lname, changed, what, (double)lo->strength);
        if (nforeign)
            note(list, "lora %s: %d %s modules left for the %s", lname, nforeign, te ? "U-Net" : "text-encoder",
                 te ? "U-Net" : "text encoder");
        if (nunmatched)
            note(list, "lora %s: %d keys match no %s weight and were ignored: %s%s", lname, nunmatched, what, list_s,
                 nunmatched > 10 ? ", ..." : "");
    }
    for (int i = 0; i < nk; i++) free(k[i].module);
    free(k);
    cs_st_close(lf);
    return rc;
}

int cs_lora_merge(cs_st_file *f, const char *prefix, int te, const char *what, cs_lora_list *list, cs_lora_patch **out)
{
    *out = NULL;
    if (!list || list->n <= 0) return 0;
    cs_lora_patch *p = calloc(1, sizeof *p);
    tmap tm = {0};
    int rc = 0;
    if (!p || !(p->t = calloc((size_t)cs_st_count(f) + 1, sizeof *p->t))) rc = cs_oom("the LoRA patch", sizeof *p);
    if (!rc) {
        p->n = cs_st_count(f);
        rc = build_targets(f, prefix ? prefix : "", &tm);
    }
    for (int i = 0; i < list->n && !rc; i++) rc = merge_one(p, f, &tm, te, what, list, &list->v[i]);
    for (int i = 0; i < tm.n; i++) free(tm.v[i].key);
    free(tm.v);
    if (rc) {
        cs_lora_patch_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int cs_lora_patch_f32(cs_st_file *f, const char *prefix, cs_lora_patch **out)
{
    *out = NULL;
    cs_lora_patch *p = calloc(1, sizeof *p);
    if (!p || !(p->t = calloc((size_t)cs_st_count(f) + 1, sizeof *p->t))) {
        free(p);
        return cs_oom("the float32 weights", sizeof *p);
    }
    p->n = cs_st_count(f);
    size_t pl = prefix ? strlen(prefix) : 0;
    for (int i = 0; i < p->n; i++) {
        const cs_tensor *t = cs_st_at(f, i);
        if (!is_float(t) || (pl && strncmp(t->name, prefix, pl))) continue;
        if (!merged(p, f, i)) {
            cs_lora_patch_free(p);
            return cs_oom("the float32 weights", (size_t)cs_tensor_numel(t) * sizeof(float));
        }
    }
    *out = p;
    return 0;
}

const cs_tensor *cs_lora_patch_at(const cs_lora_patch *p, int i)
{
    return p && i >= 0 && i < p->n && p->t[i].data ? &p->t[i] : NULL;
}

int cs_lora_patch_count(const cs_lora_patch *p) { return p ? p->count : 0; }
size_t cs_lora_patch_bytes(const cs_lora_patch *p) { return p ? p->bytes : 0; }

void cs_lora_patch_free(cs_lora_patch *p)
{
    if (!p) return;
    for (int i = 0; p->t && i < p->n; i++)
        if (p->t[i].data) {
            size_t bytes = (size_t)cs_tensor_numel(&p->t[i]) * sizeof(float);
            cs_param_forget(p->t[i].data, bytes);
            cs_free((void *)p->t[i].data);
        }
    free(p->t);
    free(p);
}

int cs_lora_extra_bytes(const cs_lora_list *list, uint64_t *bytes)
{
    static const char *const pairs[][2] = {
        {".lora_down.weight", ".lora_up.weight"}, {".lora_A.weight", ".lora_B.weight"},
        {".lora.down.weight", ".lora.up.weight"}};
    *bytes = 0;
    for (int i = 0; list && i < list->n; i++) {
        cs_st_file *lf;
        int rc = cs_st_open(list->v[i].path, &lf);
        if (rc) return rc;
        for (int j = 0; j < cs_st_count(lf); j++) {
            const cs_tensor *t = cs_st_at(lf, j);
            if (ends_with(t->name, ".diff") || ends_with(t->name, ".diff_b")) {
                *bytes += (uint64_t)cs_tensor_numel(t) * 4;
                continue;
            }
            for (size_t q = 0; q < sizeof pairs / sizeof *pairs; q++) {
                size_t l = strlen(t->name), sl = strlen(pairs[q][0]);
                if (!ends_with(t->name, pairs[q][0]) || t->ndim < 1 || t->shape[0] < 1 || l - sl + 20 > 600) continue;
                char up[640];
                snprintf(up, sizeof up, "%.*s%s", (int)(l - sl), t->name, pairs[q][1]);
                const cs_tensor *u = cs_st_find(lf, up);
                if (u && u->ndim >= 1)
                    *bytes += (uint64_t)u->shape[0] * (uint64_t)(cs_tensor_numel(t) / t->shape[0]) * 4;
            }
        }
        cs_st_close(lf);
    }
    return 0;
}
