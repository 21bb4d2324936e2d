/*
 * test_server_tls.c - demixd's own TLS and its browser and start-up
 * guards (docs/server.md, "TLS and origins"):
 *
 *   - --tls-cert/--tls-key (a self-signed certificate made here with the
 *     openssl command): https://127.0.0.1:PORT/v1/health answers 200 over
 *     TLS (the certificate is the one given), and a whole streaming
 *     session runs over wss:// on the same port (start, ready, audio,
 *     end, summary, close 1000); plain HTTP on that port gets no answer;
 *   - --allow-origin: an upgrade with an Origin not listed gets 403, a
 *     listed one and one without Origin (not a browser) get 101;
 *   - a port already taken by another demixd: exit status 1 and "address
 *     already in use, ... try --port" (SO_REUSEPORT would otherwise let
 *     the second server share the port quietly).
 *
 * The TLS client is OpenSSL's, with the few WebSocket frames it needs
 * written here (masked, as RFC 6455 wants from a client).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "server_fixture.h"

#define RATE 48000

static struct {
    char dir[256];
    char model[512];
    char cert[600], key[600];
    uint64_t seed;
} g;

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    snprintf(g.model, sizeof g.model, "%s/identity48k.safetensors", g.dir);
    snprintf(g.cert, sizeof g.cert, "%s/cert.pem", g.dir);
    snprintf(g.key, sizeof g.key, "%s/key.pem", g.dir);
    if (fx_save_identity_model(g.model, RATE, g.seed))
        return -1;
    if (demix_test_system("openssl req -x509 -newkey rsa:2048 -nodes -keyout "
                          "'%s' -out '%s' -days 2 -subj /CN=127.0.0.1 "
                          ">/dev/null 2>&1",
                          g.key, g.cert)) {
        print_error("the openssl command could not make a certificate\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    demix_test_rmtree(g.dir);
    return 0;
}

static int tcp_connect(int port)
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

/* ---------------------------------------------------------------- TLS */

typedef struct tls_conn {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
} tls_conn;

/* Connect and handshake, trusting only the test's certificate. */
static void tls_open(tls_conn *t, int port)
{
    t->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(t->ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(t->ctx, g.cert, NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    t->fd = tcp_connect(port);
    t->ssl = SSL_new(t->ctx);
    assert_non_null(t->ssl);
    SSL_set_fd(t->ssl, t->fd);
    int rc = SSL_connect(t->ssl);
    if (rc != 1)
        ERR_print_errors_fp(stderr);
    assert_int_equal(rc, 1);
    assert_int_equal(SSL_get_verify_result(t->ssl), X509_V_OK);
}

static void tls_close(tls_conn *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
}

static void tls_write(tls_conn *t, const void *p, size_t n)
{
    assert_int_equal(SSL_write(t->ssl, p, (int)n), (int)n);
}

/* Exactly n bytes. */
static void tls_read(tls_conn *t, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int k = SSL_read(t->ssl, (char *)p + got, (int)(n - got));
        assert_true(k > 0);
        got += (size_t)k;
    }
}

/* The HTTP response head (up to the blank line), NUL-terminated. */
static void tls_read_head(tls_conn *t, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        tls_read(t, out + n, 1);
        n++;
        if (n >= 4 && !memcmp(out + n - 4, "\r\n\r\n", 4))
            break;
    }
    out[n] = '\0';
}

/* One masked client frame. */
static void ws_send(tls_conn *t, int opcode, const void *data, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else {
        assert_true(n < 65536);
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    }
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + hl, key, 4);
    hl += 4;
    uint8_t *m = malloc(hl + n);
    assert_non_null(m);
    memcpy(m, h, hl);
    for (size_t i = 0; i < n; i++)
        m[hl + i] = ((const uint8_t *)data)[i] ^ key[i & 3];
    tls_write(t, m, hl + n);
    free(m);
}

/* One server frame (unmasked, unfragmented: demixd's are): its opcode,
 * its payload into buf (NUL-terminated), its length. */
static int ws_recv(tls_conn *t, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t h[2];
    tls_read(t, h, 2);
    size_t n = h[1] & 0x7f;
    if (n == 126) {
        uint8_t e[2];
        tls_read(t, e, 2);
        n = (size_t)e[0] << 8 | e[1];
    } else if (n == 127) {
        uint8_t e[8];
        tls_read(t, e, 8);
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | e[i];
    }
    assert_true(n < cap);
    tls_read(t, buf, n);
    buf[n] = '\0';
    *len = n;
    return h[0] & 0x0f;
}

