/*
 * test_wsio.c - tools/wsio.c, the lean WebSocket client, against a
 * scripted server on 127.0.0.1 in the same thread (a listening socket;
 * the test pumps the client's loop while it reads and writes the server
 * side). Checked: the upgrade request and a good answer open the
 * connection; client frames are masked and arrive intact; a message the
 * server writes in two pieces arrives whole, one of 65536 bytes too; a
 * ping is answered with its pong; the server's close 1013 is answered
 * with 1013 and reported with its reason; our close is reported with our
 * code; an EOF without a close frame is 1006; a message over the limit
 * closes with 1009; a bad Sec-WebSocket-Accept and a refused connection
 * end in on_connect_error; a client that sends faster than the server
 * reads queues (no on_writeable meanwhile) and every byte arrives in
 * order once the server reads.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wsio.h"
#include "wsio_frame.h"
#include "wsio_handshake.h"

#define LIMIT 65536
#define BIG_MSG 60000
#define BIG_COUNT 1000 /* 60 MB at most: more than loopback buffers hold */

/* ------------------------------------------------------------ client */

typedef struct cli {
    wsio_conn *c;
    int opened, ended, connect_error;
    int close_code;
    char text[256];
    int messages;
    int last_binary;
    uint8_t *last;
    size_t last_len;
    int writeables;
    /* flood: messages sent by on_writeable */
    int flood, sent, limit;
} cli;

static void on_open(void *u)
{
    cli *k = u;
    k->opened = 1;
    wsio_want_write(k->c);
}

static void on_message(void *u, int binary, const uint8_t *d, size_t n)
{
    cli *k = u;
    k->messages++;
    k->last_binary = binary;
    memcpy(k->last, d, n);
    k->last_len = n;
}

static void on_writeable(void *u)
{
    cli *k = u;
    k->writeables++;
    uint8_t *b = wsio_tx_buffer(k->c);
    if (!k->flood) {
        memcpy(b, "start", 5);
        assert_int_equal(wsio_send(k->c, 0, 5), DEMIX_OK);
        return;
    }
    if (k->sent >= k->limit)
        return;
    for (size_t i = 0; i < BIG_MSG; i++)
        b[i] = (uint8_t)(i * 31 + (size_t)k->sent);
    assert_int_equal(wsio_send(k->c, 1, BIG_MSG), DEMIX_OK);
    k->sent++;
    wsio_want_write(k->c);
}

static void on_close(void *u, int code, const char *reason)
{
    cli *k = u;
    assert_false(k->ended);
    k->ended = 1;
    k->close_code = code;
    snprintf(k->text, sizeof k->text, "%s", reason);
}

static void on_connect_error(void *u, const char *why)
{
    cli *k = u;
    assert_false(k->ended);
    k->ended = 1;
    k->connect_error = 1;
    snprintf(k->text, sizeof k->text, "%s", why);
}

static const wsio_events events = {on_open, on_message, on_writeable, on_close,
                                   on_connect_error};

/* ------------------------------------------------------------ server */

typedef struct srv {
    int lfd, fd, port;
    uint8_t *in;
    size_t in_off, in_len;
    wsio_rx rx; /* the client's frames */
} srv;

