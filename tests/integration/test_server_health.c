/*
 * test_server_health.c - demixd's probe endpoints (docs/server.md,
 * "Health probes"): GET /v1/health/live and GET /v1/health/ready, what a
 * load balancer and Kubernetes look at (deploy/k8s, docs/deploy.md).
 *
 * Cases, on a server with --max-sessions 1 (identity model, 48 kHz):
 *
 *   - idle: live 200 {"status":"live",...}; ready 200 {"status":"ready",
 *     "sessions":0,"max_sessions":1}; both JSON, Cache-Control: no-store;
 *   - one streaming session: ready 503 {"status":"not_ready","reason":
 *     "at_capacity",...,"sessions":1}; live still 200; and ready told the
 *     truth: a second session gets at_capacity and close 1013;
 *   - that session ends: ready is 200 again (the slot is returned once the
 *     scheduler has closed it, so the test polls, within FX_TIMEOUT_MS);
 *   - other methods on the probe paths are 405;
 *
 * and on a second server, during the SIGTERM shutdown: a keep-alive
 * connection opened before the signal asks again after the log says
 * shutdown_begin: ready 503 with reason "shutting_down", live 200. A
 * session whose client stops reading (it never answers the server's close)
 * keeps the server in its shutdown for those requests; the server must
 * still exit 0.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_fixture.h"

#define RATE 48000

static struct {
    char dir[256];
    char model[512];
    server_fixture fx;
    int started;
    uint64_t seed;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* GET path on a new connection: the status, the body into body (may be
 * NULL), the headers checked for JSON and no-store. */
static int get(int port, const char *path, char *body, size_t cap)
{
    wst_http_response r;
    assert_int_equal(wst_http(port, "GET", path, NULL, NULL, 0, &r, 10000), 0);
    char v[128];
    assert_int_equal(wst_http_header(&r, "content-type", v, sizeof v), 0);
    assert_string_equal(v, "application/json");
    assert_int_equal(wst_http_header(&r, "cache-control", v, sizeof v), 0);
    assert_string_equal(v, "no-store");
    if (body)
        snprintf(body, cap, "%s", (const char *)r.body);
    print_message("GET %s: %d %s", path, r.status, (const char *)r.body);
    int status = r.status;
    wst_http_response_free(&r);
    return status;
}

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    snprintf(g.model, sizeof g.model, "%s/identity48k.safetensors", g.dir);
    if (fx_save_identity_model(g.model, RATE, g.seed))
        return -1;
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "1",
                             (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* Poll ready until it answers want (or the liveness bound passes). */
static int wait_ready_status(int port, int want, char *body, size_t cap)
{
    double deadline = now_ms() + FX_TIMEOUT_MS;
    int status;
    while ((status = get(port, "/v1/health/ready", body, cap)) != want &&
           now_ms() < deadline)
        sleep_ms(20);
    return status;
}

/* A session that streams: ready came, some audio sent and answered. */
static void open_streaming(fx_session *s, int port, float *x, int64_t frames)
{
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    assert_int_equal(fx_session_open(s, port, &st), 0);
    assert_int_equal(fx_session_wait_ready(s), 0);
    assert_int_equal(fx_session_send(s, x, frames), 0);
    double deadline = now_ms() + FX_TIMEOUT_MS;
    while (fx_session_reached(s) == 0 && now_ms() < deadline)
        assert_true(fx_session_poll(s, 100) >= 0);
    assert_true(fx_session_reached(s) > 0);
}

/* -------------------------------------------------------------- tests */

static void test_idle_server_is_live_and_ready(void **state)
{
    (void)state;
    char body[512];
    assert_int_equal(get(g.fx.port, "/v1/health/live", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"status\":\"live\""));
    assert_non_null(strstr(body, "\"uptime_s\":"));
    assert_int_equal(wait_ready_status(g.fx.port, 200, body, sizeof body), 200);
    assert_non_null(strstr(body, "\"status\":\"ready\""));
    assert_non_null(strstr(body, "\"sessions\":0"));
    assert_non_null(strstr(body, "\"max_sessions\":1"));
}

static void test_at_capacity_is_not_ready(void **state)
{
    (void)state;
    int64_t frames = 8 * 512;
    float *x = fx_make_signal(RATE, 2, frames, g.seed);
    fx_session s;
    open_streaming(&s, g.fx.port, x, frames);

    char body[512];
    assert_int_equal(get(g.fx.port, "/v1/health/ready", body, sizeof body),
                     503);
    assert_non_null(strstr(body, "\"status\":\"not_ready\""));
    assert_non_null(strstr(body, "\"reason\":\"at_capacity\""));
    assert_non_null(strstr(body, "\"message\":\""));
    assert_non_null(strstr(body, "\"sessions\":1"));
    assert_non_null(strstr(body, "\"max_sessions\":1"));
    assert_int_equal(get(g.fx.port, "/v1/health/live", NULL, 0), 200);

    /* Ready told the truth: a second session is refused. */
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session second;
    assert_int_equal(fx_session_open(&second, g.fx.port, &st), 0);
    assert_int_not_equal(fx_session_wait_ready(&second), 0);
    assert_true(second.have_error);
    fx_session_finish(&second);
    assert_int_equal(second.error.code, DEMIX_PROTO_ERR_AT_CAPACITY);
    assert_int_equal(second.close_code, 1013);
    fx_session_free(&second);

    /* The first session ends cleanly; then the server is ready again. */
    assert_int_equal(fx_session_send_end(&s), 0);
    assert_int_equal(fx_session_finish(&s), 0);
    assert_true(s.have_summary);
    assert_int_equal(s.close_code, 1000);
    fx_session_free(&s);
    free(x);
    assert_int_equal(wait_ready_status(g.fx.port, 200, body, sizeof body), 200);
    assert_non_null(strstr(body, "\"sessions\":0"));
}

static void test_probe_methods(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/health/live", "/v1/health/ready"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        wst_http_response r;
        assert_int_equal(wst_http(g.fx.port, "POST", paths[i], "text/plain",
                                  "x", 1, &r, 10000),
                         0);
        print_message("POST %s: %d\n", paths[i], r.status);
        assert_int_equal(r.status, 405);
        wst_http_response_free(&r);
    }
}

