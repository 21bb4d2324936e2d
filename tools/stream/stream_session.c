/*
 * stream_session.c - see stream_session.h: the protocol's control side of
 * one `demix stream` connection. The session runs: connect -> start ->
 * ready -> audio out while stems come in -> end -> summary -> close 1000.
 * Audio goes out in stream_input.c, comes in in stream_output.c.
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

#define TICK_S 0.1              /* idle check period */
#define CLOSE_GRACE_S 3.0       /* wait for the close after a failure */

void stream_session_fail(stream_session *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    if (s->ws && ws_client_is_open(s->ws))
        ws_client_close(s->ws, 1000, "client error");
}

/* ----------------------------------------------------------- messages */

static void send_start(stream_session *s)
{
    demix_proto_start st;
    demix_proto_start_init(&st);
    st.sample_rate_hz = s->session_rate;
    st.channels = s->channels;
    st.input_codec = s->in_codec;
    st.output_codec = s->out_codec;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS)
        st.input_pre_skip_frames = s->enc_lookahead;
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        st.opus_bitrate_bps = s->o->bitrate_bps
                                  ? (int)s->o->bitrate_bps
                                  : DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL *
                                        s->channels;
        st.opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
    }
    if (s->probe_only || s->o->mix) {
        st.mode = DEMIX_PROTO_MODE_MIX;
        const char *p = s->probe_only ? "" : s->o->mix;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            demix_proto_gain *g = &st.gains[st.gain_count++];
            size_t nl = (size_t)(eq - p);
            memcpy(g->name, p, nl);
            g->name[nl] = '\0';
            g->gain = strtof(eq + 1, NULL);
            p = comma ? comma + 1 : p + len;
        }
    } else {
        st.mode = DEMIX_PROTO_MODE_STEMS;
        st.stem_count = s->stem_count_req;
        for (int i = 0; i < s->stem_count_req; i++)
            snprintf(st.stems[i], sizeof st.stems[i], "%s", s->stem_req[i]);
    }
    if (s->o->token) {
        st.has_token = 1;
        snprintf(st.token, sizeof st.token, "%s", s->o->token);
    }
    size_t len;
    char *buf = (char *)ws_client_tx_buffer(s->ws);
    if (demix_proto_write_start(&st, buf, ws_client_tx_capacity(s->ws), &len)) {
        stream_session_fail(s, "the start message would be refused (check "
                               "--stems, --mix, --bitrate and --token)");
        return;
    }
    if (ws_client_send(s->ws, 0, len)) {
        stream_session_fail(s, "the connection failed while sending start");
        return;
    }
    s->start_sent = 1;
}

