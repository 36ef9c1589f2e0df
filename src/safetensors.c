#include "safetensors.h"

#include "cancel.h"
#include "device.h"
#include "error.h"
#include "infile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static void maps_set(const unsigned char *p, size_t n, int add);   /* below, with cs_st_release_pages */

struct cs_st_file {
    char *path;
    int fd;
    unsigned char *map;
    uint64_t size;
    const unsigned char *data;  /* first data byte */
    uint64_t data_size;
    int n;
    cs_tensor *t;
    char **names;
    uint32_t *slot;     /* hash table of tensor index + 1, 0 = empty */
    uint32_t nslot;     /* power of two */
    int n_meta;
    char **meta;        /* key, value pairs */
};

typedef struct { uint64_t b, e; int i; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b;
}

static uint32_t hash_name(const char *s) { return (uint32_t)XXH3_64bits(s, strlen(s)); }

static int index_names(cs_st_file *f)
{
    uint32_t ns = 16;
    while (ns < (uint32_t)f->n * 2u) ns <<= 1;
    f->nslot = ns;
    f->slot = calloc(ns, sizeof *f->slot);
    if (!f->slot) return cs_error(CS_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++) {
        uint32_t h = hash_name(f->names[i]) & (ns - 1);
        while (f->slot[h]) {
            if (!strcmp(f->names[f->slot[h] - 1], f->names[i]))
                return cs_error(CS_EFORMAT, "%s: tensor '%s' appears twice", f->path, f->names[i]);
            h = (h + 1) & (ns - 1);
        }
        f->slot[h] = (uint32_t)i + 1;
    }
    return 0;
}

static int parse_meta(cs_st_file *f, json_t *m)
{
    if (!json_is_object(m))
        return cs_error(CS_EFORMAT, "%s: __metadata__ is not an object", f->path);
    size_t n = json_object_size(m);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return cs_error(CS_ENOMEM, "%s: out of memory", f->path);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return cs_error(CS_EFORMAT, "%s: __metadata__ value of '%s' is not a string", f->path, k);
        f->meta[2 * f->n_meta] = strdup(k);
        f->meta[2 * f->n_meta + 1] = strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return cs_error(CS_ENOMEM, "%s: out of memory", f->path);
    }
    return 0;
}

/* One tensor entry; on success fills f->t[i]. */
static int parse_entry(cs_st_file *f, int i, const char *name, json_t *v, span *sp)
{
    const char *p = f->path;
    if (!json_is_object(v)) return cs_error(CS_EFORMAT, "%s: %s: entry is not an object", p, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return cs_error(CS_EFORMAT, "%s: %s: missing or non-string dtype", p, name);
    int d = cs_dtype_from_name(json_string_value(dt));
    if (d < 0) return cs_error(CS_EFORMAT, "%s: %s: unknown dtype '%s'", p, name, json_string_value(dt));
    if (!json_is_array(sh)) return cs_error(CS_EFORMAT, "%s: %s: missing or non-array shape", p, name);
    size_t nd = json_array_size(sh);
    if (nd > CS_MAX_DIMS) return cs_error(CS_EFORMAT, "%s: %s: %zu dimensions (max %d)", p, name, nd, CS_MAX_DIMS);
    cs_tensor *t = &f->t[i];
    t->dtype = (cs_dtype)d;
    t->ndim = (int)nd;
    t->name = name;
    uint64_t numel = 1;
    for (size_t k = 0; k < nd; k++) {
        json_t *e = json_array_get(sh, k);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return cs_error(CS_EFORMAT, "%s: %s: shape entry %zu is not a non-negative integer", p, name, k);
        uint64_t dim = (uint64_t)json_integer_value(e);
        if (dim && numel > UINT64_MAX / dim)
            return cs_error(CS_EFORMAT, "%s: %s: shape overflows 64 bits", p, name);
        numel *= dim;
        t->shape[k] = (int64_t)dim;
    }
    uint64_t es = cs_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es) return cs_error(CS_EFORMAT, "%s: %s: byte size overflows 64 bits", p, name);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return cs_error(CS_EFORMAT, "%s: %s: data_offsets is not a pair of integers", p, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b)
        return cs_error(CS_EFORMAT, "%s: %s: bad data_offsets [%lld, %lld]", p, name, (long long)b, (long long)e);
    if ((uint64_t)e > f->data_size)
        return cs_error(CS_EFORMAT, "%s: %s: data_offsets end %lld is past the end of the data (%llu bytes)", p,
                        name, (long long)e, (unsigned long long)f->data_size);
    if ((uint64_t)(e - b) != numel * es)
        return cs_error(CS_EFORMAT, "%s: %s: shape and dtype need %llu bytes but data_offsets span %llu", p, name,
                        (unsigned long long)(numel * es), (unsigned long long)(e - b));
    t->data = f->data + b;
    sp->b = (uint64_t)b;
    sp->e = (uint64_t)e;
    sp->i = i;
    return 0;
}