static void srv_listen(srv *s)
{
    memset(s, 0, sizeof s[0]);
    s->fd = -1;
    s->in = malloc(4u << 20);
    assert_non_null(s->in);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    /* a small window, so that a flood fills the client's socket soon */
    int rcvbuf = 8192;
    assert_int_equal(
        setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    assert_int_equal(listen(s->lfd, 8), 0);
    socklen_t l = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
    s->port = ntohs(a.sin_port);
    wsio_rx_init(&s->rx, 1u << 20, 1);
}

static void srv_free(srv *s)
{
    if (s->fd >= 0)
        close(s->fd);
    if (s->lfd >= 0)
        close(s->lfd);
    wsio_rx_free(&s->rx);
    free(s->in);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Pump the client's loop for a millisecond, and read what the server's
 * socket holds. */
static void pump(wsio_loop *loop, srv *s)
{
    assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
    if (s->fd < 0) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            s->fd = accept(s->lfd, NULL, NULL);
        return;
    }
    size_t cap = (4u << 20) - s->in_len;
    ssize_t n = recv(s->fd, s->in + s->in_len, cap, MSG_DONTWAIT);
    if (n > 0)
        s->in_len += (size_t)n;
}

#define PUMP_UNTIL(loop, s, cond)                                              \
    do {                                                                       \
        double t_end_ = now_s() + 5.0;                                         \
        while (!(cond)) {                                                      \
            if (now_s() > t_end_)                                              \
                fail_msg("timed out waiting for: %s", #cond);                  \
            pump(loop, s);                                                     \
        }                                                                      \
    } while (0)

static int head_in(const srv *s)
{
    for (size_t i = 3; i < s->in_len; i++)
        if (memcmp(s->in + i - 3, "\r\n\r\n", 4) == 0)
            return (int)(i + 1);
    return 0;
}

/* Read the upgrade request and answer it (accept_ok 0: a wrong Accept). */
static void srv_handshake(wsio_loop *loop, srv *s, int accept_ok)
{
    PUMP_UNTIL(loop, s, head_in(s) > 0);
    int head = head_in(s);
    char req[4096];
    memcpy(req, s->in, (size_t)head);
    req[head] = '\0';
    assert_true(strncmp(req, "GET /v1/stream HTTP/1.1\r\n", 25) == 0);
    assert_non_null(strstr(req, "Sec-WebSocket-Protocol: demix.v1\r\n"));
    const char *k = strstr(req, "Sec-WebSocket-Key: ");
    assert_non_null(k);
    char key[64];
    assert_int_equal(sscanf(k + 19, "%63[^\r]", key), 1);
    assert_int_equal(strlen(key), 24);
    char accept[WSIO_HANDSHAKE_ACCEPT_BYTES];
    wsio_handshake_accept(key, accept);
    if (!accept_ok)
        accept[3] ^= 1;
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: demix.v1\r\n\r\n",
                     accept);
    assert_int_equal(send(s->fd, resp, (size_t)n, 0), n);
    s->in_off = (size_t)head;
}

/* The next frame the client sent (masked: checked). */
static void srv_frame(wsio_loop *loop, srv *s, wsio_frame_event *fe)
{
    double t_end = now_s() + 5.0;
    /* room for more: what the parser took is its own (or handed out) */
    memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
    s->in_len -= s->in_off;
    s->in_off = 0;
    for (;;) {
        if (s->in_off + 2 <= s->in_len && s->rx.hdr_len == 0 &&
            !s->rx.in_payload)
            assert_true(s->in[s->in_off + 1] & 0x80); /* masked */
        s->in_off +=
            wsio_rx_next(&s->rx, s->in + s->in_off, s->in_len - s->in_off, fe);
        if (fe->kind != WSIO_FRAME_MORE)
            return;
        if (now_s() > t_end)
            fail_msg("timed out waiting for a frame from the client");
        pump(loop, s);
    }
}

static void srv_send(srv *s, int op, const void *p, size_t n)
{
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    size_t hl = wsio_frame_header(h, op, 1, n, NULL);
    assert_int_equal(send(s->fd, h, hl, 0), (ssize_t)hl);
    const uint8_t *b = p;
    while (n) {
        ssize_t k = send(s->fd, b, n, 0);
        assert_true(k > 0);
        b += k;
        n -= (size_t)k;
    }
}

static void open_pair(wsio_loop **loop, srv *s, cli *k, int accept_ok)
{
    char err[256], url[64];
    memset(k, 0, sizeof *k);
    k->last = malloc(LIMIT);
    assert_non_null(k->last);
    srv_listen(s);
    assert_int_equal(wsio_loop_create(LIMIT, loop, err, sizeof err), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/v1/stream", s->port);
    assert_int_equal(wsio_connect(*loop, url, "demix.v1", &events, k, &k->c,
                                  err, sizeof err),
                     0);
    srv_handshake(*loop, s, accept_ok);
    if (accept_ok)
        PUMP_UNTIL(*loop, s, k->opened);
}

static void close_pair(wsio_loop *loop, srv *s, cli *k)
{
    wsio_destroy(k->c);
    wsio_loop_destroy(loop);
    srv_free(s);
    free(k->last);
}

/* ------------------------------------------------------------- tests */

static void test_exchange_and_server_close(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 1);
    assert_true(wsio_is_open(k.c));

    wsio_frame_event fe;
    srv_frame(loop, &s, &fe); /* on_writeable sent "start" */
    assert_int_equal(fe.kind, WSIO_FRAME_MESSAGE);
    assert_int_equal(fe.binary, 0);
    assert_int_equal(fe.len, 5);
    assert_memory_equal(fe.data, "start", 5);

    /* a binary message in two writes, with a pause between */
    uint8_t *m = malloc(LIMIT);
    assert_non_null(m);
    for (size_t i = 0; i < LIMIT; i++)
        m[i] = (uint8_t)(i * 7);
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    size_t hl = wsio_frame_header(h, WSIO_OP_BINARY, 1, 3000, NULL);
    assert_int_equal(send(s.fd, h, hl, 0), (ssize_t)hl);
    assert_int_equal(send(s.fd, m, 1000, 0), 1000);
    for (int i = 0; i < 5; i++)
        pump(loop, &s);
    assert_int_equal(k.messages, 0);
    assert_int_equal(send(s.fd, m + 1000, 2000, 0), 2000);
    PUMP_UNTIL(loop, &s, k.messages == 1);
    assert_int_equal(k.last_len, 3000);
    assert_true(k.last_binary);
    assert_memory_equal(k.last, m, 3000);

    /* the largest message (64-bit length) */
    srv_send(&s, WSIO_OP_BINARY, m, LIMIT);
    PUMP_UNTIL(loop, &s, k.messages == 2);
    assert_int_equal(k.last_len, LIMIT);
    assert_memory_equal(k.last, m, LIMIT);
    free(m);

    /* ping -> pong */
    srv_send(&s, WSIO_OP_PING, "hi", 2);
    srv_frame(loop, &s, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_PONG);
    assert_int_equal(fe.len, 2);
    assert_memory_equal(fe.data, "hi", 2);

    /* the server closes: 1013 answered, reported with the reason */
    uint8_t close[2 + 11] = {0x03, 0xF5};
    memcpy(close + 2, "at_capacity", 11);
    srv_send(&s, WSIO_OP_CLOSE, close, sizeof close);
    srv_frame(loop, &s, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_CLOSE);
    assert_int_equal(fe.close_code, 1013);
    PUMP_UNTIL(loop, &s, k.ended);
    assert_false(k.connect_error);
    assert_int_equal(k.close_code, 1013);
    assert_string_equal(k.text, "at_capacity");
    assert_false(wsio_is_open(k.c));
    close_pair(loop, &s, &k);
}

static void test_client_close(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 1);
    wsio_frame_event fe;
    srv_frame(loop, &s, &fe); /* start */
    wsio_close(k.c, 1000, "bye");
    assert_true(wsio_is_open(k.c)); /* until the close is done */
    srv_frame(loop, &s, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_CLOSE);
    assert_int_equal(fe.close_code, 1000);
    assert_int_equal(fe.len, 3);
    assert_memory_equal(fe.data, "bye", 3);
    for (int i = 0; i < 5; i++)
        pump(loop, &s);
    assert_false(k.ended); /* waits for the answer */
    uint8_t answer[2] = {0x03, 0xE8};
    srv_send(&s, WSIO_OP_CLOSE, answer, 2);
    PUMP_UNTIL(loop, &s, k.ended);
    assert_int_equal(k.close_code, 1000);
    assert_string_equal(k.text, "bye");
    close_pair(loop, &s, &k);
}

