/*
 * session.c - one WebSocket session of the protocol (docs/protocol.md):
 * message assembly, the state machine (IDLE -> STREAMING -> ENDING), the
 * session's life around it (OPEN -> [SETTLING ->] CLOSING, session_impl.h),
 * the control messages, errors and closes, and writing the queue in
 * SERVER_WRITEABLE. Audio in and out live in session_in.c and
 * session_out.c.
 *
 * Messages. A message may arrive in several fragments or reads; it is
 * handled from lws's buffer when it arrives whole, else assembled in
 * rx_buf (DEMIX_PROTO_MAX_BINARY_BYTES, made on first need). A message
 * that passes its limit (4096 text, 65536 binary) is refused as soon as it
 * does (too_large, 1009) without waiting for its end.
 *
 * Errors. demixd__session_fail queues the error message and a close with
 * the code's close code, releases the stream (the scheduler frees the
 * slot), and ignores everything the client sends afterwards. The queue
 * always keeps room for this (demixd__session_txq_reserve). A session that
 * does not drain its queue within CLOSE_GRACE_S after that is dropped.
 *
 * Lifetime. The session is made when the WebSocket is established and
 * freed in LWS_CALLBACK_CLOSED, which also releases its stream if it still
 * holds one: the scheduler then closes the slot between steps. Nothing
 * else refers to a session: the scheduler knows only the stream, whose
 * owner_ctx is the session; news reaches the session through its service
 * thread's ready ring, which checks that the stream was not released
 * (callbacks.c), and a session lives and dies on that one thread.
 *
 * Tokens. With --tokens, a start whose token is missing or wrong gets
 * unauthorized and close 1008 (tokens.h compares in constant time);
 * `stats` before start stays open, like /metrics.
 *
 * Shutdown. A session that is streaming is ended by the server as if the
 * client had sent `end`: everything received so far is separated and sent
 * (with LAST flags), then the error shutting_down and close 1001. Audio
 * the client sends after that moment is not processed (the error says
 * why). Idle sessions get shutting_down at once; sessions already ending
 * finish normally with their summary.
 *
 * Thread context: the session's service thread, every function.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session_impl.h"

#define CLOSE_GRACE_S 10
#define IDLE_TXQ_BYTES (32 * 1024) /* > error, close, stats, reserve */

size_t demixd__session_txq_reserve(const demixd_session *s)
{
    /* error or summary, close, one stats reply */
    return 3 * demixd_txq_entry_bytes(&s->txq, DEMIX_PROTO_MAX_TEXT_BYTES + 1);
}

