/*
 * cmd_loadgen.c - `demix loadgen`: load-test a demixd server with many
 * live streaming sessions at once and report what they got: how many the
 * server took, whether it kept up with real time, the latency each message
 * saw, and the server's own figures (docs/loadgen.md).
 *
 * Design. One thread, one ws_client loop (one lws context), event-driven:
 * N loadgen_session objects stream the same audio loop (loadgen_audio.h,
 * made and put into wire form once) at real-time pace, in a few phase
 * groups, and count what comes back (loadgen_session.h). Between lws
 * services the main loop polls the sessions (timeouts, stalls), prints
 * progress, and asks the server for its `stats` on short connections of
 * their own (loadgen_stats.h): before the sessions open, just before the
 * first of them ends ("loaded") and after they all closed. A round ends
 * when every session has closed; loadgen_report.h turns it into the
 * report.
 *
 *   --sessions N       one round of N sessions
 *   --ramp A:B:STEP    rounds of A, A+STEP, ... B sessions, one table row
 *                      each, until one does not hold (a refusal, a failed
 *                      session, or fewer than 95% kept up); the largest N
 *                      that held is the server's real-time capacity as a
 *                      client sees it.
 *
 * Between ramp rounds it waits (up to SETTLE_S) for the server's session
 * count to fall back to what it was at the start: demixd returns a slot
 * only after the scheduler closed it, a moment after the close.
 *
 * Ctrl-C: every streaming session is judged and sends end; the rest of the
 * round (its stems' tail, summaries) is read and the report printed. A
 * second Ctrl-C drops every connection at once.
 *
 * Memory: per session a fixed struct (latency histogram and probe ring,
 * about 11 KB) and the ws_client's receive buffer; the audio loop once.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include <errno.h>
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
#include "loadgen_session.h"
#include "loadgen_stats.h"
#include "protocol.h"
#include "ws_client.h"

#define DEFAULT_SESSIONS 4
#define DEFAULT_SECONDS 20.0
#define DEFAULT_RATE_HZ 48000
#define DEFAULT_TIMEOUT_S 30
#define MAX_SESSIONS 4096
#define KEEP_UP_MARGIN_S 1.0
#define SERVICE_MS 50     /* longest wait of one lws service */
#define POLL_S 0.1        /* session checks */
#define LOADED_LEAD_S 0.5 /* "loaded" stats: before the streams end */
#define SETTLE_S 5.0      /* wait for the server's sessions to go */
#define SETTLE_RETRY_S 0.2
#define PROGRESS_TTY_S 1.0
#define PROGRESS_LOG_S 5.0

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
    int json;
    int verbose;
    int quiet;
} loadgen_options;

typedef struct run {
    const loadgen_options *o;
    loadgen_config cfg;
    loadgen_audio *audio;
    ws_client_loop *loop;
    int baseline; /* the server's sessions when we started */
    int have_baseline;
    int progress_tty;
    int progress_drawn;
} run;

static volatile sig_atomic_t g_interrupts;
static ws_client_loop *volatile g_loop;

static void on_signal(int sig)
{
    (void)sig;
    if (g_interrupts < 2)
        g_interrupts++;
    if (g_loop)
        ws_client_loop_wake(g_loop);
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
            "      --timeout S      a session (or a stats request) fails after S\n"
            "                       seconds without a message from the server\n"
            "                       (default: %d)\n"
            "      --json           the report as one JSON object on stdout\n"
            "  -v, --verbose        a line per session in the report\n"
            "  -q, --quiet          no progress lines\n"
            "  -h, --help           this text\n"
            "\n"
            "A session keeps up when, at the end of its audio, its output has\n"
            "arrived on every stem to within the announced latency + 1 s of real\n"
            "time. A round holds when no session was refused or failed and at\n"
            "least 95%% kept up. Latency: from sending input position p to the\n"
            "moment position p has arrived on every stem. See docs/loadgen.md.\n"
            "\n"
            "exit status: 0 the run completed and no session failed (refusals are\n"
            "a result), 1 a failure (cannot connect, a session failed, Ctrl-C),\n"
            "2 usage error.\n",
            DEFAULT_SESSIONS, DEFAULT_SECONDS, LOADGEN_AUDIO_MAX_FILE_S,
            DEFAULT_RATE_HZ, default_stems[0], default_stems[1],
            default_stems[2], default_stems[3], DEFAULT_TIMEOUT_S);
}

