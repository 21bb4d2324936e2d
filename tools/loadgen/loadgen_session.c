/*
 * loadgen_session.c - one live session of `demix loadgen` (see
 * loadgen_session.h): the protocol's client side, paced sending out of the
 * shared audio loop, counting and timing what comes back.
 *
 * Thread context: the loop's service thread only (every function here runs
 * in a connection event or in its thread's loop between services).
 */
#include "loadgen_session.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client_parse.h"

enum session_state {
    ST_CONNECTING = 0,
    ST_WAIT_READY, /* open; start sent on the first writeable */
    ST_STREAMING,  /* ready came: audio goes out */
    ST_ENDING,     /* end sent: the rest, then the summary */
    ST_FINISHING,  /* summary (or an error) came: waiting for the close */
};

/* ------------------------------------------------------------ helpers */

static void finish(loadgen_session *s, loadgen_outcome outcome,
                   loadgen_failure failure, const char *fmt, ...)
    DEMIX_PRINTF(4, 5);
static void finish(loadgen_session *s, loadgen_outcome outcome,
                   loadgen_failure failure, const char *fmt, ...)
{
    if (s->outcome != LOADGEN_RUNNING)
        return; /* the first word stands */
    s->outcome = outcome;
    s->failure = failure;
    s->failed_at = ws_client_now_s();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->message, sizeof s->message, fmt, ap);
    va_end(ap);
}

/* A failure seen on our side: say so to the server and close. */
static void fail_and_close(loadgen_session *s, loadgen_failure failure,
                           const char *fmt, ...) DEMIX_PRINTF(3, 4);
static void fail_and_close(loadgen_session *s, loadgen_failure failure,
                           const char *fmt, ...)
{
    if (s->outcome != LOADGEN_RUNNING)
        return;
    char text[sizeof s->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    finish(s, LOADGEN_FAILED, failure, "%s", text);
    if (loadgen_conn_is_open(&s->conn))
        loadgen_conn_close(&s->conn, 1000, "client error");
}

static int64_t stem_reached(const loadgen_session *s, int slot)
{
    int64_t r = s->next_pos[slot];
    if (s->cfg->codec == DEMIX_PROTO_CODEC_OPUS)
        r -= s->out_pre_skip; /* decoded frames dropped first */
    return r > 0 ? r : 0;
}

/* Output position every stem has reached. */
static int64_t reached_all(const loadgen_session *s)
{
    int64_t m = INT64_MAX;
    for (int i = 0; i < s->cfg->stem_count; i++) {
        int64_t r = stem_reached(s, i);
        if (r < m)
            m = r;
    }
    return m == INT64_MAX ? 0 : m;
}

int64_t loadgen_session_positions_sent(const loadgen_session *s)
{
    int64_t p = s->wire_frames_sent - s->in_pre_skip;
    return p > 0 ? p : 0;
}

int64_t loadgen_session_frames_received(const loadgen_session *s, int slot)
{
    int64_t r = stem_reached(s, slot);
    int64_t sent = loadgen_session_positions_sent(s);
    return r < sent ? r : sent;
}

double loadgen_session_lag_s(const loadgen_session *s, double now)
{
    if (s->t_ready == 0.0 || s->rate_hz <= 0)
        return 0.0;
    double live = (now - s->t0) * s->rate_hz; /* wire frames captured */
    if (live > (double)s->target_wire_frames)
        live = (double)s->target_wire_frames;
    double lag = live - s->in_pre_skip - (double)reached_all(s);
    return lag > 0 ? lag / s->rate_hz : 0.0;
}

int loadgen_session_done(const loadgen_session *s)
{
    return s->closed;
}

int loadgen_session_streaming(const loadgen_session *s)
{
    return s->state == ST_STREAMING && !s->closed &&
           s->outcome == LOADGEN_RUNNING;
}

const char *loadgen_failure_name(loadgen_failure f)
{
    switch (f) {
    case LOADGEN_FAIL_NONE:
        return "none";
    case LOADGEN_FAIL_CONNECT:
        return "connect";
    case LOADGEN_FAIL_SERVER:
        return "server_error";
    case LOADGEN_FAIL_CLOSED:
        return "closed";
    case LOADGEN_FAIL_PROTOCOL:
        return "protocol";
    case LOADGEN_FAIL_TIMEOUT:
        return "timeout";
    case LOADGEN_FAIL_INTERRUPTED:
        return "interrupted";
    case LOADGEN_FAIL_CLIENT:
        return "client";
    }
    return "unknown";
}

/* ------------------------------------------------------------- input */

static void send_start(loadgen_session *s)
{
    const loadgen_config *c = s->cfg;
    demix_proto_start st;
    demix_proto_start_init(&st);
    st.sample_rate_hz = loadgen_audio_rate(c->audio);
    st.channels = loadgen_audio_channels(c->audio);
    st.input_codec = c->codec;
    st.output_codec = c->codec;
    if (c->codec == DEMIX_PROTO_CODEC_OPUS) {
        st.input_pre_skip_frames = loadgen_audio_pre_skip(c->audio);
        st.opus_bitrate_bps =
            DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL * st.channels;
        st.opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
    }
    st.mode = DEMIX_PROTO_MODE_STEMS;
    st.stem_count = c->stem_count;
    for (int i = 0; i < c->stem_count; i++)
        memcpy(st.stems[i], c->stems[i], sizeof st.stems[i]);
    if (c->token) {
        st.has_token = 1;
        snprintf(st.token, sizeof st.token, "%s", c->token);
    }
    size_t len;
    char *buf = (char *)loadgen_conn_tx_buffer(&s->conn);
    if (demix_proto_write_start(&st, buf, loadgen_conn_tx_capacity(&s->conn), &len)) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT,
                       "the start message would be refused (check --stems "
                       "and --token)");
        return;
    }
    if (loadgen_conn_send(&s->conn, 0, len)) {
        fail_and_close(s, LOADGEN_FAIL_CLOSED,
                       "the connection failed while sending start");
        return;
    }
    s->start_sent = 1;
}

