/*
 * loadgen_stats.c - the server's `stats` over a short connection (see
 * loadgen_stats.h).
 *
 * Thread context: the loop's service thread only.
 */
#include "loadgen_stats.h"

#include <stdio.h>
#include <string.h>

#include "client_parse.h"
#include "stream_url.h"

static void ev_open(void *user)
{
    loadgen_stats *q = user;
    q->opened = 1;
    ws_client_want_write(q->ws);
}

static void ev_writeable(void *user)
{
    loadgen_stats *q = user;
    if (q->sent || q->done)
        return;
    size_t len;
    char *buf = (char *)ws_client_tx_buffer(q->ws);
    if (demix_proto_write_stats_request(buf, ws_client_tx_capacity(q->ws),
                                        &len) ||
        ws_client_send(q->ws, 0, len)) {
        snprintf(q->err, sizeof q->err, "cannot send the stats request to %s",
                 q->url);
        return;
    }
    q->sent = 1;
}

static void ev_message(void *user, int binary, const uint8_t *data, size_t len)
{
    loadgen_stats *q = user;
    if (binary || q->ok || q->err[0])
        return;
    demix_proto_server_msg m;
    demix_proto_error perr;
    if (client_parse_server((const char *)data, len, &m, &perr)) {
        snprintf(q->err, sizeof q->err, "%s sent a malformed message: %s",
                 q->url, perr.message);
    } else if (m.type == DEMIX_PROTO_STATS) {
        q->stats = m.stats;
        q->ok = 1;
    } else if (m.type == DEMIX_PROTO_ERROR) {
        snprintf(q->err, sizeof q->err, "%s answered stats with error %s: %s",
                 q->url, demix_proto_code_name(m.error.code), m.error.message);
    } else {
        snprintf(q->err, sizeof q->err, "%s answered stats with %s", q->url,
                 demix_proto_type_name(m.type));
    }
    ws_client_close(q->ws, 1000, "stats");
}

static void ev_close(void *user, int code, const char *reason)
{
    loadgen_stats *q = user;
    q->done = 1;
    if (!q->ok && !q->err[0])
        snprintf(q->err, sizeof q->err,
                 "%s closed with %d%s%s before "
                 "answering stats",
                 q->url, code, reason[0] ? " " : "", reason);
}

static void ev_connect_error(void *user, const char *why)
{
    loadgen_stats *q = user;
    q->done = 1;
    q->failed_connect = 1;
    snprintf(q->err, sizeof q->err, "cannot connect to %s: %s%s", q->url, why,
             stream_url_hint(q->url, why));
}

void loadgen_stats_start(loadgen_stats *q, ws_client_loop *loop,
                         const char *url, double timeout_s)
{
    memset(q, 0, sizeof *q);
    q->url = url;
    q->timeout_s = timeout_s;
    q->started_s = ws_client_now_s();
    ws_client_events ev = {
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writeable = ev_writeable,
        .on_close = ev_close,
        .on_connect_error = ev_connect_error,
    };
    char err[384];
    if (ws_client_connect(loop, url, DEMIX_PROTO_SUBPROTOCOL, &ev, q, &q->ws,
                          err, sizeof err)) {
        q->done = 1;
        q->failed_connect = 1;
        snprintf(q->err, sizeof q->err, "cannot connect to %s: %s", url, err);
    }
}

void loadgen_stats_poll(loadgen_stats *q, double now)
{
    if (q->done || now - q->started_s <= q->timeout_s)
        return;
    if (!q->opened) {
        q->failed_connect = 1;
        snprintf(q->err, sizeof q->err,
                 "cannot connect to %s: no answer in "
                 "%.0f s",
                 q->url, q->timeout_s);
    } else if (!q->ok && !q->err[0]) {
        snprintf(q->err, sizeof q->err,
                 "%s did not answer stats within "
                 "%.0f s",
                 q->url, q->timeout_s);
    }
    q->done = 1;
    ws_client_destroy(q->ws); /* drops the connection, no more events */
    q->ws = NULL;
}

void loadgen_stats_free(loadgen_stats *q)
{
    ws_client_destroy(q->ws);
    q->ws = NULL;
}
