/* Opening files that come from outside (model files, tokenizer files,
 * config.json, plugins, the hash cache): each must be a regular file of at
 * most a known size for its kind, checked before anything blocks or reads.
 * A FIFO would hang open() or read() forever, a device such as /dev/zero
 * (or a link to it) never ends; both are refused with one line naming the
 * file. The limits are far above every real file (README, "Input files"). */
#ifndef CS_INFILE_H
#define CS_INFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CS_MAX_MODEL_FILE ((uint64_t)1 << 40)      /* safetensors: 1 TiB (Stage C F32 is 14 GB) */
#define CS_MAX_TOKENIZER_FILE ((uint64_t)64 << 20) /* vocab.json 1.6 MB, merges.txt 0.5 MB */
#define CS_MAX_CONFIG_FILE ((uint64_t)16 << 20)    /* config.json: a few KB */
#define CS_MAX_CACHE_FILE ((uint64_t)64 << 20)     /* the xxh64 cache: one short line per file */
#define CS_MAX_PLUGIN_FILE ((uint64_t)2 << 30)     /* a backend plugin (.so) */

/* Opens path read-only (O_CLOEXEC, blocking mode) if it is a regular file of
 * at most max bytes; *fd and *size (either may be NULL: fd NULL only checks).
 * what names the kind in messages ("tokenizer file"). Returns 0, or CS_EIO
 * (missing, unreadable, not a regular file) / CS_EFORMAT (too large) with
 * cs_error set; errno then tells the cause (ENOENT for a missing file). */
int cs_infile_open(const char *path, const char *what, uint64_t max, int *fd, uint64_t *size);

/* The whole file in a malloc'ed, NUL-terminated buffer (*len without the
 * NUL), with the checks above; a file that grows past max while being read
 * is refused too. */
int cs_infile_read(const char *path, const char *what, uint64_t max, char **buf, size_t *len);

/* "a FIFO", "a folder", "a character device", ... for messages about a
 * file that is not a regular one (mode from stat/lstat). */
const char *cs_infile_kind(mode_t mode);

#endif
