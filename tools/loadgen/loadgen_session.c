/*
 * loadgen_session.c - one live session of `demix loadgen` (see
 * loadgen_session.h): the connection's events fed to the client-session
 * core (client_session.h: start, ready, error, summary, the audio_out
 * checks, framing, end, the close's meaning) and loadgen's own part around
 * it: paced sending out of the shared audio loop, the Opus packet checks
 * and the output comparison, counting and timing what comes back.
 *
 * Thread context: the loop's service thread only (every function here runs
 * in a connection event or in its thread's loop between services).
 */
#include "loadgen_session.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

/* A failure seen on our side: say so to the server and close. */
#define fail_and_close(s, failure, ...)                                       \
    client_session_fail(&(s)->core, (client_failure)(failure), __VA_ARGS__)
/* A failure with nothing to tell the server (the link is gone, or the
 * caller drops it). */
#define finish_failed(s, failure, ...)                                        \
    client_session_note(&(s)->core, (client_failure)(failure), __VA_ARGS__)

/* The global output position stem `slot` has reached: the current
 * session's, or what earlier sessions brought when that is more (the
 * re-primed tail after a reconnect). */
static int64_t stem_reached(const loadgen_session *s, int slot)
{
    int64_t r = s->core.slots[slot].next_pos;
    if (s->cfg->codec == DEMIX_PROTO_CODEC_OPUS)
        r -= s->out_pre_skip; /* decoded frames dropped first */
    r = s->base + (r > 0 ? r : 0);
    return r > s->have[slot] ? r : s->have[slot];
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
    return s->core.state == CLIENT_STREAMING && !s->closed &&
           s->outcome == LOADGEN_RUNNING;
}

const char *loadgen_failure_name(loadgen_failure f)
{
    return client_failure_name((client_failure)f);
}

/* ------------------------------------------------------------- input */

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
    if (client_session_send_end(&s->core))
        return; /* the failure is reported */
}

/* The stream's time is up (an outage moves it by its length). */
static double stream_deadline(const loadgen_session *s)
{
    return s->t0 + s->outage_s +
           (double)(s->target_wire_frames + s->msg_frames) / s->rate_hz;
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

    size_t cap;
    uint8_t *pay = client_session_audio_payload(&s->core, &cap);
    if (!pay)
        return;
    size_t n = loadgen_audio_next(s->cfg->audio, &s->cursor, pay, cap);
    if (n == 0) {
        fail_and_close(s, LOADGEN_FAIL_CLIENT,
                       "an audio message does not fit the send buffer");
        return;
    }
    if (client_session_send_audio(&s->core, n))
        return; /* the failure is reported */
    /* The in-flight bound keeps this slot's previous message resolved
     * (handle_ready checks the ring is large enough for it). */
    s->probe_delay_s[s->messages_sent % LOADGEN_PROBES] = (float)(now - due);
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

/* The core's checks passed (header, seq, stem, position, LAST): loadgen's
 * own on the payload, before the slot advances. */
static int check_audio(loadgen_session *s, int slot,
                       const demix_proto_audio_out *h)
{
    if (s->cfg->codec == DEMIX_PROTO_CODEC_OPUS) {
        char why[160];
        if (h->frames != (uint32_t)s->out_packet_frames) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server sent a %s packet of %lu frames, ready "
                           "said %d",
                           s->cfg->stems[slot], (unsigned long)h->frames,
                           s->out_packet_frames);
            return -1;
        }
        if (loadgen_opus_packet_check(h->payload, h->payload_bytes, s->rate_hz,
                                      h->frames, why, sizeof why)) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                           "the server sent a bad %s packet at position "
                           "%llu: %s",
                           s->cfg->stems[slot], (unsigned long long)h->position,
                           why);
            return -1;
        }
    }
    if (s->verifier) {
        char why[160];
        if (loadgen_verifier_add(s->verifier, slot, h, why, sizeof why)) {
            fail_and_close(s, LOADGEN_FAIL_PROTOCOL, "the server sent %s: %s",
                           s->cfg->stems[slot], why);
            return -1;
        }
    }
    return 0;
}

