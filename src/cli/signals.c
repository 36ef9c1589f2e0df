/* Signals of the long-running commands (generate, models): every way the
 * process can be told to stop ends in the same cooperative path, so the
 * normal error unwinding removes what the run created and the exit status
 * stays below 128.
 *   SIGINT, SIGTERM, SIGHUP  request a stop (cascade_cancel_all); the work
 *                            stops at the next check (well under a second),
 *                            cleans up and exits 130. A second one while the
 *                            stop is under way removes every path on the
 *                            cleanup list and ends the process at once (130).
 *   SIGPIPE                  stdout (or stderr) was closed, e.g. `| head -1`:
 *                            nobody reads the results any more, so the same
 *                            stop, reported as an error (exit 1).
 *   SIGXFSZ                  ignored: the write past `ulimit -f` then fails
 *                            with EFBIG and the writer reports "file size
 *                            limit exceeded" and removes its partial file.
 *   SIGBUS                   a memory-mapped model file shrank while in use
 *                            (truncated or rewritten in place): the faulting
 *                            read cannot go on, so the handler removes what
 *                            the run created and exits 1 with one line.
 * What the CLI made and has not finished is on its own cleanup list here;
 * the library's temporaries on the library's (cascade_remove_temporaries). */
#include "cli.h"

#include "cascade.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int err_tty;   /* stderr may hold an open progress line: start a new one */

/* ---- the CLI's cleanup list: blocks of slots, claimed and released with
 * atomics, read by the handlers without locks. A full list grows by a block
 * linked in atomically (a batch of previews may pass any fixed count);
 * blocks are never freed, so a handler on any thread only ever reads live
 * memory. ---- */
#define SLOTS 64
enum { FREE = 0, BUSY, FILE_, DIR_ };
typedef struct block {
    struct {
        atomic_int state;
        char path[PATH_MAX];
    } slot[SLOTS];
    struct block *_Atomic next;
} block;
static block first;

int cli_cleanup_add(const char *path, int is_dir)
{
    size_t n = strlen(path);
    if (n >= PATH_MAX) return 0;
    block *b = &first;
    for (int base = 0;; base += SLOTS) {
        for (int i = 0; i < SLOTS; i++) {
            int expect = FREE;
            if (!atomic_compare_exchange_strong(&b->slot[i].state, &expect, BUSY)) continue;
            memcpy(b->slot[i].path, path, n + 1);
            atomic_store(&b->slot[i].state, is_dir ? DIR_ : FILE_);
            return base + i + 1;
        }
        block *next = atomic_load(&b->next);
        if (!next) {
            block *nb = calloc(1, sizeof *nb), *none = NULL;
            if (!nb) return 0;   /* out of memory: this path is not covered */
            if (!atomic_compare_exchange_strong(&b->next, &none, nb)) free(nb), nb = none;
            next = nb;
        }
        b = next;
        if (base > INT_MAX - 2 * SLOTS) return 0;
    }
}

void cli_cleanup_del(int h)
{
    block *b = &first;
    for (h--; b && h >= SLOTS; h -= SLOTS) b = atomic_load(&b->next);
    if (b && h >= 0) atomic_store(&b->slot[h].state, FREE);
}

/* the slots in state of b and the blocks after it, newest (last) first */
static void remove_from(block *b, int state)
{
    block *next = atomic_load(&b->next);
    if (next) remove_from(next, state);
    for (int i = SLOTS - 1; i >= 0; i--)
        if (atomic_load(&b->slot[i].state) == state)
            (void)(state == FILE_ ? unlink(b->slot[i].path) : rmdir(b->slot[i].path));
}

/* the CLI's paths, then the library's temporaries; async-signal-safe */
static void remove_all(void)
{
    remove_from(&first, FILE_);
    remove_from(&first, DIR_);
    cascade_remove_temporaries();
}

static int user_stop(int sig)
{
    return sig == SIGINT || sig == SIGTERM || sig == SIGHUP;
}

static void on_signal(int sig)
{
    int saved = errno;
    if (user_stop(sig) && user_stop(cascade_cancel_reason())) {
        /* Only the main thread creates files. A process-wide signal may land
         * on a BLAS or OpenMP worker (after SIGSTOP/SIGCONT any thread may
         * take it); removing files there would race with the main thread
         * writing the next one, so hand the signal to the main thread. */
        pid_t pid = getpid();
        if ((pid_t)syscall(SYS_gettid) != pid) {
            syscall(SYS_tgkill, pid, pid, sig);
            errno = saved;
            return;
        }
        /* the second request: do not wait for the next check */
        static const char msg[] = "\ncascade: stopped at once (second signal); temporary files removed\n";
        remove_all();
        ssize_t w = write(STDERR_FILENO, msg + !err_tty, sizeof msg - 1 - !err_tty);
        (void)w;
        _exit(CLI_EXIT_INTERRUPTED);
    }
    cascade_cancel_all(sig);   /* every computation, on every context of the process */
    errno = saved;
}

static void on_fault(int sig)
{
    (void)sig;
    static const char msg[] = "\ncascade: a model file was truncated or changed while in use (SIGBUS reading its "
                              "memory map); stopped, nothing written\n";
    remove_all();
    ssize_t w = write(STDERR_FILENO, msg + !err_tty, sizeof msg - 1 - !err_tty);
    (void)w;
    _exit(CLI_EXIT_ERROR);
}

void cli_signals_install(void)
{
    err_tty = isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaddset(&sa.sa_mask, sigs[i]);   /* one handler at a time */
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
    sa.sa_handler = on_fault;
    sigaction(SIGBUS, &sa, NULL);
}

int cli_stop_pending(void) { return cascade_cancel_reason(); }

int cli_stop_status(int why)
{
    return why == SIGPIPE ? CLI_EXIT_ERROR : CLI_EXIT_INTERRUPTED;
}

const char *cli_stop_text(int why)
{
    switch (why) {
    case SIGINT: return "interrupted";
    case SIGTERM: return "interrupted (SIGTERM)";
    case SIGHUP: return "interrupted (SIGHUP: the terminal closed)";
    case SIGPIPE: return "standard output was closed (broken pipe); stopped";
    default: return "interrupted";
    }
}