void demixd__session_request_write(demixd_session *s)
{
    if (s->txq.count || s->force)
        lws_callback_on_writable(s->wsi);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

demixd_session *demixd_session_open(demixd_service *svc, struct lws *wsi)
{
    demixd *d = svc->d;
    demixd_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (demixd_txq_init(&s->txq, IDLE_TXQ_BYTES, LWS_PRE)) {
        free(s);
        return NULL;
    }
    s->d = d;
    s->svc = svc;
    s->wsi = wsi;
    s->state = DEMIX_PROTO_STATE_IDLE;
    s->opened_ns = demixd_now_ns();
    s->result = DEMIXD_RESULT_VANISHED;
    snprintf(s->id, sizeof s->id, "%016" PRIx64,
             splitmix64(d->id_key ^ (uint64_t)svc->index << 48 ^
                        ++svc->serial));
    s->next = svc->sessions;
    if (svc->sessions)
        svc->sessions->prev = s;
    svc->sessions = s;
    svc->session_count++;
    atomic_fetch_add(&d->open_sessions, 1);
    lws_set_timer_usecs(wsi, (lws_usec_t)SESSION_START_TIMEOUT_S * 1000000);
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    demixd_log(DEMIXD_LOG_DEBUG, "ws_open", "session=%s thread=%d peer=%s",
               s->id, svc->index, peer);
    return s;
}

/* Queue one JSON text message (len <= DEMIX_PROTO_MAX_TEXT_BYTES). */
static int queue_text(demixd_session *s, const char *text, size_t len)
{
    uint8_t *p = demixd_txq_reserve(&s->txq, len);
    if (!p)
        return DEMIX_ENOSPACE;
    memcpy(p, text, len);
    demixd_txq_commit(&s->txq, DEMIXD_TXQ_TEXT, len);
    return DEMIX_OK;
}

static void queue_close(demixd_session *s, int code, const char *reason)
{
    size_t rl = strlen(reason);
    uint8_t *p = demixd_txq_reserve(&s->txq, 2 + rl);
    if (!p) {
        s->force = 1; /* cannot happen: the reserve keeps room */
        return;
    }
    uint16_t c = (uint16_t)code;
    memcpy(p, &c, 2);
    memcpy(p + 2, reason, rl);
    demixd_txq_commit(&s->txq, DEMIXD_TXQ_CLOSE, 2 + rl);
}

static void update_counters(demixd_session *s)
{
    if (s->stream)
        demixd_lane_counters(s->stream, &s->hops_cached, &s->late_cached);
}

/* Give up the stream: the scheduler closes the slot. Called when the
 * close has just been queued (CLOSING; SETTLING after it when a live slot
 * was held) or when the session is gone. */
static void release_stream(demixd_session *s)
{
    if (!s->stream)
        return;
    update_counters(s);
    demixd_lane_release(s->stream);
    s->stream = NULL;
    if (s->held_live) {
        atomic_fetch_sub(&s->d->live_held, 1);
        s->held_live = 0;
        /* the close just queued waits for the slot (settled()) */
        s->life = DEMIXD_SESSION_SETTLING;
        s->settle_deadline_ns =
            demixd_now_ns() + (int64_t)SESSION_SETTLE_MAX_MS * 1000000;
        lws_set_timer_usecs(s->wsi, SESSION_SETTLE_POLL_US);
    }
}

/* Has the scheduler returned every released live slot (this session's
 * among them)? Its live count then equals the sessions holding a stream;
 * a reservation being made on another thread can only make this wait a
 * little longer. Past the deadline: yes, whatever the counts say. */
static int settled(demixd_session *s)
{
    demixd *d = s->d;
    return demixd_scheduler_count(d->sched, DEMIXD_LANE_LIVE) <=
               atomic_load(&d->live_held) ||
           demixd_now_ns() >= s->settle_deadline_ns;
}

void demixd__session_fail(demixd_session *s, demix_proto_code code,
                          const char *field, const char *fmt, ...)
{
    if (demixd__session_closing(s))
        return;
    demix_proto_error e;
    memset(&e, 0, sizeof e);
    e.code = code;
    if (field)
        snprintf(e.field, sizeof e.field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (!e.message[0])
        snprintf(e.message, sizeof e.message, "Error.");
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t n = 0;
    if (demix_proto_write_error(&e, buf, sizeof buf, &n) == DEMIX_OK)
        (void)queue_text(s, buf, n);
    queue_close(s, demix_proto_close_code(code), demix_proto_code_name(code));
    s->life = DEMIXD_SESSION_CLOSING;
    s->result = code == DEMIX_PROTO_ERR_AT_CAPACITY     ? DEMIXD_RESULT_REFUSED
                : code == DEMIX_PROTO_ERR_SHUTTING_DOWN ||
                        code == DEMIX_PROTO_ERR_RESTARTING
                    ? DEMIXD_RESULT_SHUTDOWN
                                                        : DEMIXD_RESULT_ERROR;
    release_stream(s);
    demixd__session_in_resume(s);
    char q[DEMIX_PROTO_MESSAGE_BYTES];
    demixd_log(code == DEMIX_PROTO_ERR_INTERNAL ? DEMIXD_LOG_ERROR
                                                : DEMIXD_LOG_INFO,
               "session_error", "session=%s code=%s field=%s msg=\"%s\"", s->id,
               demix_proto_code_name(code), e.field[0] ? e.field : "-",
               demixd_log_quote(e.message, q, sizeof q));
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
    demixd__session_request_write(s);
}

/* --------------------------------------------------------------- replies */

static void fill_stats(demixd_session *s, demix_proto_stats *st)
{
    demixd *d = s->d;
    memset(st, 0, sizeof *st);
    st->sessions = demixd_scheduler_count(d->sched, DEMIXD_LANE_LIVE);
    st->max_sessions = d->max_sessions;
    demixd_metrics_recent(d->metrics, &st->step_ms_p50, &st->step_ms_p99,
                          &st->batch_mean, &st->hops, &st->uptime_s);
    if (s->state != DEMIX_PROTO_STATE_IDLE) {
        update_counters(s);
        st->has_session = 1;
        snprintf(st->session, sizeof st->session, "%s", s->id);
        st->session_input_frames = (uint64_t)s->in_frames;
        st->session_output_frames = (uint64_t)s->out_frames;
        st->session_hops = s->hops_cached;
        st->session_late_hops = s->late_cached;
    }
}

/* Stats replies owed, while the queue has room beyond the reserve. */
static void write_stats(demixd_session *s)
{
    while (s->stats_pending > 0 && !demixd__session_closing(s)) {
        size_t need =
            demixd_txq_entry_bytes(&s->txq, DEMIX_PROTO_MAX_TEXT_BYTES + 1) +
            demixd__session_txq_reserve(s);
        if (s->txq.cap - demixd_txq_used(&s->txq) < need)
            return;
        demix_proto_stats st;
        fill_stats(s, &st);
        char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
        size_t n;
        if (demix_proto_write_stats(&st, buf, sizeof buf, &n) ||
            queue_text(s, buf, n)) {
            demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                                 "The server failed to write stats.");
            return;
        }
        s->stats_pending--;
    }
}

/* All output sent: summary and close 1000, or after a server-side end the
 * shutdown error and close 1001. */
static void queue_done(demixd_session *s)
{
    update_counters(s);
    if (s->ended_by != DEMIXD_SESSION_END_CLIENT) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_SHUTTING_DOWN, NULL,
                             "The server is shutting down; the audio "
                             "received before that was processed.");
        return;
    }
    demix_proto_summary sm;
    memset(&sm, 0, sizeof sm);
    snprintf(sm.session, sizeof sm.session, "%s", s->id);
    sm.input_frames = (uint64_t)s->in_frames;
    sm.output_frames = (uint64_t)s->in_frames;
    sm.duration_s = (double)s->in_frames / s->rate;
    sm.wall_s = (double)(demixd_now_ns() - s->start_ns) * 1e-9;
    sm.hops = s->hops_cached;
    sm.late_hops = s->late_cached;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t n;
    if (demix_proto_write_summary(&sm, buf, sizeof buf, &n) ||
        queue_text(s, buf, n)) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                             "The server failed to write the summary.");
        return;
    }
    queue_close(s, 1000, "end");
    s->life = DEMIXD_SESSION_CLOSING;
    s->result = DEMIXD_RESULT_OK;
    release_stream(s);
    demixd_log(DEMIXD_LOG_INFO, "session_end",
               "session=%s input_frames=%" PRId64 " duration_s=%.3f "
               "wall_s=%.3f hops=%" PRIu64 " late_hops=%" PRIu64,
               s->id, s->in_frames, sm.duration_s, sm.wall_s, sm.hops,
               sm.late_hops);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
}

