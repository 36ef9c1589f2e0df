#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char msg[1024];

int cs_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return code;
}

int cs_oom(const char *what, size_t bytes)
{
    /* "out of memory: the Stage B latent (3.1 GiB)": what, and how much */
    double v = (double)bytes;
    const char *unit = "bytes";
    if (bytes >= (1u << 30)) v /= 1073741824.0, unit = "GiB";
    else if (bytes >= (1u << 20)) v /= 1048576.0, unit = "MiB";
    else if (bytes >= 1024) v /= 1024.0, unit = "KiB";
    if (unit[0] == 'b')
        return cs_error(CS_ENOMEM, "out of memory: %s (%zu bytes)", what, bytes);
    return cs_error(CS_ENOMEM, "out of memory: %s (%.1f %s)", what, v, unit);
}

const char *cs_last_error(void) { return msg; }

void cs_clear_error(void) { msg[0] = 0; }

const char *cs_strerror(int e)
{
    return e == EFBIG ? "file size limit exceeded (ulimit -f)" : strerror(e);
}
