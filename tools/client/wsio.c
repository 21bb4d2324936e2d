/*
 * wsio.c - the lean WebSocket client (see wsio.h): epoll loop, connection
 * state machine, send queue, ready list.
 *
 * A connection goes CONNECTING (TCP) -> HANDSHAKE (request sent, reading
 * the answer) -> OPEN -> CLOSING (we sent a close, waiting for the peer's)
 * or CLOSE_FLUSH (the peer closed, our answer is going out) -> ENDED
 * (socket closed, buffers freed, the end event due or delivered). Sockets
 * are registered level-triggered with the connection as epoll's data
 * pointer; EPOLLOUT only while connecting or while the send queue holds
 * bytes. Connections are freed only by wsio_destroy, outside service
 * calls, so a pointer in an epoll batch is always valid (an ENDED one is
 * skipped).
 *
 * The ready list (singly linked, FIFO) holds connections with an event to
 * deliver outside the socket callbacks: on_writeable when asked for and
 * the queue is empty, and the end (on_close / on_connect_error). It is
 * detached before it runs, so callbacks that ask again land on the next
 * run.
 *
 * Thread context: the loop's thread; wsio_loop_wake from anywhere.
 */
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL */
#include "wsio.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws_client.h" /* ws_client_parse_url */
#include "wsio_frame.h"
#include "wsio_handshake.h"

#define WSIO_REASON_BYTES 124  /* a close reason: at most 123 bytes */
#define WSIO_TEXT_BYTES 256    /* an end's reason or why */
#define WSIO_EVENTS 256        /* epoll events per wait */
#define WSIO_READS_PER_EVENT 4 /* recv calls per EPOLLIN before moving on */
#define WSIO_CONTROL_FRAME (WSIO_FRAME_MAX_HEADER + WSIO_FRAME_MAX_CONTROL)
#define WSIO_SUBPROTOCOL_BYTES 64

enum conn_state {
    CS_CONNECTING = 0,
    CS_HANDSHAKE,
    CS_OPEN,
    CS_CLOSING,
    CS_CLOSE_FLUSH,
    CS_ENDED,
};

struct wsio_loop {
    int epfd, evfd;
    size_t max_message_bytes;
    uint8_t *rbuf; /* WSIO_READ_BYTES: one recv */
    uint8_t *tx;   /* WSIO_FRAME_MAX_HEADER of headroom, then tx_cap */
    size_t tx_cap;
    size_t queue_cap; /* a connection's send queue at most */
    uint64_t rng;     /* xorshift64* state */
    wsio_conn *ready_head, *ready_tail;
    /* the last host resolved */
    char addr_host[256];
    int addr_port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct wsio_conn {
    wsio_loop *loop;
    int fd;
    int state;
    wsio_events ev;
    void *user;

    int want_write;
    int epollout; /* EPOLLOUT is registered */
    int on_ready; /* on the loop's ready list */
    wsio_conn *ready_next;

    /* the end, once ENDED: delivered from the ready list */
    int end_due;
    int end_open; /* on_close (1) or on_connect_error (0) */
    int end_code;
    char end_text[WSIO_TEXT_BYTES];

    /* handshake: the request, then the answer (freed when open) */
    char key[WSIO_HANDSHAKE_KEY_BYTES];
    char *hs;
    size_t hs_len, req_len;
    char subprotocol[WSIO_SUBPROTOCOL_BYTES];

    wsio_rx rx;

    /* send queue: q[q_off .. q_off + q_len) */
    uint8_t *q;
    size_t q_off, q_len, q_cap;

    /* closing */
    int close_code; /* ours (CLOSING) or the peer's (CLOSE_FLUSH) */
    char close_reason[WSIO_REASON_BYTES];
};

/* ------------------------------------------------------------ helpers */

static uint64_t rng_next(wsio_loop *loop)
{
    uint64_t x = loop->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    loop->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void ready_push(wsio_conn *c)
{
    if (c->on_ready)
        return;
    wsio_loop *loop = c->loop;
    c->on_ready = 1;
    c->ready_next = NULL;
    if (loop->ready_tail)
        loop->ready_tail->ready_next = c;
    else
        loop->ready_head = c;
    loop->ready_tail = c;
}

static void ready_remove(wsio_conn *c)
{
    if (!c->on_ready)
        return;
    wsio_loop *loop = c->loop;
    wsio_conn *prev = NULL;
    for (wsio_conn *p = loop->ready_head; p; prev = p, p = p->ready_next) {
        if (p != c)
            continue;
        if (prev)
            prev->ready_next = p->ready_next;
        else
            loop->ready_head = p->ready_next;
        if (loop->ready_tail == p)
            loop->ready_tail = prev;
        break;
    }
    c->on_ready = 0;
    c->ready_next = NULL;
}

static void set_epollout(wsio_conn *c, int on)
{
    if (c->fd < 0 || c->epollout == on)
        return;
    struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0u),
                            .data.ptr = c};
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->epollout = on;
}

