/* The CPU kernel level as the library sets it: simd/'s choice (simd/kernels.h)
 * with its failures reported through cs_error. */
#ifndef CS_CPU_H
#define CS_CPU_H

#include "kernels.h"

/* Picks the best level this CPU supports, or $CASCADE_SIMD if set (the
 * table does so itself on first use, cs_simd_ensure; this call is where a
 * bad $CASCADE_SIMD becomes an error to report). Returns
 * 0 or CS_EARG (a bad $CASCADE_SIMD / $CASCADE_AMX) / CS_EUNSUP (a forced
 * level this CPU or build lacks). Safe to call more than once. */
int cs_simd_init(void);
/* Forces one level; CS_EUNSUP if the CPU or the build lacks it. */
int cs_simd_set(cs_simd_level level);

#endif
