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
 * exit 2, `demix help loadgen` exits 0.
 *
 * Nothing here asserts a time or a latency value: only that the figures
 * are there and well-formed, and the counts that do not depend on timing.
 * Before each run the test waits for the server's session count to be 0
 * (GET /v1/health), so a previous run's sessions, released a moment after
 * their close, are not counted against the next.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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

/* latency_ms: {count, p50, p90, p99, max, mean}, present and ordered. */
static void check_latency(const cJSON *o)
{
    const cJSON *l = item(o, "latency_ms");
    assert_true(cJSON_IsObject(l));
    assert_true(number(l, "count") > 0);
    double p50 = number(l, "p50"), p90 = number(l, "p90");
    double p99 = number(l, "p99"), max = number(l, "max");
    assert_true(p50 >= 0 && number(l, "mean") >= 0);
    assert_true(p50 <= p90 && p90 <= p99 && p99 <= max);
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
    return root;
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
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_sessions),
        cmocka_unit_test(test_refusals_at_capacity),
        cmocka_unit_test(test_ramp_and_text_report),
        cmocka_unit_test(test_cannot_connect),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
