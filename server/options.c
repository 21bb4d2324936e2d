/*
 * options.c - parsing of demixd's command line (options.h).
 *
 * getopt_long(3) reads argv in order, without moving operands: every
 * option takes its value as "--name VALUE" or "--name=VALUE" (a unique
 * prefix of the name will do), an alias as "-m VALUE" or "-mVALUE"; "--"
 * ends the options. demixd takes no operands, so the first is refused by
 * name. The messages are demixd's own (opterr = 0), each names the option
 * as "--name", and every usage error is -1 (main.c: exit status 2).
 * Numbers are whole decimal integers within the ranges of the usage text.
 * -h/--help and --version print and return 1 where they stand: an error
 * before them still wins.
 *
 * getopt's state is global: every parse starts it afresh (optind = 0), so
 * one process may parse several times (tests/unit/test_server_options.c).
 *
 * Thread context: the main thread, before any other starts
 * (demixd_usable_cpus: any thread).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DEMIXD_VERSION
#define DEMIXD_VERSION "0.0.0"
#endif
#ifndef DEMIXD_SOURCE_DIR
#define DEMIXD_SOURCE_DIR "."
#endif
#ifndef DEMIXD_INSTALL_DATA_DIR
#define DEMIXD_INSTALL_DATA_DIR "/usr/local/share/demixd"
#endif
#define DEFAULT_MODEL_FILE "default.safetensors"

void demixd_options_usage(FILE *out)
{
    fprintf(
        out,
        "usage: demixd [OPTIONS]\n"
        "\n"
        "Real-time music source separation server: WebSocket streaming\n"
        "(ws://HOST:PORT/v1/stream), a file API (POST /v1/separate), the\n"
        "web page, /v1/health and /metrics, all on one port.\n"
        "\n"
        "options:\n"
        "  -m, --model PATH       model weights (.safetensors); default:\n"
        "                         $DEMIX_MODEL, %s/models/%s,\n"
        "                         %s/models/%s\n"
        "  -b, --backend NAME     auto (default), cpu or cuda\n"
        "  -p, --precision P      fast (default: bf16 products on CUDA and where\n"
        "                         the CPU has AVX512-BF16, else float32) or fp32\n"
        "  -t, --threads N        engine math threads, 1..1024 (default: one\n"
        "                         per online CPU)\n"
        "      --host ADDR        listen address (default 127.0.0.1; give\n"
        "                         0.0.0.0 to listen on every interface)\n"
        "      --port P           TCP port, 0..65535 (default 8080; 0 picks a\n"
        "                         free one, see the 'listening' log line)\n"
        "      --max-sessions N   live sessions at once, 1..1048576 (default:\n"
        "                         what the engine serves in real time, "
        "measured\n"
        "                         at start)\n"
        "      --service-threads N  threads that serve the connections\n"
        "                         (sockets, codecs), 1..1024 (default: one\n"
        "                         per usable CPU; with CUDA one fewer, for\n"
        "                         the scheduler)\n"
        "      --device N         CUDA device index, 0..255 (default 0)\n"
        "      --drain-seconds N  on SIGTERM or SIGINT, let live sessions\n"
        "                         stream on for up to N s (not ready, no new\n"
        "                         sessions), then close them with restarting\n"
        "                         / 1012, 0..3600 (default 0: end them at once)\n"
        "      --steps-in-flight N  engine steps submitted and not yet\n"
        "                         collected, 1..2 (default: 2 with CUDA, 1 on\n"
        "                         the CPU)\n"
        "      --web DIR          static files served at / (default:\n"
        "                         %s/web, %s/web)\n"
        "      --max-file-mb N    file API body limit in MiB, 1..4096 "
        "(default 200)\n"
        "      --max-file-seconds N  file API duration limit, 1..86400\n"
        "                         (default 1200)\n"
        "      --file-jobs N      file API jobs at once, 1..64 (default 2)\n"
        "      --min-upload-rate B  file API uploads slower than B bytes per\n"
        "                         second over any 5 s get 408, 0..1073741824\n"
        "                         (default 16384; 0: no limit)\n"
        "      --opus-complexity N  Opus encoder complexity of the sessions'\n"
        "                         output, 0..10 (default 10); lower takes\n"
        "                         less CPU per session\n"
        "      --tokens FILE      require one of the tokens in FILE (one per\n"
        "                         line, # comments) from every stream and\n"
        "                         file API client (default:\n"
        "                         $DEMIXD_TOKENS_FILE; none: every client is\n"
        "                         accepted)\n"
        "      --tls-cert FILE    serve TLS (wss://, https://) on the port with\n"
        "                         this PEM certificate (chain); needs\n"
        "                         --tls-key\n"
        "      --tls-key FILE     the certificate's PEM private key\n"
        "      --allow-origin LIST  WebSocket upgrades whose Origin header is\n"
        "                         not one of LIST (comma-separated, e.g.\n"
        "                         https://demix.example) get 403; requests\n"
        "                         without Origin (not browsers) pass\n"
        "                         (default: every origin)\n"
        "      --max-per-address N  connections (so also sessions) from one\n"
        "                         client IP address at once; beyond: HTTP 429\n"
        "                         (default %d, loopback not counted; given,\n"
        "                         it counts loopback too; 0: unlimited)\n"
        "      --idle-timeout S   end a started session (error timeout)\n"
        "                         after S seconds in which nothing was\n"
        "                         received from its client nor taken by it,\n"
        "                         0..86400 (default 30; 0: never)\n"
        "      --log-level L      error, warn, info (default) or debug\n",
        DEMIXD_INSTALL_DATA_DIR, DEFAULT_MODEL_FILE, DEMIXD_SOURCE_DIR,
        DEFAULT_MODEL_FILE, DEMIXD_INSTALL_DATA_DIR, DEMIXD_SOURCE_DIR,
        DEMIXD_DEFAULT_PER_ADDRESS);
    /* apart: one literal over 4095 bytes is beyond what C11 promises */
    fputs("      --event-loop K     what the service threads wait in: epoll\n"
          "                         (libev; the default) or poll (lws's own\n"
          "                         loop, whose cost per wake-up grows with\n"
          "                         the thread's sockets)\n"
          "  -h, --help             this text\n"
          "      --version          the version\n",
          out);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void default_model(char *buf, size_t cap)
{
    if (!buf || !cap)
        return;
    const char *env = getenv("DEMIX_MODEL");
    if (env && env[0]) {
        if (file_exists(env)) {
            snprintf(buf, cap, "%s", env);
            return;
        }
        demixd_log(DEMIXD_LOG_WARN, "config",
                   "msg=\"DEMIX_MODEL does not exist; looking further\" "
                   "path=%s",
                   env);
    }
    snprintf(buf, cap, "%s/models/%s", DEMIXD_INSTALL_DATA_DIR,
             DEFAULT_MODEL_FILE);
    if (file_exists(buf))
        return;
    snprintf(buf, cap, "%s/models/%s", DEMIXD_SOURCE_DIR, DEFAULT_MODEL_FILE);
    if (file_exists(buf))
        return;
    buf[0] = '\0';
}

