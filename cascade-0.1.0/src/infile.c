/* Checked opening of outside files: see infile.h. stat() first, so that a
 * FIFO or device is never opened at all; then open with O_NONBLOCK (a FIFO
 * swapped in meanwhile cannot block us) and fstat the descriptor we got. */
#include "infile.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cs_infile_kind(mode_t m)
{
    if (S_ISREG(m)) return "a regular file";
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "a special file";
}

static void human(uint64_t n, char *out, size_t len)
{
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    double v = (double)n;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(out, len, "%llu bytes", (unsigned long long)n);
    else snprintf(out, len, "%.*f %s", v == (double)(uint64_t)v ? 0 : 1, v, unit[u]);
}

static const char *cant_open(int e)
{
    static _Thread_local char msg[160];
    snprintf(msg, sizeof msg, "cannot open: %s", strerror(e));
    return msg;
}

/* cs_error keeps errno as the caller's cause */
static int fail(int e, int code, const char *path, const char *msg)
{
    cs_error(code, "%s: %s", path, msg);
    errno = e;
    return code;
}

static int check(const char *path, const char *what, uint64_t max, const struct stat *st)
{
    char msg[256];
    if (!S_ISREG(st->st_mode)) {
        snprintf(msg, sizeof msg, "not a regular file (%s)", cs_infile_kind(st->st_mode));
        return fail(EINVAL, CS_EIO, path, msg);
    }
    if ((uint64_t)st->st_size > max) {
        char a[32], b[32];
        human((uint64_t)st->st_size, a, sizeof a);
        human(max, b, sizeof b);
        snprintf(msg, sizeof msg, "%s, more than the %s a %s may have", a, b, what);
        return fail(EFBIG, CS_EFORMAT, path, msg);
    }
    return 0;
}

int cs_infile_open(const char *path, const char *what, uint64_t max, int *fd, uint64_t *size)
{
    struct stat st;
    if (fd) *fd = -1;
    if (stat(path, &st) != 0) return fail(errno, CS_EIO, path, cant_open(errno));
    int rc = check(path, what, max, &st);
    if (rc || !fd) {
        if (!rc && size) *size = (uint64_t)st.st_size;
        return rc;
    }
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0) return fail(errno, CS_EIO, path, cant_open(errno));
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return fail(e, CS_EIO, path, strerror(e));
    }
    if ((rc = check(path, what, max, &st)) != 0) {
        int e = errno;
        close(f);
        errno = e;
        return rc;
    }
    int fl = fcntl(f, F_GETFL);
    if (fl != -1) fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    if (size) *size = (uint64_t)st.st_size;
    return 0;
}

int cs_infile_read(const char *path, const char *what, uint64_t max, char **buf, size_t *len)
{
    int fd;
    uint64_t size;
    *buf = NULL;
    if (len) *len = 0;
    int rc = cs_infile_open(path, what, max, &fd, &size);
    if (rc) return rc;
    /* size is a hint (files in /proc say 0); read to EOF, at most max bytes */
    size_t cap = (size_t)size + 1 < 4096 ? 4096 : (size_t)size + 1, n = 0;
    char *p = malloc(cap);
    for (;;) {
        if (!p) {
            close(fd);
            return fail(ENOMEM, CS_ENOMEM, path, "out of memory");
        }
        if (n == cap - 1) {
            if ((uint64_t)n > max) break;
            char *q = realloc(p, cap *= 2);
            if (!q) free(p);
            p = q;
            continue;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(p);
            close(fd);
            return fail(e, CS_EIO, path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if ((uint64_t)n > max) {
        free(p);
        char b[32], msg[160];
        human(max, b, sizeof b);
        snprintf(msg, sizeof msg, "grew past the %s a %s may have while being read", b, what);
        return fail(EFBIG, CS_EFORMAT, path, msg);
    }
    p[n] = 0;
    *buf = p;
    if (len) *len = n;
    return 0;
}
