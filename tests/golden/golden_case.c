/* A golden case: opening and validating the untrusted io file, the accessors
 * and config getters handlers use, and the comparison of each output. */
#include "golden.h"

#include "backend.h"

#include "error.h"
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int golden_precision;   /* CS_PREC_FP32 unless cmd_golden sets it */

#define MAX_WEIGHTS 8
#define MAX_RESULTS 1024
#define MAX_REQUIRED 256

struct gcase {
    char path[4096];     /* without the suffix */
    char file[4096 + 32];
    int strict;
    cs_st_file *io;
    const char *module;
    json_t *config, *tolerances, *checked, *fp64;
    double rtol, atol;   /* file-level limits for checked outputs */
    struct { char role[64]; cs_st_file *f; } w[MAX_WEIGHTS];
    int nw;
    struct { char name[128]; int pass; } res[MAX_RESULTS];
    int nres;
    char req[MAX_REQUIRED][128];
    int nreq;
    int cfg_rc;          /* first config error, message in cfg_msg */
    char cfg_msg[4096 + 640];
    int lora_read;       /* the handler asked for the "lora" list */
};

static const golden_handler *const tables[] = {
    golden_ops_handlers,
    golden_nets_handlers,
    golden_rng_handlers,
    golden_sampling_handlers,
    golden_clip_handlers,
    golden_image_handlers,
    golden_vision_handlers,
    golden_train_handlers,
};

const char *golden_path(const gcase *c) { return c->path; }
const char *golden_file(const gcase *c) { return c->file; }
cs_st_file *golden_io(const gcase *c) { return c->io; }
const char *golden_meta(const gcase *c, const char *key) { return cs_st_meta(c->io, key); }
json_t *golden_config(const gcase *c) { return c->config; }

/* ---- validation ---------------------------------------------------------- */

/* A metadata number: the whole string is one finite, non-negative number. */
static int meta_limit(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end || errno || !isfinite(v) || v < 0) return -1;
    *out = v;
    return 0;
}

static int json_limit(json_t *o, const char *key, int need)
{
    json_t *v = json_object_get(o, key);
    if (!v) return need ? -1 : 0;
    return json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0 ? 0 : -1;
}

static json_t *meta_json(const gcase *c, const char *key, int *bad)
{
    const char *s = cs_st_meta(c->io, key);
    json_t *j = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
    if (s && !j) *bad = 1;
    return j;
}

/* A file beside the io file, nothing else. */
static int plain_name(const char *s)
{
    return s && *s && !strchr(s, '/') && s[0] != '.' && strlen(s) <= 255;
}

