/*
 * cmd_stream.c - `demix stream`: stream an audio file through a demixd
 * server (docs/protocol.md) and write the stems it sends back exactly as
 * `demix separate` writes them: DIR/<input name>/<source>.wav, each with the
 * input's length, rate and channels, sample k aligned with input sample k.
 *
 * Design. One connection, one thread, event-driven on libwebsockets
 * (ws_client.h). The session runs: connect -> start -> ready -> audio out
 * while stems come in -> end -> summary -> close 1000.
 *
 *   file --(libsndfile)--> [resample to the session rate] --> FIFO
 *        --> audio_in messages (PCM s16/f32 or one Opus packet each)
 *   audio_out messages --> [Opus decode, drop pre_skip] --> [resample back
 *        to the file's rate] --> trim to the input's length --> WAV
 *
 * The session rate is the file's rate when the protocol allows it (8-96
 * kHz; with Opus 8, 12, 16, 24 or 48 kHz), else 48 kHz with soxr on the
 * client both ways (resample.h: delay-compensated, so alignment holds).
 *
 * This file: the options, the session loop and the choice of stems. The
 * parts of one session (stream_session.h): the protocol's control side
 * and the event callbacks (stream_session.c), the sending side and its
 * flow control (stream_input.h), the stem files and the position checks
 * (stream_output.h), the latency measured and the final report
 * (stream_report.h).
 *
 * Stems. --stems A,B asks for those; without it all the model's sources
 * are asked for: first by the default names (drums, bass, vocals, other),
 * and if the server's model has others, a short mix-mode session reads its
 * source names from ready and the stream starts again. --mix NAME=GAIN,...
 * asks for one server-side mix, written as mix.wav.
 *
 * Reconnects. When the server goes away mid-stream (restarting after its
 * drain: error restarting, close 1012; at capacity: 1013; shutting down:
 * 1001; or the connection drops) the loop below waits a backoff with
 * jitter and connects again, up to --reconnect attempts within
 * --reconnect-wait seconds; the new session re-sends --resume-tail-ms of
 * input before the first position the stems lack and the files go on
 * from there (stream_session.h, client_resume.h).
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "progress.h"
#include "protocol.h"
#include "stream_url.h"
#include "stream_input.h"
#include "stream_output.h"
#include "stream_report.h"
#include "stream_session.h"
#include "ws_client.h"

#define DEFAULT_TIMEOUT_S 30

static const char *const default_stem_names[] = {"drums", "bass", "vocals",
                                                 "other"};


static volatile sig_atomic_t g_interrupted;
static ws_client *volatile g_ws;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_ws)
        ws_client_wake(g_ws);
}

void cmd_stream_usage(FILE *out)
{
    fprintf(out,
            "usage: demix stream --url ws://HOST:PORT/v1/stream [OPTIONS] INPUT\n"
            "\n"
            "Stream INPUT (any file demix separate reads) through a demixd server and\n"
            "write the stems it sends back as DIR/NAME/SOURCE.wav, exactly as demix\n"
            "separate does: the input's length, rate and channels, sample-aligned.\n"
            "\n"
            "options:\n"
            "  -u, --url URL        the server's stream endpoint (required)\n"
            "  -c, --codec C        pcm (default) or opus, both directions\n"
            "      --float32        32-bit float on the wire and in the files\n"
            "                       (default: 16-bit PCM)\n"
            "      --fast           send as fast as the server takes it (default)\n"
            "      --realtime       send at the pace of a live source\n"
            "      --stems A,B      ask for these stems (default: all of the model's)\n"
            "      --mix A=G,B=G    one server-side mix instead, written as mix.wav;\n"
            "                       sources not named get gain 1\n"
            "  -o, --out DIR        output folder (default: separated)\n"
            "      --bitrate BPS    Opus bitrate of each stream (default: 64000 per\n"
            "                       channel)\n"
            "      --token T        access token, when the server wants one\n"
            "                       (default: $DEMIX_TOKEN)\n"
            "      --timeout S      give up after S seconds without a reply\n"
            "                       (default: %d)\n"
            "      --reconnect N    when the server goes away mid-stream (restart,\n"
            "                       at capacity, dropped connection), connect again\n"
            "                       up to N times per outage and resume where the\n"
            "                       stems stopped (default: %d; 0: fail at once)\n"
            "      --reconnect-wait S  give an outage at most S seconds (default: %g)\n"
            "      --resume-tail-ms MS  input re-sent before the resume point to\n"
            "                       re-prime the new session; its output is discarded\n"
            "                       (default: %g)\n"
            "  -q, --quiet          no progress bar or latency lines\n"
            "  -h, --help           this text\n"
            "\n"
            "It prints the latency the server announces and the latency measured\n"
            "(time from sending input position p to receiving output position p;\n"
            "with --fast it includes queueing), then the server's summary.\n"
            "\n"
            "exit status: 0 stems written, 1 failure (connection, server error),\n"
            "2 usage error.\n",
            DEFAULT_TIMEOUT_S, CLIENT_RESUME_DEFAULT_ATTEMPTS,
            CLIENT_RESUME_DEFAULT_WAIT_S, CLIENT_RESUME_DEFAULT_TAIL_MS);
}

/* ------------------------------------------------------------- run */

