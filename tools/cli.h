/*
 * cli.h: what the files of the moekit command share (tools/moekit.c: main, info, version; tools/check.c: check).
 */
#ifndef MOEKIT_CLI_H
#define MOEKIT_CLI_H

#include <stdio.h>

/* Exit statuses of the moekit command. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* `moekit check [options]`: argv[0] is "check". Returns an exit status. */
int cli_check(int argc, char **argv);
void cli_check_usage(FILE *out);

/* `moekit gen ...` (tools/gen.c) and `moekit run ...` (tools/run.c): the reference model (model/). argv[0] is
 * the subcommand. Return an exit status. */
int cli_gen(int argc, char **argv);
void cli_gen_usage(FILE *out);
int cli_run(int argc, char **argv);
void cli_run_usage(FILE *out);

/* "12.3 us", "4.56 ms", "1.23 s" */
void cli_format_seconds(char *buf, size_t size, double seconds);

#endif /* MOEKIT_CLI_H */
