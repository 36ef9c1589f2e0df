#include "weights.h"

#include "error.h"
#include "lora.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const char *s = a; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    for (const char *s = b; s && *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

const char *cs_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cs_wmap_init(cs_wmap *m, cs_st_file *f, const char *prefix)
{
    memset(m, 0, sizeof *m);
    m->f = f;
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix ? prefix : "");
    m->plen = strlen(m->prefix);
    m->n = cs_st_count(f);
    uint32_t ns = 16;
    while (ns < 2u * (uint32_t)m->n) ns <<= 1;
    m->nslot = ns;
    m->slot = calloc(ns, sizeof *m->slot);
    m->used = calloc((size_t)m->n + 1, 1);
    if (!m->slot || !m->used) {
        cs_wmap_free(m);
        return cs_error(CS_ENOMEM, "%s: out of memory", cs_st_path(f));
    }
    for (int i = 0; i < m->n; i++) {
        uint32_t h = fnv1a(cs_st_at(f, i)->name, NULL) & (ns - 1);
        while (m->slot[h]) h = (h + 1) & (ns - 1);
        m->slot[h] = (uint32_t)i + 1;
    }
    return 0;
}

void cs_wmap_free(cs_wmap *m)
{
    free(m->slot);
    free(m->used);
    m->slot = NULL;
    m->used = NULL;
}

/* index of prefix+name, -1 if absent */
static int lookup(const cs_wmap *m, const char *prefix, const char *name)
{
    size_t pl = strlen(prefix);
    uint32_t h = fnv1a(prefix, name) & (m->nslot - 1);
    while (m->slot[h]) {
        int i = (int)m->slot[h] - 1;
        const char *nm = cs_st_at(m->f, i)->name;
        if (!strncmp(nm, prefix, pl) && !strcmp(nm + pl, name)) return i;
        h = (h + 1) & (m->nslot - 1);
    }
    return -1;
}

static const char *const cand[] = {"", "model.diffusion_model.", "diffusion_model.", "model."};

const char *cs_wmap_prefix(const cs_wmap *m)
{
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++)
        if (!strcmp(m->prefix, cand[i])) return cand[i];
    return "(other)";
}

int cs_wmap_detect_prefix(cs_wmap *m, const char *probe)
{
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++)
        if (lookup(m, cand[i], probe) >= 0) {
            snprintf(m->prefix, sizeof m->prefix, "%s", cand[i]);
            m->plen = strlen(m->prefix);
            return 1;
        }
    return 0;
}

void cs_wmap_overlay(cs_wmap *m, const struct cs_lora_patch *p) { m->over = p; }

/* tensor i, or its merged replacement */
static const cs_tensor *at(const cs_wmap *m, int i)
{
    const cs_tensor *t = m->over ? cs_lora_patch_at(m->over, i) : NULL;
    return t ? t : cs_st_at(m->f, i);
}

const cs_tensor *cs_wmap_peek(const cs_wmap *m, const char *name)
{
    int i = lookup(m, m->prefix, name);
    return i < 0 ? NULL : at(m, i);
}

const cs_tensor *cs_wmap_find(cs_wmap *m, const char *name)
{
    int i = lookup(m, m->prefix, name);
    if (i < 0) return NULL;
    const cs_tensor *t = at(m, i);
    if (!m->used[i]) {
        m->used[i] = 1;
        m->nparams += cs_tensor_numel(t);
        int dt = cs_st_at(m->f, i)->dtype;   /* the file's, merged or not */
        if (dt == CS_F32) m->ndtype[0]++;
        else if (dt == CS_BF16) m->ndtype[1]++;
        else if (dt == CS_F16) m->ndtype[2]++;
    }
    return t;
}

static void vproblem(cs_wmap *m, const char *fmt, va_list ap)
{
    if (m->nprob++ >= 4) return;   /* the message keeps the first four */
    size_t l = strlen(m->msg);
    if (l && l + 2 < sizeof m->msg) {
        memcpy(m->msg + l, "; ", 3);
        l += 2;
    }
    if (l + 1 < sizeof m->msg) vsnprintf(m->msg + l, sizeof m->msg - l, fmt, ap);
}

void cs_wmap_problem(cs_wmap *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(m, fmt, ap);
    va_end(ap);
}

static void dims_str(char *buf, size_t len, int ndim, const int64_t *d)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++) o += (size_t)snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)d[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

int cs_wmap_check(cs_wmap *m, cs_tensor *out, const cs_tensor *t, const char *name, int ndim, const int64_t *dims)
{
    memset(out, 0, sizeof *out);
    if (!t) {
        cs_wmap_problem(m, "missing %s%s", m->prefix, name);
        return -1;
    }
    if (t->dtype != CS_F32 && t->dtype != CS_BF16 && t->dtype != CS_F16) {
        cs_wmap_problem(m, "%s: dtype %s is not F32/BF16/F16", t->name, cs_dtype_name(t->dtype));
        return -1;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == dims[i];
    if (!ok) {
        char a[96], b[96];
        dims_str(a, sizeof a, t->ndim, t->shape);
        dims_str(b, sizeof b, ndim, dims);
        cs_wmap_problem(m, "%s: shape %s, expected %s", t->name, a, b);
        return -1;
    }
    *out = *t;
    return 0;
}

int cs_wmap_req(cs_wmap *m, cs_tensor *out, const char *name, int ndim, const int64_t *dims)
{
    return cs_wmap_check(m, out, cs_wmap_find(m, name), name, ndim, dims);
}

int cs_wmap_finish(cs_wmap *m, const char *what)
{
    for (int i = 0; i < m->n; i++) {
        const cs_tensor *t = cs_st_at(m->f, i);
        if (m->used[i] || strncmp(t->name, m->prefix, m->plen)) continue;
        cs_wmap_problem(m, "unexpected %s", t->name);
    }
    if (!m->nprob) return 0;
    if (m->nprob > 4)
        return cs_error(CS_EMODEL, "%s: not a %s checkpoint: %s (+%d more problems)", cs_basename(cs_st_path(m->f)),
                        what, m->msg, m->nprob - 4);
    return cs_error(CS_EMODEL, "%s: not a %s checkpoint: %s", cs_basename(cs_st_path(m->f)), what, m->msg);
}

int cs_wmap_dtype(const cs_wmap *m)
{
    if (m->ndtype[1] >= m->ndtype[0] && m->ndtype[1] >= m->ndtype[2] && m->ndtype[1]) return CS_BF16;
    if (m->ndtype[2] > m->ndtype[0]) return CS_F16;
    return CS_F32;
}
