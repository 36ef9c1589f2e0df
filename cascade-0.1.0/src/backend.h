/* Compute backends. The CPU path (src/ops.c: OpenMP + OpenBLAS + the SIMD
 * kernel table) is always there; other backends are plugins loaded at run
 * time with dlopen (libcascade-<name>.so, e.g. libcascade-cuda.so), so the
 * library never links CUDA. A plugin exports
 *     const cs_backend *cascade_backend_entry(void);
 * returning a table whose abi field must equal CS_BACKEND_ABI. Ops a plugin
 * leaves NULL (or declines by returning CS_EUNSUP) run on the CPU. */
#ifndef CS_BACKEND_H
#define CS_BACKEND_H

#include <stddef.h>

#define CS_BACKEND_ABI 1

typedef struct {
    int abi;            /* CS_BACKEND_ABI */
    const char *name;
    /* 0 if usable here; else a negative code and a message in err */
    int (*init)(char *err, size_t errlen);
    void (*shutdown)(void);
    /* C[M,N] = alpha op(A) op(B) + beta C, row-major float32 in host memory */
    int (*sgemm)(int transA, int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                 const float *B, size_t ldb, float beta, float *C, size_t ldc);
} cs_backend;

/* Selects a backend by name ("cpu", "cuda", ...) or by a path to a plugin
 * file; NULL means $CASCADE_BACKEND, else "cpu". Plugins are looked for in
 * $CASCADE_PLUGIN_DIR, then the install's plugin folder. */
int cs_backend_select(const char *name);
const cs_backend *cs_backend_active(void);   /* NULL: the CPU path */
const char *cs_backend_name(void);
void cs_backend_release(void);

#endif
