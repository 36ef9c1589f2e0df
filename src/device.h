/* Where a forward's activations live.
 *
 * A network's forward has two parts: a thin entry that takes host arrays
 * and a body that walks the network through src/ops.h. On the CPU the entry
 * calls the body on the host arrays. With a device backend (src/backend.h)
 * the entry uploads the inputs (cs_dev_args), enters device mode for this
 * thread, runs the SAME body on device pointers and downloads the outputs:
 * every op then runs on the device and nothing crosses the bus in between.
 * So a body never reads or writes activation memory itself: it allocates
 * with cs_act_*, moves data with cs_copy*, and hands host-side parameter
 * arrays to ops through cs_param(). */
#ifndef CS_DEVICE_H
#define CS_DEVICE_H

#include "backend.h"

#include <stddef.h>

/* The op set this thread's forward runs on; NULL: the CPU. */
extern _Thread_local const cs_dev_ops *cs_dev;

/* The device a forward started now would use: the active backend's op set,
 * or NULL for the CPU (no plugin, a plugin without ops, or already inside
 * a device forward). */
const cs_dev_ops *cs_dev_pick(void);

/* Activation memory of the current mode: n floats, NULL + cs_error when full. */
float *cs_act_alloc(size_t n);
float *cs_act_calloc(size_t n);
void cs_act_free(float *p);
/* Host <-> current-mode memory (memcpy on the CPU). */
int cs_act_upload(float *dst, const float *host, size_t n);
int cs_act_download(float *host, const float *src, size_t n);
/* Copies in the current mode. */
void cs_copy(float *dst, const float *src, size_t n);
void cs_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);
void cs_fill(float *dst, float v, size_t n);

/* A host array of n parameters (e.g. a folded BatchNorm) as the current mode
 * sees it: itself on the CPU, the device's cached copy in device mode (NULL +
 * cs_error on failure). Whoever frees such an array first calls
 * cs_param_forget on it. */
const float *cs_param(const float *host, size_t n);
void cs_param_forget(const void *host, size_t bytes);
/* cs_param_forget, then cs_free: for cs_alloc'd parameter arrays (NULL is fine). */
void cs_param_free(float *host);

/* The first error a device op reported in this forward (0 if none); the
 * dispatchers in ops.c record it, cs_dev_args_finish returns it. */
int cs_dev_error(void);
void cs_dev_note(int rc, const char *what);

/* $CASCADE_PROFILE=1: every device op waits for the device and its time is
 * added to its kind (CPU ops: CS_PROF_CPU below) (ops then run one at a time: the sum shows where the
 * time goes, not how fast it goes overlapped); cs_dev_prof_report prints
 * the table to f (a FILE *; NULL: nothing) and clears it. Off: start returns 0 and stop does nothing. */
double cs_dev_prof_start(void);
void cs_dev_prof_stop(double t0, const char *what);
void cs_dev_prof_report(void *file);
/* The same table a line at a time (no newline) to fn (NULL: dropped), then cleared. */
void cs_dev_prof_lines(void (*fn)(void *user, const char *line), void *user);

/* The same profile for ops on the CPU: CS_PROF_CPU(what) at the top of an
 * op's CPU path times it until the function returns (the cleanup attribute
 * of GCC and Clang; elsewhere nothing). Only the outermost op of a thread
 * is timed, so an op built of other ops counts once, under its own kind. */
typedef struct {
    double t0;
    const char *what;
} cs_prof_scope;
cs_prof_scope cs_prof_cpu_begin(const char *what);
void cs_prof_cpu_end(cs_prof_scope *s);
#if defined(__GNUC__)
#define CS_PROF_CPU(what) \
    cs_prof_scope cs_prof_scope_ __attribute__((cleanup(cs_prof_cpu_end))) = cs_prof_cpu_begin(what)
#else
#define CS_PROF_CPU(what) ((void)0)
#endif

/* A forward's inputs and outputs on the device:
 *   cs_dev_args a; cs_dev_args_begin(&a, d);
 *   const float *dx = cs_dev_in(&a, x, n);   (NULL stays NULL)
 *   float *dy = cs_dev_out(&a, y, m);
 *   int rc = a.rc ? a.rc : body(dx, ..., dy);   (between begin and finish: device mode)
 *   rc = cs_dev_args_finish(&a, rc);   (downloads outputs if rc == 0, frees all)
 * With d == NULL (the CPU) the arguments pass through unchanged. */
#define CS_DEV_MAX_ARGS 12
typedef struct {
    const cs_dev_ops *d, *prev;
    int rc, n;
    int graph, pass, slot;   /* graph: may be recorded (cs_dev_args_graph) */
    unsigned long long key;  /* the network and every argument's size */
    struct {
        float *dev, *host;   /* host != NULL: an output to download */
        size_t n;
        int kept;            /* a recorded graph owns dev now */
    } a[CS_DEV_MAX_ARGS];
} cs_dev_args;
void cs_dev_args_begin(cs_dev_args *a, const cs_dev_ops *d);
const float *cs_dev_in(cs_dev_args *a, const float *host, size_t n);
float *cs_dev_out(cs_dev_args *a, float *host, size_t n);
int cs_dev_args_finish(cs_dev_args *a, int rc);

/* Graphs: a sampler calls the same forward with the same shapes at every
 * step, and launching its few hundred small ops one by one costs more than
 * running them. After cs_dev_args_graph (before the first cs_dev_in) the
 * body runs as
 *     int rc = 0;
 *     while (cs_dev_pass(&a, &rc)) rc = body(dx, ..., dy);
 * The first call with a given network, tags and argument sizes runs the
 * body; the second records it as a graph (when the device has graphs) and
 * every later one replays the graph on copies of the inputs, without
 * running the body at all. So a body so marked must depend on nothing but
 * its arguments' values and sizes, the tags and the network's weights, and
 * must free all it allocates. A body that cannot be recorded (a host round
 * trip, a weight first used then) runs step by step from then on.
 * Graphs hold weights' and workspaces' device addresses: cs_param_forget
 * drops them all, a moved workspace (cs_dev_buffers_moved) or device
 * scratch makes them stale (re-recorded; after a few times, never again),
 * as does a change of precision or backend ($CASCADE_GRAPHS=0: never;
 * $CASCADE_PROFILE: never, the profile times single ops). */
void cs_dev_args_graph(cs_dev_args *a, const void *net, size_t tag1, size_t tag2);
/* A network's persistent device buffers (its workspace) moved or went:
 * graphs recorded before would use the old addresses (they are re-recorded). */
void cs_dev_buffers_moved(void);
/* 1 while a forward is being recorded: a persistent buffer must not be
 * allocated now (the recording would own it) */
int cs_dev_recording(void);
int cs_dev_pass(cs_dev_args *a, int *rc);
void cs_dev_graphs_drop(void);

#endif