/* Everything the session can do now without new input from the socket. */
static void service(demixd_session *s)
{
    if (!demixd__session_closing(s) && s->stream) {
        char why[160];
        int st = demixd_lane_error(s->stream, why, sizeof why);
        if (st) {
            /* the client gets a plain message; the log gets the reason */
            char q[200];
            demixd_log(DEMIXD_LOG_ERROR, "session_engine_failure",
                       "session=%s status=%s msg=\"%s\"", s->id,
                       demix_errname(st), demixd_log_quote(why, q, sizeof q));
            demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                                 "The server's engine failed; the session "
                                 "cannot go on.");
        } else {
            if (s->rx_paused || (s->state == DEMIX_PROTO_STATE_ENDING &&
                                 (!s->input_flushed || s->pad_left > 0)))
                demixd__session_pump(s);
            if (demixd__session_produce(s))
                queue_done(s); /* the session is closing after it */
        }
    }
    write_stats(s);
    demixd__session_request_write(s);
}

/* --------------------------------------------------------------- control */

/* latency.h's measured trail (model window, hop waiting, both
 * resamplers), plus with Opus output the encoder's lookahead and one
 * packet: a packet leaves only when its last frame is there, so its first
 * frame waits a packet's duration (20 ms by default) more than PCM's. */
