/* CLIP-G text encoder forward timing: 2 prompts x 77 tokens (a prompt and "",
 * the CFG pair) with the attention mask, as Stable Cascade runs it.
 *
 * Weights: random, in the real HF layout and shapes (models.md §8, 517
 * tensors, 694,659,840 parameters), generated in memory in BF16 (the dtype of
 * the released file) or F32; or a real file with --weights. Prints one JSON
 * line per run configuration (compare with bench/torch_clip.py).
 *
 *   bench_clip [--dtype bf16|f32] [--threads N] [--runs 5] [--warmup 1]
 *              [--tokenizer DIR] [--weights model.safetensors] [--layers 32]
 */
#include "clip.h"
#include "../args.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PROMPT "an astronaut riding a green horse on the moon, highly detailed photograph"
enum { WIDTH = 1280, MLP = 5120, VOCAB = 49408, CTX = 77, PROJ = 1280 };

typedef struct {
    cs_tensor *t;
    const cs_tensor **p;
    char (*names)[96];
    int n, cap;
    size_t bytes;
} weights;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* Uniform values with std 0.02 (or 1 + that for LayerNorm weights), xorshift per tensor. */
static int add(weights *w, cs_dtype dt, const char *name, int64_t d0, int64_t d1, int ln_weight)
{
    if (w->n == w->cap) return cs_error(CS_EARG, "too many tensors");
    size_t n = (size_t)(d0 * (d1 ? d1 : 1)), es = dt == CS_F32 ? 4 : 2;
    void *data = cs_alloc(n * es);
    if (!data) return cs_error(CS_ENOMEM, "out of memory for %s", name);
    uint64_t s = 0x9E3779B97F4A7C15ull ^ (uint64_t)w->n * 0xD1B54A32D192ED03ull;
    const float a = 0.02f * 1.7320508f;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float v = a * ((float)(s >> 40) / 8388608.0f - 1.0f) + (ln_weight ? 1.0f : 0.0f);
        if (dt == CS_F32) ((float *)data)[i] = v;
        else ((uint16_t *)data)[i] = cs_f32_to_bf16(v);
    }
    cs_tensor *t = &w->t[w->n];
    snprintf(w->names[w->n], sizeof w->names[w->n], "%s", name);
    *t = (cs_tensor){.dtype = dt, .ndim = d1 ? 2 : 1, .shape = {d0, d1}, .data = data, .name = w->names[w->n]};
    w->p[w->n++] = t;
    w->bytes += n * es;
    return 0;
}