/* Judge whether the server kept up, once, at the end of streaming. */
static void judge(loadgen_session *s, double now)
{
    if (s->judged)
        return;
    s->judged = 1;
    s->lag_end_s = loadgen_session_lag_s(s, now);
    if (s->lag_end_s > s->lag_max_s)
        s->lag_max_s = s->lag_end_s;
    double allowed =
        (double)s->latency_frames / s->rate_hz + s->cfg->keep_up_margin_s;
    s->kept_up = s->lag_end_s <= allowed;
}

static void send_end(loadgen_session *s, double now)
{
    judge(s, now);
    char buf[64];
    size_t len;
    if (demix_proto_write_end(buf, sizeof buf, &len)) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT, "cannot write the end message");
        return;
    }
    memcpy(loadgen_conn_tx_buffer(&s->conn), buf, len);
    if (loadgen_conn_send(&s->conn, 0, len)) {
        fail_and_close(s, LOADGEN_FAIL_CLOSED,
                       "the connection failed while sending end");
        return;
    }
    s->end_sent = 1;
    s->state = ST_ENDING;
}

static double stream_deadline(const loadgen_session *s)
{
    return s->t0 + (double)(s->target_wire_frames + s->msg_frames) / s->rate_hz;
}

/* When message k is due: its last frame captured live. */
static double message_due(const loadgen_session *s, int64_t k)
{
    return s->t0 + (double)((k + 1) * s->msg_frames) / s->rate_hz;
}

static int blocked_in_flight(const loadgen_session *s)
{
    return loadgen_session_positions_sent(s) - reached_all(s) >=
           s->max_in_flight;
}

