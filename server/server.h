/*
 * server.h - the demixd process: its shared context, its service threads,
 * and the pieces that run on a service thread.
 *
 * Threads (the whole picture; each file's header details its part):
 *
 *   service   N service threads (--service-threads; service.c), each with
 *             its own lws context listening on the same port
 *             (SO_REUSEPORT: the kernel spreads connections over them).
 *             A service thread owns every lws object of its context and
 *             the sessions and HTTP requests on it: socket I/O, message
 *             parsing, each session's codecs and resamplers
 *             (session_in.c, session_out.c), static files. Sessions never
 *             move between threads.
 *   scheduler owns the engine; batches one hop of every ready session,
 *             whichever thread owns it, per step (scheduler.c). Talks to
 *             sessions only through their streams (lane.h): hops go
 *             through each stream's bounded rings, news comes back through
 *             each service thread's ready ring, and the thread is woken
 *             with lws_cancel_service on its own context.
 *   file workers  one per concurrent file API job (files.c): decode the
 *             upload, feed a stream, encode the stems, build the ZIP.
 *   signals   waits for SIGINT/SIGTERM (main.c) and asks every service
 *             thread to stop; during shutdown it also ticks them every
 *             100 ms.
 *   pool      the engine's math threads (threadpool.h), only inside a
 *             step; and the scheduler's copy pool (gathering inputs and
 *             scattering outputs of large batches).
 *   main      starts everything, then waits for the service threads.
 *
 * Wake-ups: any thread calls demixd_service_wake(); the first call after
 * the service thread last looked does one lws_cancel_service(), later ones
 * only find the flag already set. The service thread clears the flag
 * before it looks (LWS_CALLBACK_EVENT_WAIT_CANCELLED): it drains its ready
 * ring, checks its waiting file jobs and, while stopping, every session;
 * a wake-up during that causes one more look: wake-ups coalesce and each
 * one drains everything.
 */
#ifndef DEMIXD_SERVER_H
#define DEMIXD_SERVER_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "engine.h"
#include "metrics.h"
#include "options.h"
#include "protocol.h"
#include "scheduler.h"
#include "addr_limit.h"
#include "spsc_ring.h"
#include "tokens.h"

/* Bytes of WebSocket frames one session writes per send (server.h's
 * ws_batch; the protocol's tx_packet_size in service.c is this plus
 * frame headers' slack, so lws sends a batch in one go). */
#define DEMIXD_WS_BATCH_BYTES (64 * 1024)

typedef struct demixd_session demixd_session;
typedef struct demixd_http demixd_http;
typedef struct demixd_files demixd_files;

/* One service thread (service.c): an lws context and everything on it. */
typedef struct demixd_service {
    /* immutable once started */
    struct demixd *d;
    int index; /* 0..service_count-1: the scheduler's owner number */
    pthread_t thread;

    /* any thread */
    atomic_int wake_pending;
    pthread_mutex_t wake_lock; /* guards lws against its destruction */
    struct lws_context *lws;   /* wake_lock for others; the thread's own */
    int start_status;          /* service.c's start handshake */
    /* new connections from the accept thread (acceptor.c), to adopt */
    demixd_spsc_ring accepted;
    atomic_int wsi_live; /* its lws connections: the acceptor's load */
    int wsi_base;        /* wsi_live of the bare context (lws's own) */
    /* time in, and calls of, each kind of work: written by this thread
     * alone (a relaxed load and store, no read-modify-write), read by
     * /metrics on any thread */
    _Atomic uint64_t phase_ns[DEMIXD_PHASE_COUNT];
    _Atomic uint64_t phase_calls[DEMIXD_PHASE_COUNT];

    /* this service thread */
    demixd_session *sessions; /* every WebSocket connection */
    int session_count;
    demixd_http *waiting;     /* HTTP requests whose file job runs */
    int stopping;             /* shutdown began */
    int64_t stop_deadline_ns; /* then: force-close after it */
    int64_t drain_end_ns;     /* --drain-seconds: live sessions end then */
    int drained;              /* the drain's end was done */
    int forced;               /* the force-close was done */
    int exit_loop;
    uint64_t serial;
    /* one chunk buffer for every HTTP response of this thread: it writes
     * one at a time, and lws copies what it cannot send at once */
    unsigned char http_chunk[LWS_PRE + 32 * 1024];
    /* one send's worth of a session's framed WebSocket messages
     * (session.c's writeable): every session of the thread writes from it
     * in turn, and lws keeps what the socket did not take. At most the
     * protocol's tx_packet_size, which bounds one lws send. */
    unsigned char ws_batch[LWS_PRE + DEMIXD_WS_BATCH_BYTES];
} demixd_service;

