/* The CLI's own one-line errors, for the files that use only cascade.h:
 * cli_error records the message a later caller prints (cli_message), as
 * the library's calls leave theirs in cascade_errmsg. One thread (main). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

static char msg[2048];
static int msg_code;   /* the code msg goes with; 0: none pending */

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msg_code = code;
    return code;
}

const char *cli_message(int code)
{
    if (!msg_code || code != msg_code) return NULL;
    msg_code = 0;   /* taken: an older message never stands for a newer failure */
    return msg;
}

void cli_message_clear(void) { msg_code = 0; }