static void handle_audio(loadgen_session *s, const uint8_t *data, size_t len)
{
    int was_blocked =
        s->core.state == CLIENT_STREAMING && blocked_in_flight(s);
    if (!client_session_on_binary(&s->core, data, len))
        return;
    s->messages_received++;
    resolve_probes(s, ws_client_now_s());
    if (was_blocked && !blocked_in_flight(s))
        loadgen_conn_want_write(&s->conn);
}

/* ready passed the core's checks (it matches the start, its stems are
 * distinct sources): the session's timing follows from it. */
/* A resumed session's ready: send again from the message boundary at or
 * before the resume point minus the tail (message k0 starts at position
 * k0 * msg_frames, for Opus too: the server drops pre_skip frames of the
 * new decoder's output, which are those before that position). */
static void resume_ready(loadgen_session *s)
{
    double now = ws_client_now_s();
    int64_t at = reached_all(s); /* the new session has brought nothing */
    int64_t tail = (int64_t)(s->cfg->resume.tail_ms * s->rate_hz / 1000.0);
    int64_t from = at - tail > 0 ? at - tail : 0;
    int64_t k0 = from / s->msg_frames;
    if (k0 > s->messages_sent)
        k0 = s->messages_sent;
    s->base = k0 * s->msg_frames;
    s->messages_sent = k0;
    s->wire_frames_sent = k0 * s->msg_frames;
    s->cursor = loadgen_audio_cursor_at(s->cfg->audio, s->start_cursor, k0);
    s->outage_s += now - s->outage_start;
    client_resume_done(&s->resume);
}

