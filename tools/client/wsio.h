/*
 * wsio.h - a lean WebSocket client for many connections on one thread:
 * plain ws:// over non-blocking TCP sockets, one epoll instance per loop.
 * Written for `demix loadgen`'s session traffic (hundreds to thousands of
 * connections per thread, each receiving about 375 binary messages and
 * 768 KB a second), where libwebsockets' per-byte receive parser costs
 * more than the server being measured. The events are those of
 * ws_client.h (which stays for wss://, `demix stream` and loadgen's short
 * stats connections), without its timer.
 *
 * Usage sketch:
 *
 *     wsio_loop *loop;
 *     wsio_loop_create(65536, &loop, err, sizeof err);
 *     wsio_events ev = {.on_open = opened, .on_message = got,
 *                       .on_writeable = can_send, .on_close = closed,
 *                       .on_connect_error = failed};
 *     wsio_conn *c;
 *     wsio_connect(loop, "ws://127.0.0.1:8080/v1/stream", "demix.v1", &ev,
 *                  me, &c, err, sizeof err);
 *     while (!done)
 *         wsio_loop_service_us(loop, 10000);  // callbacks run in here
 *     wsio_destroy(c);                        // connections first
 *     wsio_loop_destroy(loop);
 *
 *     // in can_send(): the payload goes at wsio_tx_buffer, then
 *     wsio_send(c, 1, n);                     // binary; 0 for text
 *     wsio_want_write(c);                     // more to send later
 *
 * Design.
 * - Connect: the host is resolved once per loop (getaddrinfo, cached by
 *   host and port; its first IPv4 address if it has one, else its
 *   first), the socket connects without blocking (TCP_NODELAY), the
 *   upgrade request goes out once it is connected and the answer is
 *   checked (wsio_handshake.h): status 101, Upgrade, Connection,
 *   Sec-WebSocket-Accept for our random key, the subprotocol.
 * - Receive: level-triggered EPOLLIN; each recv takes up to
 *   WSIO_READ_BYTES into the loop's buffer, which the frame parser
 *   (wsio_frame.h) walks without touching the payload bytes; whole
 *   messages go to on_message straight out of that buffer. Only frames
 *   that straddle two reads, or fragmented messages, are copied, into the
 *   connection's message buffer (grows to the largest such message, at
 *   most max_message_bytes).
 * - Send: one frame per message, written in place: the caller fills the
 *   loop's transmit buffer, wsio_send puts the header just in front of the
 *   payload, masks it with a fresh key (8 bytes at a time) and sends the
 *   frame with one send(). What the socket does not take goes into the
 *   connection's send queue and EPOLLOUT is asked for; on_writeable is
 *   not delivered while the queue holds anything, so the queue holds at
 *   most one message plus control frames (bounded: a pong that does not
 *   fit is dropped, a later ping gets one).
 * - on_writeable: wsio_want_write puts the connection on the loop's ready
 *   list; the list is run at the start and the end of each service call
 *   (a connection asking again inside on_writeable is served in the next
 *   call, which then does not wait).
 * - Control: a ping is answered with a pong; a peer's close is answered
 *   with a close carrying its code, then the socket is closed and
 *   on_close gets the peer's code and reason. wsio_close sends ours and
 *   waits for the peer's answer or the end of the stream (on_close then
 *   gets our code, as ws_client reports it). A protocol error closes with
 *   1002 (1009 for a message too long) and on_close gets that code and
 *   the parser's sentence as the reason; an EOF or a socket error without
 *   a close frame, WSIO_CLOSE_ABNORMAL (1006).
 * - Ends: exactly one of on_connect_error (no WebSocket came up: refused,
 *   unreachable, handshake refused) and on_close, from inside a service
 *   call, never from inside a call of the caller's (wsio_abort's end is
 *   delivered by the next service call). No event fires after
 *   wsio_destroy.
 * - Memory per connection: the struct (about 0.9 KB), the send queue and
 *   the message buffer only while needed (allocated when first used, kept
 *   until the connection ends), the handshake's 4 KB only during the
 *   handshake. Per loop: the 64 KB receive buffer and one transmit buffer
 *   of max_message_bytes.
 * - Random: keys and masks come from a xorshift generator seeded from
 *   getrandom(); RFC 6455 asks for unpredictable masks to protect
 *   intermediaries from cache poisoning by hostile scripts, which a load
 *   generator talking to its own server is not.
 *
 * Threads: a loop and its connections belong to the thread that calls
 * wsio_loop_service_us; every callback runs there. wsio_loop_wake may be
 * called from any thread and from a signal handler (one write to an
 * eventfd). wsio_destroy must not be called from inside a callback.
 */
