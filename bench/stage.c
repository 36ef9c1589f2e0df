/* One forward of Stage C and Stage B (lite, or full with --size full) with
 * random weights in the real layout, as the sampler runs them (batch 2 = one
 * image with CFG), on the CPU or a device (--device cuda, --precision P;
 * --check also runs the CPU once and prints the device's rel_l2 to it):
 *   Stage C lite: x 2x16x24x24, clip_text 2x77x1280, pooled 2x1x1280, clip_img zeros 2x1x768
 *   Stage B lite: x 2x4x256x256, effnet 2x16x24x24, pooled 2x1x1280, pixels zeros
 * and (--stage a, t; one size, --batch images) Stage A's decode of a
 * 4 x px/4 x px/4 latent, the CLIP-G text encoder on 77 random tokens.
 * Weight files (F32 and BF16) are written once from the spec manifests into
 * --dir or $CASCADE_BENCH_DIR (GBs, never inside the repo; no default). Each (stage,
 * dtype) runs in its own child process, so its peak RSS is its own; RSS
 * includes the mapped weight pages the forward touched (the whole file).
 * FLOPs are counted analytically (cs_stage_*_flops: every GEMM, conv and
 * attention product, 2 per multiply-add; norms/activations not counted).
 *
 *   make bench/stage && nice bench/stage [--stage c,b,a,t] [--dtype f32,bf16]
 *        [--threads 2] [--warmup 1] [--runs 2] [--batch 2] --dir DIR [--manifests DIR]
 *        [--size lite|full] [--device cpu|cuda] [--precision fp32|bf16|fp16] [--check 1]
 *        [--px 1024] (the image side whose latents are run)
 * Prints a table row and one JSON line per measurement. */
#include "../tests/manifest_st.h"
#include "args.h"
#include "backend.h"
#include "cpu.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "models.h"
#include "ops.h"
#include "clip.h"
#include "stage_a.h"
#include "stage_b.h"
#include "stage_c.h"
#include "wpack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)   /* user + system CPU seconds of this process */
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static uint64_t rs = 12345;
static float *randn_like(size_t n, float scale)
{
    float *p = cs_alloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) {   /* sum of 4 uniforms: close enough to N(0,1) for timing */
        float s = 0;
        for (int k = 0; k < 4; k++) {
            rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
            s += (float)(rs >> 40) * (1.0f / 16777216.0f) - 0.5f;
        }
        p[i] = s * 1.7320508f * scale;
    }
    return p;
}

typedef struct {
    int threads, warmup, runs, batch, check, prec, px;
    const char *dir, *manifests, *size, *device;
} opts;

/* <dir>/<variant>[_bf16].safetensors if present (bench/torch_random_weights.py
 * writes these: then both engines run the same weights), else our own
 * <dir>/bench_<variant>_<dtype>.safetensors, written on first use */
static int ensure_file(const opts *o, const char *variant, cs_dtype dt, char *path, size_t len)
{
    struct stat st;
    snprintf(path, len, "%s/%s%s.safetensors", o->dir, variant, dt == CS_F32 ? "" : "_bf16");
    if (!stat(path, &st)) return 0;
    snprintf(path, len, "%s/bench_%s_%s.safetensors", o->dir, variant, dt == CS_F32 ? "f32" : "bf16");
    if (!stat(path, &st)) return 0;
    char man[1200];
    snprintf(man, sizeof man, "%s/%s.json", o->manifests, variant);
    ms_tensor *t;
    int n;
    if (ms_load(man, &t, &n)) return -1;
    fprintf(stderr, "writing %s ...\n", path);
    double t0 = now();
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.part", path);
    int rc = ms_write(tmp, t, n, dt, "", MS_OFFICIAL, !strncmp(variant, "stage_b", 7), 1, 1234);
    free(t);
    if (!rc) rc = rename(tmp, path);
    fprintf(stderr, "  %.1f s\n", now() - t0);
    return rc;
}

/* The network of one stage: c, b, a (Stage A decode) or t (text encoder) */
typedef struct {
    char stage;
    cs_stage_c *c;
    cs_stage_b *b;
    cs_stage_a *a;
    cs_clip *t;
    size_t N, h, w, hc, nout;   /* batch, latent (c, b, a), Stage C's latent (b's effnet), outputs */
} net;