/* The connection is over: close the socket, free its buffers, and have
 * the end event delivered from the ready list. */
static void end_conn(wsio_conn *c, int open, int code, const char *text)
{
    if (c->state == CS_ENDED)
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CS_ENDED;
    c->want_write = 0;
    free(c->q);
    c->q = NULL;
    c->q_off = c->q_len = c->q_cap = 0;
    free(c->hs);
    c->hs = NULL;
    wsio_rx_free(&c->rx);
    c->end_due = 1;
    c->end_open = open;
    c->end_code = code;
    snprintf(c->end_text, sizeof c->end_text, "%s", text ? text : "");
    ready_push(c);
}

/* The end of an open connection whose link dropped or was dropped: our
 * close code while we were closing, the peer's while answering its close,
 * else 1006. */
static void end_dropped(wsio_conn *c)
{
    if (c->state == CS_CLOSING || c->state == CS_CLOSE_FLUSH)
        end_conn(c, 1, c->close_code, c->close_reason);
    else if (c->state == CS_OPEN)
        end_conn(c, 1, WSIO_CLOSE_ABNORMAL, "");
    else
        end_conn(c, 0, 0,
                 c->state == CS_CONNECTING
                     ? "the connection was dropped before it was made"
                     : "the connection closed during the handshake");
}

/* Send what the queue holds. 0 (sent, or the socket is full: EPOLLOUT),
 * or -1 when the socket failed (the connection has ended). */
static int flush(wsio_conn *c)
{
    while (c->q_len) {
        ssize_t n = send(c->fd, c->q + c->q_off, c->q_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_epollout(c, 1);
                return 0;
            }
            end_dropped(c);
            return -1;
        }
        c->q_off += (size_t)n;
        c->q_len -= (size_t)n;
    }
    c->q_off = 0;
    if (c->state == CS_CLOSE_FLUSH) { /* our answer to its close is out */
        end_conn(c, 1, c->close_code, c->close_reason);
        return 0;
    }
    set_epollout(c, 0);
    if (c->want_write && c->state == CS_OPEN)
        ready_push(c);
    return 0;
}

/* Send n bytes: straight to the socket when nothing is queued, the rest
 * into the queue (room checked by the caller). 0, or -1 when the socket
 * failed (the connection has ended) or memory ran out. */
static int write_bytes(wsio_conn *c, const uint8_t *p, size_t n)
{
    if (c->q_len == 0) {
        while (n) {
            ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                end_dropped(c);
                return -1;
            }
            p += k;
            n -= (size_t)k;
        }
        if (n == 0)
            return 0;
    }
    if (c->q_off && c->q_off + c->q_len + n > c->q_cap) {
        memmove(c->q, c->q + c->q_off, c->q_len);
        c->q_off = 0;
    }
    if (c->q_off + c->q_len + n > c->q_cap) {
        size_t cap = c->q_len + n;
        uint8_t *q = realloc(c->q, cap);
        if (!q) {
            end_dropped(c);
            return -1;
        }
        c->q = q;
        c->q_cap = cap;
    }
    memcpy(c->q + c->q_off + c->q_len, p, n);
    c->q_len += n;
    set_epollout(c, 1);
    return 0;
}

