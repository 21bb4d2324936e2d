/*
 * server.h - the demixd process: its shared context and the pieces that
 * run on the lws service thread.
 *
 * Threads (the whole picture; each file's header details its part):
 *
 *   main      = the lws service thread. Owns every lws object: accepts
 *               connections, parses messages, runs each session's codecs
 *               and resamplers (session_in.c, session_out.c), serves HTTP.
 *   scheduler   owns the engine; batches one hop of every ready session
 *               per step (sched.c). Talks to sessions only through their
 *               streams (stream.h) and wakes lws with lws_cancel_service.
 *   file workers  one per concurrent file API job (files.c): decode the
 *               upload, feed a stream, encode the stems, build the ZIP.
 *   signals     waits for SIGINT/SIGTERM (main.c) and asks the lws thread
 *               to stop; during shutdown it also ticks it every 100 ms.
 *   pool        the engine's math threads (threadpool.h), only inside a
 *               step.
 *
 * Wake-ups: any thread calls demixd_wake(); the first call after the lws
 * thread last looked does one lws_cancel_service(), later ones only find
 * the flag already set. The lws thread clears the flag before it scans
 * every session and pending file job (LWS_CALLBACK_EVENT_WAIT_CANCELLED),
 * so a wake-up during the scan causes one more scan: wake-ups coalesce and
 * each one drains everything.
 */
#ifndef DEMIXD_SERVER_H
#define DEMIXD_SERVER_H

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "engine.h"
#include "metrics.h"
#include "options.h"
#include "protocol.h"
#include "sched.h"
#include "tokens.h"

typedef struct demixd_session demixd_session;
typedef struct demixd_http demixd_http;
typedef struct demixd_files demixd_files;

typedef struct demixd {
    /* immutable once the lws thread starts serving */
    demixd_options opt;
    demix_model *model;
    const demix_model_config *cfg;
    char names[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
    int num_sources;
    demix_threadpool *pool;
    demix_engine *engine;
    char backend[16];
    int capacity;            /* measured real-time capacity (sessions) */
    int max_sessions;        /* live session limit */
    char web_root[PATH_MAX]; /* resolved, "" when none */
    demixd_tokens *tokens;   /* NULL: every token is accepted */
    demixd_metrics *metrics;
    demixd_sched *sched;
    demixd_files *files;
    struct lws_context *lws;
    demix_threadpool *encode_pool;  /* encode_pool.h; NULL: no pool */
    demixd_session **encode_batch;  /* [max_sessions], lws thread */
    int port;        /* the bound port */
    uint64_t id_key; /* random, for session ids */

    /* any thread */
    atomic_int wake_pending;
    atomic_int stop_requested;

    /* lws thread */
    demixd_session *sessions; /* every WebSocket connection */
    int session_count;
    demixd_http *waiting;     /* HTTP requests whose file job runs */
    int waking;               /* in the wake-up's scan (callbacks.c) */
    int stopping;             /* shutdown began */
    int64_t stop_deadline_ns; /* then: force-close after it */
    int forced;               /* the force-close was done */
    int exit_loop;
    uint64_t serial;
} demixd;

/* Per-connection data lws allocates for protocol "demix.v1" (HTTP and WS
 * connections alike; zeroed by lws). */
typedef struct demixd_conn {
    demixd_session *session; /* WebSocket connections */
    demixd_http *http;       /* HTTP requests */
} demixd_conn;

#define DEMIXD_SHUTDOWN_GRACE_S 5 /* live sessions get this long to flush */

/* Ask the lws thread to scan sessions and jobs. Any thread. */
void demixd_wake(demixd *d);

/* The lws protocol callback (callbacks.c): dispatches WebSocket reasons to
 * session.c and HTTP reasons to http.c. lws thread. */
int demixd_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len);

/* ------------------------------------------------ session.c (lws thread) */

/* A WebSocket connection was established on /v1/stream. NULL on OOM. */
demixd_session *demixd_session_open(demixd *d, struct lws *wsi);
/* A received chunk (LWS_CALLBACK_RECEIVE). */
void demixd_session_receive(demixd_session *s, const void *in, size_t len);
/* LWS_CALLBACK_SERVER_WRITEABLE; -1: close the connection now. */
int demixd_session_writeable(demixd_session *s);
/* LWS_CALLBACK_TIMER: the start timeout. */
void demixd_session_timer(demixd_session *s);
/* The connection is gone (LWS_CALLBACK_CLOSED): free everything. */
void demixd_session_closed(demixd_session *s);
/* A wake-up: resume paused input, turn new output hops into messages,
 * notice scheduler failures. */
void demixd_session_wake(demixd_session *s);
/* Server shutdown: finish what was received, then close 1001. */
void demixd_session_shutdown(demixd_session *s);
/* The shutdown grace is over: close 1001 now. */
void demixd_session_force_close(demixd_session *s);

/* --------------------------------------------------- http.c (lws thread) */

/* LWS_CALLBACK_HTTP for uri; returns what the callback returns. */
int demixd_http_request(demixd *d, struct lws *wsi, demixd_conn *c,
                        const char *uri);
int demixd_http_body(demixd_http *h, const void *in, size_t len);
int demixd_http_body_done(demixd_http *h);
int demixd_http_writeable(demixd_http *h);
void demixd_http_closed(demixd_http *h);
/* Wake-up: requests whose job finished get their response started. */
void demixd_http_wake(demixd *d);
/* Shutdown: cancel running jobs, answer 503. */
void demixd_http_shutdown(demixd *d);

#endif /* DEMIXD_SERVER_H */
