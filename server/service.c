/*
 * service.c - demixd's service threads: N threads, each with its own lws
 * context, each serving the connections the accept thread hands it.
 *
 * Why threads of contexts: Debian's libwebsockets is built without SMP
 * service threads (LWS_MAX_SMP 1), and one thread doing every session's
 * socket I/O and codecs held about 120 sessions on a 16-core GPU box
 * while the engine stepped thousands (bench/RESULTS.md). One listening
 * socket (listener.h) is served by the accept thread (acceptor.c), which
 * gives each new connection to the thread with the fewest; the contexts
 * listen on nothing themselves (CONTEXT_PORT_NO_LISTEN_SERVER). A thread
 * woken with connections in its ring (demixd_service_adopt) hands each
 * to lws as an HTTP connection, which may upgrade to a WebSocket. A
 * connection stays on its thread for life, with its session.
 *
 * Start. The main thread opens the listening socket, then starts the
 * threads one after the other; each creates its context (lws objects stay
 * with the thread that made them) and reports (start_status) before the
 * next starts; then the accept thread starts. A failure stops the threads
 * already started.
 *
 * Loop. Each thread runs its event loop (event_loop.h: libev on epoll by
 * default, lws's poll() with --event-loop poll) until its shutdown is
 * complete (callbacks.c sets exit_loop), then destroys its context, clearing
 * svc->lws under wake_lock first so no other thread calls
 * lws_cancel_service on it again.
 *
 * Thread context: demixd_services_start/join/free on the main thread,
 * service_main on its service thread, the wake functions on any thread.
 */
#define _GNU_SOURCE /* pthread_setname_np */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "event_loop.h"
#include "listener.h"
#include "log.h"
#include "server.h"

#define RX_BUFFER_BYTES 16384
#define ADOPTS_PER_CALL 64 /* then back to the loop: fairness */

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;

static struct lws_protocols protocols[] = {
    {DEMIX_PROTO_SUBPROTOCOL, demixd_lws_callback, sizeof(demixd_conn),
     RX_BUFFER_BYTES, 0, NULL, DEMIX_PROTO_MAX_BINARY_BYTES + 64},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

void demixd_service_wake(demixd_service *svc)
{
    if (atomic_exchange(&svc->wake_pending, 1))
        return; /* one is on its way */
    pthread_mutex_lock(&svc->wake_lock);
    if (svc->lws)
        lws_cancel_service(svc->lws);
    pthread_mutex_unlock(&svc->wake_lock);
}

void demixd_wake_all(demixd *d)
{
    for (int k = 0; k < d->service_count; k++)
        demixd_service_wake(&d->services[k]);
}

void demixd_service_adopt(demixd_service *svc)
{
    struct lws_vhost *vh = lws_get_vhost_by_name(svc->lws, "default");
    for (int i = 0; i < ADOPTS_PER_CALL; i++) {
        int fd = demixd_acceptor_take(svc);
        if (fd < 0)
            return;
        /* While stopping: still taken during a drain, so that health
         * probes on new connections get their answers (live 200, ready
         * 503) and upgrades their 503; refused after it. */
        if (!vh || (svc->stopping && svc->drained)) {
            close(fd);
            continue;
        }
        lws_sock_file_fd_type u;
        u.sockfd = fd;
        /* lws closes fd itself when this fails */
        int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
        if (svc->d->opt.tls_cert[0])
            type |= LWS_ADOPT_ALLOW_SSL;
        if (!lws_adopt_descriptor_vhost(vh, (lws_adoption_type)type, u, NULL,
                                        NULL))
            demixd_log(DEMIXD_LOG_WARN, "accept",
                       "thread=%d msg=\"lws could not adopt a connection\"",
                       svc->index);
    }
    demixd_service_wake(svc); /* more than one call's worth: come back */
}

/* The thread's context, listening on nothing, on `loop` of `kind`. NULL
 * on failure. */
static struct lws_context *make_context(demixd_service *svc,
                                        demixd_event_loop *loop,
                                        demixd_event_loop_kind kind)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    if (demixd_event_loop_init(loop, kind, &info))
        return NULL;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = svc;
    info.pt_serv_buf_size = 32768;
    info.server_string = "demixd";
    info.timeout_secs = 30;
    if (svc->d->opt.tls_cert[0]) {
        /* The vhost gets its SSL_CTX although it listens on nothing: the
         * connections it adopts (demixd_service_accept) may be TLS. */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                        LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX;
        info.ssl_cert_filepath = svc->d->opt.tls_cert;
        info.ssl_private_key_filepath = svc->d->opt.tls_key;
        /* lws would also make each vhost a client SSL_CTX with the whole
         * system CA store loaded (about 0.7 MB per service thread, for
         * client connections demixd never makes), and lws 4.1 cannot free
         * it again when several contexts exist: the ex_data index it
         * finds it by is a process global that each context's TLS init
         * replaces, so every context but the last leaked its store at
         * exit (LeakSanitizer). One empty context of ours, which lws
         * leaves to us, avoids both. */
        info.provided_client_ssl_ctx = svc->d->client_ssl_ctx;
    }
    info.headers = demixd_http_security_headers();
    info.max_http_header_data = DEMIXD_LWS_HEADER_BYTES;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        demixd_event_loop_free(loop);
    else
        demixd_event_loop_started(loop, ctx);
    return ctx;
}

