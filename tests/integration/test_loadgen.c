/*
 * test_loadgen.c - `demix loadgen` (tools/cmd_loadgen.c) against the real
 * demixd (tests/data/tiny.safetensors, CPU engine, --max-sessions 4).
 *
 * Cases: (a) 3 sessions for 2 s, --json: all 3 ready and ok, none refused
 * or failed, every stem's frames received equal the frames expected, and
 * the JSON carries the documented fields (docs/loadgen.md), latency
 * figures present, non-negative and ordered; (b) 6 sessions: exactly 2
 * refused with at_capacity (close 1013), 4 ok, exit 0; (c) --ramp 3:5:2:
 * the rounds and the ramp's verdict are consistent (the 5-session round,
 * when it runs, has 1 refusal); the text report of a run; (d) a URL where
 * nothing listens: exit 1 and the URL in the message; (e) usage errors
 * exit 2, `demix help loadgen` exits 0; (f) --input with a real WAV (mono,
 * 44.1 kHz: the resampled path) streams it; (g) --input that is missing,
 * not audio, or a WAV whose header lies: exit 1, the file and the reason
 * in the message, and no connection made; (h) URLs of another scheme or
 * malformed: exit 2, the URL and the reason in the message, no connection;
 * (i) wss:// to demixd, which speaks no TLS (docs/server.md: TLS belongs
 * to a proxy in front): exit 1, "cannot connect" and the URL; (j) the
 * same 3 sessions on 1 thread and on 3 threads give the same per-session
 * results (outcome, frames sent and received, server hops, lost hops, the
 * comparison with the reference), and the threads' figures add up; (k)
 * lost hops: a second server is paused (SIGSTOP) once its sessions
 * stream, so their output stops: every session fails (no message for
 * --timeout) with lost hops, the round has lost hops and does not hold;
 * (l) bad --threads, --verify and the other new options are usage errors
 * (exit 2) naming the option and the value.
 *
 * The round JSON of (a) also carries the new figures: added latency
 * (ordered quantiles, p99.9 included), timed, late and lost hops, the
 * threads' CPU, the verification (the CPU engine: every compared session
 * bit-identical to the reference).
 *
 * "No connection made" is checked with a listening socket of the test's
 * own as the --url: a client that connected leaves a connection in its
 * backlog, which a non-blocking accept after the run finds.
 *
 * Nothing here asserts a time or a latency value: only that the figures
 * are there and well-formed, and the counts that do not depend on timing.
 * Before each run the test waits for the server's session count to be 0
 * (GET /v1/health), so a previous run's sessions, released a moment after
 * their close, are not counted against the next.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "server_fixture.h"
#include "ws_test_client.h"

#define OUT_BYTES (256 * 1024)
#define HEALTH_WAIT_MS 20000

static struct {
    const char *bin;
    char dir[256];
    server_fixture fx;
    int started;
    char url[128];
    char *out;
    char err[16384];
} g;

/* ------------------------------------------------------------ helpers */

static int demix(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static int demix(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return demix_test_run_tool(g.bin, args, g.dir, g.out, OUT_BYTES, g.err,
                               sizeof g.err);
}

/* Wait until /v1/health reports no live session (a liveness bound, not a
 * measurement). */
static void wait_server_idle(void)
{
    for (int waited = 0; waited < HEALTH_WAIT_MS; waited += 100) {
        wst_http_response r;
        memset(&r, 0, sizeof r);
        int sessions = -1;
        if (wst_http(g.fx.port, "GET", "/v1/health", NULL, NULL, 0, &r,
                     10000) == 0 &&
            r.status == 200) {
            cJSON *j = cJSON_Parse((const char *)r.body);
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "sessions");
            if (cJSON_IsNumber(n))
                sessions = n->valueint;
            cJSON_Delete(j);
        }
        wst_http_response_free(&r);
        if (sessions == 0)
            return;
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fail_msg("the server still has live sessions after %d ms", HEALTH_WAIT_MS);
}

static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        fail_msg("JSON: no member '%s'", key);
    return v;
}

static double number(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON: '%s' is not a number", key);
    return v->valuedouble;
}

static const char *string(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    if (!cJSON_IsString(v))
        fail_msg("JSON: '%s' is not a string", key);
    return v->valuestring;
}

static void assert_count(const cJSON *o, const char *key, long want)
{
    double v = number(o, key);
    if (v != (double)want)
        fail_msg("JSON: '%s' is %g, expected %ld", key, v, want);
}