/* On writeable while streaming: the next message when it is due, or end. */
static void send_next(loadgen_session *s)
{
    double now = ws_client_now_s();
    if (s->stop_requested || s->wire_frames_sent >= s->target_wire_frames ||
        now >= stream_deadline(s)) {
        send_end(s, now);
        return;
    }
    double due = message_due(s, s->messages_sent);
    if (s->role != LOADGEN_ROLE_REFERENCE && due > now + LOADGEN_DUE_SLACK_S)
        return; /* the phase group's tick asks again */
    if (blocked_in_flight(s))
        return; /* output arrival asks again */

    uint8_t *buf = loadgen_conn_tx_buffer(&s->conn);
    size_t cap = loadgen_conn_tx_capacity(&s->conn);
    demix_proto_audio_in h = {
        .codec = s->cfg->codec, .flags = 0, .seq = s->seq_in};
    if (demix_proto_audio_in_write_header(&h, buf, cap)) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT, "cannot write an audio header");
        return;
    }
    size_t n = loadgen_audio_next(s->cfg->audio, &s->cursor,
                                  buf + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES,
                                  cap - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES);
    if (n == 0) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT,
                       "an audio message does not fit the send buffer");
        return;
    }
    if (loadgen_conn_send(&s->conn, 1, DEMIX_PROTO_AUDIO_IN_HEADER_BYTES + n)) {
        fail_and_close(s, LOADGEN_FAIL_CLOSED,
                       "the connection failed while sending audio");
        return;
    }
    /* The in-flight bound keeps this slot's previous message resolved
     * (handle_ready checks the ring is large enough for it). */
    s->probe_delay_s[s->messages_sent % LOADGEN_PROBES] = (float)(now - due);
    s->seq_in++;
    s->messages_sent++;
    s->wire_frames_sent += s->msg_frames;

    if (s->role == LOADGEN_ROLE_REFERENCE ||
        s->wire_frames_sent >= s->target_wire_frames ||
        message_due(s, s->messages_sent) <= now + LOADGEN_DUE_SLACK_S)
        loadgen_conn_want_write(&s->conn);
}

/* ------------------------------------------------------------ output */

/* Time the messages whose first position has now arrived on every stem.
 * Message k's first position is k * msg_frames - in_pre_skip; the Opus
 * input's first packet starts before position 0 and is not timed. */
static void resolve_probes(loadgen_session *s, double now)
{
    int64_t reached = reached_all(s);
    double announced = (double)s->latency_frames / s->rate_hz;
    while (s->probe_tail < s->messages_sent) {
        int64_t k = s->probe_tail;
        int64_t first = k * s->msg_frames - s->in_pre_skip;
        if (first >= reached)
            break;
        s->probe_tail++;
        if (first < 0)
            continue;
        double sent = message_due(s, k) + s->probe_delay_s[k % LOADGEN_PROBES];
        double latency = now - sent;
        double added = latency > announced ? latency - announced : 0.0;
        latency_hist_add(&s->latency, latency);
        if (s->added)
            latency_hist_add(s->added, added);
        s->timed_hops++;
        if (added > s->cfg->late_s)
            s->late_hops++;
    }
}

