/*
 * ws_test_client.c - see ws_test_client.h. RFC 6455 client framing and
 * handshake, HTTP/1.1 requests (Content-Length and chunked responses), on
 * non-blocking sockets driven by poll().
 *
 * Thread context: a connection belongs to one thread.
 */
#include "ws_test_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct wst_conn {
    int fd;
    int eof;        /* the peer closed or the socket failed */
    int write_dead; /* writes failed (EPIPE): queued data is dropped */
    int read_paused; /* wst_set_read_paused */
    uint8_t *tx;
    size_t tx_len, tx_off, tx_cap;
    uint8_t *rx;
    size_t rx_len, rx_off, rx_cap;
    uint8_t *msg;   /* message being reassembled / returned */
    size_t msg_len, msg_cap;
    int msg_opcode; /* 0: none in progress */
    uint32_t mask_state;
    char headers[8192];
};

/* ------------------------------------------------------------ SHA-1 */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u,
                     0xC3D2E1F0u};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *m = calloc(total, 1);
    if (!m) {
        memset(out, 0, 20);
        return;
    }
    memcpy(m, data, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 |
                   (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol32(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------ buffers */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *p = realloc(*buf, c);
    if (!p)
        return -1;
    *buf = p;
    *cap = c;
    return 0;
}

static int tx_append(wst_conn *c, const void *data, size_t len)
{
    if (c->write_dead)
        return -1;
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (grow(&c->tx, &c->tx_cap, c->tx_len + len))
        return -1;
    memcpy(c->tx + c->tx_len, data, len);
    c->tx_len += len;
    return 0;
}

int wst_connect(int port, wst_conn **out)
{
    *out = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    wst_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->mask_state = 0x9E3779B9u ^ (uint32_t)port ^ (uint32_t)fd;
    *out = c;
    return 0;
}

int wst_fd(const wst_conn *c)
{
    return c->fd;
}

size_t wst_tx_pending(const wst_conn *c)
{
    return c->tx_len - c->tx_off;
}

const char *wst_response_headers(const wst_conn *c)
{
    return c->headers;
}

void wst_free(wst_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->tx);
    free(c->rx);
    free(c->msg);
    free(c);
}

void wst_abort(wst_conn *c)
{
    if (c->fd < 0)
        return;
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->fd = -1;
    c->eof = 1;
    c->write_dead = 1;
}

static void try_write(wst_conn *c)
{
    while (c->tx_off < c->tx_len && !c->write_dead && c->fd >= 0) {
        ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->tx_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->write_dead = 1; /* EPIPE, ECONNRESET: drop the rest */
        c->tx_off = c->tx_len = 0;
        return;
    }
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
}

void wst_set_read_paused(wst_conn *c, int paused)
{
    c->read_paused = paused;
}

static void try_read(wst_conn *c)
{
    while (!c->eof && c->fd >= 0 && !c->read_paused) {
        if (c->rx_off > 0 && c->rx_off == c->rx_len)
            c->rx_off = c->rx_len = 0;
        if (c->rx_off > (1u << 20)) { /* compact */
            memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
            c->rx_len -= c->rx_off;
            c->rx_off = 0;
        }
        if (grow(&c->rx, &c->rx_cap, c->rx_len + 65536))
            return;
        ssize_t n = recv(c->fd, c->rx + c->rx_len, 65536, 0);
        if (n > 0) {
            c->rx_len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->eof = 1; /* 0: orderly end; <0: reset */
        return;
    }
}

int wst_pump(wst_conn *c, int timeout_ms)
{
    if (c->fd < 0)
        return -1;
    size_t rx_before = c->rx_len - c->rx_off, tx_before = wst_tx_pending(c);
    try_write(c);
    try_read(c);
    if (c->eof)
        return -1;
    /* Progress already: let the caller look at it before waiting. */
    if (c->rx_len - c->rx_off != rx_before || wst_tx_pending(c) != tx_before)
        return 0;
    struct pollfd p = {.fd = c->fd, .events = c->read_paused ? 0 : POLLIN};
    if (wst_tx_pending(c) && !c->write_dead)
        p.events |= POLLOUT;
    int r = poll(&p, 1, timeout_ms);
    if (r > 0) {
        if (p.revents & (POLLOUT | POLLERR | POLLHUP))
            try_write(c);
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            try_read(c);
    }
    return c->eof ? -1 : 0;
}

/* ------------------------------------------------------------ frames */

int wst_send_frame(wst_conn *c, int fin, int opcode, const void *data,
                   size_t len)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    c->mask_state = c->mask_state * 1664525u + 1013904223u;
    uint8_t key[4] = {(uint8_t)(c->mask_state >> 24),
                      (uint8_t)(c->mask_state >> 16),
                      (uint8_t)(c->mask_state >> 8), (uint8_t)c->mask_state};
    memcpy(h + hl, key, 4);
    hl += 4;
    if (tx_append(c, h, hl))
        return -1;
    if (grow(&c->tx, &c->tx_cap, c->tx_len + len))
        return -1;
    const uint8_t *d = data;
    uint8_t *dst = c->tx + c->tx_len;
    for (size_t i = 0; i < len; i++)
        dst[i] = d[i] ^ key[i & 3];
    c->tx_len += len;
    try_write(c);
    return c->write_dead ? -1 : 0;
}

int wst_send_text(wst_conn *c, const char *text)
{
    return wst_send_frame(c, 1, WST_TEXT, text, strlen(text));
}

int wst_send_binary(wst_conn *c, const void *data, size_t len)
{
    return wst_send_frame(c, 1, WST_BINARY, data, len);
}

int wst_send_close(wst_conn *c, int code, const char *reason)
{
    uint8_t b[128];
    size_t n = reason ? strlen(reason) : 0;
    if (n > sizeof b - 2)
        n = sizeof b - 2;
    b[0] = (uint8_t)(code >> 8);
    b[1] = (uint8_t)code;
    if (n)
        memcpy(b + 2, reason, n);
    return wst_send_frame(c, 1, WST_CLOSE, b, n + 2);
}

int wst_send_raw(wst_conn *c, const void *data, size_t len)
{
    if (tx_append(c, data, len))
        return -1;
    try_write(c);
    return c->write_dead ? -1 : 0;
}

/* Parse one frame from rx. 1: a whole message or control frame is in m;
 * 0: need more bytes; -1: protocol garbage from the server. */
static int parse_one(wst_conn *c, wst_msg *m)
{
    for (;;) {
        size_t avail = c->rx_len - c->rx_off;
        const uint8_t *p = c->rx + c->rx_off;
        if (avail < 2)
            return 0;
        int fin = p[0] & 0x80;
        int opcode = p[0] & 0x0F;
        int masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7F;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                return 0;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return 0;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            hl = 10;
        }
        uint8_t key[4] = {0, 0, 0, 0};
        if (masked) {
            if (avail < hl + 4)
                return 0;
            memcpy(key, p + hl, 4);
            hl += 4;
        }
        if (len > (1u << 30))
            return -1;
        if (avail < hl + len)
            return 0;
        const uint8_t *payload = p + hl;
        c->rx_off += hl + (size_t)len;

        if (opcode >= 0x8) { /* control */
            uint8_t ctl[128];
            size_t n = len < sizeof ctl ? (size_t)len : sizeof ctl;
            for (size_t i = 0; i < n; i++)
                ctl[i] = payload[i] ^ key[i & 3];
            if (opcode == WST_PING) {
                wst_send_frame(c, 1, WST_PONG, ctl, n);
                continue;
            }
            if (opcode == WST_PONG)
                continue;
            if (opcode == WST_CLOSE) {
                memset(m, 0, sizeof *m);
                m->opcode = WST_CLOSE;
                m->close_code = 1005;
                if (n >= 2) {
                    m->close_code = ctl[0] << 8 | ctl[1];
                    size_t rl = n - 2 < sizeof m->close_reason - 1
                                    ? n - 2
                                    : sizeof m->close_reason - 1;
                    memcpy(m->close_reason, ctl + 2, rl);
                    m->close_reason[rl] = '\0';
                }
                return 1;
            }
            return -1;
        }
        if (opcode == WST_CONT) {
            if (!c->msg_opcode)
                return -1;
        } else if (opcode == WST_TEXT || opcode == WST_BINARY) {
            if (c->msg_opcode)
                return -1;
            c->msg_opcode = opcode;
            c->msg_len = 0;
        } else {
            return -1;
        }
        if (grow(&c->msg, &c->msg_cap, c->msg_len + (size_t)len + 1))
            return -1;
        for (size_t i = 0; i < len; i++)
            c->msg[c->msg_len + i] = payload[i] ^ key[i & 3];
        c->msg_len += (size_t)len;
        if (!fin)
            continue;
        c->msg[c->msg_len] = '\0';
        memset(m, 0, sizeof *m);
        m->opcode = c->msg_opcode;
        m->data = c->msg;
        m->len = c->msg_len;
        c->msg_opcode = 0;
        return 1;
    }
}

