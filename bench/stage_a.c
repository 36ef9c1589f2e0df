/* Stage A decode of a 4 x 256 x 256 latent (a 1024 x 1024 image) with random
 * weights in the real layout (spec manifest stage_a.json), untiled and tiled
 * under scratch budgets. The weights file is written once into --dir or
 * $CASCADE_BENCH_DIR (never the repo; no default). Each run is its own child process,
 * so the peak RSS (getrusage) is that run's alone; it includes the mapped
 * weight pages, the latent and the output image. The children's outputs are
 * hashed: every tiling must give the untiled bytes.
 *
 *   make bench/stage_a && nice bench/stage_a [--threads 2] [--latent 256] [--batch 1]
 *        [--budgets-mb 0,512,256,128] [--dtype f32|bf16] [--runs 1] --dir DIR [--manifests DIR]
 * budget 0 = untiled. Prints a markdown table and one JSON line per run. */
#include "../tests/manifest_st.h"
#include "args.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "ops.h"
#include "stage_a.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

typedef struct {
    int threads, batch, runs;
    size_t latent;
    cs_dtype dt;
    const char *dir, *manifests;
} opts;

typedef struct {   /* what a child reports back (shared mapping) */
    uint64_t hash;
    int ok;
} report;

static int ensure_file(const opts *o, char *path, size_t len)
{
    struct stat st;
    snprintf(path, len, "%s/bench_stage_a_%s.safetensors", o->dir, o->dt == CS_F32 ? "f32" : "bf16");
    if (!stat(path, &st)) return 0;
    char man[1200], tmp[1100];
    snprintf(man, sizeof man, "%s/stage_a.json", o->manifests);
    ms_tensor *t;
    int n;
    if (ms_load(man, &t, &n)) return -1;
    fprintf(stderr, "writing %s ...\n", path);
    snprintf(tmp, sizeof tmp, "%s.part", path);
    int rc = ms_write(tmp, t, n, o->dt, "", MS_OFFICIAL, 0, 1, 4321);
    free(t);
    return rc ? rc : rename(tmp, path);
}

