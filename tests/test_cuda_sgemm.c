/* The CUDA plugin's products on device memory (cs_dev_ops sgemm, linear,
 * attention) against the CPU ops, by rel_l2:
 *   sgemm at odd sizes (1, 3, 17, 63, 1025), both transB, leading
 *   dimensions past the width (the padding must stay untouched), alpha and
 *   beta; fp32, so < 1e-5 (no TF32);
 *   linear with a bias or none, accumulate or not, y written into a wider
 *   buffer (ldy > N) at an odd offset; in fp32 (< 1e-5) and, where the GPU
 *   has them, bf16 (< 1e-2) and fp16 (< 2e-3) products;
 *   the weight cache: after forget(), a changed weight is read again;
 *   weights past the plugin's staged-upload threshold (4 MiB; 16 MiB pinned
 *   chunks), float32 and bf16, at a host address off 16-byte alignment,
 *   their host memory overwritten as soon as linear() returns;
 *   attention with q, k, v packed in one [L, 3C] buffer, a mask with -inf
 *   entries, o with ldo > C.
 * Without a usable GPU it checks that selecting the plugin fails with one
 * line and leaves the CPU active, and skips (77) saying why.
 * Usage: test_cuda_sgemm [PLUGIN] (default cuda/.libs/libcascade-cuda.so) */
#include "backend.h"
#include "device.h"
#include "error.h"
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t sizes[] = {1, 3, 17, 63, 1025};
static const cs_dev_ops *d;
static int fails, runs;

static void fill(float *x, size_t n, unsigned s)
{
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static float *up(const float *h, size_t n)
{
    float *p = d->alloc(n * 4);
    if (!p || d->upload(p, h, n * 4)) {
        printf("FAIL: device memory for %zu floats: %s\n", n, d->errmsg());
        exit(1);
    }
    return p;
}

/* rows x cols of ld-strided y against ref; the padding must be equal too */
static void check(const char *what, const float *y, const float *ref, size_t rows, size_t cols, size_t ld, double lim)
{
    double e2 = 0, r2 = 0;
    int pad_ok = 1;
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            double e = (double)y[r * ld + c] - ref[r * ld + c];
            e2 += e * e, r2 += (double)ref[r * ld + c] * ref[r * ld + c];
        }
        for (size_t c = cols; c < ld; c++) pad_ok &= y[r * ld + c] == ref[r * ld + c];
    }
    double rel = sqrt(e2 / (r2 > 0 ? r2 : 1));
    runs++;
    if (!(rel < lim) || !pad_ok) {
        printf("FAIL: %s: rel_l2 %.3g (limit %g)%s\n", what, rel, lim, pad_ok ? "" : ", wrote past the width");
        fails++;
    }
}

