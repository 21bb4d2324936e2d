/*
 * options.h - demixd's command line.
 *
 *   demixd [--model PATH] [--backend auto|cpu|cuda] [--precision fp32|fast]
 *          [--threads N] [--host H] [--port P] [--max-sessions N]
 *          [--service-threads N] [--device N] [--opus-complexity N]
 *          [--web DIR] [--max-file-mb N] [--max-file-seconds N]
 *          [--file-jobs N] [--tokens FILE] [--idle-timeout S]
 *          [--min-upload-rate B] [--tls-cert FILE --tls-key FILE]
 *          [--allow-origin ORIGIN[,ORIGIN...]] [--max-per-address N]
 *          [--drain-seconds N] [--steps-in-flight N]
 *          [--log-level error|warn|info|debug] [--help] [--version]
 *
 * Each value goes as "--name VALUE" or "--name=VALUE" (getopt_long(3):
 * a unique prefix of a name will do); -m, -b, -p, -t and -h are short for
 * --model, --backend, --precision, --threads and --help.
 *
 * Defaults are filled by demixd_options_parse: the model is $DEMIX_MODEL,
 * else <datadir>/demixd/models/default.safetensors, else the source tree's
 * models/default.safetensors (as `demix separate` looks); the web root is
 * <datadir>/demixd/web, else the source tree's web/ (none: every static
 * path is 404). Host 127.0.0.1 (0.0.0.0 or another address is opt-in),
 * port 8080 (0: the kernel picks a free one, logged). The tokens file is
 * $DEMIXD_TOKENS_FILE when --tokens is not given; none: every token is
 * accepted (main.c loads the file, tokens.h).
 *
 * Thread context: the main thread, before any other starts.
 */
#ifndef DEMIXD_OPTIONS_H
#define DEMIXD_OPTIONS_H

#include <stdio.h>

#include "engine.h"
#include "log.h"

#define DEMIXD_PATH_BYTES 4096
/* --max-per-address when not given: enough for a household or an office
 * behind one NAT address, far below what one host could otherwise take
 * (every slot and descriptor). */
#define DEMIXD_DEFAULT_PER_ADDRESS 64

#define DEMIXD_MAX_SERVICE_THREADS 1024 /* --service-threads */

/* What the service threads wait in (event_loop.h says why). */
typedef enum {
    DEMIXD_EVENT_LOOP_EPOLL = 0, /* libev on epoll, lws's foreign loop */
    DEMIXD_EVENT_LOOP_POLL = 1,  /* lws's own poll() loop */
} demixd_event_loop_kind;

typedef struct demixd_options {
    char model_path[DEMIXD_PATH_BYTES]; /* "" when no model was found */
    demix_backend backend;
    demix_precision precision;
    int threads;      /* engine math threads, the scheduler included */
    char host[256];   /* listen address */
    int port;         /* 0: any free port */
    int max_sessions; /* 0: calibrate */
    char web_dir[DEMIXD_PATH_BYTES]; /* "" when there is none */
    long max_file_bytes;             /* POST body limit */
    int max_file_seconds;            /* audio duration limit of the file API */
    int file_jobs;                   /* file API jobs running at once */
    int opus_complexity;             /* the sessions' Opus encoders, 0..10 */
    int idle_timeout_s; /* a started session with no traffic; 0: never */
    long min_upload_rate; /* file API bytes per second; 0: no limit */
    char tls_cert[DEMIXD_PATH_BYTES]; /* PEM; "" (with tls_key ""): no TLS */
    char tls_key[DEMIXD_PATH_BYTES];
    char allow_origin[1024]; /* comma-separated Origins; "": any */
    /* connections per client address; 0: unlimited; -1 (not given):
     * DEMIXD_DEFAULT_PER_ADDRESS, loopback not counted */
    int max_per_address;
    int service_threads; /* 0: one per CPU the engine does not use */
    int steps_in_flight; /* 0: the backend's default (CUDA 2, CPU 1) */
    int drain_seconds;   /* SIGTERM: live sessions go on this long */
    int device;          /* CUDA device index */
    char tokens_path[DEMIXD_PATH_BYTES]; /* "" when no tokens are required */
    demixd_log_level log_level;
    demixd_event_loop_kind event_loop; /* --event-loop */
} demixd_options;

/* Parse "epoll" / "poll" (--event-loop). 0, or -1 for anything else. */
int demixd_event_loop_parse(const char *text, demixd_event_loop_kind *out);
const char *demixd_event_loop_name(demixd_event_loop_kind kind);

/* Parse argv (not modified: operands are not moved). Returns 0 to run, 1
 * when --help/--version printed and the program should exit 0, -1 on a
 * usage error (message printed on stderr). Uses getopt's global state, so
 * not thread-safe; it may be called again in the same process. */
int demixd_options_parse(int argc, char **argv, demixd_options *o);

void demixd_options_usage(FILE *out);

/* CPUs this process may run on: its affinity mask (taskset, a cgroup
 * cpuset), else the online CPUs; 1..1024. */
int demixd_usable_cpus(void);

#endif /* DEMIXD_OPTIONS_H */