static int compute_latency(const demixd_session *s)
{
    int lat = s->path_latency;
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS)
        lat += s->opus_pre_skip + s->opus_frame_frames;
    return lat;
}

static int queue_ready(demixd_session *s, const demix_proto_start *st)
{
    const demix_model_config *cfg = s->d->cfg;
    demix_proto_ready r;
    memset(&r, 0, sizeof r);
    snprintf(r.session, sizeof r.session, "%s", s->id);
    snprintf(r.model_name, sizeof r.model_name, "%s", cfg->name);
    r.model_rate_hz = cfg->sample_rate_hz;
    r.hop_samples = cfg->hop_samples;
    r.window_samples = cfg->window_samples;
    r.latency_samples = cfg->window_samples;
    r.source_count = s->d->num_sources;
    memcpy(r.sources, s->d->names, sizeof r.sources);
    demix_proto_ready_from_start(&r, st);
    r.opus_pre_skip_frames =
        s->out_codec == DEMIX_PROTO_CODEC_OPUS ? s->opus_pre_skip : 0;
    r.latency_frames = s->latency_frames;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t n;
    int rc = demix_proto_write_ready(&r, buf, sizeof buf, &n);
    if (rc)
        return rc;
    return queue_text(s, buf, n);
}

static void free_pipeline(demixd_session *s)
{
    demixd__session_in_free(s);
    demixd__session_out_free(s);
}

/* The start's token against the server's tokens (tokens.h; none
 * configured: any token or none passes). 0 when it passes, else the
 * session fails with unauthorized (close 1008). Checked before anything
 * else of the start, so a refused client learns nothing more. */
static int check_token(demixd_session *s, const demix_proto_start *st)
{
    demixd *d = s->d;
    demixd_auth a =
        demixd_tokens_check(d->tokens, st->has_token ? st->token : NULL,
                            st->has_token ? strlen(st->token) : 0);
    if (a == DEMIXD_AUTH_OK)
        return 0;
    demixd_metrics_auth_refused(d->metrics, DEMIXD_AUTH_API_STREAM);
    demixd__session_fail(s, DEMIX_PROTO_ERR_UNAUTHORIZED, "token", "%s",
                         a == DEMIXD_AUTH_MISSING
                             ? "This server requires a token: send it in "
                               "the start message (the web page takes it "
                               "from #token=... in its address)."
                             : "The token is not one this server accepts.");
    return -1;
}

