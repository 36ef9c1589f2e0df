/* Time and memory of Stage C training steps on the CPU (issue 13's bench):
 *   bench/train --stage-c FILE [--lora RANK] [--batch B] [--size PX]
 *               [--steps N] [--threads T] [--opt adafactor|adamw]
 * FILE: a Stage C checkpoint (bench/mkweights writes random ones from the
 * spec manifests). One full fine-tune (or LoRA of rank RANK) step a run:
 * cs_train_draw + cs_train_step on a random latent batch at the latents of
 * a PX x PX image with 77 random text tokens, as `cascade train` runs it.
 * Prints per step the wall and CPU seconds, then the median, the FLOP
 * estimate (3x the forward's: forward, recomputed forward, backward of two
 * products per forward product) and the peak RSS; the last line is JSON.
 * Exit: 0, 1 a failure, 2 bad usage. */
#include "args.h"
#include "cpu.h"
#include "error.h"
#include "lora_train.h"
#include "models.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"
#include "stage_c.h"
#include "train_step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench/train --stage-c FILE [--lora RANK] [--batch B] [--size PX] [--steps N] "
                    "[--threads T] [--opt adafactor|adamw]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *P = "bench/train", *path = NULL, *opt = "adafactor";
    int rank = 0, B = 1, px = 1024, steps = 3, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--stage-c") && v) path = v;
        else if (!strcmp(a, "--opt") && v) opt = v;
        else if (!strcmp(a, "--lora") && v) bad = bench_int(P, a, v, 1, 1024, &rank);
        else if (!strcmp(a, "--batch") && v) bad = bench_int(P, a, v, 1, 64, &B);
        else if (!strcmp(a, "--size") && v) bad = bench_int(P, a, v, 64, 4096, &px);
        else if (!strcmp(a, "--steps") && v) bad = bench_int(P, a, v, 1, 1000, &steps);
        else if (!strcmp(a, "--threads") && v) bad = bench_int(P, a, v, 1, 1024, &threads);
        else return usage();
        if (bad) return 2;
        i++;
    }
    if (!path || (strcmp(opt, "adafactor") && strcmp(opt, "adamw"))) return usage();
    if (cs_simd_init()) {
        fprintf(stderr, "%s: %s\n", P, cs_last_error());
        return 2;
    }
    cs_threads_set(threads);   /* 0: all cores */
    cs_st_file *f;
    cs_stage_c *m = NULL;
    cs_lora_net *net = NULL;
    cs_trainer *tr = NULL;
    if (cs_st_open(path, &f) || cs_stage_c_load_train(f, NULL, &m)) {
        fprintf(stderr, "%s: %s\n", P, cs_last_error());
        return 1;
    }
    cs_net_info in;
    cs_stage_c_info(m, &in);
    size_t h = (size_t)cs_latent_c(px), w = h, C = (size_t)in.c_in, Lt = 77, n = (size_t)B * h * w * C;
    float *x0 = malloc(n * sizeof *x0), *noise = malloc(n * sizeof *noise), *t = malloc((size_t)B * sizeof *t),
          *txt = malloc((size_t)B * Lt * (size_t)in.c_clip_text * sizeof *txt),
          *pool = malloc((size_t)B * (size_t)in.c_clip_pooled * sizeof *pool);
    double *wall = malloc((size_t)steps * sizeof *wall);
    int rc = x0 && noise && t && txt && pool && wall ? 0 : cs_error(CS_ENOMEM, "out of memory");
    cs_rng r;
    cs_rng_seed(&r, 7);
    if (!rc) rc = cs_rng_randn(&r, x0, n);
    if (!rc) rc = cs_rng_randn(&r, txt, (size_t)B * Lt * (size_t)in.c_clip_text);
    if (!rc) rc = cs_rng_randn(&r, pool, (size_t)B * (size_t)in.c_clip_pooled);
    cs_train_cfg cfg;
    cs_train_cfg_default(&cfg, strcmp(opt, "adamw") ? CS_OPT_ADAFACTOR : CS_OPT_ADAMW, 1e-4);
    if (!rc) rc = cs_trainer_new(m, &cfg, &tr);
    if (!rc && rank) {
        cs_lora_train_cfg lc;
        cs_lora_train_cfg_default(&lc);
        lc.dim = rank;
        rc = cs_lora_net_new(m, &lc, &net);
        if (!rc) rc = cs_trainer_set_lora(tr, net);
    }
    double flops = 3.0 * cs_stage_c_flops(m, (size_t)B, h, w, Lt, 1);
    if (rank) printf("%s: %s, LoRA rank %d (%lld trainable values)", P, path, rank, (long long)cs_lora_net_params(net));
    else printf("%s: %s, full fine-tune", P, path);
    printf(", %s, batch %d at %dx%d (latent %zux%zu), %d threads\n", opt, B, px, px, h, w, cs_threads_get());
    for (int s = 0; s < steps && !rc; s++) {
        cs_train_batch b = {(size_t)B, h, w, x0, noise, t, txt, Lt, pool, NULL, 1};
        cs_train_out o = {0};
        double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        rc = cs_train_draw(&r, (size_t)B, C, h, w, noise, t);
        if (!rc) rc = cs_train_step(tr, &b, &o);
        wall[s] = now(CLOCK_MONOTONIC) - t0;
        if (!rc)
            printf("step %d: %.2f s wall, %.2f s CPU, loss %.4f, grad norm %.3g\n", s + 1, wall[s],
                   now(CLOCK_PROCESS_CPUTIME_ID) - c0, o.loss_adjusted, o.grad_norm);
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", P, cs_last_error());
    } else {
        qsort(wall, (size_t)steps, sizeof *wall, cmp_d);
        double med = wall[steps / 2];
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss = (double)ru.ru_maxrss / 1024.0;
        printf("median %.2f s a step, %.1f GFLOP a step (3x forward), %.1f GFLOP/s, peak RSS %.0f MiB%s\n", med,
               flops * 1e-9, flops / med * 1e-9, rss, rank ? "" : " (float32 master weights + gradients)");
        printf("{\"bench\": \"train\", \"mode\": \"%s\", \"rank\": %d, \"batch\": %d, \"size\": %d, \"threads\": %d, "
               "\"opt\": \"%s\", \"median_s\": %.3f, \"gflop\": %.1f, \"gflops\": %.1f, \"peak_rss_mib\": %.0f}\n",
               rank ? "lora" : "full", rank, B, px, cs_threads_get(), opt, med, flops * 1e-9, flops / med * 1e-9, rss);
    }
    cs_trainer_free(tr);
    cs_lora_net_free(net);
    cs_stage_c_free(m);
    cs_st_close(f);
    free(x0), free(noise), free(t), free(txt), free(pool), free(wall);
    return rc ? 1 : 0;
}
