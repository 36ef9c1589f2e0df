/* Golden handler for one Stage C training step (module "train_step", cases
 * written by tests/ref/train_step_ref.py; src/train_step.h is the step).
 *
 * config: optimizer "adafactor" | "adamw", lr, optimizer_args (Adafactor:
 * scale_parameter, relative_step, warmup_init, all false; optional eps
 * [eps1, eps2], clip_threshold, decay_rate, weight_decay. AdamW: betas, eps,
 * weight_decay), loss_weight "p2" | "adaptive", grad_accum_steps,
 * max_grad_norm, optional draw_seed (then the recorded draws must be what
 * cs_train_draw gives from that seed: in.noise and in.t are compared too).
 * Inputs: in.x0, in.noise (NCHW), in.t [B], in.clip_text, in.clip_text_pooled,
 * optional in.clip_img and in.bucket_losses. Weights: role "stage_c".
 * The case is one micro-batch followed by the optimizer step. Outputs, each
 * compared where the file has it: out.logsnr, out.r, out.loss_weight,
 * out.eps, out.loss, out.loss_adjusted, out.g.<key> (before clipping),
 * out.grad_norm, out.w.<key> and out.dw.<key> (after the step, and the
 * change), out.bucket_losses. */
#include "golden.h"

#include "error.h"
#include "grad_blocks.h"
#include "ops.h"
#include "train_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cfg_str(gcase *c, const char *key)
{
    json_t *cfg = golden_config(c), *v = cfg ? json_object_get(cfg, key) : NULL;
    if (!json_is_string(v)) {
        golden_cfg_bad(c, key, "is missing or not a string");
        return "";
    }
    return json_string_value(v);
}

/* optimizer_args[key] as a number in [lo, hi]; def if absent */
static double arg_num(gcase *c, json_t *args, const char *key, double def, double lo, double hi)
{
    json_t *v = args ? json_object_get(args, key) : NULL;
    if (!v || json_is_null(v)) return def;
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= lo && x <= hi)) {
        char k[64];
        snprintf(k, sizeof k, "optimizer_args.%s", key);
        golden_cfg_bad(c, k, "is not a number in range");
        return def;
    }
    return x;
}

static int parse_cfg(gcase *c, cs_train_cfg *tc)
{
    const char *opt = cfg_str(c, "optimizer"), *lw = cfg_str(c, "loss_weight");
    double lr = golden_cfg_num(c, "lr", 0, 0, 10);
    int rc = golden_cfg_error(c);
    if (rc) return rc;
    if (strcmp(opt, "adafactor") && strcmp(opt, "adamw")) return golden_cfg_bad(c, "optimizer", "is not adafactor or adamw");
    if (strcmp(lw, "p2") && strcmp(lw, "adaptive")) return golden_cfg_bad(c, "loss_weight", "is not p2 or adaptive");
    cs_train_cfg_default(tc, strcmp(opt, "adamw") ? CS_OPT_ADAFACTOR : CS_OPT_ADAMW, lr);
    tc->loss_weight = strcmp(lw, "adaptive") ? CS_LOSS_P2 : CS_LOSS_ADAPTIVE;
    tc->grad_accum = golden_cfg_int(c, "grad_accum_steps", 1, 1, 1 << 20);
    tc->max_grad_norm = golden_cfg_num(c, "max_grad_norm", 1.0, 0, 1e30);
    json_t *cfg = golden_config(c), *a = json_object_get(cfg, "optimizer_args");
    if (a && !json_is_object(a)) return golden_cfg_bad(c, "optimizer_args", "is not an object");
    if (tc->opt == CS_OPT_ADAFACTOR) {
        static const char *off[] = {"scale_parameter", "relative_step", "warmup_init"};
        for (int i = 0; i < 3; i++) {
            json_t *v = json_object_get(a, off[i]);
            if (!json_is_false(v)) return golden_cfg_bad(c, off[i], "must be false (the only Adafactor mode we have)");
        }
        json_t *b1 = json_object_get(a, "beta1"), *eps = json_object_get(a, "eps");
        if (b1 && !json_is_null(b1)) return golden_cfg_bad(c, "optimizer_args.beta1", "must be null");
        if (eps && !(json_is_array(eps) && json_array_size(eps) == 2 && json_is_number(json_array_get(eps, 0))))
            return golden_cfg_bad(c, "optimizer_args.eps", "is not [eps1, eps2]");
        if (eps) tc->adafactor.eps1 = json_number_value(json_array_get(eps, 0));
        tc->adafactor.clip_threshold = arg_num(c, a, "clip_threshold", 1.0, 0, 1e30);
        tc->adafactor.decay_rate = arg_num(c, a, "decay_rate", -0.8, -10, 0);
        tc->adafactor.weight_decay = arg_num(c, a, "weight_decay", 0, 0, 1);
    } else {
        json_t *b = json_object_get(a, "betas");
        if (b && !(json_is_array(b) && json_array_size(b) == 2 && json_is_number(json_array_get(b, 0)) &&
                   json_is_number(json_array_get(b, 1))))
            return golden_cfg_bad(c, "optimizer_args.betas", "is not [beta1, beta2]");
        if (b) tc->adamw.beta1 = json_number_value(json_array_get(b, 0)), tc->adamw.beta2 = json_number_value(json_array_get(b, 1));
        if (!(tc->adamw.beta1 >= 0 && tc->adamw.beta1 < 1 && tc->adamw.beta2 >= 0 && tc->adamw.beta2 < 1))
            return golden_cfg_bad(c, "optimizer_args.betas", "are not in [0, 1)");
        tc->adamw.eps = arg_num(c, a, "eps", 1e-8, 0, 1);
        tc->adamw.weight_decay = arg_num(c, a, "weight_decay", 1e-2, 0, 1);
    }
    return golden_cfg_error(c);
}

