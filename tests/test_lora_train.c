/* LoRA training of Stage C (src/lora_train.c) against kohya's own code
 * (tests/data/lora_train/lora_adamw.io.safetensors, tests/ref/lora_train_ref.py):
 * the modules and their order, the seeded init of every lora_down, one
 * training step (loss, dL/dA, dL/dB, grad norm, A/B after AdamW) on the
 * golden tiny Stage C; then save -> load through src/lora.c gives the
 * training model's weights, the keys are those ComfyUI's key map accepted,
 * no file is left behind on errors; bad options are refused.
 * `--write FILE`: writes the LoRA after the step (for the ComfyUI check of
 * the reference script) and exits. Needs ../shared (skip 77, CI 99). */
#include "check.h"

#include "error.h"
#include "grad_blocks.h"
#include "lora.h"
#include "lora_train.h"
#include "stage_c.h"
#include "train_step.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MUST(x) \
    do { \
        if ((x)) { \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cs_last_error()); \
            exit(99); \
        } \
    } while (0)

static cs_st_file *D;   /* the reference file */
static json_t *TOL;

static float *get(const char *name, size_t *n)
{
    const cs_tensor *t = cs_st_find(D, name);
    if (!t) {
        fprintf(stderr, "reference: no %s\n", name);
        exit(99);
    }
    float *p = cs_tensor_f32_dup(t);
    if (!p) exit(99);
    if (n) *n = (size_t)cs_tensor_numel(t);
    return p;
}