/* The io file's own consistency; one error line naming the problem. */
static int validate(gcase *c)
{
    const char *f = c->file;
    for (int i = 0; i < cs_st_count(c->io); i++) {
        const cs_tensor *t = cs_st_at(c->io, i);
        if (t->dtype != CS_F32 && t->dtype != CS_BF16 && t->dtype != CS_F16 && t->dtype != CS_I64 &&
            t->dtype != CS_I32 && t->dtype != CS_U8)
            return cs_error(CS_EFORMAT, "%s: tensor %s: dtype %s (golden cases use F32, BF16, F16, I64, I32, U8)", f,
                            t->name, cs_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++)
            if (t->shape[k] < 1 || t->shape[k] > GOLDEN_MAX_DIM)
                return cs_error(CS_EFORMAT, "%s: tensor %s: dimension %d is %lld (allowed 1..%d)", f, t->name, k,
                                (long long)t->shape[k], GOLDEN_MAX_DIM);
    }
    if (!(c->module = cs_st_meta(c->io, "module")))
        return cs_error(CS_EFORMAT, "%s: no __metadata__ module", f);
    int bad = 0;
    c->config = meta_json(c, "config", &bad);
    if (bad || (c->config && !json_is_object(c->config)))
        return cs_error(CS_EFORMAT, "%s: metadata config is not a JSON object", f);
    if (meta_limit(cs_st_meta(c->io, "rtol_l2"), &c->rtol) || meta_limit(cs_st_meta(c->io, "atol_max"), &c->atol))
        return cs_error(CS_EFORMAT, "%s: metadata rtol_l2 / atol_max missing or not a non-negative number", f);
    c->checked = meta_json(c, "checked_outputs", &bad);
    if (!json_is_array(c->checked))
        return cs_error(CS_EFORMAT, "%s: metadata checked_outputs missing or not a JSON list", f);
    if (!json_array_size(c->checked))
        return cs_error(CS_EFORMAT, "%s: checked_outputs is empty: the case would compare nothing", f);
    size_t i;
    json_t *v;
    json_array_foreach(c->checked, i, v) {
        if (!json_is_string(v)) return cs_error(CS_EFORMAT, "%s: checked_outputs[%zu] is not a string", f, i);
        if (!cs_st_find(c->io, json_string_value(v)))
            return cs_error(CS_EFORMAT, "%s: checked output %s is not a tensor of the file", f, json_string_value(v));
        if (strlen(json_string_value(v)) >= sizeof c->res[0].name)
            return cs_error(CS_EFORMAT, "%s: checked_outputs[%zu]: name too long", f, i);
    }
    c->tolerances = meta_json(c, "tolerances", &bad);
    if (bad || (c->tolerances && !json_is_object(c->tolerances)))
        return cs_error(CS_EFORMAT, "%s: metadata tolerances is not a JSON object", f);
    const char *k;
    json_object_foreach(c->tolerances, k, v) {
        int both = json_object_get(v, "rtol_l2") && json_object_get(v, "atol_max");
        int none = !json_object_get(v, "rtol_l2") && !json_object_get(v, "atol_max");
        if (!json_is_object(v) || !(both || none) || json_limit(v, "rtol_l2", 0) || json_limit(v, "atol_max", 0) ||
            json_limit(v, "mismatch_frac", 0))
            return cs_error(CS_EFORMAT, "%s: tolerances[%s]: need non-negative rtol_l2 and atol_max", f, k);
    }
    c->fp64 = meta_json(c, "fp32_vs_fp64", &bad);
    if (bad || (c->fp64 && !json_is_object(c->fp64)))
        return cs_error(CS_EFORMAT, "%s: metadata fp32_vs_fp64 is not a JSON object", f);
    json_object_foreach(c->fp64, k, v)
        if (!json_is_object(v) || json_limit(v, "rel_l2", 0) || json_limit(v, "max_abs", 0) ||
            json_limit(v, "ref_max", 0))
            return cs_error(CS_EFORMAT, "%s: fp32_vs_fp64[%s]: rel_l2 / max_abs / ref_max are not non-negative numbers",
                            f, k);
    bad = 0;
    json_t *w = meta_json(c, "weights", &bad);
    int wrc = 0;
    if (bad && plain_name(cs_st_meta(c->io, "weights"))) bad = 0;   /* one file, named as it is */
    else if (bad || (w && !json_is_object(w)))
        wrc = cs_error(CS_EFORMAT, "%s: metadata weights is not a JSON object or a file name", f);
    json_object_foreach(w, k, v) {
        const char *s = json_string_value(v);
        /* a file beside the io file, nothing else */
        if (!wrc && (!plain_name(s) || strlen(k) >= sizeof c->w[0].role))
            wrc = cs_error(CS_EFORMAT, "%s: weights[%s] is not a plain file name", f, k);
    }
    json_decref(w);
    return wrc;
}

