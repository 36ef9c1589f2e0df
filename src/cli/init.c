/* Start-up shared by the commands that compute (and tests/golden's runner):
 * SIMD level, threads, and every CASCADE_* value checked before any work. */
#include "cli.h"

#include "backend.h"
#include "cpu.h"
#include "error.h"
#include "kernels.h"
#include "models.h"
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>

int cli_init(int threads)
{
    if (threads <= 0 && cli_env_threads("cascade", &threads))
        return 2;
    int rc = cs_simd_init();
    if (rc) {
        fprintf(stderr, "cascade: %s\n", cs_last_error());
        return rc == CS_EARG ? 2 : 1;   /* unknown name: 2; a level this CPU lacks: 1 */
    }
    cs_threads_set(threads);
    /* every CASCADE_* value is checked before any work, with one exit rule */
    const char *mem = getenv("CASCADE_MEMORY");
    uint64_t have;
    char src[64];
    if (mem && *mem && cs_mem_available(&have, src, sizeof src)) {
        fprintf(stderr, "cascade: %s\n", cs_last_error());
        return 2;
    }
    if (cs_backend_select(NULL)) {
        fprintf(stderr, "cascade: %s\n", cs_last_error());
        return 1;
    }
    return 0;
}
