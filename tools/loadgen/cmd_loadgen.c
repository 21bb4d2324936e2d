/*
 * cmd_loadgen.c - `demix loadgen`: load-test a demixd server with many
 * live streaming sessions at once and report what they got: how many the
 * server took, whether it kept up with real time, the latency each message
 * saw (in total and beyond the announced latency), late and lost hops,
 * whether a sample of sessions got the same stems as a reference, the
 * client's own CPU per thread, and the server's own figures
 * (docs/loadgen.md).
 *
 * Design. Options and the overall flow live here; loadgen_run.h runs a
 * round over --threads worker threads (loadgen_worker.h: each its own loop,
 * wsio's epoll for ws:// or an lws context for wss://, and its own share
 * of the sessions), the main thread keeping the
 * stats connections, the progress line and the reference session. The
 * audio loop (loadgen_audio.h) is made and put into wire form once and
 * shared read-only by every thread.
 *
 *   --sessions N       one round of N sessions
 *   --ramp A:B:STEP    rounds of A, A+STEP, ... B sessions, one table row
 *                      each, until one does not hold (a refusal, a failed
 *                      session, a lost hop, p99 added latency above
 *                      --max-p99-ms, or fewer than 95% kept up); the
 *                      largest N that held is the server's real-time
 *                      capacity as a client sees it.
 *
 * Before the first round, with --verify above 0, one reference session
 * streams the same audio alone; a sample of every round's sessions is
 * compared with it (loadgen_verify.h).
 *
 * Limits. No fixed cap below LOADGEN_MAX_SESSIONS (a sanity bound above
 * the ports of one address): the soft RLIMIT_NOFILE is raised to what the
 * sessions need (one descriptor each, plus a margin), and a hard limit
 * below that is an error that says how to raise it.
 *
 * Ctrl-C: every streaming session is judged and sends end; the rest of the
 * round (its stems' tail, summaries) is read and the report printed. A
 * second Ctrl-C drops every connection at once.
 *
 * Thread context: the main thread; signal handlers only count and wake.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "loadgen_audio.h"
#include "loadgen_report.h"
#include "loadgen_run.h"
#include "loadgen_session.h"
#include "loadgen_stats.h"
#include "loadgen_verify.h"
#include "protocol.h"
#include "stream_url.h"
#include "ws_client.h"

#define DEFAULT_SESSIONS 4
#define DEFAULT_SECONDS 20.0
#define DEFAULT_RATE_HZ 48000
#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_CONNECT_RATE 2000.0 /* connections per second */
#define DEFAULT_VERIFY 0.01         /* of the sessions, compared */
#define DEFAULT_LATE_MS 10.0
#define DEFAULT_MAX_P99_MS 10.0
#define DEFAULT_CHAOS_SEED 1
#define LOADGEN_MAX_SESSIONS 1000000 /* sanity: > the ports of one address */
#define LOADGEN_MAX_THREADS 1024
#define FDS_PER_THREAD 4 /* a loop's own: lws's event pipe and random
                            source, wsio's epoll and eventfd */
#define FDS_SPARE 64     /* stats connections, files, stdio */

static const char *const default_stems[] = {"drums", "bass", "vocals", "other"};

typedef struct loadgen_options {
    const char *url;
    const char *input;
    const char *token;
    const char *stems;
    long sessions;
    int ramp;
    long ramp_from, ramp_to, ramp_step;
    double seconds;
    demix_proto_codec codec;
    long rate_hz;
    long timeout_s;
    long threads; /* 0: one per online CPU */
    double connect_rate;
    double verify;
    double verify_min_snr_db; /* NaN: the codec's default */
    double late_ms;
    double max_p99_ms;
    client_resume_options resume;
    double chaos;               /* fraction of the sessions that misbehave */
    unsigned long long chaos_seed;
    int session_list;
    int json;
    int verbose;
    int quiet;
} loadgen_options;

typedef struct run {
    const loadgen_options *o;
    loadgen_run lr;
    loadgen_audio *audio;
    loadgen_reference *reference;
    char reference_error[512];
    double reference_wall_s;
} run;

static volatile sig_atomic_t g_interrupts;
static ws_client_loop *volatile g_main_loop;
static loadgen_loop *volatile g_loops;
static volatile int g_loop_count;

static void on_signal(int sig)
{
    (void)sig;
    if (g_interrupts < 2)
        g_interrupts++;
    if (g_main_loop)
        ws_client_loop_wake(g_main_loop);
    loadgen_loop *loops = g_loops;
    for (int i = 0; loops && i < g_loop_count; i++)
        loadgen_loop_wake(&loops[i]);
}

