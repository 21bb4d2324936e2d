/*
 * cmd_stream.c - `demix stream`: stream an audio file through a demixd
 * server (docs/protocol.md) and write the stems it sends back exactly as
 * `demix separate` writes them: DIR/<input name>/<source>.wav, each with the
 * input's length, rate and channels, sample k aligned with input sample k.
 *
 * Design. One connection, one thread, event-driven on libwebsockets
 * (ws_client.h). The session runs: connect -> start -> ready -> audio out
 * while stems come in -> end -> summary -> close 1000.
 *
 *   file --(libsndfile)--> [resample to the session rate] --> FIFO
 *        --> audio_in messages (PCM s16/f32 or one Opus packet each)
 *   audio_out messages --> [Opus decode, drop pre_skip] --> [resample back
 *        to the file's rate] --> trim to the input's length --> WAV
 *
 * The session rate is the file's rate when the protocol allows it (8-96
 * kHz; with Opus 8, 12, 16, 24 or 48 kHz), else 48 kHz with soxr on the
 * client both ways (resample.h: delay-compensated, so alignment holds).
 * Positions: the output of stem s at position p is written as frame p of
 * its file; messages of a stem must arrive contiguous from 0 (checked).
 *
 * Flow control. Audio is sent only on a writeable event (lws keeps at most
 * one partially sent message), and only while the frames in flight (sent
 * minus the least output received over all stems) stay under the announced
 * latency plus one second: the client never runs ahead of the server by
 * more than that, whatever the file's length. --realtime also paces each
 * message at the moment its last frame would have been captured live.
 * Memory is bounded and independent of the file's length (the latency
 * figures aside: one double per message).
 *
 * Latency. "announced" is ready.latency_frames, the algorithmic worst case;
 * "measured" is, for each message's first position p, the time from sending
 * it to the moment output position p was there on every stem (median, 90th
 * percentile, max). Positions late in a model hop or a resampler block need
 * less lookahead than the worst case, so the median is below the announced
 * figure and the max near it plus network and compute time. In --fast mode
 * it includes the time spent queued behind earlier audio.
 *
 * Stems. --stems A,B asks for those; without it all the model's sources
 * are asked for: first by the default names (drums, bass, vocals, other),
 * and if the server's model has others, a short mix-mode session reads its
 * source names from ready and the stream starts again. --mix NAME=GAIN,...
 * asks for one server-side mix, written as mix.wav.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opus/opus.h>

#include "audio_io.h"
#include "commands.h"
#include "out_paths.h"
#include "pcm_wire.h"
#include "progress.h"
#include "protocol.h"
#include "resample.h"
#include "ws_client.h"

#define PATH_BYTES 4096
#define READ_CHUNK_FRAMES 4096
#define FAST_CHUNK_FRAMES 4096  /* PCM frames per message with --fast */
#define REALTIME_CHUNK_MS 10    /* PCM message duration with --realtime */
#define OPUS_IN_FRAME_MS 20     /* Opus input packet duration */
#define OPUS_MAX_PACKET_BYTES 4000
#define OPUS_MAX_FRAMES 5760    /* 120 ms at 48 kHz, the largest packet */
#define PROBE_RING 8192         /* latency probes outstanding */
#define TICK_S 0.1              /* idle check period */
#define DEFAULT_TIMEOUT_S 30
#define CLOSE_GRACE_S 3.0       /* wait for the close after a failure */
#define DEFAULT_RATE_HZ 48000
#define MIX_STEM_SLOT DEMIX_PROTO_MAX_STEMS /* stems[] slot of the mix */

static const char *const default_stem_names[] = {"drums", "bass", "vocals",
                                                 "other"};

typedef struct stream_options {
    const char *url;
    const char *input;
    const char *out_dir;
    const char *stems;
    const char *mix;
    const char *token;
    int opus;
    int float32;
    int realtime;
    int quiet;
    long bitrate_bps;
    long timeout_s;
} stream_options;

/* One output stream: a source in stems mode, or the mix. */
typedef struct stem_out {
    int active;
    int wire_index;      /* audio_out stem byte */
    char name[DEMIX_PROTO_NAME_BYTES];
    audio_writer *writer;
    OpusDecoder *dec;
    int skip_left;       /* Opus pre_skip frames still to drop */
    resampler *rs;       /* session rate -> file rate; NULL when equal */
    int64_t next_pos;    /* position the next message must start at */
    int64_t avail;       /* session-rate frames decoded (after pre_skip) */
    int64_t fed;         /* of those, passed on (trimmed to the input) */
    int64_t written;     /* file-rate frames written */
    int last_seen;
} stem_out;

typedef struct probe {
    int64_t pos;
    double t;
} probe;

enum session_state {
    ST_CONNECTING = 0,
    ST_WAIT_READY,
    ST_STREAMING,
    ST_ENDING,   /* end sent */
    ST_SUMMARY,  /* summary received, waiting for the close */
    ST_CLOSED,
};