static void test_sgemm(void)
{
    for (int tB = 0; tB < 2; tB++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) {
                size_t M = sizes[i], N = sizes[j], K = sizes[(i + j + 2 * tB) % 5];
                size_t br = tB ? N : K, bc = tB ? K : N, lda = K + 3, ldb = bc + 1, ldc = N + 2;
                float alpha = 0.75f, beta = (i + j) % 2 ? 0.5f : 0.0f;
                float *A = malloc(M * lda * 4), *B = malloc(br * ldb * 4), *C0 = malloc(M * ldc * 4),
                      *C1 = malloc(M * ldc * 4);
                if (!A || !B || !C0 || !C1) exit(99);
                fill(A, M * lda, 1 + i), fill(B, br * ldb, 7 + j), fill(C0, M * ldc, 3);
                float *dA = up(A, M * lda), *dB = up(B, br * ldb), *dC = up(C0, M * ldc);
                int rc = d->sgemm(tB, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc);
                if (!rc) rc = d->download(C1, dC, M * ldc * 4);
                int rc0 = cs_sgemm(tB, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
                char what[160];
                snprintf(what, sizeof what, "sgemm M=%zu N=%zu K=%zu transB=%d beta=%g", M, N, K, tB, beta);
                if (rc || rc0) {
                    printf("FAIL: %s: rc %d/%d %s\n", what, rc, rc0, rc ? d->errmsg() : cs_last_error());
                    fails++;
                } else
                    check(what, C1, C0, M, N, ldc, 1e-5);
                d->free(dA), d->free(dB), d->free(dC);
                free(A), free(B), free(C0), free(C1);
            }
}

static void test_linear(int prec, double lim)
{
    static const size_t MK[][3] = {{1, 1, 1}, {3, 17, 5}, {63, 64, 96}, {1025, 40, 33}, {200, 320, 256}};
    for (int t = 0; t < 5; t++)
        for (int v = 0; v < 4; v++) {
            size_t M = MK[t][0], K = MK[t][1], N = MK[t][2], ldx = K + (v & 1), off = v & 2 ? 3 : 0,
                   ldy = N + 2 * off + 1;
            int acc = v == 3, has_b = v != 1;
            size_t ny = (M + 1) * ldy;   /* room for the offset and the last row's padding */
            float *x = malloc(M * ldx * 4), *w = malloc(N * K * 4), *b = malloc(N * 4), *y0 = malloc(ny * 4),
                  *y1 = malloc(ny * 4);
            if (!x || !w || !b || !y0 || !y1) exit(99);
            fill(x, M * ldx, 11 + t), fill(w, N * K, 5 + v), fill(b, N, 2), fill(y0, ny, 9);
            cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w, .name = "w"};
            cs_tensor Bt = {.dtype = CS_F32, .ndim = 1, .shape = {(int64_t)N}, .data = b, .name = "b"};
            float *dx = up(x, M * ldx), *dy = up(y0, ny);
            for (int round = 0; round < 2; round++) {
                /* round 1: a new weight in the same host memory, after forget() */
                if (round) {
                    fill(w, N * K, 77 + v);
                    d->forget(w, N * K * 4);
                }
                if (round && d->upload(dy, y0, ny * 4)) exit(1);
                int rc = d->linear(dx, M, K, ldx, &W, has_b ? &Bt : NULL, dy + off, ldy, acc);
                if (!rc) rc = d->download(y1, dy, ny * 4);
                float *ref = malloc(ny * 4);
                if (!ref) exit(99);
                memcpy(ref, y0, ny * 4);
                int rc0 = cs_linear(x, M, K, ldx, &W, has_b ? &Bt : NULL, ref + off, ldy, acc);
                char what[200];
                snprintf(what, sizeof what, "linear prec=%d M=%zu K=%zu N=%zu ldx=%zu ldy=%zu+%zu bias=%d acc=%d%s",
                         prec, M, K, N, ldx, ldy, off, has_b, acc, round ? " (after forget)" : "");
                if (rc || rc0) {
                    printf("FAIL: %s: rc %d/%d %s\n", what, rc, rc0, rc ? d->errmsg() : cs_last_error());
                    fails++;
                } else
                    check(what, y1 + off, ref + off, M, N, ldy, lim);
                free(ref);
            }
            d->forget(w, N * K * 4), d->forget(b, N * 4);
            d->free(dx), d->free(dy);
            free(x), free(w), free(b), free(y0), free(y1);
        }
}

/* bf16 of a float, rounded to nearest even (the inputs are finite) */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void test_big_weight(int prec, double lim)
{
    static const size_t NK[][2] = {{1100, 1025}, {2500, 4099}};   /* 4.3 MiB and 39 MiB as float32 */
    const size_t M = 3;
    for (int t = 0; t < 2; t++)
        for (int bf = 0; bf < 2; bf++) {
            size_t N = NK[t][0], K = NK[t][1], es = bf ? 2 : 4, wb = N * K * es;
            float *x = malloc(M * K * 4), *wf = malloc(N * K * 4), *ref = malloc(M * N * 4), *y = malloc(M * N * 4);
            unsigned char *raw = malloc(wb + 4);   /* the weight at raw + 4: off 16-byte alignment */
            if (!x || !wf || !ref || !y || !raw) exit(99);
            fill(x, M * K, 3 + t), fill(wf, N * K, 8 + bf);
            void *w = raw + 4;
            if (bf)
                for (size_t i = 0; i < N * K; i++) {
                    uint16_t h = to_bf16(wf[i]);
                    memcpy((unsigned char *)w + 2 * i, &h, 2);
                }
            else
                memcpy(w, wf, wb);
            cs_tensor W = {.dtype = bf ? CS_BF16 : CS_F32, .ndim = 2, .shape = {(int64_t)N, (int64_t)K}, .data = w,
                           .name = "big"};
            int rc0 = cs_linear(x, M, K, K, &W, NULL, ref, N, 0);
            float *dx = up(x, M * K), *dy = d->alloc(M * N * 4);
            int rc = dy ? d->linear(dx, M, K, K, &W, NULL, dy, N, 0) : 1;
            memset(raw, 0x7f, wb + 4);   /* the upload must have read it already */
            if (!rc) rc = d->download(y, dy, M * N * 4);
            char what[160];
            snprintf(what, sizeof what, "staged weight prec=%d %s [%zu, %zu] (%.1f MiB)", prec, bf ? "bf16" : "f32", N,
                     K, wb / 1048576.0);
            if (rc || rc0) {
                printf("FAIL: %s: rc %d/%d %s\n", what, rc, rc0, rc ? d->errmsg() : cs_last_error());
                fails++;
            } else
                check(what, y, ref, M, N, N, lim);
            d->forget(w, wb);
            cs_param_forget(w, wb);
            d->free(dx), d->free(dy);
            free(x), free(wf), free(ref), free(y), free(raw);
        }
}