typedef struct demixd {
    /* immutable once the service threads start */
    demixd_options opt;
    demix_model *model;
    const demix_model_config *cfg;
    char names[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
    int num_sources;
    demix_threadpool *pool;      /* the engine's math threads */
    demix_threadpool *copy_pool; /* the scheduler's copies; may be pool */
    demix_engine *engine;
    char backend[16];
    /* the service threads' loop (service thread 0 sets it before it
     * reports its start: epoll unless that fell back to poll) */
    demixd_event_loop_kind event_loop;
    int capacity;            /* measured real-time capacity (sessions) */
    int max_sessions;        /* live session limit */
    char web_root[PATH_MAX]; /* resolved, "" when none */
    demixd_tokens *tokens;   /* NULL: every token is accepted */
    demixd_addr_limit *addr_limit; /* --max-per-address (thread-safe) */
    demixd_metrics *metrics;
    demixd_scheduler *sched;
    demixd_files *files;
    demixd_service *services;
    /* --tls-cert: the one client SSL_CTX every service thread's vhost is
     * given (service.c says why); NULL without TLS */
    SSL_CTX *client_ssl_ctx;
    int service_count;
    int port;        /* the bound port */
    int listen_fd;   /* the listening socket (listener.h) */
    /* the accept thread (acceptor.c) */
    pthread_t acceptor;
    int acceptor_running;
    int acceptor_stop_fd; /* eventfd: written to stop it */
    uint64_t id_key; /* random, for session ids */

    /* any thread */
    atomic_int stop_requested;
    atomic_int open_sessions; /* WebSocket connections, every thread */
    /* sessions holding a live stream they have not released; the
     * scheduler's live count minus this is the released slots it has not
     * returned yet (session.c waits for them before a close) */
    atomic_int live_held;
} demixd;

/* Per-connection data lws allocates for protocol "demix.v1" (HTTP and WS
 * connections alike; zeroed by lws). */
typedef struct demixd_conn {
    demixd_session *session; /* WebSocket connections */
    demixd_http *http;       /* HTTP requests */
} demixd_conn;

#define DEMIXD_SHUTDOWN_GRACE_S 5 /* live sessions get this long to flush */
/* A request's URI and the values of the headers lws knows (Cookie,
 * Authorization, ...) together: larger is 431 (http.c, callbacks.c).
 * lws keeps a request's headers, those it does not know included, in
 * DEMIXD_LWS_HEADER_BYTES; lws 4.1 closes a request that does not fit
 * there without an answer (docs/server.md). */
#define DEMIXD_MAX_HEADER_BYTES 8192
#define DEMIXD_LWS_HEADER_BYTES 16384

/* ------------------------------------------------------------ service.c */

/* Make count service threads' state (d->services, d->service_count):
 * before the scheduler, which wakes them by index. -1 on OOM. */
int demixd_services_init(demixd *d, int count);
/* Listen on --host/--port (d->port: the bound port), create the service
 * threads' lws contexts, each on its own thread, and start the accept
 * thread that hands them the connections. -1 (logged) when it cannot
 * listen or a thread cannot start: none is left running then. Main
 * thread. */
int demixd_services_start(demixd *d);
/* Wait until every service thread has ended (after a stop request and
 * its shutdown), then stop the accept thread and close the listening
 * socket. 0 when all ended after a stop, 1 when one failed. Main
 * thread. */
int demixd_services_join(demixd *d);
/* Free the service threads' memory, after join and after every thread
 * that may wake them (scheduler, file workers) has stopped. */
void demixd_services_free(demixd *d);

/* Adopt the connections the accept thread handed this thread. The
 * service thread (its wake callback). */
void demixd_service_adopt(demixd_service *svc);

/* The accept thread (acceptor.c): start it once the service threads
 * run (d->listen_fd open); stop it after they have ended, closing the
 * connections still waiting in their rings. Main thread. */
int demixd_acceptor_start(demixd *d);
void demixd_acceptor_stop(demixd *d);
/* A service thread's accept ring (at init: all its memory) and the next
 * descriptor in it, -1 when none (the service thread). */
int demixd_acceptor_ring_init(demixd_service *svc);
int demixd_acceptor_take(demixd_service *svc);
/* Connections the thread serves now (any thread; a snapshot). */
int demixd_service_connections(demixd_service *svc);

/* A service thread's phase accounting (callbacks.c): add the time since
 * t0 (demixd_now_ns) to phase p; the thread itself. The thread's CPU
 * seconds so far and its phase totals added into ns[] and calls[] (any
 * thread; a snapshot). */
void demixd_service_phase_done(demixd_service *svc, demixd_service_phase p,
                               int64_t t0);
double demixd_service_cpu_seconds(demixd_service *svc);
void demixd_service_phase_totals(demixd_service *svc, uint64_t *ns,
                                 uint64_t *calls);

/* Ask a service thread to look at its ready ring, jobs and, while
 * stopping, sessions. Any thread. */
void demixd_service_wake(demixd_service *svc);
/* The same for every service thread. Any thread. */
void demixd_wake_all(demixd *d);

/* The lws protocol callback (callbacks.c): dispatches WebSocket reasons to
 * session.c and HTTP reasons to http.c. The context's service thread. */
int demixd_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len);
/* The bytes of a request's URI and known headers (431 beyond
 * DEMIXD_MAX_HEADER_BYTES). The service thread. */