typedef struct session {
    const stream_options *o;
    ws_client *ws;
    int state;
    int failed;
    int server_error;  /* failed because of an error message */
    double failed_at;  /* when the failure was noticed (timer) */
    char err[1024];
    int probe_only;    /* stop at ready (reading the model's sources) */
    int stem_count_req;
    char stem_req[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
    demix_proto_code error_code;

    /* input */
    audio_reader *reader;
    audio_info info;
    int file_rate;
    int channels;
    int session_rate;
    resampler *in_rs;
    float *read_buf;
    float *fifo;          /* session-rate frames waiting to be sent */
    size_t fifo_len;
    size_t fifo_cap;
    int reader_done;      /* file read and resampler flushed */
    int64_t file_frames;  /* frames read from the file */
    int64_t real_frames;  /* session-rate frames of real input, known
                             once reader_done */
    int64_t frames_sent;  /* session-rate frames sent (Opus: with padding) */
    uint32_t seq_in;
    int chunk_frames;
    OpusEncoder *enc;
    int enc_lookahead;
    int pad_added;
    int start_sent;
    int end_sent;
    double t0;            /* first audio sent */
    int64_t max_in_flight;

    /* ready and output */
    demix_proto_ready ready;
    demix_proto_codec in_codec, out_codec;
    stem_out stems[DEMIX_PROTO_MAX_STEMS + 1];
    int stem_count;
    uint32_t seq_out;
    float *conv;
    size_t conv_cap;      /* floats */
    char dir[PATH_BYTES];
    int dir_made;
    demix_proto_summary summary;
    int have_summary;
    int close_code;
    char close_reason[128];
    double last_rx;
    double start_time;

    /* latency */
    probe probes[PROBE_RING];
    size_t probe_head, probe_tail;
    double *lat;
    size_t lat_n, lat_cap;

    progress bar;
} session;

static volatile sig_atomic_t g_interrupted;
static ws_client *volatile g_ws;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_ws)
        ws_client_wake(g_ws);
}

void cmd_stream_usage(FILE *out)
{
    fprintf(out,
            "usage: demix stream --url ws://HOST:PORT/v1/stream [OPTIONS] INPUT\n"
            "\n"
            "Stream INPUT (any file demix separate reads) through a demixd server and\n"
            "write the stems it sends back as DIR/NAME/SOURCE.wav, exactly as demix\n"
            "separate does: the input's length, rate and channels, sample-aligned.\n"
            "\n"
            "options:\n"
            "  -u, --url URL        the server's stream endpoint (required)\n"
            "  -c, --codec C        pcm (default) or opus, both directions\n"
            "      --float32        32-bit float on the wire and in the files\n"
            "                       (default: 16-bit PCM)\n"
            "      --fast           send as fast as the server takes it (default)\n"
            "      --realtime       send at the pace of a live source\n"
            "      --stems A,B      ask for these stems (default: all of the model's)\n"
            "      --mix A=G,B=G    one server-side mix instead, written as mix.wav;\n"
            "                       sources not named get gain 1\n"
            "  -o, --out DIR        output folder (default: separated)\n"
            "      --bitrate BPS    Opus bitrate of each stream (default: 64000 per\n"
            "                       channel)\n"
            "      --token T        access token, when the server wants one\n"
            "                       (default: $DEMIX_TOKEN)\n"
            "      --timeout S      give up after S seconds without a reply\n"
            "                       (default: %d)\n"
            "  -q, --quiet          no progress bar or latency lines\n"
            "  -h, --help           this text\n"
            "\n"
            "It prints the latency the server announces and the latency measured\n"
            "(time from sending input position p to receiving output position p;\n"
            "with --fast it includes queueing), then the server's summary.\n"
            "\n"
            "exit status: 0 stems written, 1 failure (connection, server error),\n"
            "2 usage error.\n",
            DEFAULT_TIMEOUT_S);
}

/* ------------------------------------------------------------- helpers */

static void fail(session *s, const char *fmt, ...) DEMIX_PRINTF(2, 3);
static void fail(session *s, const char *fmt, ...)
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

static int opus_rate_ok(int rate)
{
    return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 ||
           rate == 48000;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------- input */

static int fifo_reserve(session *s, size_t frames)
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
    session *s = user;
    if (fifo_reserve(s, s->fifo_len + n))
        return DEMIX_ENOMEM;
    memcpy(s->fifo + s->fifo_len * (size_t)s->channels, frames,
           n * (size_t)s->channels * sizeof *frames);
    s->fifo_len += n;
    return DEMIX_OK;
}

static void fifo_consume(session *s, size_t n)
{
    size_t ch = (size_t)s->channels;
    memmove(s->fifo, s->fifo + n * ch, (s->fifo_len - n) * ch * sizeof *s->fifo);
    s->fifo_len -= n;
}

