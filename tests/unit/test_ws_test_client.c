/*
 * test_ws_test_client.c - the server tests' WebSocket client
 * (tests/integration/ws_test_client.h) against a fake server on a thread
 * of its own (127.0.0.1, port 0), which checks the client's handshake and
 * frames with demix_client's parser in server mode (masked frames):
 *
 * - round_trip: the upgrade (101, the Sec-WebSocket-Accept for the
 *   client's key, a response header read back); a text message from the
 *   client arrives masked and whole; a server text message in two
 *   fragments with a ping between them comes back as one NUL-terminated
 *   message and the ping is answered with a pong of the same payload; a
 *   binary message of 70000 bytes (64-bit length) arrives whole; a close
 *   frame gives its code and reason; the client's close reaches the
 *   server with its code and reason.
 * - refusals: a 101 with a wrong Sec-WebSocket-Accept fails wst_open
 *   (status 101 reported); a 403 fails it with status 403; a masked frame
 *   from a server is refused by wst_recv (-1).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws_test_client.h"
#include "wsio_frame.h"

enum fake_mode { FAKE_ROUND_TRIP, FAKE_BAD_ACCEPT, FAKE_FORBIDDEN, FAKE_MASKED };

#define BIG_BYTES 70000

typedef struct fake {
    enum fake_mode mode;
    int lfd, port;
    int ok;             /* the server saw what it expected */
    char why[256];      /* else what it saw */
} fake;

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One server frame; masked (which a server must not do) when key. */
static int send_frame(int fd, int op, int fin, const void *data, size_t len,
                      const uint8_t *key)
{
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    size_t hl = wsio_frame_header(h, op, fin, len, key);
    uint8_t *b = malloc(hl + len);
    if (!b)
        return -1;
    memcpy(b, h, hl);
    memcpy(b + hl, data, len);
    if (key)
        wsio_frame_mask(b + hl, len, key, 0);
    int rc = send_all(fd, b, hl + len);
    free(b);
    return rc;
}

/* The request's head, and the value of its Sec-WebSocket-Key. */
static int read_request(int fd, char *key, size_t cap)
{
    char req[4096];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, 1, 0); /* byte by byte: no frames eaten */
        if (r <= 0)
            return -1;
        n += (size_t)r;
        req[n] = '\0';
        if (n >= 4 && !memcmp(req + n - 4, "\r\n\r\n", 4))
            break;
    }
    const char *k = strstr(req, "\r\nSec-WebSocket-Key:");
    if (!k)
        return -1;
    k += strlen("\r\nSec-WebSocket-Key:");
    while (*k == ' ')
        k++;
    size_t len = strcspn(k, "\r\n");
    if (len >= cap)
        return -1;
    memcpy(key, k, len);
    key[len] = '\0';
    return 0;
}

/* The next event of the client's frames (masked: the server's parser). */
static int next_event(int fd, wsio_rx *rx, uint8_t *buf, size_t *len,
                      size_t *off, wsio_frame_event *ev)
{
    for (;;) {
        *off += wsio_rx_next(rx, buf + *off, *len - *off, ev);
        if (ev->kind != WSIO_FRAME_MORE)
            return 0;
        *off = *len = 0;
        ssize_t r = recv(fd, buf, 65536, 0);
        if (r <= 0)
            return -1;
        *len = (size_t)r;
    }
}

#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            snprintf(f->why, sizeof f->why, __VA_ARGS__);                      \
            goto done;                                                         \
        }                                                                      \
    } while (0)