int wst_recv(wst_conn *c, wst_msg *m, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        int r = parse_one(c, m);
        if (r == 1)
            return 1;
        if (r < 0)
            return -1;
        if (c->eof || c->fd < 0)
            return -1;
        double left = deadline - now_ms();
        if (left <= 0 && timeout_ms > 0)
            return 0;
        int rc = wst_pump(c, timeout_ms > 0 ? (int)left + 1 : 0);
        if (rc < 0) {
            r = parse_one(c, m);
            return r == 1 ? 1 : -1;
        }
        if (timeout_ms <= 0) {
            r = parse_one(c, m);
            return r == 1 ? 1 : (r < 0 ? -1 : 0);
        }
    }
}

int wst_wait_eof(wst_conn *c, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    while (!c->eof && c->fd >= 0) {
        double left = deadline - now_ms();
        if (left <= 0)
            return -1;
        wst_pump(c, (int)left + 1);
        c->rx_off = c->rx_len = 0; /* discard */
    }
    return 0;
}

/* Read until the header block is complete. Returns its length (including
 * the blank line) or -1. */
static int read_headers(wst_conn *c, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    for (;;) {
        size_t avail = c->rx_len - c->rx_off;
        const char *p = (const char *)c->rx + c->rx_off;
        for (size_t i = 3; i < avail; i++)
            if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' &&
                p[i] == '\n')
                return (int)(i + 1);
        if (avail > sizeof c->headers - 1)
            return -1;
        double left = deadline - now_ms();
        if (left <= 0)
            return -1;
        if (wst_pump(c, (int)left + 1) < 0 && c->rx_len - c->rx_off == avail)
            return -1;
    }
}