/* [N] vector input */
static float *vec(gcase *c, const char *name, size_t N, int *rc)
{
    const cs_tensor *t;
    float *v = golden_f32(c, name, &t);
    if (!v) return *rc = CS_EFORMAT, NULL;
    if (t->ndim != 1 || (size_t)t->shape[0] != N) {
        cs_free(v);
        *rc = cs_error(CS_EFORMAT, "%s: %s must be [%zu]", golden_path(c), name, N);
        return NULL;
    }
    return v;
}

/* [N, L, C] tokens with N, C as expected; *L out */
static float *tokens(gcase *c, const char *name, size_t N, size_t C, size_t *L, int *rc)
{
    const cs_tensor *t;
    float *x = golden_f32(c, name, &t);
    if (!x) return *rc = CS_EFORMAT, NULL;
    if (t->ndim != 3 || (size_t)t->shape[0] != N || (size_t)t->shape[2] != C) {
        cs_free(x);
        *rc = cs_error(CS_EFORMAT, "%s: %s must be [%zu, L, %zu]", golden_path(c), name, N, C);
        return NULL;
    }
    *L = (size_t)t->shape[1];
    return x;
}

/* Compares y (n floats) with the reference `name` in its own shape. */
static int check_as_ref(gcase *c, const char *name, const float *y, size_t n)
{
    const cs_tensor *t = golden_tensor(c, name);
    size_t d[CS_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) d[i] = (size_t)t->shape[i];
    if ((size_t)cs_tensor_numel(t) != n)
        return cs_error(CS_EFORMAT, "%s: %s has %lld values, the tensor has %zu", golden_path(c), name,
                        (long long)cs_tensor_numel(t), n);
    return golden_check(c, name, y, t->ndim, d);
}

/* every out.<prefix><key> of the file, with the tensor key */
static int each_param(gcase *c, const char *prefix, cs_trainer *tr, cs_st_file *wf, int dw)
{
    cs_st_file *io = golden_io(c);
    size_t pl = strlen(prefix);
    int rc = 0;
    for (int i = 0; i < cs_st_count(io) && !rc; i++) {
        const char *nm = cs_st_at(io, i)->name;
        if (strncmp(nm, prefix, pl)) continue;
        const cs_grad_ent *e = cs_grads_find(cs_trainer_grads(tr), nm + pl);
        if (!e) return cs_error(CS_EFORMAT, "%s: %s: the step gave no gradient for %s", golden_path(c), nm, nm + pl);
        if (!strcmp(prefix, "out.g.")) {
            rc = check_as_ref(c, nm, e->g, e->n);
            continue;
        }
        const float *w = e->key;   /* the model's float32 weight, updated in place */
        if (!dw) {
            rc = check_as_ref(c, nm, w, e->n);
            continue;
        }
        const cs_tensor *w0 = cs_st_find(wf, nm + pl);
        float *d = w0 && (size_t)cs_tensor_numel(w0) == e->n ? cs_tensor_f32_dup(w0) : NULL;
        if (!d) return cs_error(CS_EFORMAT, "%s: %s: no weight %s in the weights file", golden_path(c), nm, nm + pl);
        for (size_t j = 0; j < e->n; j++) d[j] = (float)((double)w[j] - d[j]);
        rc = check_as_ref(c, nm, d, e->n);
        cs_free(d);
    }
    return rc;
}

static int check_opt(gcase *c, const char *name, const float *y, size_t n)
{
    return golden_tensor(c, name) ? check_as_ref(c, name, y, n) : 0;
}

