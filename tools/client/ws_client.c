/*
 * ws_client.c - WebSocket client connections over libwebsockets 4.1.6 (see
 * ws_client.h). Written after lws's minimal-ws-client examples at tag
 * v4.1.6: a context that does not listen (the loop), one protocol whose
 * callback turns lws reasons into the events of ws_client_events. Each
 * connection is the opaque user pointer of its wsi
 * (lws_client_connect_info.opaque_user_data), so one callback serves every
 * connection of a loop; a destroyed connection's wsi has that pointer
 * cleared first, and its late callbacks find nothing.
 *
 * Reassembly: lws hands a message over in pieces (up to rx_buffer_size each,
 * and per WebSocket fragment); the pieces go into the connection's buffer
 * (grown by doubling up to the loop's limit) until lws_is_final_fragment()
 * (final frame, nothing of it left). Control frames never reach the
 * callback as data, so they cannot interleave here.
 *
 * Thread context: the thread that services the loop (lws's service
 * thread); nothing here is shared with other threads, except
 * ws_client_loop_wake (lws_cancel_service).
 */
#include "ws_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#define WS_CLIENT_REASON_BYTES 124 /* close reason: at most 123 bytes */
#define WS_CLIENT_RX_START_BYTES 4096
#define WS_CLIENT_SPARE_FDS 8      /* lws's own pipe and listen-less vhost */

struct ws_client_loop {
    struct lws_context *context;
    size_t max_message_bytes;
    int tls;
    /* transmit: LWS_PRE bytes of headroom, then tx_cap bytes; one
     * writeable event at a time uses it */
    uint8_t *tx_alloc;
    size_t tx_cap;
    lws_sorted_usec_list_t tick; /* bounds one service call's wait */
};

struct ws_client {
    ws_client_loop *loop;
    int owns_loop; /* made by ws_client_create */
    struct lws *wsi; /* the lws connection, NULL once lws destroyed it */
    int wsi_gone;    /* LWS_CALLBACK_WSI_DESTROY came */
    ws_client_events ev;
    void *user;

    int creating;  /* inside ws_client_connect: errors are kept, not sent */
    int open;      /* between ESTABLISHED and CLOSED */
    int ended;     /* on_close or on_connect_error was delivered (or due) */
    char create_error[256];

    /* receive: one message at a time */
    uint8_t *rx;
    size_t rx_len;
    size_t rx_cap;
    int rx_in_message;
    int rx_binary;
    int rx_too_big;
    int rx_no_memory;

    int send_failed;

    /* close */
    int peer_closed;
    int peer_code;
    char peer_reason[WS_CLIENT_REASON_BYTES];
    int close_pending;
    int close_code;
    char close_reason[WS_CLIENT_REASON_BYTES];
    int abort_pending;

    char host[256];
    char path[1024];
    char subprotocol[64];
    int port;
    int tls;
};

double ws_client_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ws_client_parse_url(const char *url, int *tls, char *host, size_t host_cap,
                        int *port, char *path, size_t path_cap, char *err,
                        size_t err_cap)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        *tls = 0;
        *port = 80;
        p = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        *tls = 1;
        *port = 443;
        p = url + 6;
    } else {
        snprintf(err, err_cap,
                 "URL '%s' must start with ws:// or wss:// (for example "
                 "ws://127.0.0.1:8080/v1/stream)", url);
        return DEMIX_EARG;
    }
    const char *host_end;
    const char *after;
    if (*p == '[') { /* [IPv6]:port */
        host_end = strchr(p, ']');
        if (!host_end) {
            snprintf(err, err_cap, "URL '%s': unclosed '[' in the host", url);
            return DEMIX_EARG;
        }
        p++;
        after = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        after = host_end;
    }
    size_t host_len = (size_t)(host_end - p);
    if (host_len == 0 || host_len >= host_cap) {
        snprintf(err, err_cap, "URL '%s' has %s host", url,
                 host_len ? "too long a" : "no");
        return DEMIX_EARG;
    }
    memcpy(host, p, host_len);
    host[host_len] = '\0';
    if (*after == ':') {
        char *end;
        long v = strtol(after + 1, &end, 10);
        if (end == after + 1 || v < 1 || v > 65535 ||
            (*end != '\0' && *end != '/')) {
            snprintf(err, err_cap, "URL '%s' has a bad port (1 to 65535)", url);
            return DEMIX_EARG;
        }
        *port = (int)v;
        after = end;
    }
    if (*after == '\0')
        after = "/";
    if (*after != '/') {
        snprintf(err, err_cap, "URL '%s': expected a path after the host",
                 url);
        return DEMIX_EARG;
    }
    if (strlen(after) >= path_cap) {
        snprintf(err, err_cap, "URL '%s': path too long", url);
        return DEMIX_EARG;
    }
    snprintf(path, path_cap, "%s", after);
    return DEMIX_OK;
}