#ifndef DEMIX_WSIO_H
#define DEMIX_WSIO_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#define WSIO_CLOSE_NONE 1005     /* close frame without a code */
#define WSIO_CLOSE_ABNORMAL 1006 /* no close frame: the link dropped */
#define WSIO_READ_BYTES 65536    /* one recv */

typedef struct wsio_loop wsio_loop;
typedef struct wsio_conn wsio_conn;

typedef struct wsio_events {
    void (*on_open)(void *user);
    /* data: len bytes, valid during the call only */
    void (*on_message)(void *user, int binary, const uint8_t *data, size_t len);
    void (*on_writeable)(void *user);
    void (*on_close)(void *user, int code, const char *reason);
    void (*on_connect_error)(void *user, const char *why);
} wsio_events;

/* A loop whose messages, both ways, are at most max_message_bytes.
 * DEMIX_EARG, DEMIX_ENOMEM, DEMIX_EIO (epoll or eventfd failed); err says
 * which. */
DEMIX_WARN_UNUSED int wsio_loop_create(size_t max_message_bytes,
                                       wsio_loop **out, char *err,
                                       size_t err_cap);

/* Destroy the loop; destroy its connections first. NULL: no-op. */
void wsio_loop_destroy(wsio_loop *loop);

/* Fire what is ready, waiting at most timeout_us microseconds (rounded up
 * to whole milliseconds; 0 or less: no wait) for socket events. Returns 0,
 * or DEMIX_EIO when epoll failed. */
int wsio_loop_service_us(wsio_loop *loop, int64_t timeout_us);

/* Wake a waiting wsio_loop_service_us (any thread, async-signal-safe). */
void wsio_loop_wake(wsio_loop *loop);

/* Start connecting to a ws:// URL (subprotocol may be NULL).
 * DEMIX_EARG (a bad URL or wss://: err says so), DEMIX_ENOMEM, DEMIX_EIO
 * (the host does not resolve, no socket, or the connection was refused at
 * once: err says why, without the URL; no event follows). */
DEMIX_WARN_UNUSED int wsio_connect(wsio_loop *loop, const char *url,
                                   const char *subprotocol,
                                   const wsio_events *events, void *user,
                                   wsio_conn **out, char *err, size_t err_cap);

/* Destroy; closes the socket if still open (no event). NULL: no-op. */
void wsio_destroy(wsio_conn *c);

/* Ask for an on_writeable event (when open and the send queue is empty). */
void wsio_want_write(wsio_conn *c);

/* The transmit buffer (wsio_tx_capacity bytes, shared by the loop's
 * connections; its contents are not kept) and its send: the payload of one
 * message, sent as one frame. Inside on_writeable or on_message (any
 * time the connection is open, in fact). DEMIX_EIO when the connection is
 * not open or the socket failed (the connection is then ending). */
uint8_t *wsio_tx_buffer(wsio_conn *c);
size_t wsio_tx_capacity(const wsio_conn *c);
DEMIX_WARN_UNUSED int wsio_send(wsio_conn *c, int binary, size_t len);

/* Close with this code and reason (at most 123 bytes are sent); on_close
 * follows. On a connection not yet open: wsio_abort. */
void wsio_close(wsio_conn *c, int code, const char *reason);

/* Drop the connection now, without a close handshake; on_close (with
 * WSIO_CLOSE_ABNORMAL) or, before it was open, on_connect_error comes in
 * the next service call. */
void wsio_abort(wsio_conn *c);

/* 1 between on_open and the end (on_close), closing included. */
int wsio_is_open(const wsio_conn *c);

#endif /* DEMIX_WSIO_H */