static int run_one(const opts *o, const char *path, size_t budget_mb, report *rep)
{
    cs_threads_set(o->threads);
    cs_stage_a *m;
    double t0 = now();
    if (cs_stage_a_open(path, &m)) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    double t_load = now() - t0;
    size_t N = (size_t)o->batch, h = o->latent, w = o->latent, f = (size_t)cs_stage_a_factor(m);
    size_t nz = N * h * w * 4, ny = N * f * h * f * w * 3, th, tw;
    float *z = cs_alloc(nz * sizeof(float)), *y = cs_alloc(ny * sizeof(float));
    uint64_t s = 99;
    for (size_t i = 0; i < nz; i++) {   /* a latent of unit scale */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        z[i] = (float)(s >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
    cs_stage_a_plan_tiles(m, h, w, budget_mb << 20, &th, &tw);
    size_t halo = (size_t)cs_stage_a_halo(m);
    size_t pred = cs_stage_a_decode_bytes(m, th + 2 * halo < h ? th + 2 * halo : h, tw + 2 * halo < w ? tw + 2 * halo : w);
    double best = 1e30;
    int rc = 0;
    for (int r = 0; r < o->runs && !rc; r++) {
        double t = now();
        rc = cs_stage_a_decode(m, z, N, h, w, CS_STAGE_A_SCALE, th, tw, y);
        t = now() - t;
        if (t < best) best = t;
        fprintf(stderr, "  budget %zu MB, tiles %zux%zu: run %d %.2f s\n", budget_mb, th, tw, r, t);
    }
    if (rc) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    uint64_t hsh = 1469598103934665603ull;
    double ss = 0;
    const unsigned char *b = (const unsigned char *)y;
    for (size_t i = 0; i < ny * sizeof(float); i++) hsh = (hsh ^ b[i]) * 1099511628211ull;
    for (size_t i = 0; i < ny; i++) ss += (double)y[i] * y[i];
    rep->hash = hsh;
    rep->ok = 1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0, tiles = (double)((h + th - 1) / th) * (double)((w + tw - 1) / tw);
    printf("| %4zu | %3zu x %3zu | %4.0f | %d | %7.2f | %7.0f | %7.0f | %016llx |\n", budget_mb, th, tw, tiles,
           o->threads, best, (double)pred / 1048576.0, rss, (unsigned long long)hsh);
    printf("{\"bench\": \"stage_a_decode\", \"dtype\": \"%s\", \"simd\": \"%s\", \"threads\": %d, \"batch\": %zu, "
           "\"latent\": %zu, \"budget_mb\": %zu, \"tile\": \"%zux%zu\", \"halo\": %zu, \"load_s\": %.3f, "
           "\"best_s\": %.3f, \"scratch_mib\": %.0f, \"peak_rss_mib\": %.0f, \"out_rms\": %.4f, \"hash\": \"%016llx\"}\n",
           cs_dtype_name(o->dt), cs_simd_name(cs_simd_current()), o->threads, N, h, budget_mb, th, tw, halo, t_load,
           best, (double)pred / 1048576.0, rss, sqrt(ss / (double)ny), (unsigned long long)hsh);
    fflush(stdout);
    cs_free(z);
    cs_free(y);
    cs_stage_a_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {2, 1, 1, 256, CS_F32, NULL, NULL};
    const char *budgets = "0,512,256,128", *me = "bench/stage_a";
    static const char use[] =
        "usage: bench/stage_a --dir DIR [--threads N] [--latent N] [--batch N] [--runs N]\n"
        "                     [--budgets-mb 0,512,256,128] [--dtype f32|bf16] [--manifests DIR]\n"
        "Stage A decode untiled and under scratch budgets (MB, 0 = untiled), random weights written\n"
        "once into DIR (--dir, or $CASCADE_BENCH_DIR). Manifests: --manifests, else\n"
        "$SHARED_DIR/spec/manifests, else ../shared/spec/manifests.\n";
    char mdir[1024], path[1024];
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int e = 0, lat = 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(use, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (see --help)\n", me, argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--threads")) e = bench_int(me, argv[i], v, 1, 1024, &o.threads);
        else if (!strcmp(argv[i], "--latent")) {
            if (!(e = bench_int(me, argv[i], v, 1, 4096, &lat))) o.latent = (size_t)lat;
        }
        else if (!strcmp(argv[i], "--batch")) e = bench_int(me, argv[i], v, 1, 64, &o.batch);
        else if (!strcmp(argv[i], "--runs")) e = bench_int(me, argv[i], v, 1, 1000, &o.runs);
        else if (!strcmp(argv[i], "--budgets-mb")) budgets = v;
        else if (!strcmp(argv[i], "--dtype") && (!strcmp(v, "bf16") || !strcmp(v, "f32")))
            o.dt = !strcmp(v, "bf16") ? CS_BF16 : CS_F32;
        else if (!strcmp(argv[i], "--dir")) o.dir = v;
        else if (!strcmp(argv[i], "--manifests")) o.manifests = v;
        else {
            fprintf(stderr, "%s: unknown option or value: %s %s (see --help)\n", me, argv[i], v);
            return 2;
        }
        if (e) return 2;
    }
    if (bench_dir(me, &o.dir)) return 2;
    if (!o.manifests) {
        const char *s = getenv("SHARED_DIR");
        snprintf(mdir, sizeof mdir, "%s/spec/manifests", s ? s : "../shared");
        o.manifests = mdir;
    }
    if (cs_simd_init() || ensure_file(&o, path, sizeof path)) {
        fprintf(stderr, "%s\n", cs_last_error());
        return 1;
    }
    report *rep = mmap(NULL, 64 * sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rep == MAP_FAILED) return 1;
    printf("| budget MB | core tile | tiles | threads | best s | scratch MiB (predicted) | peak RSS MiB | output hash |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    int n = 0, fails = 0;
    for (const char *b = budgets; *b && n < 64; n++) {
        size_t mb = (size_t)atol(b);
        memset(&rep[n], 0, sizeof rep[n]);
        pid_t pid = fork();
        if (pid == 0) _exit(run_one(&o, path, mb, &rep[n]));
        int st = 0;
        waitpid(pid, &st, 0);
        fails += !WIFEXITED(st) || WEXITSTATUS(st) || !rep[n].ok;
        const char *comma = strchr(b, ',');
        if (!comma) {
            n++;
            break;
        }
        b = comma + 1;
    }
    for (int i = 1; i < n; i++)
        if (rep[i].ok && rep[0].ok && rep[i].hash != rep[0].hash) {
            printf("MISMATCH: run %d output differs from run 0\n", i);
            fails++;
        }
    if (!fails) printf("all %d runs gave identical output\n", n);
    return fails ? 1 : 0;
}