static void test_attention(int prec, double lim)
{
    static const size_t shapes[][4] = {{1, 1, 1, 8}, {2, 5, 7, 64}, {2, 70, 77, 128}, {1, 300, 300, 64}};
    for (int s = 0; s < 4; s++)
        for (int masked = 0; masked < 2; masked++) {
            size_t N = shapes[s][0], Lq = shapes[s][1], Lk = shapes[s][2], C = shapes[s][3];
            int nh = C >= 64 ? 4 : 1;
            size_t ld = 3 * C, ldo = C + 4, L = Lq > Lk ? Lq : Lk;
            float *qkv = malloc(N * L * ld * 4), *mask = malloc(N * Lq * Lk * 4), *o0 = malloc(N * Lq * ldo * 4),
                  *o1 = malloc(N * Lq * ldo * 4);
            if (!qkv || !mask || !o0 || !o1) exit(99);
            fill(qkv, N * L * ld, 4 + s), fill(o0, N * Lq * ldo, 6);
            /* -inf past a per-row limit (never the whole row), else 0 */
            for (size_t n = 0; n < N; n++)
                for (size_t i = 0; i < Lq; i++)
                    for (size_t j = 0; j < Lk; j++) mask[(n * Lq + i) * Lk + j] = j > (i + n) % Lk ? -INFINITY : 0.0f;
            float *dq = up(qkv, N * L * ld), *dm = up(mask, N * Lq * Lk), *dout = up(o0, N * Lq * ldo);
            /* q rows: stride ld within an image of Lq rows; k, v: Lk rows of stride ld */
            int rc = d->attention(dq, ld, dq + C, ld, dq + 2 * C, ld, N, Lq, Lk, C, nh, masked ? dm : NULL, dout, ldo);
            if (!rc) rc = d->download(o1, dout, N * Lq * ldo * 4);
            int rc0 = cs_attention(qkv, ld, qkv + C, ld, qkv + 2 * C, ld, N, Lq, Lk, C, nh, masked ? mask : NULL, o0,
                                   ldo);
            char what[160];
            snprintf(what, sizeof what, "attention prec=%d N=%zu Lq=%zu Lk=%zu C=%zu heads=%d mask=%d", prec, N, Lq, Lk,
                     C, nh, masked);
            if (rc || rc0) {
                printf("FAIL: %s: rc %d/%d %s\n", what, rc, rc0, rc ? d->errmsg() : cs_last_error());
                fails++;
            } else
                check(what, o1, o0, N * Lq, C, ldo, lim);
            d->free(dq), d->free(dm), d->free(dout);
            free(qkv), free(mask), free(o0), free(o1);
        }
}

int main(int argc, char **argv)
{
    const char *plugin = argc > 1 ? argv[1] : "cuda/.libs/libcascade-cuda.so";
    if (cs_backend_select(plugin)) {
        const char *e = cs_last_error();
        if (!strstr(e, "not usable here: ") || strchr(e, '\n') || strcmp(cs_backend_name(), "cpu")) {
            printf("FAIL: loading %s: %s\n", plugin, e);
            return 1;
        }
        printf("SKIP: no usable GPU here (%s)\n", e);
        return 77;
    }
    if (strcmp(cs_backend_name(), "cuda") || !(d = cs_backend_active()->ops)) {
        printf("FAIL: active backend %s, with%s an op set\n", cs_backend_name(), d ? "" : "out");
        return 1;
    }
    /* this thread is not in device mode: the cs_* calls run on the CPU */
    test_sgemm();
    d->mem_peak(1);
    test_linear(CS_PREC_FP32, 1e-5);
    test_big_weight(CS_PREC_FP32, 1e-5);
    if (d->mem_peak(0) < 32 * 40 * 4) {
        printf("FAIL: mem_peak %zu after the linear tests\n", d->mem_peak(0));
        fails++;
    }
    test_attention(CS_PREC_FP32, 1e-5);
    static const struct {
        int prec;
        const char *name;
        double lim;
    } half[] = {{CS_PREC_BF16, "bf16", 1e-2}, {CS_PREC_FP16, "fp16", 2e-3}};
    for (int h = 0; h < 2; h++) {
        if (d->set_precision(half[h].prec)) {
            printf("%s: not on this GPU (%s)\n", half[h].name, d->errmsg());
            continue;
        }
        test_linear(half[h].prec, half[h].lim);
        test_big_weight(half[h].prec, half[h].lim);
        test_attention(half[h].prec, half[h].lim);
    }
    d->set_precision(CS_PREC_FP32);
    cs_backend_release();
    printf("%d comparisons: %s\n", runs, fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