size_t demixd_http_header_bytes(struct lws *wsi);

/* ------------------------------------- session.c (the session's service thread) */

/* A WebSocket connection was established on /v1/stream. NULL on OOM. */
demixd_session *demixd_session_open(demixd_service *svc, struct lws *wsi);
/* A received chunk (LWS_CALLBACK_RECEIVE). */
void demixd_session_receive(demixd_session *s, const void *in, size_t len);
/* LWS_CALLBACK_SERVER_WRITEABLE; -1: close the connection now. */
int demixd_session_writeable(demixd_session *s);
/* LWS_CALLBACK_TIMER: the start timeout. */
void demixd_session_timer(demixd_session *s);
/* The connection is gone (LWS_CALLBACK_CLOSED): free everything. */
void demixd_session_closed(demixd_session *s);
/* News from the scheduler (or a shutdown look): resume paused input,
 * turn new output hops into messages, notice scheduler failures. */
void demixd_session_wake(demixd_session *s);
/* Server shutdown: finish what was received, then close 1001. */
void demixd_session_shutdown(demixd_session *s);
/* The drain (--drain-seconds) is over: a session still streaming gets
 * `restarting` and close 1012; an idle one `shutting_down`. */
void demixd_session_drain_end(demixd_session *s);
/* The shutdown grace is over: close 1001 now. */
void demixd_session_force_close(demixd_session *s);

/* ---------------------------------------- http.c (the request's service thread) */

/* LWS_CALLBACK_HTTP for uri; returns what the callback returns. */
int demixd_http_request(demixd_service *svc, struct lws *wsi, demixd_conn *c,
                        const char *uri);
/* 1 when the connection's address had --max-per-address connections open
 * when it came (callbacks.c): its requests and upgrade get 429. */
int demixd_conn_over_limit(struct lws *wsi);
int demixd_http_body(demixd_http *h, const void *in, size_t len);
int demixd_http_body_done(demixd_http *h);
int demixd_http_writeable(demixd_http *h);
/* The security headers lws adds to every HTTP response (vhost headers). */
const struct lws_protocol_vhost_options *demixd_http_security_headers(void);
/* LWS_CALLBACK_TIMER: an upload's rate window is over. */
void demixd_http_timer(demixd_http *h);
void demixd_http_closed(demixd_http *h);
/* Wake-up: requests whose job finished get their response started. */
void demixd_http_wake(demixd_service *svc);
/* Shutdown: cancel running jobs, answer 503. */
void demixd_http_shutdown(demixd_service *svc);

#endif /* DEMIXD_SERVER_H */