void cmd_loadgen_usage(FILE *out)
{
    fprintf(out,
            "usage: demix loadgen --url ws://HOST:PORT/v1/stream [OPTIONS]\n"
            "\n"
            "Open many live streaming sessions on a demixd server at once, each\n"
            "sending audio at real-time pace and receiving its stems, and report\n"
            "how many the server took, whether it kept up, and the latency seen.\n"
            "\n"
            "options:\n"
            "  -u, --url URL        the server's stream endpoint (required)\n"
            "  -n, --sessions N     sessions at once (default: %d)\n"
            "      --ramp A:B:STEP  rounds of A, A+STEP, ..., B sessions; stops at\n"
            "                       the first that does not hold and reports the\n"
            "                       largest N that did\n"
            "  -s, --seconds S      audio each session streams, per round (default:\n"
            "                       %.0f)\n"
            "  -i, --input FILE     loop this file (its first %d s) instead of the\n"
            "                       generated test signal\n"
            "  -c, --codec C        pcm16 (default), f32 or opus, both directions\n"
            "  -r, --rate R         session sample rate in Hz (default: %d)\n"
            "      --stems A,B      stems to ask for (default: %s,%s,%s,%s)\n"
            "      --token T        access token, when the server wants one\n"
            "                       (default: $DEMIX_TOKEN)\n"
            "  -t, --threads N      client threads, each with its own connections\n"
            "                       (default: one per online CPU, at most one per\n"
            "                       session)\n"
            "      --connect-rate R new connections per second, all threads\n"
            "                       (default: %.0f)\n"
            "      --verify F       fraction of the sessions whose stems are decoded\n"
            "                       and compared with a reference session, at least\n"
            "                       one; 0: none (default: %g)\n"
            "      --verify-min-snr DB  a compared session below this SNR is a\n"
            "                       mismatch (default: %.0f for PCM, %.0f for Opus)\n"
            "      --chaos F        this fraction of each round's sessions misbehave\n"
            "                       (vanish, stall, stop reading, garbage, malformed\n"
            "                       messages, flood; at least one when above 0,\n"
            "                       ws:// only); the rest are the round's sessions\n"
            "      --chaos-seed N   the misbehaviours' generator (default: %d)\n"
            "      --late-ms MS     a hop is late when its added latency exceeds\n"
            "                       this (default: %.0f)\n"
            "      --max-p99-ms MS  a round holds only with p99 added latency at\n"
            "                       most this (default: %.0f)\n"
            "      --timeout S      a session (or a stats request) fails after S\n"
            "                       seconds without a message from the server\n"
            "                       (default: %d)\n"
            "      --reconnect N    a session whose server goes away (restart, at\n"
            "                       capacity, dropped) connects again up to N times\n"
            "                       and resumes where its stems stopped (default:\n"
            "                       %d; 0: it fails)\n"
            "      --reconnect-wait S  give an outage at most S seconds (default: %g)\n"
            "      --resume-tail-ms MS  audio re-sent before the resume point\n"
            "                       (default: %g)\n"
            "      --json           the report as one JSON object on stdout\n"
            "      --no-session-list  leave the per-session list out of --json\n"
            "  -v, --verbose        a line per session in the report\n"
            "  -q, --quiet          no progress lines\n"
            "  -h, --help           this text\n"
            "\n"
            "Added latency: the latency beyond the announced one (ready's\n"
            "latency_frames). A session keeps up when, at the end of its audio,\n"
            "its output has arrived on every stem to within the announced latency\n"
            "+ 1 s of real time. A round holds when no session was refused or\n"
            "failed, no hop was lost, the p99 added latency is within\n"
            "--max-p99-ms and at least 95%% kept up. See docs/loadgen.md.\n"
            "\n"
            "exit status: 0 the run completed, no session failed and no compared\n"
            "session mismatched (refusals are a result), 1 a failure (cannot\n"
            "connect, a session failed, a mismatch, Ctrl-C), 2 usage error.\n",
            DEFAULT_SESSIONS, DEFAULT_SECONDS, LOADGEN_AUDIO_MAX_FILE_S,
            DEFAULT_RATE_HZ, default_stems[0], default_stems[1],
            default_stems[2], default_stems[3], DEFAULT_CONNECT_RATE,
            DEFAULT_VERIFY, LOADGEN_VERIFY_PCM_MIN_SNR_DB,
            LOADGEN_VERIFY_OPUS_MIN_SNR_DB, DEFAULT_CHAOS_SEED, DEFAULT_LATE_MS,
            DEFAULT_MAX_P99_MS, DEFAULT_TIMEOUT_S,
            CLIENT_RESUME_DEFAULT_ATTEMPTS, CLIENT_RESUME_DEFAULT_WAIT_S,
            CLIENT_RESUME_DEFAULT_TAIL_MS);
}

