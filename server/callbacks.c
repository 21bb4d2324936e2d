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
 * Connections per address (--max-per-address, addr_limit.h): counted when
 * lws has adopted a connection (SERVER_NEW_CLIENT_INSTANTIATED), released
 * when its wsi goes (WSI_DESTROY, which lws calls for every wsi it
 * closes); the entry rides on the wsi's opaque pointer, which an upgrade
 * to WebSocket keeps. One over the limit is still adopted, so that it gets
 * an answer: 429 to its requests and to its upgrade (http.c, below), then
 * the close.
 *
 * Receive, writeable and wake-up callbacks are timed
 * (service_phase.c: /metrics' demixd_service_phase_*).
 *
 * Wake-ups (lws_cancel_service -> EVENT_WAIT_CANCELLED): the thread's
 * ready ring is drained (each stream with news has its session serviced),
 * finished file jobs get their responses started; while stopping, every
 * session is looked at.
 *
 * Shutdown (SIGINT/SIGTERM -> stop_requested + a wake-up of every service
 * thread): each thread refuses new connections, answers HTTP requests
 * with 503 (the health probes excepted: ready says shutting_down), asks
 * each of its sessions to finish (demixd_session_shutdown), and cancels
 * its waiting file jobs with 503. With --drain-seconds N the streaming
 * sessions are left alone for N seconds first (a load balancer moves new
 * clients elsewhere meanwhile), then each still streaming gets
 * `restarting` and close 1012 (demixd_session_drain_end).
 * After DEMIXD_SHUTDOWN_GRACE_S seconds the sessions still open are closed
 * with 1001; the thread's service loop ends when no thread has a session
 * left (and its own file jobs are answered), or two seconds after that.
 *
 * Thread context: the service thread of the context the callback is for.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "session_impl.h"

static void begin_shutdown(demixd_service *svc)
{
    const int drain = svc->d->opt.drain_seconds;
    int64_t now = demixd_now_ns();
    svc->stopping = 1;
    svc->drain_end_ns = now + (int64_t)drain * 1000000000;
    svc->stop_deadline_ns =
        svc->drain_end_ns + (int64_t)DEMIXD_SHUTDOWN_GRACE_S * 1000000000;
    demixd_log(DEMIXD_LOG_INFO, "shutdown_begin",
               "thread=%d sessions=%d drain_s=%d grace_s=%d", svc->index,
               svc->session_count, drain, DEMIXD_SHUTDOWN_GRACE_S);
    if (drain > 0) {
        /* the drain: streaming sessions go on; the rest ends now */
        for (demixd_session *s = svc->sessions; s; s = s->next)
            if (s->state == DEMIX_PROTO_STATE_IDLE)
                demixd_session_shutdown(s);
    } else {
        svc->drained = 1;
        for (demixd_session *s = svc->sessions; s; s = s->next)
            demixd_session_shutdown(s);
    }
    demixd_http_shutdown(svc);
}

/* The streams with news from the scheduler (scheduler.h): service their
 * sessions, if still there. */
static void drain_ready(demixd_service *svc)
{
    demixd_scheduler *sched = svc->d->sched;
    demixd_lane *st;
    while ((st = demixd_scheduler_pop_ready(sched, svc->index))) {
        if (!demixd_lane_is_released(st))
            demixd_session_wake(demixd_lane_owner_ctx(st));
        demixd_scheduler_ready_done(st);
    }
}

static void on_wake(demixd_service *svc)
{
    demixd *d = svc->d;
    atomic_store(&svc->wake_pending, 0);
    if (!svc->stopping && atomic_load(&d->stop_requested))
        begin_shutdown(svc);
    demixd_service_adopt(svc);
    drain_ready(svc);
    demixd_http_wake(svc);
    if (!svc->stopping)
        return;
    /* Shutdown: sessions finish without news from the scheduler too (a
     * paused reader, the final summary): look at every one. */
    for (demixd_session *s = svc->sessions; s; s = s->next)
        demixd_session_wake(s);
    int64_t now = demixd_now_ns();
    if (!svc->drained && now >= svc->drain_end_ns) {
        svc->drained = 1;
        if (svc->session_count)
            demixd_log(DEMIXD_LOG_INFO, "drain_end", "thread=%d sessions=%d",
                       svc->index, svc->session_count);
        for (demixd_session *s = svc->sessions; s; s = s->next)
            demixd_session_drain_end(s);
    }
    if (now >= svc->stop_deadline_ns && !svc->forced) {
        svc->forced = 1;
        if (svc->session_count)
            demixd_log(DEMIXD_LOG_WARN, "shutdown_force",
                       "thread=%d sessions=%d", svc->index,
                       svc->session_count);
        for (demixd_session *s = svc->sessions; s; s = s->next)
            demixd_session_force_close(s);
    }
    /* A thread stays while any thread has sessions: its own connections
     * (a health probe on a keep-alive connection, say) keep their answers
     * until the whole process is done. */
    if ((atomic_load(&d->open_sessions) == 0 && !svc->waiting) ||
        now >= svc->stop_deadline_ns + 2000000000)
        svc->exit_loop = 1;
}

/* --allow-origin: 1 when the upgrade's Origin is not listed. An upgrade
 * without Origin is not a browser's (browsers always send it) and passes:
 * the list protects browsers' users from other sites' pages, tokens
 * protect the server. */
static int origin_refused(demixd_service *svc, struct lws *wsi)
{
    const char *list = svc->d->opt.allow_origin;
    char origin[512];
    if (!list[0])
        return 0;
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN);
    if (n <= 0)
        return 0;
    if (n >= (int)sizeof origin ||
        lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) < 0)
        return 1;
    size_t len = strlen(origin);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == len && !strncmp(p, origin, k))
            return 0;
        p += k + (e ? 1 : 0);
    }
    demixd_log(DEMIXD_LOG_INFO, "ws_refused", "reason=origin thread=%d",
               svc->index);
    return 1;
}

