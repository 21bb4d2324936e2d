/*
 * stream_session.c - see stream_session.h: one `demix stream` connection,
 * the connection's events fed to the client-session core (client_session.h)
 * and the core's operations on the connection. The session runs: connect
 * -> start -> ready -> audio out while stems come in -> end -> summary ->
 * close 1000. Audio goes out in stream_input.c, comes in in
 * stream_output.c.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include "stream_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_input.h"
#include "stream_output.h"
#include "stream_report.h"
#include "stream_url.h"

#define TICK_S 0.1              /* idle check period */
#define CLOSE_GRACE_S 3.0       /* wait for the close after a failure */

void stream_session_fail(stream_session *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    char text[sizeof s->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    client_session_fail(&s->core, CLIENT_FAIL_CLIENT, "%s", text);
}

/* ------------------------------------------------------- the core's ops */

static uint8_t *op_tx_buffer(void *user, size_t *cap)
{
    stream_session *s = user;
    *cap = ws_client_tx_capacity(s->ws);
    return ws_client_tx_buffer(s->ws);
}

static int op_send(void *user, int binary, size_t len)
{
    stream_session *s = user;
    return ws_client_send(s->ws, binary, len);
}

static void op_want_write(void *user)
{
    stream_session *s = user;
    ws_client_want_write(s->ws);
}

static int op_is_open(void *user)
{
    stream_session *s = user;
    return s->ws && ws_client_is_open(s->ws);
}

static void op_close(void *user, int code, const char *reason)
{
    stream_session *s = user;
    ws_client_close(s->ws, code, reason);
}

static void op_make_start(void *user, demix_proto_start *st)
{
    stream_session *s = user;
    st->sample_rate_hz = s->session_rate;
    st->channels = s->channels;
    st->input_codec = s->in_codec;
    st->output_codec = s->out_codec;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS)
        st->input_pre_skip_frames = s->enc_lookahead;
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        st->opus_bitrate_bps = s->o->bitrate_bps
                                   ? (int)s->o->bitrate_bps
                                   : DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL *
                                         s->channels;
        st->opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
    }
    if (s->probe_only || s->o->mix) {
        st->mode = DEMIX_PROTO_MODE_MIX;
        const char *p = s->probe_only ? "" : s->o->mix;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            demix_proto_gain *g = &st->gains[st->gain_count++];
            size_t nl = (size_t)(eq - p);
            memcpy(g->name, p, nl);
            g->name[nl] = '\0';
            g->gain = strtof(eq + 1, NULL);
            p = comma ? comma + 1 : p + len;
        }
    } else {
        st->mode = DEMIX_PROTO_MODE_STEMS;
        st->stem_count = s->stem_count_req;
        for (int i = 0; i < s->stem_count_req; i++)
            snprintf(st->stems[i], sizeof st->stems[i], "%s", s->stem_req[i]);
    }
    if (s->o->token) {
        st->has_token = 1;
        snprintf(st->token, sizeof st->token, "%s", s->o->token);
    }
}

/* A resumed session's ready: the same model, then the new session's
 * origin (base) and everything that restarts with it. */
static int resume_ready(stream_session *s, const demix_proto_ready *r)
{
    const demix_proto_ready *old = &s->ready;
    int same = r->model_rate_hz == old->model_rate_hz &&
               r->hop_samples == old->hop_samples &&
               r->source_count == old->source_count;
    for (int i = 0; same && i < r->source_count; i++)
        same = strcmp(r->sources[i], old->sources[i]) == 0;
    if (!same) {
        stream_session_fail(s, "the server came back with another model "
                               "(%s, %d Hz); the stems cannot go on",
                            r->model_name, r->model_rate_hz);
        return 1;
    }
    s->ready = *r;
    s->base = client_resume_base(s->resume_at, s->o->resume.tail_ms,
                                 s->session_rate, s->grid);
    if (s->base < s->fifo_start) /* not reached: the FIFO keeps the tail */
        s->base = s->fifo_start;
    s->frames_sent = s->base;
    /* Input and output codecs start again with the new session. */
    if (s->enc)
        (void)opus_encoder_ctl(s->enc, OPUS_RESET_STATE);
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stream_stem *st = &s->stems[i];
        if (st->dec) {
            (void)opus_decoder_ctl(st->dec, OPUS_RESET_STATE);
            st->skip_left = r->opus_pre_skip_frames;
        }
        st->dec_pos = 0;
    }
    /* Latency probes: what was in flight waited through the outage. */
    s->probe_tail = s->probe_head;
    s->probe_floor = s->sent_max;
    client_resume_done(&s->resume);
    if (!s->o->quiet)
        fprintf(stderr,
                "demix stream: reconnected (session %s); the stems go on at "
                "%.3f s; input re-sent from %.3f s (its output is "
                "discarded)\n",
                r->session, (double)s->resume_at / s->session_rate,
                (double)s->base / s->session_rate);
    return 0;
}