/* The context on the configured loop; where epoll cannot be had (no
 * epoll in libev, or lws's libev plugin missing: Debian's
 * libwebsockets-evlib-ev), on lws's poll() loop, said once. */
static struct lws_context *make_context_on_loop(demixd_service *svc,
                                                demixd_event_loop *loop)
{
    demixd_event_loop_kind kind = svc->d->opt.event_loop;
    struct lws_context *ctx = make_context(svc, loop, kind);
    if (svc->index == 0)
        svc->d->event_loop = kind;
    if (ctx || kind == DEMIXD_EVENT_LOOP_POLL)
        return ctx;
    if (svc->index == 0) {
        demixd_log(DEMIXD_LOG_WARN, "event_loop",
                   "msg=\"no libev/epoll loop for lws (is "
                   "libwebsockets-evlib-ev installed?): poll() instead\"");
        svc->d->event_loop = DEMIXD_EVENT_LOOP_POLL;
    }
    return make_context(svc, loop, DEMIXD_EVENT_LOOP_POLL);
}

static void report_start(demixd_service *svc, int status)
{
    pthread_mutex_lock(&start_lock);
    svc->start_status = status;
    pthread_cond_broadcast(&start_cond);
    pthread_mutex_unlock(&start_lock);
}

static void *service_main(void *arg)
{
    demixd_service *svc = arg;
    demixd *d = svc->d;
    char name[16]; /* shown by top -H and /proc: per-thread CPU */
    snprintf(name, sizeof name, "demixd-svc%d", svc->index);
    pthread_setname_np(pthread_self(), name);
    demixd_event_loop loop;
    struct lws_context *ctx = make_context_on_loop(svc, &loop);
    if (!ctx) {
        report_start(svc, -1);
        return NULL;
    }
    pthread_mutex_lock(&svc->wake_lock);
    svc->lws = ctx;
    pthread_mutex_unlock(&svc->wake_lock);
    /* before the accept thread starts (after every report_start) */
    svc->wsi_base = atomic_load(&svc->wsi_live);
    report_start(svc, 1);
    int failed = 0;
    while (!svc->exit_loop)
        if (demixd_event_loop_run_once(&loop) < 0) {
            failed = 1;
            break;
        }
    if (failed)
        demixd_log(DEMIXD_LOG_ERROR, "service_failed", "thread=%d port=%d",
                   svc->index, d->port);
    pthread_mutex_lock(&svc->wake_lock);
    svc->lws = NULL;
    pthread_mutex_unlock(&svc->wake_lock);
    lws_context_destroy(ctx);
    demixd_event_loop_free(&loop);
    return failed ? (void *)1 : NULL;
}