/* A masked control frame (payload at most 125 bytes). */
static int send_control(wsio_conn *c, int opcode, const uint8_t *payload,
                        size_t len)
{
    uint8_t frame[WSIO_CONTROL_FRAME];
    uint64_t r = rng_next(c->loop);
    uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16),
                      (uint8_t)(r >> 24)};
    size_t h = wsio_frame_header(frame, opcode, 1, len, key);
    if (len)
        memcpy(frame + h, payload, len);
    wsio_frame_mask(frame + h, len, key, 0);
    return write_bytes(c, frame, h + len);
}

/* A close frame with this code (1005: none) and reason. */
static int send_close(wsio_conn *c, int code, const char *reason)
{
    uint8_t p[WSIO_FRAME_MAX_CONTROL];
    size_t n = 0;
    if (code != WSIO_CLOSE_NONE && code != WSIO_CLOSE_ABNORMAL) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > WSIO_FRAME_MAX_CONTROL - 2)
            rl = WSIO_FRAME_MAX_CONTROL - 2;
        if (rl) /* reason may be NULL: memcpy must not see it */
            memcpy(p + 2, reason, rl);
        n = 2 + rl;
    }
    return send_control(c, WSIO_OP_CLOSE, p, n);
}

/* ------------------------------------------------------------ receive */

/* A frame that broke the rules: say so, and end now. */
static void protocol_error(wsio_conn *c, int code, const char *error)
{
    if (c->state == CS_OPEN) /* best effort: the socket closes next */
        (void)send_close(c, code, code == 1009 ? "too_large" : "protocol");
    if (c->state == CS_ENDED)
        return;
    char text[WSIO_TEXT_BYTES];
    snprintf(text, sizeof text, "%s",
             code == 1009 ? "message too long" : error);
    end_conn(c, 1, code, text);
}

static void peer_close(wsio_conn *c, int code, const uint8_t *reason,
                       size_t len)
{
    if (c->state == CS_CLOSING) { /* the answer to ours */
        end_conn(c, 1, c->close_code, c->close_reason);
        return;
    }
    if (len >= WSIO_REASON_BYTES)
        len = WSIO_REASON_BYTES - 1;
    memcpy(c->close_reason, reason, len);
    c->close_reason[len] = '\0';
    c->close_code = code;
    c->state = CS_CLOSE_FLUSH;
    if (send_close(c, code, NULL) == 0)
        (void)flush(c); /* ends it once the answer is out */
}

/* Hand len bytes of frames to the parser and its events to the caller. */
static void take_frames(wsio_conn *c, uint8_t *data, size_t len)
{
    size_t off = 0;
    while (c->state != CS_ENDED) {
        wsio_frame_event fe;
        off += wsio_rx_next(&c->rx, data + off, len - off, &fe);
        switch (fe.kind) {
        case WSIO_FRAME_MORE:
            return;
        case WSIO_FRAME_MESSAGE:
            if ((c->state == CS_OPEN || c->state == CS_CLOSING) &&
                c->ev.on_message)
                c->ev.on_message(c->user, fe.binary, fe.data, fe.len);
            break;
        case WSIO_FRAME_PING:
            /* a pong that does not fit a full queue is dropped */
            if (c->state == CS_OPEN &&
                c->q_len + WSIO_CONTROL_FRAME * 2 <= c->loop->queue_cap)
                (void)send_control(c, WSIO_OP_PONG, fe.data, fe.len);
            break;
        case WSIO_FRAME_PONG:
            break;
        case WSIO_FRAME_CLOSE:
            if (c->state == CS_OPEN || c->state == CS_CLOSING)
                peer_close(c, fe.close_code, fe.data, fe.len);
            return;
        case WSIO_FRAME_ERROR:
            protocol_error(c, fe.close_code, fe.error);
            return;
        }
    }
}

