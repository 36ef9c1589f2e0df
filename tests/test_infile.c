/* Special files as inputs: a FIFO, a link to /dev/zero, a folder, a file
 * over the limit of its kind are refused at once with one line naming the
 * file, by the shared check (src/infile.c) and by each reader that uses it:
 * safetensors, tokenizer files, config.json, plugins, the hash cache.
 * Runs under alarm(): a reader that blocks on a FIFO or reads /dev/zero
 * forever makes the test fail instead of hanging. */
#include "check.h"
#include "backend.h"
#include "clip.h"
#include "error.h"
#include "infile.h"
#include "models.h"
#include "safetensors.h"
#include "tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static const char *at(const char *name) { return check_path(dir, name); }   /* valid until 4 more calls */

static void put(const char *name, const void *data, size_t n)
{
    FILE *f = fopen(at(name), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        printf("ERROR: cannot write %s\n", at(name));
        exit(99);
    }
}

/* the error names the file and says what it is */
static int says(const char *path, const char *what)
{
    const char *e = cs_last_error();
    return strstr(e, path) && strstr(e, what) && !strchr(e, '\n');
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "FAIL: timed out (a reader blocked on a FIFO or read an endless file)\n";
    if (write(1, m, sizeof m - 1)) {}
    _exit(1);
}

