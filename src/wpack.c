/* The packed bf16 weight cache (wpack.h). A plain array searched from the
 * most recent entry: a network has a few hundred weights and a forward a
 * few thousand products, so a search costs microseconds against
 * milliseconds of arithmetic. */
#include "wpack.h"

#include "error.h"
#include "safetensors.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const void *data;
    cs_dtype dtype;
    int kn;   /* the data is [K, N] (cs_wpack_get_kn) */
    size_t N, K, bytes;
    cs_wpack w;
} entry;

static entry *tab;
static size_t n_tab, cap_tab, held;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* one 16-bit or 32-bit weight as bf16 bits */
static uint16_t weight_bf16(const unsigned char *row, cs_dtype dt, size_t k)
{
    if (dt == CS_BF16) {
        uint16_t h;
        memcpy(&h, row + 2 * k, 2);   /* the mmap gives no alignment promise */
        return h;
    }
    if (dt == CS_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * k, 2);
        return cs_f32_to_bf16(cs_f16_to_f32(h));
    }
    float f;
    memcpy(&f, row + 4 * k, 4);
    return cs_f32_to_bf16(f);
}

/* panel o of rows [n0, n0 + nr) of a BF16 weight: a whole pair is the
 * uint32 at row + 4q as it is, so the panel is a transpose of 16 rows of
 * pairs, 16 pairs at a time through t (rows read along, the panel written
 * in order; per element this was ~5x slower) */
static void pack_bf16_panel(const unsigned char *base, size_t n0, size_t nr, size_t K, uint32_t *o)
{
    size_t full = K / 2, KP = (K + 1) / 2;
    uint32_t t[16][16];
    for (size_t q0 = 0; q0 < full; q0 += 16) {
        size_t nq = full - q0 < 16 ? full - q0 : 16;
        for (size_t c = 0; c < 16; c++) {
            if (c < nr) memcpy(t[c], base + ((n0 + c) * K + 2 * q0) * 2, 4 * nq);
            else memset(t[c], 0, sizeof t[c]);
        }
        for (size_t q = 0; q < nq; q++)
            for (size_t c = 0; c < 16; c++) o[(q0 + q) * 16 + c] = t[c][q];
    }
    if (KP > full)   /* an odd K: the last pair's high half is zero */
        for (size_t c = 0; c < 16; c++) {
            uint16_t h = 0;
            if (c < nr) memcpy(&h, base + ((n0 + c) * K + K - 1) * 2, 2);
            o[full * 16 + c] = h;
        }
}

/* panel j: pair q, column c = bf16(W[16j+c][2q]) | bf16(W[16j+c][2q+1]) << 16, zero past N and K;
 * kn: W is [K, N], the same with W[2q][16j+c] and W[2q+1][16j+c] (rows read along) */
static void pack(const cs_tensor *W, size_t N, size_t K, int kn, uint32_t *out, size_t pstride)
{
    size_t P = (N + 15) / 16, es = W->dtype == CS_F32 ? 4 : 2, KP = (K + 1) / 2;
    const unsigned char *base = W->data;
#pragma omp parallel for schedule(static) if (N * K >= (1u << 16))
    for (size_t j = 0; j < P; j++) {
        uint32_t *o = out + j * pstride;
        if (kn) {
            for (size_t q = 0; q < KP; q++) {
                const unsigned char *r0 = base + 2 * q * N * es, *r1 = r0 + N * es;
                for (size_t c = 0; c < 16; c++) {
                    size_t n = 16 * j + c;
                    uint32_t lo = n < N ? weight_bf16(r0, W->dtype, n) : 0;
                    uint32_t hi = n < N && 2 * q + 1 < K ? weight_bf16(r1, W->dtype, n) : 0;
                    o[q * 16 + c] = lo | hi << 16;
                }
            }
            continue;
        }
        if (W->dtype == CS_BF16) {
            pack_bf16_panel(base, 16 * j, N - 16 * j < 16 ? N - 16 * j : 16, K, o);
            continue;
        }
        for (size_t c = 0; c < 16; c++) {
            size_t n = 16 * j + c;
            if (n >= N) {
                for (size_t q = 0; q < KP; q++) o[q * 16 + c] = 0;
                continue;
            }
            const unsigned char *row = base + n * K * es;
            for (size_t q = 0; q < KP; q++) {
                uint32_t lo = weight_bf16(row, W->dtype, 2 * q);
                uint32_t hi = 2 * q + 1 < K ? weight_bf16(row, W->dtype, 2 * q + 1) : 0;
                o[q * 16 + c] = lo | hi << 16;
            }
        }
    }
}