static int net_load(net *n, cs_st_file *f)
{
    switch (n->stage) {
    case 'c': return cs_stage_c_load(f, &n->c);
    case 'b': return cs_stage_b_load(f, &n->b);
    case 'a': return cs_stage_a_load(f, NULL, &n->a);
    default: return cs_clip_load(f, NULL, NULL, &n->t);
    }
}

typedef struct {
    float *x, *r, *txt, *pool, *eff;
    int32_t *ids;
} net_in;

static int net_forward(const net *n, const net_in *in, float *out)
{
    switch (n->stage) {
    case 'c':
        return cs_stage_c_forward(n->c, in->x, n->N, n->h, n->w, in->r, in->txt, 77, in->pool, NULL, 1, NULL, NULL, out);
    case 'b':
        return cs_stage_b_forward(n->b, in->x, n->N, n->h, n->w, in->r, in->eff, n->hc, n->hc, in->pool, NULL, 0, 0,
                                  NULL, out);
    case 'a': return cs_stage_a_decode(n->a, in->x, n->N, n->h, n->w, 1.0f, 0, 0, out);
    default: {
        cs_clip_out o = {.clip_text = out};
        return cs_clip_forward(n->t, in->ids, NULL, n->N, 77, &o);
    }
    }
}

static void net_free(net *n)
{
    cs_stage_c_free(n->c);
    cs_stage_b_free(n->b);
    cs_stage_a_free(n->a);
    cs_clip_free(n->t);
}