/* Deliver the end of the connection once. */
static void end_connection(ws_client *c, int connected, const char *why)
{
    c->open = 0;
    if (c->ended)
        return;
    c->ended = 1;
    if (!connected) {
        if (c->creating) {
            snprintf(c->create_error, sizeof c->create_error, "%s", why);
            return;
        }
        if (c->ev.on_connect_error)
            c->ev.on_connect_error(c->user, why);
        return;
    }
    int code = WS_CLIENT_CLOSE_ABNORMAL;
    const char *reason = "";
    if (c->rx_too_big) {
        code = WS_CLIENT_CLOSE_TOO_BIG;
        reason = "message too long";
    } else if (c->rx_no_memory) {
        code = 1011;
        reason = "out of memory for a message";
    } else if (c->peer_closed) {
        code = c->peer_code;
        reason = c->peer_reason;
    } else if (c->close_pending) {
        code = c->close_code;
        reason = c->close_reason;
    }
    if (c->ev.on_close)
        c->ev.on_close(c->user, code, reason);
}

/* Append a piece of a message; 0, or -1 when it cannot be held. */
static int rx_append(ws_client *c, const void *in, size_t len)
{
    size_t limit = c->loop->max_message_bytes;
    if (len > limit - c->rx_len) {
        c->rx_too_big = 1;
        return -1;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : WS_CLIENT_RX_START_BYTES;
        while (cap < c->rx_len + len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        uint8_t *p = realloc(c->rx, cap);
        if (!p) {
            c->rx_no_memory = 1;
            return -1;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len)
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user_data, void *in, size_t len)
{
    (void)user_data;
    ws_client *c = lws_get_opaque_user_data(wsi);
    if (!c)
        return 0; /* not a connection, or one already destroyed */

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[256];
        snprintf(why, sizeof why, "%s",
                 in && len ? (const char *)in
                           : (in ? (const char *)in : "connection failed"));
        if (!why[0])
            snprintf(why, sizeof why, "connection failed");
        end_connection(c, 0, why);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        c->open = 1;
        if (c->ev.on_open)
            c->ev.on_open(c->user);
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c->rx_in_message) {
            c->rx_in_message = 1;
            c->rx_len = 0;
            c->rx_binary = lws_frame_is_binary(wsi);
        }
        if (rx_append(c, in, len)) {
            if (c->rx_too_big)
                lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                                 (unsigned char *)"too_large", 9);
            return -1;
        }
        if (lws_is_final_fragment(wsi)) {
            c->rx_in_message = 0;
            if (c->ev.on_message)
                c->ev.on_message(c->user, c->rx_binary, c->rx, c->rx_len);
        }
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c->abort_pending)
            return -1;
        if (c->close_pending) {
            size_t n = strlen(c->close_reason);
            lws_close_reason(wsi, (enum lws_close_status)c->close_code,
                             (unsigned char *)c->close_reason, n);
            return -1;
        }
        if (c->ev.on_writeable)
            c->ev.on_writeable(c->user);
        if (c->send_failed || c->abort_pending)
            return -1;
        break;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *b = in;
        c->peer_closed = 1;
        c->peer_code = WS_CLIENT_CLOSE_NONE;
        c->peer_reason[0] = '\0';
        if (b && len >= 2) {
            c->peer_code = (b[0] << 8) | b[1];
            size_t n = len - 2;
            if (n >= sizeof c->peer_reason)
                n = sizeof c->peer_reason - 1;
            memcpy(c->peer_reason, b + 2, n);
            c->peer_reason[n] = '\0';
        }
        return 0; /* lws answers the close */
    }

    case LWS_CALLBACK_TIMER:
        if (c->ev.on_timer && c->open)
            c->ev.on_timer(c->user);
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
        end_connection(c, 1, "");
        break;

    case LWS_CALLBACK_WSI_DESTROY:
        /* A connection that dies in the handshake without an error event. */
        end_connection(c, c->open, c->open ? "" : "connection closed "
                                                  "during the handshake");
        c->wsi = NULL;
        c->wsi_gone = 1;
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols_template[] = {
    {"demix-client", ws_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_quiet(int level, const char *line)
{
    if (level & LLL_ERR)
        fprintf(stderr, "demix: lws: %s", line);
}

int ws_client_loop_create(int max_connections, size_t max_message_bytes,
                          int tls, ws_client_loop **out, char *err,
                          size_t err_cap)
{
    *out = NULL;
    if (max_connections < 1 || max_message_bytes == 0) {
        snprintf(err, err_cap, "ws_client_loop_create: bad arguments");
        return DEMIX_EARG;
    }
    ws_client_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    loop->max_message_bytes = max_message_bytes;
    loop->tls = tls;
    loop->tx_cap = max_message_bytes;
    loop->tx_alloc = malloc(LWS_PRE + loop->tx_cap);
    if (!loop->tx_alloc) {
        free(loop);
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }

    lws_set_log_level(LLL_ERR, lws_log_quiet);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols_template;
    info.fd_limit_per_thread = (unsigned int)max_connections +
                               WS_CLIENT_SPARE_FDS;
    info.gid = -1;
    info.uid = -1;
    if (tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    loop->context = lws_create_context(&info);
    if (!loop->context) {
        snprintf(err, err_cap, "cannot start libwebsockets%s",
                 tls ? " with TLS (is it built with TLS support?)" : "");
        ws_client_loop_destroy(loop);
        return DEMIX_EIO;
    }
    *out = loop;
    return DEMIX_OK;
}

void ws_client_loop_destroy(ws_client_loop *loop)
{
    if (!loop)
        return;
    if (loop->context) {
        lws_sul_cancel(&loop->tick);
        lws_context_destroy(loop->context);
    }
    free(loop->tx_alloc);
    free(loop);
}

static void loop_tick(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* its only job: end the poll wait of lws_service */
}

int ws_client_loop_service(ws_client_loop *loop, int timeout_ms)
{
    /* lws 4.1 ignores lws_service's timeout and sleeps until its next
     * event or timer: a timer of our own makes timeout_ms the bound. */
    if (timeout_ms > 0)
        lws_sul_schedule(loop->context, 0, &loop->tick, loop_tick,
                         (lws_usec_t)timeout_ms * 1000);
    return lws_service(loop->context, timeout_ms);
}

int ws_client_loop_service_us(ws_client_loop *loop, int64_t timeout_us)
{
    if (timeout_us <= 0) /* lws 4.1: a negative timeout polls, no wait */
        return lws_service(loop->context, -1);
    lws_sul_schedule(loop->context, 0, &loop->tick, loop_tick,
                     (lws_usec_t)timeout_us);
    return lws_service(loop->context, 0);
}

void ws_client_loop_wake(ws_client_loop *loop)
{
    if (loop && loop->context)
        lws_cancel_service(loop->context);
}

int ws_client_connect(ws_client_loop *loop, const char *url,
                      const char *subprotocol, const ws_client_events *events,
                      void *user, ws_client **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (!loop || !url || !events) {
        snprintf(err, err_cap, "ws_client_connect: bad arguments");
        return DEMIX_EARG;
    }
    ws_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    c->loop = loop;
    c->ev = *events;
    c->user = user;
    int rc = ws_client_parse_url(url, &c->tls, c->host, sizeof c->host,
                                 &c->port, c->path, sizeof c->path, err,
                                 err_cap);
    if (rc) {
        free(c);
        return rc;
    }
    if (c->tls && !loop->tls) {
        snprintf(err, err_cap, "URL '%s': wss:// needs a loop made with TLS",
                 url);
        free(c);
        return DEMIX_EARG;
    }
    if (subprotocol)
        snprintf(c->subprotocol, sizeof c->subprotocol, "%s", subprotocol);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = loop->context;
    ci.address = c->host;
    ci.port = c->port;
    ci.ssl_connection = c->tls ? LCCSCF_USE_SSL : 0;
    ci.path = c->path;
    ci.host = c->host;
    ci.origin = c->host;
    ci.protocol = c->subprotocol[0] ? c->subprotocol : NULL;
    ci.local_protocol_name = ws_protocols_template[0].name;
    ci.opaque_user_data = c;
    c->creating = 1;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    c->creating = 0;
    if (!wsi || c->ended) {
        snprintf(err, err_cap, "%s",
                 c->create_error[0] ? c->create_error
                                    : "the connection could not be started");
        if (wsi && !c->wsi_gone) /* lws frees it later, without us */
            lws_set_opaque_user_data(wsi, NULL);
        free(c);
        return DEMIX_EIO;
    }
    c->wsi = wsi;
    *out = c;
    return DEMIX_OK;
}

int ws_client_create(const char *url, const char *subprotocol,
                     size_t max_message_bytes, const ws_client_events *events,
                     void *user, ws_client **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (!url || !events || max_message_bytes == 0) {
        snprintf(err, err_cap, "ws_client_create: bad arguments");
        return DEMIX_EARG;
    }
    int tls = 0, port;
    char host[256], path[1024];
    int rc = ws_client_parse_url(url, &tls, host, sizeof host, &port, path,
                                 sizeof path, err, err_cap);
    if (rc)
        return rc;
    ws_client_loop *loop;
    rc = ws_client_loop_create(1, max_message_bytes, tls, &loop, err, err_cap);
    if (rc)
        return rc;
    char why[256];
    rc = ws_client_connect(loop, url, subprotocol, events, user, out, why,
                           sizeof why);
    if (rc) {
        if (rc == DEMIX_EIO)
            snprintf(err, err_cap, "cannot connect to %s:%d: %s", host, port,
                     why);
        else
            snprintf(err, err_cap, "%s", why);
        ws_client_loop_destroy(loop);
        return rc;
    }
    (*out)->owns_loop = 1;
    return DEMIX_OK;
}

void ws_client_destroy(ws_client *c)
{
    if (!c)
        return;
    int was_ended = c->ended;
    c->ended = 1; /* no events from here on */
    if (c->owns_loop) {
        /* lws's last callbacks for the connection run in here and find
         * c ended. */
        ws_client_loop_destroy(c->loop);
    } else if (c->wsi) {
        lws_set_opaque_user_data(c->wsi, NULL);
        if (!was_ended)
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
                            LWS_TO_KILL_ASYNC);
    }
    free(c->rx);
    free(c);
}

int ws_client_service(ws_client *c, int timeout_ms)
{
    return ws_client_loop_service(c->loop, timeout_ms);
}

void ws_client_want_write(ws_client *c)
{
    if (c->wsi && !c->ended)
        lws_callback_on_writable(c->wsi);
}

uint8_t *ws_client_tx_buffer(ws_client *c)
{
    return c->loop->tx_alloc + LWS_PRE;
}

size_t ws_client_tx_capacity(const ws_client *c)
{
    return c->loop->tx_cap;
}

int ws_client_send(ws_client *c, int binary, size_t len)
{
    if (!c->wsi || !c->open || len > c->loop->tx_cap) {
        c->send_failed = 1;
        return DEMIX_EIO;
    }
    int n = lws_write(c->wsi, c->loop->tx_alloc + LWS_PRE, len,
                      binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (n < 0 || (size_t)n < len) {
        c->send_failed = 1;
        return DEMIX_EIO;
    }
    return DEMIX_OK;
}

void ws_client_set_timer(ws_client *c, int64_t usecs)
{
    if (c->wsi && c->open)
        lws_set_timer_usecs(c->wsi, usecs < 0 ? LWS_SET_TIMER_USEC_CANCEL
                                              : (lws_usec_t)usecs);
}

void ws_client_close(ws_client *c, int code, const char *reason)
{
    if (!c->wsi || c->ended || c->close_pending)
        return;
    c->close_pending = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : "");
    lws_callback_on_writable(c->wsi);
}

void ws_client_abort(ws_client *c)
{
    if (!c->wsi || c->ended)
        return;
    c->abort_pending = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void ws_client_wake(ws_client *c)
{
    if (c)
        ws_client_loop_wake(c->loop);
}

int ws_client_is_open(const ws_client *c)
{
    return c->open;
}