static int get(const cs_tensor *W, size_t N, size_t K, int kn, cs_wpack *out)
{
    const char *name = W->name ? W->name : "weight";
    if (W->dtype != CS_F32 && W->dtype != CS_BF16 && W->dtype != CS_F16)
        return cs_error(CS_EUNSUP, "%s: weight dtype %s is not a float type", name, cs_dtype_name(W->dtype));
    size_t es = W->dtype == CS_F32 ? 4 : 2, rowb = K * es;
    const char *d = W->data;
    pthread_mutex_lock(&lock);
    for (size_t i = n_tab; i-- > 0;) {
        /* W itself, or rows [r0, r0 + N) of a packed weight with r0 a
         * multiple of 16 (a view such as an in_proj's k|v rows): its panels */
        entry *e = &tab[i];
        const char *ed = e->data;
        if (e->kn != kn || e->dtype != W->dtype || e->K != K) continue;
        if (kn) {   /* no views of a [K, N] weight */
            if (d != ed || e->N != N) continue;
            *out = e->w;
            pthread_mutex_unlock(&lock);
            return 0;
        }
        if (d < ed || d >= ed + e->N * rowb || (size_t)(d - ed) % rowb) continue;
        size_t r0 = (size_t)(d - ed) / rowb;
        if (r0 % 16 || r0 + N > e->N) continue;
        *out = (cs_wpack){e->w.p + r0 / 16 * e->w.pstride, e->w.pstride};
        pthread_mutex_unlock(&lock);
        return 0;
    }
    int rc = 0;
    size_t pstride = (K + 1) / 2 * 16, bytes = (N + 15) / 16 * pstride * sizeof(uint32_t);
    uint32_t *p = NULL;
    if (n_tab == cap_tab) {
        size_t nc = cap_tab ? 2 * cap_tab : 256;
        entry *t = realloc(tab, nc * sizeof *t);
        if (!t) {
            rc = cs_error(CS_ENOMEM, "%s: out of memory for the packed-weight table", name);
            goto out;
        }
        tab = t, cap_tab = nc;
    }
    if (!(p = cs_alloc(bytes ? bytes : 64))) {
        rc = cs_error(CS_ENOMEM, "%s: out of memory for %zu MB of packed bf16 weights", name, bytes >> 20);
        goto out;
    }
    pack(W, N, K, kn, p, pstride);
    for (size_t i = 0; i < n_tab;) {   /* views packed before their whole weight: the new entry covers them */
        const char *ed = tab[i].data;
        if (!kn && !tab[i].kn && tab[i].dtype == W->dtype && tab[i].K == K && ed >= d && ed < d + N * rowb && (size_t)(ed - d) % rowb == 0 &&
            (size_t)(ed - d) / rowb % 16 == 0 && (size_t)(ed - d) / rowb + tab[i].N <= N) {
            cs_free((void *)tab[i].w.p);
            held -= tab[i].bytes;
            tab[i] = tab[--n_tab];
        } else i++;
    }
    /* the CPU products no longer read the mapped weight: its pages need not stay resident */
    cs_st_release_pages(W->data, N * rowb);
    tab[n_tab++] = (entry){W->data, W->dtype, kn, N, K, bytes, {p, pstride}};
    held += bytes;
    *out = (cs_wpack){p, pstride};
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

void cs_wpack_forget(const void *host, size_t bytes)
{
    const char *lo = host, *hi = lo + bytes;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_tab;) {
        const char *d = tab[i].data;
        if (d >= lo && d < hi) {
            cs_free((void *)tab[i].w.p);
            held -= tab[i].bytes;
            tab[i] = tab[--n_tab];
        } else i++;
    }
    pthread_mutex_unlock(&lock);
}

void cs_wpack_clear(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_tab; i++) cs_free((void *)tab[i].w.p);
    free(tab);
    tab = NULL, n_tab = cap_tab = held = 0;
    pthread_mutex_unlock(&lock);
}

size_t cs_wpack_bytes(size_t *count)
{
    pthread_mutex_lock(&lock);
    size_t b = held;
    if (count) *count = n_tab;
    pthread_mutex_unlock(&lock);
    return b;
}

int cs_wpack_get(const cs_tensor *W, size_t N, size_t K, cs_wpack *out) { return get(W, N, K, 0, out); }

int cs_wpack_get_kn(const cs_tensor *W, size_t K, size_t N, cs_wpack *out) { return get(W, N, K, 1, out); }
