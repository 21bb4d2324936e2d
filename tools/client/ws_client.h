/*
 * ws_client.h - WebSocket client connections on libwebsockets 4.1.6, as a
 * small event interface for `demix stream` (one connection) and `demix
 * loadgen` (many): connect to a ws:// (or wss://) URL, get whole messages
 * (reassembled from fragments), send one message per writeable event, a
 * timer, and the close code the peer sent.
 *
 * Usage sketch, one connection (it owns a private loop):
 *
 *     ws_client_events ev = {.on_open = opened, .on_message = got,
 *                            .on_writeable = can_send, .on_close = closed};
 *     ws_client *c;
 *     if (ws_client_create("ws://127.0.0.1:8080/v1/stream", "demix.v1",
 *                          65536, &ev, me, &c, err, sizeof err)) die(err);
 *     while (!done)
 *         ws_client_service(c, 100);           // callbacks run in here
 *     ws_client_destroy(c);
 *
 *     // in can_send(): write into the buffer, then send it
 *     uint8_t *buf = ws_client_tx_buffer(c);   // ws_client_tx_capacity bytes
 *     ... fill n bytes ...
 *     ws_client_send(c, 1, n);                 // binary; 0 for text
 *     ws_client_want_write(c);                 // more to send later
 *
 * Many connections on one loop (one lws context, one thread):
 *
 *     ws_client_loop *loop;
 *     ws_client_loop_create(256, 65536, 0, &loop, err, sizeof err);
 *     for (i = 0; i < n; i++)
 *         ws_client_connect(loop, url, "demix.v1", &ev, &sess[i], &c[i],
 *                           err, sizeof err);
 *     while (!done)
 *         ws_client_loop_service(loop, 100);
 *     for (i = 0; i < n; i++) ws_client_destroy(c[i]);  // connections first
 *     ws_client_loop_destroy(loop);
 *
 * Design. lws does the sockets, the handshake (with the subprotocol) and
 * the framing; a loop is one lws context that does not listen, and each
 * connection is found from its wsi through lws's opaque user pointer. A
 * connection keeps a receive buffer that grows as messages need it, up to
 * the loop's max_message_bytes (a longer message from the peer ends the
 * connection: on_close gets WS_CLIENT_CLOSE_TOO_BIG), so many idle-sized
 * connections stay small. The transmit buffer, with lws's LWS_PRE headroom
 * so a message is written in place, belongs to the loop: only one
 * writeable event runs at a time and lws_write either sends a message or
 * keeps the unsent rest itself (no new writeable event for that
 * connection until it is out), so the caller's in-flight data is bounded
 * by what it chooses to send.
 *
 * Events: on_open once the handshake is done; on_message per whole message;
 * on_writeable after ws_client_want_write(); on_timer after
 * ws_client_set_timer(); exactly one of on_connect_error (no connection was
 * made: refused, unreachable, handshake refused) or on_close (the
 * connection ended: code = the peer's close code, WS_CLIENT_CLOSE_NONE
 * (1005) when its close frame had none, WS_CLIENT_CLOSE_ABNORMAL (1006)
 * when the connection dropped without a close frame; lws 4.1 reports a
 * peer's 1012-1015 as 1002, the reason text is kept). No event fires after
 * ws_client_destroy().
 *
 * Threads: everything, callbacks included, runs on the thread that calls
 * ws_client_loop_service() / ws_client_service(); a loop and its
 * connections belong to that one thread (ws_client_loop_wake aside).
 */
#ifndef DEMIX_WS_CLIENT_H
#define DEMIX_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#define WS_CLIENT_CLOSE_NONE 1005     /* close frame without a code */
#define WS_CLIENT_CLOSE_ABNORMAL 1006 /* no close frame: the link dropped */
#define WS_CLIENT_CLOSE_TOO_BIG 1009  /* the peer sent a message too long */

typedef struct ws_client ws_client;
typedef struct ws_client_loop ws_client_loop;

typedef struct ws_client_events {
    void (*on_open)(void *user);
    void (*on_message)(void *user, int binary, const uint8_t *data,
                       size_t len);
    void (*on_writeable)(void *user);
    void (*on_timer)(void *user);
    void (*on_close)(void *user, int code, const char *reason);
    void (*on_connect_error)(void *user, const char *why);
} ws_client_events;

/* Parse "ws://host[:port][/path]" or "wss://...". host gets the host name
 * (brackets of an IPv6 literal removed), path starts with '/'. DEMIX_EARG
 * with a sentence for anything else. */