static void test_https_and_wss_on_one_port(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(&fx, g.model, "--tls-cert", g.cert,
                                          "--tls-key", g.key,
                                          (const char *)NULL),
                     0);
    /* https */
    tls_conn t;
    tls_open(&t, fx.port);
    const char *get = "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\n\r\n";
    tls_write(&t, get, strlen(get));
    char head[4096];
    tls_read_head(&t, head, sizeof head);
    print_message("https GET /v1/health: %.40s\n", head);
    assert_non_null(strstr(head, "HTTP/1.1 200"));
    tls_close(&t);

    /* wss: a whole session (PCM f32, 0.25 s, identity model) */
    tls_open(&t, fx.port);
    const char *up = "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: demix.v1\r\n\r\n";
    tls_write(&t, up, strlen(up));
    tls_read_head(&t, head, sizeof head);
    assert_non_null(strstr(head, " 101 "));
    demix_proto_start st;
    static const char *const vocals[] = {"vocals", NULL};
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, vocals);
    char text[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_start(&st, text, sizeof text, &len), 0);
    ws_send(&t, 0x1, text, len);
    static uint8_t buf[70000];
    assert_int_equal(ws_recv(&t, buf, sizeof buf, &len), 0x1);
    assert_non_null(strstr((char *)buf, "\"ready\""));
    const int frames = RATE / 4;
    float *x = fx_make_signal(RATE, 2, frames, g.seed);
    uint8_t msg[8 + 2048 * 8];
    uint32_t seq = 0;
    for (int off = 0; off < frames; off += 2048, seq++) {
        int n = frames - off < 2048 ? frames - off : 2048;
        uint8_t hdr[8] = {0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 0,
                          (uint8_t)seq, (uint8_t)(seq >> 8), 0, 0};
        memcpy(msg, hdr, 8);
        memcpy(msg + 8, x + (size_t)off * 2, (size_t)n * 8);
        ws_send(&t, 0x2, msg, 8 + (size_t)n * 8);
    }
    ws_send(&t, 0x1, "{\"type\":\"end\"}", 14);
    int64_t out_frames = 0;
    int summary = 0, close_code = 0;
    uint32_t seq_out = 0;
    while (!close_code) {
        int op = ws_recv(&t, buf, sizeof buf, &len);
        if (op == 0x2) {
            demix_proto_audio_out a;
            demix_proto_error e;
            assert_int_equal(demix_proto_audio_out_decode(
                                 buf, len, DEMIX_PROTO_CODEC_PCM_F32, 2,
                                 seq_out++, &a, &e),
                             0);
            out_frames += a.frames;
        } else if (op == 0x1) {
            summary |= strstr((char *)buf, "\"summary\"") != NULL;
        } else if (op == 0x8) {
            close_code = len >= 2 ? buf[0] << 8 | buf[1] : 1005;
        }
    }
    print_message("wss session: %lld frames back, summary %d, close %d\n",
                  (long long)out_frames, summary, close_code);
    assert_int_equal(out_frames, frames);
    assert_true(summary);
    assert_int_equal(close_code, 1000);
    tls_close(&t);
    free(x);

    /* plain HTTP on the TLS port: no HTTP answer */
    int fd = tcp_connect(fx.port);
    assert_true(send(fd, get, strlen(get), MSG_NOSIGNAL) > 0);
    char r[64] = "";
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) > 0)
        (void)!recv(fd, r, sizeof r - 1, 0);
    close(fd);
    assert_null(strstr(r, "HTTP/1.1 200"));
    assert_int_equal(server_fixture_stop(&fx), 0);
}

/* ------------------------------------------------------------ origins */

static int upgrade_status(int port, const char *origin)
{
    char req[1024];
    snprintf(req, sizeof req,
             "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
             origin ? "Origin: " : "", origin ? origin : "",
             origin ? "\r\n" : "");
    int fd = tcp_connect(port);
    assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) > 0);
    char r[256] = "";
    size_t n = 0;
    struct pollfd p = {fd, POLLIN, 0};
    while (n < 12 && poll(&p, 1, FX_TIMEOUT_MS) > 0) {
        ssize_t k = recv(fd, r + n, sizeof r - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    int status = 0;
    sscanf(r, "HTTP/1.%*d %d", &status);
    return status;
}

static void test_allow_origin(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(
                         &fx, g.model, "--allow-origin",
                         "https://demix.example,http://localhost:8080",
                         (const char *)NULL),
                     0);
    int evil = upgrade_status(fx.port, "https://evil.example");
    int good = upgrade_status(fx.port, "http://localhost:8080");
    int none = upgrade_status(fx.port, NULL);
    int prefix = upgrade_status(fx.port, "https://demix.example.evil");
    print_message("origin evil %d, listed %d, none %d, prefix %d\n", evil,
                  good, none, prefix);
    assert_int_equal(evil, 403);
    assert_int_equal(good, 101);
    assert_int_equal(none, 101);
    assert_int_equal(prefix, 403);
    assert_int_equal(server_fixture_stop(&fx), 0);
}

/* ------------------------------------------------------- port in use */

static void test_port_in_use(void **state)
{
    (void)state;
    server_fixture fx;
    assert_int_equal(server_fixture_start(&fx, g.model, (const char *)NULL),
                     0);
    char args[1200], err[8192] = "";
    snprintf(args, sizeof args,
             "--model '%s' --backend cpu --host 127.0.0.1 --port %d",
             g.model, fx.port);
    int rc = demix_test_run_tool(server_fixture_bin(), args, g.dir, NULL, 0,
                                 err, sizeof err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "address already in use"));
    assert_non_null(strstr(err, "try --port"));
    assert_int_equal(server_fixture_stop(&fx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_and_wss_on_one_port),
        cmocka_unit_test(test_allow_origin),
        cmocka_unit_test(test_port_in_use),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
