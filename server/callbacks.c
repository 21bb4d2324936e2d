/*
 * callbacks.c - the one lws protocol of demixd ("demix.v1", also
 * protocols[0], so it gets the HTTP of every request and every WebSocket
 * upgrade whatever subprotocol the client offers or omits), the wake-up
 * scan, and the shutdown sequence.
 *
 * WebSocket upgrades are accepted on DEMIX_PROTO_PATH only
 * (FILTER_PROTOCOL_CONNECTION). A client that offers subprotocols must
 * offer "demix.v1" (lws refuses the handshake otherwise); one that offers
 * none gets this protocol without a Sec-WebSocket-Protocol answer.
 *
 * Shutdown (SIGINT/SIGTERM -> stop_requested + a wake-up): new connections
 * are refused, HTTP requests get 503, every session is asked to finish
 * (demixd_session_shutdown), waiting file jobs are cancelled with 503.
 * After DEMIXD_SHUTDOWN_GRACE_S seconds the sessions still open are closed
 * with 1001; the service loop ends when no session is left, or two seconds
 * after that.
 *
 * Thread context: the lws service thread, except demixd_wake (any).
 */
#include <stdlib.h>
#include <string.h>

#include "encode_pool.h"
#include "log.h"
#include "session_impl.h"

static void begin_shutdown(demixd *d)
{
    d->stopping = 1;
    d->stop_deadline_ns =
        demixd_now_ns() + (int64_t)DEMIXD_SHUTDOWN_GRACE_S * 1000000000;
    demixd_log(DEMIXD_LOG_INFO, "shutdown_begin", "sessions=%d grace_s=%d",
               d->session_count, DEMIXD_SHUTDOWN_GRACE_S);
    for (demixd_session *s = d->sessions; s; s = s->next)
        demixd_session_shutdown(s);
    demixd_http_shutdown(d);
}

static void on_wake(demixd *d)
{
    atomic_store(&d->wake_pending, 0);
    if (!d->stopping && atomic_load(&d->stop_requested))
        begin_shutdown(d);
    d->waking = 1;
    demixd_encode_ready_all(d); /* the heavy part, on every core */
    for (demixd_session *s = d->sessions; s; s = s->next)
        demixd_session_wake(s);
    d->waking = 0;
    demixd_http_wake(d);
    if (!d->stopping)
        return;
    int64_t now = demixd_now_ns();
    if (now >= d->stop_deadline_ns && !d->forced) {
        d->forced = 1;
        if (d->session_count)
            demixd_log(DEMIXD_LOG_WARN, "shutdown_force", "sessions=%d",
                       d->session_count);
        for (demixd_session *s = d->sessions; s; s = s->next)
            demixd_session_force_close(s);
    }
    if ((d->session_count == 0 && !d->waiting) ||
        now >= d->stop_deadline_ns + 2000000000)
        d->exit_loop = 1;
}

/* Accept the upgrade on the stream path only. */
static int filter_ws(demixd *d, struct lws *wsi)
{
    char uri[128];
    if (d->stopping)
        return 1;
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(uri, DEMIX_PROTO_PATH)) {
        demixd_log(DEMIXD_LOG_DEBUG, "ws_refused", "reason=path");
        return 1;
    }
    return 0;
}

int demixd_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len)
{
    demixd *d = lws_context_user(lws_get_context(wsi));
    demixd_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return d->stopping ? -1 : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* A WebSocket upgrade elsewhere than /v1/stream: answer 404 (the
         * filter below would only hang up). */
        if (filter_ws(d, wsi)) {
            if (lws_return_http_status(wsi, d->stopping ? 503 : 404, NULL))
                return -1;
            return 1;
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter_ws(d, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        if (!c)
            return -1;
        c->session = demixd_session_open(d, wsi);
        return c->session ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (c && c->session)
            demixd_session_receive(c->session, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c && c->session ? demixd_session_writeable(c->session) : 0;
    case LWS_CALLBACK_TIMER:
        if (c && c->session)
            demixd_session_timer(c->session);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (c && c->session) {
            demixd_session_closed(c->session);
            c->session = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        on_wake(d);
        return 0;
    case LWS_CALLBACK_HTTP:
        return c ? demixd_http_request(d, wsi, c, in) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return c && c->http ? demixd_http_body(c->http, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return c && c->http ? demixd_http_body_done(c->http) : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (c && c->http)
            return demixd_http_writeable(c->http);
        break;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_WSI_DESTROY:
        /* lws 4.1 does not always send CLOSED_HTTP; the transaction's
         * unbinding and the wsi's destruction also end the request. */
        if (c && c->http) {
            demixd_http_closed(c->http);
            c->http = NULL;
        }
        if (reason == LWS_CALLBACK_WSI_DESTROY && c && c->session) {
            demixd_session_closed(c->session);
            c->session = NULL;
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