/* ------------------------------------------------------------ options */

/* A number in [lo, hi] for `option` (NaN and infinities refused). */
static int parse_number(const char *option, const char *text, double lo,
                        double hi, const char *what, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr,
                "demix loadgen: %s must be %s from %g to %g (got '%s')\n",
                option, what, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 0.1 && v <= 86400.0)) {
        fprintf(stderr,
                "demix loadgen: --seconds must be a number from 0.1 "
                "to 86400 (got '%s')\n",
                text);
        return -1;
    }
    *out = v;
    return 0;
}

/* "A:B:STEP" */
static int parse_ramp(const char *text, loadgen_options *o)
{
    long v[3];
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        v[i] = strtol(p, &end, 10);
        if (errno || end == p || (i < 2 ? *end != ':' : *end != '\0')) {
            fprintf(stderr,
                    "demix loadgen: --ramp takes FROM:TO:STEP, whole "
                    "numbers (got '%s')\n",
                    text);
            return -1;
        }
        p = end + 1;
    }
    if (v[0] < 1 || v[1] < v[0] || v[1] > LOADGEN_MAX_SESSIONS || v[2] < 1) {
        fprintf(stderr,
                "demix loadgen: --ramp %s: need 1 <= FROM <= TO <= %d "
                "and STEP >= 1\n",
                text, LOADGEN_MAX_SESSIONS);
        return -1;
    }
    o->ramp = 1;
    o->ramp_from = v[0];
    o->ramp_to = v[1];
    o->ramp_step = v[2];
    return 0;
}

static int parse_codec(const char *text, demix_proto_codec *out)
{
    if (strcmp(text, "pcm16") == 0 || strcmp(text, "pcm_s16") == 0 ||
        strcmp(text, "pcm") == 0)
        *out = DEMIX_PROTO_CODEC_PCM_S16;
    else if (strcmp(text, "f32") == 0 || strcmp(text, "pcm_f32") == 0)
        *out = DEMIX_PROTO_CODEC_PCM_F32;
    else if (strcmp(text, "opus") == 0)
        *out = DEMIX_PROTO_CODEC_OPUS;
    else {
        fprintf(stderr,
                "demix loadgen: --codec must be pcm16, f32 or opus "
                "(got '%s')\n",
                text);
        return -1;
    }
    return 0;
}

/* One of the reconnect options (client_resume.h): 1 taken, 0 not one of
 * them, -1 a usage error (said). */