static void handle_ready(stream_session *s, const demix_proto_ready *r)
{
    if (s->state != STREAM_WAIT_READY) {
        stream_session_fail(s, "the server sent ready twice");
        return;
    }
    s->ready = *r;
    if (r->client_rate_hz != s->session_rate || r->channels != s->channels ||
        r->input_codec != s->in_codec || r->output_codec != s->out_codec) {
        stream_session_fail(s, "the server's ready does not match the start "
                               "(rate %d, channels %d, codecs %s/%s)",
                            r->client_rate_hz, r->channels,
                            demix_proto_codec_name(r->input_codec),
                            demix_proto_codec_name(r->output_codec));
        return;
    }
    if (s->probe_only) {
        s->state = STREAM_SUMMARY; /* nothing more wanted */
        ws_client_close(s->ws, 1000, "probe");
        return;
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
        return;
    s->max_in_flight = (int64_t)r->latency_frames + s->session_rate +
                       s->chunk_frames + s->enc_lookahead;
    s->state = STREAM_STREAMING;
    ws_client_want_write(s->ws);
}

static void handle_text(stream_session *s, const uint8_t *data, size_t len)
{
    static demix_proto_server_msg m; /* ~2 KiB; one session per process */
    demix_proto_error perr;
    if (demix_proto_parse_server((const char *)data, len, &m, &perr)) {
        stream_session_fail(s, "the server sent a malformed message: %s",
                            perr.message);
        return;
    }
    switch (m.type) {
    case DEMIX_PROTO_READY:
        handle_ready(s, &m.ready);
        break;
    case DEMIX_PROTO_ERROR:
        s->error_code = m.error.code;
        if (!s->failed) {
            s->failed = 1;
            s->server_error = 1;
            snprintf(s->err, sizeof s->err, "server error %s: %s%s%s%s",
                     demix_proto_code_name(m.error.code), m.error.message,
                     m.error.field[0] ? " (field " : "", m.error.field,
                     m.error.field[0] ? ")" : "");
        }
        break;
    case DEMIX_PROTO_SUMMARY:
        if (s->state != STREAM_ENDING) {
            stream_session_fail(s, "the server sent a summary before the end");
            return;
        }
        s->summary = m.summary;
        s->have_summary = 1;
        s->state = STREAM_SUMMARY;
        break;
    case DEMIX_PROTO_STATS:
        break;
    default:
        stream_session_fail(s, "the server sent an unexpected %s message",
                            demix_proto_type_name(m.type));
        break;
    }
}

/* ----------------------------------------------------------- events */

static void ev_open(void *user)
{
    stream_session *s = user;
    s->state = STREAM_WAIT_READY;
    s->last_rx = ws_client_now_s();
    ws_client_want_write(s->ws);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

static void ev_message(void *user, int binary, const uint8_t *data, size_t len)
{
    stream_session *s = user;
    s->last_rx = ws_client_now_s();
    if (s->failed)
        return;
    if (binary)
        stream_output_receive(s, data, len);
    else
        handle_text(s, data, len);
}

static void ev_writeable(void *user)
{
    stream_session *s = user;
    if (s->failed)
        return;
    if (s->state == STREAM_WAIT_READY && !s->start_sent) {
        send_start(s);
        return;
    }
    if (s->state == STREAM_STREAMING)
        stream_input_send_next(s);
}

static void ev_timer(void *user)
{
    stream_session *s = user;
    double now = ws_client_now_s();
    if (!s->failed && s->state != STREAM_SUMMARY &&
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
    if (s->state == STREAM_STREAMING)
        ws_client_want_write(s->ws);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

static void ev_close(void *user, int code, const char *reason)
{
    stream_session *s = user;
    /* lws 4.1 turns the peer's close codes 1012-1015 into 1002 */
    code = demix_proto_received_close_code(code, reason);
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    int expected = s->state == STREAM_SUMMARY;
    s->state = STREAM_CLOSED;
    if (s->failed) {
        if (s->server_error) {
            size_t n = strlen(s->err);
            snprintf(s->err + n, sizeof s->err - n, "; closed with %d%s%s", code,
                     reason[0] ? " " : "", reason);
        }
        return;
    }
    if (!expected) {
        if (code == WS_CLIENT_CLOSE_ABNORMAL)
            stream_session_fail(s, "the connection to the server dropped (no "
                                   "close frame) after %lld frames sent",
                                (long long)s->frames_sent);
        else
            stream_session_fail(s, "the server closed the connection with "
                                   "%d%s%s before the stream finished",
                                code, reason[0] ? " " : "", reason);
        return;
    }
    if (!s->probe_only && code != 1000)
        stream_session_fail(s, "the server closed with %d%s%s after the "
                               "summary (expected 1000)",
                            code, reason[0] ? " " : "", reason);
}

static void ev_connect_error(void *user, const char *why)
{
    stream_session *s = user;
    s->state = STREAM_CLOSED;
    stream_session_fail(s, "cannot connect to %s: %s", s->o->url, why);
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
    char err[1024];
    if (ws_client_create(s->o->url, DEMIX_PROTO_SUBPROTOCOL,
                         DEMIX_PROTO_MAX_BINARY_BYTES, &ev, s, &s->ws, err,
                         sizeof err)) {
        snprintf(s->err, sizeof s->err, "%s", err);
        return -1;
    }
    s->state = STREAM_CONNECTING;
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