/* Read (and resample) until the FIFO holds `want` frames or the file ends. */
static int fill_fifo(session *s, size_t want)
{
    while (s->fifo_len < want && !s->reader_done) {
        size_t n = audio_reader_read(s->reader, s->read_buf, READ_CHUNK_FRAMES);
        int rc;
        if (n > 0) {
            s->file_frames += (int64_t)n;
            rc = s->in_rs ? resampler_process(s->in_rs, s->read_buf, n,
                                              fifo_sink, s)
                          : fifo_sink(s, s->read_buf, n);
        } else {
            if (audio_reader_error(s->reader)[0]) {
                fail(s, "%s: read failed: %s", s->o->input,
                     audio_reader_error(s->reader));
                return DEMIX_EFORMAT;
            }
            rc = s->in_rs ? resampler_flush(s->in_rs, fifo_sink, s) : DEMIX_OK;
            s->reader_done = 1;
            s->real_frames = s->frames_sent + (int64_t)s->fifo_len;
        }
        if (rc) {
            fail(s, "%s: %s", s->o->input,
                 rc == DEMIX_ENOMEM ? "out of memory" : "resampling failed");
            return rc;
        }
    }
    return DEMIX_OK;
}

/* Positions are frames of the FIFO stream: the server drops the encoder's
 * lookahead (pre_skip) from what it decodes, which undoes the encoder's
 * delay. What it counts as input excludes those frames. */
static int64_t server_input_frames(const session *s)
{
    return s->frames_sent - s->enc_lookahead;
}

/* Output position every stem has reached. */
static int64_t output_reached(const session *s)
{
    int64_t m = INT64_MAX;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++)
        if (s->stems[i].active && s->stems[i].avail < m)
            m = s->stems[i].avail;
    return m == INT64_MAX ? 0 : m;
}

static void probe_push(session *s, int64_t pos, double t)
{
    if (pos < 0 || s->probe_head - s->probe_tail >= PROBE_RING)
        return;
    s->probes[s->probe_head % PROBE_RING] = (probe){pos, t};
    s->probe_head++;
}

static void probes_resolve(session *s, double now)
{
    int64_t reached = output_reached(s);
    while (s->probe_tail < s->probe_head) {
        const probe *p = &s->probes[s->probe_tail % PROBE_RING];
        if (p->pos >= reached)
            break;
        if (s->lat_n == s->lat_cap) {
            size_t cap = s->lat_cap ? 2 * s->lat_cap : 1024;
            double *q = realloc(s->lat, cap * sizeof *q);
            if (!q)
                break; /* figures only: stop collecting */
            s->lat = q;
            s->lat_cap = cap;
        }
        s->lat[s->lat_n++] = now - p->t;
        s->probe_tail++;
    }
}

/* Build and send the next audio message, or end. Called on writeable. */
static void send_next(session *s)
{
    if (s->end_sent || s->failed)
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
                fail(s, "out of memory");
                return;
            }
            memset(s->fifo + s->fifo_len * ch, 0, pad * ch * sizeof(float));
            s->fifo_len += pad;
            s->pad_added = 1;
        }
        size_t rem = s->fifo_len % (size_t)s->chunk_frames;
        if (rem) {
            size_t pad = (size_t)s->chunk_frames - rem;
            if (fifo_reserve(s, s->fifo_len + pad)) {
                fail(s, "out of memory");
                return;
            }
            memset(s->fifo + s->fifo_len * ch, 0, pad * ch * sizeof(float));
            s->fifo_len += pad;
        }
    }
    if (s->fifo_len == 0 && s->reader_done) {
        char buf[64];
        size_t len;
        if (demix_proto_write_end(buf, sizeof buf, &len)) {
            fail(s, "cannot write the end message");
            return;
        }
        memcpy(ws_client_tx_buffer(s->ws), buf, len);
        if (ws_client_send(s->ws, 0, len)) {
            fail(s, "the connection failed while sending end");
            return;
        }
        s->end_sent = 1;
        s->state = ST_ENDING;
        return;
    }

    size_t n = s->fifo_len < want ? s->fifo_len : want;
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
    if (s->frames_sent - output_reached(s) > s->max_in_flight)
        return; /* output arrival asks again */

    uint8_t *buf = ws_client_tx_buffer(s->ws);
    demix_proto_audio_in h = {.codec = s->in_codec, .flags = 0,
                              .seq = s->seq_in};
    if (demix_proto_audio_in_write_header(&h, buf, DEMIX_PROTO_AUDIO_IN_HEADER_BYTES)) {
        fail(s, "cannot write an audio header");
        return;
    }
    size_t len = DEMIX_PROTO_AUDIO_IN_HEADER_BYTES;
    uint8_t *pay = buf + len;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS) {
        int bytes = opus_encode_float(s->enc, s->fifo, (int)n, pay,
                                      OPUS_MAX_PACKET_BYTES);
        if (bytes < 0) {
            fail(s, "Opus encoding failed: %s", opus_strerror(bytes));
            return;
        }
        len += (size_t)bytes;
    } else {
        len += pcm_wire_write(s->in_codec, s->fifo, n * ch, pay);
    }
    if (ws_client_send(s->ws, 1, len)) {
        fail(s, "the connection failed while sending audio");
        return;
    }
    probe_push(s, s->frames_sent, now);
    s->seq_in++;
    s->frames_sent += (int64_t)n;
    fifo_consume(s, n);
    ws_client_want_write(s->ws);
}