/* A latency object {count, p50, p90, p99, p999, max, mean}, present and
 * ordered. */
static void check_latency_object(const cJSON *o, const char *key)
{
    const cJSON *l = item(o, key);
    assert_true(cJSON_IsObject(l));
    assert_true(number(l, "count") > 0);
    double p50 = number(l, "p50"), p90 = number(l, "p90");
    double p99 = number(l, "p99"), p999 = number(l, "p999");
    double max = number(l, "max");
    assert_true(p50 >= 0 && number(l, "mean") >= 0);
    assert_true(p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
}

static void check_latency(const cJSON *o)
{
    check_latency_object(o, "latency_ms");
}

/* The client's own figures of a round of `sessions` sessions that all
 * ended ok: hops, threads, verification. */
static void check_client_fields(const cJSON *r, int sessions)
{
    check_latency_object(r, "added_latency_ms");
    assert_true(number(r, "max_p99_ms") >= 0);
    assert_true(number(r, "late_ms") >= 0);
    assert_true(number(r, "hop_ms") > 0);
    double timed = number(r, "timed_hops");
    assert_true(timed > 0);
    double late = number(r, "client_late_hops");
    assert_true(late >= 0 && late <= timed);
    assert_count(r, "lost_hops", 0);
    assert_true(cJSON_IsNull(item(r, "verdict")) ==
                cJSON_IsTrue(item(r, "held")));
    int threads = (int)number(r, "threads");
    assert_true(threads >= 1 && threads <= sessions);
    const cJSON *list = item(r, "thread_list");
    assert_int_equal(cJSON_GetArraySize(list), threads);
    int total = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, list)
    {
        total += (int)number(t, "sessions");
        assert_true(number(t, "cpu_user_s") >= 0);
        assert_true(number(t, "cpu_sys_s") >= 0);
        assert_true(number(t, "cpu_s") >= 0);
        assert_true(number(t, "cpu_fraction") >= 0);
    }
    assert_int_equal(total, sessions);
    assert_true(number(r, "main_cpu_s") >= 0);
    const cJSON *rss = item(r, "client_rss_bytes_per_session");
    assert_true(cJSON_IsNull(rss) || number(r, "client_rss_bytes_per_session") > 0);
    /* The default --verify compares at least one session; the CPU engine
     * gives every one the reference's stems bit for bit. */
    const cJSON *v = item(r, "verify");
    assert_true(cJSON_IsObject(v));
    int sampled = (int)number(v, "sampled");
    assert_true(sampled >= 1);
    assert_count(v, "complete", sampled);
    assert_count(v, "incomplete", 0);
    assert_count(v, "identical", sampled);
    assert_count(v, "mismatched", 0);
    assert_true(cJSON_IsNull(item(v, "snr_db_min")));
    assert_true(number(v, "min_snr_db") == 60);
}

/* server.{before,loaded,after}: stats objects of a server with 4 slots. */
static void check_server_views(const cJSON *round)
{
    const cJSON *server = item(round, "server");
    const char *names[3] = {"before", "loaded", "after"};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = item(server, names[i]);
        assert_true(cJSON_IsObject(v));
        assert_count(v, "max_sessions", 4);
        assert_true(number(v, "sessions") >= 0);
        assert_true(number(v, "hops") >= 0);
        assert_true(number(v, "step_ms_p50") >= 0);
        assert_true(number(v, "step_ms_p99") >= 0);
        assert_true(number(v, "batch_mean") >= 0);
        assert_true(number(v, "uptime_s") >= 0);
    }
}

/* The documented round fields, and the counts that follow from them. */
static void check_round_fields(const cJSON *r, int sessions)
{
    assert_count(r, "sessions", sessions);
    assert_count(r, "started", sessions);
    assert_true(cJSON_IsBool(item(r, "interrupted")));
    assert_false(cJSON_IsTrue(item(r, "interrupted")));
    assert_true(cJSON_IsBool(item(r, "held")));
    assert_true(number(r, "seconds") > 0);
    assert_true(number(r, "wall_s") >= 0);
    assert_true(number(r, "audio_s") > 0);
    assert_true(number(r, "hops") > 0);
    assert_true(number(r, "late_hops") >= 0);
    assert_true(number(r, "late_fraction") >= 0);
    assert_true(number(r, "lag_end_max_s") >= 0);
    assert_true(number(r, "client_cpu_fraction") >= 0);
    assert_true(number(r, "latency_announced_ms") > 0);
    double kept = number(r, "kept_up");
    assert_true(kept >= 0 && kept <= sessions);
    double kf = number(r, "kept_up_fraction");
    assert_true(kf >= 0 && kf <= 1);
    assert_true(cJSON_IsArray(item(r, "errors")));
    double expected = number(r, "frames_expected");
    assert_true(expected > 0);
    assert_true(number(r, "frames_received") == expected);
    assert_true(number(r, "received_ratio") == 1.0);
    check_latency(r);
    check_server_views(r);
    check_client_fields(r, sessions);
    const cJSON *list = item(r, "session_list");
    assert_true(cJSON_IsArray(list));
    assert_int_equal(cJSON_GetArraySize(list), sessions);
}

