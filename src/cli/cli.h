/* `cascade` subcommands: each is int cmd_x(int argc, char **argv) with argv[0]
 * the subcommand name; returns the process exit status. */
#ifndef CS_CLI_H
#define CS_CLI_H

#include <stddef.h>
#include <stdint.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);

/* Shared start-up through cascade_setup on cli_ctx(): SIMD level
 * (CASCADE_SIMD), threads (threads <= 0: $CASCADE_THREADS, else all
 * processors), CASCADE_MEMORY, CASCADE_BACKEND. Prints the error and
 * returns the exit status: 2 for a value malformed on its own (CASCADE_THREADS,
 * CASCADE_SIMD, CASCADE_MEMORY), 1 for anything else, 0 ok. */
int cli_init(int threads);

/* --device D / --precision P (NULL: $CASCADE_DEVICE / $CASCADE_PRECISION,
 * else auto). auto device: the CUDA plugin when it loads and finds a usable
 * GPU, else the CPU; auto precision: fp32 when `reference` (golden cases),
 * else bf16, fp16, fp32, the first the device runs. Writes what was chosen
 * and why into said ("cuda, bf16" / "cpu, fp32 (backend 'cuda': ...)").
 * and the CASCADE_PREC_* in force into *prec (cascade_device_chosen). Returns 0 or the exit status after
 * printing one line. */
int cli_device(const char *cmd, const char *device, const char *precision, int reference, char *said, size_t saidlen,
               int *prec);
/* "ME: device memory peak" on a GPU, then $CASCADE_PROFILE's per-op times,
 * on stderr (nothing when quiet; the profile is cleared either way) */
void cli_device_report(const char *me, int quiet);

/* The CLI's context (created by the first call; NULL only when out of
 * memory): the one cli_init and cli_device set up, and the one a signal
 * cancels. */
struct cascade_ctx;
struct cascade_ctx *cli_ctx(void);
/* Frees it, and what it holds (the demo's files); cli_ctx makes a new one. */
void cli_ctx_free(void);

/* The CLI's own failures in files that use only cascade.h (cli_error.c):
 * records "what and where" for code (a CASCADE_E_* value) and returns
 * code; cli_message(rc) gives that text once, when rc is the code last
 * recorded, else NULL (the failure is then the library's: cascade_errmsg). */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cli_message(int code);
void cli_message_clear(void);

/* Paths the CLI made and has not finished (files of a batch being written,
 * folders made for them): a second INT/TERM/HUP or a SIGBUS removes them
 * (files first, then folders, newest first) before it ends the process.
 * cli_cleanup_add returns a handle for cli_cleanup_del (0: out of memory or
 * a path too long: the path is not covered); the list grows as needed.
 * Async-signal-safe removal. */
int cli_cleanup_add(const char *path, int is_dir);
void cli_cleanup_del(int handle);

/* Exit statuses (all below 128, also for signals). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_INTERRUPTED = 130 };

/* SIGINT/SIGTERM/SIGHUP/SIGPIPE request a stop through cascade_cancel_all
 * (a second INT/TERM/HUP ends the process at once after
 * cascade_remove_temporaries);
 * SIGXFSZ is ignored so writes past `ulimit -f` fail with EFBIG. */
void cli_signals_install(void);
/* For a stop requested by signal why (cli_stop_pending()): the exit status
 * (130, or 1 for a closed stdout) and the words for the one-line message. */
int cli_stop_status(int why);
const char *cli_stop_text(int why);
/* The signal that asked for a stop, or 0 (cascade_cancel_reason). */
int cli_stop_pending(void);

/* ---- numbers (parse.c): one rule for every option and variable ----
 * Exit status rule: a value out of range or not a number is bad usage (2),
 * whether it comes from an option or from the environment.
 * Each returns 0, or -1 after printing "CMD: WHAT: 'V' is not ...". */
int cli_parse_int(const char *cmd, const char *what, const char *v, long lo, long hi, int *out);
/* An int parameter of the library's table (a cascade_param key: width,
 * height, batch, ...): its range and multiple come from cascade.h, so the
 * CLI and the library refuse the same values; "CMD: WHAT: 12 is not a
 * multiple of 8" for a value off the multiple. */
int cli_parse_param(const char *cmd, const char *what, const char *v, int key, int *out);
/* A finite number in [lo, hi] ((lo, hi] with lo_open) that stays finite and
 * non-zero as a float; lo = -FLT_MAX, hi = FLT_MAX means any finite float. */
int cli_parse_real(const char *cmd, const char *what, const char *v, double lo, double hi, int lo_open,
                   float *out);
/* Digits only, at most hi. */
int cli_parse_u64(const char *cmd, const char *what, const char *v, uint64_t hi, uint64_t *out);
/* Threads: 1 .. 4 x the online processors, at most CLI_THREADS_CAP (more
 * only oversubscribes; huge counts crash or stall libgomp). */
#define CLI_THREADS_CAP 1024
int cli_threads_max(void);
int cli_parse_threads(const char *cmd, const char *what, const char *v, int *out);
/* $CASCADE_THREADS: *out = 0 when unset or empty; -1 (printed) when bad. */
int cli_env_threads(const char *cmd, int *out);

#endif