static void send_start(session *s)
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
        fail(s, "the start message would be refused (check --stems, --mix, "
                "--bitrate and --token)");
        return;
    }
    if (ws_client_send(s->ws, 0, len)) {
        fail(s, "the connection failed while sending start");
        return;
    }
    s->start_sent = 1;
}

/* ------------------------------------------------------------ output */

static int stem_write_sink(void *user, const float *frames, size_t n)
{
    stem_out *st = ((void **)user)[0];
    session *s = ((void **)user)[1];
    int64_t room = s->file_frames - st->written;
    if (!s->reader_done)
        room = INT64_MAX; /* the length is not known yet: nothing to trim */
    if ((int64_t)n > room)
        n = room > 0 ? (size_t)room : 0;
    if (n == 0)
        return DEMIX_OK;
    int rc = audio_writer_write(st->writer, frames, n, s->err, sizeof s->err);
    if (rc)
        return rc;
    st->written += (int64_t)n;
    return DEMIX_OK;
}

/* Decoded session-rate frames of one stem: trim to the real input, then
 * (resample and) write. */
static int stem_deliver(session *s, stem_out *st, const float *frames,
                        size_t n)
{
    st->avail += (int64_t)n;
    if (s->reader_done) {
        int64_t room = s->real_frames - st->fed;
        if ((int64_t)n > room)
            n = room > 0 ? (size_t)room : 0;
    }
    if (n == 0)
        return DEMIX_OK;
    st->fed += (int64_t)n;
    void *ctx[2] = {st, s};
    if (st->rs)
        return resampler_process(st->rs, frames, n, stem_write_sink, ctx);
    return stem_write_sink(ctx, frames, n);
}

static stem_out *stem_for_index(session *s, int wire)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++)
        if (s->stems[i].active && s->stems[i].wire_index == wire)
            return &s->stems[i];
    return NULL;
}

static void handle_audio(session *s, const uint8_t *data, size_t len)
{
    if (s->state < ST_STREAMING) {
        fail(s, "the server sent audio before ready");
        return;
    }
    demix_proto_audio_out h;
    demix_proto_error perr;
    if (demix_proto_audio_out_decode(data, len, s->out_codec, s->channels,
                                     s->seq_out, &h, &perr)) {
        fail(s, "the server sent a malformed audio message (seq %u): %s",
             (unsigned)s->seq_out, perr.message);
        return;
    }
    s->seq_out++;
    stem_out *st = stem_for_index(s, h.stem);
    if (!st) {
        fail(s, "the server sent stem index %u, which was not asked for",
             (unsigned)h.stem);
        return;
    }
    if ((int64_t)h.position != st->next_pos) {
        fail(s, "the server sent %s at position %llu, expected %lld (a gap "
                "or an overlap)", st->name, (unsigned long long)h.position,
             (long long)st->next_pos);
        return;
    }
    if (st->last_seen) {
        fail(s, "the server sent %s audio after its LAST message", st->name);
        return;
    }
    st->next_pos += h.frames;
    if (h.flags & DEMIX_PROTO_FLAG_LAST)
        st->last_seen = 1;

    size_t ch = (size_t)s->channels;
    size_t frames = 0;
    const float *out = s->conv;
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        int n = opus_decode_float(st->dec, h.payload, (opus_int32)h.payload_bytes,
                                  s->conv, OPUS_MAX_FRAMES, 0);
        if (n < 0) {
            fail(s, "a %s Opus packet from the server does not decode: %s",
                 st->name, opus_strerror(n));
            return;
        }
        frames = (size_t)n;
        if (st->skip_left > 0) {
            size_t drop = (size_t)st->skip_left < frames ? (size_t)st->skip_left
                                                         : frames;
            st->skip_left -= (int)drop;
            frames -= drop;
            out = s->conv + drop * ch;
        }
    } else {
        frames = h.frames;
        if (frames * ch > s->conv_cap) {
            fail(s, "an audio message from the server is too large");
            return;
        }
        (void)pcm_wire_read(s->out_codec, h.payload, frames * ch, s->conv);
    }
    if (stem_deliver(s, st, out, frames)) {
        char why[sizeof s->err];
        snprintf(why, sizeof why, "%s", s->err[0] ? s->err : "cannot write a stem");
        fail(s, "%s", why);
        return;
    }
    probes_resolve(s, ws_client_now_s());
    if (!s->end_sent)
        ws_client_want_write(s->ws); /* in-flight room may have opened */
    if (!s->o->quiet && s->info.frames > 0)
        progress_update(&s->bar, (double)output_reached(s) / s->session_rate,
                        "stream");
}