static int op_on_ready(void *user, const demix_proto_ready *r)
{
    stream_session *s = user;
    if (s->probe_only) {
        s->ready = *r;
        s->probe_done = 1; /* nothing more wanted */
        client_session_close(&s->core, 1000, "probe");
        return 1;
    }
    if (s->ever_ready) {
        if (resume_ready(s, r))
            return 1;
    } else {
        s->ready = *r;
        s->ever_ready = 1;
        s->grid = client_resume_grid(r->client_rate_hz, r->model_rate_hz,
                                     r->hop_samples);
        client_resume_done(&s->resume); /* (an at_capacity before) */
        if (!s->o->quiet) {
            fprintf(stderr,
                    "demix stream: session %s; model %s%s%d Hz, hop %d; %d "
                    "Hz %s, %s in, %s out\n",
                    r->session, r->model_name[0] ? r->model_name : "",
                    r->model_name[0] ? ", " : "", r->model_rate_hz,
                    r->hop_samples, r->client_rate_hz,
                    r->channels == 1 ? "mono" : "stereo",
                    demix_proto_codec_name(r->input_codec),
                    demix_proto_codec_name(r->output_codec));
            fprintf(stderr,
                    "demix stream: latency announced: %d frames (%.1f ms)\n",
                    r->latency_frames,
                    1000.0 * r->latency_frames / r->client_rate_hz);
        }
        if (stream_output_open(s))
            return 1;
    }
    s->max_in_flight = (int64_t)r->latency_frames + s->session_rate +
                       s->chunk_frames + s->enc_lookahead;
    return 0;
}

static int op_on_audio(void *user, int slot, const demix_proto_audio_out *h)
{
    (void)slot;
    return stream_output_receive(user, h);
}

static void op_on_summary(void *user, const demix_proto_summary *m)
{
    stream_session *s = user;
    s->summary = *m;
}

static void op_on_failure(void *user, client_failure kind, const char *text)
{
    stream_session *s = user;
    s->failed = 1;
    s->server_error = kind == CLIENT_FAIL_SERVER;
    snprintf(s->err, sizeof s->err, "%s", text);
}

static const client_session_ops stream_ops = {
    .tx_buffer = op_tx_buffer,
    .send = op_send,
    .want_write = op_want_write,
    .is_open = op_is_open,
    .close = op_close,
    .make_start = op_make_start,
    .start_hint = "--stems, --mix, --bitrate and --token",
    .on_ready = op_on_ready,
    .on_audio = op_on_audio,
    .on_summary = op_on_summary,
    .on_failure = op_on_failure,
};

/* ----------------------------------------------------------- events */