static void test_eof_is_1006(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 1);
    close(s.fd);
    s.fd = -2; /* pump: do not accept again */
    double t_end = now_s() + 5.0;
    while (!k.ended && now_s() < t_end)
        assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
    assert_true(k.ended);
    assert_false(k.connect_error);
    assert_int_equal(k.close_code, WSIO_CLOSE_ABNORMAL);
    s.fd = -1;
    close_pair(loop, &s, &k);
}

static void test_too_big_is_1009(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 1);
    wsio_frame_event fe;
    srv_frame(loop, &s, &fe); /* start */
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    size_t hl = wsio_frame_header(h, WSIO_OP_BINARY, 1, LIMIT + 1, NULL);
    assert_int_equal(send(s.fd, h, hl, 0), (ssize_t)hl);
    PUMP_UNTIL(loop, &s, k.ended);
    assert_int_equal(k.close_code, 1009);
    assert_int_equal(k.messages, 0);
    srv_frame(loop, &s, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_CLOSE);
    assert_int_equal(fe.close_code, 1009);
    close_pair(loop, &s, &k);
}

static void test_bad_accept_refused(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 0);
    PUMP_UNTIL(loop, &s, k.ended);
    assert_true(k.connect_error);
    assert_false(k.opened);
    assert_non_null(strstr(k.text, "Sec-WebSocket-Accept"));
    close_pair(loop, &s, &k);
}