static void default_web(char *buf, size_t cap)
{
    if (!buf || !cap)
        return;
    snprintf(buf, cap, "%s/web", DEMIXD_INSTALL_DATA_DIR);
    if (dir_exists(buf))
        return;
    snprintf(buf, cap, "%s/web", DEMIXD_SOURCE_DIR);
    if (dir_exists(buf))
        return;
    buf[0] = '\0';
}

int demixd_usable_cpus(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* getopt_long's codes of the options without a short alias: past every
 * character, so that none can clash with an alias. */
enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_MAX_SESSIONS,
    OPT_SERVICE_THREADS,
    OPT_DEVICE,
    OPT_DRAIN_SECONDS,
    OPT_STEPS_IN_FLIGHT,
    OPT_WEB,
    OPT_MAX_FILE_MB,
    OPT_MAX_FILE_SECONDS,
    OPT_FILE_JOBS,
    OPT_MIN_UPLOAD_RATE,
    OPT_OPUS_COMPLEXITY,
    OPT_TOKENS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_ALLOW_ORIGIN,
    OPT_MAX_PER_ADDRESS,
    OPT_IDLE_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_EVENT_LOOP,
    OPT_VERSION,
};

/* In the order of the usage text. */
static const struct option longs[] = {
    {"model", required_argument, NULL, 'm'},
    {"backend", required_argument, NULL, 'b'},
    {"precision", required_argument, NULL, 'p'},
    {"threads", required_argument, NULL, 't'},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"service-threads", required_argument, NULL, OPT_SERVICE_THREADS},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"drain-seconds", required_argument, NULL, OPT_DRAIN_SECONDS},
    {"steps-in-flight", required_argument, NULL, OPT_STEPS_IN_FLIGHT},
    {"web", required_argument, NULL, OPT_WEB},
    {"max-file-mb", required_argument, NULL, OPT_MAX_FILE_MB},
    {"max-file-seconds", required_argument, NULL, OPT_MAX_FILE_SECONDS},
    {"file-jobs", required_argument, NULL, OPT_FILE_JOBS},
    {"min-upload-rate", required_argument, NULL, OPT_MIN_UPLOAD_RATE},
    {"opus-complexity", required_argument, NULL, OPT_OPUS_COMPLEXITY},
    {"tokens", required_argument, NULL, OPT_TOKENS},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"allow-origin", required_argument, NULL, OPT_ALLOW_ORIGIN},
    {"max-per-address", required_argument, NULL, OPT_MAX_PER_ADDRESS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"event-loop", required_argument, NULL, OPT_EVENT_LOOP},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* '+': stop at the first operand instead of moving operands to the end
 * (demixd takes none; the first is refused by name). ':': a missing value
 * comes back as ':' rather than '?', so that both get demixd's own message
 * (opterr is 0 as well: getopt prints nothing). */