static void ev_open(void *user)
{
    stream_session *s = user;
    s->last_rx = ws_client_now_s();
    client_session_on_open(&s->core);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

static void ev_message(void *user, int binary, const uint8_t *data, size_t len)
{
    stream_session *s = user;
    s->last_rx = ws_client_now_s();
    if (binary)
        (void)client_session_on_binary(&s->core, data, len);
    else
        client_session_on_text(&s->core, data, len);
}

static void ev_writeable(void *user)
{
    stream_session *s = user;
    if (client_session_on_writable(&s->core))
        stream_input_send_next(s);
}

static void ev_timer(void *user)
{
    stream_session *s = user;
    double now = ws_client_now_s();
    if (!s->failed && s->core.state != CLIENT_FINISHING &&
        now - s->last_rx > (double)s->o->timeout_s) {
        stream_session_fail(s, "no reply from the server for %ld s",
                            s->o->timeout_s);
        s->failed_at = now;
        ws_client_abort(s->ws);
        return;
    }
    /* After a failure (ours or the server's error message) the close
     * handshake gets a few seconds, then the connection is dropped. */
    if (s->failed && s->failed_at == 0.0)
        s->failed_at = now;
    if (s->failed && now - s->failed_at > CLOSE_GRACE_S) {
        ws_client_abort(s->ws);
        return;
    }
    if (s->core.state == CLIENT_STREAMING)
        ws_client_want_write(s->ws);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

/* The connection went away in a way that calls for a reconnect (or an
 * attempt failed): schedule the next attempt, or give up with why. */
static void went_away(stream_session *s, const char *why)
{
    double now = ws_client_now_s(), delay;
    if (!client_resume_next(&s->resume, now, &delay)) {
        const client_resume *r = &s->resume;
        if (r->o.max_attempts <= 0)
            client_session_note(&s->core, CLIENT_FAIL_CLOSED, "%s", why);
        else
            client_session_note(&s->core, CLIENT_FAIL_CLOSED,
                                "%s; gave up after %d reconnect attempt%s "
                                "in %.0f s",
                                why, r->attempt, r->attempt == 1 ? "" : "s",
                                now - r->outage_start_s);
        return;
    }
    if (s->ever_ready && s->resume.attempt == 1)
        s->resume_at = stream_output_reached(s);
    s->retry_pending = 1;
    s->reconnect_at = now + delay;
    if (!s->o->quiet) {
        progress_finish(&s->bar);
        fprintf(stderr, "demix stream: %s; reconnecting in %.1f s (attempt %d "
                        "of %d)\n",
                why, delay, s->resume.attempt, s->resume.o.max_attempts);
    }
}

static void ev_close(void *user, int code, const char *reason)
{
    stream_session *s = user;
    client_close_verdict v = client_session_on_close(&s->core, &code, reason);
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    switch (v) {
    case CLIENT_CLOSE_CLEAN:
        break;
    case CLIENT_CLOSE_RETRY:
        went_away(s, s->core.retry_why);
        break;
    case CLIENT_CLOSE_AFTER_FAILURE:
        if (s->server_error) {
            size_t n = strlen(s->err);
            snprintf(s->err + n, sizeof s->err - n, "; closed with %d%s%s", code,
                     reason[0] ? " " : "", reason);
        }
        break;
    case CLIENT_CLOSE_AFTER_SUMMARY:
        stream_session_fail(s, "the server closed with %d%s%s after the "
                               "summary (expected 1000)",
                            code, reason[0] ? " " : "", reason);
        break;
    case CLIENT_CLOSE_DROPPED:
        if (!s->probe_done)
            stream_session_fail(s, "the connection to the server dropped (no "
                                   "close frame) after %lld frames sent",
                                (long long)s->frames_sent);
        break;
    case CLIENT_CLOSE_EARLY:
        if (!s->probe_done)
            stream_session_fail(s, "the server closed the connection with "
                                   "%d%s%s before the stream finished",
                                code, reason[0] ? " " : "", reason);
        break;
    }
}

static void ev_connect_error(void *user, const char *why)
{
    stream_session *s = user;
    client_session_on_connect_error(&s->core);
    char text[CLIENT_SESSION_TEXT_BYTES];
    snprintf(text, sizeof text, "cannot connect to %s: %s%s", s->o->url, why,
             stream_url_hint(s->o->url, why));
    /* The first connection fails at once; one during an outage is an
     * attempt (the server may not be listening again yet). */
    if (client_resume_in_outage(&s->resume))
        went_away(s, text);
    else
        stream_session_fail(s, "%s", text);
}

/* ----------------------------------------------------------- lifetime */

int stream_session_connect(stream_session *s)
{
    static const ws_client_events ev = {
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writeable = ev_writeable,
        .on_timer = ev_timer,
        .on_close = ev_close,
        .on_connect_error = ev_connect_error,
    };
    ws_client_destroy(s->ws); /* a connection that went away */
    s->ws = NULL;
    s->retry_pending = 0;
    client_session_init(&s->core, &stream_ops, s);
    client_session_allow_retry(&s->core, !s->probe_only &&
                                             s->o->resume.max_attempts > 0);
    char err[1024];
    if (ws_client_create(s->o->url, DEMIX_PROTO_SUBPROTOCOL,
                         DEMIX_PROTO_MAX_BINARY_BYTES, &ev, s, &s->ws, err,
                         sizeof err)) {
        snprintf(s->err, sizeof s->err, "%s", err);
        return -1;
    }
    s->start_time = ws_client_now_s();
    s->last_rx = s->start_time;
    return 0;
}

void stream_session_free(stream_session *s)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stream_stem *st = &s->stems[i];
        if (st->writer)
            (void)audio_writer_close(st->writer, NULL, 0);
        if (st->dec)
            opus_decoder_destroy(st->dec);
        resampler_destroy(st->rs);
        memset(st, 0, sizeof *st);
    }
    ws_client_destroy(s->ws);
    s->ws = NULL;
    if (s->enc)
        opus_encoder_destroy(s->enc);
    s->enc = NULL;
    resampler_destroy(s->in_rs);
    s->in_rs = NULL;
    audio_reader_close(s->reader);
    s->reader = NULL;
    free(s->fifo);
    free(s->read_buf);
    free(s->conv);
    free(s->lat);
    s->fifo = NULL;
    s->read_buf = NULL;
    s->conv = NULL;
    s->lat = NULL;
}