static int parse_header(cs_st_file *f, const char *json, size_t len)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cs_error(CS_EFORMAT, "%s: header is not valid JSON: %s", f->path, je.text);
    int rc = 0;
    span *sp = NULL;
    if (!json_is_object(root)) {
        rc = cs_error(CS_EFORMAT, "%s: header is not a JSON object", f->path);
        goto out;
    }
    size_t n = json_object_size(root);
    json_t *m = json_object_get(root, "__metadata__");
    if (m) {
        if ((rc = parse_meta(f, m))) goto out;
        n--;
    }
    f->t = calloc(n + 1, sizeof *f->t);
    f->names = calloc(n + 1, sizeof *f->names);
    sp = calloc(n + 1, sizeof *sp);
    if (!f->t || !f->names || !sp) {
        rc = cs_error(CS_ENOMEM, "%s: out of memory", f->path);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) continue;
        int i = f->n;
        f->names[i] = strdup(k);
        if (!f->names[i]) {
            rc = cs_error(CS_ENOMEM, "%s: out of memory", f->path);
            goto out;
        }
        f->n++;
        if ((rc = parse_entry(f, i, f->names[i], v, &sp[i]))) goto out;
    }
    qsort(sp, (size_t)f->n, sizeof *sp, cmp_span);
    /* sorted by begin: a tensor overlaps iff it starts before the furthest end so far */
    int far = -1;
    for (int i = 0; i < f->n; i++) {
        if (sp[i].e == sp[i].b) continue;
        if (far >= 0 && sp[i].b < sp[far].e) {
            rc = cs_error(CS_EFORMAT, "%s: tensors '%s' and '%s' overlap", f->path, f->names[sp[far].i],
                          f->names[sp[i].i]);
            goto out;
        }
        if (far < 0 || sp[i].e > sp[far].e) far = i;
    }
    rc = index_names(f);
out:
    free(sp);
    json_decref(root);
    return rc;
}

