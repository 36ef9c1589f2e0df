/* Public API entry points (src/cascade.h). */
#include "cascade.h"

#include "error.h"

const char *cascade_version(void) { return PACKAGE_VERSION; }
const char *cascade_last_error(void) { return cs_last_error(); }