static void read_handshake(wsio_conn *c)
{
    ssize_t n;
    do
        n = recv(c->fd, c->hs + c->hs_len, WSIO_HANDSHAKE_MAX_HEAD - c->hs_len,
                 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        char why[WSIO_TEXT_BYTES];
        snprintf(why, sizeof why, "%s",
                 n == 0 ? "the server closed the connection during the "
                          "handshake"
                        : strerror(errno));
        end_conn(c, 0, 0, why);
        return;
    }
    c->hs_len += (size_t)n;
    size_t head;
    char why[WSIO_TEXT_BYTES];
    int rc = wsio_handshake_check(c->hs, c->hs_len, c->key,
                                  c->subprotocol[0] ? c->subprotocol : NULL,
                                  &head, why, sizeof why);
    if (rc == 0)
        return;
    if (rc < 0) {
        end_conn(c, 0, 0, why);
        return;
    }
    c->state = CS_OPEN;
    if (c->ev.on_open)
        c->ev.on_open(c->user);
    if (c->want_write && c->q_len == 0)
        ready_push(c);
    /* frames right behind the head (a server may speak first) */
    char *hs = c->hs;
    c->hs = NULL;
    if (c->hs_len > head && c->state != CS_ENDED)
        take_frames(c, (uint8_t *)hs + head, c->hs_len - head);
    free(hs);
    c->hs_len = 0;
}

static void read_frames(wsio_conn *c)
{
    uint8_t *buf = c->loop->rbuf;
    for (int i = 0; i < WSIO_READS_PER_EVENT && c->state != CS_ENDED; i++) {
        ssize_t n = recv(c->fd, buf, WSIO_READ_BYTES, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                end_dropped(c);
            return;
        }
        if (n == 0) {
            end_dropped(c);
            return;
        }
        take_frames(c, buf, (size_t)n);
        if ((size_t)n < WSIO_READ_BYTES)
            return; /* most likely drained: no recv just for EAGAIN */
    }
}

/* TCP is up (or failed): send the upgrade request. */
static void connected(wsio_conn *c)
{
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err) {
        end_conn(c, 0, 0, strerror(err));
        return;
    }
    c->state = CS_HANDSHAKE;
    if (write_bytes(c, (const uint8_t *)c->hs, c->req_len))
        return;
    c->hs_len = 0; /* the buffer now takes the answer */
    if (c->q_len == 0)
        set_epollout(c, 0);
}

static void conn_event(wsio_conn *c, uint32_t e)
{
    if (c->state == CS_ENDED)
        return;
    if (c->state == CS_CONNECTING) {
        connected(c);
        return;
    }
    if ((e & EPOLLOUT) && !c->q_len)
        set_epollout(c, 0); /* nothing to send: stop asking */
    else if ((e & EPOLLOUT) && flush(c))
        return;
    if (c->state == CS_ENDED)
        return;
    if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->state == CS_HANDSHAKE)
            read_handshake(c);
        else
            read_frames(c);
    }
}

static void run_ready(wsio_loop *loop)
{
    wsio_conn *c = loop->ready_head;
    loop->ready_head = loop->ready_tail = NULL;
    while (c) {
        wsio_conn *next = c->ready_next;
        c->on_ready = 0;
        c->ready_next = NULL;
        if (c->end_due) {
            c->end_due = 0;
            if (c->end_open) {
                if (c->ev.on_close)
                    c->ev.on_close(c->user, c->end_code, c->end_text);
            } else if (c->ev.on_connect_error) {
                c->ev.on_connect_error(c->user, c->end_text);
            }
        } else if (c->state == CS_OPEN && c->want_write && c->q_len == 0) {
            c->want_write = 0;
            if (c->ev.on_writeable)
                c->ev.on_writeable(c->user);
        }
        c = next;
    }
}

/* --------------------------------------------------------------- loop */

