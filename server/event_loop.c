/*
 * event_loop.c - the service threads' event loops (event_loop.h).
 *
 * epoll: a libev loop per service thread, made here and given to lws as
 * its foreign loop (LWS_SERVER_OPTION_LIBEV, info->foreign_loops); lws
 * loads its libev plugin (Debian's libwebsockets-evlib-ev) from its own
 * library folder and puts its sockets, timers and idle work in our loop.
 * The thread then runs ev_run(EVRUN_ONCE) where it ran lws_service: lws's
 * callbacks (wake-ups included: lws_cancel_service writes lws's event
 * pipe, a watcher of the loop) come from inside it.
 *
 * The kick. lws 4.1.6's libev glue re-arms its timer for lws's scheduled
 * callbacks (lws_set_timer_usecs, lws's own timeouts) only after socket
 * events, and with ev_timer_set on a watcher that may still be active
 * (which libev ignores): a timer set sooner than the armed one, with no
 * socket event after it, never fires (seen: a session's close after its
 * summary waited for good). Every KICK_S a timer of ours wakes the thread
 * through lws_cancel_service, a socket event for lws, after which it runs
 * what is due. So on a quiet thread lws's timers are up to KICK_S late.
 *
 * Thread context: event_loop.h.
 */
#include "event_loop.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

#define KICK_S 0.005

static void kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    lws_cancel_service(((demixd_event_loop *)w->data)->ctx);
}

int demixd_event_loop_init(demixd_event_loop *el, demixd_event_loop_kind kind,
                           struct lws_context_creation_info *info)
{
    memset(el, 0, sizeof *el);
    el->kind = kind;
    if (kind == DEMIXD_EVENT_LOOP_POLL)
        return 0;
    /* EVFLAG_NOSIGMASK: libev leaves the thread's signal mask alone (the
     * signal thread of main.c takes SIGINT and SIGTERM). */
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
    el->kick = calloc(1, sizeof(ev_timer));
    if (!loop || !el->kick) {
        if (loop)
            ev_loop_destroy(loop);
        free(el->kick);
        el->kick = NULL;
        return -1;
    }
    el->ev = loop;
    el->foreign[0] = loop;
    info->options |= LWS_SERVER_OPTION_LIBEV;
    info->foreign_loops = el->foreign;
    return 0;
}

int demixd_event_loop_run_once(demixd_event_loop *el)
{
    if (el->kind == DEMIXD_EVENT_LOOP_POLL)
        return lws_service(el->ctx, 0);
    ev_run((struct ev_loop *)el->ev, EVRUN_ONCE);
    return 0;
}

void demixd_event_loop_started(demixd_event_loop *el, struct lws_context *ctx)
{
    el->ctx = ctx;
    if (el->kind == DEMIXD_EVENT_LOOP_POLL)
        return;
    ev_timer *t = el->kick;
    ev_timer_init(t, kick, KICK_S, KICK_S);
    t->data = el;
    ev_timer_start((struct ev_loop *)el->ev, t);
}

void demixd_event_loop_free(demixd_event_loop *el)
{
    if (el->ev) {
        if (el->kick)
            ev_timer_stop((struct ev_loop *)el->ev, el->kick);
        ev_loop_destroy((struct ev_loop *)el->ev);
    }
    free(el->kick);
    el->kick = NULL;
    el->ev = NULL;
}
