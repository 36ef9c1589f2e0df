/* CLIP vision tower timing: load a model file and run image_embeds for N
 * images at its size (224² for ViT-L/14) as --image does, timing the load
 * and each forward. Weights: any CLIP vision file, e.g. the random ViT-L/14
 * of bench/vision_vitl_ref.py (bench/vision_vitl.sh runs both). Prints one
 * JSON line per run.
 *
 *   bench/vision MODEL.safetensors [--images 1] [--runs 3] [--threads 2]
 */
#include "args.h"
#include "clip_vision.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *prog = "bench/vision", *path = NULL;
    int images = 1, runs = 3, threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--images")) rc = bench_int(prog, a, v, 1, 16, &images), i++;
        else if (!strcmp(a, "--runs")) rc = bench_int(prog, a, v, 1, 100, &runs), i++;
        else if (!strcmp(a, "--threads")) rc = bench_int(prog, a, v, 1, 1024, &threads), i++;
        else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "%s: unknown argument '%s' (usage: %s MODEL [--images N] [--runs N] [--threads N])\n",
                    prog, a, prog);
            return 2;
        }
        if (rc) return 2;
    }
    if (!path) {
        fprintf(stderr, "%s: no model file given\n", prog);
        return 2;
    }
    if (cs_simd_init()) {   /* else the scalar reference kernels run */
        fprintf(stderr, "%s: %s\n", prog, cs_last_error());
        return 1;
    }
    cs_threads_set(threads);
    cs_clip_vision *m = NULL;
    double t0 = now();
    if (cs_clip_vision_open(path, &m)) {
        fprintf(stderr, "%s: %s\n", prog, cs_last_error());
        return 1;
    }
    double load = now() - t0;
    const cs_clip_vision_config *k = cs_clip_vision_get_config(m);
    size_t S = (size_t)k->image, n = (size_t)images * S * S * 3;
    float *px = cs_alloc(n * sizeof *px), *emb = cs_alloc((size_t)images * (size_t)k->proj * sizeof *emb);
    if (!px || !emb) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    for (size_t i = 0; i < n; i++) px[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    cs_clip_vision_out out = {emb, NULL, NULL};
    for (int r = 0; r < runs; r++) {
        t0 = now();
        if (cs_clip_vision_forward(m, px, (size_t)images, &out)) {
            fprintf(stderr, "%s: %s\n", prog, cs_last_error());
            return 1;
        }
        printf("{\"model\":\"%s\",\"image\":%zu,\"width\":%d,\"layers\":%d,\"images\":%d,\"threads\":%d,"
               "\"simd\":\"%s\",\"load_s\":%.3f,\"run\":%d,\"forward_s\":%.3f}\n",
               path, S, k->width, k->layers, images, threads, cs_simd_name(cs_simd_current()), load, r, now() - t0);
        fflush(stdout);
    }
    cs_free(px);
    cs_free(emb);
    cs_clip_vision_free(m);
    return 0;
}
