/*
 * commands.h - the subcommands of the demix command line and the small
 * option-parsing helpers they share (defined in demix.c).
 *
 * Each command takes the arguments after its own name (argv[0] is the
 * command name) and returns the process exit status: 0 success, 1 a failure
 * while working, 2 a usage error.
 *
 * Thread context: the main thread.
 */
#ifndef DEMIX_COMMANDS_H
#define DEMIX_COMMANDS_H

#include <getopt.h>
#include <stdio.h>

#include "demix_error.h"
#include "engine.h"

#define DEMIX_EXIT_USAGE 2

int cmd_separate(int argc, char **argv);
void cmd_separate_usage(FILE *out);

int cmd_bench(int argc, char **argv);
void cmd_bench_usage(FILE *out);

int cmd_stream(int argc, char **argv);
void cmd_stream_usage(FILE *out);

int cmd_eval(int argc, char **argv);
void cmd_eval_usage(FILE *out);

int cmd_loadgen(int argc, char **argv);
void cmd_loadgen_usage(FILE *out);

/* Arguments of one command through getopt_long(3), in their order (no
 * permutation): options as getopt_long returns them ("--name X",
 * "--name=X", "-n X", "-nX"), operands (and everything after "--") as
 * CLI_OPERAND. Usage:
 *
 *     cli_args a;
 *     cli_args_init(&a);
 *     while ((c = cli_args_next(&a, argc, argv, "hm:", longs)) != -1)
 *         switch (c) {
 *         case 'm': path = a.value; break;
 *         case CLI_OPERAND: input = a.value; break;
 *         case CLI_MISSING: return DEMIX_EXIT_USAGE;    // already printed
 *         case CLI_UNKNOWN: complain about a.value; return DEMIX_EXIT_USAGE;
 *         }
 *
 * shorts is getopt's option string without a leading '+', '-' or ':'.
 * value: the option's value, the operand, or for CLI_UNKNOWN the whole
 * argument as given. A missing value prints "demix: option X needs a
 * value". One parse per process (getopt's state is global). */
enum { CLI_OPERAND = 1, CLI_MISSING = ':', CLI_UNKNOWN = '?' };
typedef struct cli_args {
    const char *value;
    int operands_only; /* "--" or the end of the options was seen */
} cli_args;
void cli_args_init(cli_args *a);
int cli_args_next(cli_args *a, int argc, char **argv, const char *shorts,
                  const struct option *longs);

/* If argv[*i] is the option `name` ("--model"), or `alias` ("-m", may be
 * NULL), store its value and return 1: "--model X" (advancing *i past X)
 * or "--model=X". A missing value prints an error and returns -1. Else 0. */
int cli_option(int argc, char **argv, int *i, const char *name,
               const char *alias, const char **value);

/* Parse a whole decimal integer in [lo, hi]; 0 on success, -1 (after
 * printing "demix CMD: OPTION ...") otherwise. */
int cli_int(const char *cmd, const char *option, const char *text, long lo,
            long hi, long *out);

/* Parse a --stems list "A,B": 1 to DEMIX_MAX_SOURCES names of 1 to
 * DEMIX_SOURCE_NAME_BYTES - 1 bytes, none twice, into names; *count gets
 * how many. 0, or -1 after printing "demix CMD: --stems ...". */
int cli_stem_list(const char *cmd, const char *text,
                  char (*names)[DEMIX_SOURCE_NAME_BYTES], int *count);

/* Parse --precision: "fp32", "fast" or "default". 0 on success, -1 (after
 * printing "demix CMD: --precision ...") otherwise. */
int cli_precision(const char *cmd, const char *text, demix_precision *out);

/* Name of a precision for messages: "default", "fp32", "fast". */
const char *cli_precision_name(demix_precision precision);

/* The default of --threads: one per online CPU (sysconf), at least 1. */
int cli_default_threads(void);

/* The pool for --threads N (N participants, the main thread included); on
 * failure prints why and returns -1. */
int cli_threadpool(int threads, demix_threadpool **out);

/* Print "demix: error: " and the message to stderr. */
void cli_error(const char *fmt, ...) DEMIX_PRINTF(1, 2);

#endif /* DEMIX_COMMANDS_H */