int wsio_loop_create(size_t max_message_bytes, wsio_loop **out, char *err,
                     size_t err_cap)
{
    *out = NULL;
    if (max_message_bytes == 0) {
        snprintf(err, err_cap, "wsio_loop_create: bad arguments");
        return DEMIX_EARG;
    }
    wsio_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    loop->epfd = loop->evfd = -1;
    loop->max_message_bytes = max_message_bytes;
    loop->tx_cap = max_message_bytes;
    /* one message, a close and a pong or two */
    loop->queue_cap =
        WSIO_FRAME_MAX_HEADER + max_message_bytes + 3 * WSIO_CONTROL_FRAME;
    loop->rbuf = malloc(WSIO_READ_BYTES);
    loop->tx = malloc(WSIO_FRAME_MAX_HEADER + loop->tx_cap);
    if (!loop->rbuf || !loop->tx) {
        wsio_loop_destroy(loop);
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
               (uint64_t)(uintptr_t)loop;
    }
    loop->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    if (loop->epfd < 0 || loop->evfd < 0 ||
        epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->evfd, &e)) {
        snprintf(err, err_cap, "cannot set up epoll: %s", strerror(errno));
        wsio_loop_destroy(loop);
        return DEMIX_EIO;
    }
    *out = loop;
    return DEMIX_OK;
}

void wsio_loop_destroy(wsio_loop *loop)
{
    if (!loop)
        return;
    if (loop->evfd >= 0)
        close(loop->evfd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->rbuf);
    free(loop->tx);
    free(loop);
}

int wsio_loop_service_us(wsio_loop *loop, int64_t timeout_us)
{
    run_ready(loop);
    int ms = 0;
    if (!loop->ready_head && timeout_us > 0)
        ms = timeout_us >= (int64_t)INT_MAX * 1000
                 ? INT_MAX
                 : (int)((timeout_us + 999) / 1000);
    struct epoll_event evs[WSIO_EVENTS];
    int n = epoll_wait(loop->epfd, evs, WSIO_EVENTS, ms);
    if (n < 0) {
        if (errno != EINTR)
            return DEMIX_EIO;
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        wsio_conn *c = evs[i].data.ptr;
        if (c) {
            conn_event(c, evs[i].events);
        } else {
            uint64_t v;
            if (read(loop->evfd, &v, sizeof v) < 0) { /* drained: fine */
            }
        }
    }
    run_ready(loop);
    return DEMIX_OK;
}

void wsio_loop_wake(wsio_loop *loop)
{
    if (!loop || loop->evfd < 0)
        return;
    uint64_t one = 1;
    if (write(loop->evfd, &one, sizeof one) < 0) { /* already signalled */
    }
}

/* --------------------------------------------------------- connections */

/* host:port as a socket address, from the loop's one-entry cache. */
static int resolve(wsio_loop *loop, const char *host, int port, char *err,
                   size_t err_cap)
{
    if (loop->addr_len && loop->addr_port == port &&
        strcmp(loop->addr_host, host) == 0)
        return 0;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc || !res) {
        snprintf(err, err_cap, "cannot resolve host '%s': %s", host,
                 rc ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    /* an IPv4 address when there is one: "localhost" often lists ::1
     * first, and demixd listens on 127.0.0.1 by default */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *r = res; r; r = r->ai_next)
        if (r->ai_family == AF_INET) {
            pick = r;
            break;
        }
    memcpy(&loop->addr, pick->ai_addr, pick->ai_addrlen);
    loop->addr_len = pick->ai_addrlen;
    loop->addr_port = port;
    snprintf(loop->addr_host, sizeof loop->addr_host, "%s", host);
    freeaddrinfo(res);
    return 0;
}