int golden_case_open(const char *arg, int strict, gcase **out)
{
    *out = NULL;
    gcase *c = calloc(1, sizeof *c);
    if (!c) return cs_error(CS_ENOMEM, "out of memory");
    const char *suf = ".io.safetensors";
    size_t l = strlen(arg), ls = strlen(suf);
    if (l >= sizeof c->path) {
        free(c);
        return cs_error(CS_EARG, "%.64s...: path too long", arg);
    }
    memcpy(c->path, arg, l + 1);
    if (l > ls && !strcmp(c->path + l - ls, suf)) c->path[l - ls] = 0;
    snprintf(c->file, sizeof c->file, "%s%s", c->path, suf);
    c->strict = strict;
    int rc = cs_st_open(c->file, &c->io);
    if (!rc) rc = validate(c);
    if (rc) {
        golden_case_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void golden_case_close(gcase *c)
{
    if (!c) return;
    for (int i = 0; i < c->nw; i++) cs_st_close(c->w[i].f);
    json_decref(c->config);
    json_decref(c->tolerances);
    json_decref(c->checked);
    json_decref(c->fp64);
    cs_st_close(c->io);
    free(c);
}

/* ---- config getters ------------------------------------------------------ */

int golden_cfg_bad(gcase *c, const char *key, const char *why)
{
    if (!c->cfg_rc) {
        c->cfg_rc = CS_EFORMAT;
        snprintf(c->cfg_msg, sizeof c->cfg_msg, "%s: config %s %s", c->file, key, why);
    }
    return cs_error(CS_EFORMAT, "%s", c->cfg_msg);
}

int golden_cfg_error(const gcase *c)
{
    if (c->cfg_rc) cs_error(c->cfg_rc, "%s", c->cfg_msg);
    return c->cfg_rc;
}

int golden_cfg_int(gcase *c, const char *key, int def, int lo, int hi)
{
    json_t *v = c->config ? json_object_get(c->config, key) : NULL;
    if (!v || json_is_null(v)) return def;
    json_int_t n;
    if (json_is_integer(v)) n = json_integer_value(v);
    else if (json_is_boolean(v)) n = json_is_true(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e9)
        n = (json_int_t)json_real_value(v);
    else return golden_cfg_bad(c, key, "is not an integer"), def;
    if (n < lo || n > hi) {
        char why[96];
        snprintf(why, sizeof why, "= %lld is outside %d..%d", (long long)n, lo, hi);
        golden_cfg_bad(c, key, why);
        return def;
    }
    return (int)n;
}

double golden_cfg_num(gcase *c, const char *key, double def, double lo, double hi)
{
    json_t *v = c->config ? json_object_get(c->config, key) : NULL;
    if (!v || json_is_null(v)) return def;
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= lo && x <= hi)) {   /* also catches NaN */
        char why[96];
        snprintf(why, sizeof why, "is not a number in %g..%g", lo, hi);
        golden_cfg_bad(c, key, why);
        return def;
    }
    return x;
}

/* ---- tensors -------------------------------------------------------------- */

const cs_tensor *golden_tensor(const gcase *c, const char *name) { return cs_st_find(c->io, name); }

const cs_tensor *golden_param(const gcase *c, const char *key)
{
    char buf[512];
    snprintf(buf, sizeof buf, "w.%s", key);
    return cs_st_find(c->io, buf);
}

int golden_shape_is(const cs_tensor *t, int n, const size_t *dims)
{
    if (!t || t->ndim != n) return 0;
    for (int i = 0; i < n; i++)
        if ((size_t)t->shape[i] != dims[i]) return 0;
    return 1;
}

float *golden_f32(const gcase *c, const char *name, const cs_tensor **tp)
{
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t) {
        cs_error(CS_EFORMAT, "%s: missing input tensor '%s'", c->file, name);
        return NULL;
    }
    if (tp) *tp = t;
    return cs_tensor_f32_dup(t);
}

