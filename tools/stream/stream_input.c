/*
 * stream_input.c - see stream_input.h.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include "stream_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>

#include "pcm_wire.h"
#include "stream_output.h"
#include "stream_report.h"

#define READ_CHUNK_FRAMES 4096
#define FAST_CHUNK_FRAMES 4096  /* PCM frames per message with --fast */
#define REALTIME_CHUNK_MS 10    /* PCM message duration with --realtime */
#define OPUS_IN_FRAME_MS 20     /* Opus input packet duration */
#define OPUS_MAX_PACKET_BYTES 4000
#define DEFAULT_RATE_HZ 48000

static int opus_rate_ok(int rate)
{
    return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 ||
           rate == 48000;
}

int stream_input_open(stream_session *s)
{
    const stream_options *o = s->o;
    char err[1024];
    if (audio_reader_open(o->input, &s->reader, err, sizeof err)) {
        snprintf(s->err, sizeof s->err, "%s", err);
        return -1;
    }
    s->info = *audio_reader_info(s->reader);
    s->file_rate = s->info.rate_hz;
    s->channels = s->info.channels;
    if (s->channels < 1 || s->channels > 2) {
        snprintf(s->err, sizeof s->err, "%s: %d channels; only mono and "
                 "stereo files can be streamed", o->input, s->channels);
        return -1;
    }
    int rate_ok = o->opus ? opus_rate_ok(s->file_rate)
                          : (s->file_rate >= DEMIX_PROTO_MIN_RATE_HZ &&
                             s->file_rate <= DEMIX_PROTO_MAX_RATE_HZ);
    s->session_rate = rate_ok ? s->file_rate : DEFAULT_RATE_HZ;
    s->in_codec = o->opus ? DEMIX_PROTO_CODEC_OPUS
                          : o->float32 ? DEMIX_PROTO_CODEC_PCM_F32
                                       : DEMIX_PROTO_CODEC_PCM_S16;
    s->out_codec = s->in_codec;
    if (s->session_rate != s->file_rate &&
        resampler_create(s->file_rate, s->session_rate, s->channels, &s->in_rs,
                         s->err, sizeof s->err))
        return -1;
    if (o->opus) {
        int e;
        s->enc = opus_encoder_create(s->session_rate, s->channels,
                                     OPUS_APPLICATION_AUDIO, &e);
        if (!s->enc) {
            snprintf(s->err, sizeof s->err, "cannot create an Opus encoder: %s",
                     opus_strerror(e));
            return -1;
        }
        int bps = o->bitrate_bps ? (int)o->bitrate_bps
                                 : DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL *
                                       s->channels;
        opus_int32 la = 0;
        if (opus_encoder_ctl(s->enc, OPUS_SET_BITRATE(bps)) != OPUS_OK ||
            opus_encoder_ctl(s->enc, OPUS_GET_LOOKAHEAD(&la)) != OPUS_OK) {
            snprintf(s->err, sizeof s->err, "cannot set up the Opus encoder");
            return -1;
        }
        s->enc_lookahead = (int)la;
        s->chunk_frames = s->session_rate * OPUS_IN_FRAME_MS / 1000;
    } else {
        s->chunk_frames = o->realtime ? s->session_rate * REALTIME_CHUNK_MS / 1000
                                      : FAST_CHUNK_FRAMES;
    }
    s->read_buf = malloc((size_t)READ_CHUNK_FRAMES * (size_t)s->channels *
                         sizeof *s->read_buf);
    if (!s->read_buf) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- FIFO */

static int fifo_reserve(stream_session *s, size_t frames)
{
    if (frames <= s->fifo_cap)
        return DEMIX_OK;
    size_t cap = s->fifo_cap ? s->fifo_cap : 8192;
    while (cap < frames)
        cap *= 2;
    float *p = realloc(s->fifo, cap * (size_t)s->channels * sizeof *p);
    if (!p)
        return DEMIX_ENOMEM;
    s->fifo = p;
    s->fifo_cap = cap;
    return DEMIX_OK;
}

static int fifo_sink(void *user, const float *frames, size_t n)
{
    stream_session *s = user;
    if (fifo_reserve(s, s->fifo_len + n))
        return DEMIX_ENOMEM;
    memcpy(s->fifo + s->fifo_len * (size_t)s->channels, frames,
           n * (size_t)s->channels * sizeof *frames);
    s->fifo_len += n;
    return DEMIX_OK;
}

/* Frames of the FIFO not sent yet. */
static size_t unsent(const stream_session *s)
{
    return (size_t)(s->fifo_start + (int64_t)s->fifo_len - s->frames_sent);
}

/* Drop what no resume can need any more: frames sent and, when the client
 * reconnects, older than the tail (and the hop grid's rounding) before the
 * output every stem has reached. The memmove runs once a block's worth is
 * dead, not per message. */
static void fifo_trim(stream_session *s)
{
    int64_t keep = s->frames_sent;
    if (s->o->resume.max_attempts > 0) {
        int64_t tail = (int64_t)(s->o->resume.tail_ms * s->session_rate / 1000.0) +
                       s->grid + 1;
        int64_t need = stream_output_reached(s) - tail;
        if (need < keep)
            keep = need;
    }
    int64_t dead = keep - s->fifo_start;
    if (dead < READ_CHUNK_FRAMES)
        return;
    size_t ch = (size_t)s->channels;
    memmove(s->fifo, s->fifo + (size_t)dead * ch,
            (s->fifo_len - (size_t)dead) * ch * sizeof *s->fifo);
    s->fifo_len -= (size_t)dead;
    s->fifo_start += dead;
}

/* Read (and resample) until `want` frames wait to be sent or the file
 * ends. */
static int fill_fifo(stream_session *s, size_t want)
{
    while (unsent(s) < want && !s->reader_done) {
        size_t n = audio_reader_read(s->reader, s->read_buf, READ_CHUNK_FRAMES);
        int rc;
        if (n > 0) {
            s->file_frames += (int64_t)n;
            rc = s->in_rs ? resampler_process(s->in_rs, s->read_buf, n,
                                              fifo_sink, s)
                          : fifo_sink(s, s->read_buf, n);
        } else {
            if (audio_reader_error(s->reader)[0]) {
                stream_session_fail(s, "%s: read failed: %s", s->o->input,
                                    audio_reader_error(s->reader));
                return DEMIX_EFORMAT;
            }
            rc = s->in_rs ? resampler_flush(s->in_rs, fifo_sink, s) : DEMIX_OK;
            s->reader_done = 1;
            s->real_frames = s->fifo_start + (int64_t)s->fifo_len;
        }
        if (rc) {
            stream_session_fail(s, "%s: %s", s->o->input,
                                rc == DEMIX_ENOMEM ? "out of memory"
                                                   : "resampling failed");
            return rc;
        }
    }
    return DEMIX_OK;
}

/* ------------------------------------------------------------- send */

/* Positions are frames of the FIFO stream: the server drops the encoder's
 * lookahead (pre_skip) from what it decodes, which undoes the encoder's
 * delay. What it counts as input excludes those frames, and the current
 * session began at base. */
int64_t stream_input_server_frames(const stream_session *s)
{
    return s->frames_sent - s->base - s->enc_lookahead;
}

/* Build and send the next audio message, or end. Called on writeable. */
void stream_input_send_next(stream_session *s)
{
    if (s->core.end_sent || s->failed)
        return;
    size_t ch = (size_t)s->channels;
    size_t want = (size_t)s->chunk_frames; /* frames per message */
    if (fill_fifo(s, want))
        return;
    if (s->enc && s->reader_done) {
        /* The encoder delays by its lookahead: pad so that every real frame
         * comes out of the server's decoder, then to a whole packet. */
        if (!s->pad_added) {
            size_t pad = (size_t)s->enc_lookahead;
            if (fifo_reserve(s, s->fifo_len + pad + (size_t)s->chunk_frames)) {
                stream_session_fail(s, "out of memory");
                return;
            }
            memset(s->fifo + s->fifo_len * ch, 0, pad * ch * sizeof(float));
            s->fifo_len += pad;
            s->pad_added = 1;
        }
        /* Whole packets: the rest of this session's stream (a resumed
         * one starts anywhere) padded with silence. */
        size_t rem = unsent(s) % (size_t)s->chunk_frames;
        if (rem) {
            size_t pad = (size_t)s->chunk_frames - rem;
            if (fifo_reserve(s, s->fifo_len + pad)) {
                stream_session_fail(s, "out of memory");
                return;
            }
            memset(s->fifo + s->fifo_len * ch, 0, pad * ch * sizeof(float));
            s->fifo_len += pad;
        }
    }
    size_t left = unsent(s);
    if (left == 0 && s->reader_done) {
        if (client_session_send_end(&s->core))
            return; /* the failure is reported */
        return;
    }

    size_t n = left < want ? left : want;
    const float *frames =
        s->fifo + (size_t)(s->frames_sent - s->fifo_start) * ch;
    double now = ws_client_now_s();
    if (s->t0 == 0.0)
        s->t0 = now;
    if (s->o->realtime) {
        /* Sent once its last frame would have been captured live. */
        double due = s->t0 + (double)(s->frames_sent + (int64_t)n) /
                                 s->session_rate;
        if (now < due) {
            ws_client_set_timer(s->ws, (int64_t)((due - now) * 1e6) + 1);
            return;
        }
    }
    if (s->frames_sent - stream_output_reached(s) > s->max_in_flight)
        return; /* output arrival asks again */

    size_t cap, len = 0;
    uint8_t *pay = client_session_audio_payload(&s->core, &cap);
    if (!pay)
        return;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS) {
        int bytes = opus_encode_float(s->enc, frames, (int)n, pay,
                                      OPUS_MAX_PACKET_BYTES);
        if (bytes < 0) {
            stream_session_fail(s, "Opus encoding failed: %s",
                                opus_strerror(bytes));
            return;
        }
        len = (size_t)bytes;
    } else {
        len = pcm_wire_write(s->in_codec, frames, n * ch, pay);
    }
    if (client_session_send_audio(&s->core, len))
        return; /* failure reported */
    if (s->frames_sent >= s->probe_floor) /* (not a re-sent tail) */
        stream_report_probe_push(s, s->frames_sent, now);
    s->frames_sent += (int64_t)n;
    if (s->frames_sent > s->sent_max)
        s->sent_max = s->frames_sent;
    fifo_trim(s);
    ws_client_want_write(s->ws);
}