static cJSON *parse_output(void)
{
    cJSON *root = cJSON_Parse(g.out);
    if (!root)
        fail_msg("demix loadgen --json printed no JSON object");
    assert_string_equal(string(root, "url"), g.url);
    assert_string_equal(string(root, "codec"), "pcm_s16");
    assert_count(root, "rate", 48000);
    assert_count(root, "channels", 2);
    assert_string_equal(string(root, "input"), "generated");
    const cJSON *stems = item(root, "stems");
    assert_int_equal(cJSON_GetArraySize(stems), 4);
    assert_true(cJSON_IsArray(item(root, "rounds")));
    assert_true(number(root, "threads") >= 1);
    assert_true(number(root, "connect_rate") > 0);
    assert_true(number(root, "late_ms") >= 0);
    assert_true(number(root, "max_p99_ms") >= 0);
    const cJSON *v = item(root, "verify");
    assert_true(cJSON_IsObject(v));
    assert_true(number(v, "fraction") > 0);
    const cJSON *ref = item(v, "reference");
    assert_true(cJSON_IsTrue(item(ref, "ok")));
    assert_true(cJSON_IsNull(item(ref, "error")));
    assert_true(number(ref, "seconds") > 0);
    return root;
}

/* ---------------------------------------------- files, URLs, sockets */