static int run_train_step(gcase *c)
{
    cs_train_cfg tc;
    int rc = parse_cfg(c, &tc);
    json_t *seedj = json_object_get(golden_config(c), "draw_seed");
    if (rc) return rc;
    cs_st_file *wf;
    cs_stage_c *m = NULL;
    cs_trainer *tr = NULL;
    if ((rc = golden_weights(c, "stage_c", &wf)) || (rc = cs_stage_c_load_train(wf, NULL, &m))) return rc;
    cs_net_info in;
    cs_stage_c_info(m, &in);
    size_t B = 0, C, H, W, Cn, Hn, Wn, Bn, Lt = 0, Lp = 0, M = 1;
    float *x0 = golden_nhwc(c, "in.x0", &B, &C, &H, &W), *noise = NULL, *t = NULL, *txt = NULL, *pool = NULL,
          *img = NULL, *bl = NULL, *pred = NULL, *sc = NULL;
    if (!x0) rc = CS_EFORMAT;
    if (!rc && C != (size_t)in.c_in)
        rc = cs_error(CS_EFORMAT, "%s: in.x0 has %zu channels, the Stage C takes %d", golden_path(c), C, in.c_in);
    if (!rc && (!(noise = golden_nhwc(c, "in.noise", &Bn, &Cn, &Hn, &Wn)) || Bn != B || Cn != C || Hn != H || Wn != W))
        rc = noise ? cs_error(CS_EFORMAT, "%s: in.noise does not have in.x0's shape", golden_path(c)) : CS_EFORMAT;
    if (!rc) t = vec(c, "in.t", B, &rc);
    if (!rc) txt = tokens(c, "in.clip_text", B, (size_t)in.c_clip_text, &Lt, &rc);
    if (!rc) pool = tokens(c, "in.clip_text_pooled", B, (size_t)in.c_clip_pooled, &Lp, &rc);
    if (!rc && Lp != 1) rc = cs_error(CS_EFORMAT, "%s: in.clip_text_pooled must be one token", golden_path(c));
    if (!rc && golden_tensor(c, "in.clip_img")) img = tokens(c, "in.clip_img", B, (size_t)in.c_clip_img, &M, &rc);
    if (!rc && golden_tensor(c, "in.bucket_losses")) bl = vec(c, "in.bucket_losses", CS_TRAIN_BUCKETS, &rc);
    if (!rc) {
        pred = cs_alloc(B * H * W * C * sizeof(float));
        sc = cs_alloc(4 * B * sizeof(float));
        if (!pred || !sc) rc = cs_error(CS_ENOMEM, "out of memory");
    }
    if (!rc && seedj) {   /* the draw helper against the recorded draws */
        if (!json_is_integer(seedj) || json_integer_value(seedj) < 0) {
            rc = golden_cfg_bad(c, "draw_seed", "is not a non-negative integer");
        } else {
            cs_rng r;
            cs_rng_seed(&r, (uint64_t)json_integer_value(seedj));
            rc = cs_train_draw(&r, B, C, H, W, pred, sc);
            golden_require(c, "in.noise"), golden_require(c, "in.t");
            if (!rc) rc = golden_check_nhwc(c, "in.noise", pred, B, C, H, W);
            if (!rc) rc = check_as_ref(c, "in.t", sc, B);
        }
    }
    if (!rc) rc = cs_trainer_new(m, &tc, &tr);
    if (!rc && bl) memcpy(cs_trainer_buckets(tr), bl, CS_TRAIN_BUCKETS * sizeof(float));
    cs_train_out o = {.loss = sc, .logsnr = sc + B, .r = sc + 2 * B, .weight = sc + 3 * B, .pred = pred};
    cs_train_batch b = {B, H, W, x0, noise, t, txt, Lt, pool, img, M};
    if (!rc) rc = cs_train_accumulate(tr, &b, &o);
    if (!rc) rc = check_opt(c, "out.logsnr", o.logsnr, B);
    if (!rc) rc = check_opt(c, "out.r", o.r, B);
    if (!rc) rc = check_opt(c, "out.loss_weight", o.weight, B);
    if (!rc && golden_tensor(c, "out.eps")) rc = golden_check_nhwc(c, "out.eps", pred, B, C, H, W);
    if (!rc) rc = check_opt(c, "out.loss", o.loss, B);
    if (!rc) rc = check_opt(c, "out.loss_adjusted", &o.loss_adjusted, 1);
    if (!rc) rc = each_param(c, "out.g.", tr, wf, 0);
    double gn = 0;
    if (!rc) rc = cs_train_apply(tr, &gn);
    float gnf = (float)gn;
    if (!rc) rc = check_opt(c, "out.grad_norm", &gnf, 1);
    if (!rc) rc = each_param(c, "out.w.", tr, wf, 0);
    if (!rc) rc = each_param(c, "out.dw.", tr, wf, 1);
    if (!rc) rc = check_opt(c, "out.bucket_losses", cs_trainer_buckets(tr), CS_TRAIN_BUCKETS);
    cs_trainer_free(tr);
    cs_stage_c_free(m);
    cs_free(x0), cs_free(noise), cs_free(t), cs_free(txt), cs_free(pool), cs_free(img), cs_free(bl);
    cs_free(pred), cs_free(sc);
    return rc;
}

const golden_handler golden_train_handlers[] = {
    {"train_step", run_train_step},
    {NULL, NULL},
};