float *golden_nhwc(const gcase *c, const char *name, size_t *N, size_t *C, size_t *H, size_t *W)
{
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t) {
        cs_error(CS_EFORMAT, "%s: missing input tensor '%s'", c->file, name);
        return NULL;
    }
    if (t->ndim != 4) {
        cs_error(CS_EFORMAT, "%s: %s: expected an NCHW tensor, it has %d dimensions", c->file, name, t->ndim);
        return NULL;
    }
    float *x = cs_tensor_f32_dup(t);
    if (!x) return NULL;
    *N = (size_t)t->shape[0], *C = (size_t)t->shape[1], *H = (size_t)t->shape[2], *W = (size_t)t->shape[3];
    float *y = cs_alloc(*N * *C * *H * *W * sizeof(float));
    if (y) cs_nchw_to_nhwc(x, y, *N, *C, *H * *W);
    else cs_error(CS_ENOMEM, "%s: out of memory", name);
    cs_free(x);
    return y;
}

int golden_weights(gcase *c, const char *role, cs_st_file **out)
{
    for (int i = 0; i < c->nw; i++)
        if (!strcmp(c->w[i].role, role)) return *out = c->w[i].f, 0;
    const char *wj = cs_st_meta(c->io, "weights");
    json_t *root = wj ? json_loads(wj, 0, NULL) : NULL;
    json_t *f = root ? json_object_get(root, role) : NULL;
    if (!root && plain_name(wj)) f = root = json_string(wj);   /* a bare file name serves every role */
    if (!json_is_string(f)) {   /* names were validated when the case was opened */
        json_decref(root);
        return cs_error(CS_EFORMAT, "%s: metadata names no '%s' weights file", c->file, role);
    }
    if (c->nw == MAX_WEIGHTS || strlen(role) >= sizeof c->w[0].role) {
        json_decref(root);
        return cs_error(CS_EFORMAT, "%s: too many weights files", c->file);
    }
    char full[4096 + 256];
    const char *slash = strrchr(c->path, '/');
    int dl = slash ? (int)(slash - c->path) + 1 : 0;
    snprintf(full, sizeof full, "%.*s%s", dl, c->path, json_string_value(f));
    json_decref(root);
    int rc = cs_st_open(full, out);
    if (rc) return rc;
    snprintf(c->w[c->nw].role, sizeof c->w[c->nw].role, "%s", role);
    c->w[c->nw++].f = *out;
    return 0;
}

#define GOLDEN_MAX_LORA 32

int golden_lora(gcase *c, cs_lora_list *out)
{
    memset(out, 0, sizeof *out);
    c->lora_read = 1;
    const char *js = cs_st_meta(c->io, "lora");
    if (!js) return 0;
    json_t *root = json_loads(js, 0, NULL);
    size_t n = json_is_array(root) ? json_array_size(root) : 0;
    int rc = 0;
    if (!json_is_array(root) || n > GOLDEN_MAX_LORA)
        rc = cs_error(CS_EFORMAT, "%s: metadata lora is not a JSON list of at most %d {file, strength}", c->file,
                      GOLDEN_MAX_LORA);
    if (!rc && n && !(out->v = calloc(n, sizeof *out->v))) rc = cs_error(CS_ENOMEM, "out of memory");
    const char *slash = strrchr(c->path, '/');
    int dl = slash ? (int)(slash - c->path) + 1 : 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *e = json_array_get(root, i), *fj = json_object_get(e, "file"), *sj = json_object_get(e, "strength");
        const char *f = json_string_value(fj);
        double st = sj ? json_number_value(sj) : 1.0;
        /* a file beside the io file, as for weights */
        if (!f || !*f || strchr(f, '/') || f[0] == '.' || strlen(f) > 255)
            rc = cs_error(CS_EFORMAT, "%s: lora[%zu].file is not a plain file name", c->file, i);
        else if ((sj && !json_is_number(sj)) || !isfinite(st) || fabs(st) > 1e6)
            rc = cs_error(CS_EFORMAT, "%s: lora[%zu].strength is not a number in [-1e6, 1e6]", c->file, i);
        char *full = rc ? NULL : malloc((size_t)dl + strlen(f) + 1);
        if (!rc && !full) rc = cs_error(CS_ENOMEM, "out of memory");
        if (rc) break;
        sprintf(full, "%.*s%s", dl, c->path, f);
        out->v[out->n].path = full;
        out->v[out->n++].strength = (float)st;
    }
    json_decref(root);
    if (rc) golden_lora_free(out);
    return rc;
}