/* The signal handler must not wake a connection that is gone. */
static void session_release(stream_session *s)
{
    g_ws = NULL;
    stream_session_free(s);
}

/* One connection: stream the file, or with probe_only read the model's
 * sources. Returns 0 or -1 (s->err says why). */
static int run_session(stream_session *s)
{
    const stream_options *o = s->o;
    if (stream_input_open(s))
        return -1;
    s->conv_cap = DEMIX_PROTO_MAX_BINARY_BYTES;
    s->conv = malloc(s->conv_cap * sizeof *s->conv);
    if (!s->conv) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }

    /* The backoff's jitter differs per client. */
    client_resume_init(&s->resume, &o->resume,
                       (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^
                           (uint64_t)time(NULL));
    if (stream_session_connect(s))
        return -1;
    g_ws = s->ws;
    if (!o->quiet)
        progress_init(&s->bar, stderr,
                      s->info.frames > 0 ? (double)s->info.frames / s->file_rate
                                         : 0.0);
    int interrupted_reported = 0;
    for (;;) {
        if (s->core.state == CLIENT_CLOSED) {
            if (!s->retry_pending || s->failed)
                break;
            /* The server went away: wait out the backoff, then again. */
            if (g_interrupted) {
                client_session_note(&s->core, CLIENT_FAIL_INTERRUPTED,
                                    "interrupted while reconnecting");
                break;
            }
            double wait = s->reconnect_at - ws_client_now_s();
            if (wait > 0) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                if (wait < 0.05)
                    ts.tv_nsec = (long)(wait * 1e9);
                nanosleep(&ts, NULL);
                continue;
            }
            g_ws = NULL;
            if (stream_session_connect(s)) {
                client_session_note(&s->core, CLIENT_FAIL_CONNECT, "%s",
                                    s->err);
                break;
            }
            g_ws = s->ws;
            continue;
        }
        if (ws_client_service(s->ws, 100) < 0) {
            stream_session_fail(s, "libwebsockets failed");
            break;
        }
        if (g_interrupted && !interrupted_reported) {
            interrupted_reported = 1;
            stream_session_fail(s, "interrupted");
            if (s->core.state == CLIENT_CONNECTING)
                break;
        }
        /* Before the handshake lws times the connection out itself. */
        if (s->core.state == CLIENT_CONNECTING &&
            ws_client_now_s() - s->start_time > (double)o->timeout_s) {
            stream_session_fail(s, "cannot connect to %s: no answer in %ld s",
                                o->url, o->timeout_s);
            break;
        }
    }
    if (!o->quiet)
        progress_finish(&s->bar);
    if (s->failed)
        return -1;
    if (s->probe_only)
        return 0;
    if (!s->core.have_summary) {
        snprintf(s->err, sizeof s->err, "the stream ended without a summary");
        return -1;
    }
    int64_t sent_positions = stream_input_server_frames(s);
    if ((int64_t)s->summary.input_frames != sent_positions && !o->quiet)
        fprintf(stderr, "demix stream: warning: the server counted %llu input "
                        "frames, %lld were sent\n",
                (unsigned long long)s->summary.input_frames,
                (long long)sent_positions);
    if (stream_output_finish(s))
        return -1;
    stream_report_print(s);
    return 0;
}

/* ------------------------------------------------------------ options */

