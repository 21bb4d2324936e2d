/*
 * session_in.c - a session's audio input: binary messages are checked
 * (protocol.h), decoded (PCM or Opus) into the stage buffer, resampled to
 * the model rate and written, as C-channel frames, into the stream's input
 * ring, where the scheduler takes whole hops.
 *
 * Flow control. A message is decoded only when the stage is empty. The
 * stage is fed to the resampler in chunks of about SESSION_PUMP_MODEL_FRAMES
 * model frames, each only when the ring has in_margin frames of room (a
 * chunk's output, one resampler block of burst, and its lag, which a flush
 * emits at once). When the ring is too full, the rest stays staged and
 * the socket is paused (lws_rx_flow_control(wsi, 0)); the scheduler's
 * wake-up calls demixd__session_pump again, which resumes the socket once
 * the stage is empty. So a session buffers at most one message, one ring
 * and the resampler's own state, whatever the client sends.
 *
 * End of input (`end`): the stage is fed, the resampler flushed; the model
 * signal of M frames is padded with zeros to hops_total = ceil(M/H) + 1
 * hops (the extra hop lets the latency tail out, as in separate_signal.c),
 * fed as the ring takes it.
 *
 * Channels: mono input is fed to both model channels; stereo input into a
 * mono model is averaged.
 *
 * Float input (pcm_f32) must be finite and within +-16 (sample_check.h):
 * a message with a sample that is not gets bad_audio naming the message
 * and the sample, before any of it reaches the stream.
 *
 * Thread context: the session's service thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "latency.h"
#include "log.h"
#include "sample_check.h"
#include "session_impl.h"

int demixd__session_in_setup(demixd_session *s, const demix_proto_start *st,
                             char *err, size_t cap)
{
    int rc;
    s->in_codec = st->input_codec;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS) {
        int oe = 0;
        s->dec = opus_decoder_create(s->rate, s->ch, &oe);
        if (!s->dec) {
            snprintf(err, cap, "opus decoder: %s", opus_strerror(oe));
            return DEMIX_ENOMEM;
        }
        s->pre_skip_left = st->input_pre_skip_frames;
        s->stage_cap = (size_t)s->rate * 120 / 1000; /* longest packet */
    } else {
        s->stage_cap =
            (DEMIX_PROTO_MAX_BINARY_BYTES - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES) /
            demix_proto_frame_bytes(s->in_codec, s->ch);
    }
    s->stage = malloc(s->stage_cap * (size_t)s->ch * sizeof *s->stage);
    if (!s->stage) {
        snprintf(err, cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    if ((rc = resampler_create(s->rate, s->model_rate, s->ch, &s->rs_in, err,
                               cap)))
        return rc;
    demixd_latency lat;
    if ((rc = demixd_latency_get(s->rate, s->model_rate, s->H, &lat))) {
        snprintf(err, cap, "cannot measure the resamplers");
        return rc;
    }
    s->lag_in = lat.in_lag_max;
    s->lag_out = lat.out_lag_max;
    s->path_latency = lat.frames;
    double ratio = (double)s->model_rate / s->rate;
    s->pump_chunk = (size_t)(SESSION_PUMP_MODEL_FRAMES / ratio);
    if (s->pump_chunk < 1)
        s->pump_chunk = 1;
    s->in_margin = (size_t)ceil((double)s->pump_chunk * ratio) + 1 +
                   RESAMPLE_BLOCK_FRAMES + (size_t)s->lag_in + 16;
    s->conv_frames = s->pump_chunk > RESAMPLE_BLOCK_FRAMES
                         ? s->pump_chunk
                         : RESAMPLE_BLOCK_FRAMES;
    s->conv = malloc(s->conv_frames * (size_t)s->C * sizeof *s->conv);
    if (!s->conv) {
        snprintf(err, cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    s->hops_total = -1;
    return DEMIX_OK;
}

void demixd__session_in_free(demixd_session *s)
{
    if (s->dec)
        opus_decoder_destroy(s->dec);
    s->dec = NULL;
    resampler_destroy(s->rs_in);
    s->rs_in = NULL;
    free(s->stage);
    s->stage = NULL;
    free(s->conv);
    s->conv = NULL;
}

/* rs_in's sink: model-rate frames of `ch` channels -> C channels -> ring. */
static int in_sink(void *user, const float *frames, size_t n)
{
    demixd_session *s = user;
    const int ch = s->ch, C = s->C;
    if (ch == C) { /* already the model's layout */
        if (demixd_lane_in_write(s->stream, frames, n)) {
            s->in_error = 1;
            return DEMIX_ENOSPACE;
        }
        s->model_frames += (int64_t)n;
        return DEMIX_OK;
    }
    while (n > 0) {
        size_t k = n < s->conv_frames ? n : s->conv_frames;
        for (size_t i = 0; i < k; i++) {
            const float *f = frames + i * (size_t)ch;
            float *o = s->conv + i * (size_t)C;
            if (ch == 1)
                for (int c = 0; c < C; c++)
                    o[c] = f[0];
            else
                o[0] = 0.5f * (f[0] + f[1]);
        }
        if (demixd_lane_in_write(s->stream, s->conv, k)) {
            s->in_error = 1;
            return DEMIX_ENOSPACE;
        }
        s->model_frames += (int64_t)k;
        frames += k * (size_t)ch;
        n -= k;
    }
    return DEMIX_OK;
}

static void set_paused(demixd_session *s, int paused)
{
    if (paused == s->rx_paused)
        return;
    s->rx_paused = paused;
    demixd_log(DEMIXD_LOG_DEBUG, paused ? "rx_pause" : "rx_resume",
               "session=%s", s->id);
    lws_rx_flow_control(s->wsi, paused ? 0 : 1);
    demixd_metrics_pause(s->d->metrics, DEMIXD_PAUSE_INPUT, paused ? 1 : -1);
}

void demixd__session_in_resume(demixd_session *s)
{
    set_paused(s, 0);
}

static void sink_failed(demixd_session *s)
{
    demixd_log(DEMIXD_LOG_ERROR, "input_overflow",
               "session=%s msg=\"resampler output exceeded the ring's "
               "margin\" margin=%zu",
               s->id, s->in_margin);
    demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                         "The server failed to buffer the input.");
}

void demixd__session_pump(demixd_session *s)
{
    if (!s->stream || demixd__session_closing(s))
        return;
    int blocked = 0;
    while (s->stage_pos < s->stage_len) {
        if (demixd_lane_in_room(s->stream) < s->in_margin) {
            blocked = 1;
            break;
        }
        size_t k = s->stage_len - s->stage_pos;
        if (k > s->pump_chunk)
            k = s->pump_chunk;
        int rc = resampler_process(
            s->rs_in, s->stage + s->stage_pos * (size_t)s->ch, k, in_sink, s);
        if (rc) {
            sink_failed(s);
            return;
        }
        s->stage_pos += k;
    }
    if (!blocked)
        s->stage_pos = s->stage_len = 0;
    if (!blocked && s->state == DEMIX_PROTO_STATE_ENDING && !s->input_flushed) {
        if (demixd_lane_in_room(s->stream) < s->in_margin) {
            blocked = 1;
        } else {
            if (resampler_flush(s->rs_in, in_sink, s)) {
                sink_failed(s);
                return;
            }
            s->input_flushed = 1;
            int64_t M = s->model_frames, H = s->H;
            s->hops_total = M == 0 ? 0 : (M + H - 1) / H + 1;
            s->pad_left = s->hops_total * H - M;
        }
    }
    while (!blocked && s->pad_left > 0) {
        size_t room = demixd_lane_in_room(s->stream);
        if (!room) {
            blocked = 1;
            break;
        }
        size_t k = (int64_t)room < s->pad_left ? room : (size_t)s->pad_left;
        if (demixd_lane_in_zeros(s->stream, k)) {
            sink_failed(s);
            return;
        }
        s->pad_left -= (int64_t)k;
    }
    /* The socket waits only while received audio cannot go in. */
    set_paused(s, s->stage_pos < s->stage_len);
}

/* Little-endian payload -> float frames. */
static void decode_pcm(demixd_session *s, const uint8_t *p, uint32_t frames)
{
    size_t n = (size_t)frames * (size_t)s->ch;
    if (s->in_codec == DEMIX_PROTO_CODEC_PCM_S16) {
        for (size_t i = 0; i < n; i++) {
            int16_t v = (int16_t)(uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            s->stage[i] = (float)v / 32768.0f;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            float f;
            memcpy(&f, &u, sizeof f);
            s->stage[i] = f;
        }
    }
}

void demixd__session_audio(demixd_session *s, const uint8_t *msg, size_t len)
{
    demix_proto_error e;
    demix_proto_audio_in a;
    if (demix_proto_check_order(s->state, s->mode, DEMIX_PROTO_AUDIO, &e) ||
        demix_proto_audio_in_decode(msg, len, s->in_codec, s->ch, s->in_seq, &a,
                                    &e)) {
        demixd__session_fail(s, e.code, e.field, "%s", e.message);
        return;
    }
    s->in_seq++;
    if (s->stage_pos < s->stage_len) {
        /* lws delivered a message while the socket was paused. */
        demixd_log(DEMIXD_LOG_ERROR, "input_while_paused", "session=%s", s->id);
        demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                             "The server received audio it could not "
                             "buffer.");
        return;
    }
    size_t n;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS) {
        int r =
            opus_decode_float(s->dec, a.payload, (opus_int32)a.payload_bytes,
                              s->stage, (int)s->stage_cap, 0);
        if (r < 0) {
            demixd__session_fail(s, DEMIX_PROTO_ERR_BAD_AUDIO, NULL,
                                 "Audio message %u: the Opus packet does not "
                                 "decode (%s).",
                                 (unsigned)a.seq, opus_strerror(r));
            return;
        }
        n = (size_t)r;
        if (s->pre_skip_left > 0) {
            size_t drop =
                (size_t)s->pre_skip_left < n ? (size_t)s->pre_skip_left : n;
            memmove(s->stage, s->stage + drop * (size_t)s->ch,
                    (n - drop) * (size_t)s->ch * sizeof *s->stage);
            n -= drop;
            s->pre_skip_left -= (int)drop;
        }
    } else {
        n = a.frames;
        if (n > s->stage_cap) { /* cannot happen within the size limit */
            demixd__session_fail(s, DEMIX_PROTO_ERR_TOO_LARGE, NULL,
                                 "Audio message too large.");
            return;
        }
        decode_pcm(s, a.payload, a.frames);
        /* 16-bit samples are k / 32768: always within the limit */
        size_t bad = s->in_codec == DEMIX_PROTO_CODEC_PCM_F32
                         ? demixd_first_bad_sample(s->stage, n * (size_t)s->ch)
                         : n * (size_t)s->ch;
        if (bad < n * (size_t)s->ch) {
            char v[32];
            demixd__session_fail(
                s, DEMIX_PROTO_ERR_BAD_AUDIO, NULL,
                "Audio message %u: sample %zu (frame %zu, channel %d) is %s; "
                "samples must be finite and within [-%g, %g].",
                (unsigned)a.seq, bad, bad / (size_t)s->ch,
                (int)(bad % (size_t)s->ch),
                demixd_sample_text(s->stage[bad], v, sizeof v),
                (double)DEMIXD_SAMPLE_LIMIT, (double)DEMIXD_SAMPLE_LIMIT);
            return;
        }
    }
    s->stage_pos = 0;
    s->stage_len = n;
    s->in_frames += (int64_t)n;
    demixd__session_pump(s);
}