static void on_start(demixd_session *s, demix_proto_start *st)
{
    demixd *d = s->d;
    demix_proto_error e;
    lws_set_timer_usecs(s->wsi, LWS_SET_TIMER_USEC_CANCEL);
    if (check_token(s, st))
        return;
    if (s->svc->stopping) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_SHUTTING_DOWN, NULL,
                             "The server is shutting down.");
        return;
    }
    if (demix_proto_start_resolve(
            st, (const char(*)[DEMIX_PROTO_NAME_BYTES])d->names, d->num_sources,
            &e)) {
        demixd__session_fail(s, e.code, e.field, "%s", e.message);
        return;
    }
    if (demixd_scheduler_reserve(d->sched, DEMIXD_LANE_LIVE) == DEMIX_EBUSY) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_AT_CAPACITY, NULL,
                             "The server is at capacity (%d sessions); try "
                             "again later.",
                             d->max_sessions);
        return;
    }
    const demix_model_config *cfg = d->cfg;
    s->rate = st->sample_rate_hz;
    s->ch = st->channels;
    s->C = cfg->channels;
    s->H = cfg->hop_samples;
    s->T = cfg->num_sources;
    s->model_rate = cfg->sample_rate_hz;
    char err[256] = "";
    int rc = demixd__session_in_setup(s, st, err, sizeof err);
    if (!rc)
        rc = demixd__session_out_setup(s, st, err, sizeof err);
    if (!rc) {
        rc = demixd_txq_grow(&s->txq, SESSION_TXQ_BYTES);
        if (rc)
            snprintf(err, sizeof err, "out of memory");
    }
    if (!rc) {
        /* Ask the engine for what the client gets: 16-bit samples unless
         * it asked for float32 (out_setup), its stems in its order, or its
         * mix made by the engine: the fewest bytes over PCIe and through
         * the lane (engine.h's output shapes). */
        demix_output_shape shape;
        demix_output_shape_init(&shape, cfg);
        shape.format = s->out_s16 ? DEMIX_SAMPLE_S16 : DEMIX_SAMPLE_F32;
        if (s->mode == DEMIX_PROTO_MODE_MIX) {
            shape.mix = 1;
            for (int t = 0; t < s->T; t++)
                shape.gains[t] = s->gain[t];
        } else {
            shape.count = s->nout;
            for (int j = 0; j < s->nout; j++)
                shape.sources[j] = s->out_source[j];
        }
        demixd_lane_params sp = {
            .kind = DEMIXD_LANE_LIVE,
            .channels = s->C,
            .hop_frames = s->H,
            .sources = s->T,
            .model_rate_hz = s->model_rate,
            .in_frames =
                (size_t)SESSION_IN_RING_HOPS * (size_t)s->H + s->in_margin,
            .out_hops = SESSION_OUT_RING_HOPS,
            .owner = s->svc->index,
            .owner_ctx = s,
            .shape = &shape,
        };
        rc = demixd_lane_create(&sp, &s->stream);
        if (rc)
            snprintf(err, sizeof err, "out of memory");
    }
    if (rc) {
        demixd_scheduler_unreserve(d->sched, DEMIXD_LANE_LIVE);
        demixd_lane_release(s->stream);
        s->stream = NULL;
        free_pipeline(s);
        demixd_log(DEMIXD_LOG_ERROR, "session_setup", "session=%s msg=\"%s\"",
                   s->id, err);
        demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                             "The server could not set up the session.");
        return;
    }
    demixd_scheduler_submit(d->sched, s->stream);
    atomic_fetch_add(&d->live_held, 1);
    s->held_live = 1;
    s->latency_frames = compute_latency(s);
    if (queue_ready(s, st)) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                             "The server failed to write ready.");
        return;
    }
    s->state = DEMIX_PROTO_STATE_STREAMING;
    s->start_ns = s->traffic_ns = demixd_now_ns();
    if (d->opt.idle_timeout_s > 0)
        lws_set_timer_usecs(s->wsi,
                            (lws_usec_t)d->opt.idle_timeout_s * 1000000);
    demixd_log(DEMIXD_LOG_INFO, "session_start",
               "session=%s thread=%d rate=%d channels=%d in=%s out=%s "
               "mode=%s outputs=%d latency_frames=%d",
               s->id, s->svc->index, s->rate, s->ch, demix_proto_codec_name(s->in_codec),
               demix_proto_codec_name(s->out_codec),
               s->mode == DEMIX_PROTO_MODE_MIX ? "mix" : "stems", s->nout,
               s->latency_frames);
    demixd__session_request_write(s);
}

static void on_text(demixd_session *s, const char *text, size_t len)
{
    demix_proto_client_msg msg;
    demix_proto_error e;
    if (demix_proto_parse_client(text, len, &msg, &e) ||
        demix_proto_check_order(s->state, s->mode, msg.type, &e)) {
        demixd__session_fail(s, e.code, e.field, "%s", e.message);
        return;
    }
    switch (msg.type) {
    case DEMIX_PROTO_START:
        on_start(s, &msg.start);
        break;
    case DEMIX_PROTO_GAINS:
        if (demix_proto_gains_apply(
                &msg.gains, (const char(*)[DEMIX_PROTO_NAME_BYTES])s->d->names,
                s->T, s->gain, &e))
            demixd__session_fail(s, e.code, e.field, "%s", e.message);
        else if (s->stream) /* the engine mixes: from its next step */
            demixd_lane_set_gains(s->stream, s->gain, s->T);
        break;
    case DEMIX_PROTO_END:
        s->state = DEMIX_PROTO_STATE_ENDING;
        s->ended_by = DEMIXD_SESSION_END_CLIENT;
        service(s);
        break;
    case DEMIX_PROTO_STATS:
        s->stats_pending++;
        service(s);
        break;
    default:
        demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                             "Unexpected message type.");
        break;
    }
}