static int check_mix(const char *text)
{
    const char *p = text;
    int count = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p || (size_t)(eq - p) >= DEMIX_PROTO_NAME_BYTES) {
            fprintf(stderr, "demix stream: --mix takes NAME=GAIN pairs "
                            "separated by commas (got '%.*s')\n",
                    (int)len, p);
            return -1;
        }
        char num[64];
        size_t nl = len - (size_t)(eq + 1 - p);
        if (nl == 0 || nl >= sizeof num) {
            fprintf(stderr, "demix stream: --mix: no gain for '%.*s'\n",
                    (int)(eq - p), p);
            return -1;
        }
        memcpy(num, eq + 1, nl);
        num[nl] = '\0';
        char *end;
        double g = strtod(num, &end);
        if (*end || !(g >= 0.0 && g <= DEMIX_PROTO_MAX_GAIN)) {
            fprintf(stderr, "demix stream: --mix: gain '%s' of '%.*s' must be "
                            "a number from 0 to 4\n",
                    num, (int)(eq - p), p);
            return -1;
        }
        if (++count > DEMIX_PROTO_MAX_STEMS) {
            fprintf(stderr, "demix stream: --mix: at most %d gains\n",
                    DEMIX_PROTO_MAX_STEMS);
            return -1;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

enum {
    OPT_FLOAT32 = 256,
    OPT_REALTIME,
    OPT_FAST,
    OPT_STEMS,
    OPT_MIX,
    OPT_TOKEN,
    OPT_BITRATE,
    OPT_TIMEOUT,
    OPT_RECONNECT,
    OPT_RECONNECT_WAIT,
    OPT_RESUME_TAIL
};

static const struct option stream_longs[] = {
    {"help", no_argument, NULL, 'h'},
    {"float32", no_argument, NULL, OPT_FLOAT32},
    {"realtime", no_argument, NULL, OPT_REALTIME},
    {"fast", no_argument, NULL, OPT_FAST},
    {"quiet", no_argument, NULL, 'q'},
    {"url", required_argument, NULL, 'u'},
    {"codec", required_argument, NULL, 'c'},
    {"out", required_argument, NULL, 'o'},
    {"stems", required_argument, NULL, OPT_STEMS},
    {"mix", required_argument, NULL, OPT_MIX},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"bitrate", required_argument, NULL, OPT_BITRATE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"reconnect", required_argument, NULL, OPT_RECONNECT},
    {"reconnect-wait", required_argument, NULL, OPT_RECONNECT_WAIT},
    {"resume-tail-ms", required_argument, NULL, OPT_RESUME_TAIL},
    {NULL, 0, NULL, 0},
};

