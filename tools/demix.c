/*
 * demix.c - the demix command line: subcommand dispatch, usage, --help and
 * --version, and the option helpers of commands.h (getopt_long for the
 * commands' arguments).
 *
 *   demix separate ...   split audio files into stems   (cmd_separate.c)
 *   demix bench ...      engine speed and real-time capacity (cmd_bench.c)
 *   demix stream ...     a file through a demixd server  (cmd_stream.c)
 *   demix eval ...       SDR of a model on a data set     (cmd_eval.c)
 *   demix loadgen ...    many live sessions against demixd (cmd_loadgen.c)
 *
 * Exit status: 0 success, 1 failure, 2 usage error.
 *
 * Thread context: the main thread only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "engine.h"

#ifndef DEMIX_VERSION
#define DEMIX_VERSION "0.0.0"
#endif

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *out);
} command;

static const command commands[] = {
    {"separate", "split audio files into stems (drums, bass, vocals, other)",
     cmd_separate, cmd_separate_usage},
    {"bench", "measure step time and real-time capacity of an engine",
     cmd_bench, cmd_bench_usage},
    {"stream", "stream a file through a demixd server, write its stems",
     cmd_stream, cmd_stream_usage},
    {"loadgen", "load-test a demixd server: many live streams, latency, capacity",
     cmd_loadgen, cmd_loadgen_usage},
    {"eval", "measure separation quality (SDR) on a data set",
     cmd_eval, cmd_eval_usage},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "usage: demix COMMAND [OPTIONS] [ARGS]\n"
            "\n"
            "Real-time music source separation (HS-TasNet).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "  demix help COMMAND    options of one command\n"
            "  demix --version       version\n"
            "\n"
            "examples:\n"
            "  demix separate song.flac                # stems in separated/song/\n"
            "  demix bench --streams 1,8,32            # speed of the full-size network\n"
            "  demix loadgen --url ws://127.0.0.1:8080/v1/stream --ramp 4:32:4\n"
            "                                          # live streams a server holds\n");
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int not_yet(const command *c)
{
    fprintf(stderr,
            "demix %s: not yet implemented in demix %s (planned for a later "
            "version)\n",
            c->name, DEMIX_VERSION);
    return DEMIX_EXIT_USAGE;
}

static int help(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return 0;
    }
    const command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "demix: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (!c->usage)
        return not_yet(c);
    c->usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return help(argc - 1, argv + 1);
    if (strcmp(name, "help") == 0)
        return help(argc - 1, argv + 1);
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 ||
        strcmp(name, "version") == 0) {
        printf("demix %s\n", DEMIX_VERSION);
        return 0;
    }
    const command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "demix: unknown command '%s'\n\n", name);
        usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (!c->run)
        return not_yet(c);
    return c->run(argc - 1, argv + 1);
}

/* ----------------------------------------------------- option helpers */

void cli_args_init(cli_args *a)
{
    a->value = NULL;
    a->operands_only = 0;
    optind = 1;
    opterr = 0; /* the commands word their own messages */
}

int cli_args_next(cli_args *a, int argc, char **argv, const char *shorts,
                  const struct option *longs)
{
    a->value = NULL;
    if (!a->operands_only) {
        /* "-": operands in place; ":": CLI_MISSING for a missing value. */
        char spec[64];
        snprintf(spec, sizeof spec, "-:%s", shorts);
        /* Without permutation argv[optind] is the argument being read
         * (optind moves past it once it is done). */
        int at = optind;
        int c = getopt_long(argc, argv, spec, longs, NULL);
        if (c == CLI_MISSING) {
            fprintf(stderr, "demix: option %s needs a value\n", argv[at]);
            return c;
        }
        if (c == CLI_UNKNOWN) {
            a->value = argv[at];
            return c;
        }
        if (c != -1) {
            a->value = optarg;
            return c;
        }
        a->operands_only = 1; /* the end, or "--": the rest are operands */
    }
    if (optind >= argc)
        return -1;
    a->value = argv[optind++];
    return CLI_OPERAND;
}

int cli_option(int argc, char **argv, int *i, const char *name,
               const char *alias, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) == 0 && arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (strcmp(arg, name) != 0 && !(alias && strcmp(arg, alias) == 0))
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "demix: option %s needs a value\n", arg);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_int(const char *cmd, const char *option, const char *text, long lo,
            long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "demix %s: %s must be a whole number from %ld to %ld "
                        "(got '%s')\n",
                cmd, option, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("demix: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_stem_list(const char *cmd, const char *text,
                  char (*names)[DEMIX_SOURCE_NAME_BYTES], int *count)
{
    const char *p = text;
    *count = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= DEMIX_SOURCE_NAME_BYTES ||
            *count >= DEMIX_MAX_SOURCES) {
            fprintf(stderr, "demix %s: --stems takes up to %d names "
                            "separated by commas (got '%s')\n",
                    cmd, DEMIX_MAX_SOURCES, text);
            return -1;
        }
        for (int i = 0; i < *count; i++)
            if (strlen(names[i]) == len && strncmp(names[i], p, len) == 0) {
                fprintf(stderr, "demix %s: --stems names '%.*s' twice\n", cmd,
                        (int)len, p);
                return -1;
            }
        memcpy(names[*count], p, len);
        names[*count][len] = '\0';
        (*count)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

int cli_precision(const char *cmd, const char *text, demix_precision *out)
{
    if (strcmp(text, "fp32") == 0)
        *out = DEMIX_PRECISION_FP32;
    else if (strcmp(text, "fast") == 0)
        *out = DEMIX_PRECISION_FAST;
    else if (strcmp(text, "default") == 0)
        *out = DEMIX_PRECISION_DEFAULT;
    else {
        fprintf(stderr, "demix %s: --precision must be fp32, fast or default "
                        "(got '%s')\n",
                cmd, text);
        return -1;
    }
    return 0;
}

const char *cli_precision_name(demix_precision precision)
{
    switch (precision) {
    case DEMIX_PRECISION_FP32:
        return "fp32";
    case DEMIX_PRECISION_FAST:
        return "fast";
    default:
        return "default";
    }
}

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > DEMIX_THREADPOOL_MAX_THREADS ? DEMIX_THREADPOOL_MAX_THREADS
                                            : (int)n;
}

int cli_threadpool(int threads, demix_threadpool **out)
{
    int rc = demix_threadpool_create(threads, out);
    if (rc) {
        cli_error("cannot start %d threads: %s", threads, demix_strerror(rc));
        return -1;
    }
    return 0;
}
