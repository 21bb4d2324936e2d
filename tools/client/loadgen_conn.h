/*
 * loadgen_conn.h - the connection of a loadgen session on one of two
 * transports, behind one set of calls: wsio (wsio.h: plain ws://, epoll,
 * the lean client the worker threads use) or ws_client (ws_client.h:
 * libwebsockets, for wss:// URLs and for the main thread's reference
 * session, which shares the main loop with the stats connections).
 *
 * Usage sketch:
 *
 *     loadgen_loop loop = {.io = io_loop};        // or {.lws = lws_loop}
 *     loadgen_conn c;
 *     if (loadgen_conn_connect(&c, &loop, url, "demix.v1", &ev, s, err,
 *                              sizeof err)) ... no connection, no event ...
 *     while (!done) loadgen_loop_service_us(&loop, wait_us);
 *     loadgen_conn_destroy(&c);
 *
 * Design: a loop names exactly one transport (io when set, else lws); a
 * connection holds the handle of the transport it was made on. The calls
 * mirror ws_client's and keep its meaning (events, the shared transmit
 * buffer, close and abort); ws_client's on_timer is not used.
 *
 * Thread context: the thread that services the loop (loadgen_loop_wake
 * aside: any thread, a signal handler included).
 */
#ifndef DEMIX_LOADGEN_CONN_H
#define DEMIX_LOADGEN_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"
#include "ws_client.h"
#include "wsio.h"

typedef struct loadgen_loop {
    wsio_loop *io;       /* set: the lean transport */
    ws_client_loop *lws; /* else: libwebsockets */
} loadgen_loop;

typedef struct loadgen_conn {
    wsio_conn *io;
    ws_client *lws;
} loadgen_conn;

/* Fire events, waiting at most timeout_us (0 or less: none). < 0 when the
 * transport failed. */
int loadgen_loop_service_us(const loadgen_loop *loop, int64_t timeout_us);

/* Wake a waiting service call (any thread, async-signal-safe). */
void loadgen_loop_wake(const loadgen_loop *loop);

/* The transport's name for messages ("epoll", "libwebsockets"). */
const char *loadgen_loop_name(const loadgen_loop *loop);

/* ws_client_connect or wsio_connect (ev's on_timer unused). */
DEMIX_WARN_UNUSED int
loadgen_conn_connect(loadgen_conn *c, const loadgen_loop *loop, const char *url,
                     const char *subprotocol, const ws_client_events *ev,
                     void *user, char *err, size_t err_cap);

/* As ws_client's calls of the same names; no-ops (is_open: 0) on a
 * connection never made. */
uint8_t *loadgen_conn_tx_buffer(loadgen_conn *c);
size_t loadgen_conn_tx_capacity(const loadgen_conn *c);
DEMIX_WARN_UNUSED int loadgen_conn_send(loadgen_conn *c, int binary,
                                        size_t len);
void loadgen_conn_want_write(loadgen_conn *c);
void loadgen_conn_close(loadgen_conn *c, int code, const char *reason);
void loadgen_conn_abort(loadgen_conn *c);
int loadgen_conn_is_open(const loadgen_conn *c);

/* Destroy the connection (no more events); the handles are cleared. */
void loadgen_conn_destroy(loadgen_conn *c);

#endif /* DEMIX_LOADGEN_CONN_H */
