/*
 * event_loop.h - what a service thread waits in: lws's own poll() loop or
 * a libev loop (epoll) that lws runs on as a foreign loop.
 *
 * Why: lws 4.1's default loop calls poll() over every socket of the thread
 * on each wake-up, so a thread's cost per wake grows with its sockets
 * (on the 2-core machine 1500 idle connections beside 30 sessions raised
 * the service threads' CPU per session-hop from 36 to 214 us). epoll, via
 * libev, costs per ready socket. libev needs one loop per thread that lws
 * does not own: lws's own libev loops each attach the SIGINT watcher,
 * which libev allows on one loop only (an abort with a second context).
 *
 * Thread context: everything on the service thread that owns the loop.
 */
#ifndef DEMIXD_EVENT_LOOP_H
#define DEMIXD_EVENT_LOOP_H

#include <libwebsockets.h>

#include "options.h" /* demixd_event_loop_kind */

typedef struct demixd_event_loop {
    demixd_event_loop_kind kind;
    void *ev;          /* struct ev_loop *, epoll only */
    void *foreign[1];  /* info->foreign_loops points here */
    void *kick;        /* struct ev_timer *, epoll only (event_loop.c) */
    struct lws_context *ctx;
} demixd_event_loop;

/* Prepare `info` for a context on this loop (epoll: a new libev loop,
 * LWS_SERVER_OPTION_LIBEV, foreign_loops). 0, or -1 when libev has no
 * epoll here (then nothing is changed). */
int demixd_event_loop_init(demixd_event_loop *el, demixd_event_loop_kind kind,
                           struct lws_context_creation_info *info);

/* Wait for and handle at least one event of the context given to
 * demixd_event_loop_started (or return at once if some are pending).
 * < 0: lws's service failed (poll only). */
int demixd_event_loop_run_once(demixd_event_loop *el);

/* After lws_create_context on this loop: the context it serves (epoll:
 * also starts the timer kick of event_loop.c). */
void demixd_event_loop_started(demixd_event_loop *el, struct lws_context *ctx);

/* After lws_context_destroy: the loop itself. */
void demixd_event_loop_free(demixd_event_loop *el);

#endif