static void handle_audio(loadgen_session *s, const uint8_t *data, size_t len)
{
    if (s->state < ST_STREAMING) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent audio before ready");
        return;
    }
    demix_proto_audio_out h;
    demix_proto_error perr;
    if (demix_proto_audio_out_decode(data, len, s->cfg->codec, s->channels,
                                     s->seq_out, &h, &perr)) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent a malformed audio message (seq %u): "
                       "%s",
                       (unsigned)s->seq_out, perr.message);
        return;
    }
    s->seq_out++;
    int slot = h.stem < DEMIX_PROTO_MAX_STEMS ? s->stem_slot[h.stem] : -1;
    if (slot < 0) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent stem index %u, which was not asked "
                       "for",
                       (unsigned)h.stem);
        return;
    }
    if ((int64_t)h.position != s->next_pos[slot]) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent %s at position %llu, expected %lld "
                       "(a gap or an overlap)",
                       s->cfg->stems[slot], (unsigned long long)h.position,
                       (long long)s->next_pos[slot]);
        return;
    }
    if (s->last_seen[slot]) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent %s audio after its LAST message",
                       s->cfg->stems[slot]);
        return;
    }
    if (s->cfg->codec == DEMIX_PROTO_CODEC_OPUS) {
        char why[160];
        if (h.frames != (uint32_t)s->out_packet_frames) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server sent a %s packet of %lu frames, ready "
                           "said %d",
                           s->cfg->stems[slot], (unsigned long)h.frames,
                           s->out_packet_frames);
            return;
        }
        if (loadgen_opus_packet_check(h.payload, h.payload_bytes, s->rate_hz,
                                      h.frames, why, sizeof why)) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server sent a bad %s packet at position "
                           "%llu: %s",
                           s->cfg->stems[slot], (unsigned long long)h.position,
                           why);
            return;
        }
    }
    if (s->verifier) {
        char why[160];
        if (loadgen_verifier_add(s->verifier, slot, &h, why, sizeof why)) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL, "the server sent %s: %s",
                           s->cfg->stems[slot], why);
            return;
        }
    }
    int was_blocked = s->state == ST_STREAMING && blocked_in_flight(s);
    s->next_pos[slot] += h.frames;
    if (h.flags & DEMIX_PROTO_FLAG_LAST)
        s->last_seen[slot] = 1;
    s->messages_received++;
    resolve_probes(s, ws_client_now_s());
    if (was_blocked && !blocked_in_flight(s))
        loadgen_conn_want_write(&s->conn);
}

static void handle_ready(loadgen_session *s, const demix_proto_ready *r)
{
    const loadgen_config *c = s->cfg;
    if (s->state != ST_WAIT_READY) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL, "the server sent ready twice");
        return;
    }
    if (r->client_rate_hz != s->rate_hz || r->channels != s->channels ||
        r->input_codec != c->codec || r->output_codec != c->codec ||
        r->mode != DEMIX_PROTO_MODE_STEMS || r->stem_count != c->stem_count) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server's ready does not match the start (rate "
                       "%d, channels %d, codecs %s/%s, %d stems)",
                       r->client_rate_hz, r->channels,
                       demix_proto_codec_name(r->input_codec),
                       demix_proto_codec_name(r->output_codec), r->stem_count);
        return;
    }
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        s->stem_slot[i] = -1;
    for (int i = 0; i < r->stem_count; i++) {
        int src = r->stem_source[i];
        if (src < 0 || src >= DEMIX_PROTO_MAX_STEMS || s->stem_slot[src] >= 0) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server's ready lists a bad stem index %d", src);
            return;
        }
        s->stem_slot[src] = i;
    }
    snprintf(s->id, sizeof s->id, "%s", r->session);
    s->latency_frames = r->latency_frames;
    s->out_pre_skip =
        c->codec == DEMIX_PROTO_CODEC_OPUS ? r->opus_pre_skip_frames : 0;
    s->out_packet_frames =
        c->codec == DEMIX_PROTO_CODEC_OPUS ? r->opus_frame_frames : 0;
    if (c->codec == DEMIX_PROTO_CODEC_OPUS && s->out_packet_frames <= 0) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server's ready gives no Opus frame size");
        return;
    }
    s->max_in_flight = (int64_t)r->latency_frames +
                       (int64_t)(LOADGEN_IN_FLIGHT_S * s->rate_hz) +
                       s->msg_frames + s->in_pre_skip;
    /* Messages outstanding stay below max_in_flight / msg_frames + 2: the
     * send-time ring must hold them. */
    if (s->max_in_flight / s->msg_frames + 2 >= LOADGEN_PROBES) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT,
                       "the announced latency (%.2f s) is beyond what loadgen "
                       "can time (%d messages in flight)",
                       (double)r->latency_frames / s->rate_hz, LOADGEN_PROBES);
        return;
    }
    if (s->verifier)
        loadgen_verifier_set_pre_skip(s->verifier, s->out_pre_skip);
    s->t_ready = ws_client_now_s();
    /* The next tick of the run's message clock, plus the phase: sessions
     * of one phase group share their send times, and one wake-up serves
     * them all. */
    double period = (double)s->msg_frames / s->rate_hz;
    double ticks = ceil((s->t_ready - c->epoch_s) / period);
    s->t0 = c->epoch_s + (ticks > 0 ? ticks : 0) * period + s->phase_s;
    s->state = ST_STREAMING;
    loadgen_conn_want_write(&s->conn);
}