/* The opaque pointer of a connection over --max-per-address. */
static const char over_limit_marker;

int demixd_conn_over_limit(struct lws *wsi)
{
    return lws_get_opaque_user_data(wsi) == (void *)&over_limit_marker;
}

/* A new connection: count it for its address, or mark it over the limit. */
static void count_address(demixd_service *svc, struct lws *wsi)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = (int)lws_get_socket_fd(wsi);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len))
        return; /* not counted: nothing to release either */
    demixd_addr_entry *e;
    int rc = demixd_addr_limit_acquire(svc->d->addr_limit,
                                       (struct sockaddr *)&ss, len, &e);
    if (rc == 1) {
        lws_set_opaque_user_data(wsi, e);
        return;
    }
    lws_set_opaque_user_data(wsi, (void *)&over_limit_marker);
    demixd_metrics_address_refused(svc->d->metrics);
    char ip[64] = "?";
    lws_get_peer_simple(wsi, ip, sizeof ip);
    demixd_log(DEMIXD_LOG_DEBUG, "per_address_refused",
               "thread=%d addr=%s max=%d", svc->index, ip,
               demixd_addr_limit_max(svc->d->addr_limit));
}

static void uncount_address(demixd_service *svc, struct lws *wsi)
{
    void *o = lws_get_opaque_user_data(wsi);
    if (!o)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    if (o != (void *)&over_limit_marker)
        demixd_addr_limit_release(svc->d->addr_limit, o);
}

/* Accept the upgrade on the stream path only. */
static int filter_ws(demixd_service *svc, struct lws *wsi)
{
    char uri[128];
    if (svc->stopping)
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
    demixd_service *svc = lws_context_user(lws_get_context(wsi));
    demixd_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return svc->stopping && svc->drained ? -1 : 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        count_address(svc, wsi);
        break;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (demixd_conn_over_limit(wsi)) {
            if (lws_return_http_status(wsi, 429, NULL))
                return -1;
            return 1;
        }
        if (demixd_http_header_bytes(wsi) > DEMIXD_MAX_HEADER_BYTES) {
            if (lws_return_http_status(wsi, 431, NULL))
                return -1;
            return 1;
        }
        if (origin_refused(svc, wsi)) {
            if (lws_return_http_status(wsi, 403, NULL))
                return -1;
            return 1;
        }
        /* A WebSocket upgrade elsewhere than /v1/stream: answer 404 (the
         * filter below would only hang up). */
        if (filter_ws(svc, wsi)) {
            if (lws_return_http_status(wsi, svc->stopping ? 503 : 404, NULL))
                return -1;
            return 1;
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter_ws(svc, wsi) || origin_refused(svc, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        if (!c)
            return -1;
        c->session = demixd_session_open(svc, wsi);
        return c->session ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (c && c->session) {
            int64_t t0 = demixd_now_ns();
            demixd_session_receive(c->session, in, len);
            demixd_service_phase_done(svc, DEMIXD_PHASE_RECEIVE, t0);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c && c->session) {
            int64_t t0 = demixd_now_ns();
            int rc = demixd_session_writeable(c->session);
            demixd_service_phase_done(svc, DEMIXD_PHASE_WRITEABLE, t0);
            return rc;
        }
        return 0;
    case LWS_CALLBACK_TIMER:
        if (c && c->session)
            demixd_session_timer(c->session);
        else if (c && c->http)
            demixd_http_timer(c->http);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (c && c->session) {
            demixd_session_closed(c->session);
            c->session = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        int64_t t0 = demixd_now_ns();
        on_wake(svc);
        demixd_service_phase_done(svc, DEMIXD_PHASE_WAKE, t0);
        return 0;
    }
    case LWS_CALLBACK_WSI_CREATE:
        /* the acceptor's load count (acceptor.c); lws's own descriptors
         * count too, the same on every thread */
        atomic_fetch_add_explicit(&svc->wsi_live, 1, memory_order_relaxed);
        break;
    case LWS_CALLBACK_HTTP:
        return c ? demixd_http_request(svc, wsi, c, in) : -1;
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
        if (reason == LWS_CALLBACK_WSI_DESTROY)
            atomic_fetch_sub_explicit(&svc->wsi_live, 1, memory_order_relaxed);
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
        if (reason == LWS_CALLBACK_WSI_DESTROY)
            uncount_address(svc, wsi);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
