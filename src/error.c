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

const char *cs_last_error(void) { return msg; }

void cs_clear_error(void) { msg[0] = 0; }

const char *cs_strerror(int e)
{
    return e == EFBIG ? "file size limit exceeded (ulimit -f)" : strerror(e);
}