/* ---------------------------------------------- during the shutdown */

/* A plain keep-alive HTTP/1.1 connection (wst_http closes after one
 * request; new connections are refused once shutdown began). */
static int ka_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Content-Length of a header block, or -1. */
static long content_length(const char *headers)
{
    static const char name[] = "content-length:";
    for (const char *p = headers; *p; p++) {
        size_t i = 0;
        while (name[i] && (p[i] | 0x20) == name[i])
            i++;
        if (!name[i])
            return atol(p + i);
    }
    return -1;
}

/* One GET on the connection; the status, the body into body. */
static int ka_get(int fd, const char *path, char *body, size_t cap)
{
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: keep-alive\r\n\r\n",
                     path);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    char buf[4096];
    size_t len = 0;
    double deadline = now_ms() + 10000;
    for (;;) {
        buf[len] = '\0';
        char *eoh = strstr(buf, "\r\n\r\n");
        if (eoh) {
            long cl = content_length(buf);
            assert_true(cl >= 0);
            size_t want = (size_t)cl;
            size_t have = len - (size_t)(eoh + 4 - buf);
            if (have >= want) {
                snprintf(body, cap, "%.*s", (int)want, eoh + 4);
                int status = 0;
                assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
                print_message("keep-alive GET %s: %d %s", path, status, body);
                return status;
            }
        }
        assert_true(len < sizeof buf - 1);
        assert_true(now_ms() < deadline);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0) {
            print_error("keep-alive GET %s: connection ended (%zd)\n", path, r);
            return -1;
        }
        len += (size_t)r;
    }
}