/* the golden rule's limits of output name (tolerances metadata) */
static void compare(const char *name, const float *got, size_t n)
{
    size_t rn;
    float *ref = get(name, &rn);
    CHECK(rn == n, "%s: %zu values, reference %zu", name, n, rn);
    double d2 = 0, r2 = 0, mx = 0;
    for (size_t i = 0; i < n && i < rn; i++) {
        double d = (double)got[i] - ref[i];
        d2 += d * d, r2 += (double)ref[i] * ref[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    json_t *t = json_object_get(TOL, name);
    double rt = json_real_value(json_object_get(t, "rtol_l2")), at = json_real_value(json_object_get(t, "atol_max"));
    double rel = sqrt(d2 / (r2 > 0 ? r2 : 1e-300));
    CHECK(t && rel <= rt && mx <= at, "%s: rel_l2 %.3g (limit %.3g), max_abs %.3g (limit %.3g)", name, rel, rt, mx, at);
    cs_free(ref);
}

static void nchw_to_nhwc(const float *s, float *d, size_t B, size_t C, size_t HW)
{
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++)
            for (size_t p = 0; p < HW; p++) d[(b * HW + p) * C + c] = s[(b * C + c) * HW + p];
}

static void bad_options(cs_stage_c *m)
{
    struct {
        const char *what, *expect;
        int rc;
        void (*set)(cs_lora_train_cfg *);
    } cases[] = {
        {"rank 0", "network_dim 0", CS_EARG, NULL},
        {"alpha < 0", "network_alpha -1", CS_EARG, NULL},
        {"alpha NaN", "network_alpha nan", CS_EARG, NULL},
        {"module kind", "network_module 'lycoris.kohya'", CS_EUNSUP, NULL},
        {"dropout", "network_dropout 0.1", CS_EUNSUP, NULL},
        {"rank_dropout", "rank_dropout 0.25", CS_EUNSUP, NULL},
        {"module_dropout", "module_dropout 0.5", CS_EUNSUP, NULL},
        {"conv_dim < 0", "conv_dim -2", CS_EARG, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cs_lora_train_cfg c;
        cs_lora_train_cfg_default(&c);
        switch (i) {
        case 0: c.dim = 0; break;
        case 1: c.alpha = -1; break;
        case 2: c.alpha = NAN; break;
        case 3: c.network_module = "lycoris.kohya"; break;
        case 4: c.dropout = 0.1; break;
        case 5: c.rank_dropout = 0.25; break;
        case 6: c.module_dropout = 0.5; break;
        case 7: c.conv_dim = -2; break;
        }
        cs_lora_net *n = NULL;
        int rc = cs_lora_net_new(m, &c, &n);
        CHECK(rc == cases[i].rc && !n && strstr(cs_last_error(), cases[i].expect),
              "%s: rc %d (want %d), message '%s' (want it to name '%s')", cases[i].what, rc, cases[i].rc,
              cs_last_error(), cases[i].expect);
        cs_lora_net_free(n);
    }
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* save (dtype) -> cs_lora_merge of the file -> every wrapped tensor as the
 * training model has it; F32 bit for bit, the others within their rounding */
/* the training model's float32 copy of the file's tensor name */
static const float *model_weight(cs_stage_c *m, cs_st_file *wf, const char *name)
{
    for (int i = 0; i < cs_st_count(wf); i++)
        if (!strcmp(cs_st_at(wf, i)->name, name)) return cs_stage_c_train_weight(m, i)->data;
    return NULL;
}

static void save_load(cs_stage_c *m, cs_lora_net *net, cs_st_file *wf, cs_dtype dt, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/lora-%s.safetensors", dir, cs_dtype_name(dt));
    const char *meta[] = {"ss_output_name", "lora-test", "ss_network_dim", "overridden?"};
    MUST(cs_lora_net_save(net, path, dt, meta, 1));
    cs_st_file *lf;
    MUST(cs_st_open(path, &lf));
    CHECK(cs_st_count(lf) == 3 * cs_lora_net_count(net), "%s: %d tensors", path, cs_st_count(lf));
    char dim[16];
    cs_lora_module mo;
    MUST(cs_lora_net_module(net, 0, &mo));
    snprintf(dim, sizeof dim, "%d", mo.rank);
    const char *md = cs_st_meta(lf, "ss_network_dim"), *ma = cs_st_meta(lf, "ss_network_alpha"),
               *mm = cs_st_meta(lf, "ss_network_module"), *mn = cs_st_meta(lf, "ss_output_name");
    CHECK(md && !strcmp(md, dim) && ma && !strcmp(ma, "1.0") && mm && !strcmp(mm, "networks.lora") && mn &&
              !strcmp(mn, "lora-test"),
          "%s metadata: dim %s alpha %s module %s output_name %s", path, md, ma, mm, mn);
    /* the keys ComfyUI's key map accepted (tests/ref/lora_train_ref.py --check-lora) */
    const char *ck = cs_st_meta(D, "comfy_keys");
    json_t *keys = ck ? json_loads(ck, 0, NULL) : NULL;
    if (!keys && check_under_ci()) CHECK(0, "reference: no comfy_keys");
    if (keys) {
        CHECK(json_array_size(keys) == (size_t)cs_st_count(lf), "%s: %d keys, ComfyUI checked %zu", path,
              cs_st_count(lf), json_array_size(keys));
        for (size_t i = 0; i < json_array_size(keys); i++) {
            const char *k = json_string_value(json_array_get(keys, i));
            CHECK(k && cs_st_find(lf, k), "%s: no key %s (ComfyUI's check had it)", path, k ? k : "?");
        }
        json_decref(keys);
    }
    cs_st_close(lf);

    cs_lora lo = {path, 1.0f, 0};
    cs_lora_list list = {1, &lo, 0, NULL, NULL, 0};
    cs_net_info in;
    cs_stage_c_info(m, &in);
    cs_lora_patch *p;
    MUST(cs_lora_merge(wf, in.prefix, 0, "Stage C", &list, &p));
    CHECK(lo.changed == cs_lora_net_count(net), "%s: src/lora.c changed %d modules of %d", path, lo.changed,
          cs_lora_net_count(net));
    int touched = 0;
    double worst = 0;
    for (int i = 0; i < cs_st_count(wf); i++) {
        const cs_tensor *got = cs_lora_patch_at(p, i), *want = cs_stage_c_train_weight(m, i);
        if (!got) continue;
        touched++;
        float *w0 = cs_tensor_f32_dup(cs_st_at(wf, i));
        const float *g = got->data, *w = want->data;
        double d2 = 0, r2 = 0;
        size_t n = (size_t)cs_tensor_numel(got), same = 0;
        for (size_t j = 0; j < n; j++) {
            same += g[j] == w[j];
            d2 += ((double)g[j] - w[j]) * ((double)g[j] - w[j]);
            r2 += ((double)w[j] - w0[j]) * ((double)w[j] - w0[j]);   /* against the LoRA's delta */
        }
        double rel = sqrt(d2 / (r2 > 0 ? r2 : 1e-300));
        if (rel > worst) worst = rel;
        if (dt == CS_F32) CHECK(same == n, "%s: %s: %zu of %zu values differ from the training model", path, got->name, n - same, n);
        else CHECK(rel < (dt == CS_BF16 ? 2e-2 : 2e-3), "%s: %s: delta off by rel_l2 %.3g", path, got->name, rel);
        cs_free(w0);
    }
    CHECK(touched > 0, "%s: src/lora.c merged nothing", path);
    printf("# save %s -> src/lora.c: %d tensors, worst delta rel_l2 %.3g\n", cs_dtype_name(dt), touched, worst);
    cs_lora_patch_free(p);
    unlink(path);
}

int main(int argc, char **argv)
{
    const char *sd = getenv("SHARED_DIR"), *top = getenv("TOP_SRCDIR");
    const char *write = argc == 3 && !strcmp(argv[1], "--write") ? argv[2] : NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    cs_st_file *wf;
    if (cs_st_open(path, &wf)) return check_missing(cs_last_error());
    snprintf(path, sizeof path, "%s/tests/data/lora_train/lora_adamw.io.safetensors", top ? top : ".");
    MUST(cs_st_open(path, &D));
    TOL = json_loads(cs_st_meta(D, "tolerances"), 0, NULL);
    json_t *mods = json_loads(cs_st_meta(D, "modules"), 0, NULL), *chosen = json_loads(cs_st_meta(D, "chosen"), 0, NULL);
    if (!TOL || !mods || !chosen) return 99;

    cs_stage_c *m;
    MUST(cs_stage_c_load_train(wf, NULL, &m));
    bad_options(m);

    /* the modules, their order and the seeded init: kohya's */
    cs_lora_train_cfg lc;
    cs_lora_train_cfg_default(&lc);
    lc.dim = atoi(cs_st_meta(D, "network_dim"));
    lc.alpha = atof(cs_st_meta(D, "network_alpha"));
    lc.seed = strtoull(cs_st_meta(D, "seed"), NULL, 10);
    cs_lora_net *net;
    MUST(cs_lora_net_new(m, &lc, &net));
    CHECK((size_t)cs_lora_net_count(net) == json_array_size(mods), "%d modules, kohya wraps %zu",
          cs_lora_net_count(net), json_array_size(mods));
    int init_bad = 0;
    for (int i = 0; i < cs_lora_net_count(net) && i < (int)json_array_size(mods); i++) {
        cs_lora_module mo;
        MUST(cs_lora_net_module(net, i, &mo));
        const char *want = json_string_value(json_array_get(mods, i));
        CHECK(!strcmp(mo.name, want), "module %d: %s, kohya's is %s", i, mo.name, want);
        char nm[300];
        snprintf(nm, sizeof nm, "out.init.%s", want);
        size_t n;
        float *a = get(nm, &n);
        size_t na = (size_t)(mo.down_shape[0] * mo.down_shape[1] * (mo.ndim == 4 ? mo.down_shape[2] * mo.down_shape[3] : 1));
        CHECK(n == na, "%s: %zu values, kohya %zu", mo.name, na, n);
        for (size_t j = 0; j < n && j < na; j++) init_bad += mo.down[j] != a[j];
        for (size_t j = 0; j < (size_t)(mo.up_shape[0] * mo.up_shape[1]); j++) init_bad += mo.up[j] != 0.0f;
        /* then the reference's lora_up */
        snprintf(nm, sizeof nm, "in.up.%s", want);
        float *u = get(nm, &n);
        memcpy(mo.up, u, n * sizeof(float));
        cs_free(a), cs_free(u);
    }
    CHECK(init_bad == 0, "%d initial A/B values differ from torch.manual_seed + LoRANetwork", init_bad);
    MUST(cs_lora_net_merge(net));
    cs_lora_module mo0;   /* a module whose first weight the test follows */
    MUST(cs_lora_net_module(net, 0, &mo0));
    float w_merged = model_weight(m, wf, mo0.target)[mo0.row0 * mo0.down_shape[1]];

    /* one step of stable_cascade_train_c_network.py */
    cs_net_info in;
    cs_stage_c_info(m, &in);
    const cs_tensor *x0t = cs_st_find(D, "in.x0"), *ctt = cs_st_find(D, "in.clip_text");
    size_t B = (size_t)x0t->shape[0], C = (size_t)x0t->shape[1], h = (size_t)x0t->shape[2], w = (size_t)x0t->shape[3];
    size_t nx;
    float *x0 = get("in.x0", &nx), *noise = get("in.noise", NULL), *t = get("in.t", NULL),
          *txt = get("in.clip_text", NULL), *pool = get("in.clip_text_pooled", NULL);
    float *x0h = malloc(nx * sizeof *x0h), *nh = malloc(nx * sizeof *nh);
    nchw_to_nhwc(x0, x0h, B, C, h * w);
    nchw_to_nhwc(noise, nh, B, C, h * w);
    cs_train_cfg cfg;
    cs_train_cfg_default(&cfg, CS_OPT_ADAMW, atof(cs_st_meta(D, "lr")));
    cfg.adamw.weight_decay = 0.01;
    cs_trainer *tr;
    MUST(cs_trainer_new(m, &cfg, &tr));
    MUST(cs_trainer_set_lora(tr, net));
    cs_train_batch b = {B, h, w, x0h, nh, t, txt, (size_t)ctt->shape[1], pool, NULL, 1};
    float loss[8];
    cs_train_out o = {0};
    o.loss = loss;
    MUST(cs_train_accumulate(tr, &b, &o));
    compare("out.loss", loss, B);
    compare("out.loss_adjusted", &o.loss_adjusted, 1);
    /* no tensor got a gradient buffer: dA and dB were summed by the backward */
    const cs_grads *g = cs_trainer_grads(tr);
    CHECK(g->n == 0, "%d tensors have gradient buffers", g->n);
    char nm[300];
    for (size_t i = 0; i < json_array_size(chosen); i++) {
        const char *c = json_string_value(json_array_get(chosen, i));
        cs_lora_module mo;
        MUST(cs_lora_net_module(net, cs_lora_net_find(net, c), &mo));
        snprintf(nm, sizeof nm, "out.g.down.%s", c);
        compare(nm, mo.gdown, (size_t)(mo.rank * mo.down_shape[1] * (mo.ndim == 4 ? mo.down_shape[2] * mo.down_shape[3] : 1)));
        snprintf(nm, sizeof nm, "out.g.up.%s", c);
        compare(nm, mo.gup, (size_t)(mo.rows * mo.rank));
    }
    double gn;
    MUST(cs_train_apply(tr, &gn));
    float gnf = (float)gn;
    compare("out.grad_norm", &gnf, 1);
    for (size_t i = 0; i < json_array_size(chosen); i++) {
        const char *c = json_string_value(json_array_get(chosen, i));
        cs_lora_module mo;
        MUST(cs_lora_net_module(net, cs_lora_net_find(net, c), &mo));
        snprintf(nm, sizeof nm, "out.down.%s", c);
        compare(nm, mo.down, (size_t)(mo.rank * mo.down_shape[1] * (mo.ndim == 4 ? mo.down_shape[2] * mo.down_shape[3] : 1)));
        snprintf(nm, sizeof nm, "out.up.%s", c);
        compare(nm, mo.up, (size_t)(mo.rows * mo.rank));
    }
    if (write) {
        MUST(cs_lora_net_save(net, write, CS_F32, NULL, 0));
        printf("wrote %s\n", write);
        return 0;
    }

    /* the step merged nothing: the model still holds the W' merged above;
     * sampling's merge makes it the trained one */
    const float *wt = model_weight(m, wf, mo0.target);
    float before = wt[mo0.row0 * mo0.down_shape[1]];
    CHECK(before == w_merged, "%s: the step changed the model's weight (%g, merged %g)", mo0.target, before, w_merged);
    MUST(cs_lora_net_sample_begin(net));
    CHECK(wt[mo0.row0 * mo0.down_shape[1]] != before, "%s: sampling did not merge the trained LoRA",
          mo0.target);
    cs_lora_net_sample_end(net);

    /* save -> load through src/lora.c -> the same weights */
    char dir[] = "/tmp/cs-lora-train-XXXXXX";
    MUST(!mkdtemp(dir));
    save_load(m, net, wf, CS_F32, dir);
    save_load(m, net, wf, CS_BF16, dir);
    save_load(m, net, wf, CS_F16, dir);
    /* a refused dtype and an unwritable path leave nothing behind */
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    CHECK(cs_lora_net_save(net, path, CS_F64, NULL, 0) == CS_EARG, "F64 save accepted");
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    CHECK(cs_lora_net_save(net, path, CS_F32, NULL, 0) != 0, "save into a missing folder succeeded");
    CHECK(dir_entries(dir) == 0, "%d files left in %s", dir_entries(dir), dir);
    rmdir(dir);

    cs_trainer_free(tr);
    cs_lora_net_free(net);
    cs_stage_c_free(m);
    cs_st_close(wf);
    cs_st_close(D);
    json_decref(TOL), json_decref(mods), json_decref(chosen);
    free(x0h), free(nh);
    cs_free(x0), cs_free(noise), cs_free(t), cs_free(txt), cs_free(pool);
    return check_exit();
}