static int resume_option(int argc, char **argv, int *i,
                         client_resume_options *o)
{
    for (int k = 0; k < CLIENT_RESUME_OPTIONS; k++) {
        const char *v;
        int r = cli_option(argc, argv, i, client_resume_option_names[k], NULL,
                           &v);
        if (r == 0)
            continue;
        char err[256];
        if (r < 0 || client_resume_parse_option(client_resume_option_names[k],
                                                v, o, err, sizeof err) < 0) {
            if (r > 0)
                fprintf(stderr, "demix loadgen: %s\n", err);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* 0 to go on, -1 after --help (exit 0), else the exit status. */
static int parse_args(int argc, char **argv, loadgen_options *o)
{
    memset(o, 0, sizeof *o);
    o->sessions = DEFAULT_SESSIONS;
    o->seconds = DEFAULT_SECONDS;
    o->codec = DEMIX_PROTO_CODEC_PCM_S16;
    o->rate_hz = DEFAULT_RATE_HZ;
    o->timeout_s = DEFAULT_TIMEOUT_S;
    o->connect_rate = DEFAULT_CONNECT_RATE;
    o->verify = DEFAULT_VERIFY;
    o->verify_min_snr_db = NAN;
    o->late_ms = DEFAULT_LATE_MS;
    o->max_p99_ms = DEFAULT_MAX_P99_MS;
    o->session_list = 1;
    client_resume_options_default(&o->resume);
    o->chaos_seed = DEFAULT_CHAOS_SEED;
    int sessions_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cmd_loadgen_usage(stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--no-session-list") == 0) {
            o->session_list = 0;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if ((r = resume_option(argc, argv, &i, &o->resume))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--url", "-u", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->url = v;
        } else if ((r = cli_option(argc, argv, &i, "--sessions", "-n", &v))) {
            if (r < 0 || cli_int("loadgen", "--sessions", v, 1,
                                 LOADGEN_MAX_SESSIONS, &o->sessions))
                return DEMIX_EXIT_USAGE;
            sessions_given = 1;
        } else if ((r = cli_option(argc, argv, &i, "--ramp", NULL, &v))) {
            if (r < 0 || parse_ramp(v, o))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--seconds", "-s", &v))) {
            if (r < 0 || parse_seconds(v, &o->seconds))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--input", "-i", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->input = v;
        } else if ((r = cli_option(argc, argv, &i, "--codec", "-c", &v))) {
            if (r < 0 || parse_codec(v, &o->codec))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--rate", "-r", &v))) {
            if (r < 0 ||
                cli_int("loadgen", "--rate", v, DEMIX_PROTO_MIN_RATE_HZ,
                        DEMIX_PROTO_MAX_RATE_HZ, &o->rate_hz))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--stems", NULL, &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->stems = v;
        } else if ((r = cli_option(argc, argv, &i, "--token", NULL, &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->token = v;
        } else if ((r = cli_option(argc, argv, &i, "--timeout", NULL, &v))) {
            if (r < 0 ||
                cli_int("loadgen", "--timeout", v, 1, 86400, &o->timeout_s))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--threads", "-t", &v))) {
            if (r < 0 || cli_int("loadgen", "--threads", v, 1,
                                 LOADGEN_MAX_THREADS, &o->threads))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--connect-rate", NULL,
                                   &v))) {
            if (r < 0 || parse_number("--connect-rate", v, 1, 1e6,
                                      "a number of connections per second",
                                      &o->connect_rate))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--verify", NULL, &v))) {
            if (r < 0 ||
                parse_number("--verify", v, 0, 1, "a fraction", &o->verify))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--verify-min-snr", NULL,
                                   &v))) {
            if (r < 0 || parse_number("--verify-min-snr", v, -100, 1000,
                                      "a number of dB",
                                      &o->verify_min_snr_db))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--chaos", NULL, &v))) {
            if (r < 0 || parse_number("--chaos", v, 0, 0.9, "a fraction",
                                      &o->chaos))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--chaos-seed", NULL,
                                   &v))) {
            double seed;
            if (r < 0 || parse_number("--chaos-seed", v, 0, 9007199254740991.0,
                                      "a whole number", &seed) ||
                seed != floor(seed))
                return DEMIX_EXIT_USAGE;
            o->chaos_seed = (unsigned long long)seed;
        } else if ((r = cli_option(argc, argv, &i, "--late-ms", NULL, &v))) {
            if (r < 0 || parse_number("--late-ms", v, 0, 60000,
                                      "a number of milliseconds", &o->late_ms))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--max-p99-ms", NULL,
                                   &v))) {
            if (r < 0 || parse_number("--max-p99-ms", v, 0, 600000,
                                      "a number of milliseconds",
                                      &o->max_p99_ms))
                return DEMIX_EXIT_USAGE;
        } else {
            fprintf(stderr,
                    "demix loadgen: unknown option or argument '%s' "
                    "(see demix help loadgen)\n",
                    a);
            return DEMIX_EXIT_USAGE;
        }
    }
    const char *env_token = getenv("DEMIX_TOKEN");
    if (!o->token && env_token && env_token[0])
        o->token = env_token;
    if (o->token && strlen(o->token) > DEMIX_PROTO_TOKEN_MAX_BYTES) {
        fprintf(stderr, "demix loadgen: the token is longer than %d bytes\n",
                DEMIX_PROTO_TOKEN_MAX_BYTES);
        return DEMIX_EXIT_USAGE;
    }
    if (!o->url) {
        fprintf(stderr,
                "demix loadgen: --url is required (for example --url "
                "ws://127.0.0.1:8080%s)\n\n",
                DEMIX_PROTO_PATH);
        cmd_loadgen_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (o->ramp && sessions_given) {
        fprintf(stderr, "demix loadgen: --sessions and --ramp exclude each "
                        "other\n");
        return DEMIX_EXIT_USAGE;
    }
    if (o->codec == DEMIX_PROTO_CODEC_OPUS && o->rate_hz != 8000 &&
        o->rate_hz != 12000 && o->rate_hz != 16000 && o->rate_hz != 24000 &&
        o->rate_hz != 48000) {
        fprintf(stderr,
                "demix loadgen: --codec opus takes --rate 8000, "
                "12000, 16000, 24000 or 48000 (got %ld)\n",
                o->rate_hz);
        return DEMIX_EXIT_USAGE;
    }
    if (isnan(o->verify_min_snr_db))
        o->verify_min_snr_db = o->codec == DEMIX_PROTO_CODEC_OPUS
                                   ? LOADGEN_VERIFY_OPUS_MIN_SNR_DB
                                   : LOADGEN_VERIFY_PCM_MIN_SNR_DB;
    char err[512], host[256], path[1024];
    int tls, port;
    if (ws_client_parse_url(o->url, &tls, host, sizeof host, &port, path,
                            sizeof path, err, sizeof err)) {
        fprintf(stderr, "demix loadgen: %s\n", err);
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

/* -------------------------------------------------------------- setup */

/* Enough file descriptors for n sessions on `threads` lws contexts: the
 * soft limit is raised to that (not to the hard limit: lws sizes a table
 * of 8 bytes per possible descriptor in every context by the soft limit).
 * 0, or -1 after saying why and what to do. */
static int ensure_fds(long n, int threads)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 0;
    rlim_t want = (rlim_t)n + (rlim_t)threads * FDS_PER_THREAD + FDS_SPARE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        cli_error("%ld sessions need %lu open files (one per session, %d per "
                  "thread, %d spare); the hard limit is %lu: raise it (as "
                  "root: ulimit -Hn %lu, LimitNOFILE= in a systemd unit, "
                  "docker run --ulimit nofile=%lu:%lu) or run fewer "
                  "sessions",
                  n, (unsigned long)want, FDS_PER_THREAD, FDS_SPARE,
                  (unsigned long)rl.rlim_max, (unsigned long)want,
                  (unsigned long)want, (unsigned long)want);
        return -1;
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        cli_error("cannot raise the open-file limit to %lu for %ld sessions: "
                  "%s (try ulimit -n %lu)",
                  (unsigned long)want, n, strerror(errno),
                  (unsigned long)want);
        return -1;
    }
    return 0;
}