static int build(weights *w, cs_dtype dt, int layers)
{
    w->cap = 16 * layers + 8;
    w->t = calloc((size_t)w->cap, sizeof *w->t);
    w->p = calloc((size_t)w->cap, sizeof *w->p);
    w->names = calloc((size_t)w->cap, sizeof *w->names);
    if (!w->t || !w->p || !w->names) return cs_error(CS_ENOMEM, "out of memory");
    char nm[96];
    int rc = add(w, dt, "text_model.embeddings.token_embedding.weight", VOCAB, WIDTH, 0);
    if (!rc) rc = add(w, dt, "text_model.embeddings.position_embedding.weight", CTX, WIDTH, 0);
    const char *lin[] = {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj"};
    for (int l = 0; l < layers && !rc; l++) {
        for (int j = 0; j < 4 && !rc; j++) {
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.weight", l, lin[j]);
            rc = add(w, dt, nm, WIDTH, WIDTH, 0);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.%s.bias", l, lin[j]);
            if (!rc) rc = add(w, dt, nm, WIDTH, 0, 0);
        }
        for (int j = 1; j <= 2 && !rc; j++) {
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.layer_norm%d.weight", l, j);
            rc = add(w, dt, nm, WIDTH, 0, 1);
            snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.layer_norm%d.bias", l, j);
            if (!rc) rc = add(w, dt, nm, WIDTH, 0, 0);
        }
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.weight", l);
        if (!rc) rc = add(w, dt, nm, MLP, WIDTH, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc1.bias", l);
        if (!rc) rc = add(w, dt, nm, MLP, 0, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.weight", l);
        if (!rc) rc = add(w, dt, nm, WIDTH, MLP, 0);
        snprintf(nm, sizeof nm, "text_model.encoder.layers.%d.mlp.fc2.bias", l);
        if (!rc) rc = add(w, dt, nm, WIDTH, 0, 0);
    }
    if (!rc) rc = add(w, dt, "text_model.final_layer_norm.weight", WIDTH, 0, 1);
    if (!rc) rc = add(w, dt, "text_model.final_layer_norm.bias", WIDTH, 0, 0);
    if (!rc) rc = add(w, dt, "text_projection.weight", PROJ, WIDTH, 0);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *dtype = "bf16", *tokdir = getenv("CASCADE_TOKENIZER"), *wpath = NULL;
    int threads = 0, runs = 5, warmup = 1, layers = 32;
    static const char use[] = "usage: bench_clip [--dtype bf16|f32] [--threads N] [--runs N] [--warmup N]\n"
                              "                  [--layers N] [--tokenizer DIR] [--weights FILE]\n";
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL, *me = "bench_clip";
        int e = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(use, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--dtype") && v) dtype = argv[++i];
        else if (!strcmp(argv[i], "--threads") && v) e = bench_int(me, argv[i], v, 1, 1024, &threads), i++;
        else if (!strcmp(argv[i], "--runs") && v) e = bench_int(me, argv[i], v, 1, 100000, &runs), i++;
        else if (!strcmp(argv[i], "--warmup") && v) e = bench_int(me, argv[i], v, 0, 100000, &warmup), i++;
        else if (!strcmp(argv[i], "--layers") && v) e = bench_int(me, argv[i], v, 1, 1000, &layers), i++;
        else if (!strcmp(argv[i], "--tokenizer") && v) tokdir = argv[++i];
        else if (!strcmp(argv[i], "--weights") && v) wpath = argv[++i];
        else {
            fputs(use, stderr);
            return 2;
        }
        if (e) return 2;
    }
    if (runs < 1 || layers < 1 || (strcmp(dtype, "bf16") && strcmp(dtype, "f32"))) {
        fprintf(stderr, "bench_clip: bad --runs/--layers/--dtype\n");
        return 2;
    }
    if (cs_simd_init()) {
        fprintf(stderr, "bench_clip: %s\n", cs_last_error());
        return 1;
    }
    cs_threads_set(threads);

    /* the CFG pair: prompt and "" */
    cs_tokenizer *tok;
    int rc = tokdir ? cs_tokenizer_load(tokdir, &tok) : cs_tokenizer_bytes(&tok);
    int32_t ids[2 * CTX], mask[2 * CTX];
    if (!rc) rc = cs_tokens_77(tok, PROMPT, ids, mask, NULL);
    if (!rc) rc = cs_tokens_77(tok, "", ids + CTX, mask + CTX, NULL);
    cs_tokenizer_free(tok);

    weights w = {0};
    cs_clip *m = NULL;
    double t0 = now();
    if (!rc && wpath) {
        rc = cs_clip_open(wpath, &m);
    } else if (!rc) {
        rc = build(&w, strcmp(dtype, "f32") ? CS_BF16 : CS_F32, layers);
        if (!rc) rc = cs_clip_from_tensors(w.p, w.n, "", NULL, "random weights", &m);
    }
    double build_s = now() - t0;
    if (rc) {
        fprintf(stderr, "bench_clip: %s\n", cs_last_error());
        return 1;
    }
    const cs_clip_config *c = cs_clip_get_config(m);

    size_t R = 2 * CTX, C = (size_t)c->width;
    float *ct = cs_alloc(R * C * sizeof(float)), *te = cs_alloc(2 * (size_t)c->proj * sizeof(float));
    cs_clip_out out = {ct, NULL, te, NULL};
    /* wall time per run, and process CPU time (all threads) per run: on a
     * shared machine cpu_s / threads is what an idle machine would give */
    double *ts = calloc((size_t)runs, sizeof *ts), cpu = 0;
    for (int i = 0; i < warmup + runs && !rc; i++) {
        double a = now(), ca = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        rc = cs_clip_forward(m, ids, mask, 2, CTX, &out);
        if (i >= warmup) {
            ts[i - warmup] = now() - a;
            cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - ca;
        }
    }
    if (rc) {
        fprintf(stderr, "bench_clip: %s\n", cs_last_error());
        return 1;
    }
    double sum = 0;
    int finite = 1;
    for (size_t i = 0; i < R * C; i++) {
        sum += ct[i];
        finite &= isfinite(ct[i]) != 0;
    }
    double *sorted = malloc((size_t)runs * sizeof *sorted);
    memcpy(sorted, ts, (size_t)runs * sizeof *ts);
    qsort(sorted, (size_t)runs, sizeof *sorted, cmp_double);
    double med = runs % 2 ? sorted[runs / 2] : 0.5 * (sorted[runs / 2 - 1] + sorted[runs / 2]);
    /* matmul FLOPs: projections + MLP + scores/values + pooled projection */
    double L = CTX, Wd = (double)C, F = c->mlp;
    double flop = 2.0 * c->layers * (2 * L * (4 * Wd * Wd + 2 * Wd * F) + 2 * (2 * L * L * Wd)) +
                  2.0 * 2 * Wd * c->proj;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\": \"bench_clip\", \"model\": \"clip_g_text\", \"dtype\": \"%s\", \"layers\": %d, "
           "\"batch\": 2, \"tokens\": %d, \"threads\": %d, \"simd\": \"%s\", \"gemm\": \"%s\", "
           "\"weights\": \"%s\", \"weight_bytes\": %zu, \"build_s\": %.2f, \"warmup\": %d, \"runs\": %d, "
           "\"times_s\": [",
           wpath ? "file" : dtype, c->layers, CTX, cs_threads_get(), cs_simd_name(cs_simd_current()),
           cs_gemm_info(), wpath ? wpath : "random", w.bytes, build_s, warmup, runs);
    for (int i = 0; i < runs; i++) printf("%s%.4f", i ? ", " : "", ts[i]);
    double load[1] = {0};
    getloadavg(load, 1);
    printf("], \"median_s\": %.4f, \"min_s\": %.4f, \"cpu_s_per_run\": %.4f, \"gflop\": %.1f, "
           "\"gflops_per_s\": %.1f, \"peak_rss_mib\": %ld, \"loadavg_1m\": %.2f, \"out_finite\": %s, "
           "\"clip_text_sum\": %.6g}\n",
           med, sorted[0], cpu / runs, flop / 1e9, flop / 1e9 / med, ru.ru_maxrss / 1024, load[0],
           finite ? "true" : "false", sum);
    free(ts);
    free(sorted);
    cs_free(ct);
    cs_free(te);
    cs_clip_free(m);
    for (int i = 0; i < w.n; i++) cs_free((void *)w.t[i].data);
    free(w.t);
    free(w.p);
    free(w.names);
    return 0;
}