static void on_message(demixd_session *s, const uint8_t *msg, size_t len,
                       int binary)
{
    if (s->ended_by == DEMIXD_SESSION_END_SERVER)
        return; /* after a server-side end: see the file header */
    if (binary)
        demixd__session_audio(s, msg, len);
    else
        on_text(s, (const char *)msg, len);
}

void demixd_session_receive(demixd_session *s, const void *in, size_t len)
{
    if (demixd__session_closing(s))
        return;
    s->traffic_ns = demixd_now_ns();
    if (!s->rx_in_msg) {
        s->rx_in_msg = 1;
        s->rx_binary = lws_frame_is_binary(s->wsi);
        s->rx_len = 0;
    }
    int final = lws_is_final_fragment(s->wsi);
    size_t limit = s->rx_binary ? DEMIX_PROTO_MAX_BINARY_BYTES
                                : DEMIX_PROTO_MAX_TEXT_BYTES;
    if (s->rx_len + len > limit) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_TOO_LARGE, NULL,
                             "A %s message is longer than %zu bytes.",
                             s->rx_binary ? "binary" : "text", limit);
        return;
    }
    if (final && s->rx_len == 0) {
        s->rx_in_msg = 0;
        on_message(s, in, len, s->rx_binary);
        return;
    }
    if (!s->rx_buf) {
        s->rx_buf = malloc(DEMIX_PROTO_MAX_BINARY_BYTES);
        if (!s->rx_buf) {
            demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                                 "Out of memory.");
            return;
        }
    }
    memcpy(s->rx_buf + s->rx_len, in, len);
    s->rx_len += len;
    if (final) {
        s->rx_in_msg = 0;
        on_message(s, s->rx_buf, s->rx_len, s->rx_binary);
    }
}

/* ---------------------------------------------------------- lws events */

int demixd_session_writeable(demixd_session *s)
{
    if (s->force) {
        static const char reason[] = "shutting_down";
        lws_close_reason(s->wsi, LWS_CLOSE_STATUS_GOINGAWAY,
                         (unsigned char *)reason, sizeof reason - 1);
        return -1;
    }
    /* Several messages to one send: a hop of four stems is four
     * messages, and on a busy box the send calls (with loopback clients,
     * the receiver's TCP work too) were most of a session's CPU. The
     * queue frames them (RFC 6455 server frames) into the thread's batch
     * buffer and lws writes it raw: whole frames only, so lws's own
     * framing state is never mid-message. A message larger than the
     * batch goes alone through lws's framing. */
    for (int i = 0; i < 16; i++) {
        demixd_txq_type type;
        uint8_t *p;
        size_t n;
        if (!demixd_txq_peek(&s->txq, &type, &p, &n))
            break;
        /* Whether the socket takes more is a poll() system call: asked
         * only before a second write, not after the one batch that
         * usually empties the queue. */
        if (i > 0 && lws_send_pipe_choked(s->wsi))
            break;
        if (type == DEMIXD_TXQ_CLOSE) {
            if (s->life == DEMIXD_SESSION_SETTLING)
                return 0; /* the timer asks again once the slot is back */
            uint16_t code;
            memcpy(&code, p, 2);
            lws_close_reason(s->wsi, (enum lws_close_status)code, p + 2, n - 2);
            demixd_txq_pop(&s->txq);
            return -1;
        }
        uint8_t *batch = s->svc->ws_batch + LWS_PRE;
        int entries = 0;
        size_t len = demixd_txq_frame(&s->txq, batch, DEMIXD_WS_BATCH_BYTES,
                                      &entries);
        int m;
        if (entries > 0) {
            m = lws_write(s->wsi, batch, len, LWS_WRITE_RAW);
        } else {
            len = n;
            entries = 1;
            m = lws_write(s->wsi, p, n,
                          type == DEMIXD_TXQ_TEXT ? LWS_WRITE_TEXT
                                                  : LWS_WRITE_BINARY);
        }
        if (m < (int)len) {
            demixd_log(DEMIXD_LOG_INFO, "ws_write_failed", "session=%s", s->id);
            return -1;
        }
        demixd_txq_pop_n(&s->txq, entries);
        s->traffic_ns = demixd_now_ns();
    }
    service(s);
    return 0;
}

