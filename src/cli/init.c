/* Start-up shared by the commands that compute (and tests/golden's runner):
 * SIMD level, threads, and every CASCADE_* value checked before any work,
 * through cascade_setup on the CLI's one context. */
#include "cli.h"

#include "cascade.h"

#include <stdio.h>

static cascade_ctx *the_ctx;   /* the process's */

struct cascade_ctx *cli_ctx(void)
{
    if (!the_ctx) the_ctx = cascade_ctx_new();
    return the_ctx;
}

void cli_ctx_free(void)
{
    cascade_ctx_free(the_ctx);
    the_ctx = NULL;
}

int cli_init(int threads)
{
    if (threads <= 0 && cli_env_threads("cascade", &threads))
        return CLI_EXIT_USAGE;
    cascade_ctx *ctx = cli_ctx();
    if (!ctx) {
        fprintf(stderr, "cascade: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    if (cascade_set_int(ctx, CASCADE_P_THREADS, threads > 0 ? threads : 0)) {
        fprintf(stderr, "cascade: %s\n", cascade_errmsg(ctx));
        return CLI_EXIT_USAGE;
    }
    /* kernels, threads, CASCADE_MEMORY: an unknown SIMD name or a malformed
     * value is bad usage (2); a SIMD level this CPU lacks an error (1) */
    int rc = cascade_setup(ctx, CASCADE_SETUP_KERNELS);
    if (rc) {
        fprintf(stderr, "cascade: %s\n", cascade_errmsg(ctx));
        return rc == CASCADE_E_ARG ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    /* $CASCADE_BACKEND: a plugin that cannot be used is an error (1) */
    if (cascade_setup(ctx, CASCADE_SETUP_BACKEND)) {
        fprintf(stderr, "cascade: %s\n", cascade_errmsg(ctx));
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}