static void handle_text(loadgen_session *s, const uint8_t *data, size_t len)
{
    demix_proto_server_msg m;
    demix_proto_error perr;
    if (client_parse_server((const char *)data, len, &m, &perr)) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent a malformed message: %s", perr.message);
        return;
    }
    switch (m.type) {
    case DEMIX_PROTO_READY:
        handle_ready(s, &m.ready);
        break;
    case DEMIX_PROTO_ERROR: {
        /* The server closes after an error: wait for it (with a grace). */
        int refused = m.error.code == DEMIX_PROTO_ERR_AT_CAPACITY;
        if (s->outcome == LOADGEN_RUNNING) {
            s->has_error_code = 1;
            s->error_code = m.error.code;
        }
        finish(s, refused ? LOADGEN_REFUSED : LOADGEN_FAILED,
               refused ? LOADGEN_FAIL_NONE : LOADGEN_FAIL_SERVER,
               "server error %s: %s%s%s%s", demix_proto_code_name(m.error.code),
               m.error.message, m.error.field[0] ? " (field " : "",
               m.error.field, m.error.field[0] ? ")" : "");
        s->state = ST_FINISHING;
        break;
    }
    case DEMIX_PROTO_SUMMARY:
        if (s->state != ST_ENDING) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server sent a summary before the end");
            return;
        }
        s->summary = m.summary;
        s->have_summary = 1;
        s->state = ST_FINISHING;
        s->failed_at = ws_client_now_s(); /* the close is due now */
        if ((int64_t)m.summary.input_frames !=
            loadgen_session_positions_sent(s))
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server counted %llu input frames, %lld were "
                           "sent",
                           (unsigned long long)m.summary.input_frames,
                           (long long)loadgen_session_positions_sent(s));
        break;
    case DEMIX_PROTO_STATS:
        break;
    default:
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server sent an unexpected %s message",
                       demix_proto_type_name(m.type));
        break;
    }
}

/* The comparison's result, once the session has ended; the verifier's
 * memory goes then. */
static void verify_finish(loadgen_session *s)
{
    if (!s->verifier)
        return;
    if (s->role == LOADGEN_ROLE_SAMPLE)
        loadgen_verifier_result(s->verifier, s->cfg->verify_min_snr_db,
                                &s->verify);
    loadgen_verifier_destroy(s->verifier);
    s->verifier = NULL;
}

/* ------------------------------------------------------------ events */

static void ev_open(void *user)
{
    loadgen_session *s = user;
    s->state = ST_WAIT_READY;
    s->last_rx = ws_client_now_s();
    loadgen_conn_want_write(&s->conn);
}

static void ev_message(void *user, int binary, const uint8_t *data, size_t len)
{
    loadgen_session *s = user;
    s->last_rx = ws_client_now_s();
    if (s->outcome != LOADGEN_RUNNING)
        return; /* after a failure only the close matters */
    if (binary)
        handle_audio(s, data, len);
    else
        handle_text(s, data, len);
}

static void ev_writeable(void *user)
{
    loadgen_session *s = user;
    if (s->outcome != LOADGEN_RUNNING)
        return;
    if (s->state == ST_WAIT_READY) {
        if (!s->start_sent && !s->stop_requested)
            send_start(s);
        return;
    }
    if (s->state == ST_STREAMING)
        send_next(s);
}