static cJSON *json_verify_header(const run *g)
{
    const loadgen_options *o = g->o;
    if (!(o->verify > 0))
        return cJSON_CreateNull();
    cJSON *v = cJSON_CreateObject();
    cJSON *ref = v ? cJSON_AddObjectToObject(v, "reference") : NULL;
    int ok =
        ref && cJSON_AddNumberToObject(v, "fraction", o->verify) &&
        cJSON_AddNumberToObject(v, "min_snr_db", o->verify_min_snr_db) &&
        cJSON_AddBoolToObject(ref, "ok", g->reference != NULL) &&
        cJSON_AddItemToObject(
            ref, "error",
            g->reference ? cJSON_CreateNull()
                         : cJSON_CreateString(g->reference_error)) &&
        cJSON_AddNumberToObject(
            ref, "seconds",
            g->reference ? (double)loadgen_reference_frames(g->reference) /
                               o->rate_hz
                         : 0.0) &&
        cJSON_AddNumberToObject(ref, "wall_s", g->reference_wall_s);
    if (!ok) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

static cJSON *json_header(const run *g)
{
    const loadgen_options *o = g->o;
    const loadgen_config *c = &g->lr.cfg;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON *verify = json_verify_header(g);
    int ok =
        verify && cJSON_AddItemToObject(root, "verify", verify);
    if (!ok)
        cJSON_Delete(verify);
    ok = ok && cJSON_AddStringToObject(root, "url", o->url) &&
         cJSON_AddStringToObject(root, "mode",
                                 o->ramp ? "ramp" : "sessions") &&
         cJSON_AddStringToObject(root, "codec",
                                 demix_proto_codec_name(o->codec)) &&
         cJSON_AddNumberToObject(root, "rate", (double)o->rate_hz) &&
         cJSON_AddNumberToObject(root, "channels",
                                 loadgen_audio_channels(g->audio)) &&
         cJSON_AddStringToObject(root, "input",
                                 o->input ? o->input : "generated") &&
         cJSON_AddNumberToObject(root, "seconds", o->seconds) &&
         cJSON_AddNumberToObject(root, "threads", g->lr.threads) &&
         cJSON_AddNumberToObject(root, "connect_rate", o->connect_rate) &&
         cJSON_AddNumberToObject(root, "late_ms", o->late_ms) &&
         cJSON_AddNumberToObject(root, "max_p99_ms", o->max_p99_ms);
    cJSON *stems = ok ? cJSON_AddArrayToObject(root, "stems") : NULL;
    ok = ok && stems;
    for (int i = 0; ok && i < c->stem_count; i++)
        ok = cJSON_AddItemToArray(stems, cJSON_CreateString(c->stems[i]));
    ok = ok && cJSON_AddArrayToObject(root, "rounds");
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static void print_title(const run *g, const loadgen_round *r)
{
    const loadgen_options *o = g->o;
    int n = r->sessions;
    char chaos[64] = "";
    if (r->chaos_enabled)
        snprintf(chaos, sizeof chaos, " (+ %d misbehaving)", r->chaos.clients);
    printf("demix loadgen: %d session%s%s x %.1f s against %s (%s, %ld Hz %s, "
           "%d stems, %s; %d thread%s)\n",
           n, n == 1 ? "" : "s", chaos, o->seconds, o->url,
           demix_proto_codec_name(o->codec), o->rate_hz,
           loadgen_audio_channels(g->audio) == 1 ? "mono" : "stereo",
           g->lr.cfg.stem_count, o->input ? o->input : "generated test signal",
           n < g->lr.threads ? n : g->lr.threads,
           (n < g->lr.threads ? n : g->lr.threads) == 1 ? "" : "s");
}

/* The reference session, when --verify asks for one. A failure is kept in
 * g->reference_error (reported, exit 1), the rounds run without it. */
static void make_reference(run *g)
{
    if (!(g->o->verify > 0))
        return;
    double t0 = ws_client_now_s();
    if (loadgen_run_reference(&g->lr, &g->reference, g->reference_error,
                              sizeof g->reference_error))
        g->reference = NULL;
    g->reference_wall_s = ws_client_now_s() - t0;
    g->lr.cfg.reference = g->reference;
    if (!g->reference && !g->o->quiet)
        fprintf(stderr,
                "demix loadgen: warning: the reference session failed (%s); "
                "no output is compared\n",
                g->reference_error);
}

/* ---------------------------------------------------------------- run */

static int run_all(run *g)
{
    const loadgen_options *o = g->o;
    loadgen_stats first;
    loadgen_run_stats(&g->lr, &first);
    if (first.failed_connect) {
        cli_error("%s", first.err);
        return 1;
    }
    if (g_interrupts) {
        cli_error("interrupted");
        return 1;
    }
    if (first.ok) {
        g->lr.baseline = first.stats.sessions;
        g->lr.have_baseline = 1;
    } else if (!o->quiet) {
        fprintf(stderr, "demix loadgen: warning: no server stats: %s\n",
                first.err);
    }
    make_reference(g);
    if (g_interrupts) {
        cli_error("interrupted");
        return 1;
    }

    cJSON *root = o->json ? json_header(g) : NULL;
    if (o->json && !root) {
        cli_error("out of memory");
        return 1;
    }
    cJSON *rounds = root ? cJSON_GetObjectItem(root, "rounds") : NULL;
    long from = o->ramp ? o->ramp_from : o->sessions;
    long to = o->ramp ? o->ramp_to : o->sessions;
    long step = o->ramp ? o->ramp_step : 1;
    int any_failed = 0, mismatched = 0, largest_held = 0, rc = 0;
    int64_t chaos_unanswered = 0;
    char chaos_example[256] = "";
    double snr_min = INFINITY;
    char first_failure[256] = "";
    char stop_reason[200] = "";
    if (o->ramp && !o->json) {
        printf("demix loadgen: ramp %ld:%ld:%ld, %.1f s per round against %s "
               "(%s, %ld Hz, %d stems, up to %d threads)\n",
               from, to, step, o->seconds, o->url,
               demix_proto_codec_name(o->codec), o->rate_hz,
               g->lr.cfg.stem_count, g->lr.threads);
        if (g->lr.have_baseline)
            printf("server: max_sessions %d, %d sessions live before the "
                   "ramp\n",
                   first.stats.max_sessions, first.stats.sessions);
        loadgen_report_ramp_header(stdout);
    }
    for (long n = from; n <= to; n += step) {
        loadgen_round r;
        loadgen_session *s = NULL;
        char err[512];
        int rr = loadgen_run_round(&g->lr, (int)n, &r, &s, err, sizeof err);
        if (rr) {
            loadgen_run_free(&r, s, r.sessions);
            if (rr == DEMIX_ENOMEM)
                cli_error("out of memory for %ld sessions", n);
            else
                cli_error("%s", err);
            rc = 1;
            break;
        }
        chaos_unanswered += loadgen_chaos_unanswered(&r.chaos);
        for (int k = 0; k < LOADGEN_CHAOS_KINDS && !chaos_example[0]; k++)
            if (r.chaos.kind[k].example[0])
                snprintf(chaos_example, sizeof chaos_example, "%s: %s",
                     loadgen_chaos_kind_name((loadgen_chaos_kind)k),
                     r.chaos.kind[k].example);

        any_failed += r.failed;
        mismatched += r.verify.mismatched;
        if (r.verify.snr_db_min < snr_min)
            snr_min = r.verify.snr_db_min;
        for (int i = 0; i < r.error_groups && !first_failure[0]; i++)
            if (r.errors[i].outcome == LOADGEN_FAILED)
                snprintf(first_failure, sizeof first_failure, "%s",
                         r.errors[i].example);
        if (r.held)
            largest_held = (int)n;
        if (root) {
            cJSON *j = loadgen_report_json(&r, s, r.sessions, o->session_list);
            if (!j || !cJSON_AddItemToArray(rounds, j)) {
                cJSON_Delete(j);
                cli_error("out of memory for the JSON report");
                rc = 1;
            }
        } else if (o->ramp) {
            loadgen_report_ramp_row(stdout, &r);
            if (o->verbose)
                loadgen_report_text(stdout, &r, s, r.sessions, 1);
        } else {
            print_title(g, &r);
            loadgen_report_text(stdout, &r, s, r.sessions, o->verbose);
        }
        loadgen_run_free(&r, s, r.sessions);
        if (r.interrupted) {
            snprintf(stop_reason, sizeof stop_reason,
                     "interrupted at %ld sessions", n);
            break;
        }
        if (!r.held) {
            char why[160];
            loadgen_round_verdict(&r, why, sizeof why);
            snprintf(stop_reason, sizeof stop_reason,
                     "%ld sessions did not hold: %s", n, why);
            break;
        }
    }
    if (o->ramp && !o->json) {
        if (largest_held)
            printf("largest N that held: %d (the server's real-time capacity "
                   "as this client sees it)\n",
                   largest_held);
        else
            printf("no round held\n");
        if (stop_reason[0])
            printf("stopped: %s\n", stop_reason);
        else
            printf("every round held up to %ld sessions; try a larger TO\n",
                   to);
    }
    if (root) {
        int ok = 1;
        if (o->ramp) {
            cJSON *ramp = cJSON_AddObjectToObject(root, "ramp");
            ok = ramp && cJSON_AddNumberToObject(ramp, "from", (double)from) &&
                 cJSON_AddNumberToObject(ramp, "to", (double)to) &&
                 cJSON_AddNumberToObject(ramp, "step", (double)step) &&
                 cJSON_AddItemToObject(ramp, "largest_held",
                                       largest_held
                                           ? cJSON_CreateNumber(largest_held)
                                           : cJSON_CreateNull()) &&
                 cJSON_AddItemToObject(ramp, "stopped",
                                       stop_reason[0]
                                           ? cJSON_CreateString(stop_reason)
                                           : cJSON_CreateNull());
        }
        char *text = ok ? cJSON_Print(root) : NULL;
        if (text) {
            printf("%s\n", text);
            free(text);
        } else {
            cli_error("out of memory for the JSON report");
            rc = 1;
        }
        cJSON_Delete(root);
    }
    fflush(stdout);
    if (rc)
        return rc;
    if (g_interrupts) {
        cli_error("interrupted; the report covers the run so far");
        return 1;
    }
    if (any_failed) {
        cli_error("%d session%s failed; the first: %s", any_failed,
                  any_failed == 1 ? "" : "s", first_failure);
        return 1;
    }
    if (o->verify > 0 && !g->reference) {
        cli_error("the reference session failed, so no output was compared: "
                  "%s",
                  g->reference_error);
        return 1;
    }
    if (chaos_unanswered) {
        cli_error("the server did not answer %lld misbehaving client "
                  "episode%s as documented; the first: %s",
                  (long long)chaos_unanswered, chaos_unanswered == 1 ? "" : "s",
                  chaos_example);
        return 1;
    }
    if (mismatched) {
        cli_error("%d compared session%s differ from the reference (lowest "
                  "SNR %.1f dB, below %.0f dB; --verify-min-snr sets the "
                  "threshold)",
                  mismatched, mismatched == 1 ? "" : "s", snr_min,
                  o->verify_min_snr_db);
        return 1;
    }
    return 0;
}

static int make_loops(run *g, long most, int tls, char *err, size_t cap)
{
    int threads = g->lr.threads;
    g->lr.loops = calloc((size_t)threads, sizeof *g->lr.loops);
    if (!g->lr.loops) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    /* A worker holds at most ceil(most / threads) sessions. */
    int per = (int)((most + threads - 1) / threads);
    if (ws_client_loop_create(8, DEMIX_PROTO_MAX_BINARY_BYTES, tls,
                              &g->lr.loop, err, cap))
        return -1;
    /* The workers' session traffic: wsio (epoll, no per-byte work) for
     * ws://; libwebsockets only where TLS is needed. */
    for (int j = 0; j < threads; j++)
        if (tls ? ws_client_loop_create(per + 4, DEMIX_PROTO_MAX_BINARY_BYTES,
                                        tls, &g->lr.loops[j].lws, err, cap)
                : wsio_loop_create(DEMIX_PROTO_MAX_BINARY_BYTES,
                                   &g->lr.loops[j].io, err, cap))
            return -1;
    return 0;
}

static void free_loops(run *g)
{
    for (int j = 0; g->lr.loops && j < g->lr.threads; j++) {
        wsio_loop_destroy(g->lr.loops[j].io);
        ws_client_loop_destroy(g->lr.loops[j].lws);
    }
    free(g->lr.loops);
    g->lr.loops = NULL;
    ws_client_loop_destroy(g->lr.loop);
    g->lr.loop = NULL;
}

int cmd_loadgen(int argc, char **argv)
{
    loadgen_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    run g;
    memset(&g, 0, sizeof g);
    g.o = &o;
    loadgen_run *lr = &g.lr;
    lr->url = o.url;
    lr->seconds = o.seconds;
    lr->timeout_s = (double)o.timeout_s;
    lr->quiet = o.quiet;
    lr->progress_tty = isatty(fileno(stderr));
    lr->connect_rate = o.connect_rate;
    lr->verify_fraction = o.verify;
    lr->max_p99_ms = o.max_p99_ms;
    lr->late_ms = o.late_ms;
    lr->interrupts = &g_interrupts;
    /* ws://host:port alone: the stream endpoint's path is appended. */
    static char url[2048];
    if (stream_url_complete(o.url, url, sizeof url) == 1) {
        if (!o.quiet)
            fprintf(stderr, "demix loadgen: the URL has no path; using %s "
                            "(demixd's stream endpoint)\n", url);
        o.url = url;
        lr->url = url;
    }
    if (o.chaos > 0) {
        char err[256];
        int tls;
        if (ws_client_parse_url(o.url, &tls, lr->chaos_host,
                                sizeof lr->chaos_host, &lr->chaos_port,
                                lr->chaos_path, sizeof lr->chaos_path, err,
                                sizeof err) ||
            tls) {
            fprintf(stderr, "demix loadgen: --chaos needs a ws:// URL%s%s\n",
                    tls ? "" : ": ", tls ? "" : err);
            return DEMIX_EXIT_USAGE;
        }
        lr->chaos_fraction = o.chaos;
        lr->chaos_seed = o.chaos_seed;
    }
    loadgen_config *c = &lr->cfg;
    c->url = o.url;
    c->token = o.token;
    c->codec = o.codec;
    c->seconds = o.seconds;
    c->timeout_s = (double)o.timeout_s;
    c->keep_up_margin_s = LOADGEN_KEEP_UP_MARGIN_S;
    c->late_s = o.late_ms / 1e3;
    c->verify_min_snr_db = o.verify_min_snr_db;
    c->resume = o.resume;
    if (o.stems) {
        if (cli_stem_list("loadgen", o.stems, c->stems, &c->stem_count))
            return DEMIX_EXIT_USAGE;
    } else {
        c->stem_count = 4;
        for (int i = 0; i < 4; i++)
            snprintf(c->stems[i], sizeof c->stems[i], "%s", default_stems[i]);
    }
    long most = o.ramp ? o.ramp_to : o.sessions;
    long threads = o.threads ? o.threads : cli_default_threads();
    lr->threads = (int)(threads < most ? threads : most);
    if (ensure_fds(most, lr->threads))
        return 1;

    char err[1024];
    loadgen_audio_options ao = {
        .input = o.input, .rate_hz = (int)o.rate_hz, .codec = o.codec};
    if (loadgen_audio_create(&ao, &g.audio, err, sizeof err)) {
        cli_error("%s", err);
        return 1;
    }
    c->audio = g.audio;
    int tls = strncmp(o.url, "wss://", 6) == 0;
    if (make_loops(&g, most, tls, err, sizeof err)) {
        cli_error("%s", err);
        free_loops(&g);
        loadgen_audio_destroy(g.audio);
        return 1;
    }

    g_main_loop = lr->loop;
    g_loops = lr->loops;
    g_loop_count = lr->threads;
    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    rc = run_all(&g);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    g_main_loop = NULL;
    g_loops = NULL;
    g_loop_count = 0;
    free_loops(&g);
    loadgen_reference_destroy(g.reference);
    loadgen_audio_destroy(g.audio);
    return rc;
}
