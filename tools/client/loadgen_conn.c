/*
 * loadgen_conn.c - a loadgen session's connection on wsio or ws_client
 * (see loadgen_conn.h): each call goes to the transport whose handle is
 * set.
 *
 * Thread context: the loop's thread (loadgen_loop_wake: any).
 */
#include "loadgen_conn.h"

#include <string.h>

int loadgen_loop_service_us(const loadgen_loop *loop, int64_t timeout_us)
{
    if (loop->io)
        return wsio_loop_service_us(loop->io, timeout_us);
    return ws_client_loop_service_us(loop->lws, timeout_us);
}

void loadgen_loop_wake(const loadgen_loop *loop)
{
    if (loop->io)
        wsio_loop_wake(loop->io);
    else if (loop->lws)
        ws_client_loop_wake(loop->lws);
}

const char *loadgen_loop_name(const loadgen_loop *loop)
{
    return loop->io ? "epoll" : "libwebsockets";
}

int loadgen_conn_connect(loadgen_conn *c, const loadgen_loop *loop,
                         const char *url, const char *subprotocol,
                         const ws_client_events *ev, void *user, char *err,
                         size_t err_cap)
{
    memset(c, 0, sizeof *c);
    if (loop->io) {
        wsio_events e = {
            .on_open = ev->on_open,
            .on_message = ev->on_message,
            .on_writeable = ev->on_writeable,
            .on_close = ev->on_close,
            .on_connect_error = ev->on_connect_error,
        };
        return wsio_connect(loop->io, url, subprotocol, &e, user, &c->io, err,
                            err_cap);
    }
    return ws_client_connect(loop->lws, url, subprotocol, ev, user, &c->lws,
                             err, err_cap);
}

uint8_t *loadgen_conn_tx_buffer(loadgen_conn *c)
{
    return c->io ? wsio_tx_buffer(c->io) : ws_client_tx_buffer(c->lws);
}

size_t loadgen_conn_tx_capacity(const loadgen_conn *c)
{
    return c->io ? wsio_tx_capacity(c->io) : ws_client_tx_capacity(c->lws);
}

int loadgen_conn_send(loadgen_conn *c, int binary, size_t len)
{
    if (c->io)
        return wsio_send(c->io, binary, len);
    if (c->lws)
        return ws_client_send(c->lws, binary, len);
    return DEMIX_EIO;
}

void loadgen_conn_want_write(loadgen_conn *c)
{
    if (c->io)
        wsio_want_write(c->io);
    else if (c->lws)
        ws_client_want_write(c->lws);
}

void loadgen_conn_close(loadgen_conn *c, int code, const char *reason)
{
    if (c->io)
        wsio_close(c->io, code, reason);
    else if (c->lws)
        ws_client_close(c->lws, code, reason);
}

void loadgen_conn_abort(loadgen_conn *c)
{
    if (c->io)
        wsio_abort(c->io);
    else if (c->lws)
        ws_client_abort(c->lws);
}

int loadgen_conn_is_open(const loadgen_conn *c)
{
    if (c->io)
        return wsio_is_open(c->io);
    return c->lws ? ws_client_is_open(c->lws) : 0;
}

void loadgen_conn_destroy(loadgen_conn *c)
{
    wsio_destroy(c->io);
    ws_client_destroy(c->lws);
    c->io = NULL;
    c->lws = NULL;
}