/* Open the writers and decoders once ready says what comes. */
static int open_outputs(session *s)
{
    const demix_proto_ready *r = &s->ready;
    char name[256];
    out_paths_base_name(s->o->input, name, sizeof name);
    if (snprintf(s->dir, sizeof s->dir, "%s/%s", s->o->out_dir, name) >=
        (int)sizeof s->dir) {
        fail(s, "output path too long");
        return -1;
    }
    char err[1024];
    if (out_paths_make_dirs(s->dir, err, sizeof err)) {
        fail(s, "%s", err);
        return -1;
    }
    s->dir_made = 1;
    int n = 0;
    if (r->mode == DEMIX_PROTO_MODE_MIX) {
        stem_out *st = &s->stems[MIX_STEM_SLOT];
        st->active = 1;
        st->wire_index = DEMIX_PROTO_STEM_MIX;
        snprintf(st->name, sizeof st->name, "mix");
        n = 1;
    } else {
        for (int i = 0; i < r->stem_count; i++) {
            int src = r->stem_source[i];
            stem_out *st = &s->stems[src];
            st->active = 1;
            st->wire_index = src;
            memcpy(st->name, r->sources[src], sizeof st->name);
            st->name[sizeof st->name - 1] = '\0';
            n++;
        }
    }
    s->stem_count = n;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stem_out *st = &s->stems[i];
        if (!st->active)
            continue;
        char path[PATH_BYTES];
        if (snprintf(path, sizeof path, "%s/%s.wav", s->dir, st->name) >=
            (int)sizeof path) {
            fail(s, "output path too long");
            return -1;
        }
        if (audio_writer_open(path, s->file_rate, s->channels,
                              s->o->float32 ? AUDIO_FLOAT32 : AUDIO_PCM16,
                              &st->writer, err, sizeof err)) {
            fail(s, "%s", err);
            return -1;
        }
        if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
            int e;
            st->dec = opus_decoder_create(s->session_rate, s->channels, &e);
            if (!st->dec) {
                fail(s, "cannot create an Opus decoder: %s", opus_strerror(e));
                return -1;
            }
            st->skip_left = r->opus_pre_skip_frames;
        }
        if (s->session_rate != s->file_rate &&
            resampler_create(s->session_rate, s->file_rate, s->channels,
                             &st->rs, err, sizeof err)) {
            fail(s, "%s", err);
            return -1;
        }
    }
    return 0;
}

static void handle_ready(session *s, const demix_proto_ready *r)
{
    if (s->state != ST_WAIT_READY) {
        fail(s, "the server sent ready twice");
        return;
    }
    s->ready = *r;
    if (r->client_rate_hz != s->session_rate || r->channels != s->channels ||
        r->input_codec != s->in_codec || r->output_codec != s->out_codec) {
        fail(s, "the server's ready does not match the start (rate %d, "
                "channels %d, codecs %s/%s)", r->client_rate_hz, r->channels,
             demix_proto_codec_name(r->input_codec),
             demix_proto_codec_name(r->output_codec));
        return;
    }
    if (s->probe_only) {
        s->state = ST_SUMMARY; /* nothing more wanted */
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
    if (open_outputs(s))
        return;
    s->max_in_flight = (int64_t)r->latency_frames + s->session_rate +
                       s->chunk_frames + s->enc_lookahead;
    s->state = ST_STREAMING;
    ws_client_want_write(s->ws);
}

static void handle_text(session *s, const uint8_t *data, size_t len)
{
    static demix_proto_server_msg m; /* ~2 KiB; one session per process */
    demix_proto_error perr;
    if (demix_proto_parse_server((const char *)data, len, &m, &perr)) {
        fail(s, "the server sent a malformed message: %s", perr.message);
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
        if (s->state != ST_ENDING) {
            fail(s, "the server sent a summary before the end");
            return;
        }
        s->summary = m.summary;
        s->have_summary = 1;
        s->state = ST_SUMMARY;
        break;
    case DEMIX_PROTO_STATS:
        break;
    default:
        fail(s, "the server sent an unexpected %s message",
             demix_proto_type_name(m.type));
        break;
    }
}

/* ----------------------------------------------------------- events */

static void ev_open(void *user)
{
    session *s = user;
    s->state = ST_WAIT_READY;
    s->last_rx = ws_client_now_s();
    ws_client_want_write(s->ws);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

static void ev_message(void *user, int binary, const uint8_t *data, size_t len)
{
    session *s = user;
    s->last_rx = ws_client_now_s();
    if (s->failed)
        return;
    if (binary)
        handle_audio(s, data, len);
    else
        handle_text(s, data, len);
}

static void ev_writeable(void *user)
{
    session *s = user;
    if (s->failed)
        return;
    if (s->state == ST_WAIT_READY && !s->start_sent) {
        send_start(s);
        return;
    }
    if (s->state == ST_STREAMING)
        send_next(s);
}

static void ev_timer(void *user)
{
    session *s = user;
    double now = ws_client_now_s();
    if (!s->failed && s->state != ST_SUMMARY &&
        now - s->last_rx > (double)s->o->timeout_s) {
        fail(s, "no reply from the server for %ld s", s->o->timeout_s);
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
    if (s->state == ST_STREAMING)
        ws_client_want_write(s->ws);
    ws_client_set_timer(s->ws, (int64_t)(TICK_S * 1e6));
}

static void ev_close(void *user, int code, const char *reason)
{
    session *s = user;
    /* lws 4.1 turns the peer's close codes 1012-1015 into 1002 */
    code = demix_proto_received_close_code(code, reason);
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason);
    int expected = s->state == ST_SUMMARY;
    s->state = ST_CLOSED;
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
            fail(s, "the connection to the server dropped (no close frame) "
                    "after %lld frames sent", (long long)s->frames_sent);
        else
            fail(s, "the server closed the connection with %d%s%s before the "
                    "stream finished", code, reason[0] ? " " : "", reason);
        return;
    }
    if (!s->probe_only && code != 1000)
        fail(s, "the server closed with %d%s%s after the summary (expected "
                "1000)", code, reason[0] ? " " : "", reason);
}

static void ev_connect_error(void *user, const char *why)
{
    session *s = user;
    s->state = ST_CLOSED;
    fail(s, "cannot connect to %s: %s", s->o->url, why);
}

/* ------------------------------------------------------------- run */

static void session_free(session *s)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stem_out *st = &s->stems[i];
        if (st->writer)
            (void)audio_writer_close(st->writer, NULL, 0);
        if (st->dec)
            opus_decoder_destroy(st->dec);
        resampler_destroy(st->rs);
        memset(st, 0, sizeof *st);
    }
    ws_client_destroy(s->ws);
    s->ws = NULL;
    g_ws = NULL;
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