void golden_lora_free(cs_lora_list *l)
{
    for (int i = 0; i < l->n; i++) free((char *)l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- comparison ----------------------------------------------------------- */

static int is_checked(const gcase *c, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(c->checked, i, v) if (!strcmp(json_string_value(v), name)) return 1;
    return 0;
}

static int is_required(const gcase *c, const char *name)
{
    for (int i = 0; i < c->nreq; i++)
        if (!strcmp(c->req[i], name)) return 1;
    return 0;
}

int golden_has_output(const gcase *c, const char *name)
{
    return is_checked(c, name) || (c->tolerances && json_object_get(c->tolerances, name));
}

void golden_require(gcase *c, const char *name)
{
    if (!is_required(c, name) && c->nreq < MAX_REQUIRED && strlen(name) < sizeof c->req[0])
        snprintf(c->req[c->nreq++], sizeof c->req[0], "%s", name);
}

static void shape_str(char *buf, size_t sz, int n, const size_t *d)
{
    size_t o = (size_t)snprintf(buf, sz, "[");
    for (int i = 0; i < n && o < sz; i++) o += (size_t)snprintf(buf + o, sz - o, "%s%zu", i ? "," : "", d[i]);
    if (o < sz) snprintf(buf + o, sz - o, "]");
}

int golden_check(gcase *c, const char *name, const float *y, int ndim, const size_t *dims)
{
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t) return cs_error(CS_EFORMAT, "%s: missing reference tensor '%s'", c->file, name);
    if (!golden_shape_is(t, ndim, dims)) {
        char want[160], have[160];
        size_t td[CS_MAX_DIMS];
        for (int i = 0; i < t->ndim; i++) td[i] = (size_t)t->shape[i];
        shape_str(want, sizeof want, ndim, dims);
        shape_str(have, sizeof have, t->ndim, td);
        return cs_error(CS_EFORMAT, "%s: %s: computed shape %s, reference has %s", c->file, name, want, have);
    }
    size_t n = (size_t)cs_tensor_numel(t);
    float *ref = cs_tensor_f32_dup(t);
    if (!ref) return CS_ENOMEM;
    double d2 = 0, r2 = 0, mx = 0, rmax = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)ref[i];
        if (isnan(d)) nan = 1;
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(d) > mx) mx = fabs(d);
        if (fabs((double)ref[i]) > rmax) rmax = fabs((double)ref[i]);
    }
    cs_free(ref);
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    int checked = is_checked(c, name), gated = checked || is_required(c, name);
    /* file-level limits apply to checked outputs; where a per-output limit
     * exists too, the stricter of the two wins */
    double rt = checked ? c->rtol : INFINITY, at = checked ? c->atol : INFINITY;
    json_t *tol = c->tolerances ? json_object_get(c->tolerances, name) : NULL;
    if (tol && json_object_get(tol, "rtol_l2")) {
        rt = fmin(rt, json_number_value(json_object_get(tol, "rtol_l2")));
        at = fmin(at, json_number_value(json_object_get(tol, "atol_max")));
    }
    if (!isfinite(rt)) rt = c->rtol, at = c->atol;   /* no limit of its own: the file's */
    const char *mode = "";
    if (c->strict) {
        json_t *e = c->fp64 ? json_object_get(c->fp64, name) : NULL;
        if (e && json_object_get(e, "rel_l2") && json_object_get(e, "max_abs")) {
            /* independent fp32 rounding of the same size as the recorded
             * fp32-vs-fp64 error, plus a different summation order: a few
             * times that error, never a floor above 1e-6 of the reference */
            json_t *rm = json_object_get(e, "ref_max");
            double scale = json_is_number(rm) ? json_number_value(rm) : rmax;
            rt = fmin(rt, fmax(GOLDEN_STRICT_FACTOR * json_number_value(json_object_get(e, "rel_l2")),
                               GOLDEN_STRICT_FLOOR));
            at = fmin(at, fmax(GOLDEN_STRICT_FACTOR * json_number_value(json_object_get(e, "max_abs")),
                               GOLDEN_STRICT_FLOOR * scale));
            mode = " strict";
        } else {
            mode = " (strict: no fp32_vs_fp64 record, normal tolerance)";
        }
    }
    if (golden_precision != CS_PREC_FP32) {
        /* 16-bit products: the documented floor of that precision (README) */
        double f = golden_precision == CS_PREC_BF16 ? GOLDEN_BF16_RTOL : GOLDEN_FP16_RTOL;
        rt = fmax(rt, f);
        at = fmax(at, GOLDEN_REDUCED_ATOL_FACTOR * f * rmax);
        mode = golden_precision == CS_PREC_BF16 ? " bf16" : " fp16";
    }
    int pass = !nan && rel <= rt && mx <= at;
    printf("%s rel_l2=%.3g max_abs=%.3g tol=%.3g/%.3g%s%s%s\n", name, rel, mx, rt, at, mode,
           pass ? "" : " EXCEEDED", gated ? "" : " (not checked)");
    if (c->nres < MAX_RESULTS) {
        snprintf(c->res[c->nres].name, sizeof c->res[c->nres].name, "%s", name);
        c->res[c->nres++].pass = pass;
    } else if (gated) {
        return cs_error(CS_EFORMAT, "%s: more than %d compared outputs", c->file, MAX_RESULTS);
    }
    return 0;
}

