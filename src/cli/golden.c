#include "golden.h"

#include "cli.h"
#include "error.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WEIGHTS 8
#define MAX_RESULTS 512

struct gcase {
    char path[4096];
    cs_st_file *io;
    json_t *config, *tolerances, *checked;
    double rtol, atol;   /* file-level limits for checked outputs */
    struct { char role[64]; cs_st_file *f; } w[MAX_WEIGHTS];
    int nw;
    struct { char name[128]; int pass; } res[MAX_RESULTS];
    int nres;
};

static const golden_handler *const tables[] = {
    golden_ops_handlers,
    golden_nets_handlers,
    golden_rng_handlers,
    golden_sampling_handlers,
    golden_clip_handlers,
    golden_image_handlers,
};

const char *golden_path(const gcase *c) { return c->path; }
cs_st_file *golden_io(const gcase *c) { return c->io; }
const char *golden_meta(const gcase *c, const char *key) { return cs_st_meta(c->io, key); }
json_t *golden_config(const gcase *c) { return c->config; }

int golden_cfg_int(const gcase *c, const char *key, int def)
{
    json_t *v = c->config ? json_object_get(c->config, key) : NULL;
    if (json_is_integer(v)) return (int)json_integer_value(v);
    if (json_is_real(v)) return (int)json_real_value(v);
    if (json_is_boolean(v)) return json_is_true(v);
    return def;
}

double golden_cfg_num(const gcase *c, const char *key, double def)
{
    json_t *v = c->config ? json_object_get(c->config, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : def;
}

const cs_tensor *golden_tensor(const gcase *c, const char *name) { return cs_st_find(c->io, name); }

const cs_tensor *golden_param(const gcase *c, const char *key)
{
    char buf[512];
    snprintf(buf, sizeof buf, "w.%s", key);
    return cs_st_find(c->io, buf);
}

float *golden_f32(const gcase *c, const char *name, const cs_tensor **tp)
{
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t) {
        cs_error(CS_EFORMAT, "%s: missing input tensor '%s'", c->path, name);
        return NULL;
    }
    if (tp) *tp = t;
    return cs_tensor_f32_dup(t);
}

float *golden_nhwc(const gcase *c, const char *name, size_t *N, size_t *C, size_t *H, size_t *W)
{
    const cs_tensor *t;
    float *x = golden_f32(c, name, &t);
    if (!x) return NULL;
    if (t->ndim != 4) {
        cs_free(x);
        cs_error(CS_EFORMAT, "%s: %s: expected an NCHW tensor", c->path, name);
        return NULL;
    }
    *N = (size_t)t->shape[0], *C = (size_t)t->shape[1], *H = (size_t)t->shape[2], *W = (size_t)t->shape[3];
    float *y = cs_alloc(*N * *C * *H * *W * sizeof(float));
    if (y) cs_nchw_to_nhwc(x, y, *N, *C, *H * *W);
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
    if (!json_is_string(f)) {
        json_decref(root);
        return cs_error(CS_EFORMAT, "%s: metadata names no '%s' weights file", c->path, role);
    }
    if (c->nw == MAX_WEIGHTS) {
        json_decref(root);
        return cs_error(CS_EARG, "%s: too many weights files", c->path);
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

static int is_checked(const gcase *c, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(c->checked, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), name)) return 1;
    return 0;
}

int golden_has_output(const gcase *c, const char *name)
{
    return is_checked(c, name) || (c->tolerances && json_object_get(c->tolerances, name));
}

int golden_check(gcase *c, const char *name, const float *y, size_t n)
{
    const cs_tensor *t;
    float *ref = golden_f32(c, name, &t);
    if (!ref) return CS_EFORMAT;
    if ((size_t)cs_tensor_numel(t) != n) {
        cs_free(ref);
        return cs_error(CS_EFORMAT, "%s: %s: computed %zu values, reference has %lld", c->path, name, n,
                        (long long)cs_tensor_numel(t));
    }
    double d2 = 0, r2 = 0, mx = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)ref[i];
        if (isnan(d)) nan = 1;
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    cs_free(ref);
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    double rt = c->rtol, at = c->atol;
    json_t *tol = c->tolerances ? json_object_get(c->tolerances, name) : NULL;
    if (tol) {
        rt = json_number_value(json_object_get(tol, "rtol_l2"));
        at = json_number_value(json_object_get(tol, "atol_max"));
    }
    int checked = is_checked(c, name), pass = !nan && rel <= rt && mx <= at;
    printf("%s rel_l2=%.3g max_abs=%.3g tol=%.3g/%.3g%s%s\n", name, rel, mx, rt, at,
           pass ? "" : " EXCEEDED", checked ? "" : " (not checked)");
    if (c->nres < MAX_RESULTS) {
        snprintf(c->res[c->nres].name, sizeof c->res[c->nres].name, "%s", name);
        c->res[c->nres++].pass = pass;
    }
    return 0;
}