/* Remove what a failed session wrote. */
static void remove_outputs(session *s)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stem_out *st = &s->stems[i];
        if (!st->writer)
            continue;
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s", audio_writer_path(st->writer));
        (void)audio_writer_close(st->writer, NULL, 0);
        st->writer = NULL;
        unlink(path);
    }
    if (s->dir_made)
        rmdir(s->dir);
}

/* After the summary: flush resamplers, check lengths, close the files. */
static int finish_outputs(session *s)
{
    int rc = 0;
    int64_t target = s->file_frames;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS && !rc; i++) {
        stem_out *st = &s->stems[i];
        if (!st->active)
            continue;
        if (st->fed < s->real_frames) {
            snprintf(s->err, sizeof s->err,
                     "the server sent %lld of %lld frames of %s",
                     (long long)st->fed, (long long)s->real_frames, st->name);
            return -1;
        }
        void *ctx[2] = {st, s};
        if (st->rs && resampler_flush(st->rs, stem_write_sink, ctx))
            return -1;
        /* Resampling both ways may leave the length one frame short. */
        float zeros[64] = {0};
        while (st->written < target) {
            size_t n = (size_t)(target - st->written);
            size_t per = sizeof zeros / sizeof zeros[0] / (size_t)s->channels;
            if (n > per)
                n = per;
            if (stem_write_sink(ctx, zeros, n))
                return -1;
        }
        if (s->stems[i].last_seen == 0 && s->real_frames > 0 && !s->o->quiet)
            fprintf(stderr, "demix stream: warning: the server sent no LAST "
                            "flag on %s\n", st->name);
    }
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stem_out *st = &s->stems[i];
        if (!st->writer)
            continue;
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s", audio_writer_path(st->writer));
        int64_t clipped = audio_writer_clipped(st->writer);
        if (audio_writer_close(st->writer, s->err, sizeof s->err))
            rc = -1;
        st->writer = NULL;
        if (rc)
            unlink(path);
        else {
            fprintf(stderr, "wrote %s\n", path);
            if (clipped > 0)
                fprintf(stderr,
                        "demix: warning: %s: %lld samples beyond [-1, 1] were "
                        "clipped (--float32 keeps them)\n",
                        path, (long long)clipped);
        }
    }
    return rc;
}

static void print_report(session *s)
{
    if (s->o->quiet)
        return;
    const demix_proto_ready *r = &s->ready;
    double rate = r->client_rate_hz;
    if (s->lat_n) {
        qsort(s->lat, s->lat_n, sizeof *s->lat, cmp_double);
        double med = s->lat[s->lat_n / 2];
        double p90 = s->lat[(size_t)(0.9 * (double)(s->lat_n - 1))];
        double max = s->lat[s->lat_n - 1];
        fprintf(stderr,
                "demix stream: latency: announced %.1f ms (%d frames, the "
                "worst case), measured median %.1f ms, p90 %.1f ms, max %.1f "
                "ms over %zu positions%s\n",
                1000.0 * r->latency_frames / rate, r->latency_frames,
                1000.0 * med, 1000.0 * p90, 1000.0 * max, s->lat_n,
                s->o->realtime ? "" : " (--fast: includes queueing)");
    }
    const demix_proto_summary *m = &s->summary;
    fprintf(stderr,
            "demix stream: summary: session %s, %llu frames in, %llu out, "
            "%.2f s of audio in %.2f s (%.1fx real time), %llu hops, %llu "
            "late\n",
            m->session, (unsigned long long)m->input_frames,
            (unsigned long long)m->output_frames, m->duration_s, m->wall_s,
            m->wall_s > 0 ? m->duration_s / m->wall_s : 0.0,
            (unsigned long long)m->hops, (unsigned long long)m->late_hops);
}