int golden_check_nhwc(gcase *c, const char *name, const float *y, size_t N, size_t C, size_t H, size_t W)
{
    size_t d[4] = {N, C, H, W};
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t || !golden_shape_is(t, 4, d)) return golden_check(c, name, NULL, 4, d);   /* the error line */
    float *z = cs_alloc(N * C * H * W * sizeof(float));
    if (!z) return cs_error(CS_ENOMEM, "out of memory");
    cs_nhwc_to_nchw(y, z, N, C, H * W);
    int rc = golden_check(c, name, z, 4, d);
    cs_free(z);
    return rc;
}

/* ---- running -------------------------------------------------------------- */

int golden_case_run(gcase *c)
{
    const golden_handler *h = NULL;
    for (size_t t = 0; t < sizeof tables / sizeof *tables && !h; t++)
        for (const golden_handler *e = tables[t]; e->module && !h; e++)
            if (!strcmp(e->module, c->module)) h = e;
    if (!h) return cs_error(CS_EUNSUP, "%s: no handler for module '%s'", c->file, c->module);
    int rc = h->run(c);
    /* a bad config value fails the case even where the handler went on with
     * the default */
    if (c->cfg_rc) return golden_cfg_error(c);
    /* a LoRA the handler cannot apply would pass or fail for the wrong reason */
    if (!rc && cs_st_meta(c->io, "lora") && !c->lora_read)
        return cs_error(CS_EUNSUP, "%s: module '%s' does not take a lora list", c->file, c->module);
    return rc;
}

static int verdict_of(gcase *c, const char *name)
{
    int found = 0, ok = 1;
    for (int r = 0; r < c->nres; r++)
        if (!strcmp(c->res[r].name, name)) found = 1, ok &= c->res[r].pass;
    if (!found) printf("%s not computed\n", name);
    return found && ok;
}

int golden_case_verdict(gcase *c)
{
    int ok = 1, gating = 0;
    size_t i;
    json_t *v;
    json_array_foreach(c->checked, i, v) ok &= verdict_of(c, json_string_value(v)), gating++;
    for (int r = 0; r < c->nreq; r++)
        if (!is_checked(c, c->req[r])) ok &= verdict_of(c, c->req[r]), gating++;
    if (!gating) printf("no checked output compared\n");   /* nothing compared is no pass */
    return ok && gating;
}