static void test_refused(void **state)
{
    (void)state;
    srv s;
    srv_listen(&s);
    int port = s.port;
    srv_free(&s); /* nothing listens there now */
    wsio_loop *loop;
    char err[256], url[64];
    assert_int_equal(wsio_loop_create(LIMIT, &loop, err, sizeof err), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/v1/stream", port);
    cli k;
    memset(&k, 0, sizeof k);
    int rc =
        wsio_connect(loop, url, "demix.v1", &events, &k, &k.c, err, sizeof err);
    if (rc == 0) {
        double t_end = now_s() + 5.0;
        while (!k.ended && now_s() < t_end)
            assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
        assert_true(k.connect_error);
        assert_non_null(strstr(k.text, "refused"));
    } else {
        assert_int_equal(rc, DEMIX_EIO);
        assert_non_null(strstr(err, "refused"));
    }
    wsio_destroy(k.c);
    /* wss:// is not this client's */
    assert_int_equal(wsio_connect(loop, "wss://127.0.0.1:1/", NULL, &events, &k,
                                  &k.c, err, sizeof err),
                     DEMIX_EARG);
    wsio_loop_destroy(loop);
}

static void test_send_queue(void **state)
{
    (void)state;
    wsio_loop *loop;
    srv s;
    cli k;
    open_pair(&loop, &s, &k, 1);
    wsio_frame_event fe;
    /* let "start" out, then flood while the server does not read */
    for (int i = 0; i < 5; i++)
        assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
    k.flood = 1;
    k.limit = BIG_COUNT;
    wsio_want_write(k.c);
    for (int i = 0; i < 1000 && k.sent < BIG_COUNT; i++)
        assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
    assert_true(k.sent < BIG_COUNT); /* the socket filled: it waits */
    int stalled = k.writeables;
    for (int i = 0; i < 20; i++)
        assert_int_equal(wsio_loop_service_us(loop, 1000), 0);
    assert_int_equal(k.writeables, stalled); /* no writeable while queued */
    /* two more once it drains; the server reads with a wide window:
     * everything arrives, in order */
    k.limit = k.sent + 2;
    int rcvbuf = 1 << 20;
    assert_int_equal(
        setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    srv_frame(loop, &s, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_MESSAGE);
    assert_int_equal(fe.len, 5);
    for (int j = 0; j < k.limit; j++) {
        srv_frame(loop, &s, &fe);
        assert_int_equal(fe.kind, WSIO_FRAME_MESSAGE);
        assert_int_equal(fe.len, BIG_MSG);
        for (size_t i = 0; i < BIG_MSG; i++)
            if (fe.data[i] != (uint8_t)(i * 31 + (size_t)j))
                fail_msg("message %d byte %zu differs", j, i);
    }
    assert_int_equal(k.sent, k.limit);
    close_pair(loop, &s, &k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_and_server_close),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_eof_is_1006),
        cmocka_unit_test(test_too_big_is_1009),
        cmocka_unit_test(test_bad_accept_refused),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_send_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
