#include "manifest_st.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ms_load(const char *manifest, ms_tensor **out, int *n)
{
    json_error_t err;
    json_t *root = json_load_file(manifest, 0, &err), *ts = root ? json_object_get(root, "tensors") : NULL;
    if (!json_is_array(ts)) {
        fprintf(stderr, "%s: %s\n", manifest, root ? "no tensors list" : err.text);
        json_decref(root);
        return -1;
    }
    size_t cnt = json_array_size(ts);
    ms_tensor *t = calloc(cnt ? cnt : 1, sizeof *t);
    for (size_t i = 0; t && i < cnt; i++) {
        json_t *e = json_array_get(ts, i), *sh = json_array_get(e, 1);
        snprintf(t[i].name, sizeof t[i].name, "%s", json_string_value(json_array_get(e, 0)));
        t[i].ndim = (int)json_array_size(sh);
        for (int d = 0; d < t[i].ndim && d < 8; d++) t[i].shape[d] = json_integer_value(json_array_get(sh, (size_t)d));
    }
    json_decref(root);
    if (!t) return -1;
    *out = t;
    *n = (int)cnt;
    return 0;
}

/* one tensor of the output file: name and the source rows it takes */
typedef struct {
    char name[256];
    const ms_tensor *src;
    int64_t r0, nr;   /* rows of src (the diffusers q/k/v split) */
} item;

static int64_t numel_rows(const ms_tensor *t, int64_t nr)
{
    int64_t n = nr;
    for (int d = 1; d < t->ndim; d++) n *= t->shape[d];
    return t->ndim ? n : 1;
}

static int expand(const ms_tensor *t, int n, const char *prefix, int naming, int stage_b, item **out)
{
    item *it = calloc((size_t)n * 3 + 1, sizeof *it);
    int k = 0;
    if (!it) return -1;
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name, *ip = strstr(nm, "attention.attn.in_proj_");
        if (naming == MS_DIFFUSERS && ip) {
            static const char *q[3] = {"q", "k", "v"};
            int64_t c = t[i].shape[0] / 3;
            for (int j = 0; j < 3; j++) {
                snprintf(it[k].name, sizeof it[k].name, "%s%.*sattention.to_%s.%s", prefix, (int)(ip - nm), nm, q[j],
                         strstr(ip, "weight") ? "weight" : "bias");
                it[k].src = &t[i], it[k].r0 = j * c, it[k++].nr = c;
            }
            continue;
        }
        const char *op = naming == MS_DIFFUSERS ? strstr(nm, "attention.attn.out_proj.") : NULL;
        if (op)
            snprintf(it[k].name, sizeof it[k].name, "%s%.*sattention.to_out.0.%s", prefix, (int)(op - nm), nm,
                     op + strlen("attention.attn.out_proj."));
        else if (naming == MS_DIFFUSERS && stage_b && !strncmp(nm, "clip_mapper.", 12))
            snprintf(it[k].name, sizeof it[k].name, "%sclip_txt_pooled_mapper.%s", prefix, nm + 12);
        else
            snprintf(it[k].name, sizeof it[k].name, "%s%s", prefix, nm);
        it[k].src = &t[i], it[k].r0 = 0, it[k++].nr = t[i].ndim ? t[i].shape[0] : 1;
    }
    *out = it;
    return k;
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* "X.weight" of a BatchNorm: X.running_var is in the file too */
static int bn_weight(const item *it, int k, int i)
{
    const char *nm = it[i].name, *dot = strrchr(nm, '.');
    if (!dot || strcmp(dot, ".weight") || it[i].src->ndim != 1)
        return 0;
    for (int j = 0; j < k; j++)
        if (!strncmp(it[j].name, nm, (size_t)(dot - nm + 1)) && !strcmp(it[j].name + (dot - nm + 1), "running_var"))
            return 1;
    return 0;
}

int ms_write(const char *path, const ms_tensor *t, int n, cs_dtype dt, const char *prefix, int naming, int stage_b,
             int random, uint64_t seed)
{
    item *it;
    int k = expand(t, n, prefix, naming, stage_b, &it);
    if (k < 0) return -1;
    size_t es = cs_dtype_size(dt), cap = 1 << 16, len = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    len += (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < k && h; i++) {
        if (cap - len < 1024) h = realloc(h, cap *= 2);
        if (!h) break;
        const ms_tensor *s = it[i].src;
        uint64_t bytes = (uint64_t)numel_rows(s, it[i].nr) * es;
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", it[i].name,
                                cs_dtype_name(dt));
        for (int d = 0; d < s->ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, d ? ",%lld" : "%lld", (long long)(d ? s->shape[d] : it[i].nr));
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + bytes));
        off += bytes;
    }
    FILE *f = h ? fopen(path, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "%s: cannot write\n", path);
        free(h), free(it);
        return -1;
    }
    h[len++] = '}';
    while (len % 8) h[len++] = ' ';
    uint64_t hl = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    free(h);
    float *buf = NULL;
    void *cv = NULL;
    uint64_t s = seed * 2654435761u + 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < k && ok && random; i++) {
        const ms_tensor *src = it[i].src;
        size_t m = (size_t)numel_rows(src, it[i].nr);
        buf = realloc(buf, m * sizeof(float));
        cv = realloc(cv, m * es);
        if (!buf || !cv) {
            ok = 0;
            break;
        }
        double fan = src->ndim >= 2 ? (double)numel_rows(src, 1) : 0;
        float sc = strstr(it[i].name, "channelwise.2.") ? 0.5f : fan > 0 ? (float)sqrt(3.0 / fan) : 0.1f;
        for (size_t j = 0; j < m; j++) buf[j] = sc * ((float)(rng(&s) >> 40) * (2.0f / 16777216.0f) - 1.0f);
        if (strstr(it[i].name, "running_var"))   /* a BatchNorm's variance: positive, as trained ones are */
            for (size_t j = 0; j < m; j++) buf[j] = 1.0f + fabsf(buf[j]);
        /* its scale near 1, as trained ones are: at +-0.1 the ~60 BatchNorms of
         * the EfficientNet shrink the image's signal to nothing, and the
         * encoder's output no longer depends on the image */
        if (bn_weight(it, k, i))
            for (size_t j = 0; j < m; j++) buf[j] += 1.0f;
        if (dt == CS_F32) memcpy(cv, buf, m * 4);
        else
            for (size_t j = 0; j < m; j++)
                ((uint16_t *)cv)[j] = dt == CS_BF16 ? cs_f32_to_bf16(buf[j]) : cs_f32_to_f16(buf[j]);
        ok = fwrite(cv, es, m, f) == m;
    }
    free(buf), free(cv), free(it);
    ok = ok && fflush(f) == 0 && (random || ftruncate(fileno(f), (off_t)(8 + hl + off)) == 0);
    ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "%s: write failed\n", path);
    return ok ? 0 : -1;
}
