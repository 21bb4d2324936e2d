/*
 * loadgen_stats.h - ask a demixd for its own figures with the protocol's
 * `stats` request (docs/protocol.md section 6.3) on a connection of its
 * own: connect, send stats before any start (no token needed, no session
 * slot taken), read the reply, close 1000. `demix loadgen` asks before,
 * during (just as the streams end) and after a run.
 *
 * Usage sketch (on the loop of the sessions):
 *
 *     loadgen_stats q;
 *     loadgen_stats_start(&q, loop, url, 10.0);
 *     while (!q.done) { ws_client_loop_service(loop, 50);
 *                       loadgen_stats_poll(&q, ws_client_now_s()); }
 *     if (q.ok) ... q.stats.sessions, q.stats.step_ms_p99 ...
 *     else fprintf(stderr, "%s\n", q.err);
 *     loadgen_stats_free(&q);
 *
 * Thread context: the loop's service thread only.
 */
#ifndef DEMIX_LOADGEN_STATS_H
#define DEMIX_LOADGEN_STATS_H

#include "protocol.h"
#include "ws_client.h"

typedef struct loadgen_stats {
    const char *url;
    ws_client *ws;
    double started_s, timeout_s;
    int opened; /* the handshake completed */
    int sent;
    int done;           /* the reply came, or it failed; the connection ended */
    int ok;             /* stats holds the reply */
    int failed_connect; /* no connection could be made */
    demix_proto_stats stats;
    char err[512];
} loadgen_stats;

/* Start; q->done is set at once when the connection cannot start. */
void loadgen_stats_start(loadgen_stats *q, ws_client_loop *loop,
                         const char *url, double timeout_s);

/* Give up (err says so) after the timeout. */
void loadgen_stats_poll(loadgen_stats *q, double now);

void loadgen_stats_free(loadgen_stats *q);

#endif /* DEMIX_LOADGEN_STATS_H */
