/*
 * test_server_per_address.c - --max-per-address (docs/server.md,
 * "Connections per address"): one client address holds at most N
 * connections at once, sessions included; the next gets HTTP 429 with
 * {"error":{"code":"too_many_connections"}} (a WebSocket upgrade too),
 * counted in demixd_address_refused_total; a connection that ends gives
 * its place back; without the option, loopback is not counted (a local
 * proxy or test brings every client on 127.0.0.1).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_fixture.h"

#define RATE 44100

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static struct {
    char dir[256];
    const char *model;
    server_fixture fx; /* --max-per-address 3 */
    int started;
} g;

static const char *const stems[] = {"vocals", NULL};

static int setup(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.model = strdup(demix_test_data_path("tiny.safetensors"));
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "8",
                             "--max-per-address", "3", (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free((void *)g.model);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* A keep-alive HTTP connection that has had one answer (so the server
 * has taken it, and counts it: a bare connect may still wait in a
 * listening socket's queue while later ones are taken). Its fd. */
static int keepalive_conn(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char req[] = "GET /v1/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    char buf[4096];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        assert_true(k > 0);
        n += (size_t)k;
        buf[n] = '\0';
        const char *body = strstr(buf, "\r\n\r\n");
        if (body && strchr(body + 4, '}'))
            break; /* the JSON body is in */
    }
    assert_non_null(strstr(buf, "200"));
    return fd;
}

static void open_session(fx_session *s, int port)
{
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, stems);
    assert_int_equal(fx_session_open(s, port, &st), 0);
    assert_int_equal(fx_session_wait_ready(s), 0);
}

static void end_session(fx_session *s)
{
    assert_int_equal(fx_session_send_end(s), 0);
    assert_int_equal(fx_session_finish(s), 0);
    assert_int_equal(s->close_code, 1000);
    fx_session_free(s);
}

/* The server's count of the address drops a moment after a close (lws
 * frees the connection in its next service turn): retry a request for a
 * short while. */
static int http_when_free(int port, const char *path, wst_http_response *r)
{
    for (int i = 0; i < 100; i++) {
        memset(r, 0, sizeof *r);
        if (wst_http(port, "GET", path, NULL, NULL, 0, r, FX_TIMEOUT_MS) == 0 &&
            r->status != 429)
            return 0;
        wst_http_response_free(r);
        sleep_ms(20);
    }
    return -1;
}

static void test_limit_counts_sessions_and_requests(void **state)
{
    (void)state;
    /* two sessions and one idle connection: the address's three */
    fx_session a, b;
    open_session(&a, g.fx.port);
    open_session(&b, g.fx.port);
    int idle = keepalive_conn(g.fx.port);

    /* a fourth: an upgrade gets 429, a request 429 with the JSON error */
    wst_conn *c = NULL;
    int status = 0;
    assert_int_equal(wst_open(g.fx.port, DEMIX_PROTO_PATH,
                              DEMIX_PROTO_SUBPROTOCOL, &c, &status),
                     -1);
    print_message("upgrade beyond the limit: HTTP %d\n", status);
    assert_int_equal(status, 429);
    wst_http_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(wst_http(g.fx.port, "GET", "/v1/health", NULL, NULL, 0,
                              &r, FX_TIMEOUT_MS),
                     0);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr((const char *)r.body,
                           "\"code\":\"too_many_connections\""));
    print_message("request beyond the limit: %d %s\n", r.status,
                  (const char *)r.body);
    wst_http_response_free(&r);

    /* the sessions were not disturbed */
    float *x = fx_make_signal(RATE, 2, 4096, 7);
    assert_int_equal(fx_session_send(&a, x, 4096), 0);
    free(x);
    end_session(&a);

    /* a's place is free again: a new session is admitted */
    fx_session n;
    for (int i = 0;; i++) {
        demix_proto_start st;
        fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                      DEMIX_PROTO_CODEC_PCM_S16, stems);
        if (fx_session_open(&n, g.fx.port, &st) == 0 &&
            fx_session_wait_ready(&n) == 0)
            break;
        fx_session_free(&n);
        assert_true(i < 100); /* lws frees the closed one within a turn */
        sleep_ms(20);
    }
    end_session(&n);
    end_session(&b);
    close(idle);

    /* the refusals were counted */
    assert_int_equal(http_when_free(g.fx.port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    const char *m = strstr((const char *)r.body,
                           "\ndemixd_address_refused_total ");
    assert_non_null(m);
    long refused = strtol(m + strlen("\ndemixd_address_refused_total "),
                          NULL, 10);
    print_message("demixd_address_refused_total %ld\n", refused);
    assert_true(refused >= 2);
    wst_http_response_free(&r);
}

/* Without --max-per-address: 64 per address, loopback not counted, so
 * 80 connections from 127.0.0.1 are all served; the start says so. */
static void test_default_leaves_loopback_free(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(&fx, g.model, "--max-sessions", "2",
                                          (const char *)NULL),
                     0);
    char *log = server_fixture_read_log(&fx);
    assert_non_null(log);
    assert_non_null(strstr(log, "event=per_address max=64 loopback=free"));
    free(log);
    enum { N = 80 };
    wst_conn *c[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(wst_connect(fx.port, &c[i]), 0);
    wst_http_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(wst_http(fx.port, "GET", "/v1/health", NULL, NULL, 0, &r,
                              FX_TIMEOUT_MS),
                     0);
    assert_int_equal(r.status, 200);
    wst_http_response_free(&r);
    for (int i = 0; i < N; i++)
        wst_free(c[i]);
    assert_int_equal(server_fixture_stop(&fx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_counts_sessions_and_requests),
        cmocka_unit_test(test_default_leaves_loopback_free),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