int wsio_connect(wsio_loop *loop, const char *url, const char *subprotocol,
                 const wsio_events *events, void *user, wsio_conn **out,
                 char *err, size_t err_cap)
{
    *out = NULL;
    if (!loop || !url || !events) {
        snprintf(err, err_cap, "wsio_connect: bad arguments");
        return DEMIX_EARG;
    }
    int tls, port;
    char host[256], path[1024];
    int rc = ws_client_parse_url(url, &tls, host, sizeof host, &port, path,
                                 sizeof path, err, err_cap);
    if (rc)
        return rc;
    if (tls) {
        snprintf(err, err_cap, "URL '%s': this client speaks plain ws:// only",
                 url);
        return DEMIX_EARG;
    }
    if (subprotocol && strlen(subprotocol) >= WSIO_SUBPROTOCOL_BYTES) {
        snprintf(err, err_cap, "wsio_connect: subprotocol too long");
        return DEMIX_EARG;
    }
    if (resolve(loop, host, port, err, err_cap))
        return DEMIX_EIO;

    wsio_conn *c = calloc(1, sizeof *c);
    char *hs = malloc(WSIO_HANDSHAKE_MAX_HEAD);
    if (!c || !hs) {
        free(c);
        free(hs);
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    c->loop = loop;
    c->ev = *events;
    c->user = user;
    c->hs = hs;
    if (subprotocol)
        snprintf(c->subprotocol, sizeof c->subprotocol, "%s", subprotocol);
    wsio_rx_init(&c->rx, loop->max_message_bytes, 0);
    uint8_t raw[16];
    uint64_t a = rng_next(loop), b = rng_next(loop);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    wsio_handshake_key(raw, c->key);
    if (wsio_handshake_request(hs, WSIO_HANDSHAKE_MAX_HEAD, host, port, path,
                               subprotocol, c->key, &c->req_len)) {
        snprintf(err, err_cap, "URL '%s': too long for a request", url);
        free(hs);
        free(c);
        return DEMIX_EARG;
    }

    c->fd = socket(loop->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(err, err_cap, "cannot open a socket: %s", strerror(errno));
        free(hs);
        free(c);
        return DEMIX_EIO;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&loop->addr, loop->addr_len) &&
        errno != EINPROGRESS) {
        snprintf(err, err_cap, "%s", strerror(errno));
        close(c->fd);
        free(hs);
        free(c);
        return DEMIX_EIO;
    }
    /* connected at once or not: EPOLLOUT says so */
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, c->fd, &e)) {
        snprintf(err, err_cap, "cannot watch the socket: %s", strerror(errno));
        close(c->fd);
        free(hs);
        free(c);
        return DEMIX_EIO;
    }
    c->epollout = 1;
    c->state = CS_CONNECTING;
    *out = c;
    return DEMIX_OK;
}

void wsio_destroy(wsio_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    ready_remove(c);
    wsio_rx_free(&c->rx);
    free(c->q);
    free(c->hs);
    free(c);
}

void wsio_want_write(wsio_conn *c)
{
    if (c->state == CS_ENDED)
        return;
    c->want_write = 1;
    if (c->state == CS_OPEN && c->q_len == 0)
        ready_push(c);
}

uint8_t *wsio_tx_buffer(wsio_conn *c)
{
    return c->loop->tx + WSIO_FRAME_MAX_HEADER;
}

size_t wsio_tx_capacity(const wsio_conn *c)
{
    return c->loop->tx_cap;
}

int wsio_send(wsio_conn *c, int binary, size_t len)
{
    wsio_loop *loop = c->loop;
    if (c->state != CS_OPEN || len > loop->tx_cap)
        return DEMIX_EIO;
    size_t h = wsio_frame_header_bytes(len, 1);
    /* a close must still fit behind it */
    if (c->q_len + h + len + WSIO_CONTROL_FRAME > loop->queue_cap)
        return DEMIX_EIO;
    uint8_t *payload = loop->tx + WSIO_FRAME_MAX_HEADER;
    uint8_t *frame = payload - h;
    uint64_t r = rng_next(loop);
    uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16),
                      (uint8_t)(r >> 24)};
    wsio_frame_header(frame, binary ? WSIO_OP_BINARY : WSIO_OP_TEXT, 1, len,
                      key);
    wsio_frame_mask(payload, len, key, 0);
    return write_bytes(c, frame, h + len) ? DEMIX_EIO : DEMIX_OK;
}

void wsio_close(wsio_conn *c, int code, const char *reason)
{
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) {
        wsio_abort(c);
        return;
    }
    if (c->state != CS_OPEN)
        return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : "");
    c->state = CS_CLOSING;
    c->want_write = 0;
    (void)send_close(c, code, c->close_reason);
}

void wsio_abort(wsio_conn *c)
{
    end_dropped(c);
}

int wsio_is_open(const wsio_conn *c)
{
    return c->state == CS_OPEN || c->state == CS_CLOSING ||
           c->state == CS_CLOSE_FLUSH;
}
