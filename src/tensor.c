#include "tensor.h"

#include "error.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtypes[CS_DTYPE_COUNT] = {
    [CS_F32] = {"F32", 4},   [CS_F16] = {"F16", 2},   [CS_BF16] = {"BF16", 2}, [CS_F64] = {"F64", 8},
    [CS_I64] = {"I64", 8},   [CS_I32] = {"I32", 4},   [CS_I16] = {"I16", 2},   [CS_I8] = {"I8", 1},
    [CS_U8] = {"U8", 1},     [CS_BOOL] = {"BOOL", 1}, [CS_U16] = {"U16", 2},   [CS_U32] = {"U32", 4},
    [CS_U64] = {"U64", 8},   [CS_F8_E4M3] = {"F8_E4M3", 1}, [CS_F8_E5M2] = {"F8_E5M2", 1},
};

size_t cs_dtype_size(cs_dtype t) { return (unsigned)t < CS_DTYPE_COUNT ? dtypes[t].size : 0; }
const char *cs_dtype_name(cs_dtype t) { return (unsigned)t < CS_DTYPE_COUNT ? dtypes[t].name : "?"; }

int cs_dtype_from_name(const char *s)
{
    for (int i = 0; i < CS_DTYPE_COUNT; i++)
        if (!strcmp(s, dtypes[i].name)) return i;
    return -1;
}

int64_t cs_tensor_numel(const cs_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *cs_shape_str(const cs_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

void *cs_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes > SIZE_MAX - 63 || posix_memalign(&p, 64, bytes ? (bytes + 63) & ~(size_t)63 : 64)) {
        cs_oom("an allocation", bytes);   /* callers that know what it was say so */
        return NULL;
    }
    return p;
}

void *cs_calloc(size_t bytes)
{
    void *p = cs_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cs_free(void *p) { free(p); }

int cs_tensor_to_f32(const cs_tensor *t, float *out)
{
    size_t n = (size_t)cs_tensor_numel(t);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case CS_F32: memcpy(out, p, n * 4); return 0;
    case CS_BF16:
    case CS_F16: {
        uint16_t tmp[256];
        for (size_t i = 0; i < n; i += 256) {   /* via a buffer: the source may be unaligned */
            size_t m = n - i < 256 ? n - i : 256;
            memcpy(tmp, p + 2 * i, 2 * m);
            for (size_t j = 0; j < m; j++)
                out[i + j] = t->dtype == CS_BF16 ? cs_bf16_to_f32(tmp[j]) : cs_f16_to_f32(tmp[j]);
        }
        return 0;
    }
    case CS_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; }
        return 0;
    case CS_I64:
        for (size_t i = 0; i < n; i++) { int64_t v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; }
        return 0;
    case CS_I32:
        for (size_t i = 0; i < n; i++) { int32_t v; memcpy(&v, p + 4 * i, 4); out[i] = (float)v; }
        return 0;
    case CS_U8:
        for (size_t i = 0; i < n; i++) out[i] = p[i];
        return 0;
    default:
        return cs_error(CS_EUNSUP, "%s: dtype %s is not supported here", t->name ? t->name : "tensor",
                        cs_dtype_name(t->dtype));
    }
}

float *cs_tensor_f32_dup(const cs_tensor *t)
{
    float *o = cs_alloc((size_t)cs_tensor_numel(t) * sizeof(float));
    if (!o) {
        cs_error(CS_ENOMEM, "%s: out of memory", t->name ? t->name : "tensor");
        return NULL;
    }
    if (cs_tensor_to_f32(t, o)) {
        cs_free(o);
        return NULL;
    }
    return o;
}