/* One lws timer, three uses: the start timeout (IDLE), the idle timeout
 * (STREAMING, ENDING: --idle-timeout seconds without a message received
 * or written), and, once the stream is released, the wait for the slot's
 * return before the close goes out. */
void demixd_session_timer(demixd_session *s)
{
    if (s->life == DEMIXD_SESSION_SETTLING) {
        if (settled(s)) {
            s->life = DEMIXD_SESSION_CLOSING;
            lws_callback_on_writable(s->wsi);
        } else {
            lws_set_timer_usecs(s->wsi, SESSION_SETTLE_POLL_US);
        }
        return;
    }
    if (s->life == DEMIXD_SESSION_CLOSING)
        return;
    if (s->state == DEMIX_PROTO_STATE_IDLE) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_TIMEOUT, NULL,
                             "No start message within %d seconds.",
                             SESSION_START_TIMEOUT_S);
        return;
    }
    const int idle_s = s->d->opt.idle_timeout_s;
    if (idle_s <= 0)
        return;
    int64_t left_ns =
        s->traffic_ns + (int64_t)idle_s * 1000000000 - demixd_now_ns();
    if (left_ns > 0) {
        lws_set_timer_usecs(s->wsi, (lws_usec_t)(left_ns / 1000) + 1);
        return;
    }
    demixd__session_fail(s, DEMIX_PROTO_ERR_TIMEOUT, NULL,
                         "Nothing was received from the client or taken by "
                         "it for %d seconds.",
                         idle_s);
}

void demixd_session_wake(demixd_session *s)
{
    service(s);
}

void demixd_session_shutdown(demixd_session *s)
{
    if (demixd__session_closing(s))
        return;
    if (s->state == DEMIX_PROTO_STATE_IDLE) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_SHUTTING_DOWN, NULL,
                             "The server is shutting down.");
        return;
    }
    if (s->state == DEMIX_PROTO_STATE_STREAMING) { /* a server-side end */
        s->state = DEMIX_PROTO_STATE_ENDING;
        s->ended_by = DEMIXD_SESSION_END_SERVER;
    }
    service(s);
}

void demixd_session_drain_end(demixd_session *s)
{
    if (demixd__session_closing(s))
        return;
    if (s->state == DEMIX_PROTO_STATE_IDLE) {
        demixd__session_fail(s, DEMIX_PROTO_ERR_SHUTTING_DOWN, NULL,
                             "The server is shutting down.");
        return;
    }
    demixd__session_fail(s, DEMIX_PROTO_ERR_RESTARTING, NULL,
                         "The server is restarting: connect again (to "
                         "another instance) to go on.");
}

void demixd_session_force_close(demixd_session *s)
{
    s->force = 1;
    lws_callback_on_writable(s->wsi);
    /* A peer that does not read never makes us writeable. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 1);
}

void demixd_session_closed(demixd_session *s)
{
    demixd *d = s->d;
    if (s->rx_paused)
        demixd_metrics_pause(d->metrics, DEMIXD_PAUSE_INPUT, -1);
    if (s->held_live) { /* gone: nothing waits for the slot now */
        atomic_fetch_sub(&d->live_held, 1);
        s->held_live = 0;
    }
    release_stream(s);
    free_pipeline(s);
    demixd_txq_free(&s->txq);
    free(s->rx_buf);
    if (s->prev)
        s->prev->next = s->next;
    else
        s->svc->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->svc->session_count--;
    atomic_fetch_sub(&d->open_sessions, 1);
    if (s->state != DEMIX_PROTO_STATE_IDLE ||
        s->result != DEMIXD_RESULT_VANISHED)
        demixd_metrics_session_end(d->metrics,
                                   (demixd_session_result)s->result);
    if (s->state != DEMIX_PROTO_STATE_IDLE &&
        s->result == DEMIXD_RESULT_VANISHED)
        demixd_log(DEMIXD_LOG_INFO, "session_vanished",
                   "session=%s input_frames=%" PRId64 " hops=%" PRIu64, s->id,
                   s->in_frames, s->hops_cached);
    demixd_log(DEMIXD_LOG_DEBUG, "ws_closed", "session=%s", s->id);
    free(s);
}
