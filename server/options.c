/*
 * options.c - parsing of demixd's command line (options.h).
 *
 * Every option takes its value as "--name VALUE" or "--name=VALUE".
 * Numbers are whole decimal integers within the ranges of the usage text.
 *
 * Thread context: the main thread, before any other starts
 * (demixd_usable_cpus: any thread).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include "options.h"

#include <errno.h>
#include <sched.h>
#include <limits.h>
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
        "      --log-level L      error, warn, info (default) or debug\n"
        "  -h, --help             this text\n"
        "      --version          the version\n",
        DEMIXD_INSTALL_DATA_DIR, DEFAULT_MODEL_FILE, DEMIXD_SOURCE_DIR,
        DEFAULT_MODEL_FILE, DEMIXD_INSTALL_DATA_DIR, DEMIXD_SOURCE_DIR,
        DEMIXD_DEFAULT_PER_ADDRESS);
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

/* "--name V", "--name=V" or the alias "-x V". 1: matched (value set), 0: not
 * this option, -1: value missing. */
static int option(int argc, char **argv, int *i, const char *name,
                  const char *alias, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) && (!alias || strcmp(a, alias)))
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "demixd: %s needs a value\n", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

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

    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        long n;
        int r;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            demixd_options_usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("demixd %s\n", DEMIXD_VERSION);
            return 1;
        }
        if ((r = option(argc, argv, &i, "--model", "-m", &v))) {
            if (r < 0)
                return -1;
            snprintf(o->model_path, sizeof o->model_path, "%s", v);
            have_model = 1;
        } else if ((r = option(argc, argv, &i, "--backend", "-b", &v))) {
            if (r < 0)
                return -1;
            if (demix_backend_parse(v, &o->backend)) {
                fprintf(stderr,
                        "demixd: --backend is auto, cpu or cuda, not "
                        "'%s'\n",
                        v);
                return -1;
            }
        } else if ((r = option(argc, argv, &i, "--precision", "-p", &v))) {
            if (r < 0)
                return -1;
            if (!strcmp(v, "fp32"))
                o->precision = DEMIX_PRECISION_FP32;
            else if (!strcmp(v, "fast"))
                o->precision = DEMIX_PRECISION_FAST;
            else if (!strcmp(v, "default"))
                o->precision = DEMIX_PRECISION_DEFAULT;
            else {
                fprintf(stderr,
                        "demixd: --precision is fp32 or fast, not "
                        "'%s'\n",
                        v);
                return -1;
            }
        } else if ((r = option(argc, argv, &i, "--threads", "-t", &v))) {
            if (r < 0 || whole("--threads", v, 1, 1024, &n))
                return -1;
            o->threads = (int)n;
        } else if ((r = option(argc, argv, &i, "--host", NULL, &v))) {
            if (r < 0)
                return -1;
            if (!v[0] || strlen(v) >= sizeof o->host) {
                fprintf(stderr, "demixd: --host wants an address\n");
                return -1;
            }
            snprintf(o->host, sizeof o->host, "%s", v);
        } else if ((r = option(argc, argv, &i, "--port", NULL, &v))) {
            if (r < 0 || whole("--port", v, 0, 65535, &n))
                return -1;
            o->port = (int)n;
        } else if ((r = option(argc, argv, &i, "--max-sessions", NULL, &v))) {
            if (r < 0 || whole("--max-sessions", v, 1, 1048576, &n))
                return -1;
            o->max_sessions = (int)n;
        } else if ((r = option(argc, argv, &i, "--web", NULL, &v))) {
            if (r < 0)
                return -1;
            snprintf(o->web_dir, sizeof o->web_dir, "%s", v);
            have_web = 1;
        } else if ((r = option(argc, argv, &i, "--max-file-mb", NULL, &v))) {
            if (r < 0 || whole("--max-file-mb", v, 1, 4096, &n))
                return -1;
            o->max_file_bytes = n << 20;
        } else if ((r = option(argc, argv, &i, "--max-file-seconds", NULL,
                               &v))) {
            if (r < 0 || whole("--max-file-seconds", v, 1, 86400, &n))
                return -1;
            o->max_file_seconds = (int)n;
        } else if ((r = option(argc, argv, &i, "--file-jobs", NULL, &v))) {
            if (r < 0 || whole("--file-jobs", v, 1, 64, &n))
                return -1;
            o->file_jobs = (int)n;
        } else if ((r = option(argc, argv, &i, "--service-threads", NULL,
                               &v))) {
            if (r < 0 || whole("--service-threads", v, 1, DEMIXD_MAX_SERVICE_THREADS, &n))
                return -1;
            o->service_threads = (int)n;
        } else if ((r = option(argc, argv, &i, "--drain-seconds", NULL,
                               &v))) {
            if (r < 0 || whole("--drain-seconds", v, 0, 3600, &n))
                return -1;
            o->drain_seconds = (int)n;
        } else if ((r = option(argc, argv, &i, "--steps-in-flight", NULL,
                               &v))) {
            if (r < 0 || whole("--steps-in-flight", v, 1, 2, &n))
                return -1;
            o->steps_in_flight = (int)n;
        } else if ((r = option(argc, argv, &i, "--device", NULL, &v))) {
            if (r < 0 || whole("--device", v, 0, 255, &n))
                return -1;
            o->device = (int)n;
        } else if ((r = option(argc, argv, &i, "--opus-complexity", NULL,
                               &v))) {
            if (r < 0 || whole("--opus-complexity", v, 0, 10, &n))
                return -1;
            o->opus_complexity = (int)n;
        } else if ((r = option(argc, argv, &i, "--tls-cert", NULL, &v)) ||
                   (r = option(argc, argv, &i, "--tls-key", NULL, &v))) {
            int cert = !strncmp(a, "--tls-cert", 10);
            char *dst = cert ? o->tls_cert : o->tls_key;
            if (r < 0)
                return -1;
            if (!v[0] || strlen(v) >= DEMIXD_PATH_BYTES) {
                fprintf(stderr, "demixd: %s wants a file name\n",
                        cert ? "--tls-cert" : "--tls-key");
                return -1;
            }
            if (access(v, R_OK)) {
                fprintf(stderr, "demixd: %s %s: %s\n",
                        cert ? "--tls-cert" : "--tls-key", v, strerror(errno));
                return -1;
            }
            snprintf(dst, DEMIXD_PATH_BYTES, "%s", v);
        } else if ((r = option(argc, argv, &i, "--allow-origin", NULL,
                               &v))) {
            if (r < 0)
                return -1;
            if (!v[0] || strlen(v) >= sizeof o->allow_origin) {
                fprintf(stderr, "demixd: --allow-origin wants origins such "
                                "as https://host:port\n");
                return -1;
            }
            snprintf(o->allow_origin, sizeof o->allow_origin, "%s", v);
        } else if ((r = option(argc, argv, &i, "--min-upload-rate", NULL,
                               &v))) {
            if (r < 0 || whole("--min-upload-rate", v, 0, 1L << 30, &n))
                return -1;
            o->min_upload_rate = n;
        } else if ((r = option(argc, argv, &i, "--max-per-address", NULL,
                               &v))) {
            if (r < 0 || whole("--max-per-address", v, 0, 1048576, &n))
                return -1;
            o->max_per_address = (int)n;
        } else if ((r = option(argc, argv, &i, "--idle-timeout", NULL,
                               &v))) {
            if (r < 0 || whole("--idle-timeout", v, 0, 86400, &n))
                return -1;
            o->idle_timeout_s = (int)n;
        } else if ((r = option(argc, argv, &i, "--tokens", NULL, &v))) {
            if (r < 0)
                return -1;
            if (!v[0] || strlen(v) >= sizeof o->tokens_path) {
                fprintf(stderr, "demixd: --tokens wants a file name\n");
                return -1;
            }
            snprintf(o->tokens_path, sizeof o->tokens_path, "%s", v);
            have_tokens = 1;
        } else if ((r = option(argc, argv, &i, "--log-level", NULL, &v))) {
            if (r < 0)
                return -1;
            if (demixd_log_parse_level(v, &o->log_level)) {
                fprintf(stderr,
                        "demixd: --log-level is error, warn, info or "
                        "debug, not '%s'\n",
                        v);
                return -1;
            }
        } else {
            fprintf(stderr, "demixd: unknown argument '%s' (see --help)\n", a);
            return -1;
        }
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