int golden_check_nhwc(gcase *c, const char *name, const float *y)
{
    const cs_tensor *t = cs_st_find(c->io, name);
    if (!t || t->ndim != 4) return cs_error(CS_EFORMAT, "%s: %s: no NCHW reference tensor", c->path, name);
    size_t N = (size_t)t->shape[0], C = (size_t)t->shape[1], HW = (size_t)(t->shape[2] * t->shape[3]);
    float *z = cs_alloc(N * C * HW * sizeof(float));
    if (!z) return cs_error(CS_ENOMEM, "out of memory");
    cs_nhwc_to_nchw(y, z, N, C, HW);
    int rc = golden_check(c, name, z, N * C * HW);
    cs_free(z);
    return rc;
}

static json_t *meta_json(const gcase *c, const char *key)
{
    const char *s = cs_st_meta(c->io, key);
    return s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
}

static int run_case(const char *arg)
{
    gcase *c = calloc(1, sizeof *c);
    if (!c) return 1;
    snprintf(c->path, sizeof c->path, "%s", arg);
    size_t l = strlen(c->path);
    const char *suf = ".io.safetensors";
    if (l > strlen(suf) && !strcmp(c->path + l - strlen(suf), suf)) c->path[l - strlen(suf)] = 0;
    char file[4096 + 32];
    snprintf(file, sizeof file, "%s%s", c->path, suf);
    int ok = 0, rc = cs_st_open(file, &c->io);
    if (rc) {
        fprintf(stderr, "cascade dev golden: %s\n", cs_last_error());
        goto out;
    }
    const char *module = cs_st_meta(c->io, "module");
    if (!module) {
        fprintf(stderr, "cascade dev golden: %s: no __metadata__ module\n", file);
        goto out;
    }
    c->config = meta_json(c, "config");
    c->tolerances = meta_json(c, "tolerances");
    c->checked = meta_json(c, "checked_outputs");
    const char *rt = cs_st_meta(c->io, "rtol_l2"), *at = cs_st_meta(c->io, "atol_max");
    if (!json_is_array(c->checked) || !rt || !at) {
        fprintf(stderr, "cascade dev golden: %s: metadata lacks checked_outputs / rtol_l2 / atol_max\n", file);
        goto out;
    }
    c->rtol = atof(rt);
    c->atol = atof(at);
    const golden_handler *h = NULL;
    for (size_t t = 0; t < sizeof tables / sizeof *tables && !h; t++)
        for (const golden_handler *e = tables[t]; e->module && !h; e++)
            if (!strcmp(e->module, module)) h = e;
    if (!h) {
        fprintf(stderr, "cascade dev golden: %s: no handler for module '%s'\n", file, module);
        goto out;
    }
    if ((rc = h->run(c))) {
        fprintf(stderr, "cascade dev golden: %s\n", cs_last_error());
        goto out;
    }
    ok = 1;
    size_t i;
    json_t *v;
    json_array_foreach(c->checked, i, v) {
        const char *name = json_string_value(v);
        int found = 0;
        for (int r = 0; r < c->nres; r++)
            if (!strcmp(c->res[r].name, name)) {
                found = 1;
                ok &= c->res[r].pass;
            }
        if (!found) {
            printf("%s not computed\n", name);
            ok = 0;
        }
    }
out:
    printf("%s\n", ok ? "PASS" : "FAIL");
    for (int i2 = 0; i2 < c->nw; i2++) cs_st_close(c->w[i2].f);
    json_decref(c->config);
    json_decref(c->tolerances);
    json_decref(c->checked);
    cs_st_close(c->io);
    free(c);
    return ok ? 0 : 1;
}

int cmd_golden(int argc, char **argv)
{
    int threads = 0, first = 1;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cascade dev golden [--threads N] PATH/CASE...\n\n"
               "Runs golden cases (CASE.io.safetensors, weights found through its metadata) and\n"
               "prints one line per compared output and PASS or FAIL. Exit 0 iff all pass.\n");
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "--threads")) {
        if (cli_parse_threads("cascade dev golden", "--threads", argv[2], &threads)) return 2;
        first = 3;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: cascade dev golden [--threads N] PATH/CASE...\n");
        return 2;
    }
    int irc = cli_init(threads);
    if (irc) return irc;
    int fails = 0;
    for (int i = first; i < argc; i++) {
        if (argc - first > 1) printf("== %s\n", argv[i]);
        fails += run_case(argv[i]) != 0;
    }
    return fails ? 1 : 0;
}

int cmd_dev(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "golden")) return cmd_golden(argc - 1, argv + 1);
    fprintf(stderr, "usage: cascade dev golden PATH/CASE...\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}