DEMIX_WARN_UNUSED int ws_client_parse_url(const char *url, int *tls,
                                          char *host, size_t host_cap,
                                          int *port, char *path,
                                          size_t path_cap, char *err,
                                          size_t err_cap);

/* ------------------------------------------------------------ loops */

/* A loop for up to max_connections connections at once; max_message_bytes
 * bounds every received message and the transmit buffer; tls: also wss://
 * URLs (initialises TLS). DEMIX_EARG, DEMIX_ENOMEM, DEMIX_EIO (lws could
 * not start); err says which. */
DEMIX_WARN_UNUSED int ws_client_loop_create(int max_connections,
                                            size_t max_message_bytes, int tls,
                                            ws_client_loop **out, char *err,
                                            size_t err_cap);

/* Destroy the loop. Destroy its connections first (their events would
 * otherwise fire in here). NULL: no-op. */
void ws_client_loop_destroy(ws_client_loop *loop);

/* Run lws once: wait for events (at most about timeout_ms when it is > 0:
 * lws 4.1 ignores its own timeout, a timer of the loop's bounds the wait)
 * and fire them. Returns < 0 when lws failed. */
int ws_client_loop_service(ws_client_loop *loop, int timeout_ms);

/* The same with a wait of at most timeout_us microseconds (0 or less:
 * fire what is ready, do not wait), for callers that pace by the
 * millisecond. */
int ws_client_loop_service_us(ws_client_loop *loop, int64_t timeout_us);

/* Wake a ws_client_loop_service() that is waiting (async-signal-safe
 * enough for a SIGINT handler: lws writes one byte to its event pipe). */
void ws_client_loop_wake(ws_client_loop *loop);

/* ------------------------------------------------------ connections */

/* Start connecting on a loop (the handshake proceeds in its service). The
 * subprotocol may be NULL. DEMIX_EARG (bad URL, wss:// on a loop without
 * TLS), DEMIX_ENOMEM, DEMIX_EIO (lws could not start the connection: err
 * says why, without the URL; no event follows). */
DEMIX_WARN_UNUSED int ws_client_connect(ws_client_loop *loop, const char *url,
                                        const char *subprotocol,
                                        const ws_client_events *events,
                                        void *user, ws_client **out,
                                        char *err, size_t err_cap);

/* One connection on a loop of its own (ws_client_loop_create with one
 * connection, then ws_client_connect); ws_client_destroy frees both. A
 * DEMIX_EIO err reads "cannot connect to HOST:PORT: why". */
DEMIX_WARN_UNUSED int ws_client_create(const char *url, const char *subprotocol,
                                       size_t max_message_bytes,
                                       const ws_client_events *events,
                                       void *user, ws_client **out, char *err,
                                       size_t err_cap);

/* Destroy; drops the connection if still open (no event). NULL: no-op. */
void ws_client_destroy(ws_client *c);

/* Run the connection's loop (ws_client_loop_service). */
int ws_client_service(ws_client *c, int timeout_ms);

/* Ask for an on_writeable event. */
void ws_client_want_write(ws_client *c);

/* The transmit buffer (ws_client_tx_capacity bytes, shared by the loop's
 * connections) and its send: only inside on_writeable, at most once per
 * event. DEMIX_EIO when lws failed to write (the connection is then
 * closing). */
uint8_t *ws_client_tx_buffer(ws_client *c);
size_t ws_client_tx_capacity(const ws_client *c);
DEMIX_WARN_UNUSED int ws_client_send(ws_client *c, int binary, size_t len);

/* on_timer after about usecs microseconds (replaces a pending timer); a
 * negative value cancels. Only while connected. */
void ws_client_set_timer(ws_client *c, int64_t usecs);

/* Close with this code and reason (at the next writeable moment); on_close
 * follows. */
void ws_client_close(ws_client *c, int code, const char *reason);

/* Drop the connection at once, without a close handshake (on_close follows
 * with WS_CLIENT_CLOSE_ABNORMAL). */
void ws_client_abort(ws_client *c);

/* Wake the connection's loop (ws_client_loop_wake). */
void ws_client_wake(ws_client *c);

/* 1 between on_open and on_close. */
int ws_client_is_open(const ws_client *c);

/* Monotonic clock in seconds. */
double ws_client_now_s(void);

#endif /* DEMIX_WS_CLIENT_H */