static void ev_close(void *user, int code, const char *reason)
{
    loadgen_session *s = user;
    double now = ws_client_now_s();
    /* lws 4.1 turns the peer's close codes 1012-1015 into 1002 */
    code = demix_proto_received_close_code(code, reason);
    s->closed = 1;
    s->close_code = code;
    s->t_done = now;
    verify_finish(s);
    if (s->outcome == LOADGEN_RUNNING) {
        if (s->have_summary && code == 1000)
            finish(s, LOADGEN_OK, LOADGEN_FAIL_NONE, "ok");
        else if (s->have_summary)
            finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CLOSED,
                   "the server closed with %d%s%s after the summary "
                   "(expected 1000)",
                   code, reason[0] ? " " : "", reason);
        else if (code == WS_CLIENT_CLOSE_ABNORMAL)
            finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CLOSED,
                   "the connection dropped (no close frame) after %lld "
                   "messages",
                   (long long)s->messages_sent);
        else
            finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CLOSED,
                   "the server closed with %d%s%s before the stream "
                   "finished",
                   code, reason[0] ? " " : "", reason);
        return;
    }
    if (s->failure == LOADGEN_FAIL_SERVER || s->outcome == LOADGEN_REFUSED) {
        size_t n = strlen(s->message);
        snprintf(s->message + n, sizeof s->message - n, "; closed with %d",
                 code);
    }
}

static void ev_connect_error(void *user, const char *why)
{
    loadgen_session *s = user;
    s->closed = 1;
    s->t_done = ws_client_now_s();
    verify_finish(s);
    finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CONNECT, "cannot connect to %s: %s",
           s->cfg->url, why);
}

/* ------------------------------------------------------------ control */

void loadgen_session_init(loadgen_session *s, const loadgen_config *cfg,
                          int index, int count, loadgen_role role,
                          latency_hist *added)
{
    memset(s, 0, sizeof *s);
    s->index = index;
    s->role = role;
    s->cfg = cfg;
    s->added = added;
    s->rate_hz = loadgen_audio_rate(cfg->audio);
    s->channels = loadgen_audio_channels(cfg->audio);
    s->msg_frames = loadgen_audio_message_frames(cfg->audio);
    /* Independent live clients: clocks spread over one message period (in
     * LOADGEN_PHASES groups), audio spread over the loop. */
    s->phase_s = (double)(index % LOADGEN_PHASES) / LOADGEN_PHASES *
                 s->msg_frames / s->rate_hz;
    s->in_pre_skip = loadgen_audio_pre_skip(cfg->audio);
    int64_t want = (int64_t)(cfg->seconds * s->rate_hz + 0.5);
    s->target_wire_frames =
        (want + s->msg_frames - 1) / s->msg_frames * s->msg_frames;
    /* A compared session sends what the reference sent: the loop from its
     * start. */
    s->cursor = role == LOADGEN_ROLE_LOAD
                    ? loadgen_audio_start_cursor(cfg->audio, index, count)
                    : 0;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        s->stem_slot[i] = -1;
    latency_hist_init(&s->latency);
    s->verify.sampled = role == LOADGEN_ROLE_SAMPLE;
}

void loadgen_session_connect(loadgen_session *s, const loadgen_loop *loop)
{
    const loadgen_config *cfg = s->cfg;
    loadgen_role role = s->role;
    s->connect_started = 1;
    s->t_connect = ws_client_now_s();
    if (role != LOADGEN_ROLE_LOAD) {
        int rc = cfg->reference
                     ? loadgen_verifier_create(
                           cfg->reference, role == LOADGEN_ROLE_REFERENCE,
                           cfg->codec, s->rate_hz, s->channels, &s->verifier)
                     : DEMIX_EARG;
        if (rc) {
            s->closed = 1;
            s->t_done = s->t_connect;
            finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CLIENT,
                   "cannot set up the output comparison (%s)",
                   rc == DEMIX_ENOMEM ? "out of memory" : "no reference");
            return;
        }
    }

    ws_client_events ev = {
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writeable = ev_writeable,
        .on_close = ev_close,
        .on_connect_error = ev_connect_error,
    };
    char err[512];
    if (loadgen_conn_connect(&s->conn, loop, cfg->url, DEMIX_PROTO_SUBPROTOCOL,
                             &ev, s, err, sizeof err)) {
        s->closed = 1;
        s->t_done = s->t_connect;
        verify_finish(s);
        finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CONNECT,
               "cannot connect to %s: %s", cfg->url, err);
    }
}