/* ------------------------------------------------------------ options */

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
    if (v[0] < 1 || v[1] < v[0] || v[1] > MAX_SESSIONS || v[2] < 1) {
        fprintf(stderr,
                "demix loadgen: --ramp %s: need 1 <= FROM <= TO <= %d "
                "and STEP >= 1\n",
                text, MAX_SESSIONS);
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

/* 0 to go on, -1 after --help (exit 0), else the exit status. */
static int parse_args(int argc, char **argv, loadgen_options *o)
{
    memset(o, 0, sizeof *o);
    o->sessions = DEFAULT_SESSIONS;
    o->seconds = DEFAULT_SECONDS;
    o->codec = DEMIX_PROTO_CODEC_PCM_S16;
    o->rate_hz = DEFAULT_RATE_HZ;
    o->timeout_s = DEFAULT_TIMEOUT_S;
    int sessions_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cmd_loadgen_usage(stdout);
            return -1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if ((r = cli_option(argc, argv, &i, "--url", "-u", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->url = v;
        } else if ((r = cli_option(argc, argv, &i, "--sessions", "-n", &v))) {
            if (r < 0 || cli_int("loadgen", "--sessions", v, 1, MAX_SESSIONS,
                                 &o->sessions))
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
    char err[512], host[256], path[1024];
    int tls, port;
    if (ws_client_parse_url(o->url, &tls, host, sizeof host, &port, path,
                            sizeof path, err, sizeof err)) {
        fprintf(stderr, "demix loadgen: %s\n", err);
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

/* ----------------------------------------------------------- progress */

static void progress_line(run *g, const loadgen_session *s, int n,
                          double elapsed, double now)
{
    int streaming = 0, refused = 0, failed = 0, behind = 0, ready = 0;
    latency_hist h;
    latency_hist_init(&h);
    for (int i = 0; i < n; i++) {
        const loadgen_session *x = &s[i];
        if (x->t_ready > 0.0)
            ready++;
        if (x->outcome == LOADGEN_REFUSED)
            refused++;
        else if (x->outcome == LOADGEN_FAILED)
            failed++;
        if (loadgen_session_streaming(x)) {
            streaming++;
            double allowed =
                (double)x->latency_frames / x->rate_hz + KEEP_UP_MARGIN_S;
            if (loadgen_session_lag_s(x, now) > allowed)
                behind++;
        }
        latency_hist_merge(&h, &x->latency);
    }
    char lat[96] = "";
    if (h.count)
        snprintf(lat, sizeof lat, "; latency p50 %.1f ms, p99 %.1f ms",
                 1e3 * latency_hist_quantile(&h, 0.5),
                 1e3 * latency_hist_quantile(&h, 0.99));
    fprintf(stderr,
            "%sloadgen: %d sessions, %.0f/%.0f s: %d ready, %d "
            "streaming, %d behind, %d refused, %d failed%s%s",
            g->progress_tty ? "\r\033[K" : "", n, elapsed, g->o->seconds, ready,
            streaming, behind, refused, failed, lat,
            g->progress_tty ? "" : "\n");
    fflush(stderr);
    g->progress_drawn = g->progress_tty;
}

static void progress_clear(run *g)
{
    if (g->progress_drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        g->progress_drawn = 0;
    }
}

/* -------------------------------------------------------------- stats */

/* Ask the server for its stats and wait for the answer. */
static void ask_stats(run *g, loadgen_stats *q)
{
    loadgen_stats_start(q, g->loop, g->o->url, (double)g->o->timeout_s);
    while (!q->done && g_interrupts < 2) {
        if (ws_client_loop_service(g->loop, SERVICE_MS) < 0)
            break;
        loadgen_stats_poll(q, ws_client_now_s());
    }
    if (!q->done && !q->err[0])
        snprintf(q->err, sizeof q->err, "interrupted");
    loadgen_stats_free(q);
}

/* Before a round: the server's stats once its session count is back at
 * the baseline (or SETTLE_S passed). */
static void settle(run *g, loadgen_server_view *before)
{
    double start = ws_client_now_s();
    for (;;) {
        loadgen_stats q;
        ask_stats(g, &q);
        loadgen_server_view_set(before, &q);
        if (!q.ok || !g->have_baseline || q.stats.sessions <= g->baseline ||
            g_interrupts || ws_client_now_s() - start > SETTLE_S)
            return;
        double until = ws_client_now_s() + SETTLE_RETRY_S;
        while (ws_client_now_s() < until && !g_interrupts)
            (void)ws_client_loop_service(g->loop, SERVICE_MS);
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0.0;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* -------------------------------------------------------------- round */

/* n sessions until every one has closed; *sessions_out (n of them, the
 * caller frees) and r filled. -1 when out of memory. */
static int run_round(run *g, int n, loadgen_round *r,
                     loadgen_session **sessions_out)
{
    memset(r, 0, sizeof *r);
    r->sessions = n;
    r->seconds = g->o->seconds;
    settle(g, &r->before);
    loadgen_session *s = calloc((size_t)n, sizeof *s);
    if (!s)
        return -1;
    *sessions_out = s;
    double t_start = ws_client_now_s(), cpu_start = cpu_seconds();
    g->cfg.epoch_s = t_start;
    for (int i = 0; i < n; i++)
        loadgen_session_start(&s[i], g->loop, &g->cfg, i, n);

    loadgen_stats loaded;
    int loaded_started = 0, stopping = 0, aborting = 0;
    double next_poll = t_start, next_progress = t_start + 1.0;
    double progress_period = g->progress_tty ? PROGRESS_TTY_S : PROGRESS_LOG_S;
    for (;;) {
        int open = 0, judged = 0;
        double first_t0 = 0.0;
        for (int i = 0; i < n; i++) {
            open += !loadgen_session_done(&s[i]);
            judged += s[i].judged;
            if (s[i].t_ready > 0.0 && (first_t0 == 0.0 || s[i].t0 < first_t0))
                first_t0 = s[i].t0;
        }
        double now = ws_client_now_s();
        /* The server's view under load: shortly before the first stream
         * ends, while every session is still live. */
        double lead_s = g->o->seconds / 4 < LOADED_LEAD_S ? g->o->seconds / 4
                                                          : LOADED_LEAD_S;
        if (!loaded_started && !stopping && first_t0 > 0.0 &&
            (judged > 0 || now >= first_t0 + g->o->seconds - lead_s)) {
            loaded_started = 1;
            loadgen_stats_start(&loaded, g->loop, g->o->url,
                                (double)g->o->timeout_s);
        }
        if (loaded_started && !loaded.done)
            loadgen_stats_poll(&loaded, now);
        if (open == 0 && (!loaded_started || loaded.done))
            break;

        if (g_interrupts >= 1 && !stopping) {
            stopping = 1;
            r->interrupted = 1;
            for (int i = 0; i < n; i++)
                loadgen_session_stop(&s[i]);
        }
        if (g_interrupts >= 2 && !aborting) {
            aborting = 1;
            for (int i = 0; i < n; i++)
                loadgen_session_abort(&s[i]);
            if (loaded_started && !loaded.done) {
                loaded.done = 1;
                snprintf(loaded.err, sizeof loaded.err, "interrupted");
            }
        }
        if (now >= next_poll) {
            for (int i = 0; i < n; i++)
                loadgen_session_poll(&s[i], now);
            next_poll = now + POLL_S;
        }
        if (!g->o->quiet && now >= next_progress) {
            progress_line(g, s, n, now - t_start, now);
            next_progress = now + progress_period;
        }
        if (ws_client_loop_service(g->loop, SERVICE_MS) < 0) {
            progress_clear(g);
            cli_error("libwebsockets failed");
            for (int i = 0; i < n; i++)
                loadgen_session_abort(&s[i]);
            break;
        }
    }
    progress_clear(g);
    r->wall_s = ws_client_now_s() - t_start;
    r->client_cpu_s = cpu_seconds() - cpu_start;
    if (loaded_started) {
        loadgen_server_view_set(&r->loaded, &loaded);
        loadgen_stats_free(&loaded);
    }
    if (g_interrupts < 2) {
        loadgen_stats q;
        ask_stats(g, &q);
        loadgen_server_view_set(&r->after, &q);
    }
    loadgen_round_collect(r, s, n);
    return 0;
}

static void free_sessions(loadgen_session *s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++)
        loadgen_session_free(&s[i]);
    free(s);
}

/* -------------------------------------------------------------- setup */

/* Enough file descriptors for n connections (the soft limit is often
 * 1024). 0, or -1 after saying why. */
static int ensure_fds(long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 0;
    rlim_t want = (rlim_t)n + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
            cli_error("%ld sessions need about %lu open files; the limit is "
                      "%lu (raise it with ulimit -n)",
                      n, (unsigned long)want, (unsigned long)rl.rlim_max);
            return -1;
        }
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            cli_error("cannot raise the open-file limit to %lu: %s",
                      (unsigned long)want, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static cJSON *json_header(const run *g)
{
    const loadgen_options *o = g->o;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    int ok =
        cJSON_AddStringToObject(root, "url", o->url) &&
        cJSON_AddStringToObject(root, "mode", o->ramp ? "ramp" : "sessions") &&
        cJSON_AddStringToObject(root, "codec",
                                demix_proto_codec_name(o->codec)) &&
        cJSON_AddNumberToObject(root, "rate", (double)o->rate_hz) &&
        cJSON_AddNumberToObject(root, "channels",
                                loadgen_audio_channels(g->audio)) &&
        cJSON_AddStringToObject(root, "input",
                                o->input ? o->input : "generated") &&
        cJSON_AddNumberToObject(root, "seconds", o->seconds);
    cJSON *stems = ok ? cJSON_AddArrayToObject(root, "stems") : NULL;
    ok = ok && stems;
    for (int i = 0; ok && i < g->cfg.stem_count; i++)
        ok = cJSON_AddItemToArray(stems, cJSON_CreateString(g->cfg.stems[i]));
    ok = ok && cJSON_AddArrayToObject(root, "rounds");
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static void print_title(const run *g, int n)
{
    const loadgen_options *o = g->o;
    printf("demix loadgen: %d session%s x %.1f s against %s (%s, %ld Hz %s, "
           "%d stems, %s)\n",
           n, n == 1 ? "" : "s", o->seconds, o->url,
           demix_proto_codec_name(o->codec), o->rate_hz,
           loadgen_audio_channels(g->audio) == 1 ? "mono" : "stereo",
           g->cfg.stem_count, o->input ? o->input : "generated test signal");
}

/* ---------------------------------------------------------------- run */

static int run_all(run *g)
{
    const loadgen_options *o = g->o;
    loadgen_stats first;
    ask_stats(g, &first);
    if (first.failed_connect) {
        cli_error("%s", first.err);
        return 1;
    }
    if (g_interrupts) {
        cli_error("interrupted");
        return 1;
    }
    if (first.ok) {
        g->baseline = first.stats.sessions;
        g->have_baseline = 1;
    } else if (!o->quiet) {
        fprintf(stderr, "demix loadgen: warning: no server stats: %s\n",
                first.err);
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
    int any_failed = 0, largest_held = 0, rc = 0;
    char first_failure[256] = "";
    char stop_reason[160] = "";
    if (o->ramp && !o->json) {
        printf("demix loadgen: ramp %ld:%ld:%ld, %.1f s per round against %s "
               "(%s, %ld Hz, %d stems)\n",
               from, to, step, o->seconds, o->url,
               demix_proto_codec_name(o->codec), o->rate_hz, g->cfg.stem_count);
        if (g->have_baseline)
            printf("server: max_sessions %d, %d sessions live before the "
                   "ramp\n",
                   first.stats.max_sessions, first.stats.sessions);
        loadgen_report_ramp_header(stdout);
    }
    for (long n = from; n <= to; n += step) {
        loadgen_round r;
        loadgen_session *s = NULL;
        if (run_round(g, (int)n, &r, &s)) {
            free_sessions(s, (int)n);
            cli_error("out of memory for %ld sessions", n);
            rc = 1;
            break;
        }
        any_failed += r.failed;
        for (int i = 0; i < r.error_groups && !first_failure[0]; i++)
            if (r.errors[i].outcome == LOADGEN_FAILED)
                snprintf(first_failure, sizeof first_failure, "%s",
                         r.errors[i].example);
        if (r.held)
            largest_held = (int)n;
        if (root) {
            cJSON *j = loadgen_report_json(&r, s, (int)n);
            if (!j || !cJSON_AddItemToArray(rounds, j)) {
                cJSON_Delete(j);
                cli_error("out of memory for the JSON report");
                rc = 1;
            }
        } else if (o->ramp) {
            loadgen_report_ramp_row(stdout, &r);
            if (o->verbose)
                loadgen_report_text(stdout, &r, s, (int)n, 1);
        } else {
            print_title(g, (int)n);
            loadgen_report_text(stdout, &r, s, (int)n, o->verbose);
        }
        free_sessions(s, (int)n);
        if (r.interrupted) {
            snprintf(stop_reason, sizeof stop_reason,
                     "interrupted at %ld "
                     "sessions",
                     n);
            break;
        }
        if (!r.held) {
            char why[128];
            loadgen_round_verdict(&r, why, sizeof why);
            snprintf(stop_reason, sizeof stop_reason,
                     "%ld sessions did not "
                     "hold: %s",
                     n, why);
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
    return 0;
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
    g.progress_tty = isatty(fileno(stderr));
    loadgen_config *c = &g.cfg;
    c->url = o.url;
    c->token = o.token;
    c->codec = o.codec;
    c->seconds = o.seconds;
    c->timeout_s = (double)o.timeout_s;
    c->keep_up_margin_s = KEEP_UP_MARGIN_S;
    if (o.stems) {
        if (cli_stem_list("loadgen", o.stems, c->stems, &c->stem_count))
            return DEMIX_EXIT_USAGE;
    } else {
        c->stem_count = 4;
        for (int i = 0; i < 4; i++)
            snprintf(c->stems[i], sizeof c->stems[i], "%s", default_stems[i]);
    }
    long most = o.ramp ? o.ramp_to : o.sessions;
    if (ensure_fds(most))
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
    if (ws_client_loop_create((int)most + 4, DEMIX_PROTO_MAX_BINARY_BYTES, tls,
                              &g.loop, err, sizeof err)) {
        cli_error("%s", err);
        loadgen_audio_destroy(g.audio);
        return 1;
    }

    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    g_loop = g.loop;

    rc = run_all(&g);

    g_loop = NULL;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    ws_client_loop_destroy(g.loop);
    loadgen_audio_destroy(g.audio);
    return rc;
}