static int header_value(const char *headers, const char *name, char *out,
                        size_t cap)
{
    size_t nl = strlen(name);
    const char *line = strstr(headers, "\r\n");
    while (line) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        line = strstr(line, "\r\n");
    }
    return -1;
}

void wst_accept_key(const char *key, char *out)
{
    char cat[256];
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t digest[20];
    sha1((const uint8_t *)cat, strlen(cat), digest);
    base64(digest, 20, out);
}

int wst_handshake(wst_conn *c, int port, const char *path,
                  const char *subprotocol, int *http_status, int timeout_ms)
{
    *http_status = 0;
    uint8_t raw[16];
    for (int i = 0; i < 16; i++) {
        c->mask_state = c->mask_state * 1664525u + 1013904223u;
        raw[i] = (uint8_t)(c->mask_state >> 24);
    }
    char key[32];
    base64(raw, 16, key);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "\r\n",
                     path, port, key,
                     subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req || wst_send_raw(c, req, (size_t)n))
        return -1;
    int hl = read_headers(c, timeout_ms);
    if (hl < 0)
        return -1;
    memcpy(c->headers, c->rx + c->rx_off, (size_t)hl);
    c->headers[hl] = '\0';
    c->rx_off += (size_t)hl;
    if (sscanf(c->headers, "HTTP/1.%*d %d", http_status) != 1)
        return -1;
    if (*http_status != 101)
        return -1;
    char accept[128], expect[64];
    wst_accept_key(key, expect);
    if (header_value(c->headers, "Sec-WebSocket-Accept", accept, sizeof accept) ||
        strcmp(accept, expect) != 0)
        return -1;
    return 0;
}