/* One connection: stream the file, or with probe_only read the model's
 * sources. Returns 0 or -1 (s->err says why). */
static int run_session(session *s)
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
    s->conv_cap = DEMIX_PROTO_MAX_BINARY_BYTES;
    s->conv = malloc(s->conv_cap * sizeof *s->conv);
    if (!s->read_buf || !s->conv) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }

    ws_client_events ev = {
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writeable = ev_writeable,
        .on_timer = ev_timer,
        .on_close = ev_close,
        .on_connect_error = ev_connect_error,
    };
    if (ws_client_create(o->url, DEMIX_PROTO_SUBPROTOCOL,
                         DEMIX_PROTO_MAX_BINARY_BYTES, &ev, s, &s->ws, err,
                         sizeof err)) {
        snprintf(s->err, sizeof s->err, "%s", err);
        return -1;
    }
    g_ws = s->ws;
    s->state = ST_CONNECTING;
    s->start_time = ws_client_now_s();
    s->last_rx = s->start_time;
    if (!o->quiet)
        progress_init(&s->bar, stderr,
                      s->info.frames > 0 ? (double)s->info.frames / s->file_rate
                                         : 0.0);
    int interrupted_reported = 0;
    while (s->state != ST_CLOSED) {
        if (ws_client_service(s->ws, 100) < 0) {
            fail(s, "libwebsockets failed");
            break;
        }
        if (g_interrupted && !interrupted_reported) {
            interrupted_reported = 1;
            fail(s, "interrupted");
            if (s->state == ST_CONNECTING)
                break;
        }
        /* Before the handshake lws times the connection out itself. */
        if (s->state == ST_CONNECTING &&
            ws_client_now_s() - s->start_time > (double)o->timeout_s) {
            fail(s, "cannot connect to %s: no answer in %ld s", o->url,
                 o->timeout_s);
            break;
        }
    }
    if (!o->quiet)
        progress_finish(&s->bar);
    if (s->failed)
        return -1;
    if (s->probe_only)
        return 0;
    if (!s->have_summary) {
        snprintf(s->err, sizeof s->err, "the stream ended without a summary");
        return -1;
    }
    int64_t sent_positions = server_input_frames(s);
    if ((int64_t)s->summary.input_frames != sent_positions && !o->quiet)
        fprintf(stderr, "demix stream: warning: the server counted %llu input "
                        "frames, %lld were sent\n",
                (unsigned long long)s->summary.input_frames,
                (long long)sent_positions);
    if (finish_outputs(s))
        return -1;
    print_report(s);
    return 0;
}

/* ------------------------------------------------------------ options */

