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

static int op_on_ready(void *user, const demix_proto_ready *r)
{
    stream_session *s = user;
    s->ready = *r;
    if (s->probe_only) {
        s->probe_done = 1; /* nothing more wanted */
        client_session_close(&s->core, 1000, "probe");
        return 1;
    }
    if (!s->o->quiet) {
        fprintf(stderr,
                "demix stream: session %s; model %s%s%d Hz, hop %d; %d Hz %s, "
                "%s in, %s out\n",
                r->session, r->model_name[0] ? r->model_name : "",
                r->model_name[0] ? ", " : "", r->model_rate_hz, r->hop_samples,
                r->client_rate_hz, r->channels == 1 ? "mono" : "stereo",
                demix_proto_codec_name(r->input_codec),
                demix_proto_codec_name(r->output_codec));
        fprintf(stderr, "demix stream: latency announced: %d frames (%.1f ms)\n",
                r->latency_frames, 1000.0 * r->latency_frames / r->client_rate_hz);
    }
    if (stream_output_open(s))
        return 1;
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

static void ev_close(void *user, int code, const char *reason)
{
    stream_session *s = user;
    client_close_verdict v = client_session_on_close(&s->core, &code, reason);
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    switch (v) {
    case CLIENT_CLOSE_CLEAN:
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
    stream_session_fail(s, "cannot connect to %s: %s%s", s->o->url, why,
                        stream_url_hint(s->o->url, why));
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
    client_session_init(&s->core, &stream_ops, s);
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
