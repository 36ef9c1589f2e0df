/* LoRA applied at run time (y = x Wᵀ + s (x Aᵀ) Bᵀ) against merged once at load
 * (W' = W + s B A, then y = x W'ᵀ): time per Stage C lite block's linears and
 * the bytes each way keeps. Shapes of one lite block (c 1536, 24x24 latent =
 * 576 tokens at 1024x1024, 2 x for CFG), rank 32 on every linear.
 * make bench/lora && bench/lora [threads] (results: bench/RESULTS-lora.md) */
#include "ops.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *rnd(size_t n)
{
    float *p = cs_alloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}

int main(int argc, char **argv)
{
    if (argc > 1) cs_threads_set(atoi(argv[1]));
    enum { T = 576, R = 32 };
    /* out, in of the linears of one lite Stage C block (Res + Timestep + Attn) */
    static const size_t sh[][2] = {{6144, 1536}, {1536, 6144}, {3072, 64}, {3072, 64}, {3072, 64},
                                   {4608, 1536}, {1536, 1536}, {1536, 1536}};
    size_t n = sizeof sh / sizeof *sh;
    double t_base = 0, t_lr = 0, t_merge = 0, wbytes = 0, lbytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t o = sh[i][0], k = sh[i][1];
        float *x = rnd(T * k), *w = rnd(o * k), *a = rnd(R * k), *b = rnd(o * R), *y = rnd(T * o), *h = rnd(T * R);
        if (!x || !w || !a || !b || !y || !h) return 1;
        cs_sgemm(1, T, o, k, 1, x, k, w, k, 0, y, o);   /* warm */
        int reps = 2;
        double t0 = now();
        for (int r = 0; r < reps; r++) cs_sgemm(1, T, o, k, 1, x, k, w, k, 0, y, o);
        double t1 = now();
        for (int r = 0; r < reps; r++) {
            cs_sgemm(1, T, o, k, 1, x, k, w, k, 0, y, o);
            cs_sgemm(1, T, R, k, 1, x, k, a, k, 0, h, R);
            cs_sgemm(1, T, o, R, 0.8f, h, R, b, R, 1, y, o);
        }
        double t2 = now();
        cs_sgemm(0, o, k, R, 0.8f, b, R, a, k, 1, w, k);
        double t3 = now();
        t_base += (t1 - t0) / reps, t_lr += (t2 - t1) / reps, t_merge += t3 - t2;
        wbytes += (double)o * k, lbytes += (double)R * (o + k);
        cs_free(x), cs_free(w), cs_free(a), cs_free(b), cs_free(y), cs_free(h);
    }
    printf("one lite Stage C block, %d tokens (one CFG half), rank %d on its %zu linears:\n", T, R, n);
    printf("  merged:   %.2f ms per forward; merge at load %.2f ms\n", t_base * 1e3, t_merge * 1e3);
    printf("  runtime:  %.2f ms per forward (+%.1f%%)\n", t_lr * 1e3, 100 * (t_lr / t_base - 1));
    printf("  memory:   weights %.1f MiB bf16 / %.1f MiB f32 copies; LoRA factors %.2f MiB f32\n",
           wbytes * 2 / 1048576, wbytes * 4 / 1048576, lbytes * 4 / 1048576);
    return 0;
}