void loadgen_session_end_now(loadgen_session *s, loadgen_failure failure,
                             const char *why)
{
    if (!s->closed)
        loadgen_conn_abort(&s->conn);
    s->closed = 1;
    s->t_done = ws_client_now_s();
    verify_finish(s);
    finish(s, LOADGEN_FAILED, failure, "%s", why);
}

void loadgen_session_stop(loadgen_session *s)
{
    s->stop_requested = 1;
    if (s->closed || !s->connect_started || s->outcome != LOADGEN_RUNNING)
        return;
    if (s->state == ST_CONNECTING || s->state == ST_WAIT_READY) {
        finish(s, LOADGEN_FAILED, LOADGEN_FAIL_INTERRUPTED,
               "interrupted before ready");
        if (loadgen_conn_is_open(&s->conn))
            loadgen_conn_close(&s->conn, 1000, "interrupted");
        else
            loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->state == ST_STREAMING)
        loadgen_conn_want_write(&s->conn);
}

void loadgen_session_abort(loadgen_session *s)
{
    if (s->closed || !s->connect_started)
        return;
    finish(s, LOADGEN_FAILED, LOADGEN_FAIL_INTERRUPTED,
           "interrupted (connection dropped by the client)");
    loadgen_conn_abort(&s->conn);
}

void loadgen_session_poll(loadgen_session *s, double now)
{
    if (s->closed || !s->connect_started)
        return;
    const loadgen_config *c = s->cfg;
    if (s->outcome != LOADGEN_RUNNING) {
        /* Waiting for the close after a failure or an error message. */
        if (now - s->failed_at > LOADGEN_CLOSE_GRACE_S)
            loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->state == ST_CONNECTING) {
        if (now - s->t_connect > c->timeout_s) {
            finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CONNECT,
                   "cannot connect to %s: no answer in %.0f s", c->url,
                   c->timeout_s);
            loadgen_conn_abort(&s->conn);
        }
        return;
    }
    if (s->state == ST_FINISHING && s->have_summary &&
        now - s->failed_at > LOADGEN_CLOSE_GRACE_S) {
        finish(s, LOADGEN_FAILED, LOADGEN_FAIL_CLOSED,
               "the server did not close the connection after the summary");
        loadgen_conn_abort(&s->conn);
        return;
    }
    if (now - s->last_rx > c->timeout_s) {
        finish(s, LOADGEN_FAILED, LOADGEN_FAIL_TIMEOUT,
               "no message from the server for %.0f s", c->timeout_s);
        loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->state == ST_STREAMING) {
        double lag = loadgen_session_lag_s(s, now);
        if (lag > s->lag_max_s)
            s->lag_max_s = lag;
        if (now >= stream_deadline(s))
            loadgen_conn_want_write(&s->conn);
    }
}

void loadgen_session_tick(loadgen_session *s, double now)
{
    if (s->state != ST_STREAMING || s->closed ||
        s->outcome != LOADGEN_RUNNING)
        return;
    if (now >= stream_deadline(s) ||
        (message_due(s, s->messages_sent) <= now + LOADGEN_DUE_SLACK_S &&
         !blocked_in_flight(s)))
        loadgen_conn_want_write(&s->conn);
}

int64_t loadgen_session_lost_hops(const loadgen_session *s)
{
    if (s->t_ready == 0.0 || s->msg_frames <= 0)
        return 0;
    int64_t sent = loadgen_session_positions_sent(s);
    int64_t whole = s->target_wire_frames - s->in_pre_skip;
    int64_t intended = s->stop_requested && sent < whole ? sent : whole;
    int64_t reached = reached_all(s);
    int64_t lost = intended - (reached < intended ? reached : intended);
    return (lost + s->msg_frames - 1) / s->msg_frames;
}

void loadgen_session_free(loadgen_session *s)
{
    verify_finish(s);
    loadgen_conn_destroy(&s->conn);
}