/* A loopback listener for URLs that must never be connected to. */
static int listener_open(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* 1 when someone connected to the listener (the kernel completes the
 * handshake and queues the connection even if the client has gone). */
static int listener_was_connected(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    assert_true(flags >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
    int c = accept(fd, NULL, NULL);
    if (c >= 0) {
        close(c);
        return 1;
    }
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    return 0;
}

static void put_le(uint8_t *p, uint32_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A 16-bit PCM WAV whose header claims `channels`, `rate` and a data chunk
 * of `claimed_bytes`, followed by `payload_bytes` of a 440 Hz tone. With
 * claimed_bytes == payload_bytes and sane fields it is a valid file (test
 * (f) streams one), so a file written with one field changed is refused
 * for that field. */
static void write_wav(const char *path, int channels, int rate,
                      uint32_t claimed_bytes, size_t payload_bytes)
{
    uint8_t h[44];
    int block = channels * 2;
    memcpy(h, "RIFF", 4);
    put_le(h + 4, (uint32_t)(36 + payload_bytes), 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    put_le(h + 16, 16, 4);
    put_le(h + 20, 1, 2); /* PCM */
    put_le(h + 22, (uint32_t)channels, 2);
    put_le(h + 24, (uint32_t)rate, 4);
    put_le(h + 28, (uint32_t)(rate * block), 4);
    put_le(h + 32, (uint32_t)block, 2);
    put_le(h + 34, 16, 2);
    memcpy(h + 36, "data", 4);
    put_le(h + 40, claimed_bytes, 4);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(h, 1, sizeof h, f), sizeof h);
    /* payload_bytes / 2 samples, interleaved, a frame's channels alike */
    int ch = channels > 0 ? channels : 1;
    double hz_per_rate = 440.0 / (rate > 0 ? rate : 48000);
    for (size_t i = 0; i < payload_bytes / 2; i++) {
        double frame = (double)(i / (size_t)ch);
        double v = 8000.0 * sin(6.283185307179586 * hz_per_rate * frame);
        uint8_t b[2];
        put_le(b, (uint16_t)(int16_t)lround(v), 2);
        assert_int_equal(fwrite(b, 1, 2, f), 2);
    }
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* loadgen with --input `file` (a path under g.dir or a missing one) must
 * exit 1 before any connection, naming the file and saying `why`. */
static void assert_input_refused(const char *file, const char *why)
{
    int port, fd = listener_open(&port);
    assert_int_equal(demix("loadgen --url ws://127.0.0.1:%d/v1/stream "
                           "--input '%s' --sessions 2 --seconds 1 --quiet",
                           port, file),
                     1);
    assert_non_null(strstr(g.err, file));
    assert_non_null(strstr(g.err, why));
    assert_string_equal(g.out, ""); /* no report */
    assert_false(listener_was_connected(fd));
    close(fd);
}

/* -------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.bin = getenv("DEMIX_BIN");
    struct stat st;
    if (!g.bin || stat(g.bin, &st) != 0) {
        print_error("DEMIX_BIN is not set to the demix binary\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.out = malloc(OUT_BYTES);
    if (!g.out)
        return -1;
    const char *model = demix_test_data_path("tiny.safetensors");
    if (server_fixture_start(&g.fx, model, "--max-sessions", "4",
                             (const char *)NULL))
        return -1;
    g.started = 1;
    snprintf(g.url, sizeof g.url, "ws://127.0.0.1:%d/v1/stream", g.fx.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g.out);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* ------------------------------------------------------------- tests */

/* (a) */
static void test_three_sessions(void **state)
{
    (void)state;
    wait_server_idle();
    assert_int_equal(demix("loadgen --url %s --sessions 3 --seconds 2 --json "
                           "--quiet",
                           g.url),
                     0);
    cJSON *root = parse_output();
    assert_string_equal(string(root, "mode"), "sessions");
    assert_null(cJSON_GetObjectItem(root, "ramp"));
    const cJSON *rounds = item(root, "rounds");
    assert_int_equal(cJSON_GetArraySize(rounds), 1);
    const cJSON *r = cJSON_GetArrayItem(rounds, 0);
    check_round_fields(r, 3);
    assert_count(r, "ready", 3);
    assert_count(r, "ok", 3);
    assert_count(r, "refused", 0);
    assert_count(r, "failed", 0);
    assert_int_equal(cJSON_GetArraySize(item(r, "errors")), 0);
    const cJSON *s;
    cJSON_ArrayForEach(s, item(r, "session_list"))
    {
        assert_string_equal(string(s, "outcome"), "ok");
        assert_string_equal(string(s, "failure"), "none");
        assert_true(cJSON_IsNull(item(s, "error_code")));
        assert_count(s, "close_code", 1000);
        assert_true(strlen(string(s, "id")) > 0);
        assert_true(cJSON_IsTrue(item(s, "ready")));
        double sent = number(s, "frames_sent");
        assert_true(sent > 0);
        assert_true(number(s, "frames_expected") == 4 * sent);
        assert_true(number(s, "frames_received") == 4 * sent);
        assert_true(number(s, "messages_sent") > 0);
        assert_true(number(s, "messages_received") > 0);
        assert_true(number(s, "hops") > 0);
        assert_true(number(s, "late_hops") >= 0);
        assert_true(cJSON_IsBool(item(s, "kept_up")));
        assert_true(number(s, "lag_end_s") >= 0);
        assert_true(number(s, "lag_max_s") >= 0);
        assert_true(number(s, "latency_announced_ms") > 0);
        check_latency(s);
        assert_true(number(s, "added_latency_max_ms") >= 0);
        assert_true(number(s, "timed_hops") > 0);
        assert_true(number(s, "client_late_hops") >= 0);
        assert_count(s, "lost_hops", 0);
        const cJSON *v = item(s, "verify");
        if (!cJSON_IsNull(v)) {
            assert_true(cJSON_IsTrue(item(v, "complete")));
            assert_true(cJSON_IsTrue(item(v, "identical")));
            assert_false(cJSON_IsTrue(item(v, "mismatch")));
            assert_true(number(v, "compared_frames") > 0);
        }
    }
    /* session 0 is always among the compared */
    assert_false(cJSON_IsNull(
        item(cJSON_GetArrayItem(item(r, "session_list"), 0), "verify")));
    cJSON_Delete(root);
}

/* (b) */
static void test_refusals_at_capacity(void **state)
{
    (void)state;
    wait_server_idle();
    assert_int_equal(demix("loadgen --url %s --sessions 6 --seconds 2 --json "
                           "--quiet",
                           g.url),
                     0);
    cJSON *root = parse_output();
    const cJSON *r = cJSON_GetArrayItem(item(root, "rounds"), 0);
    assert_non_null(r);
    assert_count(r, "sessions", 6);
    assert_count(r, "started", 6);
    assert_count(r, "ready", 4);
    assert_count(r, "ok", 4);
    assert_count(r, "refused", 2);
    assert_count(r, "failed", 0);
    assert_false(cJSON_IsTrue(item(r, "held")));
    assert_true(number(r, "frames_received") == number(r, "frames_expected"));
    const cJSON *errors = item(r, "errors");
    assert_int_equal(cJSON_GetArraySize(errors), 1);
    const cJSON *e = cJSON_GetArrayItem(errors, 0);
    assert_string_equal(string(e, "outcome"), "refused");
    assert_string_equal(string(e, "code"), "at_capacity");
    assert_count(e, "close_code", 1013);
    assert_count(e, "count", 2);
    assert_non_null(strstr(string(e, "message"), "at_capacity"));
    int refused = 0, ok = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, item(r, "session_list"))
    {
        const char *outcome = string(s, "outcome");
        if (strcmp(outcome, "refused") == 0) {
            refused++;
            assert_string_equal(string(s, "error_code"), "at_capacity");
            assert_count(s, "close_code", 1013);
            assert_false(cJSON_IsTrue(item(s, "ready")));
            assert_count(s, "frames_sent", 0);
        } else {
            assert_string_equal(outcome, "ok");
            ok++;
        }
    }
    assert_int_equal(refused, 2);
    assert_int_equal(ok, 4);
    cJSON_Delete(root);
}

/* (c) */
static void test_ramp_and_text_report(void **state)
{
    (void)state;
    wait_server_idle();
    assert_int_equal(demix("loadgen --url %s --ramp 3:5:2 --seconds 1 --json "
                           "--quiet",
                           g.url),
                     0);
    cJSON *root = parse_output();
    assert_string_equal(string(root, "mode"), "ramp");
    const cJSON *ramp = item(root, "ramp");
    assert_count(ramp, "from", 3);
    assert_count(ramp, "to", 5);
    assert_count(ramp, "step", 2);
    /* 5 sessions cannot all be taken by a 4-slot server: the ramp stops
     * with a reason, at 3 (if that round did not keep up) or at 5. */
    assert_true(cJSON_IsString(item(ramp, "stopped")));
    const cJSON *rounds = item(root, "rounds");
    int n = cJSON_GetArraySize(rounds);
    assert_true(n == 1 || n == 2);
    const cJSON *r3 = cJSON_GetArrayItem(rounds, 0);
    assert_count(r3, "sessions", 3);
    assert_count(r3, "refused", 0);
    const cJSON *largest = item(ramp, "largest_held");
    if (n == 2) {
        assert_true(cJSON_IsTrue(item(r3, "held")));
        assert_count(ramp, "largest_held", 3);
        const cJSON *r5 = cJSON_GetArrayItem(rounds, 1);
        assert_count(r5, "sessions", 5);
        assert_count(r5, "refused", 1);
        assert_count(r5, "ok", 4);
        assert_false(cJSON_IsTrue(item(r5, "held")));
    } else {
        assert_false(cJSON_IsTrue(item(r3, "held")));
        assert_true(cJSON_IsNull(largest));
    }
    cJSON_Delete(root);

    wait_server_idle();
    assert_int_equal(
        demix("loadgen --url %s -n 2 -s 1 --verbose --quiet", g.url), 0);
    assert_non_null(strstr(g.out, "2 started, 2 ready, 2 ok, 0 refused, 0 "
                                  "failed"));
    assert_non_null(strstr(g.out, "latency      median"));
    assert_non_null(strstr(g.out, "late hops"));
    assert_non_null(strstr(g.out, "kept up"));
    assert_non_null(strstr(g.out, "loaded"));
}

/* (d) */
static void test_cannot_connect(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/v1/stream", fx_unused_port());
    assert_int_equal(
        demix("loadgen --url %s --sessions 2 --seconds 1 --quiet", url), 1);
    assert_non_null(strstr(g.err, "cannot connect"));
    assert_non_null(strstr(g.err, url));
}

/* (e) */
static void test_usage_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "loadgen",                                    /* no --url */
        "loadgen --url http://127.0.0.1:1/v1/stream", /* not ws:// */
        "loadgen --url ws://127.0.0.1:1/ --sessions 0",
        "loadgen --url ws://127.0.0.1:1/ --sessions x",
        "loadgen --url ws://127.0.0.1:1/ --ramp 5:2:1",
        "loadgen --url ws://127.0.0.1:1/ --ramp 1:2",
        "loadgen --url ws://127.0.0.1:1/ --ramp 1:4:1 --sessions 2",
        "loadgen --url ws://127.0.0.1:1/ --seconds 0",
        "loadgen --url ws://127.0.0.1:1/ --codec mp3",
        "loadgen --url ws://127.0.0.1:1/ --codec opus --rate 44100",
        "loadgen --url ws://127.0.0.1:1/ --rate 100",
        "loadgen --url ws://127.0.0.1:1/ --stems vocals,vocals",
        "loadgen --url ws://127.0.0.1:1/ --bogus",
        "loadgen --url ws://127.0.0.1:1/ extra",
        "loadgen --url",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(demix("%s", bad[i]), 2);
        assert_true(strlen(g.err) > 0);
    }
    assert_int_equal(demix("help loadgen"), 0);
    assert_non_null(strstr(g.out, "usage: demix loadgen"));
    assert_int_equal(demix("loadgen --help"), 0);
    assert_non_null(strstr(g.out, "--ramp A:B:STEP"));
}

/* (f) */
static void test_input_file_streams(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/tone-44k-mono.wav", g.dir);
    const size_t bytes = 44100 * 2; /* 1 s */
    write_wav(path, 1, 44100, (uint32_t)bytes, bytes);
    wait_server_idle();
    assert_int_equal(demix("loadgen --url %s --input '%s' --sessions 1 "
                           "--seconds 1 --json --quiet",
                           g.url, path),
                     0);
    cJSON *root = cJSON_Parse(g.out);
    if (!root)
        fail_msg("demix loadgen --json printed no JSON object");
    assert_string_equal(string(root, "input"), path);
    assert_count(root, "channels", 1);
    assert_count(root, "rate", 48000);
    const cJSON *r = cJSON_GetArrayItem(item(root, "rounds"), 0);
    assert_non_null(r);
    assert_count(r, "ok", 1);
    assert_count(r, "failed", 0);
    assert_count(r, "refused", 0);
    assert_true(number(r, "frames_expected") > 0);
    assert_true(number(r, "frames_received") == number(r, "frames_expected"));
    cJSON_Delete(root);
}

/* (g) */
static void test_input_not_audio(void **state)
{
    (void)state;
    char path[512];

    snprintf(path, sizeof path, "%s/no-such-file.wav", g.dir);
    assert_input_refused(path, "cannot open: No such file or directory");

    snprintf(path, sizeof path, "%s/notes.txt", g.dir);
    write_text(path, "these are notes, not audio\n");
    assert_input_refused(path, "cannot read as audio");

    snprintf(path, sizeof path, "%s/empty.wav", g.dir);
    write_text(path, "");
    assert_input_refused(path, "cannot read as audio");

    /* The header promises 10 s of stereo; 100 bytes (25 frames) follow. */
    snprintf(path, sizeof path, "%s/short-data.wav", g.dir);
    write_wav(path, 2, 48000, 10 * 48000 * 4, 100);
    assert_input_refused(path, "at least 0.1 s of audio is needed");

    /* A header with no channels over a second of samples. */
    snprintf(path, sizeof path, "%s/no-channels.wav", g.dir);
    write_wav(path, 0, 48000, 48000 * 2, 48000 * 2);
    assert_input_refused(path, "cannot read as audio");

    /* Valid, but neither mono nor stereo. */
    snprintf(path, sizeof path, "%s/eight-channels.wav", g.dir);
    write_wav(path, 8, 48000, 4800 * 16, 4800 * 16);
    assert_input_refused(path, "only mono and stereo");
}

/* (h) */
static void test_bad_urls(void **state)
{
    (void)state;
    int port, fd = listener_open(&port);
    /* The URL is prefix + the listener's port + suffix, so a client that
     * took one for a ws:// URL anyway would connect to the listener. */
    static const struct {
        const char *prefix, *suffix, *why;
    } cases[] = {
        {"http://127.0.0.1:", "/v1/stream", "must start with ws:// or wss://"},
        {"https://127.0.0.1:", "/v1/stream", "must start with ws:// or wss://"},
        {"127.0.0.1:", "/v1/stream", "must start with ws:// or wss://"},
        {"ws:/127.0.0.1:", "/v1/stream", "must start with ws:// or wss://"},
        {"ws://:", "/v1/stream", "has no host"},
        {"ws://127.0.0.1:", "x/v1/stream", "has a bad port"},
        {"ws://127.0.0.1:", "0000000/v1/stream", "has a bad port"},
        {"ws://[127.0.0.1:", "/v1/stream", "unclosed '['"},
    };
    char url[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(url, sizeof url, "%s%d%s", cases[i].prefix, port,
                 cases[i].suffix);
        assert_int_equal(demix("loadgen --url '%s' --sessions 1 --seconds 1 "
                               "--quiet",
                               url),
                         2);
        assert_non_null(strstr(g.err, url));
        assert_non_null(strstr(g.err, cases[i].why));
    }
    static const struct {
        const char *url, *why;
    } portless[] = {
        {"", "must start with ws:// or wss://"},
        {"ws://127.0.0.1:0/v1/stream", "has a bad port"},
        {"ws://127.0.0.1?v1/stream", "expected a path after the host"},
    };
    for (size_t i = 0; i < sizeof portless / sizeof portless[0]; i++) {
        assert_int_equal(demix("loadgen --url '%s' --quiet", portless[i].url),
                         2);
        snprintf(url, sizeof url, "URL '%s'", portless[i].url);
        assert_non_null(strstr(g.err, url));
        assert_non_null(strstr(g.err, portless[i].why));
    }
    assert_false(listener_was_connected(fd));
    close(fd);
}

/* (i) */
static void test_wss_to_plain_server(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "wss://127.0.0.1:%d/v1/stream", g.fx.port);
    wait_server_idle();
    assert_int_equal(
        demix("loadgen --url %s --sessions 1 --seconds 1 --quiet", url), 1);
    assert_non_null(strstr(g.err, "cannot connect"));
    assert_non_null(strstr(g.err, url));
}

