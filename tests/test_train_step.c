/* cs_train_step's bookkeeping on the tiny Stage C of the golden set (the
 * numbers of a step are tests/golden_train.sh's): with grad_accum 2 the
 * optimizer runs on the second call only, and a model not loaded for
 * training is refused. Needs ../shared (skip 77, CI 99). */
#include "check.h"

#include "error.h"
#include "stage_c.h"
#include "train_step.h"

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

int main(void)
{
    const char *sd = getenv("SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/stage_c_tiny.weights.safetensors", sd ? sd : "../shared");
    cs_st_file *wf;
    if (cs_st_open(path, &wf)) return check_missing(cs_last_error());
    int fail = 0;
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

    cs_stage_c_free(m);
    cs_st_close(wf);
    free(x0), free(txt), free(pool), free(xb), free(nb), free(tb), free(txtb), free(poolb);
    return fail;
}