static void rm_tree(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(60);
    snprintf(dir, sizeof dir, "%s/test_infile.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) { printf("ERROR: mkdtemp\n"); return 99; }
    atexit(rm_tree);
    char *fifo = strdup(at("fifo")), *zero = strdup(at("zero"));
    if (mkfifo(fifo, 0600) || symlink("/dev/zero", zero) || mkdir(at("sub"), 0700)) {
        printf("ERROR: cannot make the special files\n");
        return 99;
    }
    put("ten", "0123456789", 10);
    int fd = -1;
    char *buf;
    size_t len;
    uint64_t size;

    /* the shared check */
    CHECK(cs_infile_open(fifo, "model file", CS_MAX_MODEL_FILE, &fd, &size) == CS_EIO && fd == -1 &&
          says(fifo, "not a regular file (a FIFO)"), "fifo: %s", cs_last_error());
    CHECK(cs_infile_read(zero, "tokenizer file", CS_MAX_TOKENIZER_FILE, &buf, &len) == CS_EIO && !buf &&
          says(zero, "not a regular file (a character device)"), "/dev/zero link: %s", cs_last_error());
    CHECK(cs_infile_read(at("sub"), "config file", CS_MAX_CONFIG_FILE, &buf, &len) == CS_EIO &&
          says(at("sub"), "not a regular file (a folder)"), "folder: %s", cs_last_error());
    CHECK(cs_infile_read(at("none"), "config file", CS_MAX_CONFIG_FILE, &buf, &len) == CS_EIO && errno == ENOENT &&
          says(at("none"), "cannot open: No such file"), "missing: %s", cs_last_error());
    CHECK(cs_infile_read(at("ten"), "test file", 10, &buf, &len) == 0 && len == 10 && !strcmp(buf, "0123456789"),
          "at the limit: %s", cs_last_error());
    free(buf);
    CHECK(cs_infile_read(at("ten"), "test file", 9, &buf, &len) == CS_EFORMAT &&
          says(at("ten"), "10 bytes, more than the 9 bytes a test file may have"), "over the limit: %s",
          cs_last_error());
    CHECK(cs_infile_open(at("ten"), "test file", 10, &fd, &size) == 0 && fd >= 0 && size == 10 &&
          !(fcntl(fd, F_GETFL) & O_NONBLOCK), "open: %s", cs_last_error());
    if (fd >= 0) close(fd);
    /* a sparse vocabulary of 64 MiB + 1: over its limit without reading it */
    int sp = open(at("vocab.json"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(sp >= 0 && ftruncate(sp, (off_t)CS_MAX_TOKENIZER_FILE + 1) == 0, "sparse file");
    if (sp >= 0) close(sp);
    CHECK(cs_infile_read(at("vocab.json"), "tokenizer file", CS_MAX_TOKENIZER_FILE, &buf, &len) == CS_EFORMAT &&
          says(at("vocab.json"), "more than the 64 MiB a tokenizer file may have"), "big vocab: %s", cs_last_error());

    /* each reader */
    cs_st_file *sf;
    CHECK(cs_st_open(fifo, &sf) < 0 && says(fifo, "(a FIFO)"), "safetensors fifo: %s", cs_last_error());
    CHECK(cs_st_open(zero, &sf) < 0 && says(zero, "(a character device)"), "safetensors zero: %s", cs_last_error());
    cs_tokenizer *tok;
    CHECK(cs_tokenizer_load(dir, &tok) < 0 && says(at("vocab.json"), "more than"), "tokenizer big: %s",
          cs_last_error());
    unlink(at("vocab.json"));
    CHECK(symlink("/dev/zero", at("vocab.json")) == 0, "link");
    CHECK(cs_tokenizer_load(dir, &tok) < 0 && says(at("vocab.json"), "(a character device)"), "tokenizer zero: %s",
          cs_last_error());
    unlink(at("vocab.json"));
    CHECK(mkfifo(at("vocab.json"), 0600) == 0, "mkfifo");
    CHECK(cs_tokenizer_load(dir, &tok) < 0 && says(at("vocab.json"), "(a FIFO)"), "tokenizer fifo: %s",
          cs_last_error());
    CHECK(cs_backend_select(fifo) < 0 && says(fifo, "(a FIFO)"), "plugin fifo: %s", cs_last_error());
    CHECK(!strcmp(cs_backend_name(), "cpu"), "CPU path not kept");
    CHECK(mkdir(at("plugins"), 0700) == 0 && mkfifo(at("plugins/libcascade-fifo.so"), 0600) == 0, "plugin dir");
    setenv("CASCADE_PLUGIN_DIR", at("plugins"), 1);
    CHECK(cs_backend_select("fifo") < 0 && says(at("plugins/libcascade-fifo.so"), "(a FIFO)"),
          "plugin fifo in the plugin folder: %s", cs_last_error());
    /* config.json beside a text encoder (an empty safetensors file is enough to get there) */
    static const unsigned char empty_st[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    put("model.safetensors", empty_st, sizeof empty_st);
    CHECK(mkfifo(at("config.json"), 0600) == 0, "mkfifo config");
    cs_clip *clip = NULL;
    CHECK(cs_clip_open(at("model.safetensors"), &clip) < 0 && says(at("config.json"), "(a FIFO)"),
          "config.json fifo: %s", cs_last_error());
    /* the hash cache: a FIFO or an endless file there is ignored, the hash still computed */
    CHECK(mkdir(at("cache"), 0700) == 0 && mkdir(at("cache/cascade"), 0700) == 0 &&
          mkfifo(at("cache/cascade/hashes"), 0600) == 0, "cache dir");
    setenv("XDG_CACHE_HOME", at("cache"), 1);
    uint64_t h = 0, h2 = 1;
    int cached = 1;
    CHECK(cs_file_xxh64(at("ten"), &h, &cached) == 0 && !cached, "hash with a FIFO cache: %s", cs_last_error());
    unlink(at("cache/cascade/hashes"));
    CHECK(symlink("/dev/zero", at("cache/cascade/hashes")) == 0, "link");
    CHECK(cs_file_xxh64(at("ten"), &h2, &cached) == 0 && h2 == h, "hash with an endless cache: %s", cs_last_error());
    CHECK(cs_file_xxh64(fifo, &h2, &cached) < 0 && says(fifo, "(a FIFO)"), "hash of a fifo: %s", cs_last_error());

    free(fifo);
    free(zero);
    printf("%s\n", failures ? "FAIL" : "PASS");
    return check_exit();
}
