/* XXH64 of model files, cached by path + size + mtime so that listing a
 * folder of 20 GB of weights is instant after the first time.
 * Cache: $XDG_CACHE_HOME/cascade/hashes (default ~/.cache/cascade/hashes),
 * one line per file: "<16 hex> <size> <mtime s>.<ns> <path>", rewritten
 * whole through a temporary file and rename(). */
#include "models.h"

#include "cancel.h"
#include "error.h"
#include "infile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct {
    uint64_t hash, size;
    long long sec, nsec;
    char *path;
} entry;

static int cache_path(char *buf, size_t len, int make)
{
    const char *c = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[PATH_MAX - 16];
    if (c && c[0] == '/') snprintf(dir, sizeof dir, "%s/cascade", c);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/cascade", home);
    else return -1;
    if (make) {   /* create the parents one level at a time */
        for (char *p = dir + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(dir, 0755);
                *p = '/';
            }
        mkdir(dir, 0755);
    }
    snprintf(buf, len, "%s/hashes", dir);
    return 0;
}

static void free_entries(entry *e, int n)
{
    for (int i = 0; i < n; i++) free(e[i].path);
    free(e);
}

static int load(entry **out, int *n)
{
    char path[PATH_MAX];
    *out = NULL;
    *n = 0;
    if (cache_path(path, sizeof path, 0)) return 0;
    /* a cache that is not a regular file of sane size is ignored (and replaced on save) */
    int fd;
    if (cs_infile_open(path, "cache file", CS_MAX_CACHE_FILE, &fd, NULL)) {
        cs_clear_error();
        return 0;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return 0;
    }
    int cap = 0;
    char line[PATH_MAX + 128];
    while (fgets(line, sizeof line, f)) {
        entry e;
        int off = 0;
        size_t l = strlen(line);
        if (!l || line[l - 1] != '\n') continue;   /* truncated line: ignore */
        line[l - 1] = 0;
        if (sscanf(line, "%16" SCNx64 " %" SCNu64 " %lld.%lld %n", &e.hash, &e.size, &e.sec, &e.nsec, &off) != 4 ||
            !off || !line[off])
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            entry *g = realloc(*out, (size_t)cap * sizeof *g);
            if (!g) break;
            *out = g;
        }
        if (!(e.path = strdup(line + off))) break;
        (*out)[(*n)++] = e;
    }
    fclose(f);
    return 0;
}

static int save(entry *e, int n)
{
    char path[PATH_MAX], tmp[PATH_MAX + 16];
    if (cache_path(path, sizeof path, 1)) return -1;
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return -1;
    int h = cs_cleanup_add(tmp, 0);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        cs_cleanup_del(h);
        return -1;
    }
    for (int i = 0; i < n; i++)
        fprintf(f, "%016" PRIx64 " %" PRIu64 " %lld.%09lld %s\n", e[i].hash, e[i].size, e[i].sec, e[i].nsec, e[i].path);
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        cs_cleanup_del(h);
        return -1;
    }
    cs_cleanup_del(h);
    return 0;
}

static int hash_file(const char *path, uint64_t *out)
{
    int fd, rc = cs_infile_open(path, "model file", CS_MAX_MODEL_FILE, &fd, NULL);
    if (rc) return rc;
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    size_t bs = 8u << 20;
    unsigned char *buf = malloc(bs);
    XXH64_state_t *st = XXH64_createState();
    if (!buf || !st) {
        rc = cs_error(CS_ENOMEM, "out of memory in the hash cache");
        goto out;
    }
    XXH64_reset(st, 0);
    for (;;) {
        if ((rc = cs_cancel_check()) != 0) goto out;   /* 8 MiB blocks: a few ms each */
        ssize_t r = read(fd, buf, bs);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = cs_error(CS_EIO, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (!r) break;
        XXH64_update(st, buf, (size_t)r);
    }
    *out = XXH64_digest(st);
out:
    XXH64_freeState(st);
    free(buf);
    close(fd);
    return rc;
}

static cs_file_stamp stamp_of(const struct stat *st)
{
    return (cs_file_stamp){(uint64_t)st->st_size, (long long)st->st_mtim.tv_sec, (long long)st->st_mtim.tv_nsec};
}

/* e was made of the file as it is at stamp s */
static int entry_is(const entry *e, const cs_file_stamp *s)
{
    return e->size == s->size && e->sec == s->sec && e->nsec == s->nsec;
}

/* Index of the entry for real at st's size and mtime, or -1. */
static int lookup(const entry *e, int n, const char *real, const struct stat *st)
{
    cs_file_stamp s = stamp_of(st);
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].path, real) && entry_is(&e[i], &s)) return i;
    return -1;
}

int cs_file_xxh64_cached(const char *path, uint64_t *hash)
{
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(path, real) || stat(real, &st)) return 0;
    entry *e;
    int n;
    load(&e, &n);
    int i = lookup(e, n, real, &st);
    if (i >= 0) *hash = e[i].hash;
    free_entries(e, n);
    return i >= 0;
}

/* adds (or replaces) real's entry, made of the file at stamp s, keeping
 * the other entries that still match their files; takes e; a cache that
 * cannot be written only costs time */
static void remember(entry *e, int n, const char *real, const cs_file_stamp *s, uint64_t hash)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        struct stat o;
        int keep = strcmp(e[i].path, real) && !stat(e[i].path, &o);
        if (keep) {
            cs_file_stamp os = stamp_of(&o);
            keep = entry_is(&e[i], &os);
        }
        if (keep) e[m++] = e[i];
        else free(e[i].path), e[i].path = NULL;
    }
    entry *g = realloc(e, (size_t)(m + 1) * sizeof *g);
    if (g) {
        e = g;
        e[m] = (entry){hash, s->size, s->sec, s->nsec, (char *)real};
        save(e, m + 1);
        e[m].path = NULL;
    }
    free_entries(e, m);
}

int cs_file_xxh64(const char *path, uint64_t *hash, int *cached)
{
    char real[PATH_MAX];
    struct stat st;
    *cached = 0;
    if (!realpath(path, real) || stat(real, &st)) return cs_error(CS_EIO, "%s: %s", path, strerror(errno));
    if (strchr(real, '\n')) return hash_file(real, hash);   /* not representable in the cache */
    entry *e;
    int n;
    load(&e, &n);
    int hit = lookup(e, n, real, &st);
    if (hit >= 0) {
        *hash = e[hit].hash;
        *cached = 1;
        free_entries(e, n);
        return 0;
    }
    cs_file_stamp s = stamp_of(&st);
    int rc = hash_file(real, hash);
    if (rc) free_entries(e, n);
    else remember(e, n, real, &s, *hash);
    return rc;
}

int cs_file_xxh64_compute(const char *path, uint64_t *hash, cs_file_stamp *stamp)
{
    struct stat st;
    if (stat(path, &st)) return cs_error(CS_EIO, "%s: %s", path, strerror(errno));
    *stamp = stamp_of(&st);   /* before the read: a file changed meanwhile will not match the entry */
    return hash_file(path, hash);
}

void cs_file_xxh64_remember(const char *path, const cs_file_stamp *stamp, uint64_t hash)
{
    char real[PATH_MAX];
    if (!realpath(path, real) || strchr(real, '\n')) return;
    entry *e;
    int n;
    load(&e, &n);
    remember(e, n, real, stamp, hash);
}