static void test_shutdown_is_not_ready_but_live(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(&fx, g.model, "--max-sessions", "2",
                                          (const char *)NULL),
                     0);
    int64_t frames = 8 * 512;
    float *x = fx_make_signal(RATE, 2, frames, g.seed + 1);
    fx_session s;
    open_streaming(&s, fx.port, x, frames);
    /* From here the client reads nothing: the server's close goes
     * unanswered, so its shutdown lasts (DEMIXD_SHUTDOWN_GRACE_S). */
    wst_set_read_paused(s.c, 1);

    int fd = ka_connect(fx.port);
    char body[512];
    assert_int_equal(ka_get(fd, "/v1/health/ready", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"sessions\":1"));

    assert_int_equal(kill(fx.pid, SIGTERM), 0);
    double deadline = now_ms() + FX_TIMEOUT_MS;
    for (;;) {
        char *log = server_fixture_read_log(&fx);
        int begun = log && strstr(log, "event=shutdown_begin");
        free(log);
        if (begun)
            break;
        assert_true(now_ms() < deadline);
        sleep_ms(10);
    }
    assert_int_equal(ka_get(fd, "/v1/health/ready", body, sizeof body), 503);
    assert_non_null(strstr(body, "\"status\":\"not_ready\""));
    assert_non_null(strstr(body, "\"reason\":\"shutting_down\""));
    assert_int_equal(ka_get(fd, "/v1/health/live", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"status\":\"live\""));
    close(fd);

    wst_set_read_paused(s.c, 0);
    fx_session_finish(&s);
    fx_session_free(&s);
    free(x);
    assert_int_equal(server_fixture_stop(&fx), 0);
}

/* --drain-seconds: after SIGTERM a streaming session goes on (its output
 * keeps coming) while new connections still get probe answers (ready 503,
 * live 200) and a new session is refused; when the drain ends the session
 * gets `restarting` and close 1012, and the server exits 0. */
static void test_drain_then_restarting(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(&fx, g.model, "--max-sessions", "2",
                                          "--drain-seconds", "2",
                                          (const char *)NULL),
                     0);
    int64_t frames = 8 * 512;
    float *x = fx_make_signal(RATE, 2, 4 * frames, g.seed + 2);
    fx_session s;
    open_streaming(&s, fx.port, x, frames);

    assert_int_equal(kill(fx.pid, SIGTERM), 0);
    double deadline = now_ms() + FX_TIMEOUT_MS;
    for (;;) {
        char *log = server_fixture_read_log(&fx);
        int begun = log && strstr(log, "event=shutdown_begin");
        free(log);
        if (begun)
            break;
        assert_true(now_ms() < deadline);
        sleep_ms(10);
    }
    char body[512];
    assert_int_equal(get(fx.port, "/v1/health/ready", body, sizeof body), 503);
    assert_non_null(strstr(body, "\"reason\":\"shutting_down\""));
    assert_int_equal(get(fx.port, "/v1/health/live", body, sizeof body), 200);

    /* the live session streams on during the drain */
    int64_t before = fx_session_reached(&s);
    assert_int_equal(fx_session_send(&s, x + frames * 2, frames), 0);
    assert_int_equal(fx_session_send(&s, x + frames * 4, frames), 0);
    deadline = now_ms() + FX_TIMEOUT_MS;
    while (fx_session_reached(&s) < before + frames && !s.closed &&
           now_ms() < deadline)
        assert_true(fx_session_poll(&s, 50) >= 0);
    print_message("during the drain the output went on from %lld to %lld\n",
                  (long long)before, (long long)fx_session_reached(&s));
    assert_true(fx_session_reached(&s) >= before + frames);
    assert_false(s.closed);

    /* then restarting / 1012 */
    deadline = now_ms() + FX_TIMEOUT_MS;
    while (!s.closed && !s.eof && now_ms() < deadline)
        (void)fx_session_poll(&s, 100);
    assert_true(s.have_error);
    assert_int_equal(s.error.code, DEMIX_PROTO_ERR_RESTARTING);
    assert_int_equal(s.close_code, 1012);
    char *log = server_fixture_read_log(&fx);
    assert_non_null(log);
    assert_non_null(strstr(log, "event=drain_end"));
    free(log);
    fx_session_free(&s);
    free(x);
    assert_int_equal(server_fixture_stop(&fx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_server_is_live_and_ready),
        cmocka_unit_test(test_at_capacity_is_not_ready),
        cmocka_unit_test(test_probe_methods),
        cmocka_unit_test(test_shutdown_is_not_ready_but_live),
        cmocka_unit_test(test_drain_then_restarting),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
