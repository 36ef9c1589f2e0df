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

#endif
