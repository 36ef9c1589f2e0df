/* Error reporting: functions return 0 or a negative CS_E* code and leave a
 * one-line message (file, tensor, what) in a thread-local buffer. */
#ifndef CS_ERROR_H
#define CS_ERROR_H

#include <stddef.h>

enum {
    CS_OK = 0,
    CS_EIO = -1,       /* open/read/write/mmap failed */
    CS_EFORMAT = -2,   /* malformed file */
    CS_EMODEL = -3,    /* file is not the expected network / mismatched tensors */
    CS_EARG = -4,      /* bad argument or option */
    CS_ENOMEM = -5,
    CS_EUNSUP = -6,    /* valid but unsupported (dtype, level, ...) */
    CS_EINTR = -7,     /* interrupted by the user */
    CS_ENONFINITE = -8, /* a result holds NaN or Inf (settings or weights out of range) */
    CS_EDEVICE = -9     /* the compute device failed (driver error, lost device) */
};

/* Sets the message (printf-style) and returns code. */
int cs_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* CS_ENOMEM with "out of memory: WHAT (N MiB)". */
int cs_oom(const char *what, size_t bytes);
/* The last message set on this thread ("" if none). */
const char *cs_last_error(void);
void cs_clear_error(void);
/* strerror(e), but EFBIG (a write past `ulimit -f`, SIGXFSZ ignored) says
 * "file size limit exceeded (ulimit -f)" rather than "File too large". */
const char *cs_strerror(int e);

#endif
