/* Cooperative cancellation and a cleanup list for signals.
 *
 * One process-wide flag: a signal handler (or another thread) sets it with
 * cs_cancel_request(); every long loop of the library (sampler steps, U-Net
 * blocks, CLIP layers, Stage A blocks and tiles, the previewer, file
 * hashing) polls it with cs_cancel_check() and returns CS_EINTR, so the
 * caller unwinds through its ordinary error path and cleans up. Signals are
 * process-wide, so one flag (like the dispatch table) is the honest shape.
 *
 * The cleanup list holds the paths of files and folders that exist only
 * while a run is in progress (temporary files, the demo's networks, previews
 * and images not yet final). Code that creates such a path registers it and
 * unregisters it once the path is final or removed. cs_cleanup_run() is
 * async-signal-safe: a handler that must end the process at once (a second
 * Ctrl-C) calls it before _exit so that nothing is left behind. */
#ifndef CS_CANCEL_H
#define CS_CANCEL_H

#include <signal.h>

/* The flag: 0, or why the work should stop (a signal number). The CLI hands
 * its address to cs_pipeline_hooks.cancel. */
volatile sig_atomic_t *cs_cancel_flag(void);
/* Async-signal-safe: records why (> 0); the first reason wins. */
void cs_cancel_request(int why);
/* The reason, or 0. */
int cs_cancel_pending(void);
/* A second flag for this thread only (a libcascade context's cascade_cancel
 * sets it): cs_cancel_check and cs_cancel_pending look at both. NULL
 * unbinds. Only the thread that binds it sees it (OpenMP workers do not
 * poll). */
void cs_cancel_bind(volatile sig_atomic_t *flag);
/* 0, or CS_EINTR with the message "interrupted" when a stop was requested
 * (process-wide, or through this thread's bound flag). */
int cs_cancel_check(void);
void cs_cancel_reset(void);

/* Registers path (copied) for removal by cs_cleanup_run: a file, or with
 * is_dir an empty folder (removed after the files). Returns a handle > 0,
 * or 0 if the list is full (the path is then only removed by the normal
 * error paths). */
int cs_cleanup_add(const char *path, int is_dir);
/* Forgets handle h (0 is ignored): the path is final or already removed. */
void cs_cleanup_del(int h);
/* Async-signal-safe: unlinks every registered file, then rmdirs every
 * registered folder. Does not touch the list otherwise. */
void cs_cleanup_run(void);

#endif