static void *fake_main(void *arg)
{
    fake *f = arg;
    wsio_rx rx;
    wsio_rx_init(&rx, 1 << 20, 1);
    uint8_t *buf = malloc(65536), *big = malloc(BIG_BYTES);
    int fd = accept(f->lfd, NULL, NULL);
    char key[64], accept_key[64], resp[512];
    EXPECT(buf && big && fd >= 0, "accept failed");
    EXPECT(read_request(fd, key, sizeof key) == 0, "no upgrade request");
    wst_accept_key(key, accept_key);
    if (f->mode == FAKE_BAD_ACCEPT)
        accept_key[0] = accept_key[0] == 'A' ? 'B' : 'A';
    if (f->mode == FAKE_FORBIDDEN)
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    else
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                 "X-Test:  yes \r\n\r\n",
                 accept_key);
    EXPECT(send_all(fd, resp, strlen(resp)) == 0, "response not sent");
    if (f->mode == FAKE_MASKED) {
        static const uint8_t k[4] = {1, 2, 3, 4};
        EXPECT(send_frame(fd, WSIO_OP_TEXT, 1, "masked", 6, k) == 0,
               "frame not sent");
        /* stay until the client goes, so that its -1 is the refusal */
        while (recv(fd, buf, 65536, 0) > 0)
            ;
    }
    if (f->mode != FAKE_ROUND_TRIP) {
        f->ok = 1;
        goto done;
    }

    for (size_t i = 0; i < BIG_BYTES; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    uint8_t close_frame[5] = {4000 >> 8, 4000 & 0xFF, 'b', 'y', 'e'};
    EXPECT(send_frame(fd, WSIO_OP_TEXT, 0, "hel", 3, NULL) == 0 &&
               send_frame(fd, WSIO_OP_PING, 1, "pp", 2, NULL) == 0 &&
               send_frame(fd, WSIO_OP_CONTINUATION, 1, "lo", 2, NULL) == 0 &&
               send_frame(fd, WSIO_OP_BINARY, 1, big, BIG_BYTES, NULL) == 0 &&
               send_frame(fd, WSIO_OP_CLOSE, 1, close_frame, 5, NULL) == 0,
           "frames not sent");

    size_t len = 0, off = 0;
    wsio_frame_event ev;
    EXPECT(next_event(fd, &rx, buf, &len, &off, &ev) == 0 &&
               ev.kind == WSIO_FRAME_MESSAGE && !ev.binary && ev.len == 11 &&
               !memcmp(ev.data, "from client", 11),
           "first client frame: kind %d len %zu", (int)ev.kind, ev.len);
    EXPECT(next_event(fd, &rx, buf, &len, &off, &ev) == 0 &&
               ev.kind == WSIO_FRAME_PONG && ev.len == 2 &&
               !memcmp(ev.data, "pp", 2),
           "no pong with the ping's payload: kind %d", (int)ev.kind);
    EXPECT(next_event(fd, &rx, buf, &len, &off, &ev) == 0 &&
               ev.kind == WSIO_FRAME_CLOSE && ev.close_code == 1000 &&
               ev.len == 2 && !memcmp(ev.data, "ok", 2),
           "no close 1000 ok: kind %d code %d", (int)ev.kind, ev.close_code);
    f->ok = 1;
done:
    if (fd >= 0)
        close(fd);
    wsio_rx_free(&rx);
    free(buf);
    free(big);
    return NULL;
}

static void fake_start(fake *f, enum fake_mode mode, pthread_t *t)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 1), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(t, NULL, fake_main, f), 0);
}

static void fake_join(fake *f, pthread_t t)
{
    pthread_join(t, NULL);
    close(f->lfd);
    if (!f->ok)
        print_message("fake server: %s\n", f->why);
    assert_true(f->ok);
}

static void test_round_trip(void **state)
{
    (void)state;
    fake f;
    pthread_t t;
    fake_start(&f, FAKE_ROUND_TRIP, &t);
    wst_conn *c = NULL;
    int status = 0;
    assert_int_equal(wst_open(f.port, "/v1/stream", "demix.v1", &c, &status),
                     0);
    assert_int_equal(status, 101);
    char v[16];
    assert_int_equal(wst_response_header(c, "x-test", v, sizeof v), 0);
    assert_string_equal(v, "yes");
    assert_int_equal(wst_send_text(c, "from client"), 0);

    wst_msg m;
    assert_int_equal(wst_recv(c, &m, 5000), 1);
    assert_int_equal(m.opcode, WST_TEXT);
    assert_int_equal(m.len, 5);
    assert_string_equal((const char *)m.data, "hello");
    assert_int_equal(wst_recv(c, &m, 5000), 1);
    assert_int_equal(m.opcode, WST_BINARY);
    assert_int_equal(m.len, BIG_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++)
        if (m.data[i] != (uint8_t)(i * 7 + 3))
            fail_msg("binary byte %zu differs", i);
    assert_int_equal(wst_recv(c, &m, 5000), 1);
    assert_int_equal(m.opcode, WST_CLOSE);
    assert_int_equal(m.close_code, 4000);
    assert_string_equal(m.close_reason, "bye");

    assert_int_equal(wst_send_close(c, 1000, "ok"), 0);
    for (int i = 0; i < 100 && wst_tx_pending(c); i++)
        wst_pump(c, 50);
    assert_int_equal(wst_tx_pending(c), 0);
    fake_join(&f, t);
    wst_free(c);
}

static void test_refusals(void **state)
{
    (void)state;
    fake f;
    pthread_t t;
    wst_conn *c = NULL;
    int status = 0;

    fake_start(&f, FAKE_BAD_ACCEPT, &t);
    assert_int_equal(wst_open(f.port, "/v1/stream", NULL, &c, &status), -1);
    assert_null(c);
    assert_int_equal(status, 101);
    fake_join(&f, t);

    fake_start(&f, FAKE_FORBIDDEN, &t);
    assert_int_equal(wst_open(f.port, "/v1/stream", NULL, &c, &status), -1);
    assert_int_equal(status, 403);
    fake_join(&f, t);

    fake_start(&f, FAKE_MASKED, &t);
    assert_int_equal(wst_open(f.port, "/v1/stream", NULL, &c, &status), 0);
    wst_msg m;
    assert_int_equal(wst_recv(c, &m, 5000), -1);
    wst_free(c);
    fake_join(&f, t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