static int take_ready(loadgen_session *s, const demix_proto_ready *r)
{
    const loadgen_config *c = s->cfg;
    int resumed = s->t_ready > 0.0;
    snprintf(s->id, sizeof s->id, "%s", r->session);
    s->latency_frames = r->latency_frames;
    s->out_pre_skip =
        c->codec == DEMIX_PROTO_CODEC_OPUS ? r->opus_pre_skip_frames : 0;
    s->out_packet_frames =
        c->codec == DEMIX_PROTO_CODEC_OPUS ? r->opus_frame_frames : 0;
    if (c->codec == DEMIX_PROTO_CODEC_OPUS && s->out_packet_frames <= 0) {
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server's ready gives no Opus frame size");
        return -1;
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
        return -1;
    }
    /* From now on a server going away is worth a reconnect. */
    client_session_allow_retry(&s->core, c->resume.max_attempts > 0 &&
                                             s->role != LOADGEN_ROLE_REFERENCE);
    if (resumed) {
        resume_ready(s);
        return 0;
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
    return 0; /* the core goes on streaming and asks to write */
}

static void take_summary(loadgen_session *s, const demix_proto_summary *m)
{
    s->summary = *m;
    s->have_summary = 1;
    s->failed_at = ws_client_now_s(); /* the close is due now */
    int64_t sent = loadgen_session_positions_sent(s) - s->base;
    if ((int64_t)m->input_frames != sent)
        fail_and_close(s, LOADGEN_FAIL_PROTOCOL,
                       "the server counted %llu input frames, %lld were "
                       "sent",
                       (unsigned long long)m->input_frames, (long long)sent);
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

/* ------------------------------------------------------- the core's ops */

static uint8_t *op_tx_buffer(void *user, size_t *cap)
{
    loadgen_session *s = user;
    *cap = loadgen_conn_tx_capacity(&s->conn);
    return loadgen_conn_tx_buffer(&s->conn);
}

static int op_send(void *user, int binary, size_t len)
{
    loadgen_session *s = user;
    return loadgen_conn_send(&s->conn, binary, len);
}

static void op_want_write(void *user)
{
    loadgen_session *s = user;
    loadgen_conn_want_write(&s->conn);
}

static int op_is_open(void *user)
{
    loadgen_session *s = user;
    return loadgen_conn_is_open(&s->conn);
}

static void op_close(void *user, int code, const char *reason)
{
    loadgen_session *s = user;
    loadgen_conn_close(&s->conn, code, reason);
}

static void op_make_start(void *user, demix_proto_start *st)
{
    loadgen_session *s = user;
    const loadgen_config *c = s->cfg;
    st->sample_rate_hz = loadgen_audio_rate(c->audio);
    st->channels = loadgen_audio_channels(c->audio);
    st->input_codec = c->codec;
    st->output_codec = c->codec;
    if (c->codec == DEMIX_PROTO_CODEC_OPUS) {
        st->input_pre_skip_frames = loadgen_audio_pre_skip(c->audio);
        st->opus_bitrate_bps =
            DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL * st->channels;
        st->opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
    }
    st->mode = DEMIX_PROTO_MODE_STEMS;
    st->stem_count = c->stem_count;
    for (int i = 0; i < c->stem_count; i++)
        memcpy(st->stems[i], c->stems[i], sizeof st->stems[i]);
    if (c->token) {
        st->has_token = 1;
        snprintf(st->token, sizeof st->token, "%s", c->token);
    }
}

static int op_on_ready(void *user, const demix_proto_ready *r)
{
    return take_ready(user, r);
}

static int op_on_audio(void *user, int slot, const demix_proto_audio_out *h)
{
    return check_audio(user, slot, h);
}

static void op_on_summary(void *user, const demix_proto_summary *m)
{
    take_summary(user, m);
}

/* The first failure: the outcome (an error at_capacity is a refusal). */
static void op_on_failure(void *user, client_failure kind, const char *text)
{
    loadgen_session *s = user;
    if (s->outcome != LOADGEN_RUNNING)
        return; /* the first word stands */
    int refused = kind == CLIENT_FAIL_SERVER &&
                  s->core.error_code == DEMIX_PROTO_ERR_AT_CAPACITY;
    if (kind == CLIENT_FAIL_SERVER) {
        s->has_error_code = 1;
        s->error_code = s->core.error_code;
    }
    s->outcome = refused ? LOADGEN_REFUSED : LOADGEN_FAILED;
    s->failure = refused ? LOADGEN_FAIL_NONE : (loadgen_failure)kind;
    s->failed_at = ws_client_now_s();
    snprintf(s->message, sizeof s->message, "%s", text);
}

static const client_session_ops loadgen_ops = {
    .tx_buffer = op_tx_buffer,
    .send = op_send,
    .want_write = op_want_write,
    .is_open = op_is_open,
    .close = op_close,
    .make_start = op_make_start,
    .start_hint = "--stems and --token",
    .on_ready = op_on_ready,
    .on_audio = op_on_audio,
    .on_summary = op_on_summary,
    .on_failure = op_on_failure,
};

/* ------------------------------------------------------------ events */

static void ev_open(void *user)
{
    loadgen_session *s = user;
    s->last_rx = ws_client_now_s();
    client_session_on_open(&s->core);
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
        client_session_on_text(&s->core, data, len);
}

static void ev_writeable(void *user)
{
    loadgen_session *s = user;
    if (s->outcome != LOADGEN_RUNNING)
        return;
    if (s->stop_requested && s->core.state == CLIENT_WAIT_READY)
        return; /* no start after Ctrl-C */
    if (client_session_on_writable(&s->core))
        send_next(s);
}

/* The server went away (or a reconnect attempt failed): schedule the next
 * attempt, or end the session FAILED with why. */
static void went_away(loadgen_session *s, const char *why)
{
    double now = ws_client_now_s(), delay;
    if (!client_resume_in_outage(&s->resume)) { /* a new outage */
        s->outage_start = now;
        for (int i = 0; i < s->cfg->stem_count; i++)
            s->have[i] = stem_reached(s, i);
        verify_finish(s); /* compared up to here */
    }
    if (!client_resume_next(&s->resume, now, &delay)) {
        s->closed = 1;
        s->t_done = now;
        finish_failed(s, LOADGEN_FAIL_CLOSED,
                      "%s; gave up after %d reconnect attempt%s in %.0f s",
                      why, s->resume.attempt, s->resume.attempt == 1 ? "" : "s",
                      now - s->resume.outage_start_s);
        return;
    }
    s->retry_pending = 1;
    s->reconnect_at = now + delay;
}

static void ev_close(void *user, int code, const char *reason)
{
    loadgen_session *s = user;
    double now = ws_client_now_s();
    client_close_verdict v = client_session_on_close(&s->core, &code, reason);
    s->close_code = code;
    if (v == CLIENT_CLOSE_RETRY) {
        went_away(s, s->core.retry_why);
        return;
    }
    s->closed = 1;
    s->close_code = code;
    s->t_done = now;
    verify_finish(s);
    switch (v) {
    case CLIENT_CLOSE_CLEAN:
        s->outcome = LOADGEN_OK;
        s->failure = LOADGEN_FAIL_NONE;
        s->failed_at = now;
        snprintf(s->message, sizeof s->message, "ok");
        break;
    case CLIENT_CLOSE_AFTER_SUMMARY:
        finish_failed(s, LOADGEN_FAIL_CLOSED,
                      "the server closed with %d%s%s after the summary "
                      "(expected 1000)",
                      code, reason[0] ? " " : "", reason);
        break;
    case CLIENT_CLOSE_DROPPED:
        finish_failed(s, LOADGEN_FAIL_CLOSED,
                      "the connection dropped (no close frame) after %lld "
                      "messages",
                      (long long)s->messages_sent);
        break;
    case CLIENT_CLOSE_EARLY:
        finish_failed(s, LOADGEN_FAIL_CLOSED,
                      "the server closed with %d%s%s before the stream "
                      "finished",
                      code, reason[0] ? " " : "", reason);
        break;
    case CLIENT_CLOSE_RETRY: /* handled above */
        break;
    case CLIENT_CLOSE_AFTER_FAILURE:
        if (s->failure == LOADGEN_FAIL_SERVER ||
            s->outcome == LOADGEN_REFUSED) {
            size_t n = strlen(s->message);
            snprintf(s->message + n, sizeof s->message - n, "; closed with %d",
                     code);
        }
        break;
    }
}

static void ev_connect_error(void *user, const char *why)
{
    loadgen_session *s = user;
    client_session_on_connect_error(&s->core);
    if (client_resume_in_outage(&s->resume)) {
        /* the server may not be listening again yet */
        char text[CLIENT_SESSION_TEXT_BYTES];
        snprintf(text, sizeof text, "cannot connect to %s: %s", s->cfg->url,
                 why);
        went_away(s, text);
        return;
    }
    s->closed = 1;
    s->t_done = ws_client_now_s();
    verify_finish(s);
    finish_failed(s, LOADGEN_FAIL_CONNECT, "cannot connect to %s: %s",
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
    s->start_cursor = s->cursor;
    client_session_init(&s->core, &loadgen_ops, s);
    /* The backoff's jitter differs per session. */
    client_resume_init(&s->resume, &cfg->resume,
                       ((uint64_t)index + 1) * 0x9e3779b97f4a7c15ull ^
                           (uint64_t)(cfg->epoch_s * 1e6));
    latency_hist_init(&s->latency);
    s->verify.sampled = role == LOADGEN_ROLE_SAMPLE;
}

/* Connect on s->loop; a connection that cannot even start ends the
 * session, or during an outage counts as a failed attempt. */
static void open_conn(loadgen_session *s)
{
    ws_client_events ev = {
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writeable = ev_writeable,
        .on_close = ev_close,
        .on_connect_error = ev_connect_error,
    };
    char err[512];
    if (loadgen_conn_connect(&s->conn, s->loop, s->cfg->url,
                             DEMIX_PROTO_SUBPROTOCOL, &ev, s, err,
                             sizeof err)) {
        if (client_resume_in_outage(&s->resume)) {
            char text[CLIENT_SESSION_TEXT_BYTES];
            snprintf(text, sizeof text, "cannot connect to %s: %s",
                     s->cfg->url, err);
            went_away(s, text);
            return;
        }
        s->closed = 1;
        s->t_done = s->t_connect;
        verify_finish(s);
        finish_failed(s, LOADGEN_FAIL_CONNECT, "cannot connect to %s: %s",
                      s->cfg->url, err);
    }
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
            finish_failed(s, LOADGEN_FAIL_CLIENT,
                   "cannot set up the output comparison (%s)",
                   rc == DEMIX_ENOMEM ? "out of memory" : "no reference");
            return;
        }
    }

    s->loop = loop;
    open_conn(s);
}

/* The next attempt after an outage: a new connection, a new core. */
static void reconnect(loadgen_session *s, double now)
{
    loadgen_conn_destroy(&s->conn);
    s->retry_pending = 0;
    client_session_init(&s->core, &loadgen_ops, s);
    client_session_allow_retry(&s->core, 1);
    s->t_connect = now;
    s->last_rx = now;
    open_conn(s);
}

void loadgen_session_end_now(loadgen_session *s, loadgen_failure failure,
                             const char *why)
{
    if (!s->closed && !s->retry_pending)
        loadgen_conn_abort(&s->conn);
    s->retry_pending = 0;
    s->closed = 1;
    s->t_done = ws_client_now_s();
    verify_finish(s);
    finish_failed(s, failure, "%s", why);
}

/* Stopped between two connections. */
static void stop_outage(loadgen_session *s)
{
    s->retry_pending = 0;
    s->closed = 1;
    s->t_done = ws_client_now_s();
    finish_failed(s, LOADGEN_FAIL_INTERRUPTED,
                  "interrupted while reconnecting");
}

void loadgen_session_stop(loadgen_session *s)
{
    s->stop_requested = 1;
    if (s->closed || !s->connect_started || s->outcome != LOADGEN_RUNNING)
        return;
    if (s->retry_pending) {
        stop_outage(s);
        return;
    }
    if (s->core.state == CLIENT_CONNECTING ||
        s->core.state == CLIENT_WAIT_READY) {
        finish_failed(s, LOADGEN_FAIL_INTERRUPTED,
               "interrupted before ready");
        if (loadgen_conn_is_open(&s->conn))
            loadgen_conn_close(&s->conn, 1000, "interrupted");
        else
            loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->core.state == CLIENT_STREAMING)
        loadgen_conn_want_write(&s->conn);
}

void loadgen_session_abort(loadgen_session *s)
{
    if (s->closed || !s->connect_started)
        return;
    if (s->retry_pending) {
        stop_outage(s);
        return;
    }
    finish_failed(s, LOADGEN_FAIL_INTERRUPTED,
           "interrupted (connection dropped by the client)");
    loadgen_conn_abort(&s->conn);
}

void loadgen_session_poll(loadgen_session *s, double now)
{
    if (s->closed || !s->connect_started)
        return;
    const loadgen_config *c = s->cfg;
    if (s->retry_pending) {
        if (now >= s->reconnect_at)
            reconnect(s, now);
        return;
    }
    if (s->outcome != LOADGEN_RUNNING) {
        /* Waiting for the close after a failure or an error message. */
        if (now - s->failed_at > LOADGEN_CLOSE_GRACE_S)
            loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->core.state == CLIENT_CONNECTING) {
        if (now - s->t_connect > c->timeout_s) {
            finish_failed(s, LOADGEN_FAIL_CONNECT,
                   "cannot connect to %s: no answer in %.0f s", c->url,
                   c->timeout_s);
            loadgen_conn_abort(&s->conn);
        }
        return;
    }
    if (s->core.state == CLIENT_FINISHING && s->have_summary &&
        now - s->failed_at > LOADGEN_CLOSE_GRACE_S) {
        finish_failed(s, LOADGEN_FAIL_CLOSED,
               "the server did not close the connection after the summary");
        loadgen_conn_abort(&s->conn);
        return;
    }
    if (now - s->last_rx > c->timeout_s) {
        finish_failed(s, LOADGEN_FAIL_TIMEOUT,
               "no message from the server for %.0f s", c->timeout_s);
        loadgen_conn_abort(&s->conn);
        return;
    }
    if (s->core.state == CLIENT_STREAMING) {
        double lag = loadgen_session_lag_s(s, now);
        if (lag > s->lag_max_s)
            s->lag_max_s = lag;
        if (now >= stream_deadline(s))
            loadgen_conn_want_write(&s->conn);
    }
}

void loadgen_session_tick(loadgen_session *s, double now)
{
    if (s->core.state != CLIENT_STREAMING || s->closed ||
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

int loadgen_session_reconnects(const loadgen_session *s)
{
    return s->resume.resumes;
}

void loadgen_session_free(loadgen_session *s)
{
    verify_finish(s);
    loadgen_conn_destroy(&s->conn);
}