/* (j) */
static cJSON *run_threads(int threads)
{
    wait_server_idle();
    assert_int_equal(demix("loadgen --url %s --sessions 3 --seconds 1 "
                           "--threads %d --verify 1 --json --quiet",
                           g.url, threads),
                     0);
    cJSON *root = parse_output();
    assert_count(root, "threads", threads);
    return root;
}

static void test_threads_same_results(void **state)
{
    (void)state;
    cJSON *one = run_threads(1), *three = run_threads(3);
    const cJSON *r1 = cJSON_GetArrayItem(item(one, "rounds"), 0);
    const cJSON *r3 = cJSON_GetArrayItem(item(three, "rounds"), 0);
    assert_non_null(r1);
    assert_non_null(r3);
    check_round_fields(r1, 3);
    check_round_fields(r3, 3);
    assert_count(r1, "threads", 1);
    assert_count(r3, "threads", 3);
    assert_true(number(r1, "frames_received") ==
                number(r3, "frames_received"));
    assert_true(number(r1, "hops") == number(r3, "hops"));
    const cJSON *l1 = item(r1, "session_list"), *l3 = item(r3, "session_list");
    static const char *const same[] = {
        "index", "ready", "messages_sent", "frames_sent", "frames_expected",
        "frames_received", "hops", "lost_hops", "close_code"};
    for (int i = 0; i < 3; i++) {
        const cJSON *a = cJSON_GetArrayItem(l1, i);
        const cJSON *b = cJSON_GetArrayItem(l3, i);
        assert_string_equal(string(a, "outcome"), "ok");
        assert_string_equal(string(b, "outcome"), "ok");
        for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
            const cJSON *x = item(a, same[k]), *y = item(b, same[k]);
            if (cJSON_IsBool(x)) {
                assert_true(cJSON_IsTrue(x) == cJSON_IsTrue(y));
            } else if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) ||
                       x->valuedouble != y->valuedouble) {
                fail_msg("session %d: '%s' differs between 1 and 3 threads",
                         i, same[k]);
            }
        }
        /* --verify 1: every session compared, each identical to the
         * reference on both runs */
        assert_true(cJSON_IsTrue(item(item(a, "verify"), "identical")));
        assert_true(cJSON_IsTrue(item(item(b, "verify"), "identical")));
    }
    cJSON_Delete(one);
    cJSON_Delete(three);
}

