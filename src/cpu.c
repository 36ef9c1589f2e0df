/* simd/'s level choice with the library's errors (src/cpu.h). */
#include "cpu.h"

#include "error.h"

static int report(int rc)
{
    if (!rc) return 0;
    return cs_error(rc == CS_SIMD_EBAD ? CS_EARG : CS_EUNSUP, "%s", cs_simd_why());
}

int cs_simd_init(void) { return report(cs_simd_pick()); }

int cs_simd_set(cs_simd_level level) { return report(cs_simd_use(level)); }
