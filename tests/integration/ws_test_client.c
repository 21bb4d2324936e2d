/*
 * ws_test_client.c - see ws_test_client.h. The socket side (non-blocking,
 * driven by poll()), the handshake request and HTTP/1.1 requests
 * (Content-Length and chunked responses) are here; RFC 6455 itself is
 * demix_client's, unit-tested there: frame headers and masks
 * (wsio_frame.h), the receive parser (wsio_rx), Sec-WebSocket-Key and
 * -Accept (wsio_handshake.h).
 *
 * Thread context: a connection belongs to one thread.
 */
#include "ws_test_client.h"

#include "wsio_frame.h"
#include "wsio_handshake.h"

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
    wsio_rx parser;  /* frames from rx[rx_off..] */
    uint8_t *msg;    /* the message returned last, NUL-terminated */
    size_t msg_cap;
    uint32_t mask_state;
    char headers[8192];
};

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
    wsio_rx_init(&c->parser, WST_MAX_MESSAGE_BYTES, 0);
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
    wsio_rx_free(&c->parser);
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
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    c->mask_state = c->mask_state * 1664525u + 1013904223u;
    uint8_t key[4] = {(uint8_t)(c->mask_state >> 24),
                      (uint8_t)(c->mask_state >> 16),
                      (uint8_t)(c->mask_state >> 8), (uint8_t)c->mask_state};
    size_t hl = wsio_frame_header(h, opcode & 0x0F, fin, len, key);
    if (tx_append(c, h, hl) || (len && tx_append(c, data, len)))
        return -1;
    wsio_frame_mask(c->tx + c->tx_len - len, len, key, 0);
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

/* Keep a copy of what an event points at (the parser's or rx's bytes,
 * valid only until the next parse), NUL-terminated. */
static int keep(wst_conn *c, const uint8_t *data, size_t len)
{
    if (grow(&c->msg, &c->msg_cap, len + 1))
        return -1;
    if (len)
        memcpy(c->msg, data, len);
    c->msg[len] = '\0';
    return 0;
}

/* The next message or close from rx (pings answered, pongs dropped). 1: m
 * is filled; 0: need more bytes; -1: protocol garbage from the server. */
static int parse_one(wst_conn *c, wst_msg *m)
{
    for (;;) {
        wsio_frame_event ev;
        c->rx_off += wsio_rx_next(&c->parser, c->rx + c->rx_off,
                                  c->rx_len - c->rx_off, &ev);
        switch (ev.kind) {
        case WSIO_FRAME_MORE:
            return 0;
        case WSIO_FRAME_PING:
            if (keep(c, ev.data, ev.len))
                return -1;
            wst_send_frame(c, 1, WST_PONG, c->msg, ev.len);
            continue;
        case WSIO_FRAME_PONG:
            continue;
        case WSIO_FRAME_MESSAGE:
            if (keep(c, ev.data, ev.len))
                return -1;
            memset(m, 0, sizeof *m);
            m->opcode = ev.binary ? WST_BINARY : WST_TEXT;
            m->data = c->msg;
            m->len = ev.len;
            return 1;
        case WSIO_FRAME_CLOSE: {
            memset(m, 0, sizeof *m);
            m->opcode = WST_CLOSE;
            m->close_code = ev.close_code;
            size_t rl = ev.len < sizeof m->close_reason - 1
                            ? ev.len
                            : sizeof m->close_reason - 1;
            memcpy(m->close_reason, ev.data, rl);
            m->close_reason[rl] = '\0';
            return 1;
        }
        default: /* WSIO_FRAME_ERROR */
            return -1;
        }
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
    wsio_handshake_accept(key, out);
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
    char key[WSIO_HANDSHAKE_KEY_BYTES];
    wsio_handshake_key(raw, key);
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
    char accept[128], expect[WSIO_HANDSHAKE_ACCEPT_BYTES];
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