static int run_one(const opts *o, char stage, cs_dtype dt)
{
    int full = !strcmp(o->size, "full");
    const char *variant = stage == 'c'   ? (full ? "stage_c" : "stage_c_lite")
                          : stage == 'b' ? (full ? "stage_b" : "stage_b_lite")
                          : stage == 'a' ? "stage_a"
                                         : "text_encoder";
    char path[1024];
    if (ensure_file(o, variant, dt, path, sizeof path - 8)) return 1;
    cs_threads_set(o->threads);
    const cs_backend *be = NULL;
    if (strcmp(o->device, "cpu")) {
        if (cs_backend_select(o->device) || !(be = cs_backend_active()) || !be->ops ||
            be->ops->set_precision(o->prec)) {
            fprintf(stderr, "--device %s: %s\n", o->device, be ? "precision not supported" : cs_last_error());
            return 1;
        }
        be->ops->mem_peak(1);
    } else if (cs_cpu_precision_set(o->prec)) {   /* the CPU: fp32, or bf16 with AVX512-BF16 */
        fprintf(stderr, "--device cpu --precision: %s\n", cs_last_error());
        return 1;
    }
    double t0 = now();
    cs_st_file *f;
    net m = {.stage = stage, .N = (size_t)o->batch};
    int rc = cs_st_open(path, &f);
    if (!rc) rc = net_load(&m, f);
    if (rc) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    double t_load = now() - t0;
    size_t N = m.N, hc = (size_t)cs_latent_c(o->px);
    m.hc = hc;
    m.h = m.w = stage == 'c' ? hc : stage == 'b' ? (size_t)cs_latent_b(o->px) : stage == 'a' ? (size_t)o->px / 4 : 0;
    size_t cin = stage == 'c' ? 16 : 4;
    m.nout = stage == 'a' ? N * (size_t)o->px * (size_t)o->px * 3 : stage == 't' ? N * 77 * 1280 : N * m.h * m.w * cin;
    net_in in = {randn_like(N * m.h * m.w * cin + 1, 1.0f), randn_like(N, 0.0f), randn_like(N * 77 * 1280, 1.0f),
                 randn_like(N * 1280, 1.0f), randn_like(N * hc * hc * 16, 1.0f), malloc(N * 77 * sizeof(int32_t))};
    float *eps = cs_alloc(m.nout * sizeof(float));
    for (size_t i = 0; i < N; i++) in.r[i] = 0.5f + 0.1f * (float)i;
    for (size_t i = 0; in.ids && i < N * 77; i++) in.ids[i] = i % 77 == 76 ? 49407 : (int32_t)((i * 7919u) % 49406u);
    double flops = m.c ? cs_stage_c_flops(m.c, N, m.h, m.w, 77, 1) : m.b ? cs_stage_b_flops(m.b, N, m.h, m.w) : 0;
    double first = 0, best = 1e30, sum = 0, cpu_best = 1e30, load[3] = {0, 0, 0};
    getloadavg(load, 3);
    for (int i = 0; i < o->warmup + o->runs && !rc; i++) {
        double s = now(), c0 = cpu_now();
        rc = net_forward(&m, &in, eps);
        double d = now() - s, cpu = cpu_now() - c0;
        if (i == 0) first = d;
        if (i >= o->warmup || !o->runs) {
            sum += d;
            if (d < best) best = d;
            if (cpu < cpu_best) cpu_best = cpu;
        }
        fprintf(stderr, "  %s %s run %d: %.2f s wall, %.2f s CPU\n", variant, cs_dtype_name(dt), i, d, cpu);
        if (i + 1 == o->warmup) cs_dev_prof_report(NULL);   /* $CASCADE_PROFILE: timed runs only */
    }
    if (rc) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    {   /* bf16 precision, or BF16 weights in fp32 (their panels, read by gemm_f32_bf16w) */
        size_t cnt = 0, b = cs_wpack_bytes(&cnt);
        if (cnt) fprintf(stderr, "  packed bf16 weights: %zu, %.0f MiB\n", cnt, (double)b / 1048576.0);
    }
    cs_dev_prof_report(stderr);
    double chk = 0, dev_peak = be ? (double)be->ops->mem_peak(0) / 1048576.0 : 0, rel = -1;
    for (size_t i = 0; i < m.nout; i++) chk += (double)eps[i] * eps[i];
    if (be && o->check) {   /* the same forward on the CPU: the device's error against it */
        float *ref = cs_alloc(m.nout * sizeof(float));
        if (m.c) cs_stage_c_trim(m.c);   /* scratch lives on the device */
        if (m.b) cs_stage_b_trim(m.b);
        cs_backend_select("cpu");
        double s = now();
        rc = !ref ? CS_ENOMEM : net_forward(&m, &in, ref);
        if (rc) {
            fprintf(stderr, "%s\n", cs_last_error());
            return 1;
        }
        double d2 = 0, r2 = 0;
        for (size_t i = 0; i < m.nout; i++) {
            double d = (double)eps[i] - ref[i];
            d2 += d * d, r2 += (double)ref[i] * ref[i];
        }
        rel = sqrt(d2 / (r2 > 0 ? r2 : 1));
        fprintf(stderr, "  CPU reference: %.2f s, device rel_l2 %.3g\n", now() - s, rel);
        cs_free(ref);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0;
    double scratch = (double)(m.c ? cs_stage_c_scratch_bytes(m.c) : m.b ? cs_stage_b_scratch_bytes(m.b) : 0) / 1048576.0;
    double wmib = (double)cs_st_file_size(f) / 1048576.0;
    int runs = o->runs ? o->runs : 1;
    /* as bench/RESULTS-torch.md: on a shared machine, CPU time / threads estimates the idle wall time */
    double est = cpu_best / o->threads;
    printf("| %-12s | %-4s | %d | %4.1f | %7.2f | %7.2f | %7.2f | %7.2f | %7.1f | %6.1f | %6.1f | %7.0f | %7.0f | %6.0f |\n",
           variant, cs_dtype_name(dt), o->threads, load[0], t_load, first, best, cpu_best, flops * 1e-9,
           flops / best * 1e-9, flops / est * 1e-9, rss, wmib, scratch);
    printf("{\"engine\": \"cascade\", \"model\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"simd\": \"%s\", "
           "\"batch\": %zu, \"latent\": \"%zux%zu\", \"load_s\": %.3f, \"first_s\": %.3f, \"best_s\": %.6f, "
           "\"mean_s\": %.6f, \"cpu_s_best\": %.3f, \"loadavg\": [%.2f, %.2f, %.2f], \"gflop\": %.1f, "
           "\"gflops\": %.1f, \"gflops_est_idle\": %.1f, \"peak_rss_mib\": %.0f, \"weights_mib\": %.0f, "
           "\"scratch_mib\": %.0f, \"eps_rms\": %.4f, \"device\": \"%s\", \"precision\": %d, "
           "\"device_peak_mib\": %.0f, \"rel_l2_vs_cpu\": %.3g}\n",
           variant, cs_dtype_name(dt), o->threads, cs_simd_name(cs_simd_current()), N, m.h, m.w, t_load, first, best,
           sum / runs, cpu_best, load[0], load[1], load[2], flops * 1e-9, flops / best * 1e-9, flops / est * 1e-9, rss,
           wmib, scratch, sqrt(chk / (double)m.nout), o->device, o->prec, dev_peak, rel);
    fflush(stdout);
    cs_free(in.x), cs_free(in.r), cs_free(eps), cs_free(in.txt), cs_free(in.pool), cs_free(in.eff), free(in.ids);
    net_free(&m);
    cs_st_close(f);
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {2, 1, 2, 2, 0, 0, 1024, NULL, NULL, "lite", "cpu"};
    const char *stages = "c,b", *dtypes = "f32,bf16", *me = "bench/stage";
    static const char use[] =
        "usage: bench/stage --dir DIR [--stage c,b,a,t] [--dtype f32,bf16] [--threads N] [--warmup N]\n"
        "                   [--runs N] [--batch N] [--manifests DIR] [--size lite|full] [--px 1024]\n"
        "                   [--device cpu|cuda|PLUGIN] [--precision fp32|bf16|fp16] [--check 0|1]\n"
        "One forward of Stage C / Stage B (and Stage A's decode, the text encoder) with\n"
        "random weights, written once into DIR\n"
        "(--dir, or $CASCADE_BENCH_DIR; several GB). Manifests: --manifests, else\n"
        "$SHARED_DIR/spec/manifests, else ../shared/spec/manifests.\n";
    char mdir[1024];
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int e = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(use, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (see --help)\n", me, argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--stage")) stages = v;
        else if (!strcmp(argv[i], "--dtype")) dtypes = v;
        else if (!strcmp(argv[i], "--threads")) e = bench_int(me, argv[i], v, 1, 1024, &o.threads);
        else if (!strcmp(argv[i], "--warmup")) e = bench_int(me, argv[i], v, 0, 1000, &o.warmup);
        else if (!strcmp(argv[i], "--runs")) e = bench_int(me, argv[i], v, 1, 1000, &o.runs);
        else if (!strcmp(argv[i], "--batch")) e = bench_int(me, argv[i], v, 1, 64, &o.batch);
        else if (!strcmp(argv[i], "--px")) e = bench_int(me, argv[i], v, 64, 4096, &o.px);
        else if (!strcmp(argv[i], "--dir")) o.dir = v;
        else if (!strcmp(argv[i], "--manifests")) o.manifests = v;
        else if (!strcmp(argv[i], "--size") && (!strcmp(v, "lite") || !strcmp(v, "full"))) o.size = v;
        else if (!strcmp(argv[i], "--device")) o.device = v;
        else if (!strcmp(argv[i], "--check")) e = bench_int(me, argv[i], v, 0, 1, &o.check);
        else if (!strcmp(argv[i], "--precision") && (!strcmp(v, "fp32") || !strcmp(v, "bf16") || !strcmp(v, "fp16")))
            o.prec = !strcmp(v, "fp32") ? CS_PREC_FP32 : !strcmp(v, "bf16") ? CS_PREC_BF16 : CS_PREC_FP16;
        else {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", me, argv[i]);
            return 2;
        }
        if (e) return 2;
    }
    if (bench_dir(me, &o.dir)) return 2;
    if (!o.manifests) {   /* ../shared beside the repo, the binary being bench/stage */
        const char *s = getenv("SHARED_DIR");
        snprintf(mdir, sizeof mdir, "%s/spec/manifests", s ? s : "../shared");
        o.manifests = mdir;
    }
    if (cs_simd_init()) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    printf("| model | dtype | threads | loadavg | load s | first s | best s | CPU s | GFLOP | GFLOP/s | GFLOP/s est. idle "
           "| peak RSS MiB | weights MiB | scratch MiB |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int fails = 0;
    for (const char *s = stages; *s; s++) {
        if (!strchr("cbat", *s)) continue;
        for (const char *d = dtypes; *d;) {
            cs_dtype dt = !strncmp(d, "bf16", 4) ? CS_BF16 : CS_F32;
            pid_t pid = fork();
            if (pid == 0) _exit(run_one(&o, *s, dt));
            int st = 0;
            waitpid(pid, &st, 0);
            fails += !WIFEXITED(st) || WEXITSTATUS(st);
            const char *comma = strchr(d, ',');
            if (!comma) break;
            d = comma + 1;
        }
    }
    return fails ? 1 : 0;
}
