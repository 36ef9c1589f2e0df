/* cs_train_step's bookkeeping on the tiny Stage C of the golden set (the
 * numbers of a step are tests/golden_train.sh's): with grad_accum 2 the
 * optimizer runs on the second call only, a model not loaded for training
 * is refused, and the fused backward pass (kohya's --fused_backward_pass)
 * equals per-tensor clipping and Adafactor steps on the unfused gradients,
 * bit for bit, and refuses what kohya refuses. Needs ../shared (skip 77,
 * CI 99). */
#include "check.h"

#include "device.h"
#include "error.h"
#include "grad_blocks.h"
#include "lora_train.h"
#include "stage_c.h"
#include "train_step.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H 6
#define W 5
#define LT 8

static float *randn(cs_rng *r, size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (!p || cs_rng_randn(r, p, n)) exit(99);
    return p;
}

static int refused(cs_stage_c *m, const cs_train_cfg *cfg, int lora, const char *what)
{
    cs_trainer *tr = NULL;
    cs_lora_net *net = NULL;
    int rc = cs_trainer_new(m, cfg, &tr);
    if (!rc && lora) {
        cs_lora_train_cfg lc;
        cs_lora_train_cfg_default(&lc);
        if (cs_lora_net_new(m, &lc, &net)) exit(99);
        rc = cs_trainer_set_lora(tr, net);
    }
    cs_trainer_free(tr);
    cs_lora_net_free(net);
    if (rc && strstr(cs_last_error(), "fused_backward_pass")) return 0;
    printf("FAIL: fused_backward_pass with %s: %s\n", what, rc ? cs_last_error() : "accepted");
    return 1;
}

/* Two fused steps on m against two steps done by hand on m2 from the
 * unfused gradients: each tensor clipped by its own norm, then Adafactor. */
static int fused_vs_hand(cs_stage_c *m, cs_stage_c *m2, const cs_train_batch *b, cs_rng *r, size_t c_in)
{
    cs_train_cfg cfg;
    cs_train_cfg_default(&cfg, CS_OPT_ADAFACTOR, 1e-3);
    cfg.max_grad_norm = 2e-3;   /* below most tensors' norms: clipping scales them */
    cs_trainer *tf, *tu;
    cfg.fused = 1;
    if (cs_trainer_new(m, &cfg, &tf)) return 99;
    cfg.fused = 0;
    if (cs_trainer_new(m2, &cfg, &tu)) return 99;
    cs_adafactor st[512] = {0};
    float *u = NULL;
    int fail = 0, nclip = 0;
    for (int k = 0; k < 2 && !fail; k++) {
        cs_train_out o = {0};
        if (cs_train_draw(r, b->B, c_in, b->h, b->w, (float *)b->noise, (float *)b->t) || cs_train_step(tf, b, &o) ||
            cs_train_accumulate(tu, b, NULL)) {
            fprintf(stderr, "step: %s\n", cs_last_error());
            return 99;
        }
        cs_grads *g = (cs_grads *)cs_trainer_grads(tu);
        if (g->n > 512) return 99;
        double tot = 0;
        for (int i = 0; i < g->n; i++) {
            const cs_grad_ent *e = &g->e[i];
            double nrm = (float)sqrt(cs_sumsq(e->g, e->n));
            tot += nrm * nrm;
            float coef = (float)(cfg.max_grad_norm / (nrm + 1e-6));
            if (coef < 1.0f) {
                nclip++;
                for (size_t j = 0; j < e->n; j++) e->g[j] *= coef;
            }
            const cs_tensor *w = cs_st_find(cs_stage_c_file(m2), e->name);
            if (!st[i].B && cs_adafactor_init(&st[i], w->ndim, w->shape)) return 99;
            if (!(u = realloc(u, e->n * sizeof *u + 4))) return 99;
            cs_adafactor_step(&st[i], &cfg.adafactor, (float *)e->key, e->g, u);
            cs_param_forget(e->key, e->n * sizeof(float));
        }
        cs_grads_zero(g);
        if (!o.stepped || o.grad_norm != (float)sqrt(tot)) {
            printf("FAIL: fused step %d: stepped %d, norm %.9g, unfused gradients' %.9g\n", k + 1, o.stepped, o.grad_norm,
                   (float)sqrt(tot));
            fail = 1;
        }
        const cs_grads *gf = cs_trainer_grads(tf);
        for (int i = 0; i < g->n && !fail; i++) {
            const cs_grad_ent *a = cs_grads_find(gf, g->e[i].name);
            if (!a || a->g || memcmp(a->key, g->e[i].key, g->e[i].n * sizeof(float))) {
                printf("FAIL: fused step %d: %s differs from per-tensor clipping + Adafactor by hand\n", k + 1,
                       g->e[i].name);
                fail = 1;
            }
        }
    }
    if (!fail && nclip < 4) {
        printf("FAIL: fused: only %d tensors were clipped (the test needs clipping)\n", nclip);
        fail = 1;
    }
    for (int i = 0; i < 512; i++) cs_adafactor_free(&st[i]);
    free(u);
    cs_trainer_free(tf), cs_trainer_free(tu);
    return fail;
}

static int count_done(void *ctx, cs_grads *g, const int *idx, int n)
{
    (void)g, (void)idx;
    *(int *)ctx += n;
    return 0;
}

/* cs_grads' fused bookkeeping: a released buffer serves the next entry that
 * fits (zeroed), and a weight touched again after its step in the same pass
 * is refused by name */
