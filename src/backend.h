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

/* 2: devices() and version added (1 had init, shutdown, sgemm) */
#define CS_BACKEND_ABI 2

/* One device as a plugin sees it (cascade info, and later the choice of a
 * model variant by free memory). */
typedef struct {
    char name[256];
    int cc_major, cc_minor;       /* compute capability, e.g. 9.0 */
    size_t total_bytes, free_bytes;
    int driver_version;           /* e.g. 13000 for 13.0; 0 unknown */
    int usable;                   /* 0: listed, but this plugin cannot run on it */
    char why[96];                 /* if !usable: one line, e.g. "no kernel image for sm_70" */
} cs_device_info;

typedef struct {
    int abi;            /* CS_BACKEND_ABI */
    const char *name;
    const char *version;  /* what the plugin was built with, one line */
    /* 0 if usable here; else a negative code and a one-line reason in err
     * ("no CUDA device", "CUDA driver not found", "driver too old: ...") */
    int (*init)(char *err, size_t errlen);
    void (*shutdown)(void);
    /* Lists up to max devices into out without init; returns how many
     * exist (may exceed max), or a negative code and a one-line reason in
     * err when none can be listed. May be NULL (no devices to list). */
    int (*devices)(cs_device_info *out, int max, char *err, size_t errlen);
    /* C[M,N] = alpha op(A) op(B) + beta C, row-major float32 in host memory;
     * non-zero declines and the CPU computes it */
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

/* Loads plugin NAME (as cs_backend_select finds it) without making it active
 * and lists its devices. Returns 0 when the plugin loaded: then ndev devices
 * are in dev (ndev may exceed CS_MAX_LISTED) or, with ndev 0, reason says
 * why none is usable. Else a negative code and cs_error say why it did not
 * load ("plugin not found ..."). */
#define CS_MAX_LISTED 16
typedef struct {
    char path[1024];
    int abi;
    char version[128];
    int ndev;
    cs_device_info dev[CS_MAX_LISTED];
    char reason[256];
} cs_backend_report;
int cs_backend_describe(const char *name, cs_backend_report *r);

#endif