int wst_open(int port, const char *path, const char *subprotocol,
             wst_conn **out, int *http_status)
{
    *http_status = 0;
    if (wst_connect(port, out))
        return -1;
    if (wst_handshake(*out, port, path, subprotocol, http_status, 10000)) {
        wst_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int wst_response_header(const wst_conn *c, const char *name, char *out,
                        size_t cap)
{
    return header_value(c->headers, name, out, cap);
}

/* ------------------------------------------------------------- HTTP */

void wst_http_response_free(wst_http_response *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

int wst_http_header(const wst_http_response *r, const char *name, char *out,
                    size_t cap)
{
    return header_value(r->headers, name, out, cap);
}

/* Decode a chunked body in place: 1 complete (r->body set), 0 need more,
 * -1 malformed. */
static int dechunk(const uint8_t *p, size_t n, wst_http_response *r)
{
    size_t off = 0, out_len = 0;
    uint8_t *out = malloc(n + 1);
    if (!out)
        return -1;
    for (;;) {
        const uint8_t *eol = NULL;
        for (size_t i = off; i + 1 < n; i++)
            if (p[i] == '\r' && p[i + 1] == '\n') {
                eol = p + i;
                break;
            }
        if (!eol) {
            free(out);
            return 0;
        }
        char hex[32];
        size_t hl = (size_t)(eol - (p + off));
        if (hl == 0 || hl >= sizeof hex) {
            free(out);
            return -1;
        }
        memcpy(hex, p + off, hl);
        hex[hl] = '\0';
        size_t size = strtoul(hex, NULL, 16);
        off += hl + 2;
        if (size == 0) {
            out[out_len] = 0;
            r->body = out;
            r->body_len = out_len;
            return 1;
        }
        if (n - off < size + 2) {
            free(out);
            return 0;
        }
        memcpy(out + out_len, p + off, size);
        out_len += size;
        off += size + 2;
    }
}

int wst_http(int port, const char *method, const char *path,
             const char *content_type, const void *body, size_t body_len,
             wst_http_response *r, int timeout_ms)
{
    return wst_http_with_headers(port, method, path, NULL, content_type, body,
                                 body_len, r, timeout_ms);
}

int wst_http_with_headers(int port, const char *method, const char *path,
                          const char *headers, const char *content_type,
                          const void *body, size_t body_len,
                          wst_http_response *r, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    wst_conn *c;
    if (wst_connect(port, &c))
        return -1;
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "\r\n",
                     method, path, port, headers ? headers : "",
                     content_type ? "Content-Type: " : "",
                     content_type ? content_type : "",
                     content_type ? "\r\n" : "", body ? body_len : (size_t)0);
    if (n < 0 || (size_t)n >= sizeof req) { /* headers too long */
        wst_free(c);
        return -1;
    }
    wst_send_raw(c, req, (size_t)n);
    if (body && body_len)
        wst_send_raw(c, body, body_len);
    int hl = read_headers(c, timeout_ms);
    if (hl < 0) {
        wst_free(c);
        return -1;
    }
    size_t hcopy = (size_t)hl < sizeof r->headers - 1 ? (size_t)hl
                                                       : sizeof r->headers - 1;
    memcpy(r->headers, c->rx + c->rx_off, hcopy);
    r->headers[hcopy] = '\0';
    c->rx_off += (size_t)hl;
    sscanf(r->headers, "HTTP/1.%*d %d", &r->status);

    char v[64];
    long long content_length = -1;
    int chunked = 0;
    if (header_value(r->headers, "Content-Length", v, sizeof v) == 0)
        content_length = atoll(v);
    if (header_value(r->headers, "Transfer-Encoding", v, sizeof v) == 0 &&
        strcasecmp(v, "chunked") == 0)
        chunked = 1;
    if (strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304)
        content_length = 0;

    double deadline = now_ms() + timeout_ms;
    int rc = -1;
    for (;;) {
        size_t avail = c->rx_len - c->rx_off;
        const uint8_t *p = c->rx + c->rx_off;
        if (chunked) {
            int d = dechunk(p, avail, r);
            if (d != 0) {
                rc = d > 0 ? 0 : -1;
                break;
            }
        } else if (content_length >= 0 && avail >= (size_t)content_length) {
            r->body = malloc((size_t)content_length + 1);
            if (r->body) {
                memcpy(r->body, p, (size_t)content_length);
                r->body[content_length] = 0;
                r->body_len = (size_t)content_length;
                rc = 0;
            }
            break;
        }
        if (c->eof) {
            if (!chunked && content_length < 0) { /* body until close */
                r->body = malloc(avail + 1);
                if (r->body) {
                    memcpy(r->body, p, avail);
                    r->body[avail] = 0;
                    r->body_len = avail;
                    rc = 0;
                }
            }
            break;
        }
        double left = deadline - now_ms();
        if (left <= 0)
            break;
        wst_pump(c, (int)left + 1);
    }
    wst_free(c);
    return rc;
}