static int fused_grads(void)
{
    float wa[6], wb[4];
    cs_tensor a = {.dtype = CS_F32, .ndim = 1, .shape = {6}, .data = wa, .name = "a"};
    cs_tensor b = {.dtype = CS_F32, .ndim = 1, .shape = {4}, .data = wb, .name = "b"};
    int n = 0, rc = 0, fail = 0;
    cs_grads g = {.done = count_done, .done_ctx = &n, .gen = 1};
    float *ga = cs_grads_of(&g, &a, &rc);
    if (ga) ga[3] = 1.0f;
    float *ga2 = cs_grads_of(&g, &a, &rc);
    int d1 = cs_grads_done(&g);
    float *gb = cs_grads_of(&g, &b, &rc);
    if (rc || !ga || ga2 != ga || d1 || n != 1 || gb != ga || gb[0] != 0.0f || gb[3] != 0.0f || g.e[0].g) {
        printf("FAIL: fused gradients: rc %d, %d done, b's buffer %s a's\n", rc, n, gb == ga ? "is" : "is not");
        fail = 1;
    }
    if (cs_grads_done(&g) || cs_grads_of(&g, &a, &rc) || rc != CS_EARG || !strstr(cs_last_error(), "a: gradient added after")) {
        printf("FAIL: a weight touched after its step: rc %d (%s)\n", rc, cs_last_error());
        fail = 1;
    }
    g.gen++;   /* the next pass takes it again */
    rc = 0;
    if (!cs_grads_of(&g, &a, &rc) || rc) {
        printf("FAIL: fused gradients: the next pass: %s\n", cs_last_error());
        fail = 1;
    }
    cs_grads_free(&g);
    return fail;
}

int main(void)
{
    const char *sd = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    cs_st_file *wf;
    if (cs_st_open(path, &wf)) return check_missing(cs_last_error());
    int fail = fused_grads();
    cs_train_cfg cfg;
    cs_train_cfg_default(&cfg, CS_OPT_ADAFACTOR, 1e-3);
    cfg.loss_weight = CS_LOSS_ADAPTIVE;
    cs_trainer *tr;
    /* a model with the file's own (read-only) weights is refused */
    cs_stage_c *ro;
    if (cs_stage_c_load(wf, &ro)) return 99;
    if (cs_trainer_new(ro, &cfg, &tr) == 0) {
        printf("FAIL: a model not loaded for training was accepted\n");
        fail = 1;
        cs_trainer_free(tr);
    }
    cs_stage_c_free(ro);

    cs_stage_c *m;
    if (cs_stage_c_load_train(wf, NULL, &m)) return 99;
    cs_net_info in;
    cs_stage_c_info(m, &in);
    cs_rng r;
    cs_rng_seed(&r, 77);
    size_t n = H * W * (size_t)in.c_in;
    float *x0 = randn(&r, n), *txt = randn(&r, LT * (size_t)in.c_clip_text), *pool = randn(&r, (size_t)in.c_clip_pooled);


    /* accumulation: the optimizer runs on the second call only */
    cfg.grad_accum = 2;
    if (cs_trainer_new(m, &cfg, &tr)) return 99;
    enum { B = 2 };
    float *xb = malloc(B * n * sizeof *xb), *nb = malloc(B * n * sizeof *nb), *tb = malloc(B * sizeof *tb),
          *txtb = malloc(B * LT * (size_t)in.c_clip_text * sizeof *txtb), *poolb = malloc(B * (size_t)in.c_clip_pooled * sizeof *poolb);
    for (int k = 0; k < B; k++) {
        memcpy(xb + k * n, x0, n * sizeof *xb);
        memcpy(txtb + k * LT * (size_t)in.c_clip_text, txt, LT * (size_t)in.c_clip_text * sizeof *txtb);
        memcpy(poolb + k * (size_t)in.c_clip_pooled, pool, (size_t)in.c_clip_pooled * sizeof *poolb);
    }
    cs_train_batch b = {B, H, W, xb, nb, tb, txtb, LT, poolb, NULL, 1};
    cs_train_out o = {0};
    for (int k = 0; k < 2; k++) {
        if (cs_train_draw(&r, B, (size_t)in.c_in, H, W, nb, tb) || cs_train_step(tr, &b, &o)) {
            fprintf(stderr, "step: %s\n", cs_last_error());
            return 99;
        }
        if (o.stepped != k) {
            printf("FAIL: grad_accum 2: call %d stepped = %d\n", k + 1, o.stepped);
            fail = 1;
        }
    }
    cs_trainer_free(tr);

    /* fused: kohya's refusals, then the steps against the hand-made ones */
    cfg.fused = 1;
    fail |= refused(m, &cfg, 0, "grad_accum 2");
    cfg.grad_accum = 1;
    fail |= refused(m, &cfg, 1, "a LoRA");
    cfg.opt = CS_OPT_ADAMW;
    fail |= refused(m, &cfg, 0, "AdamW");
    cs_stage_c *m1, *m2;
    if (cs_stage_c_load_train(wf, NULL, &m1) || cs_stage_c_load_train(wf, NULL, &m2)) return 99;
    int rc = fused_vs_hand(m1, m2, &b, &r, (size_t)in.c_in);
    if (rc == 99) return 99;
    fail |= rc;
    cs_stage_c_free(m1), cs_stage_c_free(m2);

    cs_stage_c_free(m);
    cs_st_close(wf);
    free(x0), free(txt), free(pool), free(xb), free(nb), free(tb), free(txtb), free(poolb);
    return fail;
}