/* (k) */
typedef struct pauser {
    server_fixture *fx;
    int sessions;
    int paused;
} pauser;

/* Pause the server once `sessions` are live on it, and a moment more so
 * that output has flowed. */
static void *pause_when_streaming(void *arg)
{
    pauser *p = arg;
    for (int waited = 0; waited < HEALTH_WAIT_MS; waited += 50) {
        wst_http_response r;
        memset(&r, 0, sizeof r);
        int live = -1;
        if (wst_http(p->fx->port, "GET", "/v1/health", NULL, NULL, 0, &r,
                     10000) == 0 &&
            r.status == 200) {
            cJSON *j = cJSON_Parse((const char *)r.body);
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "sessions");
            if (cJSON_IsNumber(n))
                live = n->valueint;
            cJSON_Delete(j);
        }
        wst_http_response_free(&r);
        if (live >= p->sessions) {
            struct timespec t = {0, 500 * 1000 * 1000};
            nanosleep(&t, NULL);
            p->paused = kill(p->fx->pid, SIGSTOP) == 0;
            return NULL;
        }
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void test_lost_hops(void **state)
{
    (void)state;
    server_fixture fx;
    const char *model = demix_test_data_path("tiny.safetensors");
    assert_int_equal(server_fixture_start(&fx, model, "--max-sessions", "4",
                                          (const char *)NULL),
                     0);
    pauser p = {.fx = &fx, .sessions = 2};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pause_when_streaming, &p), 0);
    int rc = demix("loadgen --url ws://127.0.0.1:%d/v1/stream --sessions 2 "
                   "--seconds 6 --timeout 2 --verify 0 --threads 2 --json "
                   "--quiet",
                   fx.port);
    pthread_join(t, NULL);
    kill(fx.pid, SIGCONT);
    assert_int_equal(server_fixture_stop(&fx), 0);
    assert_true(p.paused);
    assert_int_equal(rc, 1);
    cJSON *root = cJSON_Parse(g.out);
    if (!root)
        fail_msg("demix loadgen --json printed no JSON object");
    assert_true(cJSON_IsNull(item(root, "verify")));
    const cJSON *r = cJSON_GetArrayItem(item(root, "rounds"), 0);
    assert_non_null(r);
    assert_count(r, "ready", 2);
    assert_count(r, "failed", 2);
    assert_true(number(r, "lost_hops") > 0);
    assert_false(cJSON_IsTrue(item(r, "held")));
    assert_true(cJSON_IsString(item(r, "verdict")));
    assert_true(cJSON_IsNull(item(r, "verify")));
    const cJSON *s;
    double lost = 0;
    cJSON_ArrayForEach(s, item(r, "session_list"))
    {
        assert_string_equal(string(s, "outcome"), "failed");
        assert_true(cJSON_IsTrue(item(s, "ready")));
        /* the output stopped long before the stream's 6 s: well over a
         * second of it (100 hops of 10 ms) never arrived */
        assert_true(number(s, "lost_hops") > 100);
        lost += number(s, "lost_hops");
        assert_true(number(s, "frames_received") <
                    number(s, "frames_expected"));
    }
    assert_true(lost == number(r, "lost_hops"));
    cJSON_Delete(root);
}