/* 0: parsed; -1: --help was printed (exit 0); else the exit status. */
static int parse_args(int argc, char **argv, stream_options *o)
{
    memset(o, 0, sizeof *o);
    o->out_dir = "separated";
    o->timeout_s = DEFAULT_TIMEOUT_S;
    client_resume_options_default(&o->resume);
    int c;
    cli_args a;
    cli_args_init(&a);
    while ((c = cli_args_next(&a, argc, argv, "hqu:c:o:", stream_longs)) !=
           -1) {
        const char *v = a.value;
        switch (c) {
        case CLI_OPERAND:
            if (o->input) {
                fprintf(stderr, "demix stream: one INPUT at a time (got '%s' "
                                "and '%s')\n", o->input, v);
                return DEMIX_EXIT_USAGE;
            }
            o->input = v;
            break;
        case 'h':
            cmd_stream_usage(stdout);
            return -1;
        case OPT_FLOAT32:
            o->float32 = 1;
            break;
        case OPT_REALTIME:
            o->realtime = 1;
            break;
        case OPT_FAST:
            o->realtime = 0;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'u':
            o->url = v;
            break;
        case 'c':
            if (strcmp(v, "pcm") == 0)
                o->opus = 0;
            else if (strcmp(v, "opus") == 0)
                o->opus = 1;
            else {
                fprintf(stderr, "demix stream: --codec must be pcm or opus "
                                "(got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            break;
        case 'o':
            o->out_dir = v;
            break;
        case OPT_STEMS:
            o->stems = v;
            break;
        case OPT_MIX:
            if (check_mix(v))
                return DEMIX_EXIT_USAGE;
            o->mix = v;
            break;
        case OPT_TOKEN:
            if (strlen(v) > DEMIX_PROTO_TOKEN_MAX_BYTES) {
                fprintf(stderr, "demix stream: --token is longer than %d "
                                "bytes\n", DEMIX_PROTO_TOKEN_MAX_BYTES);
                return DEMIX_EXIT_USAGE;
            }
            o->token = v;
            break;
        case OPT_BITRATE:
            if (cli_int("stream", "--bitrate", v, DEMIX_PROTO_OPUS_MIN_BITRATE,
                        DEMIX_PROTO_OPUS_MAX_BITRATE, &o->bitrate_bps))
                return DEMIX_EXIT_USAGE;
            break;
        case OPT_TIMEOUT:
            if (cli_int("stream", "--timeout", v, 1, 86400, &o->timeout_s))
                return DEMIX_EXIT_USAGE;
            break;
        case OPT_RECONNECT:
        case OPT_RECONNECT_WAIT:
        case OPT_RESUME_TAIL: {
            char err[256];
            if (client_resume_parse_option(
                    client_resume_option_names[c - OPT_RECONNECT], v,
                    &o->resume, err, sizeof err) < 0) {
                fprintf(stderr, "demix stream: %s\n", err);
                return DEMIX_EXIT_USAGE;
            }
            break;
        }
        case CLI_MISSING:
            return DEMIX_EXIT_USAGE;
        default:
            fprintf(stderr, "demix stream: unknown option '%s' (see demix help "
                            "stream)\n", v);
            return DEMIX_EXIT_USAGE;
        }
    }
    const char *env_token = getenv("DEMIX_TOKEN");
    if (!o->token && env_token && env_token[0]) {
        if (strlen(env_token) > DEMIX_PROTO_TOKEN_MAX_BYTES) {
            fprintf(stderr, "demix stream: DEMIX_TOKEN is longer than %d "
                            "bytes\n", DEMIX_PROTO_TOKEN_MAX_BYTES);
            return DEMIX_EXIT_USAGE;
        }
        o->token = env_token;
    }
    if (!o->url) {
        fprintf(stderr, "demix stream: --url is required (for example --url "
                        "ws://127.0.0.1:8080%s)\n\n", DEMIX_PROTO_PATH);
        cmd_stream_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (!o->input) {
        fprintf(stderr, "demix stream: no input file\n\n");
        cmd_stream_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (o->stems && o->mix) {
        fprintf(stderr, "demix stream: --stems and --mix exclude each other\n");
        return DEMIX_EXIT_USAGE;
    }
    if (!o->out_dir[0]) {
        fprintf(stderr, "demix stream: --out needs a folder name\n");
        return DEMIX_EXIT_USAGE;
    }
    /* ws://host:port alone: the stream endpoint's path is appended. */
    static char url[2048];
    if (stream_url_complete(o->url, url, sizeof url) == 1) {
        fprintf(stderr, "demix stream: the URL has no path; using %s (demixd's "
                        "stream endpoint)\n", url);
        o->url = url;
    }
    char err[256];
    int tls, port;
    char host[256], path[1024];
    if (ws_client_parse_url(o->url, &tls, host, sizeof host, &port, path,
                            sizeof path, err, sizeof err)) {
        fprintf(stderr, "demix stream: %s\n", err);
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

int cmd_stream(int argc, char **argv)
{
    stream_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    stream_session *s = calloc(1, sizeof *s);
    if (!s) {
        cli_error("out of memory");
        return 1;
    }
    s->o = &o;
    int explicit_stems = o.stems != NULL;
    if (explicit_stems) {
        if (cli_stem_list("stream", o.stems, s->stem_req, &s->stem_count_req)) {
            free(s);
            return DEMIX_EXIT_USAGE;
        }
    } else {
        s->stem_count_req = 4;
        for (int i = 0; i < 4; i++)
            snprintf(s->stem_req[i], sizeof s->stem_req[i], "%s",
                     default_stem_names[i]);
    }
    rc = run_session(s);
    if (rc && !explicit_stems && !o.mix && s->server_error &&
        s->core.error_code == DEMIX_PROTO_ERR_UNKNOWN_STEM) {
        /* The model has other sources: read them from a mix-mode ready. */
        session_release(s);
        memset(s, 0, sizeof *s);
        s->o = &o;
        s->probe_only = 1;
        rc = run_session(s);
        demix_proto_ready r = s->ready;
        session_release(s);
        memset(s, 0, sizeof *s);
        s->o = &o;
        if (rc == 0) {
            s->stem_count_req = r.source_count;
            for (int i = 0; i < r.source_count; i++)
                snprintf(s->stem_req[i], sizeof s->stem_req[i], "%s",
                         r.sources[i]);
            rc = run_session(s);
        }
    }
    if (rc) {
        stream_output_remove(s);
        cli_error("%s", s->err[0] ? s->err : "streaming failed");
    }
    session_release(s);
    free(s);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc ? 1 : 0;
}