static const char shorts[] = "+:m:b:p:t:h";

/* "--name" of an option's code, for the messages. */
static void option_name(int code, char *buf, size_t cap)
{
    for (const struct option *l = longs; l->name; l++)
        if (l->val == code) {
            snprintf(buf, cap, "--%s", l->name);
            return;
        }
    snprintf(buf, cap, "-%c", code); /* not reached: every code has a name */
}

/* text as a whole decimal number in lo..hi into *out; -1 after printing
 * why not (name: "--port"). */
static int whole(const char *name, const char *text, long lo, long hi,
                 long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr,
                "demixd: %s wants a whole number in %ld..%ld, not "
                "'%s'\n",
                name, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* whole() into an int field. */
static int whole_int(const char *name, const char *text, long lo, long hi,
                     int *out)
{
    long n;
    if (whole(name, text, lo, hi, &n))
        return -1;
    *out = (int)n;
    return 0;
}

/* A file name option: not empty, fits the buffer, readable now (a TLS
 * file that cannot be read fails here, not at the first handshake). */
static int readable_file(const char *name, const char *v, char *dst)
{
    if (!v[0] || strlen(v) >= DEMIXD_PATH_BYTES) {
        fprintf(stderr, "demixd: %s wants a file name\n", name);
        return -1;
    }
    if (access(v, R_OK)) {
        fprintf(stderr, "demixd: %s %s: %s\n", name, v, strerror(errno));
        return -1;
    }
    snprintf(dst, DEMIXD_PATH_BYTES, "%s", v);
    return 0;
}

/* Store the value v of the option with code `code` ("--name" in name).
 * 0, or -1 after printing why v is refused. */
static int set_option(demixd_options *o, int code, const char *name,
                      const char *v)
{
    long n;
    switch (code) {
    case 'm':
        snprintf(o->model_path, sizeof o->model_path, "%s", v);
        return 0;
    case 'b':
        if (demix_backend_parse(v, &o->backend)) {
            fprintf(stderr,
                    "demixd: --backend is auto, cpu or cuda, not '%s'\n", v);
            return -1;
        }
        return 0;
    case 'p':
        if (!strcmp(v, "fp32"))
            o->precision = DEMIX_PRECISION_FP32;
        else if (!strcmp(v, "fast"))
            o->precision = DEMIX_PRECISION_FAST;
        else if (!strcmp(v, "default"))
            o->precision = DEMIX_PRECISION_DEFAULT;
        else {
            fprintf(stderr, "demixd: --precision is fp32 or fast, not '%s'\n",
                    v);
            return -1;
        }
        return 0;
    case 't':
        return whole_int(name, v, 1, 1024, &o->threads);
    case OPT_HOST:
        if (!v[0] || strlen(v) >= sizeof o->host) {
            fprintf(stderr, "demixd: --host wants an address\n");
            return -1;
        }
        snprintf(o->host, sizeof o->host, "%s", v);
        return 0;
    case OPT_PORT:
        return whole_int(name, v, 0, 65535, &o->port);
    case OPT_MAX_SESSIONS:
        return whole_int(name, v, 1, 1048576, &o->max_sessions);
    case OPT_SERVICE_THREADS:
        return whole_int(name, v, 1, DEMIXD_MAX_SERVICE_THREADS,
                         &o->service_threads);
    case OPT_DEVICE:
        return whole_int(name, v, 0, 255, &o->device);
    case OPT_DRAIN_SECONDS:
        return whole_int(name, v, 0, 3600, &o->drain_seconds);
    case OPT_STEPS_IN_FLIGHT:
        return whole_int(name, v, 1, 2, &o->steps_in_flight);
    case OPT_WEB:
        snprintf(o->web_dir, sizeof o->web_dir, "%s", v);
        return 0;
    case OPT_MAX_FILE_MB:
        if (whole(name, v, 1, 4096, &n))
            return -1;
        o->max_file_bytes = n << 20;
        return 0;
    case OPT_MAX_FILE_SECONDS:
        return whole_int(name, v, 1, 86400, &o->max_file_seconds);
    case OPT_FILE_JOBS:
        return whole_int(name, v, 1, 64, &o->file_jobs);
    case OPT_MIN_UPLOAD_RATE:
        return whole(name, v, 0, 1L << 30, &o->min_upload_rate);
    case OPT_OPUS_COMPLEXITY:
        return whole_int(name, v, 0, 10, &o->opus_complexity);
    case OPT_TOKENS:
        if (!v[0] || strlen(v) >= sizeof o->tokens_path) {
            fprintf(stderr, "demixd: --tokens wants a file name\n");
            return -1;
        }
        snprintf(o->tokens_path, sizeof o->tokens_path, "%s", v);
        return 0;
    case OPT_TLS_CERT:
        return readable_file(name, v, o->tls_cert);
    case OPT_TLS_KEY:
        return readable_file(name, v, o->tls_key);
    case OPT_ALLOW_ORIGIN:
        if (!v[0] || strlen(v) >= sizeof o->allow_origin) {
            fprintf(stderr, "demixd: --allow-origin wants origins such as "
                            "https://host:port\n");
            return -1;
        }
        snprintf(o->allow_origin, sizeof o->allow_origin, "%s", v);
        return 0;
    case OPT_MAX_PER_ADDRESS:
        return whole_int(name, v, 0, 1048576, &o->max_per_address);
    case OPT_IDLE_TIMEOUT:
        return whole_int(name, v, 0, 86400, &o->idle_timeout_s);
    case OPT_EVENT_LOOP:
        if (demixd_event_loop_parse(v, &o->event_loop)) {
            fprintf(stderr, "demixd: --event-loop is epoll or poll, not '%s'\n",
                    v);
            return -1;
        }
        return 0;
    case OPT_LOG_LEVEL:
        if (demixd_log_parse_level(v, &o->log_level)) {
            fprintf(stderr,
                    "demixd: --log-level is error, warn, info or debug, not "
                    "'%s'\n",
                    v);
            return -1;
        }
        return 0;
    }
    return -1; /* not reached: getopt_long returns only the codes above */
}

int demixd_event_loop_parse(const char *text, demixd_event_loop_kind *out)
{
    if (!strcmp(text, "epoll"))
        *out = DEMIXD_EVENT_LOOP_EPOLL;
    else if (!strcmp(text, "poll"))
        *out = DEMIXD_EVENT_LOOP_POLL;
    else
        return -1;
    return 0;
}

const char *demixd_event_loop_name(demixd_event_loop_kind kind)
{
    return kind == DEMIXD_EVENT_LOOP_EPOLL ? "epoll" : "poll";
}

int demixd_options_parse(int argc, char **argv, demixd_options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = DEMIX_BACKEND_AUTO;
    o->precision = DEMIX_PRECISION_DEFAULT;
    o->threads = demixd_usable_cpus();
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 8080;
    o->max_file_bytes = 200L << 20;
    o->max_file_seconds = 1200;
    o->file_jobs = 2;
    o->opus_complexity = 10;
    o->idle_timeout_s = 30;
    o->max_per_address = -1;
    o->min_upload_rate = 16384;
    o->log_level = DEMIXD_LOG_INFO;
    int have_model = 0, have_web = 0, have_tokens = 0;

    optind = 0; /* glibc: start afresh (a parse before may have stopped
                   inside a group of short options) */
    opterr = 0;
    for (;;) {
        /* Without permutation argv[at] is the argument being read (optind
         * moves past it once it is done), the one an error names. */
        int at = optind ? optind : 1;
        int c = getopt_long(argc, argv, shorts, longs, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            demixd_options_usage(stdout);
            return 1;
        }
        if (c == OPT_VERSION) {
            printf("demixd %s\n", DEMIXD_VERSION);
            return 1;
        }
        if (c == '?') {
            fprintf(stderr, "demixd: unknown argument '%s' (see --help)\n",
                    argv[at]);
            return -1;
        }
        char name[32];
        option_name(c == ':' ? optopt : c, name, sizeof name);
        if (c == ':') {
            fprintf(stderr, "demixd: %s needs a value\n", name);
            return -1;
        }
        if (set_option(o, c, name, optarg))
            return -1;
        have_model |= c == 'm';
        have_web |= c == OPT_WEB;
        have_tokens |= c == OPT_TOKENS;
    }
    if (optind < argc) {
        fprintf(stderr, "demixd: unknown argument '%s' (see --help)\n",
                argv[optind]);
        return -1;
    }
    if (!o->tls_cert[0] != !o->tls_key[0]) {
        fprintf(stderr, "demixd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    demixd_log_set_level(o->log_level);
    if (!have_model)
        default_model(o->model_path, sizeof o->model_path);
    if (!have_web)
        default_web(o->web_dir, sizeof o->web_dir);
    /* Unlike DEMIX_MODEL, a tokens file that is named but missing is not
     * skipped: main.c's load fails, so the server never opens up by
     * mistake. */
    const char *tokens_env = getenv("DEMIXD_TOKENS_FILE");
    if (!have_tokens && tokens_env && tokens_env[0]) {
        if (strlen(tokens_env) >= sizeof o->tokens_path) {
            fprintf(stderr, "demixd: DEMIXD_TOKENS_FILE is too long\n");
            return -1;
        }
        snprintf(o->tokens_path, sizeof o->tokens_path, "%s", tokens_env);
    }
    return 0;
}