/* (l) */
static void test_new_option_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args, *option, *value;
    } bad[] = {
        {"--threads 0", "--threads", "'0'"},
        {"--threads -2", "--threads", "'-2'"},
        {"--threads x", "--threads", "'x'"},
        {"--threads 100000", "--threads", "'100000'"},
        {"--verify 1.5", "--verify", "'1.5'"},
        {"--verify -0.1", "--verify", "'-0.1'"},
        {"--verify x", "--verify", "'x'"},
        {"--verify nan", "--verify", "'nan'"},
        {"--verify-min-snr db", "--verify-min-snr", "'db'"},
        {"--connect-rate 0", "--connect-rate", "'0'"},
        {"--late-ms -1", "--late-ms", "'-1'"},
        {"--max-p99-ms ten", "--max-p99-ms", "'ten'"},
        {"--sessions 2000000", "--sessions", "'2000000'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(demix("loadgen --url ws://127.0.0.1:1/v1/stream %s",
                               bad[i].args),
                         2);
        if (!strstr(g.err, bad[i].option) || !strstr(g.err, bad[i].value))
            fail_msg("'%s': the message does not name %s and %s: %s",
                     bad[i].args, bad[i].option, bad[i].value, g.err);
    }
    assert_int_equal(demix("loadgen --help"), 0);
    assert_non_null(strstr(g.out, "--threads N"));
    assert_non_null(strstr(g.out, "--verify F"));
    assert_non_null(strstr(g.out, "--connect-rate R"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_sessions),
        cmocka_unit_test(test_refusals_at_capacity),
        cmocka_unit_test(test_ramp_and_text_report),
        cmocka_unit_test(test_cannot_connect),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_input_file_streams),
        cmocka_unit_test(test_input_not_audio),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_wss_to_plain_server),
        cmocka_unit_test(test_threads_same_results),
        cmocka_unit_test(test_lost_hops),
        cmocka_unit_test(test_new_option_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