int cs_st_open(const char *path, cs_st_file **out)
{
    *out = NULL;
    cs_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return cs_error(CS_ENOMEM, "%s: out of memory", path);
    }
    f->fd = -1;
    int rc;
    if ((rc = cs_infile_open(path, "model file", CS_MAX_MODEL_FILE, &f->fd, &f->size)) != 0)
        goto fail;
    if (f->size < 8) {
        rc = cs_error(CS_EFORMAT, "%s: too short for a safetensors file (%llu bytes)", path,
                      (unsigned long long)f->size);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = cs_error(CS_EIO, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f->map[i];
    if (hl > CS_ST_MAX_HEADER) {
        rc = cs_error(CS_EFORMAT, "%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)hl);
        goto fail;
    }
    if (hl > f->size - 8) {
        rc = cs_error(CS_EFORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                      (unsigned long long)hl, (unsigned long long)f->size);
        goto fail;
    }
    f->data = f->map + 8 + hl;
    f->data_size = f->size - 8 - hl;
    if ((rc = parse_header(f, (const char *)f->map + 8, (size_t)hl))) goto fail;
    maps_set(f->map, f->size, 1);
    *out = f;
    return 0;
fail:
    cs_st_close(f);
    return rc;
}

/* The open files' mappings: cs_st_release_pages drops pages only inside
 * one of these (MAP_SHARED, read-only: dropped pages come back from the
 * page cache or the file on the next touch). Files past the table's size
 * are just not released early. */
#define MAX_MAPS 64
static struct { const unsigned char *p; size_t n; } maps[MAX_MAPS];
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static void maps_set(const unsigned char *p, size_t n, int add)
{
    pthread_mutex_lock(&maps_lock);
    for (int i = 0; i < MAX_MAPS; i++) {
        if (add && !maps[i].p) {
            maps[i].p = p, maps[i].n = n;
            break;
        }
        if (!add && maps[i].p == p) {
            maps[i].p = NULL, maps[i].n = 0;
            break;
        }
    }
    pthread_mutex_unlock(&maps_lock);
}

int cs_st_release_pages(const void *p, size_t bytes)
{
    const unsigned char *a = p, *e = a + bytes;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return 0;
    uintptr_t lo = ((uintptr_t)a + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1), hi = (uintptr_t)e & ~(uintptr_t)(pg - 1);
    int done = 0;
    pthread_mutex_lock(&maps_lock);
    for (int i = 0; i < MAX_MAPS && !done; i++)
        if (maps[i].p && a >= maps[i].p && e <= maps[i].p + maps[i].n) {
            if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
            done = 1;
        }
    pthread_mutex_unlock(&maps_lock);
    return done;
}

void cs_st_close(cs_st_file *f)
{
    if (!f) return;
    /* a device's copies of these weights go with the mapping (the address may come back for another file) */
    if (f->map) cs_param_forget(f->map, f->size);
    if (f->map) maps_set(f->map, f->size, 0);
    if (f->map) munmap(f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) free(f->names[i]);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->names);
    free(f->meta);
    free(f->t);
    free(f->slot);
    free(f->path);
    free(f);
}

const char *cs_st_path(const cs_st_file *f) { return f->path; }
uint64_t cs_st_file_size(const cs_st_file *f) { return f->size; }
int cs_st_count(const cs_st_file *f) { return f->n; }
const cs_tensor *cs_st_at(const cs_st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }

const cs_tensor *cs_st_find(const cs_st_file *f, const char *name)
{
    uint32_t h = hash_name(name) & (f->nslot - 1);
    while (f->slot[h]) {
        if (!strcmp(f->names[f->slot[h] - 1], name)) return &f->t[f->slot[h] - 1];
        h = (h + 1) & (f->nslot - 1);
    }
    return NULL;
}

const char *cs_st_meta(const cs_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

int cs_st_meta_count(const cs_st_file *f) { return f->n_meta; }

void cs_st_meta_at(const cs_st_file *f, int i, const char **key, const char **value)
{
    *key = f->meta[2 * i];
    *value = f->meta[2 * i + 1];
}

/* ---- writer ---- */

/* Reads the umask from /proc (umask() would change it for other threads
 * while it is read); 022 where /proc does not say. */
unsigned cs_st_umask_mode(unsigned mode)
{
    unsigned m = 022;
    FILE *f = fopen("/proc/self/status", "re");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1) break;
    if (f) fclose(f);
    return mode & ~m & 0777;
}

int cs_st_write(const char *path, const cs_tensor *tensors, int n, const char *const *meta, int n_meta)
{
    json_t *root = json_object();
    if (!root) return cs_error(CS_ENOMEM, "%s: out of memory", path);
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const cs_tensor *t = &tensors[i];
        json_t *e = json_object(), *sh = json_array();
        for (int k = 0; k < t->ndim; k++) json_array_append_new(sh, json_integer(t->shape[k]));
        uint64_t bytes = (uint64_t)cs_tensor_numel(t) * cs_dtype_size(t->dtype);
        json_object_set_new(e, "dtype", json_string(cs_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", sh);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + bytes)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(root, t->name, e);
        off += bytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return cs_error(CS_ENOMEM, "%s: out of memory", path);
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    size_t tl = strlen(path) + 16;
    char *tmp = malloc(tl);
    if (!tmp) {
        free(hdr);
        return cs_error(CS_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tl, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd >= 0) fchmod(fd, cs_st_umask_mode(0666));   /* a checkpoint, not a secret */
    int h = fd >= 0 ? cs_cleanup_add(tmp, 0) : 0;   /* removed even if a signal ends us */
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    int rc = 0;
    if (!fp) {
        rc = cs_error(CS_EIO, "%s: %s", path, cs_strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hdr, 1, hl, fp) == hl, e = 0;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++) {
        size_t bytes = (size_t)cs_tensor_numel(&tensors[i]) * cs_dtype_size(tensors[i].dtype);
        ok = !bytes || fwrite(tensors[i].data, 1, bytes, fp) == bytes;
    }
    if (!ok) e = errno;   /* the first failure says why (EFBIG: ulimit -f) */
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) ok = 0, e = e ? e : errno;
    if (fclose(fp) != 0) ok = 0, e = e ? e : errno;
    if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
    if (!ok) {
        rc = cs_error(CS_EIO, "%s: write failed: %s", path, cs_strerror(e));
        unlink(tmp);
    }
out:
    cs_cleanup_del(h);
    free(tmp);
    free(hdr);
    return rc;
}