/* Start service thread k and wait for its context. 0 or -1. */
static int start_one(demixd *d, int k)
{
    demixd_service *svc = &d->services[k];
    /* The thread inherits a mask that blocks every signal (main.c takes
     * SIGINT and SIGTERM on its own thread). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&svc->thread, NULL, service_main, svc);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -1;
    pthread_mutex_lock(&start_lock);
    while (!svc->start_status)
        pthread_cond_wait(&start_cond, &start_lock);
    int status = svc->start_status;
    pthread_mutex_unlock(&start_lock);
    if (status < 0) {
        pthread_join(svc->thread, NULL);
        return -1;
    }
    return 0;
}

int demixd_services_init(demixd *d, int count)
{
    d->listen_fd = -1;
    d->acceptor_stop_fd = -1;
    d->services = calloc((size_t)count, sizeof *d->services);
    if (!d->services)
        return -1;
    for (int k = 0; k < count; k++) {
        demixd_service *svc = &d->services[k];
        svc->d = d;
        svc->index = k;
        atomic_init(&svc->wake_pending, 0);
        atomic_init(&svc->wsi_live, 0);
        for (int p = 0; p < DEMIXD_PHASE_COUNT; p++) {
            atomic_init(&svc->phase_ns[p], 0);
            atomic_init(&svc->phase_calls[p], 0);
        }
        pthread_mutex_init(&svc->wake_lock, NULL);
        d->service_count = k + 1; /* what free() undoes */
        if (demixd_acceptor_ring_init(svc))
            return -1;
    }
    return 0;
}

static void lws_log(int level, const char *line)
{
    /* a client's fault (headers over lws's space), not the server's */
    if (level == LLL_ERR && strstr(line, "Ran out of header data space"))
        level = LLL_NOTICE;
    char q[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%.*s", (int)n, line);
    demixd_log(level == LLL_ERR    ? DEMIXD_LOG_ERROR
               : level == LLL_WARN ? DEMIXD_LOG_WARN
                                   : DEMIXD_LOG_DEBUG,
               "lws", "msg=\"%s\"", demixd_log_quote(tmp, q, sizeof q));
}

int demixd_services_start(demixd *d)
{
    if (d->opt.tls_cert[0] && !d->client_ssl_ctx &&
        !(d->client_ssl_ctx = SSL_CTX_new(TLS_client_method()))) {
        demixd_log(DEMIXD_LOG_ERROR, "tls", "msg=\"OpenSSL: no SSL_CTX\"");
        return -1;
    }
    int lws_levels = LLL_ERR | LLL_WARN;
    if (demixd_log_enabled(DEMIXD_LOG_DEBUG))
        lws_levels |= LLL_NOTICE;
    lws_set_log_level(lws_levels, lws_log);
    const int count = d->service_count;
    char err[256];
    if (demixd_listener_open(d->opt.host, d->opt.port, &d->listen_fd,
                             &d->port, err, sizeof err)) {
        demixd_log(DEMIXD_LOG_ERROR, "listen", "host=%s port=%d msg=\"%s\"",
                   d->opt.host, d->opt.port, err);
        return -1;
    }
    int started = 0;
    for (; started < count; started++)
        if (start_one(d, started))
            break;
    if (started < count || demixd_acceptor_start(d)) {
        demixd_log(DEMIXD_LOG_ERROR, "listen",
                   "host=%s port=%d thread=%d msg=\"cannot start\"",
                   d->opt.host, d->port, started);
        atomic_store(&d->stop_requested, 1);
        demixd_wake_all(d);
        (void)demixd_services_join(d);
        return -1;
    }
    const int tls = d->opt.tls_cert[0] != '\0';
    demixd_log(DEMIXD_LOG_INFO, "listening",
               "msg=\"listening on %s:%d\" host=%s port=%d ws=%s://%s:%d%s "
               "tls=%s service_threads=%d event_loop=%s",
               d->opt.host, d->port, d->opt.host, d->port, tls ? "wss" : "ws",
               d->opt.host, d->port, DEMIX_PROTO_PATH, tls ? "on" : "off",
               count, demixd_event_loop_name(d->event_loop));
    return 0;
}

int demixd_services_join(demixd *d)
{
    int failed = 0;
    for (int k = 0; k < d->service_count; k++) {
        demixd_service *svc = &d->services[k];
        if (svc->start_status != 1)
            continue; /* never started, or joined by start_one */
        void *r = NULL;
        pthread_join(svc->thread, &r);
        svc->start_status = 2;
        failed |= r != NULL;
    }
    demixd_acceptor_stop(d);
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    d->listen_fd = -1;
    return failed;
}

void demixd_services_free(demixd *d)
{
    if (!d->services)
        return;
    for (int k = 0; k < d->service_count; k++) {
        pthread_mutex_destroy(&d->services[k].wake_lock);
        demixd_spsc_ring_free(&d->services[k].accepted);
    }
    free(d->services);
    d->services = NULL;
    d->service_count = 0;
    SSL_CTX_free(d->client_ssl_ctx); /* after every context is gone */
    d->client_ssl_ctx = NULL;
}
