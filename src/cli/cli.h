/* `cascade` subcommands: each is int cmd_x(int argc, char **argv) with argv[0]
 * the subcommand name; returns the process exit status. */
#ifndef CS_CLI_H
#define CS_CLI_H

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_dev(int argc, char **argv);       /* dev golden ... */
int cmd_golden(int argc, char **argv);

/* Shared start-up: SIMD level (CASCADE_SIMD) and threads. Prints the error
 * and returns non-zero on failure. */
int cli_init(int threads);

/* Exit statuses (all below 128, also for signals). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_INTERRUPTED = 130 };

/* SIGINT/SIGTERM/SIGHUP/SIGPIPE request a stop through cs_cancel_request
 * (a second INT/TERM/HUP ends the process at once after cs_cleanup_run);
 * SIGXFSZ is ignored so writes past `ulimit -f` fail with EFBIG. */
void cli_signals_install(void);
/* For a stop requested by signal why (cs_cancel_pending()): the exit status
 * (130, or 1 for a closed stdout) and the words for the one-line message. */
int cli_stop_status(int why);
const char *cli_stop_text(int why);

#endif