static int check_mix(const char *text)
{
    const char *p = text;
    int count = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p || (size_t)(eq - p) >= DEMIX_PROTO_NAME_BYTES) {
            fprintf(stderr, "demix stream: --mix takes NAME=GAIN pairs "
                            "separated by commas (got '%.*s')\n",
                    (int)len, p);
            return -1;
        }
        char num[64];
        size_t nl = len - (size_t)(eq + 1 - p);
        if (nl == 0 || nl >= sizeof num) {
            fprintf(stderr, "demix stream: --mix: no gain for '%.*s'\n",
                    (int)(eq - p), p);
            return -1;
        }
        memcpy(num, eq + 1, nl);
        num[nl] = '\0';
        char *end;
        double g = strtod(num, &end);
        if (*end || !(g >= 0.0 && g <= DEMIX_PROTO_MAX_GAIN)) {
            fprintf(stderr, "demix stream: --mix: gain '%s' of '%.*s' must be "
                            "a number from 0 to 4\n",
                    num, (int)(eq - p), p);
            return -1;
        }
        if (++count > DEMIX_PROTO_MAX_STEMS) {
            fprintf(stderr, "demix stream: --mix: at most %d gains\n",
                    DEMIX_PROTO_MAX_STEMS);
            return -1;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int parse_args(int argc, char **argv, stream_options *o)
{
    memset(o, 0, sizeof *o);
    o->out_dir = "separated";
    o->timeout_s = DEFAULT_TIMEOUT_S;
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->input) {
                fprintf(stderr, "demix stream: one INPUT at a time (got '%s' "
                                "and '%s')\n", o->input, a);
                return DEMIX_EXIT_USAGE;
            }
            o->input = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cmd_stream_usage(stdout);
            return -1;
        } else if (strcmp(a, "--float32") == 0) {
            o->float32 = 1;
        } else if (strcmp(a, "--realtime") == 0) {
            o->realtime = 1;
        } else if (strcmp(a, "--fast") == 0) {
            o->realtime = 0;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if ((r = cli_option(argc, argv, &i, "--url", "-u", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->url = v;
        } else if ((r = cli_option(argc, argv, &i, "--codec", "-c", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            if (strcmp(v, "pcm") == 0)
                o->opus = 0;
            else if (strcmp(v, "opus") == 0)
                o->opus = 1;
            else {
                fprintf(stderr, "demix stream: --codec must be pcm or opus "
                                "(got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
        } else if ((r = cli_option(argc, argv, &i, "--out", "-o", &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->out_dir = v;
        } else if ((r = cli_option(argc, argv, &i, "--stems", NULL, &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            o->stems = v;
        } else if ((r = cli_option(argc, argv, &i, "--mix", NULL, &v))) {
            if (r < 0 || check_mix(v))
                return DEMIX_EXIT_USAGE;
            o->mix = v;
        } else if ((r = cli_option(argc, argv, &i, "--token", NULL, &v))) {
            if (r < 0)
                return DEMIX_EXIT_USAGE;
            if (strlen(v) > DEMIX_PROTO_TOKEN_MAX_BYTES) {
                fprintf(stderr, "demix stream: --token is longer than %d "
                                "bytes\n", DEMIX_PROTO_TOKEN_MAX_BYTES);
                return DEMIX_EXIT_USAGE;
            }
            o->token = v;
        } else if ((r = cli_option(argc, argv, &i, "--bitrate", NULL, &v))) {
            if (r < 0 || cli_int("stream", "--bitrate", v,
                                 DEMIX_PROTO_OPUS_MIN_BITRATE,
                                 DEMIX_PROTO_OPUS_MAX_BITRATE, &o->bitrate_bps))
                return DEMIX_EXIT_USAGE;
        } else if ((r = cli_option(argc, argv, &i, "--timeout", NULL, &v))) {
            if (r < 0 || cli_int("stream", "--timeout", v, 1, 86400, &o->timeout_s))
                return DEMIX_EXIT_USAGE;
        } else {
            fprintf(stderr, "demix stream: unknown option '%s' (see demix help "
                            "stream)\n", a);
            return DEMIX_EXIT_USAGE;
        }
    }
    const char *env_token = getenv("DEMIX_TOKEN");
    if (!o->token && env_token && env_token[0]) {
        if (strlen(env_token) > DEMIX_PROTO_TOKEN_MAX_BYTES) {
            fprintf(stderr, "demix stream: DEMIX_TOKEN is longer than %d "
                            "bytes\n", DEMIX_PROTO_TOKEN_MAX_BYTES);
            return DEMIX_EXIT_USAGE;
        }
        o->token = env_token;
    }
    if (!o->url) {
        fprintf(stderr, "demix stream: --url is required (for example --url "
                        "ws://127.0.0.1:8080%s)\n\n", DEMIX_PROTO_PATH);
        cmd_stream_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (!o->input) {
        fprintf(stderr, "demix stream: no input file\n\n");
        cmd_stream_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (o->stems && o->mix) {
        fprintf(stderr, "demix stream: --stems and --mix exclude each other\n");
        return DEMIX_EXIT_USAGE;
    }
    if (!o->out_dir[0]) {
        fprintf(stderr, "demix stream: --out needs a folder name\n");
        return DEMIX_EXIT_USAGE;
    }
    char err[256];
    int tls, port;
    char host[256], path[1024];
    if (ws_client_parse_url(o->url, &tls, host, sizeof host, &port, path,
                            sizeof path, err, sizeof err)) {
        fprintf(stderr, "demix stream: %s\n", err);
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

int cmd_stream(int argc, char **argv)
{
    stream_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);

    session *s = calloc(1, sizeof *s);
    if (!s) {
        cli_error("out of memory");
        return 1;
    }
    s->o = &o;
    int explicit_stems = o.stems != NULL;
    if (explicit_stems) {
        if (cli_stem_list("stream", o.stems, s->stem_req, &s->stem_count_req)) {
            free(s);
            return DEMIX_EXIT_USAGE;
        }
    } else {
        s->stem_count_req = 4;
        for (int i = 0; i < 4; i++)
            snprintf(s->stem_req[i], sizeof s->stem_req[i], "%s",
                     default_stem_names[i]);
    }
    rc = run_session(s);
    if (rc && !explicit_stems && !o.mix && s->server_error &&
        s->error_code == DEMIX_PROTO_ERR_UNKNOWN_STEM) {
        /* The model has other sources: read them from a mix-mode ready. */
        session_free(s);
        memset(s, 0, sizeof *s);
        s->o = &o;
        s->probe_only = 1;
        rc = run_session(s);
        demix_proto_ready r = s->ready;
        session_free(s);
        memset(s, 0, sizeof *s);
        s->o = &o;
        if (rc == 0) {
            s->stem_count_req = r.source_count;
            for (int i = 0; i < r.source_count; i++)
                snprintf(s->stem_req[i], sizeof s->stem_req[i], "%s",
                         r.sources[i]);
            rc = run_session(s);
        }
    }
    if (rc) {
        remove_outputs(s);
        cli_error("%s", s->err[0] ? s->err : "streaming failed");
    }
    session_free(s);
    free(s);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc ? 1 : 0;
}
